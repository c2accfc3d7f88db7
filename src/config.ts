/**
 * GrokConfig: the Grok-1 preset with run.py's numbers, overridable by a `config.json` beside a
 * checkpoint (run.py's snake_case names, plus attn_logit_softcap, rms_norm_eps, rope_base,
 * ffn_size and bos_token for what model.py hard-codes or derives) or by GGUF metadata. Sizes
 * derive once, here.
 */
import { ConfigError } from './errors.js';

export interface GrokConfig {
  vocabSize: number;
  embSize: number; // D
  numQHeads: number; // H
  numKvHeads: number; // Hkv
  keySize: number; // d (= value size)
  numLayers: number;
  numExperts: number; // E
  numSelectedExperts: number; // K (top-k)
  wideningFactor: number;
  ffnSize: number; // F, derived from embSize and wideningFactor unless given
  sequenceLen: number; // context length
  embeddingMultiplierScale: number;
  outputMultiplierScale: number;
  attnOutputMultiplier: number;
  /** Attention logits are capped at cap·tanh(x/cap) (model.py hard-codes 30). */
  attnLogitSoftcap: number;
  rmsNormEps: number;
  ropeBase: number;
  padToken: number;
  eosToken: number;
  bosToken: number;
}

/** run.py's Grok-1 numbers (docs/REFERENCE.md §1). */
export const GROK1: Readonly<GrokConfig> = Object.freeze({
  vocabSize: 128 * 1024,
  embSize: 48 * 128,
  numQHeads: 48,
  numKvHeads: 8,
  keySize: 128,
  numLayers: 64,
  numExperts: 8,
  numSelectedExperts: 2,
  wideningFactor: 8,
  ffnSize: 32768,
  sequenceLen: 8192,
  embeddingMultiplierScale: 78.38367176906169,
  outputMultiplierScale: 0.5773502691896257,
  attnOutputMultiplier: 0.08838834764831845,
  attnLogitSoftcap: 30,
  rmsNormEps: 1e-5,
  ropeBase: 10000,
  padToken: 0,
  eosToken: 2,
  bosToken: 1,
});

/** model.py's ffn_size: f = int(w·D)·2 // 3, rounded up to a multiple of 8 (Python floor/mod). */
export function ffnSize(embSize: number, wideningFactor: number): number {
  const f = Math.floor((Math.trunc(wideningFactor * embSize) * 2) / 3);
  return f + ((((8 - f) % 8) + 8) % 8);
}

/** run.py / config.json field names → ours. */
const JSON_FIELDS: Record<string, keyof GrokConfig> = {
  vocab_size: 'vocabSize',
  emb_size: 'embSize',
  num_q_heads: 'numQHeads',
  num_kv_heads: 'numKvHeads',
  key_size: 'keySize',
  num_layers: 'numLayers',
  num_experts: 'numExperts',
  num_selected_experts: 'numSelectedExperts',
  widening_factor: 'wideningFactor',
  ffn_size: 'ffnSize',
  sequence_len: 'sequenceLen',
  embedding_multiplier_scale: 'embeddingMultiplierScale',
  output_multiplier_scale: 'outputMultiplierScale',
  attn_output_multiplier: 'attnOutputMultiplier',
  attn_logit_softcap: 'attnLogitSoftcap',
  rms_norm_eps: 'rmsNormEps',
  rope_base: 'ropeBase',
  pad_token: 'padToken',
  eos_token: 'eosToken',
  bos_token: 'bosToken',
};

const INTEGER_FIELDS: ReadonlyArray<keyof GrokConfig> = [
  'vocabSize', 'embSize', 'numQHeads', 'numKvHeads', 'keySize', 'numLayers', 'numExperts',
  'numSelectedExperts', 'ffnSize', 'sequenceLen', 'padToken', 'eosToken', 'bosToken',
];

/** Parses a run.py-style config object (snake_case); unknown fields are errors, not silently ignored. */
export function configFromJson(raw: unknown, source = 'config.json'): Readonly<GrokConfig> {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new ConfigError(['expected a JSON object'], source);
  }
  const partial: Partial<Record<keyof GrokConfig, number>> = {};
  const problems: string[] = [];
  for (const [key, value] of Object.entries(raw as Record<string, unknown>)) {
    const field = JSON_FIELDS[key];
    if (!field) {
      problems.push(`unknown field "${key}"`);
      continue;
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      problems.push(`"${key}" must be a finite number, found ${JSON.stringify(value)}`);
      continue;
    }
    partial[field] = value;
  }
  if (problems.length) throw new ConfigError(problems, source);
  return makeConfig(partial, source);
}

/**
 * Builds a frozen config from the Grok-1 preset plus overrides, validating everything and
 * reporting every problem at once. ffnSize derives from embSize/wideningFactor unless given.
 */
export function makeConfig(raw: Partial<GrokConfig>, source?: string): Readonly<GrokConfig> {
  const c: GrokConfig = { ...GROK1, ...raw };
  if (raw.ffnSize === undefined) c.ffnSize = ffnSize(c.embSize, c.wideningFactor);
  const problems: string[] = [];
  for (const f of INTEGER_FIELDS) {
    if (!Number.isSafeInteger(c[f]) || c[f] < 0) problems.push(`${f} must be a non-negative integer, found ${c[f]}`);
  }
  for (const f of ['vocabSize', 'embSize', 'numQHeads', 'numKvHeads', 'keySize', 'numLayers', 'numExperts', 'numSelectedExperts', 'ffnSize', 'sequenceLen'] as const) {
    if (c[f] === 0) problems.push(`${f} must be positive`);
  }
  if (c.numKvHeads > 0 && c.numQHeads % c.numKvHeads !== 0) {
    problems.push(`numQHeads ${c.numQHeads} is not a multiple of numKvHeads ${c.numKvHeads}`);
  }
  if (c.numSelectedExperts > c.numExperts) problems.push(`top-${c.numSelectedExperts} of ${c.numExperts} experts`);
  if (c.keySize % 2 !== 0) problems.push(`keySize ${c.keySize} must be even for rotate-half RoPE`);
  for (const f of ['padToken', 'eosToken', 'bosToken'] as const) {
    if (c[f] >= c.vocabSize) problems.push(`${f} ${c[f]} is outside the vocabulary of ${c.vocabSize}`);
  }
  for (const f of ['embeddingMultiplierScale', 'outputMultiplierScale', 'attnOutputMultiplier', 'rmsNormEps', 'ropeBase', 'wideningFactor'] as const) {
    if (!Number.isFinite(c[f]) || c[f] <= 0) problems.push(`${f} must be a positive number, found ${c[f]}`);
  }
  if (!Number.isFinite(c.attnLogitSoftcap) || c.attnLogitSoftcap < 0) {
    problems.push(`attnLogitSoftcap must be ≥ 0 (0 = off), found ${c.attnLogitSoftcap}`);
  }
  if (problems.length) throw new ConfigError(problems, source);
  return Object.freeze(c);
}

/** Number of parameters the config implies (embedding counted once: it is tied). */
export function parameterCount(c: GrokConfig): number {
  const attn = c.embSize * c.keySize * (2 * c.numQHeads + 2 * c.numKvHeads);
  const moe = c.numExperts * 3 * c.embSize * c.ffnSize + c.embSize * c.numExperts;
  const norms = 4 * c.embSize;
  return c.vocabSize * c.embSize + c.embSize + c.numLayers * (attn + moe + norms);
}
