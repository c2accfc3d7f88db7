/**
 * Streams tensors into sharded safetensors files (`model-00001-of-0000N.safetensors`, the names
 * transformers' save_pretrained gives) plus `model.safetensors.index.json`. Headers need every
 * tensor's size up front, which the plan gives, so each file's header is written first and the
 * data appended in plan order; memory holds one chunk, never a tensor.
 *
 * Every file is written as `NAME.tmp-<pid>`; commit() renames the shards into place and writes the
 * index last (its presence marks a complete model), abort() deletes what was written.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { DType } from '../tensor/tensor.js';
import { SAFETENSORS_DTYPE, SAFETENSORS_INDEX, SAFETENSORS_SINGLE, safetensorsDtypeSize } from './safetensors.js';

export interface SafetensorsTensorPlan {
  readonly name: string;
  readonly dtype: DType;
  readonly shape: readonly number[];
}

export function planBytes(t: SafetensorsTensorPlan): number {
  return t.shape.reduce((a, b) => a * b, 1) * safetensorsDtypeSize(t.dtype);
}

/** Shards of at most maxBytes of data each (a tensor larger than that gets a shard of its own). */
export function planSafetensorsShards(tensors: readonly SafetensorsTensorPlan[], maxBytes?: number): SafetensorsTensorPlan[][] {
  const shards: SafetensorsTensorPlan[][] = [[]];
  let size = 0;
  for (const t of tensors) {
    const n = planBytes(t);
    if (maxBytes !== undefined && size > 0 && size + n > maxBytes) {
      shards.push([]);
      size = 0;
    }
    shards[shards.length - 1]!.push(t);
    size += n;
  }
  return shards;
}

/** File names of a model of `count` shards (one shard: model.safetensors). */
export function safetensorsShardNames(count: number): string[] {
  if (count === 1) return [SAFETENSORS_SINGLE];
  const w = Math.max(5, String(count).length);
  return Array.from({ length: count }, (_, i) => `model-${String(i + 1).padStart(w, '0')}-of-${String(count).padStart(w, '0')}.safetensors`);
}

/** The header bytes (length prefix included) of a file holding `tensors` in order. */
export function encodeSafetensorsHeader(tensors: readonly SafetensorsTensorPlan[], metadata: Readonly<Record<string, string>> = {}): Uint8Array {
  const obj: Record<string, unknown> = {};
  if (Object.keys(metadata).length) obj.__metadata__ = metadata;
  let at = 0;
  for (const t of tensors) {
    const n = planBytes(t);
    obj[t.name] = { dtype: SAFETENSORS_DTYPE[t.dtype], shape: t.shape, data_offsets: [at, at + n] };
    at += n;
  }
  // The header is padded with spaces to a multiple of 8 so that the data starts aligned (the
  // reference writer does the same).
  let json = JSON.stringify(obj);
  json += ' '.repeat((8 - ((Buffer.byteLength(json) + 8) % 8)) % 8);
  const body = Buffer.from(json, 'utf8');
  const out = new Uint8Array(8 + body.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
  out.set(body, 8);
  return out;
}

/** Writes `data` to `file` through a temporary name and a rename. */
export function writeFileAtomic(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  try {
    fs.writeFileSync(tmp, data);
    fs.renameSync(tmp, file);
  } catch (err) {
    fs.rmSync(tmp, { force: true });
    throw err;
  }
}

interface ShardStream {
  readonly path: string;
  readonly tempPath: string;
  readonly tensors: readonly SafetensorsTensorPlan[];
  fd: number | undefined;
  /** Bytes of data still expected for each tensor, in order. */
  remaining: number[];
  at: number;
}

export class SafetensorsWriter {
  /** Absolute paths of the shard files, in order. */
  readonly files: readonly string[];
  /** Bytes of all files (headers and data). */
  readonly totalBytes: number;
  /** Bytes of tensor data (the index's metadata.total_size). */
  readonly dataBytes: number;
  private readonly shards: ShardStream[] = [];
  private current = 0;
  private finished = false;

  constructor(
    private readonly dir: string,
    tensors: readonly SafetensorsTensorPlan[],
    opts: { splitMaxBytes?: number; metadata?: Readonly<Record<string, string>> } = {},
  ) {
    const plan = planSafetensorsShards(tensors, opts.splitMaxBytes);
    const names = safetensorsShardNames(plan.length);
    this.files = names.map((n) => path.join(dir, n));
    let total = 0;
    let data = 0;
    try {
      for (const [i, shard] of plan.entries()) {
        const header = encodeSafetensorsHeader(shard, opts.metadata ?? { format: 'pt' });
        const p = this.files[i]!;
        const s: ShardStream = { path: p, tempPath: `${p}.tmp-${process.pid}`, tensors: shard, fd: undefined, remaining: shard.map(planBytes), at: 0 };
        this.shards.push(s);
        s.fd = fs.openSync(s.tempPath, 'w');
        fs.writeSync(s.fd, header);
        const n = s.remaining.reduce((a, b) => a + b, 0);
        total += header.length + n;
        data += n;
      }
    } catch (err) {
      this.abort();
      throw err;
    }
    this.totalBytes = total;
    this.dataBytes = data;
  }

  /** The tensor the next append() belongs to. */
  get nextTensor(): SafetensorsTensorPlan | undefined {
    for (;;) {
      const s = this.shards[this.current];
      if (!s) return undefined;
      while (s.at < s.remaining.length && s.remaining[s.at] === 0) s.at++;
      if (s.at < s.remaining.length) return s.tensors[s.at];
      this.current++;
    }
  }

  /** Appends bytes of the current tensor; a chunk may not cross into the next tensor. */
  append(bytes: Uint8Array): void {
    const t = this.nextTensor;
    if (!t) throw new Error('every tensor has already been written');
    const s = this.shards[this.current]!;
    if (bytes.length > s.remaining[s.at]!) throw new Error(`${bytes.length} bytes overrun tensor ${t.name} (${s.remaining[s.at]} left)`);
    let done = 0;
    while (done < bytes.length) done += fs.writeSync(s.fd!, bytes, done, bytes.length - done);
    s.remaining[s.at]! -= bytes.length;
  }

  /**
   * Closes every shard, renames them into place, calls `beforeIndex` (the files that go beside the
   * weights), then writes the index, last, so that its presence means a complete directory. An
   * index is written for a single file too, so that the directory is recognised the same way.
   */
  commit(beforeIndex?: () => void, extraMetadata: Readonly<Record<string, unknown>> = {}): void {
    const missing = this.nextTensor;
    if (missing) throw new Error(`tensor ${missing.name} was not (completely) written`);
    for (const s of this.shards) {
      fs.closeSync(s.fd!);
      s.fd = undefined;
    }
    for (const s of this.shards) fs.renameSync(s.tempPath, s.path);
    this.finished = true;
    beforeIndex?.();
    const weightMap: Record<string, string> = {};
    for (const s of this.shards) for (const t of s.tensors) weightMap[t.name] = path.basename(s.path);
    writeFileAtomic(path.join(this.dir, SAFETENSORS_INDEX), `${JSON.stringify({ metadata: { total_size: this.dataBytes, ...extraMetadata }, weight_map: weightMap }, null, 2)}\n`);
  }

  /** Deletes the temporary files (safe to call more than once). */
  abort(): void {
    if (this.finished) return;
    for (const s of this.shards) {
      if (s.fd !== undefined) {
        try {
          fs.closeSync(s.fd);
        } catch {
          // already closed
        }
        s.fd = undefined;
      }
      fs.rmSync(s.tempPath, { force: true });
    }
  }
}
