/**
 * Random checkpoints of any size of the Grok architecture, in the official ckpt-0 layout (int8
 * matrices with bf16 scales, f32 embedding/norms/router), for benchmarks and tests. The values are
 * seeded and scaled so activations stay O(1); they test arithmetic and speed, not language.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GrokConfig } from '../src/config.js';
import { writeCheckpoint, type ArraySpec, type LeafSpec } from '../src/formats/xai-checkpoint-writer.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';

/** xorshift32 words into a byte chunk. */
function randomWords(seed: number): (chunk: Uint8Array) => void {
  let s = seed >>> 0 || 0x9e3779b9;
  return (chunk) => {
    const words = Math.floor(chunk.length / 4);
    const dv = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    for (let i = 0; i < words; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      dv.setUint32(i * 4, s >>> 0, true);
    }
    for (let i = words * 4; i < chunk.length; i++) {
      s ^= s << 13;
      s ^= s >>> 17;
      s ^= s << 5;
      chunk[i] = s & 0xff;
    }
  };
}

function hash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

function int8(shape: number[], seed: number): ArraySpec {
  const rnd = randomWords(seed);
  return { dtype: 'i8', shape, fill: (_o, c) => rnd(c) };
}

/** f32 values uniform in center ± spread. */
function f32(shape: number[], seed: number, center: number, spread: number): ArraySpec {
  const rnd = randomWords(seed);
  return {
    dtype: 'f32',
    shape,
    fill: (_o, c) => {
      rnd(c);
      const u = new Uint32Array(c.buffer, c.byteOffset, c.byteLength / 4);
      const f = new Float32Array(c.buffer, c.byteOffset, c.byteLength / 4);
      for (let i = 0; i < u.length; i++) f[i] = center + spread * (u[i]! / 2 ** 31 - 1);
    },
  };
}

/** bf16 scales around `scale` (×0.5…1.5). */
function bf16(shape: number[], seed: number, scale: number): ArraySpec {
  const rnd = randomWords(seed);
  return {
    dtype: 'bf16',
    shape,
    fill: (_o, c) => {
      rnd(c);
      const u = new Uint16Array(c.buffer, c.byteOffset, c.byteLength / 2);
      for (let i = 0; i < u.length; i++) u[i] = f32ToBf16(scale * (0.5 + u[i]! / 65536));
    },
  };
}

/** int8 [.., in, out] with G groups of bf16 scales, scaled so y = x·W keeps x's magnitude. */
function quantized(lead: number[], inDim: number, outDim: number, groups: number, seed: number): LeafSpec {
  return { weight: int8([...lead, inDim, outDim], seed), scales: bf16([...lead, groups, outDim], seed + 1, 1 / (74 * Math.sqrt(inDim))) };
}

export function syntheticLeaf(c: Readonly<GrokConfig>, name: string, seed = 1): LeafSpec {
  const D = c.embSize;
  const s = seed ^ hash(name);
  const leaf = name.replace(/^transformer\/decoder_layer_\d+\/|^language_model\//, '').replace(/^multi_head_attention\//, '');
  const E = c.numExperts;
  switch (leaf) {
    case 'in_out_embed/embeddings':
      return f32([c.vocabSize, D], s, 0, 0.05);
    case 'moe/linear/w':
    case 'moe/linear_v/w':
      return quantized([E], D, c.ffnSize, 1, s);
    case 'moe/linear_1/w':
      return quantized([E], c.ffnSize, D, 8 <= c.ffnSize && c.ffnSize % 8 === 0 ? 8 : 1, s);
    case 'query/w':
      return quantized([], D, c.numQHeads * c.keySize, 1, s);
    case 'key/w':
    case 'value/w':
      return quantized([], D, c.numKvHeads * c.keySize, 1, s);
    case 'linear/w':
      return quantized([], c.numQHeads * c.keySize, D, (c.numQHeads * c.keySize) % 8 === 0 ? 8 : 1, s);
    case 'router/w':
      return f32([D, E], s, 0, 0.5 / Math.sqrt(D));
    default:
      if (leaf.endsWith('/scale')) return f32([D], s, 1, 0.1); // rms_norm*, language_model/rms_norm
      throw new Error(`no synthetic spec for ${name}`);
  }
}

/** The run.py-style config.json for a config (what the reader expects beside ckpt-0). */
export function configJson(c: Readonly<GrokConfig>): Record<string, number> {
  return {
    vocab_size: c.vocabSize,
    emb_size: c.embSize,
    num_q_heads: c.numQHeads,
    num_kv_heads: c.numKvHeads,
    key_size: c.keySize,
    num_layers: c.numLayers,
    num_experts: c.numExperts,
    num_selected_experts: c.numSelectedExperts,
    widening_factor: c.wideningFactor,
    ffn_size: c.ffnSize,
    sequence_len: c.sequenceLen,
    embedding_multiplier_scale: c.embeddingMultiplierScale,
    output_multiplier_scale: c.outputMultiplierScale,
    attn_output_multiplier: c.attnOutputMultiplier,
    pad_token: c.padToken,
    eos_token: c.eosToken,
  };
}

/** Writes `dir/config.json` and `dir/ckpt-0/` unless a complete one with the same config and seed is there. */
export function ensureSyntheticCheckpoint(dir: string, c: Readonly<GrokConfig>, seed = 1, onFile?: (i: number, n: number) => void): string {
  const marker = path.join(dir, 'COMPLETE');
  const want = JSON.stringify({ ...configJson(c), seed });
  if (fs.existsSync(marker) && fs.readFileSync(marker, 'utf8') === want) return dir;
  fs.mkdirSync(dir, { recursive: true });
  fs.rmSync(marker, { force: true });
  writeCheckpoint(path.join(dir, 'ckpt-0'), c.numLayers, (name) => syntheticLeaf(c, name, seed), onFile);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(configJson(c), null, 1));
  fs.writeFileSync(marker, want);
  return dir;
}
