/**
 * Opening a GGUF model that may be split, in either convention found in the wild:
 * - gguf-split shards `NAME-00001-of-00009.gguf`: each a complete GGUF with its own tensor table
 *   and data section and the keys split.no (0-based), split.count, split.tensors.count; the model
 *   metadata is in the first (docs/REFERENCE.md §5). Any shard's name opens the whole set.
 * - raw byte splits `NAME.gguf.part1of7` …: consecutive byte ranges of one GGUF, read as one
 *   logical file through ConcatSource (never concatenated on disk); a header or tensor may straddle
 *   a cut.
 * The result is one TensorStore whose tensors point into whichever file holds their bytes.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FormatError } from '../errors.js';
import type { TensorInfo, TensorStore } from '../tensor/tensor.js';
import { readGgufHeader, type GgufArray, type GgufHeader, type GgufMetadata, type GgufValue } from './gguf.js';
import { ConcatSource, FileSource, openRegularFile, type ByteSource } from './tensor-file.js';

export interface GgufModel {
  /** The path the caller gave. */
  readonly path: string;
  readonly split: 'none' | 'gguf-split' | 'raw';
  /** The model's metadata (of the first shard, which holds all of it). */
  readonly metadata: GgufMetadata;
  /** Every shard's parsed header, in shard order (one entry unless gguf-split). */
  readonly files: readonly GgufHeader[];
  readonly store: TensorStore;
  close(): void;
}

const RAW_PART = /^(.*)\.part(\d+)of(\d+)$/;
/** gguf-split numbers shards with a u16; more parts than that is a corrupt count or name. */
const MAX_PARTS = 65535;
const SHARD = /^(.*)-(\d{5})-of-(\d{5})\.gguf$/;

/** True when a path names a GGUF by its extension or raw-part suffix. */
export function namedLikeGguf(p: string): boolean {
  return /\.gguf$/i.test(p) || RAW_PART.test(p);
}

/** True when a path names a GGUF by its extension or raw-part suffix, or is a regular file starting with the GGUF magic. */
export function looksLikeGguf(p: string): boolean {
  if (namedLikeGguf(p)) return true;
  try {
    const { fd } = openRegularFile(p); // never blocks on a FIFO, never reads a device
    try {
      const magic = Buffer.alloc(4);
      return fs.readSync(fd, magic, 0, 4, 0) === 4 && magic.toString('latin1') === 'GGUF';
    } finally {
      fs.closeSync(fd);
    }
  } catch {
    return false;
  }
}

/** Names of all raw parts of the split `p` belongs to (`x.part2of3` → x.part1of3 … x.part3of3). */
export function rawPartPaths(p: string): string[] | undefined {
  const m = RAW_PART.exec(p);
  if (!m) return undefined;
  const [, base, n, count] = m as unknown as [string, string, string, string];
  const total = Number(count);
  if (total < 1 || Number(n) < 1 || Number(n) > total || total > MAX_PARTS) {
    throw new FormatError({ file: p, expected: `a raw part name NAME.partNofM with 1 ≤ N ≤ M ≤ ${MAX_PARTS}`, found: path.basename(p) });
  }
  const width = n.startsWith('0') ? n.length : 0; // keep zero padding (part01of12) when the name has it
  const out: string[] = [];
  for (let i = 1; i <= total; i++) out.push(`${base}.part${String(i).padStart(width, '0')}of${count}`);
  return out;
}

/** Names of all gguf-split shards given any one of them, or undefined when the name is not a shard name. */
export function shardPaths(p: string, count?: number): string[] | undefined {
  const m = SHARD.exec(p);
  if (!m) return undefined;
  const [, prefix, , of] = m as unknown as [string, string, string, string];
  const total = count ?? Number(of);
  const pad = (n: number) => String(n).padStart(5, '0');
  return Array.from({ length: total }, (_, i) => `${prefix}-${pad(i + 1)}-of-${pad(total)}.gguf`);
}

function openFile(p: string, role: string): FileSource {
  return new FileSource(p, role);
}

function openRaw(parts: string[]): ByteSource {
  const opened: FileSource[] = [];
  try {
    for (let i = 0; i < parts.length; i++) opened.push(openFile(parts[i]!, `part ${i + 1} of ${parts.length} of a raw GGUF split`));
    return new ConcatSource(opened);
  } catch (err) {
    for (const f of opened) f.close();
    throw err;
  }
}

/** Opens a GGUF file, a raw split (any part's name) or a gguf-split set (any shard's name). */
export function openGguf(p: string): GgufModel {
  const raw = rawPartPaths(p);
  if (raw) return openGgufSource(openRaw(raw), 'raw', p);
  const shardNames = shardPaths(p);
  const first = shardNames ? shardNames[0]! : p;
  const header = readShard(first, shardNames ? `shard 1 of ${shardNames.length}` : 'a GGUF file');
  let count: number;
  try {
    count = header.metadata.integer('split.count') ?? 1;
    if (count > MAX_PARTS) {
      throw new FormatError({ file: header.source.name, offset: header.metadata.entry('split.count')!.offset, expected: `split.count at most ${MAX_PARTS} (a u16)`, found: `${count}` });
    }
  } catch (err) {
    header.source.close();
    throw err;
  }
  return count <= 1 ? fromHeaders(p, 'none', [header]) : openShards(p, header, count);
}

/** A GGUF model from one byte source (a file, joined raw parts, bytes in memory); closes it on failure. */
export function openGgufSource(source: ByteSource, split: 'none' | 'raw' = 'none', p = source.name): GgufModel {
  try {
    return fromHeaders(p, split, [readGgufHeader(source)]);
  } catch (err) {
    source.close();
    throw err;
  }
}

function readShard(p: string, role: string): GgufHeader {
  const source = openFile(p, role);
  try {
    return readGgufHeader(source);
  } catch (err) {
    source.close();
    throw err;
  }
}

function openShards(p: string, first: GgufHeader, count: number): GgufModel {
  const headers: GgufHeader[] = [first];
  try {
    const firstName = first.source.name;
    const names = shardPaths(firstName, count);
    if (!names || names[0] !== firstName) {
      throw new FormatError({
        file: firstName,
        offset: first.metadata.entry('split.count')!.offset,
        expected: `a file named NAME-00001-of-${String(count).padStart(5, '0')}.gguf, since split.count is ${count} (the other shards are found by name)`,
        found: path.basename(firstName),
      });
    }
    for (let i = 0; i < count; i++) {
      const h = i === 0 ? first : readShard(names[i]!, `shard ${i + 1} of ${count}`);
      if (i > 0) headers.push(h);
      const no = h.metadata.integer('split.no');
      const cnt = h.metadata.integer('split.count');
      if (no !== i || cnt !== count) {
        const e = h.metadata.entry('split.no') ?? h.metadata.entry('split.count');
        throw new FormatError({
          file: h.source.name,
          ...(e ? { offset: e.offset } : {}),
          expected: `split.no = ${i} and split.count = ${count} (shard ${i + 1} of ${count})`,
          found: `split.no = ${no ?? 'absent'}, split.count = ${cnt ?? 'absent'}`,
        });
      }
    }
    const model = fromHeaders(p, 'gguf-split', headers);
    const declared = first.metadata.integer('split.tensors.count');
    if (declared !== undefined && declared !== model.store.tensors.size) {
      throw new FormatError({
        file: firstName,
        offset: first.metadata.entry('split.tensors.count')!.offset,
        expected: `split.tensors.count = the ${model.store.tensors.size} tensors found in ${count} shards`,
        found: `${declared}`,
      });
    }
    return model;
  } catch (err) {
    for (const h of headers) h.source.close();
    throw err;
  }
}

function fromHeaders(p: string, split: GgufModel['split'], headers: GgufHeader[]): GgufModel {
  const tensors = new Map<string, TensorInfo>();
  for (const h of headers) {
    for (const t of h.tensors) {
      if (tensors.has(t.name)) {
        throw new FormatError({
          file: h.source.name,
          offset: t.infoOffset,
          expected: `tensor ${t.name} in only one shard`,
          found: `it is also in ${tensors.get(t.name)!.source.name}`,
        });
      }
      tensors.set(t.name, {
        name: t.name,
        dtype: t.type.name,
        shape: [...t.ne].reverse(),
        source: h.source,
        offset: t.offset,
        byteLength: t.byteLength,
      });
    }
  }
  const close = () => {
    for (const h of headers) h.source.close();
  };
  return {
    path: p,
    split,
    metadata: headers[0]!.metadata,
    files: headers,
    store: { path: p, format: 'gguf', tensors, close },
    close,
  };
}

// ---------------------------------------------------------------------------------------------
// inspect: a printable description

export interface GgufDescription {
  readonly path: string;
  readonly split: GgufModel['split'];
  readonly files: ReadonlyArray<{ path: string; bytes: number; version: number; alignment: number; dataOffset: number; tensors: number; metadata: number }>;
  /** Every metadata entry with its type and a short rendering of its value (long arrays abridged). */
  readonly metadata: ReadonlyArray<{ key: string; type: string; value: string }>;
  readonly tensors: ReadonlyArray<{ name: string; type: string; ne: readonly number[]; bytes: number; file: string; offset: number }>;
  /** Tensor count and bytes per ggml type. */
  readonly types: Readonly<Record<string, { tensors: number; bytes: number }>>;
  readonly tensorBytes: number;
}

const MAX_SHOWN_ITEMS = 8;
const MAX_SHOWN_CHARS = 120;

function renderValue(v: GgufValue): string {
  if (typeof v === 'string') return JSON.stringify(v.length > MAX_SHOWN_CHARS ? `${v.slice(0, MAX_SHOWN_CHARS)}…` : v);
  if (typeof v !== 'object') return String(v);
  const items = v.items as ArrayLike<GgufValue>;
  const shown = Array.from({ length: Math.min(items.length, MAX_SHOWN_ITEMS) }, (_, i) => renderValue(items[i]!));
  return `[${shown.join(', ')}${items.length > MAX_SHOWN_ITEMS ? `, … ${items.length} items` : ''}]`;
}

/** What a GGUF (or split set) holds: files, metadata and tensors, ready to print or serialise. */
export function describeGguf(p: string): GgufDescription {
  const model = openGguf(p);
  try {
    const types: Record<string, { tensors: number; bytes: number }> = {};
    const tensors = model.files.flatMap((h) =>
      h.tensors.map((t) => {
        const agg = (types[t.type.name] ??= { tensors: 0, bytes: 0 });
        agg.tensors++;
        agg.bytes += t.byteLength;
        return { name: t.name, type: t.type.name, ne: t.ne, bytes: t.byteLength, file: h.source.name, offset: t.offset };
      }),
    );
    return {
      path: p,
      split: model.split,
      files: model.files.map((h) => ({
        path: h.source.name,
        bytes: h.source.size,
        version: h.version,
        alignment: h.alignment,
        dataOffset: h.dataOffset,
        tensors: h.tensors.length,
        metadata: h.metadata.size,
      })),
      metadata: [...model.metadata.all()].map((e) => ({
        key: e.key,
        type: e.type === 'array' ? `array<${(e.value as GgufArray).itemType}>` : e.type,
        value: renderValue(e.value),
      })),
      tensors,
      types,
      tensorBytes: tensors.reduce((a, t) => a + t.bytes, 0),
    };
  } finally {
    model.close();
  }
}
