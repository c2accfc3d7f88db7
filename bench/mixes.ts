/**
 * llama.cpp's quantisation mixes of a grok-architecture GGUF, as llama-quantize assigns ggml types
 * per tensor (../shared/grok1/QUANT-MIXES.md: what a November 2025 llama-quantize wrote at Grok-1's
 * 64 layers; the layer rules below reproduce that table and scale with the layer count as
 * llama.cpp's do), and bench-model GGUFs written in each mix with the project's own writer.
 *
 * The project cannot run llama-quantize, so tensor data is random blocks of each tensor's type
 * (bench/random-blocks.ts) with scales calibrated to the weight size a trained model has
 * (RMS 1/√in, so activations stay O(1) through the layers): valid data of every type for a speed
 * test, the same bytes per tensor as a real file. Exactness is tested on the fixtures instead.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GrokConfig } from '../src/config.js';
import { GgufWriter, kv, type GgufTensorPlan } from '../src/formats/gguf-writer.js';
import { asLlamaCppVocabulary, grokMetadata } from '../src/convert/to-gguf.js';
import { GGUF_NAMES } from '../src/model/weights-gguf.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { ggufTokenizerKvs } from '../src/tokenizer/from-gguf.js';
import { parseModelProto } from '../src/tokenizer/sentencepiece-model.js';
import { BUNDLED_TOKENIZER_PATH } from '../src/tokenizer/sentencepiece.js';
import { randomBlocks, scaleForRms } from './random-blocks.js';

export const MIXES = [
  'Q8_0', 'Q6_K', 'Q5_K_M', 'Q4_K_M', 'Q4_K_S', 'Q3_K_M', 'Q3_K_S', 'Q2_K',
  'IQ4_XS', 'IQ3_S', 'IQ3_XXS', 'IQ2_XS', 'IQ2_XXS', 'IQ1_M', 'IQ1_S',
] as const;
export type Mix = (typeof MIXES)[number];

export type Role = 'token_embd' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_output' | 'ffn_gate_exps' | 'ffn_up_exps' | 'ffn_down_exps';

/** llama.cpp's use_more_bits(i_layer, n_layers): the first and last eighth, and every third layer between. */
function useMoreBits(i: number, n: number): boolean {
  const e = Math.floor(n / 8);
  return i < e || i >= Math.floor((7 * n) / 8) || (i - e) % 3 === 2;
}

/** The ggml type llama-quantize gives `role` in layer `layer` of `layers` under `mix` (QUANT-MIXES.md). */
export function mixType(mix: Mix, role: Role, layer: number, layers: number): string {
  const early = layer < Math.floor(layers / 8);
  const kq = (t: string, down: string): Record<Role, string> => ({
    token_embd: 'q6_k', attn_q: t, attn_k: 'q8_0', attn_v: 'q8_0', attn_output: 'q5_k', ffn_gate_exps: t, ffn_up_exps: t, ffn_down_exps: down,
  });
  const iq = (t: string, embd: string, kv: string, q: string, down: string): Record<Role, string> => ({
    token_embd: embd, attn_q: q, attn_k: kv, attn_v: kv, attn_output: 'q5_k', ffn_gate_exps: t, ffn_up_exps: t, ffn_down_exps: down,
  });
  const table: Record<Mix, () => Record<Role, string>> = {
    Q8_0: () => ({ token_embd: 'q8_0', attn_q: 'q8_0', attn_k: 'q8_0', attn_v: 'q8_0', attn_output: 'q8_0', ffn_gate_exps: 'q8_0', ffn_up_exps: 'q8_0', ffn_down_exps: 'q8_0' }),
    Q6_K: () => ({ ...kq('q6_k', 'q6_k'), attn_output: 'q6_k' }),
    Q5_K_M: () => kq('q5_k', useMoreBits(layer, layers) ? 'q6_k' : 'q5_k'),
    Q4_K_M: () => kq('q4_k', useMoreBits(layer, layers) ? 'q6_k' : 'q4_k'),
    Q4_K_S: () => kq('q4_k', early ? 'q5_k' : 'q4_k'),
    Q3_K_M: () => kq('q3_k', layer < Math.floor(layers / 16) ? 'q5_k' : 'q4_k'),
    Q3_K_S: () => kq('q3_k', 'q3_k'),
    Q2_K: () => kq('q2_k', 'q3_k'),
    IQ4_XS: () => iq('iq4_xs', 'q6_k', 'q8_0', 'iq4_xs', early ? 'q5_k' : 'iq4_xs'),
    IQ3_S: () => iq('iq3_s', 'q6_k', 'q8_0', 'iq3_s', 'iq3_s'),
    IQ3_XXS: () => iq('iq3_xxs', 'q5_k', 'q8_0', 'iq2_s', 'iq3_xxs'),
    IQ2_XS: () => iq('iq2_xs', 'q5_k', 'q4_k', 'iq2_xs', early ? 'q2_k' : 'iq2_xs'),
    IQ2_XXS: () => iq('iq2_xxs', 'q5_k', 'q4_k', 'iq2_xxs', early ? 'q2_k' : 'iq2_xxs'),
    IQ1_M: () => iq('iq1_m', 'q5_k', 'q4_k', 'iq1_m', early ? 'q2_k' : 'iq1_m'),
    IQ1_S: () => iq('iq1_s', 'q5_k', 'q4_k', 'iq1_s', early ? 'q2_k' : 'iq1_s'),
  };
  return table[mix]()[role];
}

/**
 * Every (tensor, type, shape) of a grok GGUF in `mix`, in the order convert writes them. `asLayer`
 * gives every layer the types of one layer of a deeper model (e.g. a typical layer of Grok-1's 64),
 * for a model with fewer layers that should stand for it.
 */
export function mixPlan(c: Readonly<GrokConfig>, mix: Mix, asLayer?: { layer: number; of: number }): GgufTensorPlan[] {
  const D = c.embSize;
  const L = c.numLayers;
  const E = c.numExperts;
  const F = c.ffnSize;
  const HQ = c.numQHeads * c.keySize;
  const HKV = c.numKvHeads * c.keySize;
  const m = (name: string, role: Role, layer: number, ne: number[]): GgufTensorPlan =>
    ({ name, type: asLayer ? mixType(mix, role, asLayer.layer, asLayer.of) : mixType(mix, role, layer, L), ne });
  const v = (name: string, ne: number[]): GgufTensorPlan => ({ name, type: 'f32', ne });
  const plans: GgufTensorPlan[] = [m(GGUF_NAMES.embedding, 'token_embd', 0, [D, c.vocabSize]), v(GGUF_NAMES.finalNorm, [D])];
  for (let i = 0; i < L; i++) {
    plans.push(
      v(GGUF_NAMES.attnNorm(i), [D]),
      m(GGUF_NAMES.q(i), 'attn_q', i, [D, HQ]),
      m(GGUF_NAMES.k(i), 'attn_k', i, [D, HKV]),
      m(GGUF_NAMES.v(i), 'attn_v', i, [D, HKV]),
      m(GGUF_NAMES.o(i), 'attn_output', i, [HQ, D]),
      v(GGUF_NAMES.attnOutNorm(i), [D]),
      v(GGUF_NAMES.ffnNorm(i), [D]),
      v(GGUF_NAMES.router(i), [D, E]),
      m(GGUF_NAMES.gateExps(i), 'ffn_gate_exps', i, [D, F, E]),
      m(GGUF_NAMES.upExps(i), 'ffn_up_exps', i, [D, F, E]),
      m(GGUF_NAMES.downExps(i), 'ffn_down_exps', i, [F, D, E]),
      v(GGUF_NAMES.ffnOutNorm(i), [D]),
    );
  }
  return plans;
}

/** xorshift32 as a [0, 1) stream. */
function stream(seed: number): () => number {
  let s = seed >>> 0 || 0x9e3779b9;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 4294967296;
  };
}

/** Rows written per append: bounds the memory of a write to a few MB. */
const CHUNK_BYTES = 8 << 20;

/**
 * Writes the bench model in `mix` to `file` (unless it is there already) and returns its path:
 * random blocks per tensor type, norms near 1, routers small and random (so experts are chosen
 * near-uniformly, as a pessimistic cache case would be), the real 131072-piece tokenizer.
 */
export function ensureMixGguf(c: Readonly<GrokConfig>, mix: Mix, file: string, log: (l: string) => void = () => {}, asLayer?: { layer: number; of: number }): string {
  if (fs.existsSync(file)) return file;
  log(`writing the ${mix} bench GGUF ${file} (once) …`);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  const plans = mixPlan(c, mix, asLayer);
  const tokenizer = parseModelProto(new Uint8Array(fs.readFileSync(BUNDLED_TOKENIZER_PATH)), BUNDLED_TOKENIZER_PATH);
  const kvs = [...grokMetadata(c, 'q8_0', `grok-ts bench ${mix}`).filter((e) => e.key !== 'general.file_type'), kv.string('grok-ts.bench_mix', mix), ...ggufTokenizerKvs(asLlamaCppVocabulary(tokenizer))];
  const writer = new GgufWriter(file, kvs, plans); // a temporary name until commit()
  const next = stream(0x5eed ^ mix.length);
  try {
    for (const p of plans) {
      const inDim = p.ne[0]!;
      const rows = p.ne.slice(1).reduce((a, b) => a * b, 1);
      if (p.type === 'f32') {
        const isNorm = p.ne.length === 1;
        const vals = new Float32Array(inDim * rows);
        for (let i = 0; i < vals.length; i++) vals[i] = isNorm ? 1 + 0.1 * (next() - 0.5) : (next() - 0.5) / Math.sqrt(inDim);
        writer.append(new Uint8Array(vals.buffer));
        continue;
      }
      const rowBytes = ggmlRowBytes(p.type, inDim);
      const scale = scaleForRms(p.type, 1 / Math.sqrt(inDim));
      const per = Math.max(1, Math.floor(CHUNK_BYTES / rowBytes));
      const buf = new Uint8Array(per * rowBytes);
      for (let r = 0; r < rows; r += per) {
        const n = Math.min(per, rows - r);
        const chunk = buf.subarray(0, n * rowBytes);
        randomBlocks(p.type, chunk, next, scale);
        writer.append(chunk);
      }
    }
    writer.commit();
  } catch (err) {
    writer.abort();
    throw err;
  }
  return file;
}
