/**
 * The official `ckpt-0` directory (docs/REFERENCE.md §4): 2 + 12·L files `tensorNNNNN_000`, each
 * one pickle of one parameter leaf, in jax tree-flatten order (keys sorted as strings, so layers
 * run 0, 1, 10, 11, …, 2, …). Opening parses every file's header (a few KB each) and reads no
 * payload; a tensor's bytes are read when the model first asks for them.
 */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { gunzipSync } from 'node:zlib';
import type { GrokConfig } from '../config.js';
import { FileAccessError, FormatError, WeightError } from '../errors.js';
import { shapeString, type TensorInfo, type TensorStore } from '../tensor/tensor.js';
import { NumpyArray, PICKLE_LIMITS, QuantizedWeight8bit, unpickle, type NdArrayInfo } from './pickle.js';
import { checkRange, MemorySource, openRegularFile, readFully, type ByteSource } from './tensor-file.js';

/** Files 0 and 1, before the layers. */
export const CKPT_TOP_LEAVES = ['language_model/in_out_embed/embeddings', 'language_model/rms_norm/scale'] as const;

/** The 12 leaves of one layer, in file order (string order of module path, then parameter name). */
export const CKPT_LAYER_LEAVES = [
  'moe/linear/w',
  'moe/linear_1/w',
  'moe/linear_v/w',
  'multi_head_attention/key/w',
  'multi_head_attention/linear/w',
  'multi_head_attention/query/w',
  'multi_head_attention/value/w',
  'rms_norm/scale',
  'rms_norm_1/scale',
  'rms_norm_2/scale',
  'rms_norm_3/scale',
  'router/w',
] as const;

/** Layer numbers in file order: haiku module names sorted as strings (decoder_layer_10 before _2). */
export function checkpointLayerOrder(numLayers: number): number[] {
  const names = Array.from({ length: numLayers }, (_, i) => `decoder_layer_${i}`).sort();
  return names.map((n) => Number(n.slice('decoder_layer_'.length)));
}

/** The parameter path held by each tensor file, in file order. */
export function checkpointLeafNames(numLayers: number): string[] {
  const names: string[] = [...CKPT_TOP_LEAVES];
  for (const layer of checkpointLayerOrder(numLayers)) {
    for (const leaf of CKPT_LAYER_LEAVES) names.push(`transformer/decoder_layer_${layer}/${leaf}`);
  }
  return names;
}

export function tensorFileName(index: number): string {
  return `tensor${String(index).padStart(5, '0')}_000`;
}

// ---------------------------------------------------------------------------------------------
// what each leaf may hold (a plausibility check; model/weights.ts checks shapes against the config)

interface LeafSpec {
  /** `matrix`: QuantizedWeight8bit (or a float array); `float`: a float array only. */
  readonly holds: 'matrix' | 'float';
  readonly rank: number;
  /** Dimensions that must equal the model width D (taken from the embedding). */
  readonly dDims: readonly number[];
}

const EMBEDDING_SPEC: LeafSpec = { holds: 'float', rank: 2, dDims: [1] };
const NORM_SPEC: LeafSpec = { holds: 'float', rank: 1, dDims: [0] };

const LAYER_SPECS: Readonly<Record<(typeof CKPT_LAYER_LEAVES)[number], LeafSpec>> = {
  'moe/linear/w': { holds: 'matrix', rank: 3, dDims: [1] }, // [E, D, F]
  'moe/linear_1/w': { holds: 'matrix', rank: 3, dDims: [2] }, // [E, F, D]
  'moe/linear_v/w': { holds: 'matrix', rank: 3, dDims: [1] }, // [E, D, F]
  'multi_head_attention/key/w': { holds: 'matrix', rank: 2, dDims: [0] }, // [D, Hkv·d]
  'multi_head_attention/linear/w': { holds: 'matrix', rank: 2, dDims: [1] }, // [H·d, D]
  'multi_head_attention/query/w': { holds: 'matrix', rank: 2, dDims: [0] }, // [D, H·d]
  'multi_head_attention/value/w': { holds: 'matrix', rank: 2, dDims: [0] }, // [D, Hkv·d]
  'rms_norm/scale': NORM_SPEC,
  'rms_norm_1/scale': NORM_SPEC,
  'rms_norm_2/scale': NORM_SPEC,
  'rms_norm_3/scale': NORM_SPEC,
  'router/w': { holds: 'float', rank: 2, dDims: [0] }, // [D, E]
};

const FLOAT_DTYPES: ReadonlySet<string> = new Set(['f32', 'bf16', 'f16']);

function leafSpec(index: number): LeafSpec {
  if (index === 0) return EMBEDDING_SPEC;
  if (index === 1) return NORM_SPEC;
  return LAYER_SPECS[CKPT_LAYER_LEAVES[(index - 2) % 12]!];
}

/** The shape a config gives the leaf in file `index` (the int8 weight's shape for a quantised matrix). */
export function checkpointLeafShape(index: number, c: Readonly<GrokConfig>): number[] {
  const { vocabSize: V, embSize: D, numExperts: E, ffnSize: F } = c;
  const q = c.numQHeads * c.keySize;
  const kv = c.numKvHeads * c.keySize;
  if (index === 0) return [V, D];
  if (index === 1) return [D];
  const shapes: Record<(typeof CKPT_LAYER_LEAVES)[number], number[]> = {
    'moe/linear/w': [E, D, F],
    'moe/linear_1/w': [E, F, D],
    'moe/linear_v/w': [E, D, F],
    'multi_head_attention/key/w': [D, kv],
    'multi_head_attention/linear/w': [q, D],
    'multi_head_attention/query/w': [D, q],
    'multi_head_attention/value/w': [D, kv],
    'rms_norm/scale': [D],
    'rms_norm_1/scale': [D],
    'rms_norm_2/scale': [D],
    'rms_norm_3/scale': [D],
    'router/w': [D, E],
  };
  return shapes[CKPT_LAYER_LEAVES[(index - 2) % 12]!];
}

/** Pickle framing around a leaf's arrays: a real one is a few hundred bytes. */
const PICKLE_SLACK = 64 << 10;

/**
 * The most bytes a pickle of a leaf of this shape can take: f32 is the widest dtype a leaf may hold
 * (int8 with bf16 scales is at most 3 bytes per element); a protocol-2 pickle carries its (at most
 * maxInlineTotal) array bytes as UTF-8 text of latin-1, up to twice their size.
 */
export function maxLeafPickleBytes(shape: readonly number[]): number {
  const payload = 4 * shape.reduce((a, b) => a * b, 1);
  return payload + Math.min(payload, PICKLE_LIMITS.maxInlineTotal) + PICKLE_SLACK;
}

function checkLeaf(t: TensorInfo, spec: LeafSpec, D: number | undefined, file: string): void {
  const bad = (expected: string, found: string): never => {
    throw new WeightError({ tensor: t.name, expected, found, file });
  };
  const what = (x: TensorInfo) => `${x.dtype} ${shapeString(x.shape)}${x.scales ? ` with ${x.scales.dtype} scales ${shapeString(x.scales.shape)}` : ''}`;
  if (spec.holds === 'float' && (t.scales || !FLOAT_DTYPES.has(t.dtype))) bad(`a float array (f32) of rank ${spec.rank}`, what(t));
  if (spec.holds === 'matrix' && !t.scales && !FLOAT_DTYPES.has(t.dtype)) bad(`a QuantizedWeight8bit or float array of rank ${spec.rank}`, what(t));
  if (t.shape.length !== spec.rank) bad(`rank ${spec.rank}`, what(t));
  for (const d of spec.dDims) {
    if (D !== undefined && t.shape[d] !== D) bad(`dimension ${d} = ${D} (the embedding width)`, what(t));
  }
  const s = t.scales;
  if (!s) return;
  // QuantizedWeight8bit: int8 [..., K, N] with bf16 scales [..., G, N], K divisible by G.
  const r = t.shape.length;
  const sameLead = s.shape.length === r && t.shape.slice(0, r - 2).every((n, i) => s.shape[i] === n) && s.shape[r - 1] === t.shape[r - 1];
  const groups = s.shape[r - 2] ?? 0;
  if (t.dtype !== 'i8' || s.dtype !== 'bf16' || !sameLead || groups < 1 || t.shape[r - 2]! % groups !== 0) {
    bad(`int8 [..., K, N] with bf16 scales [..., G, N], G dividing K`, what(t));
  }
}

// ---------------------------------------------------------------------------------------------
// file handles: 770 files, but only a few are read at a time

/** Descriptors kept open at once: a layer's worth, far below the official 770 files. */
const MAX_OPEN_FILES = 16;

/** Opens files on first read and keeps the most recently used few open. */
class FilePool {
  /** path → fd, least recently used first. */
  private readonly fds = new Map<string, number>();
  private closed = false;
  bytesRead = 0;

  fd(file: string): number {
    if (this.closed) throw new FormatError({ file, expected: 'an open checkpoint', found: 'it was closed' });
    let fd = this.fds.get(file);
    if (fd !== undefined) {
      this.fds.delete(file);
    } else {
      if (this.fds.size >= MAX_OPEN_FILES) this.release(this.fds.keys().next().value!);
      fd = openRegularFile(file, 'a checkpoint tensor file').fd;
    }
    this.fds.set(file, fd);
    return fd;
  }

  release(file: string): void {
    const fd = this.fds.get(file);
    if (fd === undefined) return;
    this.fds.delete(file);
    fs.closeSync(fd);
  }

  close(): void {
    for (const file of [...this.fds.keys()]) this.release(file);
    this.closed = true;
  }
}

/** One tensor file, read through the pool. close() only gives its descriptor back. */
class PooledFile implements ByteSource {
  constructor(
    readonly name: string,
    readonly size: number,
    private readonly pool: FilePool,
  ) {}

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    const out = new Uint8Array(length);
    readFully(this.pool.fd(this.name), out, offset, this.name);
    this.pool.bytesRead += length;
    return out;
  }

  close(): void {
    this.pool.release(this.name);
  }
}

// ---------------------------------------------------------------------------------------------
// one file

function arrayTensor(name: string, a: NdArrayInfo, source: ByteSource): TensorInfo {
  // Protocol-2 pickles carry the bytes as text; those few are decoded in memory.
  if (a.decoded) return { name, dtype: a.dtype, shape: a.shape, source: new MemorySource(`${source.name} (decoded)`, a.decoded), offset: 0, byteLength: a.byteLength };
  return { name, dtype: a.dtype, shape: a.shape, source, offset: a.offset, byteLength: a.byteLength };
}

/**
 * Parses one tensor file (one pickle) into a TensorInfo named `name`: an ndarray as itself, a
 * QuantizedWeight8bit as its int8 weight carrying the bf16 `scales`. Reads the header only.
 */
export function readCheckpointLeaf(source: ByteSource, name: string): TensorInfo {
  const { value, end } = unpickle(source);
  if (end !== source.size) {
    throw new FormatError({ file: source.name, offset: end, expected: 'the end of the file after the pickle STOP', found: `${source.size - end} more bytes` });
  }
  if (value instanceof NumpyArray && value.info) return arrayTensor(name, value.info, source);
  if (value instanceof QuantizedWeight8bit && value.weight && value.scales) {
    return { ...arrayTensor(name, value.weight, source), scales: arrayTensor(`${name}.scales`, value.scales, source) };
  }
  const found = value instanceof NumpyArray || value instanceof QuantizedWeight8bit ? `an unbuilt ${value.kind}` : Array.isArray(value) ? 'a list or tuple' : value instanceof Map ? 'a dict' : String(value);
  throw new FormatError({ file: source.name, offset: 0, expected: 'a pickled numpy ndarray or QuantizedWeight8bit', found });
}

// ---------------------------------------------------------------------------------------------
// the directory

export interface CheckpointStore extends TensorStore {
  readonly format: 'ckpt-0';
  /** Layers found (file count = 2 + 12·numLayers). */
  readonly numLayers: number;
  /** Bytes read from the tensor files so far: headers at open, then whatever tensors were read. */
  bytesRead(): number;
}

const TENSOR_FILE = /^tensor(\d{5,})_000(\.gz)?$/;
/**
 * A gzip-compressed tensor file is decompressed into memory (the bundled demo ships that way) and
 * stays there while the checkpoint is open. So a crafted file cannot exhaust memory, what one leaf
 * may expand to is capped (by the config's shape for it when there is a config, else by this),
 * and so is the total of all leaves (MAX_GUNZIP_TOTAL): gzip is for small models.
 */
const MAX_GUNZIP_BYTES = 1 << 30;
/** Expanded bytes of all gzip leaves together: at most 4 GiB, and at most half the machine's memory. */
export const MAX_GUNZIP_TOTAL = Math.min(4 * 2 ** 30, Math.floor(os.totalmem() / 2));

function isDirectory(p: string): boolean {
  try {
    return fs.statSync(p).isDirectory();
  } catch {
    return false;
  }
}

/** `dir/ckpt-0` when it exists, else `dir` itself; with the tensor file numbers found there. */
function resolveCheckpointDir(dir: string): { dir: string; indices: Set<number>; gzipped: Set<number> } {
  const list = (d: string): string[] => {
    try {
      return fs.readdirSync(d);
    } catch (err) {
      throw new FileAccessError({ file: d, expected: 'a ckpt-0 directory, or a directory containing ckpt-0/', found: (err as Error).message, cause: err });
    }
  };
  const entries = list(dir);
  const inner = path.join(dir, 'ckpt-0');
  const ckptDir = entries.includes('ckpt-0') && isDirectory(inner) ? inner : dir;
  const indices = new Set<number>();
  const gzipped = new Set<number>();
  for (const e of ckptDir === dir ? entries : list(ckptDir)) {
    const m = TENSOR_FILE.exec(e);
    if (!m) continue;
    const i = Number(m[1]);
    if (m[2] && tensorFileName(i) + m[2] === e) gzipped.add(i);
    else if (tensorFileName(i) === e) indices.add(i);
  }
  for (const i of gzipped) indices.add(i);
  if (indices.size === 0) {
    throw new FormatError({
      file: ckptDir,
      expected: 'tensorNNNNN_000 files (a ckpt-0 directory, or a directory containing ckpt-0/)',
      found: ckptDir !== dir ? 'ckpt-0/ holds no tensor files' : entries.length ? 'no tensor files and no ckpt-0/ subdirectory' : 'an empty directory',
    });
  }
  for (const i of [...gzipped]) if (fs.existsSync(path.join(ckptDir, tensorFileName(i)))) gzipped.delete(i); // the plain file wins
  return { dir: ckptDir, indices, gzipped };
}

/**
 * Decompresses a gzip leaf into memory, expanding at most `cap` bytes: the compressed size and the
 * size the gzip trailer declares are checked first (no inflating), then inflation stops as soon as
 * it passes the cap. `why` says where the cap comes from, for the message.
 */
/** The `ckpt-0` directory `dir` names: `dir/ckpt-0` when it exists, else `dir` (checked to hold tensor files). */
export function checkpointDir(dir: string): string {
  return resolveCheckpointDir(dir).dir;
}

function gunzipFile(file: string, cap: number, why: string): MemorySource {
  const tooLarge = (found: string): never => {
    throw new FormatError({ file, expected: `a gzip stream that expands to at most ${cap} bytes (${why})`, found });
  };
  const { fd, size } = openRegularFile(file, 'a gzip-compressed checkpoint tensor file');
  let bytes: Uint8Array;
  try {
    // Deflate cannot grow data by more than a few bytes per 64 KiB block.
    if (size > cap + Math.ceil(cap / 1024) + 65536) tooLarge(`${size} compressed bytes`);
    bytes = new Uint8Array(size);
    readFully(fd, bytes, 0, file);
  } finally {
    fs.closeSync(fd);
  }
  if (bytes.length >= 18 && cap < 2 ** 32) {
    // ISIZE: the last member's expanded size mod 2^32. Only a lower bound of the whole, which is all this needs.
    const isize = (bytes[bytes.length - 4]! | (bytes[bytes.length - 3]! << 8) | (bytes[bytes.length - 2]! << 16) | (bytes[bytes.length - 1]! << 24)) >>> 0;
    if (isize > cap) tooLarge(`a trailer declaring ${isize} bytes`);
  }
  try {
    return new MemorySource(file, gunzipSync(bytes, { maxOutputLength: cap }));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE') return tooLarge('more (decompression stopped there)');
    throw new FormatError({ file, expected: 'a gzip stream', found: (err as Error).message, cause: err });
  }
}

/** The size of a tensor file that must be a regular file. */
function regularFileSize(file: string): number {
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    throw new FileAccessError({ file, expected: 'a readable checkpoint tensor file', found: (err as Error).message, cause: err });
  }
  if (!st.isFile()) {
    // opening it reports what it is (a directory, a FIFO, a device) without blocking on it
    openRegularFile(file, 'a checkpoint tensor file');
  }
  return st.size;
}

export interface OpenCheckpointOptions {
  /**
   * The model's config. With it, each gzip-compressed leaf may expand only to what its shape in the
   * config allows, and is checked against that shape before the next leaf is decompressed.
   */
  readonly config?: Readonly<GrokConfig>;
  /** Expanded bytes allowed for all gzip leaves together (default MAX_GUNZIP_TOTAL). */
  readonly maxExpandedBytes?: number;
}

/**
 * Opens an official checkpoint: `dir` is the `ckpt-0` directory or one that contains it. Every
 * file's header is parsed and checked against its leaf now, so a bad file fails here, naming it;
 * no payload is read. At most a few file descriptors stay open (reopened on demand).
 */
export function openCheckpoint(dir: string, options: OpenCheckpointOptions = {}): CheckpointStore {
  const { dir: ckptDir, indices, gzipped } = resolveCheckpointDir(dir);
  let count = 0;
  for (const i of indices) count = Math.max(count, i + 1);
  for (let i = 0; i < count; i++) {
    if (!indices.has(i)) {
      throw new FormatError({ file: path.join(ckptDir, tensorFileName(i)), expected: `tensor file ${i} of 0..${count - 1} (the numbering must be contiguous)`, found: 'it is missing' });
    }
  }
  if (count < 14 || (count - 2) % 12 !== 0) {
    throw new FormatError({
      file: ckptDir,
      expected: '2 + 12·L tensor files for L >= 1 layers',
      found: `${count} files (tensor00000_000 … ${tensorFileName(count - 1)})`,
    });
  }
  const numLayers = (count - 2) / 12;
  const names = checkpointLeafNames(numLayers);
  const pool = new FilePool();
  const tensors = new Map<string, TensorInfo>();
  const budget = options.maxExpandedBytes ?? MAX_GUNZIP_TOTAL;
  let expanded = 0;
  try {
    let D: number | undefined;
    for (let i = 0; i < count; i++) {
      const file = path.join(ckptDir, tensorFileName(i));
      if (gzipped.has(i)) {
        const shape = options.config ? checkpointLeafShape(i, options.config) : undefined;
        const leafCap = shape ? maxLeafPickleBytes(shape) : MAX_GUNZIP_BYTES;
        const remaining = budget - expanded;
        const cap = Math.min(leafCap, remaining);
        const why = cap === remaining
          ? `what is left of the ${budget} bytes all compressed tensor files may expand to`
          : shape ? `the most a ${names[i]} of shape ${shapeString(shape)} can take` : 'the limit for one compressed tensor file';
        const source = gunzipFile(`${file}.gz`, cap, why);
        expanded += source.size;
        const t = readCheckpointLeaf(source, names[i]!);
        if (shape && (t.shape.length !== shape.length || t.shape.some((n, k) => n !== shape[k]))) {
          throw new WeightError({ tensor: t.name, expected: `shape ${shapeString(shape)} (from the config)`, found: shapeString(t.shape), file: `${file}.gz` });
        }
        checkLeaf(t, leafSpec(i), D, `${file}.gz`);
        if (i === 0) D = t.shape[1];
        tensors.set(t.name, t);
        continue;
      }
      const size = regularFileSize(file);
      const source = new PooledFile(file, size, pool);
      const t = readCheckpointLeaf(source, names[i]!);
      source.close();
      checkLeaf(t, leafSpec(i), D, file);
      if (i === 0) D = t.shape[1];
      tensors.set(t.name, t);
    }
  } catch (err) {
    pool.close();
    throw err;
  }
  return {
    path: ckptDir,
    format: 'ckpt-0',
    tensors,
    numLayers,
    bytesRead: () => pool.bytesRead,
    close: () => pool.close(),
  };
}
