/**
 * Per-sequence KV cache: K (after RoPE) and V for every layer, [S, Hkv·d] each, plus which slots
 * hold real tokens (pad ids are masked as keys). It grows by doubling up to the context length, so
 * a short chat does not reserve the full context up front. Its arrays come from the backend where
 * it offers storage its kernels read in place (the wasm backend's memory), else from the JS heap.
 */
import type { GrokConfig } from '../config.js';
import { ContextLengthError } from '../errors.js';

/** Where the K/V arrays live (Kernels.allocFloats / freeFloats). */
export interface FloatStorage {
  allocFloats(n: number): Float32Array;
  freeFloats(a: Float32Array): void;
}

export class KvCache {
  /** Slots written so far: the position of the next token. */
  length = 0;
  private cap = 0;
  k: Float32Array[] = [];
  v: Float32Array[] = [];
  keyValid = new Uint8Array(0);
  private readonly rowSize: number;

  constructor(private readonly config: Readonly<GrokConfig>, initialCapacity = 64, private readonly storage?: FloatStorage) {
    this.rowSize = config.numKvHeads * config.keySize;
    this.grow(Math.min(initialCapacity, config.sequenceLen));
  }

  get capacity(): number {
    return this.cap;
  }

  /** Bytes held (both K and V over all layers). */
  get byteLength(): number {
    return this.cap * this.rowSize * 4 * 2 * this.config.numLayers + this.cap;
  }

  /** Makes room for n more tokens; beyond the context length it is a ContextLengthError. */
  reserve(n: number): void {
    const need = this.length + n;
    if (need > this.config.sequenceLen) {
      throw new ContextLengthError(need, this.config.sequenceLen, `the cache holds ${this.length} tokens and ${n} more were given`);
    }
    if (need > this.cap) this.grow(Math.min(this.config.sequenceLen, Math.max(need, this.cap * 2)));
  }

  /** Forgets everything from position n on (n ≤ length), e.g. to reuse a shared prefix. */
  truncate(n: number): void {
    if (!Number.isInteger(n) || n < 0 || n > this.length) throw new RangeError(`cannot truncate a cache of ${this.length} tokens to ${n}`);
    this.length = n;
  }

  /** Drops the buffers; the cache is empty afterwards and regrows on use. */
  free(): void {
    this.release(this.k);
    this.release(this.v);
    this.length = 0;
    this.cap = 0;
    this.k = [];
    this.v = [];
    this.keyValid = new Uint8Array(0);
  }

  private grow(cap: number): void {
    const L = this.config.numLayers;
    const keep = this.length * this.rowSize;
    const copy = (old: Float32Array | undefined): Float32Array => {
      const a = this.storage && cap > 0 ? this.storage.allocFloats(cap * this.rowSize) : new Float32Array(cap * this.rowSize);
      if (old) a.set(old.subarray(0, keep));
      return a;
    };
    const k: Float32Array[] = [];
    const v: Float32Array[] = [];
    for (let l = 0; l < L; l++) {
      k.push(copy(this.k[l]));
      v.push(copy(this.v[l]));
    }
    const valid = new Uint8Array(cap);
    valid.set(this.keyValid.subarray(0, this.length));
    this.release(this.k);
    this.release(this.v);
    this.k = k;
    this.v = v;
    this.keyValid = valid;
    this.cap = cap;
  }

  private release(arrays: Float32Array[]): void {
    if (this.storage) for (const a of arrays) this.storage.freeFloats(a);
  }
}
