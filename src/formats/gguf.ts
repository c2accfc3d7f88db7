/**
 * GGUF reader (versions 2 and 3): header, metadata of every value type (nested arrays included),
 * tensor infos, alignment and data offsets. Nothing here reads tensor data: a tensor is a
 * descriptor (type, shape, where its bytes are), read later by whoever uses it.
 *
 * Every count, length and offset is checked against the bytes that remain in the file before
 * anything is allocated for it, so a crafted header fails fast with a FormatError naming the
 * file, the field and its byte offset instead of asking for gigabytes.
 *
 * Layout (all little-endian): "GGUF", u32 version, u64 tensor count, u64 metadata count;
 * metadata as (string key, u32 value type, value); tensor infos as (string name, u32 n_dims,
 * u64 ne[n_dims], u32 ggml type, u64 offset into the data section); padding to the alignment;
 * the data section. Strings are u64 length + UTF-8 bytes. ne[0] is the contiguous dimension.
 */
import { FormatError, UnsupportedError } from '../errors.js';
import { findGgmlType, GGML_TYPES, type GgmlTypeInfo } from '../tensor/ggml.js';
import type { ByteSource } from './tensor-file.js';

export const GGUF_MAGIC = 'GGUF';
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** ggml tensors have at most 4 dimensions (GGML_MAX_DIMS). */
export const GGUF_MAX_DIMS = 4;
/** Real files nest arrays at most once; a deeper nesting is a crafted file trying to exhaust the stack. */
export const GGUF_MAX_NESTING = 8;
/** Header bytes are read through a window of this size, so a vocabulary of 131072 strings costs a few reads, not 131072. */
const WINDOW = 1 << 20;

/** GGUF value types by their id in the file. */
export const GGUF_VALUE_TYPES = ['u8', 'i8', 'u16', 'i16', 'u32', 'i32', 'f32', 'bool', 'string', 'array', 'u64', 'i64', 'f64'] as const;
export type GgufValueType = (typeof GGUF_VALUE_TYPES)[number];

/** Fixed byte size of a scalar type; strings and arrays have at least this many bytes (their length fields). */
const MIN_SIZE: Record<GgufValueType, number> = {
  u8: 1, i8: 1, u16: 2, i16: 2, u32: 4, i32: 4, f32: 4, bool: 1, string: 8, array: 12, u64: 8, i64: 8, f64: 8,
};

export type GgufNumericArray =
  | Uint8Array | Int8Array | Uint16Array | Int16Array | Uint32Array | Int32Array
  | Float32Array | Float64Array | BigUint64Array | BigInt64Array;

export interface GgufArray {
  readonly itemType: GgufValueType;
  /** Numeric items as a typed array of their own type; strings, booleans and nested arrays as JS arrays. */
  readonly items: GgufNumericArray | readonly string[] | readonly boolean[] | readonly GgufArray[];
}

/** u64/i64 scalars stay bigint (they may exceed 2^53); every other number is a JS number. */
export type GgufValue = number | bigint | boolean | string | GgufArray;

export interface GgufEntry {
  readonly key: string;
  readonly type: GgufValueType;
  readonly value: GgufValue;
  /** Byte offset of the value in the file (after its type id), for messages. */
  readonly offset: number;
}

export interface GgufTensorInfo {
  readonly name: string;
  readonly type: GgmlTypeInfo;
  /** GGUF dimensions, fastest first (ne[0] is the contiguous row length). */
  readonly ne: readonly number[];
  /** Offset relative to the data section, as stored. */
  readonly relativeOffset: number;
  /** Absolute offset in the source. */
  readonly offset: number;
  readonly byteLength: number;
  /** Offset of this tensor's info record in the header, for messages. */
  readonly infoOffset: number;
}

export interface GgufHeader {
  readonly source: ByteSource;
  readonly version: number;
  readonly metadata: GgufMetadata;
  readonly tensors: readonly GgufTensorInfo[];
  readonly alignment: number;
  /** Where the data section starts (after the header, padded to the alignment). */
  readonly dataOffset: number;
}

/** Typed access to metadata; a value of the wrong type is a FormatError naming the key and its offset. */
export class GgufMetadata {
  constructor(readonly file: string, private readonly entries: ReadonlyMap<string, GgufEntry>) {}

  get size(): number {
    return this.entries.size;
  }
  has(key: string): boolean {
    return this.entries.has(key);
  }
  entry(key: string): GgufEntry | undefined {
    return this.entries.get(key);
  }
  all(): IterableIterator<GgufEntry> {
    return this.entries.values();
  }

  private wrong(e: GgufEntry, expected: string): FormatError {
    return new FormatError({ file: this.file, offset: e.offset, expected: `metadata ${e.key}: ${expected}`, found: `a value of type ${e.type === 'array' ? `array of ${(e.value as GgufArray).itemType}` : e.type}` });
  }

  /** A numeric scalar of any numeric type (u64/i64 must fit 2^53). */
  number(key: string): number | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value === 'number') return e.value;
    if (typeof e.value === 'bigint') {
      const n = Number(e.value);
      if (!Number.isSafeInteger(n)) throw this.wrong(e, 'an integer below 2^53');
      return n;
    }
    throw this.wrong(e, 'a number');
  }

  /** A non-negative integer scalar. */
  integer(key: string): number | undefined {
    const n = this.number(key);
    if (n !== undefined && (!Number.isSafeInteger(n) || n < 0)) throw this.wrong(this.entries.get(key)!, 'a non-negative integer');
    return n;
  }

  string(key: string): string | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value !== 'string') throw this.wrong(e, 'a string');
    return e.value;
  }

  bool(key: string): boolean | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value !== 'boolean') throw this.wrong(e, 'a bool');
    return e.value;
  }

  array(key: string): GgufArray | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (typeof e.value !== 'object') throw this.wrong(e, 'an array');
    return e.value;
  }

  stringArray(key: string): readonly string[] | undefined {
    const a = this.array(key);
    if (a && a.itemType !== 'string') throw this.wrong(this.entries.get(key)!, 'an array of strings');
    return a?.items as readonly string[] | undefined;
  }

  /** An array of any numeric item type, as numbers (u64/i64 items converted when they fit 2^53). */
  numberArray(key: string): ArrayLike<number> | undefined {
    const a = this.array(key);
    if (!a) return undefined;
    const items = a.items;
    if (items instanceof BigInt64Array || items instanceof BigUint64Array) {
      const out = new Float64Array(items.length);
      for (let i = 0; i < items.length; i++) {
        out[i] = Number(items[i]!);
        if (!Number.isSafeInteger(out[i])) throw this.wrong(this.entries.get(key)!, 'an array of integers below 2^53');
      }
      return out;
    }
    if (ArrayBuffer.isView(items)) return items as ArrayLike<number>;
    throw this.wrong(this.entries.get(key)!, 'an array of numbers');
  }
}

/** Sequential reads over a ByteSource through a window; every read is bounds-checked first. */
class Cursor {
  pos = 0;
  private window: Uint8Array = new Uint8Array(0);
  private windowStart = 0;
  private view = new DataView(this.window.buffer);
  // ignoreBOM keeps a leading U+FEFF: it is part of some vocabulary pieces, not a byte-order mark
  private readonly decoder = new TextDecoder('utf-8', { ignoreBOM: true });

  constructor(readonly source: ByteSource) {}

  get remaining(): number {
    return this.source.size - this.pos;
  }

  fail(expected: string, found?: string, offset = this.pos): FormatError {
    return new FormatError({ file: this.source.name, offset, expected, ...(found === undefined ? {} : { found }) });
  }

  /** Makes `n` bytes at pos addressable in the window; `what` names the field for the truncation error. */
  private need(n: number, what: string): number {
    if (n > this.remaining) throw this.fail(`${what} (${n} bytes)`, `only ${this.remaining} bytes remain in the file`);
    const rel = this.pos - this.windowStart;
    if (rel < 0 || rel + n > this.window.length) {
      const len = Math.min(this.remaining, Math.max(n, WINDOW));
      this.window = this.source.read(this.pos, len);
      this.windowStart = this.pos;
      this.view = new DataView(this.window.buffer, this.window.byteOffset, this.window.byteLength);
      return 0;
    }
    return rel;
  }

  u8(what: string): number {
    const r = this.need(1, what);
    this.pos += 1;
    return this.window[r]!;
  }
  u32(what: string): number {
    const r = this.need(4, what);
    this.pos += 4;
    return this.view.getUint32(r, true);
  }
  u64(what: string): bigint {
    const r = this.need(8, what);
    this.pos += 8;
    return this.view.getBigUint64(r, true);
  }
  /** A u64 that must be a count/size/offset below 2^53 (anything larger cannot fit this file). */
  size64(what: string): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(Number.MAX_SAFE_INTEGER)) throw this.fail(`${what} below 2^53`, v.toString(), at);
    return Number(v);
  }
  scalar(type: GgufValueType, what: string): number | bigint | boolean {
    const r = this.need(MIN_SIZE[type], what);
    this.pos += MIN_SIZE[type];
    const v = this.view;
    switch (type) {
      case 'u8': return v.getUint8(r);
      case 'i8': return v.getInt8(r);
      case 'u16': return v.getUint16(r, true);
      case 'i16': return v.getInt16(r, true);
      case 'u32': return v.getUint32(r, true);
      case 'i32': return v.getInt32(r, true);
      case 'f32': return v.getFloat32(r, true);
      case 'f64': return v.getFloat64(r, true);
      case 'u64': return v.getBigUint64(r, true);
      case 'i64': return v.getBigInt64(r, true);
      case 'bool': return v.getUint8(r) !== 0;
      default: throw new Error(`not a scalar type: ${type}`);
    }
  }
  string(what: string): string {
    const at = this.pos;
    const len = this.size64(`${what} length`);
    if (len > this.remaining) throw this.fail(`${what}: a string of ${len} bytes inside the file`, `only ${this.remaining} bytes remain`, at);
    const r = this.need(len, what);
    this.pos += len;
    return this.decoder.decode(this.window.subarray(r, r + len));
  }
  /** `n` raw bytes copied out (numeric arrays: the copy is the typed array's own aligned buffer). */
  bytes(n: number, what: string): Uint8Array {
    if (n > WINDOW) {
      if (n > this.remaining) throw this.fail(`${what} (${n} bytes)`, `only ${this.remaining} bytes remain in the file`);
      const out = this.source.read(this.pos, n);
      this.pos += n;
      return out;
    }
    const r = this.need(n, what);
    this.pos += n;
    return this.window.slice(r, r + n);
  }
}

const TYPED: Partial<Record<GgufValueType, (b: ArrayBuffer, n: number) => GgufNumericArray>> = {
  u8: (b, n) => new Uint8Array(b, 0, n),
  i8: (b, n) => new Int8Array(b, 0, n),
  u16: (b, n) => new Uint16Array(b, 0, n),
  i16: (b, n) => new Int16Array(b, 0, n),
  u32: (b, n) => new Uint32Array(b, 0, n),
  i32: (b, n) => new Int32Array(b, 0, n),
  f32: (b, n) => new Float32Array(b, 0, n),
  f64: (b, n) => new Float64Array(b, 0, n),
  u64: (b, n) => new BigUint64Array(b, 0, n),
  i64: (b, n) => new BigInt64Array(b, 0, n),
};

function valueType(c: Cursor, what: string): GgufValueType {
  const at = c.pos;
  const id = c.u32(`${what} value type`);
  const type = GGUF_VALUE_TYPES[id];
  if (type === undefined) throw c.fail(`${what}: a GGUF value type id 0-${GGUF_VALUE_TYPES.length - 1}`, `${id}`, at);
  return type;
}

function readValue(c: Cursor, type: GgufValueType, what: string, depth: number): GgufValue {
  if (type === 'string') return c.string(what);
  if (type !== 'array') return c.scalar(type, what);
  if (depth >= GGUF_MAX_NESTING) throw c.fail(`${what}: arrays nested at most ${GGUF_MAX_NESTING} deep`, `a deeper nesting`);
  const itemType = valueType(c, `${what} array item`);
  const countAt = c.pos;
  const count = c.size64(`${what} array count`);
  // Each item takes at least MIN_SIZE bytes, so a count the rest of the file cannot hold is a lie.
  if (count > Math.floor(c.remaining / MIN_SIZE[itemType])) {
    throw c.fail(`${what}: an array count that fits the file (${count} items of type ${itemType} need ≥ ${count * MIN_SIZE[itemType]} bytes)`, `only ${c.remaining} bytes remain`, countAt);
  }
  const typed = TYPED[itemType];
  if (typed) {
    const bytes = c.bytes(count * MIN_SIZE[itemType], `${what} array items`);
    const own = bytes.byteOffset === 0 ? bytes : bytes.slice();
    return { itemType, items: typed(own.buffer as ArrayBuffer, count) };
  }
  if (itemType === 'bool') {
    const bytes = c.bytes(count, `${what} array items`);
    return { itemType, items: Array.from(bytes, (b) => b !== 0) };
  }
  const items: GgufValue[] = [];
  for (let i = 0; i < count; i++) items.push(readValue(c, itemType, `${what}[${i}]`, depth + 1));
  return { itemType, items: items as string[] | GgufArray[] };
}

/** Parses the header of a GGUF held in `source` (a file, or the concatenation of raw parts). */
export function readGgufHeader(source: ByteSource): GgufHeader {
  const c = new Cursor(source);
  const magic = c.bytes(4, 'the GGUF magic');
  const magicText = String.fromCharCode(...magic);
  if (magicText !== GGUF_MAGIC) throw c.fail('the magic "GGUF" (is this a GGUF file?)', JSON.stringify(magicText), 0);
  const version = c.u32('the GGUF version');
  if (version !== 2 && version !== 3) {
    const swapped = ((version & 0xff) << 24) | ((version & 0xff00) << 8) | ((version >>> 8) & 0xff00) | (version >>> 24);
    if (swapped === 2 || swapped === 3) throw new UnsupportedError('gguf-big-endian', `${source.name}: big-endian GGUF files are not supported`);
    if (version === 1) throw new UnsupportedError('gguf-v1', `${source.name}: GGUF version 1 is not supported (convert it with a current llama.cpp)`);
    throw c.fail('GGUF version 2 or 3', `${version}`, 4);
  }
  const tensorCountAt = c.pos;
  const tensorCount = c.size64('the tensor count');
  const kvCountAt = c.pos;
  const kvCount = c.size64('the metadata count');
  // A metadata entry takes ≥ 13 bytes (key length, type, 1-byte value), a tensor info ≥ 24.
  if (kvCount > Math.floor(c.remaining / 13)) throw c.fail(`a metadata count that fits the file`, `${kvCount} entries in ${c.remaining} bytes`, kvCountAt);
  if (tensorCount > Math.floor(c.remaining / 24)) throw c.fail(`a tensor count that fits the file`, `${tensorCount} tensors in ${c.remaining} bytes`, tensorCountAt);

  const entries = new Map<string, GgufEntry>();
  for (let i = 0; i < kvCount; i++) {
    const keyAt = c.pos;
    const key = c.string(`metadata key #${i}`);
    if (key === '') throw c.fail(`metadata key #${i}: a non-empty key`, 'an empty string', keyAt);
    if (entries.has(key)) throw c.fail(`metadata key #${i}: a key not seen before`, `a second "${key}"`, keyAt);
    const type = valueType(c, `metadata ${key}`);
    const offset = c.pos;
    entries.set(key, { key, type, value: readValue(c, type, `metadata ${key}`, 0), offset });
  }
  const metadata = new GgufMetadata(source.name, entries);

  const alignEntry = entries.get('general.alignment');
  let alignment = GGUF_DEFAULT_ALIGNMENT;
  if (alignEntry) {
    if (alignEntry.type !== 'u32') throw c.fail('metadata general.alignment: a u32', alignEntry.type, alignEntry.offset);
    alignment = alignEntry.value as number;
    if (alignment === 0 || (alignment & (alignment - 1)) !== 0) {
      throw c.fail('metadata general.alignment: a power of two', `${alignment}`, alignEntry.offset);
    }
  }

  const infos: Omit<GgufTensorInfo, 'offset'>[] = [];
  const names = new Set<string>();
  for (let i = 0; i < tensorCount; i++) {
    const infoOffset = c.pos;
    const name = c.string(`tensor info #${i} name`);
    if (names.has(name)) throw c.fail(`tensor info #${i}: a tensor name not seen before`, `a second "${name}"`, infoOffset);
    names.add(name);
    const what = `tensor ${name}`;
    const dimsAt = c.pos;
    const nDims = c.u32(`${what} dimension count`);
    if (nDims > GGUF_MAX_DIMS) throw c.fail(`${what}: at most ${GGUF_MAX_DIMS} dimensions`, `${nDims}`, dimsAt);
    const ne: number[] = [];
    let elements = 1;
    for (let d = 0; d < nDims; d++) {
      const n = c.size64(`${what} ne[${d}]`);
      ne.push(n);
      elements *= n;
      if (!Number.isSafeInteger(elements)) throw c.fail(`${what}: an element count below 2^53`, `ne = [${ne.join(', ')}, …]`, dimsAt);
    }
    const typeAt = c.pos;
    const typeId = c.u32(`${what} type`);
    const type = findGgmlType(typeId);
    if (!type) {
      throw c.fail(`${what}: a known ggml type id (${GGML_TYPES.map((x) => x.id).join(', ')})`, `type ${typeId}`, typeAt);
    }
    if ((ne[0] ?? 1) % type.blockSize !== 0) {
      throw c.fail(`${what}: a row length ne[0] that is a multiple of the ${type.name} block size ${type.blockSize}`, `${ne[0]}`, dimsAt);
    }
    const offAt = c.pos;
    const relativeOffset = c.size64(`${what} data offset`);
    if (relativeOffset % alignment !== 0) throw c.fail(`${what}: a data offset aligned to ${alignment}`, `${relativeOffset}`, offAt);
    infos.push({ name, type, ne, relativeOffset, byteLength: (elements / type.blockSize) * type.typeSize, infoOffset: offAt });
  }

  const headerEnd = c.pos;
  const dataOffset = Math.ceil(headerEnd / alignment) * alignment;
  if (infos.length > 0 && dataOffset > source.size) {
    throw c.fail(`the data section start (byte ${dataOffset}, after alignment padding) inside the file`, `the file has ${source.size} bytes`, headerEnd);
  }
  const tensors = infos.map((t): GgufTensorInfo => {
    const offset = dataOffset + t.relativeOffset;
    if (offset + t.byteLength > source.size) {
      throw c.fail(
        `tensor ${t.name}: ${t.byteLength} bytes of ${t.type.name} data at data offset ${t.relativeOffset} (byte ${offset}) inside the file`,
        `the file has ${source.size} bytes`,
        t.infoOffset,
      );
    }
    return Object.freeze({ ...t, offset });
  });
  return { source, version, metadata, tensors, alignment, dataOffset };
}
