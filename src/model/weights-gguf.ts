/**
 * GGUF `grok` architecture (docs/REFERENCE.md §5) → the same GrokConfig and GrokWeights as ckpt-0:
 * one model, two readers. GGUF matrices are out-major (ne[0] = input width is contiguous; the
 * logical shape is ne reversed), so every linear here is `out-major` dense or a `ggml` block type,
 * and one expert of a stacked [E, out, in] tensor is a byte sub-range of it.
 *
 * Legend: V vocab, D model width, H/Hkv heads, d head size, E experts, F ffn size.
 */
import { GROK1, makeConfig, type GrokConfig } from '../config.js';
import { ConfigError, UnsupportedError, WeightError } from '../errors.js';
import type { GgufMetadata } from '../formats/gguf.js';
import { ggmlRowBytes, requireDequantizable } from '../tensor/ggml.js';
import { LazyLinear, type LinearFormat, type LinearWeight } from '../tensor/linear.js';
import type { TensorInfo, TensorStore } from '../tensor/tensor.js';
import { checkShape, readFloatVector, requireTensor, totalBytes, type ExpertWeights, type GrokWeights, type LayerWeights } from './weights.js';

export const GGUF_ARCH = 'grok';

/** Tensor names of the grok architecture (llama-arch.cpp). */
export const GGUF_NAMES = {
  embedding: 'token_embd.weight',
  output: 'output.weight',
  finalNorm: 'output_norm.weight',
  attnNorm: (i: number) => `blk.${i}.attn_norm.weight`,
  q: (i: number) => `blk.${i}.attn_q.weight`,
  k: (i: number) => `blk.${i}.attn_k.weight`,
  v: (i: number) => `blk.${i}.attn_v.weight`,
  o: (i: number) => `blk.${i}.attn_output.weight`,
  attnOutNorm: (i: number) => `blk.${i}.attn_output_norm.weight`,
  ffnNorm: (i: number) => `blk.${i}.ffn_norm.weight`,
  router: (i: number) => `blk.${i}.ffn_gate_inp.weight`,
  gateExps: (i: number) => `blk.${i}.ffn_gate_exps.weight`,
  upExps: (i: number) => `blk.${i}.ffn_up_exps.weight`,
  downExps: (i: number) => `blk.${i}.ffn_down_exps.weight`,
  /** Early convert_grok.py wrote one tensor per expert instead of a stacked one. */
  gateExp: (i: number, e: number) => `blk.${i}.ffn_gate.${e}.weight`,
  upExp: (i: number, e: number) => `blk.${i}.ffn_up.${e}.weight`,
  downExp: (i: number, e: number) => `blk.${i}.ffn_down.${e}.weight`,
  /** A dense FFN beside the experts (Grok-2), which Grok-1 does not have. */
  denseUp: (i: number) => `blk.${i}.ffn_up.weight`,
  ffnOutNorm: (i: number) => `blk.${i}.layer_output_norm.weight`,
  ffnOutNormAlt: (i: number) => `blk.${i}.post_ffw_norm.weight`,
};

/**
 * The config a `grok` GGUF describes. Required: embedding_length, block_count, attention.head_count,
 * expert_count, expert_used_count, and a feed-forward length; the rest fall back to Grok-1's values
 * (the multipliers to the ones llama.cpp assumes for GGUFs that predate their keys). The vocabulary
 * size is grok.vocab_size, else the tokenizer's length, else token_embd's row count.
 */
export function configFromGguf(metadata: GgufMetadata, file: string, store?: TensorStore): Readonly<GrokConfig> {
  const arch = metadata.string('general.architecture');
  if (arch !== GGUF_ARCH) {
    throw new UnsupportedError(`architecture ${arch ?? '(none)'}`, `${file}: general.architecture is ${arch === undefined ? 'missing' : `"${arch}"`}; only "${GGUF_ARCH}" (Grok-1) is supported`);
  }
  const k = (name: string) => `${GGUF_ARCH}.${name}`;
  const problems: string[] = [];
  const required = (name: string): number => {
    const v = metadata.integer(k(name));
    if (v === undefined) problems.push(`metadata ${k(name)} is missing`);
    return v ?? 0;
  };
  const embSize = required('embedding_length');
  const numLayers = required('block_count');
  const numQHeads = required('attention.head_count');
  const numExperts = required('expert_count');
  const numSelectedExperts = required('expert_used_count');
  const ffn = metadata.integer(k('expert_feed_forward_length')) ?? metadata.integer(k('feed_forward_length'));
  if (ffn === undefined) problems.push(`metadata ${k('feed_forward_length')} is missing`);
  const numKvHeads = metadata.integer(k('attention.head_count_kv')) ?? numQHeads;
  const keySize = metadata.integer(k('attention.key_length')) ?? (numQHeads > 0 ? Math.floor(embSize / numQHeads) : 0);
  const valueSize = metadata.integer(k('attention.value_length')) ?? keySize;
  const ropeDims = metadata.integer(k('rope.dimension_count')) ?? keySize;
  if (valueSize !== keySize) problems.push(`attention.value_length ${valueSize} differs from key_length ${keySize}`);
  if (ropeDims !== keySize) problems.push(`rope.dimension_count ${ropeDims} differs from the head size ${keySize} (partial RoPE is not Grok-1)`);
  const finalCap = metadata.number(k('final_logit_softcapping')) ?? 0;
  if (finalCap !== 0) problems.push(`final_logit_softcapping ${finalCap} (a final soft cap is not part of Grok-1)`);
  if (problems.length) throw new ConfigError(problems, file);

  let vocabSize = metadata.integer(k('vocab_size')) ?? metadata.stringArray('tokenizer.ggml.tokens')?.length;
  if (vocabSize === undefined) vocabSize = store?.tensors.get(GGUF_NAMES.embedding)?.shape[0];
  if (vocabSize === undefined) throw new ConfigError([`no vocabulary size: neither ${k('vocab_size')}, tokenizer.ggml.tokens nor ${GGUF_NAMES.embedding}`], file);

  // The router soft cap (grok.router_logit_softcapping) is ignored on purpose: Grok-1's router has
  // none (docs/REFERENCE.md §7.4); llama.cpp stores one by default.
  return makeConfig(
    {
      vocabSize,
      embSize,
      numQHeads,
      numKvHeads,
      keySize,
      numLayers,
      numExperts,
      numSelectedExperts,
      ffnSize: ffn!,
      sequenceLen: metadata.integer(k('context_length')) ?? GROK1.sequenceLen,
      rmsNormEps: metadata.number(k('attention.layer_norm_rms_epsilon')) ?? GROK1.rmsNormEps,
      ropeBase: metadata.number(k('rope.freq_base')) ?? GROK1.ropeBase,
      embeddingMultiplierScale: metadata.number(k('embedding_scale')) ?? GROK1.embeddingMultiplierScale,
      outputMultiplierScale: metadata.number(k('logit_scale')) ?? GROK1.outputMultiplierScale,
      attnOutputMultiplier: metadata.number(k('attention.output_scale')) ?? GROK1.attnOutputMultiplier,
      attnLogitSoftcap: metadata.number(k('attn_logit_softcapping')) ?? GROK1.attnLogitSoftcap,
      padToken: metadata.integer('tokenizer.ggml.padding_token_id') ?? GROK1.padToken,
      eosToken: metadata.integer('tokenizer.ggml.eos_token_id') ?? GROK1.eosToken,
      bosToken: metadata.integer('tokenizer.ggml.bos_token_id') ?? GROK1.bosToken,
    },
    file,
  );
}

/** How the kernels read a GGUF matrix of this dtype. */
export function ggufLinearFormat(t: TensorInfo, file: string): LinearFormat {
  for (const dtype of ['f32', 'f16', 'bf16'] as const) {
    if (t.dtype === dtype) return { kind: 'dense', dtype, order: 'out-major' };
  }
  try {
    return { kind: 'ggml', type: requireDequantizable(t.dtype, t.name).name };
  } catch (err) {
    if (err instanceof UnsupportedError) throw new UnsupportedError(err.what, `${file}: ${err.message}`);
    throw err;
  }
}

/** A GGUF matrix [out, in] (ne = [in, out]), or expert e of a stacked [E, out, in]. */
function ggufLinear(t: TensorInfo, inDim: number, outDim: number, file: string, expert?: { index: number; count: number }): LinearWeight {
  checkShape(t, expert ? [expert.count, outDim, inDim] : [outDim, inDim], file);
  const format = ggufLinearFormat(t, file);
  const rowBytes = ggmlRowBytes(t.dtype, inDim);
  const bytes = rowBytes * outDim;
  const e = expert?.index ?? 0;
  const name = expert ? `${t.name}[${e}]` : t.name;
  return new LazyLinear(name, inDim, outDim, format, { source: t.source, offset: t.offset + e * bytes, byteLength: bytes });
}

function experts(store: TensorStore, i: number, c: Readonly<GrokConfig>, file: string): ExpertWeights[] {
  const D = c.embSize;
  const F = c.ffnSize;
  const E = c.numExperts;
  const out: ExpertWeights[] = [];
  const stackedNames = [GGUF_NAMES.gateExps(i), GGUF_NAMES.upExps(i), GGUF_NAMES.downExps(i)];
  const legacy = !stackedNames.some((n) => store.tensors.has(n)) && store.tensors.has(GGUF_NAMES.gateExp(i, 0));
  if (!legacy) {
    const [gate, up, down] = stackedNames.map((n) => requireTensor(store, n)) as [TensorInfo, TensorInfo, TensorInfo];
    for (let e = 0; e < E; e++) {
      const expert = { index: e, count: E };
      out.push({ gate: ggufLinear(gate, D, F, file, expert), up: ggufLinear(up, D, F, file, expert), down: ggufLinear(down, F, D, file, expert) });
    }
    return out;
  }
  for (let e = 0; e < E; e++) {
    out.push({
      gate: ggufLinear(requireTensor(store, GGUF_NAMES.gateExp(i, e)), D, F, file),
      up: ggufLinear(requireTensor(store, GGUF_NAMES.upExp(i, e)), D, F, file),
      down: ggufLinear(requireTensor(store, GGUF_NAMES.downExp(i, e)), F, D, file),
    });
  }
  return out;
}

export function grokWeightsFromGguf(store: TensorStore, config: Readonly<GrokConfig>): GrokWeights {
  const c = config;
  const file = store.path;
  const D = c.embSize;
  const get = (name: string) => requireTensor(store, name);
  const norm = (name: string) => readFloatVector(get(name), D, file);

  const emb = get(GGUF_NAMES.embedding);
  checkShape(emb, [c.vocabSize, D], file);
  const embedding = ggufLinear(emb, D, c.vocabSize, file);
  // Grok-1 ties its output to the embedding; a GGUF of a fine-tune may carry its own output matrix.
  const outT = store.tensors.get(GGUF_NAMES.output);
  if (outT) checkShape(outT, [c.vocabSize, D], file);
  const output = outT ? ggufLinear(outT, D, c.vocabSize, file) : undefined;

  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    if (store.tensors.has(GGUF_NAMES.denseUp(i))) {
      throw new UnsupportedError('dense ffn', `${file}: ${GGUF_NAMES.denseUp(i)} is a dense FFN beside the experts (Grok-2); Grok-1 has only experts`);
    }
    const router = get(GGUF_NAMES.router(i));
    const outNormName = store.tensors.has(GGUF_NAMES.ffnOutNorm(i)) ? GGUF_NAMES.ffnOutNorm(i) : GGUF_NAMES.ffnOutNormAlt(i);
    if (!store.tensors.has(outNormName)) {
      throw new WeightError({ tensor: GGUF_NAMES.ffnOutNorm(i), expected: `a tensor of that name (or ${GGUF_NAMES.ffnOutNormAlt(i)})`, found: 'neither', file });
    }
    layers.push({
      attnNorm: norm(GGUF_NAMES.attnNorm(i)),
      wq: ggufLinear(get(GGUF_NAMES.q(i)), D, c.numQHeads * c.keySize, file),
      wk: ggufLinear(get(GGUF_NAMES.k(i)), D, c.numKvHeads * c.keySize, file),
      wv: ggufLinear(get(GGUF_NAMES.v(i)), D, c.numKvHeads * c.keySize, file),
      wo: ggufLinear(get(GGUF_NAMES.o(i)), c.numQHeads * c.keySize, D, file),
      attnOutNorm: norm(GGUF_NAMES.attnOutNorm(i)),
      ffnNorm: norm(GGUF_NAMES.ffnNorm(i)),
      router: ggufLinear(router, D, c.numExperts, file),
      experts: experts(store, i, c, file),
      ffnOutNorm: norm(outNormName),
    });
  }
  const finalNorm = norm(GGUF_NAMES.finalNorm);
  return {
    config: c,
    embedding,
    ...(output ? { output } : {}),
    finalNorm,
    layers,
    byteLength: totalBytes(embedding, layers, D) + (output ? output.byteLength : 0),
  };
}
