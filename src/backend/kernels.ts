/**
 * The kernel interface the model calls. The forward pass (model/) is written once against this;
 * backends (js = the exact oracle, wasm = SIMD on worker threads) implement it and are swapped,
 * never forked into a second model.
 *
 * Legend: T rows (tokens in this call, across all sequences of a batch), D model width,
 * H query heads, Hkv KV heads, d head size, S cache slots.
 */
import type { LinearWeight } from '../tensor/linear.js';

export interface AttentionArgs {
  /** [T, H·d] output, head-major columns. */
  readonly out: Float32Array;
  /** [T, H·d] queries, RoPE already applied. */
  readonly q: Float32Array;
  /** This layer's cache, [S, Hkv·d] each, K after RoPE; the T new rows are already written at start..start+T-1. */
  readonly k: Float32Array;
  readonly v: Float32Array;
  /** [S] 1 where the slot holds a non-pad token (pad ids are masked as keys). */
  readonly keyValid: Uint8Array;
  readonly T: number;
  /** Position of the first query row; query i sees keys j ≤ start + i. */
  readonly start: number;
  readonly numQHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  /** Attention logits are multiplied by this (attn_output_multiplier)… */
  readonly scale: number;
  /** …then capped at softcap·tanh(x/softcap) (0 = no cap), then masked, then softmaxed. */
  readonly softcap: number;
}

export interface Kernels {
  readonly name: string;
  /** out[T, w.outDim] = x[T, w.inDim] · w. */
  matmul(out: Float32Array, x: Float32Array, T: number, w: LinearWeight): void;
  /**
   * outs[i][T, ws[i].outDim] = x[T, I] · ws[i] for weights sharing one input (q/k/v; an expert's
   * gate/up), each result exactly matmul's: a backend may stage or quantise x once for all of them.
   */
  matmulMany(outs: readonly Float32Array[], x: Float32Array, T: number, ws: readonly LinearWeight[]): void;
  /** out[t] = x[t] / sqrt(mean(x[t]²) + eps) · scale, per row of D. `out` may alias `x`. */
  rmsNorm(out: Float32Array, x: Float32Array, T: number, D: number, scale: Float32Array, eps: number): void;
  /** Rotate-half RoPE in place on x [T, heads·headDim]; row t is at position positions[t]. */
  rope(x: Float32Array, T: number, heads: number, headDim: number, positions: Int32Array, base: number): void;
  /** GQA attention: query head h uses KV head floor(h / (H/Hkv)). */
  attention(a: AttentionArgs): void;
  /** gate[i] = gelu_tanh(gate[i]) · up[i] for i < n, in place. */
  geluMul(gate: Float32Array, up: Float32Array, n: number): void;
  /**
   * Brings a weight into this backend's resident form now instead of at its first matmul (the wasm
   * backend packs it into wasm memory and releases the JS copy). Returns false when the backend
   * keeps no form of its own for this weight.
   */
  prepare?(w: LinearWeight): boolean;
  /**
   * Zero-filled storage for n floats that this backend's kernels read in place (the KV cache),
   * or absent when plain Float32Arrays serve. Return it with freeFloats. `attention` may then
   * assume nothing but the model writes into it.
   */
  allocFloats?(n: number): Float32Array;
  freeFloats?(a: Float32Array): void;
  /** Frees worker threads / memories. The js backend has nothing to free. */
  close(): Promise<void>;
}
