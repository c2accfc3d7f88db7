/**
 * Reader for Hugging Face safetensors (https://huggingface.co/docs/safetensors, "Format"): an
 * 8-byte little-endian header length N, N bytes of JSON `{name: {dtype, shape, data_offsets},
 * "__metadata__": {string: string}}`, then the data; offsets are relative to the data's start.
 * A directory is one `model.safetensors`, or shards listed by `model.safetensors.index.json`
 * (`{"metadata": {...}, "weight_map": {tensor: file}}`).
 *
 * Every length, offset, shape and name is checked against the file before a tensor is handed out,
 * so a truncated or hostile file gives a FormatError naming the file and the field, never a read
 * past the end or an allocation the file's size does not justify.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FileAccessError, FormatError } from '../errors.js';
import type { DType, TensorInfo, TensorStore } from '../tensor/tensor.js';
import { FileSource, fileKind, readRegularFile } from './tensor-file.js';

export const SAFETENSORS_INDEX = 'model.safetensors.index.json';
export const SAFETENSORS_SINGLE = 'model.safetensors';

/** safetensors dtype names → ours, with their sizes. Anything else is refused by name. */
const DTYPES: Record<string, { dtype: DType; size: number }> = {
  F64: { dtype: 'f64', size: 8 },
  F32: { dtype: 'f32', size: 4 },
  F16: { dtype: 'f16', size: 2 },
  BF16: { dtype: 'bf16', size: 2 },
  I64: { dtype: 'i64', size: 8 },
  I32: { dtype: 'i32', size: 4 },
  I16: { dtype: 'i16', size: 2 },
  I8: { dtype: 'i8', size: 1 },
  U8: { dtype: 'u8', size: 1 },
  BOOL: { dtype: 'bool', size: 1 },
};

/** Ours → the safetensors name, for the writer. */
export const SAFETENSORS_DTYPE: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(DTYPES).map(([k, v]) => [v.dtype, k]));

/** Bytes per element of a dtype the writer can write. */
export function safetensorsDtypeSize(dtype: DType): number {
  const name = SAFETENSORS_DTYPE[dtype];
  if (!name) throw new Error(`safetensors has no dtype for ${dtype}`);
  return DTYPES[name]!.size;
}

/**
 * The header JSON is a few KB per hundred tensors; Grok-1's largest shard lists under 100 tensors.
 * The reference implementation refuses headers over 100 MB; so do we, before allocating one.
 */
export const MAX_HEADER_BYTES = 100_000_000;
/** An index lists ~3,000 names for Grok-1: a few hundred KB. */
const MAX_INDEX_BYTES = 64 << 20;

export interface SafetensorsFile {
  readonly path: string;
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  readonly metadata: Readonly<Record<string, string>>;
  /** Byte where the data starts (8 + header length). */
  readonly dataStart: number;
  close(): void;
}

/** Parses and checks a safetensors header; `fileSize` bounds every offset. */
export function parseSafetensorsHeader(
  file: string,
  headerBytes: Uint8Array,
  dataStart: number,
  fileSize: number,
): { entries: Array<{ name: string; dtype: DType; shape: number[]; begin: number; end: number }>; metadata: Record<string, string> } {
  const bad = (expected: string, found?: string, offset = 8): never => {
    throw new FormatError({ file, offset, expected, ...(found === undefined ? {} : { found }) });
  };
  let json: unknown;
  try {
    json = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(headerBytes));
  } catch (err) {
    return bad('a header of UTF-8 JSON', (err as Error).message);
  }
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return bad('a header that is a JSON object', describe(json));
  const dataSize = fileSize - dataStart;
  const metadata: Record<string, string> = {};
  const entries: Array<{ name: string; dtype: DType; shape: number[]; begin: number; end: number }> = [];
  for (const [name, raw] of Object.entries(json as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad('"__metadata__" to be an object of strings', describe(raw));
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        if (typeof v !== 'string') return bad(`"__metadata__"."${k}" to be a string`, describe(v));
        metadata[k] = v;
      }
      continue;
    }
    const field = (f: string) => `tensor "${name}" field "${f}"`;
    if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return bad(`tensor "${name}" to be an object with dtype, shape and data_offsets`, describe(raw));
    const t = raw as Record<string, unknown>;
    const dt = typeof t.dtype === 'string' ? DTYPES[t.dtype] : undefined;
    if (!dt) return bad(`${field('dtype')} to be one of ${Object.keys(DTYPES).join(', ')}`, describe(t.dtype));
    if (!Array.isArray(t.shape) || t.shape.length > 8 || !t.shape.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) {
      return bad(`${field('shape')} to be a list of at most 8 non-negative integers`, describe(t.shape));
    }
    const shape = t.shape as number[];
    const offs = t.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((n) => Number.isSafeInteger(n) && (n as number) >= 0)) {
      return bad(`${field('data_offsets')} to be [begin, end], two non-negative integers`, describe(offs));
    }
    const [begin, end] = offs as [number, number];
    if (begin > end || end > dataSize) {
      return bad(`${field('data_offsets')} inside the ${dataSize} data bytes after the header`, `[${begin}, ${end}]`);
    }
    let count = 1;
    for (const n of shape) count *= n;
    if (!Number.isSafeInteger(count * dt.size) || count * dt.size !== end - begin) {
      return bad(`${field('data_offsets')} to span ${shape.join('×') || 'one element'} × ${dt.size} = ${count * dt.size} bytes`, `${end - begin} bytes`);
    }
    entries.push({ name, dtype: dt.dtype, shape: [...shape], begin, end });
  }
  // Tensors may not overlap: a hostile file could otherwise alias one tensor's bytes as another's.
  const sorted = [...entries].sort((a, b) => a.begin - b.begin || a.end - b.end);
  for (let i = 1; i < sorted.length; i++) {
    const p = sorted[i - 1]!;
    const c = sorted[i]!;
    if (c.begin < p.end && c.end > c.begin && p.end > p.begin) {
      return bad(`tensor "${c.name}" field "data_offsets" not to overlap tensor "${p.name}"`, `[${c.begin}, ${c.end}] inside [${p.begin}, ${p.end}]`);
    }
  }
  return { entries, metadata };
}

/** Opens one .safetensors file and checks its header; tensor bytes are read lazily. */
export function openSafetensors(file: string): SafetensorsFile {
  const source = new FileSource(file, 'a safetensors file');
  try {
    if (source.size < 8) throw new FormatError({ file, offset: 0, expected: 'an 8-byte header length', found: `a file of ${source.size} bytes` });
    const lenBytes = source.read(0, 8);
    const dv = new DataView(lenBytes.buffer, lenBytes.byteOffset, 8);
    const len = Number(dv.getBigUint64(0, true));
    if (len > MAX_HEADER_BYTES) throw new FormatError({ file, offset: 0, expected: `a header length of at most ${MAX_HEADER_BYTES} bytes`, found: `${len}` });
    if (8 + len > source.size) throw new FormatError({ file, offset: 0, expected: `a header length that fits the file's ${source.size} bytes`, found: `${len}` });
    const { entries, metadata } = parseSafetensorsHeader(file, source.read(8, len), 8 + len, source.size);
    const dataStart = 8 + len;
    const tensors = new Map<string, TensorInfo>();
    for (const e of entries) tensors.set(e.name, { name: e.name, dtype: e.dtype, shape: e.shape, source, offset: dataStart + e.begin, byteLength: e.end - e.begin });
    return { path: file, tensors, metadata, dataStart, close: () => source.close() };
  } catch (err) {
    source.close();
    throw err;
  }
}

export interface SafetensorsStore extends TensorStore {
  /** The files opened, in the order the index first names them. */
  readonly files: readonly string[];
}

/** A directory holds a safetensors model when it has an index or a single model.safetensors. */
export function isSafetensorsDir(dir: string): boolean {
  return fs.existsSync(path.join(dir, SAFETENSORS_INDEX)) || fs.existsSync(path.join(dir, SAFETENSORS_SINGLE));
}

/** A shard name from an index: a plain file name in the same directory, nothing that leaves it. */
function checkShardName(indexFile: string, tensor: string, name: unknown): string {
  if (typeof name !== 'string' || name === '' || name.includes('/') || name.includes('\\') || name === '.' || name === '..' || name.includes('\0')) {
    throw new FormatError({ file: indexFile, expected: `"weight_map"."${tensor}" to be a file name in the same directory`, found: describe(name) });
  }
  return name;
}

/**
 * Opens a safetensors model directory (or one .safetensors file). With an index, every tensor it
 * maps must be in the shard it names; shards are opened once each.
 */
export function openSafetensorsStore(p: string): SafetensorsStore {
  let st: fs.Stats;
  try {
    st = fs.statSync(p);
  } catch (err) {
    throw new FileAccessError({ file: p, expected: 'a safetensors file or a directory with model.safetensors(.index.json)', found: (err as Error).message, cause: err });
  }
  if (st.isFile()) return storeOf(p, [openSafetensors(p)]);
  if (!st.isDirectory()) throw new FileAccessError({ file: p, expected: 'a safetensors file or directory', found: fileKind(st) });
  const indexFile = path.join(p, SAFETENSORS_INDEX);
  if (!fs.existsSync(indexFile)) return storeOf(p, [openSafetensors(path.join(p, SAFETENSORS_SINGLE))]);

  let index: unknown;
  try {
    index = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(readRegularFile(indexFile, MAX_INDEX_BYTES, 'a safetensors index (JSON)')));
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw new FormatError({ file: indexFile, expected: 'UTF-8 JSON', found: (err as Error).message, cause: err });
  }
  const map = (index as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== 'object' || map === null || Array.isArray(map)) {
    throw new FormatError({ file: indexFile, expected: 'a "weight_map" object of tensor name → file name', found: describe(map) });
  }
  const opened = new Map<string, SafetensorsFile>();
  try {
    const wanted = new Map<string, string>();
    for (const [tensor, shard] of Object.entries(map as Record<string, unknown>)) {
      const name = checkShardName(indexFile, tensor, shard);
      wanted.set(tensor, name);
      if (!opened.has(name)) opened.set(name, openSafetensors(path.join(p, name)));
    }
    if (wanted.size === 0) throw new FormatError({ file: indexFile, expected: 'at least one tensor in "weight_map"', found: 'none' });
    const tensors = new Map<string, TensorInfo>();
    for (const [tensor, shard] of wanted) {
      const f = opened.get(shard)!;
      const t = f.tensors.get(tensor);
      if (!t) throw new FormatError({ file: f.path, expected: `tensor "${tensor}" (${SAFETENSORS_INDEX} places it in this file)`, found: 'no tensor of that name' });
      tensors.set(tensor, t);
    }
    const files = [...opened.values()];
    return { path: p, format: 'safetensors', tensors, files: files.map((f) => f.path), close: () => files.forEach((f) => f.close()) };
  } catch (err) {
    for (const f of opened.values()) f.close();
    throw err;
  }
}

function storeOf(p: string, files: SafetensorsFile[]): SafetensorsStore {
  const tensors = new Map<string, TensorInfo>();
  for (const f of files) for (const [k, v] of f.tensors) tensors.set(k, v);
  return { path: p, format: 'safetensors', tensors, files: files.map((f) => f.path), close: () => files.forEach((f) => f.close()) };
}

function describe(v: unknown): string {
  if (v === undefined) return 'nothing';
  const s = JSON.stringify(v);
  return s === undefined ? typeof v : s.length > 80 ? `${s.slice(0, 77)}...` : s;
}
