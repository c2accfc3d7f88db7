/**
 * Per-sequence KV cache: K (after RoPE) and V for every layer, [S, Hkv·d] each, plus which slots
 * hold real tokens (pad ids are masked as keys). It grows by doubling up to the context length, so
 * a short chat does not reserve the full context up front. Its arrays come from the backend where
 * it offers storage its kernels read in place (the wasm backend's memory), else from the JS heap.
 *
 * The model writes through the cache, never into its arrays: per call it marks which new slots hold
 * real tokens (markKeys), appends each layer's K/V rows (append), then advances the length
 * (commit) once every layer has run. Readers (the attention kernel) take `k`, `v` and `keyValid`.
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

  /**
   * Records, for the slots from `start` on, whether each holds a real token (1) or a pad id (0,
   * masked as a key). The slots must have been reserved.
   */
  markKeys(start: number, valid: ArrayLike<number>): void {
    this.checkSlots(start, valid.length);
    for (let i = 0; i < valid.length; i++) this.keyValid[start + i] = valid[i] ? 1 : 0;
  }

  /**
   * Writes rows of K (after RoPE) and V for `layer` at slots start, start + 1, …: `k` and `v` hold
   * whole rows of Hkv·d floats, as many as there are new tokens. The slots must have been reserved.
   */
  append(layer: number, start: number, k: Float32Array, v: Float32Array): void {
    const rows = k.length / this.rowSize;
    if (!Number.isInteger(rows) || v.length !== k.length) {
      throw new RangeError(`KV rows must be whole rows of ${this.rowSize} floats, got k ${k.length} and v ${v.length}`);
    }
    if (!Number.isInteger(layer) || layer < 0 || layer >= this.config.numLayers) throw new RangeError(`layer ${layer} is outside [0, ${this.config.numLayers})`);
    this.checkSlots(start, rows);
    this.k[layer]!.set(k, start * this.rowSize);
    this.v[layer]!.set(v, start * this.rowSize);
  }

  /** The n slots after `length`, written by append in every layer, now hold tokens: length += n. */
  commit(n: number): void {
    if (!Number.isInteger(n) || n < 0 || this.length + n > this.cap) throw new RangeError(`cannot commit ${n} tokens to a cache of ${this.length} tokens with room for ${this.cap}`);
    this.length += n;
  }

  private checkSlots(start: number, n: number): void {
    if (!Number.isInteger(start) || start < 0 || start > this.length || start + n > this.cap) {
      throw new RangeError(`slots ${start}..${start + n - 1} are not writable in a cache of ${this.length} tokens with room for ${this.cap} (reserve first)`);
    }
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
