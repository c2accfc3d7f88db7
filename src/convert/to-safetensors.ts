/**
 * Model weights → the Hugging Face layout vLLM and SGLang load (model/weights-safetensors.ts has
 * the names and config.json): sharded safetensors + index, config.json, generation_config.json and
 * the tokenizer files. Streamed like the GGUF conversion (to-gguf.ts, whose row producer this
 * reuses): one matrix at a time (one expert at a time: the layout stores experts separately), a
 * chunk of rows at a time, so memory stays near one expert matrix.
 *
 * Matrices are written bf16 (default) or f32; norms and routers stay f32 as in the GGUF
 * conversion (a few KB; the engines cast them on load). The official int8 × bf16-scale weights
 * dequantise exactly in f32, so `dtype: 'f32'` is lossless, and bf16 is that value rounded to
 * nearest-even once: the same bits the GGUF bf16 conversion stores.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GrokConfig } from '../config.js';
import { runSteps, type ConvertCommon, type ConvertOutput } from './common.js';
import { throwIfAborted } from '../errors.js';
import { SafetensorsWriter, writeFileAtomic, type SafetensorsTensorPlan } from '../formats/safetensors-writer.js';
import { SAFETENSORS_INDEX } from '../formats/safetensors.js';
import type { GrokWeights } from '../model/weights.js';
import { hfConfigJson, hfNames, type HfNaming } from '../model/weights-safetensors.js';
import { f32ToBf16 } from '../tensor/dtype.js';
import type { LinearWeight } from '../tensor/linear.js';
import type { TensorStore } from '../tensor/tensor.js';
import { outMajorRows } from './to-gguf.js';

export type SafetensorsDtype = 'bf16' | 'f32';

/** splitMaxBytes defaults to 5 GB (as transformers' save_pretrained). */
export interface SafetensorsConvertOptions extends ConvertCommon {
  readonly dtype?: SafetensorsDtype;
  readonly naming?: HfNaming;
  /** A tokenizer.model to copy beside the weights (written only when its vocabulary matches the model's). */
  readonly tokenizerFile?: string;
  /** Its vocabulary size (to check it against the model's). */
  readonly tokenizerVocabSize?: number;
}

export interface SafetensorsConvertResult extends ConvertOutput {
  readonly tokenizer: 'copied' | 'absent';
  /** Things the engines will compute differently from grok-ts for this model (empty for Grok-1). */
  readonly warnings: readonly string[];
}

export const DEFAULT_SHARD_BYTES = 5e9;

/** Float values per chunk (256 KiB of f32): as to-gguf.ts, bounds memory and the time between abort checks. */
const CHUNK_VALUES = 1 << 16;

interface Job {
  readonly plan: SafetensorsTensorPlan;
  readonly part: LinearWeight | Float32Array;
}

function jobs(w: GrokWeights, dtype: SafetensorsDtype, naming: HfNaming): Job[] {
  const n = hfNames(naming);
  const matrix = (name: string, l: LinearWeight, t: SafetensorsDtype = dtype): Job => ({ plan: { name, dtype: t, shape: [l.outDim, l.inDim] }, part: l });
  const vector = (name: string, v: Float32Array): Job => ({ plan: { name, dtype: 'f32', shape: [v.length] }, part: v });
  const out: Job[] = [matrix(n.embedding, w.embedding)];
  for (const [i, l] of w.layers.entries()) {
    out.push(
      vector(n.attnNorm(i), l.attnNorm),
      matrix(n.q(i), l.wq),
      matrix(n.k(i), l.wk),
      matrix(n.v(i), l.wv),
      matrix(n.o(i), l.wo),
      vector(n.attnOutNorm(i), l.attnOutNorm),
      vector(n.ffnNorm(i), l.ffnNorm),
      matrix(n.router(i), l.router, 'f32'),
    );
    for (const [e, x] of l.experts.entries()) out.push(matrix(n.gate(i, e), x.gate), matrix(n.up(i, e), x.up), matrix(n.down(i, e), x.down));
    out.push(vector(n.ffnOutNorm(i), l.ffnOutNorm));
  }
  // Grok-1 ties the output projection to the embedding; the engines load lm_head as its own tensor.
  out.push(vector(n.finalNorm, w.finalNorm), matrix(n.output, w.output ?? w.embedding));
  return out;
}

/** What vLLM / SGLang would compute differently from grok-ts for this config. */
export function engineWarnings(c: Readonly<GrokConfig>): string[] {
  const w: string[] = [];
  if (c.numQHeads * c.keySize !== c.embSize) w.push(`heads × head size (${c.numQHeads}×${c.keySize}) ≠ width ${c.embSize}: vLLM derives head_dim as hidden_size / heads`);
  if (Math.abs(c.attnOutputMultiplier - 1 / Math.sqrt(c.keySize)) > 1e-12) w.push(`attn_output_multiplier ${c.attnOutputMultiplier} ≠ 1/√${c.keySize}: the engines scale attention logits by head_dim^-0.5`);
  if (c.ropeBase !== Math.trunc(c.ropeBase)) w.push(`rope base ${c.ropeBase} is not an integer: SGLang truncates it`);
  return w;
}

/**
 * generate/chat-template.ts's plain transcript as the Jinja template transformers renders for
 * /v1/chat/completions, so vLLM and SGLang render a chat exactly as grok-ts does (their stop
 * strings are CHAT_STOP, which RemoteChat sends).
 */
export const PLAIN_CHAT_JINJA =
  "{% for m in messages %}{% if m['role'] == 'system' %}{{ m['content'] | trim }}\n\n" +
  "{% elif m['role'] == 'user' %}User: {{ m['content'] | trim }}\n\n" +
  "{% else %}Assistant: {{ m['content'] | trim }}\n\n{% endif %}{% endfor %}" +
  '{% if add_generation_prompt %}Assistant:{% endif %}';

/** Tokenizer files the engines' AutoTokenizer reads: the SentencePiece model behind a slow LlamaTokenizer. */
function tokenizerFiles(c: Readonly<GrokConfig>): Record<string, unknown> {
  const special = { bos_token: '[BOS]', eos_token: '[EOS]', pad_token: '[PAD]', unk_token: '[UNK]' };
  return {
    'tokenizer_config.json': {
      tokenizer_class: 'LlamaTokenizer',
      ...special,
      // grok-ts and the reference run.py add no BOS to a prompt.
      add_bos_token: false,
      add_eos_token: false,
      legacy: true,
      clean_up_tokenization_spaces: false,
      model_max_length: c.sequenceLen,
      sp_model_kwargs: {},
      chat_template: PLAIN_CHAT_JINJA,
    },
    'special_tokens_map.json': special,
  };
}

/** Output file names (relative to the directory) for a conversion; for overwrite checks. */
function outputNames(shards: readonly string[], withTokenizer: boolean): string[] {
  return [...shards, SAFETENSORS_INDEX, 'config.json', 'generation_config.json', ...(withTokenizer ? ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json'] : [])];
}

/**
 * Converts into directory `outDir` (created if missing; its parent must exist). Yields the event
 * loop after every chunk so `opts.signal` (Ctrl-C) stops it within one chunk; temporary files are
 * then removed and an AbortError thrown. Nothing under its final name exists until the weights are
 * complete; the index is written last. `_store` is not read (the weights carry their byte
 * ranges); it keeps convertToGguf's signature, so callers treat both converters alike.
 */
export async function convertToSafetensors(weights: GrokWeights, _store: TensorStore, outDir: string, opts: SafetensorsConvertOptions = {}): Promise<SafetensorsConvertResult> {
  return runSteps(convertSteps(weights, outDir, opts));
}

function* convertSteps(weights: GrokWeights, outDir: string, opts: SafetensorsConvertOptions): Generator<void, SafetensorsConvertResult, void> {
  const c = weights.config;
  const dtype = opts.dtype ?? 'bf16';
  const naming = opts.naming ?? 'sglang';
  const list = jobs(weights, dtype, naming);
  const withTokenizer = opts.tokenizerFile !== undefined && opts.tokenizerVocabSize === c.vocabSize;
  throwIfAborted(opts.signal);
  fs.mkdirSync(outDir, { recursive: true });
  const writer = new SafetensorsWriter(outDir, list.map((j) => j.plan), { splitMaxBytes: opts.splitMaxBytes ?? DEFAULT_SHARD_BYTES });
  let done = 0;
  const emit = (bytes: Uint8Array) => {
    throwIfAborted(opts.signal);
    writer.append(bytes);
    done += bytes.length;
    opts.onProgress?.(done, writer.totalBytes);
  };
  try {
    opts.beforeWrite?.(outputNames(writer.files, withTokenizer).map((f) => path.resolve(outDir, f)));
    for (const job of list) {
      if (job.part instanceof Float32Array) {
        emit(new Uint8Array(job.part.buffer.slice(job.part.byteOffset, job.part.byteOffset + job.part.byteLength)));
      } else yield* writeMatrix(job.part, job.plan.dtype as SafetensorsDtype, emit);
      yield;
    }
    throwIfAborted(opts.signal);
  } catch (err) {
    writer.abort();
    throw err;
  }
  const json = (v: unknown) => `${JSON.stringify(v, null, 2)}\n`;
  const extra: string[] = [];
  const put = (name: string, data: string | Uint8Array) => {
    writeFileAtomic(path.join(outDir, name), data);
    extra.push(path.join(outDir, name));
  };
  writer.commit(() => {
    put('config.json', json(hfConfigJson(c, naming, dtype)));
    put('generation_config.json', json({ bos_token_id: c.bosToken, eos_token_id: c.eosToken, pad_token_id: c.padToken }));
    if (withTokenizer) {
      put('tokenizer.model', fs.readFileSync(opts.tokenizerFile!));
      for (const [name, v] of Object.entries(tokenizerFiles(c))) put(name, json(v));
    }
  });
  return { files: [...writer.files, path.join(outDir, SAFETENSORS_INDEX), ...extra], bytes: writer.totalBytes, tokenizer: withTokenizer ? 'copied' : 'absent', warnings: engineWarnings(c) };
}

/** One matrix as [out, in] rows in `dtype`, a chunk of rows at a time. */
function* writeMatrix(w: LinearWeight, dtype: SafetensorsDtype, emit: (b: Uint8Array) => void): Generator<void, void, void> {
  const I = w.inDim;
  const O = w.outDim;
  const rowsPerChunk = Math.max(1, Math.min(O, Math.floor(CHUNK_VALUES / I)));
  const rows = new Float32Array(rowsPerChunk * I);
  const packed = dtype === 'bf16' ? new Uint16Array(rowsPerChunk * I) : undefined;
  // An out-major dense tensor read whole from its file (the embedding of a GGUF) is read a chunk of
  // rows at a time through rowBytes; anything else (one expert, an int8 matrix) is read once, then released.
  const rowWise = (w.format.kind === 'ggml' || (w.format.kind === 'dense' && w.format.order === 'out-major'));
  try {
    const bytes = rowWise ? undefined : w.bytes();
    const scales = w.format.kind === 'int8-grouped' ? w.scaleBytes() : undefined;
    for (let o0 = 0; o0 < O; o0 += rowsPerChunk) {
      const o1 = Math.min(O, o0 + rowsPerChunk);
      const n = (o1 - o0) * I;
      if (rowWise) outMajorRows(w, 0, o1 - o0, rows, w.rowBytes(o0, o1 - o0));
      else outMajorRows(w, o0, o1, rows, bytes!, scales);
      if (packed) {
        for (let k = 0; k < n; k++) packed[k] = f32ToBf16(rows[k]!);
        emit(new Uint8Array(packed.buffer, 0, 2 * n));
      } else emit(new Uint8Array(rows.buffer, 0, 4 * n));
      yield;
    }
  } finally {
    w.release();
  }
}
