/**
 * GGUF writer (version 3, little-endian): the header is encoded in memory (metadata, tensor infos,
 * padding), then tensor data is streamed to disk in order, each tensor padded to the alignment, in
 * the layout ggml's gguf.cpp requires (tensor offsets consecutive in the data section).
 *
 * Output goes to `NAME.tmp-<pid>` and is renamed only when every file of the output is complete,
 * so an interrupted run never leaves a file that looks finished. `--split-max-size` writes a
 * gguf-split shard set (`NAME-00001-of-0000N.gguf`, split.no / split.count / split.tensors.count,
 * all model metadata in the first shard), which llama.cpp loads from the first shard.
 */
import * as fs from 'node:fs';
import { UsageError } from '../errors.js';
import { ggmlRowBytes, ggmlType } from '../tensor/ggml.js';
import { GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUF_VALUE_TYPES, type GgufArray, type GgufValue, type GgufValueType } from './gguf.js';

export interface GgufKv {
  readonly key: string;
  readonly type: GgufValueType;
  readonly value: GgufValue;
}

/** Builders for metadata entries of each type. */
export const kv = {
  u16: (key: string, value: number): GgufKv => ({ key, type: 'u16', value }),
  u32: (key: string, value: number): GgufKv => ({ key, type: 'u32', value }),
  i32: (key: string, value: number): GgufKv => ({ key, type: 'i32', value }),
  f32: (key: string, value: number): GgufKv => ({ key, type: 'f32', value }),
  bool: (key: string, value: boolean): GgufKv => ({ key, type: 'bool', value }),
  string: (key: string, value: string): GgufKv => ({ key, type: 'string', value }),
  strings: (key: string, items: readonly string[]): GgufKv => ({ key, type: 'array', value: { itemType: 'string', items } }),
  f32s: (key: string, items: Float32Array): GgufKv => ({ key, type: 'array', value: { itemType: 'f32', items } }),
  i32s: (key: string, items: Int32Array): GgufKv => ({ key, type: 'array', value: { itemType: 'i32', items } }),
};

export interface GgufTensorPlan {
  readonly name: string;
  /** ggml type name (`q8_0`, …). */
  readonly type: string;
  /** GGUF dimensions, fastest first. */
  readonly ne: readonly number[];
}

/** Bytes of a planned tensor's data. */
export function tensorBytes(t: GgufTensorPlan): number {
  const rows = t.ne.slice(1).reduce((a, b) => a * b, 1);
  return rows * ggmlRowBytes(t.type, t.ne[0] ?? 1);
}

const align = (n: number, a: number) => Math.ceil(n / a) * a;

/** A growable little-endian byte buffer. */
class ByteWriter {
  private buf = new Uint8Array(1 << 16);
  private view = new DataView(this.buf.buffer);
  length = 0;
  private readonly encoder = new TextEncoder();

  private ensure(n: number): void {
    if (this.length + n <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < this.length + n) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
    this.view = new DataView(next.buffer);
  }
  bytes(b: Uint8Array): void {
    this.ensure(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }
  u32(v: number): void {
    this.ensure(4);
    this.view.setUint32(this.length, v, true);
    this.length += 4;
  }
  u64(v: number | bigint): void {
    this.ensure(8);
    this.view.setBigUint64(this.length, BigInt(v), true);
    this.length += 8;
  }
  string(s: string): void {
    const b = this.encoder.encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  scalar(type: GgufValueType, v: number | bigint | boolean): void {
    const sizes: Partial<Record<GgufValueType, number>> = { u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, u64: 8, i64: 8, f64: 8 };
    const n = sizes[type]!;
    this.ensure(n);
    const d = this.view;
    const at = this.length;
    switch (type) {
      case 'u8': d.setUint8(at, v as number); break;
      case 'i8': d.setInt8(at, v as number); break;
      case 'u16': d.setUint16(at, v as number, true); break;
      case 'i16': d.setInt16(at, v as number, true); break;
      case 'u32': d.setUint32(at, v as number, true); break;
      case 'i32': d.setInt32(at, v as number, true); break;
      case 'f32': d.setFloat32(at, v as number, true); break;
      case 'f64': d.setFloat64(at, v as number, true); break;
      case 'bool': d.setUint8(at, v ? 1 : 0); break;
      case 'u64': d.setBigUint64(at, BigInt(v as number | bigint), true); break;
      case 'i64': d.setBigInt64(at, BigInt(v as number | bigint), true); break;
      default: throw new Error(`not a scalar type: ${type}`);
    }
    this.length += n;
  }
  value(type: GgufValueType, v: GgufValue): void {
    if (type === 'string') return this.string(v as string);
    if (type !== 'array') return this.scalar(type, v as number | bigint | boolean);
    const a = v as GgufArray;
    this.u32(GGUF_VALUE_TYPES.indexOf(a.itemType));
    const items = a.items as ArrayLike<GgufValue>;
    this.u64(items.length);
    for (let i = 0; i < items.length; i++) this.value(a.itemType, items[i]!);
  }
  result(): Uint8Array {
    return this.buf.slice(0, this.length);
  }
}

/** The header bytes of a GGUF file (padded to the alignment) and where each tensor's data goes. */
export function encodeGgufHeader(
  kvs: readonly GgufKv[],
  tensors: readonly GgufTensorPlan[],
  alignment = GGUF_DEFAULT_ALIGNMENT,
): { header: Uint8Array; offsets: number[]; dataBytes: number } {
  const w = new ByteWriter();
  w.bytes(new TextEncoder().encode(GGUF_MAGIC));
  w.u32(3);
  w.u64(tensors.length);
  w.u64(kvs.length + (alignment === GGUF_DEFAULT_ALIGNMENT ? 0 : 1));
  const seen = new Set<string>();
  for (const e of kvs) {
    if (seen.has(e.key)) throw new UsageError(`metadata key ${e.key} given twice`, 'metadata');
    seen.add(e.key);
    w.string(e.key);
    w.u32(GGUF_VALUE_TYPES.indexOf(e.type));
    w.value(e.type, e.value);
  }
  if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    w.string('general.alignment');
    w.u32(GGUF_VALUE_TYPES.indexOf('u32'));
    w.u32(alignment);
  }
  const offsets: number[] = [];
  let at = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.ne.length);
    for (const n of t.ne) w.u64(n);
    w.u32(ggmlType(t.type, t.name).id);
    w.u64(at);
    offsets.push(at);
    at += align(tensorBytes(t), alignment);
  }
  w.bytes(new Uint8Array(align(w.length, alignment) - w.length));
  return { header: w.result(), offsets, dataBytes: at };
}

/** One output file being written: header first, then tensor data in plan order, chunk by chunk. */
class GgufFileStream {
  private fd: number | undefined;
  private position = 0;
  private tensorIndex = 0;
  private writtenOfTensor = 0;

  constructor(
    readonly path: string,
    readonly tempPath: string,
    private readonly tensors: readonly GgufTensorPlan[],
    header: Uint8Array,
    private readonly alignment: number,
  ) {
    this.fd = fs.openSync(tempPath, 'w');
    this.write(header);
  }

  private write(bytes: Uint8Array): void {
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(this.fd!, bytes, done, bytes.length - done, this.position + done);
    this.position += bytes.length;
  }

  get currentTensor(): GgufTensorPlan | undefined {
    return this.tensors[this.tensorIndex];
  }

  /** Appends bytes of the current tensor; when it is complete, pads and moves to the next. */
  append(bytes: Uint8Array): void {
    const t = this.currentTensor;
    if (!t) throw new Error(`${this.path}: all tensors are already written`);
    const total = tensorBytes(t);
    if (this.writtenOfTensor + bytes.length > total) {
      throw new Error(`${this.path}: tensor ${t.name} gets ${this.writtenOfTensor + bytes.length} bytes, more than its ${total}`);
    }
    this.write(bytes);
    this.writtenOfTensor += bytes.length;
    if (this.writtenOfTensor === total) {
      this.write(new Uint8Array(align(total, this.alignment) - total));
      this.tensorIndex++;
      this.writtenOfTensor = 0;
    }
  }

  get complete(): boolean {
    return this.tensorIndex === this.tensors.length;
  }

  close(): void {
    if (this.fd === undefined) return;
    fs.fsyncSync(this.fd);
    fs.closeSync(this.fd);
    this.fd = undefined;
  }

  discard(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
    fs.rmSync(this.tempPath, { force: true });
  }
}

export interface GgufWriteOptions {
  /** Start a new gguf-split shard before a shard's tensor data would exceed this many bytes. */
  readonly splitMaxBytes?: number;
  readonly alignment?: number;
}

/** The output file names for `out` split into `count` shards (gguf-split's naming). */
export function shardNames(out: string, count: number): string[] {
  if (count === 1) return [out];
  const base = out.replace(/\.gguf$/i, '');
  const pad = (n: number) => String(n).padStart(5, '0');
  return Array.from({ length: count }, (_, i) => `${base}-${pad(i + 1)}-of-${pad(count)}.gguf`);
}

/** Groups tensors (in order) into shards of at most maxBytes of data each; a larger tensor gets a shard of its own. */
export function planShards(tensors: readonly GgufTensorPlan[], maxBytes: number | undefined, alignment: number): GgufTensorPlan[][] {
  if (!maxBytes) return [tensors.slice()];
  const shards: GgufTensorPlan[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const n = align(tensorBytes(t), alignment);
    if (size + n > maxBytes && shards[shards.length - 1]!.length > 0) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(t);
    size += n;
  }
  return shards;
}

/**
 * Writes a GGUF model (one file, or a gguf-split set) whose tensors arrive in plan order through
 * append(); commit() renames the temporary files into place, abort() deletes them.
 */
export class GgufWriter {
  readonly files: readonly string[];
  readonly totalBytes: number;
  private readonly streams: GgufFileStream[] = [];
  private current = 0;
  private finished = false;

  constructor(out: string, kvs: readonly GgufKv[], tensors: readonly GgufTensorPlan[], opts: GgufWriteOptions = {}) {
    const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
    const shards = planShards(tensors, opts.splitMaxBytes, alignment);
    this.files = shardNames(out, shards.length);
    let total = 0;
    try {
      for (const [i, shardTensors] of shards.entries()) {
        const split = shards.length > 1
          ? [kv.u16('split.no', i), kv.u16('split.count', shards.length), kv.i32('split.tensors.count', tensors.length)]
          : [];
        const meta = i === 0 ? [...kvs, ...split] : split;
        const { header, dataBytes } = encodeGgufHeader(meta, shardTensors, alignment);
        const path = this.files[i]!;
        this.streams.push(new GgufFileStream(path, `${path}.tmp-${process.pid}`, shardTensors, header, alignment));
        total += header.length + dataBytes;
      }
    } catch (err) {
      this.abort();
      throw err;
    }
    this.totalBytes = total;
  }

  /** The tensor the next append() belongs to. */
  get nextTensor(): GgufTensorPlan | undefined {
    while (this.current < this.streams.length && this.streams[this.current]!.complete) this.current++;
    return this.streams[this.current]?.currentTensor;
  }

  append(bytes: Uint8Array): void {
    if (!this.nextTensor) throw new Error('every tensor has already been written');
    this.streams[this.current]!.append(bytes);
  }

  /** Closes every file and renames them into place; fails if any tensor is incomplete. */
  commit(): void {
    const missing = this.nextTensor;
    if (missing) throw new Error(`tensor ${missing.name} was not (completely) written`);
    for (const s of this.streams) s.close();
    for (const s of this.streams) fs.renameSync(s.tempPath, s.path);
    this.finished = true;
  }

  /** Deletes the temporary files (safe to call more than once, and after a failed commit). */
  abort(): void {
    if (this.finished) return;
    for (const s of this.streams) s.discard();
  }
}
