/**
 * Writes checkpoints in the official ckpt-0 layout: one protocol-4 pickle per parameter leaf, in
 * the tree-flatten order of docs/REFERENCE.md §4, arrays as numpy-1.x reductions and quantised
 * matrices as `__main__.QuantizedWeight8bit`. Used to generate benchmark and test checkpoints of
 * any size of the architecture; payloads are streamed, so memory stays near one chunk.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkpointLeafNames, tensorFileName } from './xai-checkpoint.js';

/** One array to write: dtype, shape and a producer of its little-endian bytes in chunks. */
export interface ArraySpec {
  readonly dtype: 'f32' | 'i8' | 'bf16';
  readonly shape: readonly number[];
  /** Called repeatedly with (byteOffset, chunk) until the chunk array is filled; writes C-order bytes. */
  readonly fill: (byteOffset: number, chunk: Uint8Array) => void;
}

export type LeafSpec = ArraySpec | { readonly weight: ArraySpec; readonly scales: ArraySpec };

const ITEMSIZE = { f32: 4, i8: 1, bf16: 2 } as const;
const CHUNK = 1 << 24;

const enc = new TextEncoder();

class PickleOut {
  parts: Uint8Array[] = [];
  byte(...b: number[]): this {
    this.parts.push(Uint8Array.from(b));
    return this;
  }
  str(s: string): this {
    const b = enc.encode(s);
    return this.byte(0x8c, b.length).raw(b); // SHORT_BINUNICODE
  }
  raw(b: Uint8Array): this {
    this.parts.push(b);
    return this;
  }
  int(n: number): this {
    if (n >= 0 && n < 256) return this.byte(0x4b, n); // BININT1
    if (n >= 0 && n < 65536) return this.byte(0x4d, n & 0xff, n >>> 8); // BININT2
    const b = new Uint8Array(5);
    b[0] = 0x4a; // BININT (signed 32-bit)
    new DataView(b.buffer).setInt32(1, n, true);
    return this.raw(b);
  }
  global(module: string, name: string): this {
    return this.str(module).str(name).byte(0x93); // STACK_GLOBAL
  }
  bytes(): Uint8Array {
    return Buffer.concat(this.parts);
  }
}

/** numpy.dtype(...) with its BUILD state, as numpy 1.x pickles it. */
function dtype(p: PickleOut, d: ArraySpec['dtype']): void {
  p.global('numpy', 'dtype');
  if (d === 'bf16') p.global('ml_dtypes', 'bfloat16');
  else p.str(d === 'f32' ? 'f4' : 'i1');
  p.byte(0x89, 0x88, 0x87, 0x52); // False, True, TUPLE3, REDUCE
  p.byte(0x28).int(3).str(d === 'i8' ? '|' : '<').byte(0x4e, 0x4e, 0x4e); // MARK 3 order None None None
  // A user dtype carries its elsize and alignment (docs/REFERENCE.md §4).
  const size = d === 'bf16' ? 2 : -1;
  p.int(size).int(size).int(0).byte(0x74, 0x62); // elsize alignment flags TUPLE BUILD
}

/** Header up to the payload length; the caller streams the payload, then `arrayTail`. */
function arrayHead(p: PickleOut, a: ArraySpec, payload: number): void {
  p.global('numpy.core.multiarray', '_reconstruct');
  p.global('numpy', 'ndarray').int(0).byte(0x85).byte(0x43, 1, 0x62).byte(0x87, 0x52); // (0,) b'b' TUPLE3 REDUCE
  p.byte(0x28).int(1).byte(0x28);
  for (const n of a.shape) p.int(n);
  p.byte(0x74); // shape TUPLE
  dtype(p, a.dtype);
  p.byte(0x89); // not fortran
  if (payload < 2 ** 32) {
    const b = new Uint8Array(5);
    b[0] = 0x42; // BINBYTES
    new DataView(b.buffer).setUint32(1, payload, true);
    p.raw(b);
  } else {
    const b = new Uint8Array(9);
    b[0] = 0x8e; // BINBYTES8
    new DataView(b.buffer).setBigUint64(1, BigInt(payload), true);
    p.raw(b);
  }
}

const ARRAY_TAIL = Uint8Array.from([0x74, 0x62]); // TUPLE BUILD

function payloadBytes(a: ArraySpec): number {
  return a.shape.reduce((x, y) => x * y, 1) * ITEMSIZE[a.dtype];
}

function writeArray(fd: number, a: ArraySpec, p: PickleOut): void {
  const n = payloadBytes(a);
  arrayHead(p, a, n);
  fs.writeSync(fd, p.bytes());
  p.parts = [];
  const chunk = new Uint8Array(Math.min(CHUNK, Math.max(n, 1)));
  for (let off = 0; off < n; off += chunk.length) {
    const c = chunk.subarray(0, Math.min(chunk.length, n - off));
    a.fill(off, c);
    fs.writeSync(fd, c);
  }
  fs.writeSync(fd, ARRAY_TAIL);
}

/**
 * The bytes of a single-array leaf pickle before and after its payload of `shape` × itemsize
 * bytes: for tests that stream a payload of their own (a gzip bomb) instead of writing one.
 */
export function arrayLeafFraming(a: Pick<ArraySpec, 'dtype' | 'shape'>): { head: Uint8Array; tail: Uint8Array } {
  const p = new PickleOut().byte(0x80, 4); // PROTO 4
  arrayHead(p, { ...a, fill: () => {} }, payloadBytes({ ...a, fill: () => {} }));
  return { head: p.bytes(), tail: Uint8Array.from([...ARRAY_TAIL, 0x2e]) }; // TUPLE BUILD STOP
}

/** Writes one leaf pickle file. */
export function writeLeaf(file: string, leaf: LeafSpec): void {
  const fd = fs.openSync(file, 'w');
  try {
    const p = new PickleOut().byte(0x80, 4); // PROTO 4
    if ('weight' in leaf) {
      p.global('__main__', 'QuantizedWeight8bit').byte(0x29, 0x81); // EMPTY_TUPLE NEWOBJ
      p.byte(0x7d, 0x28).str('weight'); // EMPTY_DICT MARK 'weight'
      writeArray(fd, leaf.weight, p);
      p.str('scales');
      writeArray(fd, leaf.scales, p);
      p.byte(0x75, 0x62); // SETITEMS BUILD
    } else {
      writeArray(fd, leaf, p);
    }
    p.byte(0x2e); // STOP
    fs.writeSync(fd, p.bytes());
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a whole ckpt-0 directory: `leaf(name)` gives the spec of each parameter path (as named
 * by checkpointLeafNames). Files are written to a temporary directory renamed at the end, so an
 * interrupted run never leaves a checkpoint that looks complete.
 */
export function writeCheckpoint(dir: string, numLayers: number, leaf: (name: string) => LeafSpec, onFile?: (i: number, total: number) => void): void {
  const names = checkpointLeafNames(numLayers);
  const tmp = `${dir}.tmp-${process.pid}`;
  fs.rmSync(tmp, { recursive: true, force: true });
  fs.mkdirSync(tmp, { recursive: true });
  try {
    names.forEach((name, i) => {
      writeLeaf(path.join(tmp, tensorFileName(i)), leaf(name));
      onFile?.(i + 1, names.length);
    });
    fs.rmSync(dir, { recursive: true, force: true });
    fs.renameSync(tmp, dir);
  } catch (err) {
    fs.rmSync(tmp, { recursive: true, force: true });
    throw err;
  }
}
