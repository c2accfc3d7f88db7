/**
 * Model weights → a GGUF of llama.cpp's `grok` architecture (docs/REFERENCE.md §5), streamed tensor
 * by tensor: each matrix is read (one expert at a time for stacked experts), turned into out-major
 * float32 rows a chunk at a time, quantised with ggml's reference quantisers and appended to the
 * output, so memory stays near one expert matrix, never the model. The official int8 weights are
 * dequantised exactly first (int8 × bf16 is exact in float32), so an f32 output is lossless.
 *
 * Legend: V vocab, D width, H/Hkv heads, d head size, E experts, F ffn size, I/O a matrix's in/out.
 */
import type { LinearWeight } from '../tensor/linear.js';
import type { GrokConfig } from '../config.js';
import { AbortError } from '../errors.js';
import { runSteps, type ConvertCommon, type ConvertOutput } from './common.js';
import { GGUF_DEFAULT_ALIGNMENT, type GgufMetadata } from '../formats/gguf.js';
import { GgufWriter, kv, planShards, shardNames, type GgufKv, type GgufTensorPlan } from '../formats/gguf-writer.js';
import { bf16ToF32, f16ToF32 } from '../tensor/dtype.js';
import { dequantizeGgml, ggmlRowBytes, ggmlType } from '../tensor/ggml.js';
import { quantizeGgml, type QuantizeType } from '../tensor/ggml-quantize.js';
import type { TensorStore } from '../tensor/tensor.js';
import { PieceType, type SentencePieceModel } from '../tokenizer/sentencepiece-model.js';
import { ggufTokenizerKvs, syntheticTokenizerKvs } from '../tokenizer/from-gguf.js';
import { GGUF_ARCH, GGUF_NAMES } from '../model/weights-gguf.js';
import type { GrokWeights } from '../model/weights.js';

export interface ConvertOptions extends ConvertCommon {
  /** Type of the matrices; norms and routers stay f32 (as llama-quantize keeps them). */
  readonly type: QuantizeType;
  /** The tokenizer to embed; used only when its size equals the model's vocabulary (else a placeholder is written). */
  readonly tokenizer?: SentencePieceModel;
  /** Metadata of a GGUF being re-quantised: its tokenizer.ggml.* entries are carried over as they are. */
  readonly sourceMetadata?: GgufMetadata;
  readonly name?: string;
}

export interface ConvertResult extends ConvertOutput {
  /** Tensors written in a type other than the requested one because their rows do not fit its blocks. */
  readonly fallbacks: ReadonlyArray<{ tensor: string; type: string }>;
  /** Whether the tokenizer was embedded, or a placeholder vocabulary written. */
  readonly tokenizer: 'embedded' | 'copied' | 'placeholder';
}

/** llama_ftype numbers for general.file_type. */
const FILE_TYPE: Record<QuantizeType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k: 15, q6_k: 18, bf16: 32 };

/**
 * Float32 values per chunk of rows (256 KiB): bounds the working set next to the source matrix, and
 * the time between two looks at the abort signal (the slowest quantiser, q4_k, does 1-4 M values
 * a second), so Ctrl-C stops a conversion within a fraction of a second.
 */
const CHUNK_VALUES = 1 << 16;

/**
 * The type a matrix with rows of n values gets: the requested one when n fits its blocks, else (as
 * llama-quantize falls back) q8_0 for a k-quant whose 256-blocks do not fit, else f16.
 */
export function typeForRow(requested: QuantizeType, n: number): QuantizeType {
  if (n % ggmlType(requested).blockSize === 0) return requested;
  if (requested !== 'q8_0' && requested !== 'q4_0' && n % 32 === 0) return 'q8_0';
  return 'f16';
}

/** One output tensor: its plan and how to produce its out-major f32 rows. */
interface Job {
  readonly plan: GgufTensorPlan;
  /** Matrices: one LinearWeight per expert (or one). Vectors: the values. */
  readonly parts: readonly LinearWeight[] | Float32Array;
}

function jobs(w: GrokWeights, t: QuantizeType): Job[] {
  const matrix = (name: string, parts: LinearWeight[], stacked = false): Job => {
    const { inDim, outDim } = parts[0]!;
    return { plan: { name, type: typeForRow(t, inDim), ne: stacked ? [inDim, outDim, parts.length] : [inDim, outDim] }, parts };
  };
  const vector = (name: string, values: Float32Array): Job => ({ plan: { name, type: 'f32', ne: [values.length] }, parts: values });
  const router = (name: string, r: LinearWeight): Job => ({ plan: { name, type: 'f32', ne: [r.inDim, r.outDim] }, parts: [r] });
  const out: Job[] = [matrix(GGUF_NAMES.embedding, [w.embedding]), vector(GGUF_NAMES.finalNorm, w.finalNorm)];
  for (const [i, l] of w.layers.entries()) {
    out.push(
      vector(GGUF_NAMES.attnNorm(i), l.attnNorm),
      matrix(GGUF_NAMES.q(i), [l.wq]),
      matrix(GGUF_NAMES.k(i), [l.wk]),
      matrix(GGUF_NAMES.v(i), [l.wv]),
      matrix(GGUF_NAMES.o(i), [l.wo]),
      vector(GGUF_NAMES.attnOutNorm(i), l.attnOutNorm),
      vector(GGUF_NAMES.ffnNorm(i), l.ffnNorm),
      router(GGUF_NAMES.router(i), l.router),
      matrix(GGUF_NAMES.gateExps(i), l.experts.map((e) => e.gate), true),
      matrix(GGUF_NAMES.upExps(i), l.experts.map((e) => e.up), true),
      matrix(GGUF_NAMES.downExps(i), l.experts.map((e) => e.down), true),
      vector(GGUF_NAMES.ffnOutNorm(i), l.ffnOutNorm),
    );
  }
  return out;
}

/** The grok.* and general.* metadata for a config (docs/REFERENCE.md §5), multipliers included. */
export function grokMetadata(c: Readonly<GrokConfig>, type: QuantizeType, name: string): GgufKv[] {
  const g = (key: string) => `${GGUF_ARCH}.${key}`;
  return [
    kv.string('general.architecture', GGUF_ARCH),
    kv.string('general.name', name),
    kv.u32('general.file_type', FILE_TYPE[type]),
    kv.u32('general.quantization_version', 2),
    kv.u32(g('vocab_size'), c.vocabSize),
    kv.u32(g('context_length'), c.sequenceLen),
    kv.u32(g('embedding_length'), c.embSize),
    kv.u32(g('block_count'), c.numLayers),
    kv.u32(g('feed_forward_length'), c.ffnSize),
    kv.u32(g('expert_feed_forward_length'), c.ffnSize),
    kv.u32(g('attention.head_count'), c.numQHeads),
    kv.u32(g('attention.head_count_kv'), c.numKvHeads),
    kv.u32(g('attention.key_length'), c.keySize),
    kv.u32(g('attention.value_length'), c.keySize),
    kv.u32(g('rope.dimension_count'), c.keySize),
    kv.f32(g('rope.freq_base'), c.ropeBase),
    kv.f32(g('attention.layer_norm_rms_epsilon'), c.rmsNormEps),
    kv.u32(g('expert_count'), c.numExperts),
    kv.u32(g('expert_used_count'), c.numSelectedExperts),
    kv.f32(g('embedding_scale'), c.embeddingMultiplierScale),
    kv.f32(g('logit_scale'), c.outputMultiplierScale),
    kv.f32(g('attention.output_scale'), c.attnOutputMultiplier),
    kv.f32(g('attn_logit_softcapping'), c.attnLogitSoftcap),
  ];
}

/**
 * Produces rows [o0, o1) of a linear weight in GGUF orientation (row o = the inDim weights feeding
 * output o) as float32, whatever its stored layout.
 */
export function outMajorRows(w: LinearWeight, o0: number, o1: number, out: Float32Array, bytes: Uint8Array, scales?: Uint8Array): void {
  const I = w.inDim;
  const O = w.outDim;
  const f = w.format;
  const n = o1 - o0;
  if (f.kind === 'int8-grouped') {
    // W[k, o] = q[k, o] · s[floor(k·G/I), o]: an 8-bit integer times a bf16 is exact in float32
    const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const s = new Float32Array(f.groups * n);
    for (let g = 0; g < f.groups; g++) for (let o = o0; o < o1; o++) s[g * n + o - o0] = bf16ToF32(scales![2 * (g * O + o)]! | (scales![2 * (g * O + o) + 1]! << 8));
    for (let k = 0; k < I; k++) {
      const sRow = Math.floor((k * f.groups) / I) * n;
      const qRow = k * O;
      for (let o = o0; o < o1; o++) out[(o - o0) * I + k] = q[qRow + o]! * s[sRow + o - o0]!;
    }
    return;
  }
  if (f.kind === 'dense' && f.order === 'in-major') {
    // a plain [I, O] float matrix (the routers): transpose while converting
    const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const at: (i: number) => number =
      f.dtype === 'f32' ? (i) => dv.getFloat32(4 * i, true) : f.dtype === 'bf16' ? (i) => bf16ToF32(dv.getUint16(2 * i, true)) : (i) => f16ToF32(dv.getUint16(2 * i, true));
    for (let k = 0; k < I; k++) for (let o = o0; o < o1; o++) out[(o - o0) * I + k] = at(k * O + o);
    return;
  }
  const type = f.kind === 'dense' ? f.dtype : f.type;
  dequantizeGgml(type, bytes, o0 * ggmlRowBytes(type, I), out, 0, n * I);
}

/** Pieces made only of newlines, tabs, spaces and digits: what ordinary text is full of. */
const PLAIN_TEXT_PIECE = /^[\n\t 0-9]+$/;

/**
 * The tokenizer with the user-defined pieces that ordinary text is full of (Grok-1's runs of
 * newlines, tabs and spaces, and the digits: 43 of its 65) typed NORMAL, as llama.cpp's own
 * converters type every user-defined piece. llama.cpp cuts text at USER_DEFINED tokens before
 * merging and gives each following fragment a space prefix of its own, so with type 4 it tokenized
 * most prompts unlike the official tokenizer (llama.cpp 0ad4a86: 315 of 3197 mixed texts equal;
 * 3191 with this, the rest containing the markers below). The markers (`<|separator|>`, `<|mask|>`,
 * `<|controlN|>`) stay USER_DEFINED so both llama.cpp and our reader keep them single tokens; our
 * reader encodes all 3197 like tokenizer.model either way.
 */
export function asLlamaCppVocabulary(model: SentencePieceModel): SentencePieceModel {
  const types = model.types.map((t, id) => (t === PieceType.USER_DEFINED && PLAIN_TEXT_PIECE.test(model.pieces[id]!) ? PieceType.NORMAL : t));
  return { ...model, types };
}

/**
 * Converts loaded model weights into a GGUF at `out` (plus shards); see the module comment.
 * Synchronous from start to end: an AbortSignal can only stop it from code that runs meanwhile
 * (a worker). Use convertToGgufAsync where signals (Ctrl-C) must stop it.
 */
export function convertToGguf(weights: GrokWeights, store: TensorStore, out: string, opts: ConvertOptions): ConvertResult {
  const steps = convertSteps(weights, store, out, opts);
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
  }
}

/**
 * The same conversion, giving the event loop a turn after every chunk written, so a signal
 * handler can abort it through `opts.signal` within one chunk's work (a fraction of a second);
 * the temporary files are then removed and an AbortError thrown.
 */
export async function convertToGgufAsync(weights: GrokWeights, store: TensorStore, out: string, opts: ConvertOptions): Promise<ConvertResult> {
  return runSteps(convertSteps(weights, store, out, opts));
}

/** The conversion as a sequence of steps: it yields after every chunk it writes. */
function* convertSteps(weights: GrokWeights, store: TensorStore, out: string, opts: ConvertOptions): Generator<void, ConvertResult, void> {
  const c = weights.config;
  const list = jobs(weights, opts.type);
  const copied = [...(opts.sourceMetadata?.all() ?? [])].filter((e) => e.key.startsWith('tokenizer.ggml.'));
  const useTokenizer = opts.tokenizer !== undefined && opts.tokenizer.pieces.length === c.vocabSize;
  const tokenizer = copied.length ? 'copied' : useTokenizer ? 'embedded' : 'placeholder';
  const kvs = [
    ...grokMetadata(c, opts.type, opts.name ?? 'grok'),
    ...(tokenizer === 'copied' ? copied.map(({ key, type, value }) => ({ key, type, value })) : useTokenizer ? ggufTokenizerKvs(asLlamaCppVocabulary(opts.tokenizer!)) : syntheticTokenizerKvs(c.vocabSize)),
  ];
  const plans = list.map((j) => j.plan);
  const writeOpts = opts.splitMaxBytes ? { splitMaxBytes: opts.splitMaxBytes } : {};
  opts.beforeWrite?.(shardNames(out, planShards(plans, opts.splitMaxBytes, GGUF_DEFAULT_ALIGNMENT).length));
  throwIfAborted(opts.signal);
  const writer = new GgufWriter(out, kvs, plans, writeOpts);
  let done = 0;
  const emit = (bytes: Uint8Array) => {
    throwIfAborted(opts.signal);
    writer.append(bytes);
    done += bytes.length;
    opts.onProgress?.(done, writer.totalBytes);
  };
  try {
    for (const job of list) {
      if (job.parts instanceof Float32Array) {
        emit(new Uint8Array(job.parts.buffer.slice(job.parts.byteOffset, job.parts.byteOffset + job.parts.byteLength)));
        yield;
        continue;
      }
      for (const part of job.parts) yield* writeMatrix(part, job.plan.type, store, emit);
    }
    throwIfAborted(opts.signal);
    writer.commit();
  } catch (err) {
    writer.abort();
    throw err;
  }
  const matrices = list.filter((j) => !(j.parts instanceof Float32Array) && !j.plan.name.endsWith('ffn_gate_inp.weight'));
  return {
    files: writer.files,
    bytes: writer.totalBytes,
    fallbacks: matrices.filter((j) => j.plan.type !== opts.type).map((j) => ({ tensor: j.plan.name, type: j.plan.type })),
    tokenizer,
  };
}

function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw signal.reason instanceof Error ? signal.reason : new AbortError();
}

function* writeMatrix(w: LinearWeight, type: string, store: TensorStore, emit: (b: Uint8Array) => void): Generator<void, void, void> {
  const I = w.inDim;
  const O = w.outDim;
  const rowsPerChunk = Math.max(1, Math.min(O, Math.floor(CHUNK_VALUES / I)));
  const rows = new Float32Array(rowsPerChunk * I);
  const packed = new Uint8Array(rowsPerChunk * ggmlRowBytes(type, I));
  // An out-major weight that is a whole tensor of the store (the 3 GB embedding) is read from its
  // file a chunk of rows at a time; anything else (one expert, one attention matrix) is read
  // whole, then released.
  const whole = store.tensors.get(w.name);
  const streamed = (w.format.kind === 'ggml' || (w.format.kind === 'dense' && w.format.order === 'out-major')) && whole !== undefined && whole.byteLength === w.byteLength;
  const rowBytes = w.format.kind === 'dense' ? I * (w.format.dtype === 'f32' ? 4 : 2) : w.format.kind === 'ggml' ? ggmlRowBytes(w.format.type, I) : 0;
  try {
    const bytes = streamed ? undefined : w.bytes();
    const scales = w.format.kind === 'int8-grouped' ? w.scaleBytes() : undefined;
    for (let o0 = 0; o0 < O; o0 += rowsPerChunk) {
      const o1 = Math.min(O, o0 + rowsPerChunk);
      if (streamed) outMajorRows(w, 0, o1 - o0, rows, whole!.source.read(whole!.offset + o0 * rowBytes, (o1 - o0) * rowBytes));
      else outMajorRows(w, o0, o1, rows, bytes!, scales);
      const n = quantizeGgml(type, rows, 0, packed, 0, (o1 - o0) * I);
      emit(packed.subarray(0, n));
      yield;
    }
  } finally {
    w.release();
  }
}
