/**
 * The attention sublayer of one decoder layer (docs/REFERENCE.md §2, step 3, first half):
 * q/k/v projections, RoPE, KV cache writes, GQA attention with the soft cap, output projection.
 *
 * Legend: N rows of this call (all sequences), D width, H/Hkv heads, d head size.
 */
import type { Kernels } from '../backend/kernels.js';
import type { GrokConfig } from '../config.js';
import type { KvCache } from './kv-cache.js';
import type { LayerWeights } from './weights.js';

/** Where each sequence's rows sit in the batch and in its cache. */
export interface BatchSlice {
  readonly cache: KvCache;
  /** First row of this sequence in the batch. */
  readonly row: number;
  /** Rows (new tokens) of this sequence. */
  readonly T: number;
  /** Cache position of its first new token (the cache length before this call). */
  readonly start: number;
}

/** Returns o = Attn(a) · Wo, [N, D]. */
export function attentionBlock(
  kernels: Kernels,
  c: Readonly<GrokConfig>,
  w: LayerWeights,
  layer: number,
  a: Float32Array, // [N, D], already rms-normed
  N: number,
  positions: Int32Array, // [N]
  batch: readonly BatchSlice[],
): Float32Array {
  const H = c.numQHeads;
  const Hkv = c.numKvHeads;
  const d = c.keySize;
  const kvRow = Hkv * d;
  const q = new Float32Array(N * H * d); // [N, H, d]
  const k = new Float32Array(N * kvRow); // [N, Hkv, d]
  const v = new Float32Array(N * kvRow); // [N, Hkv, d]
  kernels.matmul(q, a, N, w.wq);
  kernels.matmul(k, a, N, w.wk);
  kernels.matmul(v, a, N, w.wv);
  kernels.rope(q, N, H, d, positions, c.ropeBase);
  kernels.rope(k, N, Hkv, d, positions, c.ropeBase);

  const attn = new Float32Array(N * H * d); // [N, H·d], head-major columns
  for (const s of batch) {
    const kc = s.cache.k[layer]!;
    const vc = s.cache.v[layer]!;
    kc.set(k.subarray(s.row * kvRow, (s.row + s.T) * kvRow), s.start * kvRow);
    vc.set(v.subarray(s.row * kvRow, (s.row + s.T) * kvRow), s.start * kvRow);
    kernels.attention({
      out: attn.subarray(s.row * H * d, (s.row + s.T) * H * d),
      q: q.subarray(s.row * H * d, (s.row + s.T) * H * d),
      k: kc,
      v: vc,
      keyValid: s.cache.keyValid,
      T: s.T,
      start: s.start,
      numQHeads: H,
      numKvHeads: Hkv,
      headDim: d,
      scale: c.attnOutputMultiplier,
      softcap: c.attnLogitSoftcap,
    });
  }
  const o = new Float32Array(N * c.embSize); // [N, D]
  kernels.matmul(o, attn, N, w.wo);
  return o;
}
