/**
 * The Hugging Face layout of Grok-1 (config.json + safetensors) ↔ GrokWeights. Two tensor naming
 * schemes exist, both read by the engines' `load_weights` (README "Scaling out" cites the files):
 *
 * - `sglang` (the default we write): `self_attn.{q,k,v,o}_proj`, `block_sparse_moe.gate`,
 *   `block_sparse_moe.experts.E.{w1,w2,w3}`: what SGLang's models/grok.py loads, and what vLLM's
 *   models/grok1.py loads through its Grok-2 path (chosen when config.json has
 *   `moe_intermediate_size`; it renames `.self_attn.`→`.attn.`, `.block_sparse_moe.`→`.moe_block.`).
 * - `hpcai` (the community conversion hpcai-tech/grok-1): `attn.*`, `moe_block.gate`,
 *   `moe_block.experts.E.{linear,linear_v,linear_1}`: what vLLM's Grok-1 path loads (also vLLM
 *   versions older than its Grok-2 support).
 *
 * Both: `model.embed_tokens`, `lm_head` (Grok-1 ties it to the embedding; the engines read it as
 * its own tensor), `model.norm`, and the four norms of each layer. Matrices are [out, in] (out-major).
 * w1/linear is the GELU-gated branch (our `gate`), w3/linear_v the linear one (`up`), w2/linear_1 down.
 *
 * Legend: V vocab, D width, H/Hkv heads, d head size, E experts, F ffn size.
 */
import { configFromJson, GROK1, makeConfig, type GrokConfig } from '../config.js';
import { ConfigError, WeightError } from '../errors.js';
import { LazyLinear, type LinearWeight } from '../tensor/linear.js';
import type { TensorInfo, TensorStore } from '../tensor/tensor.js';
import { checkShape, readFloatVector, requireTensor, totalBytes, type ExpertWeights, type GrokWeights, type LayerWeights } from './weights.js';

export type HfNaming = 'sglang' | 'hpcai';
export const HF_NAMINGS: readonly HfNaming[] = ['sglang', 'hpcai'];

export interface HfNames {
  readonly embedding: string;
  readonly output: string;
  readonly finalNorm: string;
  readonly attnNorm: (i: number) => string;
  readonly q: (i: number) => string;
  readonly k: (i: number) => string;
  readonly v: (i: number) => string;
  readonly o: (i: number) => string;
  readonly attnOutNorm: (i: number) => string;
  readonly ffnNorm: (i: number) => string;
  readonly router: (i: number) => string;
  readonly gate: (i: number, e: number) => string;
  readonly up: (i: number, e: number) => string;
  readonly down: (i: number, e: number) => string;
  readonly ffnOutNorm: (i: number) => string;
}

export function hfNames(naming: HfNaming): HfNames {
  const L = (i: number) => `model.layers.${i}`;
  const attn = naming === 'sglang' ? 'self_attn' : 'attn';
  const moe = naming === 'sglang' ? 'block_sparse_moe' : 'moe_block';
  const [gate, up, down] = naming === 'sglang' ? ['w1', 'w3', 'w2'] : ['linear', 'linear_v', 'linear_1'];
  return {
    embedding: 'model.embed_tokens.weight',
    output: 'lm_head.weight',
    finalNorm: 'model.norm.weight',
    attnNorm: (i) => `${L(i)}.pre_attn_norm.weight`,
    q: (i) => `${L(i)}.${attn}.q_proj.weight`,
    k: (i) => `${L(i)}.${attn}.k_proj.weight`,
    v: (i) => `${L(i)}.${attn}.v_proj.weight`,
    o: (i) => `${L(i)}.${attn}.o_proj.weight`,
    attnOutNorm: (i) => `${L(i)}.post_attn_norm.weight`,
    ffnNorm: (i) => `${L(i)}.pre_moe_norm.weight`,
    router: (i) => `${L(i)}.${moe}.gate.weight`,
    gate: (i, e) => `${L(i)}.${moe}.experts.${e}.${gate}.weight`,
    up: (i, e) => `${L(i)}.${moe}.experts.${e}.${up}.weight`,
    down: (i, e) => `${L(i)}.${moe}.experts.${e}.${down}.weight`,
    ffnOutNorm: (i) => `${L(i)}.post_moe_norm.weight`,
  };
}

/** Which scheme a store uses, from its first layer's query projection. */
export function detectNaming(store: TensorStore): HfNaming {
  for (const n of HF_NAMINGS) if (store.tensors.has(hfNames(n).q(0))) return n;
  throw new WeightError({ tensor: hfNames('sglang').q(0), expected: `a tensor of that name (or ${hfNames('hpcai').q(0)})`, found: 'neither', file: store.path });
}

/** The key under which config.json keeps grok-ts's own (run.py-named) config, for an exact round trip. */
export const GROK_TS_CONFIG_KEY = 'grok_ts_config';

/** run.py names of a config (what configFromJson reads back). */
function runPyConfig(c: Readonly<GrokConfig>): Record<string, number> {
  return {
    vocab_size: c.vocabSize, emb_size: c.embSize, num_q_heads: c.numQHeads, num_kv_heads: c.numKvHeads, key_size: c.keySize,
    num_layers: c.numLayers, num_experts: c.numExperts, num_selected_experts: c.numSelectedExperts, widening_factor: c.wideningFactor,
    ffn_size: c.ffnSize, sequence_len: c.sequenceLen, embedding_multiplier_scale: c.embeddingMultiplierScale,
    output_multiplier_scale: c.outputMultiplierScale, attn_output_multiplier: c.attnOutputMultiplier, attn_logit_softcap: c.attnLogitSoftcap,
    rms_norm_eps: c.rmsNormEps, rope_base: c.ropeBase, pad_token: c.padToken, eos_token: c.eosToken, bos_token: c.bosToken,
  };
}

/**
 * config.json for the engines. Field by field, what reads it:
 * - `architectures` Grok1ModelForCausalLM: the one name every vLLM version registers (registry.py:
 *   → Grok1ForCausalLM before its Grok-2 support, → the GrokForCausalLM factory since; the bare
 *   Grok1ForCausalLM is missing from older registries) and an SGLang EntryClass alias.
 * - `model_type` "git": a type transformers' AutoConfig knows that keeps unknown fields, so no
 *   remote code is needed; xai-org/grok-2's published config.json does the same.
 * - sizes (vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads,
 *   num_key_value_heads, head_dim, max_position_embeddings, rms_norm_eps, rope_theta,
 *   num_local_experts, num_experts_per_tok): both.
 * - `embedding_multiplier_scale`, `output_multiplier_scale`: both.
 * - `attn_logit_softcapping` 30: both. `attn_output_multiplier` is left out on purpose: vLLM
 *   multiplies the attention *output* by it, while Grok-1's 1/√d is the logit scale both engines
 *   already apply as head_dim^-0.5.
 * - `router_logit_softcapping` 0 and `moe_router_renormalize` false: vLLM (Grok-1's router has
 *   neither; SGLang hard-codes a cap of 30 and renormalize=False).
 * - `moe_intermediate_size`, `residual_moe` false (sglang naming only): selects vLLM's Grok-2 loader
 *   path that reads these names; residual_moe false keeps Grok-1's MoE-only layer.
 * - `load_presharded_*` false: SGLang otherwise expects per-rank pre-sharded MoE files at tp > 1.
 * - `tie_word_embeddings` false: lm_head.weight is written, which SGLang requires.
 * - `grok_ts_config`: grok-ts's own config (run.py names), so that what we read back is exact.
 */
export function hfConfigJson(c: Readonly<GrokConfig>, naming: HfNaming, dtype: 'bf16' | 'f32'): Record<string, unknown> {
  return {
    architectures: ['Grok1ModelForCausalLM'],
    model_type: 'git',
    torch_dtype: dtype === 'bf16' ? 'bfloat16' : 'float32',
    vocab_size: c.vocabSize,
    hidden_size: c.embSize,
    intermediate_size: c.ffnSize,
    ...(naming === 'sglang' ? { moe_intermediate_size: c.ffnSize, residual_moe: false } : {}),
    num_hidden_layers: c.numLayers,
    num_attention_heads: c.numQHeads,
    num_key_value_heads: c.numKvHeads,
    head_dim: c.keySize,
    max_position_embeddings: c.sequenceLen,
    rms_norm_eps: c.rmsNormEps,
    rope_theta: c.ropeBase,
    num_local_experts: c.numExperts,
    num_experts: c.numExperts,
    num_experts_per_tok: c.numSelectedExperts,
    embedding_multiplier_scale: c.embeddingMultiplierScale,
    output_multiplier_scale: c.outputMultiplierScale,
    attn_logit_softcapping: c.attnLogitSoftcap,
    router_logit_softcapping: 0.0,
    moe_router_renormalize: false,
    load_presharded_moe: false,
    load_presharded_attn: false,
    load_presharded_mlp: false,
    load_presharded_embedding: false,
    tie_word_embeddings: false,
    pad_token_id: c.padToken,
    bos_token_id: c.bosToken,
    eos_token_id: c.eosToken,
    [GROK_TS_CONFIG_KEY]: runPyConfig(c),
  };
}

/**
 * The GrokConfig of a config.json: grok-ts's own block when present (exact), else the engines'
 * fields (a conversion made elsewhere), with Grok-1's values for what they leave out.
 */
export function configFromHfJson(raw: unknown, source: string): Readonly<GrokConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) throw new ConfigError(['expected a JSON object'], source);
  const j = raw as Record<string, unknown>;
  if (j[GROK_TS_CONFIG_KEY] !== undefined) return configFromJson(j[GROK_TS_CONFIG_KEY], `${source} "${GROK_TS_CONFIG_KEY}"`);
  const problems: string[] = [];
  const num = (key: string, fallback?: number): number => {
    const v = j[key];
    if (v === undefined || v === null) {
      if (fallback === undefined) problems.push(`"${key}" is missing`);
      return fallback ?? 0;
    }
    if (typeof v !== 'number' || !Number.isFinite(v)) {
      problems.push(`"${key}" must be a finite number, found ${JSON.stringify(v)}`);
      return 0;
    }
    return v;
  };
  if (j.residual_moe === true) problems.push('"residual_moe" is true: a dense FFN beside the experts is Grok-2, not Grok-1');
  const embSize = num('hidden_size');
  const numQHeads = num('num_attention_heads');
  const keySize = num('head_dim', numQHeads > 0 ? Math.floor(embSize / numQHeads) : 0);
  const cfg = {
    vocabSize: num('vocab_size'),
    embSize,
    numQHeads,
    numKvHeads: num('num_key_value_heads', numQHeads),
    keySize,
    numLayers: num('num_hidden_layers'),
    numExperts: num('num_local_experts', typeof j.num_experts === 'number' ? j.num_experts : undefined),
    numSelectedExperts: num('num_experts_per_tok', GROK1.numSelectedExperts),
    ffnSize: num('moe_intermediate_size', typeof j.intermediate_size === 'number' ? j.intermediate_size : undefined),
    sequenceLen: num('max_position_embeddings', GROK1.sequenceLen),
    rmsNormEps: num('rms_norm_eps', GROK1.rmsNormEps),
    ropeBase: num('rope_theta', GROK1.ropeBase),
    embeddingMultiplierScale: num('embedding_multiplier_scale', GROK1.embeddingMultiplierScale),
    outputMultiplierScale: num('output_multiplier_scale', GROK1.outputMultiplierScale),
    // The engines scale attention logits by head_dim^-0.5; that is Grok-1's attn_output_multiplier.
    attnOutputMultiplier: keySize > 0 ? 1 / Math.sqrt(keySize) : GROK1.attnOutputMultiplier,
    attnLogitSoftcap: num('attn_logit_softcapping', GROK1.attnLogitSoftcap),
    padToken: num('pad_token_id', GROK1.padToken),
    bosToken: num('bos_token_id', GROK1.bosToken),
    eosToken: num('eos_token_id', GROK1.eosToken),
  };
  if (problems.length) throw new ConfigError(problems, source);
  return makeConfig(cfg, source);
}

/** An out-major [out, in] float matrix of the layout. */
function hfLinear(t: TensorInfo, inDim: number, outDim: number, file: string): LinearWeight {
  checkShape(t, [outDim, inDim], file);
  const dtype = (['bf16', 'f16', 'f32'] as const).find((d) => d === t.dtype);
  if (!dtype) throw new WeightError({ tensor: t.name, expected: 'dtype bf16, f16 or f32', found: t.dtype, file });
  return new LazyLinear(t.name, inDim, outDim, { kind: 'dense', dtype, order: 'out-major' }, t);
}

export function grokWeightsFromSafetensors(store: TensorStore, config: Readonly<GrokConfig>): GrokWeights {
  const c = config;
  const file = store.path;
  const D = c.embSize;
  const n = hfNames(detectNaming(store));
  const get = (name: string) => requireTensor(store, name);
  const norm = (name: string) => readFloatVector(get(name), D, file);
  if (store.tensors.has(n.q(c.numLayers))) {
    throw new WeightError({ tensor: n.q(c.numLayers), expected: `no layer ${c.numLayers}: config.json says ${c.numLayers} layers`, found: 'the files have more layers', file });
  }
  const embedding = hfLinear(get(n.embedding), D, c.vocabSize, file);
  const outT = store.tensors.get(n.output);
  const output = outT ? hfLinear(outT, D, c.vocabSize, file) : undefined;
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const experts: ExpertWeights[] = [];
    for (let e = 0; e < c.numExperts; e++) {
      experts.push({
        gate: hfLinear(get(n.gate(i, e)), D, c.ffnSize, file),
        up: hfLinear(get(n.up(i, e)), D, c.ffnSize, file),
        down: hfLinear(get(n.down(i, e)), c.ffnSize, D, file),
      });
    }
    if (store.tensors.has(n.gate(i, c.numExperts))) {
      throw new WeightError({ tensor: n.gate(i, c.numExperts), expected: `${c.numExperts} experts (config.json)`, found: 'more', file });
    }
    layers.push({
      attnNorm: norm(n.attnNorm(i)),
      wq: hfLinear(get(n.q(i)), D, c.numQHeads * c.keySize, file),
      wk: hfLinear(get(n.k(i)), D, c.numKvHeads * c.keySize, file),
      wv: hfLinear(get(n.v(i)), D, c.numKvHeads * c.keySize, file),
      wo: hfLinear(get(n.o(i)), c.numQHeads * c.keySize, D, file),
      attnOutNorm: norm(n.attnOutNorm(i)),
      ffnNorm: norm(n.ffnNorm(i)),
      router: hfLinear(get(n.router(i)), D, c.numExperts, file),
      experts,
      ffnOutNorm: norm(n.ffnOutNorm(i)),
    });
  }
  const finalNorm = norm(n.finalNorm);
  return { config: c, embedding, ...(output ? { output } : {}), finalNorm, layers, byteLength: totalBytes(embedding, layers, D) + (output ? output.byteLength : 0) };
}
