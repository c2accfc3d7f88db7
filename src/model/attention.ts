/**
 * The attention sublayer of one decoder layer (docs/REFERENCE.md §2, step 3, first half):
 * q/k/v projections, RoPE, KV cache writes, GQA attention with the soft cap, output projection.
 *
 * Legend: N rows of this call (all sequences), D width, H/Hkv heads, d head size.
 */
import type { Kernels } from '../backend/kernels.js';
import type { GrokConfig } from '../config.js';
import type { KvCache } from './kv-cache.js';
import type { ForwardBuffers } from './scratch.js';
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

/** o = Attn(a) · Wo, [N, D], from a = the rms-normed input [N, D]; both in the call's buffers. */
export function attentionBlock(
  kernels: Kernels,
  c: Readonly<GrokConfig>,
  w: LayerWeights,
  layer: number,
  b: ForwardBuffers,
  batch: readonly BatchSlice[],
): void {
  const { N, a, q, k, v, attn, positions } = b; // q, attn [N, H, d]; k, v [N, Hkv, d]
  const H = c.numQHeads;
  const Hkv = c.numKvHeads;
  const d = c.keySize;
  const kvRow = Hkv * d;
  kernels.matmulMany([q, k, v], a, N, [w.wq, w.wk, w.wv]);
  kernels.rope(q, N, H, d, positions, c.ropeBase);
  kernels.rope(k, N, Hkv, d, positions, c.ropeBase);

  for (const s of batch) {
    s.cache.append(layer, s.start, k.subarray(s.row * kvRow, (s.row + s.T) * kvRow), v.subarray(s.row * kvRow, (s.row + s.T) * kvRow));
    kernels.attention({
      out: attn.subarray(s.row * H * d, (s.row + s.T) * H * d),
      q: q.subarray(s.row * H * d, (s.row + s.T) * H * d),
      k: s.cache.k[layer]!,
      v: s.cache.v[layer]!,
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
  kernels.matmul(b.o, attn, N, w.wo);
}
