/**
 * LinearWeight over a byte range of a lazily read tensor: bytes are read on first use and kept
 * until released. One expert of a stacked [E, …] tensor is a sub-range, so experts that are never
 * routed to are never read.
 */
import type { ByteSource } from './byte-source.js';
import { outMajorRowSize } from './rows.js';

/**
 * How a linear weight is stored. Every backend reads the stored form directly (quantised weights
 * stay quantised in memory); tensor/ggml.ts and backend/js/kernels.ts hold the exact
 * dequantisation that defines each one.
 */
export type LinearFormat =
  /** Plain floats; `in-major` is the checkpoint's [in, out], `out-major` is [out, in] (one row per output, GGUF's orientation). */
  | { readonly kind: 'dense'; readonly dtype: 'f32' | 'f16' | 'bf16'; readonly order: 'in-major' | 'out-major' }
  /** The official checkpoint: int8 [in, out] with bf16 scales [groups, out]; input row k uses scale row floor(k·groups/in). */
  | { readonly kind: 'int8-grouped'; readonly groups: number }
  /** A GGUF block-quantised type: out-major rows of `inDim` values each, `inDim` a multiple of the type's block. */
  | { readonly kind: 'ggml'; readonly type: string };

/** y[T, outDim] = x[T, inDim] · W. Bytes are read from disk on first use and kept until released. */
export interface LinearWeight {
  /** Parameter name for messages (with `[e]` for one expert of a stacked tensor). */
  readonly name: string;
  readonly inDim: number;
  readonly outDim: number;
  readonly format: LinearFormat;
  /** Bytes this weight occupies on disk / in memory in its stored form (weights + scales). */
  readonly byteLength: number;
  /** The stored weight bytes (for int8-grouped: the int8 values). */
  bytes(): Uint8Array;
  /** int8-grouped only: the bf16 scales, [groups, outDim] little-endian. */
  scaleBytes(): Uint8Array;
  /**
   * Out-major formats only: the bytes of rows first … first+count-1 (an embedding lookup). Served
   * from the cached bytes when held, else read from disk without caching them.
   */
  rowBytes(first: number, count: number): Uint8Array;
  /** Drops the cached bytes, e.g. once a backend has copied them into its own memory; a later bytes() re-reads. */
  release(): void;
}

export interface ByteRange {
  readonly source: ByteSource;
  readonly offset: number;
  readonly byteLength: number;
}

export class LazyLinear implements LinearWeight {
  readonly byteLength: number;
  private data: Uint8Array | undefined;
  private scaleData: Uint8Array | undefined;

  constructor(
    readonly name: string,
    readonly inDim: number,
    readonly outDim: number,
    readonly format: LinearFormat,
    /** Where the weight bytes lie (reader threads open the file themselves). */
    readonly range: ByteRange,
    readonly scales?: ByteRange,
  ) {
    this.byteLength = range.byteLength + (scales ? scales.byteLength : 0);
  }

  bytes(): Uint8Array {
    this.data ??= this.range.source.read(this.range.offset, this.range.byteLength);
    return this.data;
  }

  scaleBytes(): Uint8Array {
    if (!this.scales) throw new Error(`${this.name}: format ${this.format.kind} has no scales`);
    this.scaleData ??= this.scales.source.read(this.scales.offset, this.scales.byteLength);
    return this.scaleData;
  }

  rowBytes(first: number, count: number): Uint8Array {
    const size = outMajorRowSize(this.format, this.inDim, this.name);
    checkRows(this, first, count);
    if (this.data) return this.data.subarray(first * size, (first + count) * size);
    return this.range.source.read(this.range.offset + first * size, count * size);
  }

  release(): void {
    this.data = undefined;
    this.scaleData = undefined;
  }
}

function checkRows(w: LinearWeight, first: number, count: number): void {
  if (!Number.isSafeInteger(first) || !Number.isSafeInteger(count) || first < 0 || count < 0 || first + count > w.outDim) {
    throw new RangeError(`${w.name}: rows ${first}..${first + count - 1} are outside 0..${w.outDim - 1}`);
  }
}

/** A LinearWeight whose bytes are already in memory (converted or generated weights, tests). */
export class MemoryLinear implements LinearWeight {
  readonly byteLength: number;
  constructor(
    readonly name: string,
    readonly inDim: number,
    readonly outDim: number,
    readonly format: LinearFormat,
    private readonly data: Uint8Array,
    private readonly scales?: Uint8Array,
  ) {
    this.byteLength = data.byteLength + (scales ? scales.byteLength : 0);
  }
  bytes(): Uint8Array {
    return this.data;
  }
  scaleBytes(): Uint8Array {
    if (!this.scales) throw new Error(`${this.name}: format ${this.format.kind} has no scales`);
    return this.scales;
  }
  rowBytes(first: number, count: number): Uint8Array {
    const size = outMajorRowSize(this.format, this.inDim, this.name);
    checkRows(this, first, count);
    return this.data.subarray(first * size, (first + count) * size);
  }
  release(): void {}
}
