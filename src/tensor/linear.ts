/**
 * LinearWeight over a byte range of a lazily read tensor: bytes are read on first use and kept
 * until released. One expert of a stacked [E, …] tensor is a sub-range, so experts that are never
 * routed to are never read.
 */
import type { LinearFormat, LinearWeight } from '../backend/kernels.js';
import type { ByteSource } from '../formats/tensor-file.js';
import { outMajorRowSize } from './rows.js';

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
    private readonly weights: ByteRange,
    private readonly scales?: ByteRange,
  ) {
    this.byteLength = weights.byteLength + (scales ? scales.byteLength : 0);
  }

  bytes(): Uint8Array {
    this.data ??= this.weights.source.read(this.weights.offset, this.weights.byteLength);
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
    return this.weights.source.read(this.weights.offset + first * size, count * size);
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
