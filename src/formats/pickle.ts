/**
 * A restricted, non-executing unpickler for the numpy pickles of the official checkpoint
 * (docs/REFERENCE.md §4). It interprets the opcode stream of protocols 2-5 into inert values:
 * globals are tagged names from a fixed allow-list, and REDUCE / BUILD / NEWOBJ on them build
 * descriptors (dtype, ndarray, QuantizedWeight8bit) instead of calling anything. Array payloads are
 * not read: a large bytes object becomes a reference to its byte range in the file, so parsing a 3
 * GB pickle reads a few hundred bytes.
 */
import { FormatError } from '../errors.js';
import type { DType } from '../tensor/tensor.js';
import type { ByteSource } from './tensor-file.js';

// ---------------------------------------------------------------------------------------------
// limits: a real checkpoint pickle runs ~100 opcodes, a stack of < 20 values and 2 nested marks.
// Each limit only has to be far above that and low enough that a crafted file cannot make us
// spin or allocate without bound.

export const PICKLE_LIMITS = Object.freeze({
  /** Opcodes interpreted per pickle (bounds time on a stream of millions of tiny opcodes). */
  maxOps: 100_000,
  /** Values on the stack, all marks together. */
  maxStack: 10_000,
  /** Nested MARKs. */
  maxMarks: 64,
  /** Distinct memo entries. */
  maxMemo: 100_000,
  /** Bytes objects up to this size are read into memory; larger ones stay a file range. */
  inlineBytes: 4096,
  /**
   * Bytes copied into memory per pickle: strings, small bytes, and protocol-2 array data (which
   * travels as latin-1 text and so cannot stay a file range).
   */
  maxInlineTotal: 16 << 20,
  /** Text lines (GLOBAL, INT, PUT, GET, UNICODE): module paths and numbers are short. */
  maxLine: 4096,
  /** Dimensions of one array (numpy allows 64). */
  maxRank: 64,
});

/** Read-ahead of the buffered cursor: one page covers an array header (and a small file whole). */
const CHUNK = 4096;

// ---------------------------------------------------------------------------------------------
// values

/** A global named by GLOBAL / STACK_GLOBAL: a tag, never resolved to anything callable. */
export class PickleGlobal {
  readonly kind = 'global';
  constructor(readonly module: string, readonly name: string) {}
  get qualifiedName(): string {
    return `${this.module}.${this.name}`;
  }
}

/**
 * A bytes object (BINBYTES, BYTEARRAY8, py2 BINSTRING, or `_codecs.encode(text, 'latin1')`).
 * `data` is present when it was small enough to read (or had to be decoded); otherwise only its
 * place in the file is known.
 */
export class PickleBytes {
  readonly kind = 'bytes';
  constructor(
    /** First byte of the payload in the file (decoded text: the REDUCE that decoded it, for messages). */
    readonly offset: number,
    readonly length: number,
    readonly data: Uint8Array | undefined,
    /** False when `data` was decoded from text and is not the file's bytes at `offset`. */
    readonly verbatim: boolean,
    /** A Python 2 `str` (BINSTRING): text or bytes depending on where it is used. */
    readonly py2str = false,
  ) {}
}

/** numpy.dtype(arg, align, copy), completed by BUILD with its state. */
export class NumpyDType {
  readonly kind = 'dtype';
  /** Set by BUILD; until then the dtype's byte order is unknown. */
  byteOrder: '<' | '|' | undefined;
  constructor(
    /** What numpy calls it: the type string (`f4`) or the user type (`ml_dtypes.bfloat16`). */
    readonly numpyName: string,
    readonly dtype: DType,
    readonly itemsize: number,
  ) {}
}

/** Where an array's bytes are: a range of the pickle file, or decoded bytes (protocol 2). */
export interface NdArrayInfo {
  readonly dtype: DType;
  /** Row-major (C order) shape. */
  readonly shape: readonly number[];
  /** First payload byte in the file (with `decoded`: where it was decoded, for messages). */
  readonly offset: number;
  readonly byteLength: number;
  /** Present when the bytes are not verbatim in the file (protocol-2 latin-1 text): the bytes. */
  readonly decoded?: Uint8Array;
}

/** `_reconstruct(ndarray, (0,), b'b')`, completed by BUILD with (version, shape, dtype, fortran, data). */
export class NumpyArray {
  readonly kind = 'ndarray';
  info: NdArrayInfo | undefined;
}

/** grok-1's `QuantizedWeight8bit` dataclass: int8 `weight` with bf16 `scales`, set by BUILD. */
export class QuantizedWeight8bit {
  readonly kind = 'QuantizedWeight8bit';
  weight: NdArrayInfo | undefined;
  scales: NdArrayInfo | undefined;
}

/** Dict keys are restricted to what can be compared by value in JS. */
export type PickleKey = string | number;

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | PickleBytes
  /** A list, or a tuple (then frozen). */
  | PickleValue[]
  | Map<PickleKey, PickleValue>
  | PickleGlobal
  | NumpyDType
  | NumpyArray
  | QuantizedWeight8bit;

export interface UnpickleResult {
  readonly value: PickleValue;
  /** Byte after STOP (a file holding one pickle ends here). */
  readonly end: number;
}

// ---------------------------------------------------------------------------------------------
// globals and numpy dtypes

const RECONSTRUCT = new Set(['numpy.core.multiarray._reconstruct', 'numpy._core.multiarray._reconstruct']);
const NDARRAY = 'numpy.ndarray';
const NUMPY_DTYPE = 'numpy.dtype';
const BFLOAT16 = 'ml_dtypes.bfloat16';
/** grok-1's checkpoint.py pickles it from run.py, hence `__main__`. */
const QW8 = '__main__.QuantizedWeight8bit';
/** Python 3 pickles bytes at protocol 2 as `_codecs.encode(text, 'latin1')`. */
const CODECS_ENCODE = '_codecs.encode';

const ALLOWED_GLOBALS: ReadonlySet<string> = new Set([...RECONSTRUCT, NDARRAY, NUMPY_DTYPE, BFLOAT16, QW8, CODECS_ENCODE]);

/** numpy's pickled type strings (kind + itemsize) for the dtypes a checkpoint can hold. */
const NUMPY_TYPES: Readonly<Record<string, { dtype: DType; itemsize: number }>> = {
  f2: { dtype: 'f16', itemsize: 2 },
  f4: { dtype: 'f32', itemsize: 4 },
  f8: { dtype: 'f64', itemsize: 8 },
  i1: { dtype: 'i8', itemsize: 1 },
  i2: { dtype: 'i16', itemsize: 2 },
  i4: { dtype: 'i32', itemsize: 4 },
  i8: { dtype: 'i64', itemsize: 8 },
  u1: { dtype: 'u8', itemsize: 1 },
  u2: { dtype: 'u16', itemsize: 2 },
  u4: { dtype: 'u32', itemsize: 4 },
  u8: { dtype: 'u64', itemsize: 8 },
  b1: { dtype: 'bool', itemsize: 1 },
};

// ---------------------------------------------------------------------------------------------
// opcodes

const OP = {
  MARK: 0x28, // (
  STOP: 0x2e, // .
  POP: 0x30, // 0
  POP_MARK: 0x31, // 1
  DUP: 0x32, // 2
  BINFLOAT: 0x47, // G
  INT: 0x49, // I
  BININT: 0x4a, // J
  BININT1: 0x4b, // K
  BININT2: 0x4d, // M
  NONE: 0x4e, // N
  REDUCE: 0x52, // R
  BINSTRING: 0x54, // T
  SHORT_BINSTRING: 0x55, // U
  UNICODE: 0x56, // V
  BINUNICODE: 0x58, // X
  APPEND: 0x61, // a
  BUILD: 0x62, // b
  GLOBAL: 0x63, // c
  DICT: 0x64, // d
  APPENDS: 0x65, // e
  GET: 0x67, // g
  BINGET: 0x68, // h
  LONG_BINGET: 0x6a, // j
  LIST: 0x6c, // l
  PUT: 0x70, // p
  BINPUT: 0x71, // q
  LONG_BINPUT: 0x72, // r
  SETITEM: 0x73, // s
  TUPLE: 0x74, // t
  SETITEMS: 0x75, // u
  EMPTY_DICT: 0x7d, // }
  EMPTY_LIST: 0x5d, // ]
  EMPTY_TUPLE: 0x29, // )
  BINBYTES: 0x42, // B
  SHORT_BINBYTES: 0x43, // C
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  NEWOBJ_EX: 0x92,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
} as const;

/** Pickle opcodes this reader refuses, named in the error so a user sees what the file wanted. */
const REFUSED_OPCODES: Readonly<Record<number, string>> = {
  0x46: 'FLOAT',
  0x4c: 'LONG',
  0x53: 'STRING',
  0x50: 'PERSID',
  0x51: 'BINPERSID',
  0x69: 'INST',
  0x6f: 'OBJ',
  0x82: 'EXT1',
  0x83: 'EXT2',
  0x84: 'EXT4',
  0x8b: 'LONG4',
  0x8f: 'EMPTY_SET',
  0x90: 'ADDITEMS',
  0x91: 'FROZENSET',
  0x97: 'NEXT_BUFFER',
  0x98: 'READONLY_BUFFER',
};

function describeOpcode(op: number): string {
  const hex = `0x${op.toString(16).padStart(2, '0')}`;
  const char = op >= 0x20 && op < 0x7f ? ` '${String.fromCharCode(op)}'` : '';
  const known = REFUSED_OPCODES[op];
  return `opcode ${hex}${char}${known ? ` (${known})` : ' (not a pickle opcode)'}`;
}

// ---------------------------------------------------------------------------------------------
// buffered cursor over a ByteSource

class Cursor {
  pos = 0;
  private buf: Uint8Array = new Uint8Array(0);
  private bufStart = 0;
  /** End of the current FRAME, or -1 outside frames. */
  frameEnd = -1;

  constructor(readonly src: ByteSource) {}

  get file(): string {
    return this.src.name;
  }

  /** Fails unless `n` more bytes exist; also refuses an opcode argument that straddles a frame end. */
  private need(n: number, what: string): void {
    if (this.pos + n > this.src.size) {
      throw new FormatError({
        file: this.file,
        offset: this.pos,
        expected: `${n} bytes of ${what}`,
        found: `end of file at byte ${this.src.size}`,
      });
    }
    if (this.frameEnd >= 0 && this.pos < this.frameEnd && this.pos + n > this.frameEnd) {
      throw new FormatError({
        file: this.file,
        offset: this.pos,
        expected: `${n} bytes of ${what} inside the frame ending at byte ${this.frameEnd}`,
        found: 'it crosses the frame end',
      });
    }
  }

  /** The next `n` bytes (a view into the read-ahead buffer, or a fresh read for large ones). */
  bytes(n: number, what: string): Uint8Array {
    this.need(n, what);
    const start = this.pos;
    this.pos += n;
    if (start >= this.bufStart && start + n <= this.bufStart + this.buf.length) {
      return this.buf.subarray(start - this.bufStart, start - this.bufStart + n);
    }
    if (n > CHUNK) return this.src.read(start, n);
    this.bufStart = start;
    this.buf = this.src.read(start, Math.min(CHUNK, this.src.size - start));
    return this.buf.subarray(0, n);
  }

  skip(n: number, what: string): void {
    this.need(n, what);
    this.pos += n;
  }

  u8(what: string): number {
    return this.bytes(1, what)[0]!;
  }

  u16(what: string): number {
    const b = this.bytes(2, what);
    return b[0]! | (b[1]! << 8);
  }

  u32(what: string): number {
    const b = this.bytes(4, what);
    return (b[0]! | (b[1]! << 8) | (b[2]! << 16) | (b[3]! << 24)) >>> 0;
  }

  i32(what: string): number {
    return this.u32(what) | 0;
  }

  /** A u64 length; above 2^53 it is rounded, which is harmless: no file is that long (`need` refuses it). */
  u64(what: string): number {
    const lo = this.u32(what);
    const hi = this.u32(what);
    return hi * 2 ** 32 + lo;
  }

  f64be(what: string): number {
    const b = this.bytes(8, what);
    return new DataView(b.buffer, b.byteOffset, 8).getFloat64(0, false);
  }

  /** Bytes up to a newline (not included), at most `max` of them. */
  line(what: string, max: number = PICKLE_LIMITS.maxLine): Uint8Array {
    const start = this.pos;
    const chunks: Uint8Array[] = [];
    let total = 0;
    for (;;) {
      if (this.pos >= this.src.size) {
        throw new FormatError({ file: this.file, offset: start, expected: `${what} ending in a newline`, found: `end of file at byte ${this.src.size}` });
      }
      if (this.pos < this.bufStart || this.pos >= this.bufStart + this.buf.length) {
        this.bufStart = this.pos;
        this.buf = this.src.read(this.pos, Math.min(CHUNK, this.src.size - this.pos));
      }
      const view = this.buf.subarray(this.pos - this.bufStart);
      const nl = view.indexOf(0x0a);
      const take = nl >= 0 ? nl : view.length;
      total += take;
      if (total > max) {
        throw new FormatError({ file: this.file, offset: start, expected: `${what} ending in a newline within ${max} bytes`, found: 'a longer line' });
      }
      chunks.push(view.subarray(0, take));
      this.pos += take;
      if (nl >= 0) {
        this.pos += 1;
        const out = new Uint8Array(total);
        let at = 0;
        for (const c of chunks) {
          out.set(c, at);
          at += c.length;
        }
        return out;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// the interpreter

const utf8 = new TextDecoder('utf-8', { fatal: true });

function latin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i++) s += String.fromCharCode(bytes[i]!);
  return s;
}

function isTuple(v: PickleValue): v is PickleValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}

function isList(v: PickleValue): v is PickleValue[] {
  return Array.isArray(v) && !Object.isFrozen(v);
}

function typeName(v: PickleValue): string {
  if (v === null) return 'None';
  if (typeof v === 'boolean') return 'bool';
  if (typeof v === 'number') return Number.isInteger(v) ? 'int' : 'float';
  if (typeof v === 'bigint') return 'int';
  if (typeof v === 'string') return 'str';
  if (Array.isArray(v)) return Object.isFrozen(v) ? `tuple of ${v.length}` : 'list';
  if (v instanceof Map) return 'dict';
  if (v instanceof PickleGlobal) return `global ${v.qualifiedName}`;
  return v.kind;
}

function tuple(items: PickleValue[]): PickleValue[] {
  return Object.freeze(items) as PickleValue[];
}

class Unpickler {
  private readonly cur: Cursor;
  private readonly stack: PickleValue[] = [];
  /** Stack heights at each open MARK. */
  private readonly marks: number[] = [];
  private readonly memo = new Map<number, PickleValue>();
  private inlineTotal = 0;
  /** Offset of the opcode being interpreted, for errors. */
  private at = 0;

  constructor(src: ByteSource) {
    this.cur = new Cursor(src);
  }

  private fail(expected: string, found?: string): never {
    throw new FormatError({ file: this.cur.file, offset: this.at, expected, found });
  }

  private push(v: PickleValue): void {
    if (this.stack.length >= PICKLE_LIMITS.maxStack) this.fail(`at most ${PICKLE_LIMITS.maxStack} values on the pickle stack`, 'more');
    this.stack.push(v);
  }

  private base(): number {
    return this.marks.length ? this.marks[this.marks.length - 1]! : 0;
  }

  private pop(what: string): PickleValue {
    if (this.stack.length <= this.base()) this.fail(`${what} on the pickle stack`, 'stack underflow');
    return this.stack.pop()!;
  }

  private top(what: string): PickleValue {
    if (this.stack.length <= this.base()) this.fail(`${what} on the pickle stack`, 'stack underflow');
    return this.stack[this.stack.length - 1]!;
  }

  /** Values pushed since the last MARK, removing them and the mark. */
  private popMark(what: string): PickleValue[] {
    const m = this.marks.pop();
    if (m === undefined) this.fail(`a MARK before ${what}`, 'no open MARK');
    return this.stack.splice(m);
  }

  private charge(n: number): void {
    this.inlineTotal += n;
    if (this.inlineTotal > PICKLE_LIMITS.maxInlineTotal) {
      this.fail(`at most ${PICKLE_LIMITS.maxInlineTotal} bytes of strings and small objects in one pickle`, `${this.inlineTotal}`);
    }
  }

  private text(bytes: Uint8Array, what: string): string {
    try {
      return utf8.decode(bytes);
    } catch {
      this.fail(`${what} in UTF-8`, 'invalid UTF-8');
    }
  }

  private str(len: number, what: string): string {
    this.charge(len);
    return this.text(this.cur.bytes(len, what), what);
  }

  /** A bytes payload of `len` bytes at the cursor: read when small, otherwise skipped. */
  private bytesValue(len: number, what: string, py2str = false): PickleBytes {
    const offset = this.cur.pos;
    if (len <= PICKLE_LIMITS.inlineBytes) {
      this.charge(len);
      return new PickleBytes(offset, len, this.cur.bytes(len, what).slice(), true, py2str);
    }
    this.cur.skip(len, what);
    return new PickleBytes(offset, len, undefined, true, py2str);
  }

  private intValue(x: bigint): number | bigint {
    return x >= BigInt(Number.MIN_SAFE_INTEGER) && x <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(x) : x;
  }

  private decimal(line: string, what: string): number | bigint {
    const s = line.trim();
    if (!/^[+-]?\d+$/.test(s)) this.fail(what, JSON.stringify(s.slice(0, 40)));
    return this.intValue(BigInt(s));
  }

  private memoIndex(v: number | bigint): number {
    if (typeof v !== 'number' || v < 0) this.fail('a memo index >= 0', String(v));
    return v;
  }

  private memoGet(i: number): PickleValue {
    if (!this.memo.has(i)) this.fail('a memo index stored earlier', `index ${i} (never stored)`);
    return this.memo.get(i)!;
  }

  private memoPut(i: number): void {
    const v = this.top('a value to memoize');
    if (!this.memo.has(i) && this.memo.size >= PICKLE_LIMITS.maxMemo) this.fail(`at most ${PICKLE_LIMITS.maxMemo} memo entries`, 'more');
    this.memo.set(i, v);
  }

  private global(module: string, name: string): PickleGlobal {
    const q = `${module}.${name}`;
    if (!ALLOWED_GLOBALS.has(q)) {
      this.fail(
        'a global on the allow-list (numpy array reconstruction, numpy.dtype, ml_dtypes.bfloat16, __main__.QuantizedWeight8bit)',
        q,
      );
    }
    return new PickleGlobal(module, name);
  }

  private key(v: PickleValue): PickleKey {
    if (typeof v === 'string' || typeof v === 'number') return v;
    if (v instanceof PickleBytes && v.py2str && v.data) return latin1(v.data);
    this.fail('a str or int dict key', typeName(v));
  }

  private setItems(dict: PickleValue, pairs: PickleValue[], what: string): void {
    if (!(dict instanceof Map)) this.fail(`a dict before ${what}`, typeName(dict));
    if (pairs.length % 2) this.fail(`key/value pairs for ${what}`, `${pairs.length} values`);
    for (let i = 0; i < pairs.length; i += 2) dict.set(this.key(pairs[i]!), pairs[i + 1]!);
  }

  run(): UnpickleResult {
    const cur = this.cur;
    let ops = 0;
    for (;;) {
      if (++ops > PICKLE_LIMITS.maxOps) this.fail(`at most ${PICKLE_LIMITS.maxOps} opcodes`, 'more');
      if (cur.frameEnd >= 0 && cur.pos >= cur.frameEnd) cur.frameEnd = -1;
      this.at = cur.pos;
      const op = cur.u8('a pickle opcode (the stream ends with STOP)');
      if (ops === 1 && op !== OP.PROTO) this.fail('a pickle of protocol 2-5 (starting with PROTO 0x80)', describeOpcode(op));
      switch (op) {
        case OP.PROTO: {
          const v = cur.u8('the protocol number');
          if (ops !== 1) this.fail('PROTO only at the start', 'PROTO later in the stream');
          if (v < 2 || v > 5) this.fail('pickle protocol 2-5', `protocol ${v}`);
          break;
        }
        case OP.FRAME: {
          const n = cur.u64('the frame length');
          if (cur.frameEnd >= 0) this.fail('a new frame only after the previous one ends', `FRAME inside the frame ending at byte ${cur.frameEnd}`);
          if (cur.pos + n > cur.src.size) this.fail(`a frame inside the file's ${cur.src.size} bytes`, `a frame of ${n} bytes, past the end of file`);
          cur.frameEnd = cur.pos + n;
          break;
        }
        case OP.STOP: {
          if (this.marks.length) this.fail('every MARK closed before STOP', `${this.marks.length} open`);
          if (this.stack.length !== 1) this.fail('exactly one value on the stack at STOP', `${this.stack.length}`);
          return { value: this.stack[0]!, end: cur.pos };
        }
        case OP.MARK:
          if (this.marks.length >= PICKLE_LIMITS.maxMarks) this.fail(`at most ${PICKLE_LIMITS.maxMarks} nested MARKs`, 'more');
          this.marks.push(this.stack.length);
          break;
        case OP.POP:
          // As CPython: POP with nothing above the mark discards the mark.
          if (this.stack.length > this.base()) this.stack.pop();
          else if (this.marks.length) this.popMark('POP');
          else this.fail('a value to POP on the pickle stack', 'stack underflow');
          break;
        case OP.POP_MARK:
          this.popMark('POP_MARK');
          break;
        case OP.DUP:
          this.push(this.top('a value to DUP'));
          break;

        case OP.MEMOIZE:
          this.memoPut(this.memo.size);
          break;
        case OP.PUT:
          this.memoPut(this.memoIndex(this.decimal(latin1(cur.line('a PUT index')), 'a decimal PUT index')));
          break;
        case OP.BINPUT:
          this.memoPut(cur.u8('a BINPUT index'));
          break;
        case OP.LONG_BINPUT:
          this.memoPut(cur.u32('a LONG_BINPUT index'));
          break;
        case OP.GET:
          this.push(this.memoGet(this.memoIndex(this.decimal(latin1(cur.line('a GET index')), 'a decimal GET index'))));
          break;
        case OP.BINGET:
          this.push(this.memoGet(cur.u8('a BINGET index')));
          break;
        case OP.LONG_BINGET:
          this.push(this.memoGet(cur.u32('a LONG_BINGET index')));
          break;

        case OP.NONE:
          this.push(null);
          break;
        case OP.NEWTRUE:
          this.push(true);
          break;
        case OP.NEWFALSE:
          this.push(false);
          break;
        case OP.INT: {
          const line = latin1(cur.line('an INT'));
          if (line === '01') this.push(true);
          else if (line === '00') this.push(false);
          else this.push(this.decimal(line, 'a decimal INT'));
          break;
        }
        case OP.BININT:
          this.push(cur.i32('a BININT'));
          break;
        case OP.BININT1:
          this.push(cur.u8('a BININT1'));
          break;
        case OP.BININT2:
          this.push(cur.u16('a BININT2'));
          break;
        case OP.LONG1: {
          const n = cur.u8('the LONG1 length');
          const b = cur.bytes(n, 'a LONG1 value');
          let x = 0n;
          for (let i = n - 1; i >= 0; i--) x = (x << 8n) | BigInt(b[i]!);
          if (n && b[n - 1]! & 0x80) x -= 1n << BigInt(8 * n);
          this.push(this.intValue(x));
          break;
        }
        case OP.BINFLOAT:
          this.push(cur.f64be('a BINFLOAT'));
          break;

        case OP.SHORT_BINUNICODE:
          this.push(this.str(cur.u8('the string length'), 'a SHORT_BINUNICODE string'));
          break;
        case OP.BINUNICODE:
          this.push(this.str(cur.u32('the string length'), 'a BINUNICODE string'));
          break;
        case OP.BINUNICODE8:
          this.push(this.str(cur.u64('the string length'), 'a BINUNICODE8 string'));
          break;
        case OP.UNICODE: {
          const line = cur.line('a UNICODE string', PICKLE_LIMITS.maxInlineTotal);
          this.charge(line.length);
          this.push(this.rawUnicodeEscape(line));
          break;
        }
        case OP.SHORT_BINBYTES:
          this.push(this.bytesValue(cur.u8('the bytes length'), 'SHORT_BINBYTES data'));
          break;
        case OP.BINBYTES:
          this.push(this.bytesValue(cur.u32('the bytes length'), 'BINBYTES data'));
          break;
        case OP.BINBYTES8:
          this.push(this.bytesValue(cur.u64('the bytes length'), 'BINBYTES8 data'));
          break;
        case OP.BYTEARRAY8:
          this.push(this.bytesValue(cur.u64('the bytearray length'), 'BYTEARRAY8 data'));
          break;
        case OP.SHORT_BINSTRING:
          this.push(this.bytesValue(cur.u8('the string length'), 'SHORT_BINSTRING data', true));
          break;
        case OP.BINSTRING: {
          const n = cur.i32('the string length');
          if (n < 0) this.fail('a BINSTRING length >= 0', `${n}`);
          this.push(this.bytesValue(n, 'BINSTRING data', true));
          break;
        }

        case OP.EMPTY_TUPLE:
          this.push(tuple([]));
          break;
        case OP.TUPLE:
          this.push(tuple(this.popMark('TUPLE')));
          break;
        case OP.TUPLE1: {
          const a = this.pop('1 value for TUPLE1');
          this.push(tuple([a]));
          break;
        }
        case OP.TUPLE2: {
          const b = this.pop('2 values for TUPLE2');
          const a = this.pop('2 values for TUPLE2');
          this.push(tuple([a, b]));
          break;
        }
        case OP.TUPLE3: {
          const c = this.pop('3 values for TUPLE3');
          const b = this.pop('3 values for TUPLE3');
          const a = this.pop('3 values for TUPLE3');
          this.push(tuple([a, b, c]));
          break;
        }
        case OP.EMPTY_LIST:
          this.push([]);
          break;
        case OP.LIST:
          this.push(this.popMark('LIST'));
          break;
        case OP.APPEND: {
          const v = this.pop('a value to APPEND');
          const list = this.top('a list to APPEND to');
          if (!isList(list)) this.fail('a list before APPEND', typeName(list));
          list.push(v);
          break;
        }
        case OP.APPENDS: {
          const items = this.popMark('APPENDS');
          const list = this.top('a list before APPENDS');
          if (!isList(list)) this.fail('a list before APPENDS', typeName(list));
          list.push(...items);
          break;
        }
        case OP.EMPTY_DICT:
          this.push(new Map());
          break;
        case OP.DICT: {
          const d = new Map<PickleKey, PickleValue>();
          this.setItems(d, this.popMark('DICT'), 'DICT');
          this.push(d);
          break;
        }
        case OP.SETITEM: {
          const v = this.pop('a value for SETITEM');
          const k = this.pop('a key for SETITEM');
          this.setItems(this.top('a dict for SETITEM'), [k, v], 'SETITEM');
          break;
        }
        case OP.SETITEMS: {
          const pairs = this.popMark('SETITEMS');
          this.setItems(this.top('a dict before SETITEMS'), pairs, 'SETITEMS');
          break;
        }

        case OP.GLOBAL: {
          const module = this.text(cur.line('a GLOBAL module name'), 'a GLOBAL module name');
          const name = this.text(cur.line('a GLOBAL name'), 'a GLOBAL name');
          this.push(this.global(module, name));
          break;
        }
        case OP.STACK_GLOBAL: {
          const name = this.pop('a name for STACK_GLOBAL');
          const module = this.pop('a module for STACK_GLOBAL');
          if (typeof module !== 'string' || typeof name !== 'string') {
            this.fail('two str for STACK_GLOBAL', `${typeName(module)}, ${typeName(name)}`);
          }
          this.push(this.global(module, name));
          break;
        }
        case OP.REDUCE: {
          const args = this.pop('arguments for REDUCE');
          const callable = this.pop('a callable for REDUCE');
          this.push(this.reduce(callable, args));
          break;
        }
        case OP.NEWOBJ: {
          const args = this.pop('arguments for NEWOBJ');
          const cls = this.pop('a class for NEWOBJ');
          this.push(this.newObject(cls, args, new Map()));
          break;
        }
        case OP.NEWOBJ_EX: {
          const kwargs = this.pop('keyword arguments for NEWOBJ_EX');
          const args = this.pop('arguments for NEWOBJ_EX');
          const cls = this.pop('a class for NEWOBJ_EX');
          if (!(kwargs instanceof Map)) this.fail('a dict of keyword arguments for NEWOBJ_EX', typeName(kwargs));
          this.push(this.newObject(cls, args, kwargs));
          break;
        }
        case OP.BUILD: {
          const state = this.pop('a state for BUILD');
          this.build(this.top('an object to BUILD'), state);
          break;
        }
        default:
          this.fail('a pickle opcode this reader supports (numpy array pickles, protocols 2-5)', describeOpcode(op));
      }
    }
  }

  /** Python's raw-unicode-escape: latin-1 bytes with \uXXXX and \UXXXXXXXX escapes. */
  private rawUnicodeEscape(b: Uint8Array): string {
    let s = '';
    for (let i = 0; i < b.length; i++) {
      const c = b[i]!;
      const digits = c === 0x5c && (b[i + 1] === 0x75 ? 4 : b[i + 1] === 0x55 ? 8 : 0);
      if (digits) {
        const hex = latin1(b.subarray(i + 2, i + 2 + digits));
        const cp = /^[0-9a-fA-F]+$/.test(hex) && hex.length === digits ? parseInt(hex, 16) : NaN;
        if (!(cp <= 0x10ffff)) this.fail('a valid \\u escape in a UNICODE string', JSON.stringify(hex));
        s += String.fromCodePoint(cp);
        i += 1 + digits;
      } else s += String.fromCharCode(c);
    }
    return s;
  }

  // -------------------------------------------------------------------------------------------
  // REDUCE / NEWOBJ / BUILD on allow-listed globals: each builds a descriptor, nothing runs

  private reduce(callable: PickleValue, args: PickleValue): PickleValue {
    if (!(callable instanceof PickleGlobal)) this.fail('a global as the REDUCE callable', typeName(callable));
    if (!isTuple(args)) this.fail(`an argument tuple for ${callable.qualifiedName}`, typeName(args));
    const q = callable.qualifiedName;
    if (RECONSTRUCT.has(q)) {
      // numpy's ndarray.__reduce__: _reconstruct(ndarray, (0,), b'b'); the state comes with BUILD.
      const [cls, shape, typecode] = args;
      if (args.length !== 3 || !(cls instanceof PickleGlobal) || cls.qualifiedName !== NDARRAY || !isTuple(shape!) || !(typecode instanceof PickleBytes)) {
        this.fail(`${q}(numpy.ndarray, (0,), b'b')`, `arguments (${args.map(typeName).join(', ')})`);
      }
      return new NumpyArray();
    }
    if (q === NUMPY_DTYPE) return this.dtype(args);
    if (q === CODECS_ENCODE) return this.codecsEncode(args);
    this.fail('REDUCE only of numpy _reconstruct, numpy.dtype or _codecs.encode', `REDUCE of ${q}`);
  }

  private dtype(args: readonly PickleValue[]): NumpyDType {
    const [arg, align, copy] = args;
    if (args.length !== 3 || typeof align !== 'boolean' || typeof copy !== 'boolean') {
      this.fail('numpy.dtype(type, align, copy)', `arguments (${args.map(typeName).join(', ')})`);
    }
    if (arg instanceof PickleGlobal) {
      if (arg.qualifiedName === BFLOAT16) return new NumpyDType(BFLOAT16, 'bf16', 2);
      this.fail('a numpy type string or ml_dtypes.bfloat16 as the dtype', arg.qualifiedName);
    }
    const name = typeof arg === 'string' ? arg : arg instanceof PickleBytes && arg.py2str && arg.data ? latin1(arg.data) : undefined;
    if (name === undefined) this.fail('a numpy type string as the dtype', typeName(arg!));
    const known = NUMPY_TYPES[name];
    if (!known) this.fail(`a numeric numpy dtype (${Object.keys(NUMPY_TYPES).join(', ')} or ml_dtypes.bfloat16)`, `dtype '${name.slice(0, 40)}'`);
    return new NumpyDType(name, known.dtype, known.itemsize);
  }

  private codecsEncode(args: readonly PickleValue[]): PickleBytes {
    const [text, encoding] = args;
    if (args.length !== 2 || typeof text !== 'string' || encoding !== 'latin1') {
      this.fail("_codecs.encode(str, 'latin1')", `arguments (${args.map(typeName).join(', ')})`);
    }
    const out = new Uint8Array(text.length);
    for (let i = 0; i < text.length; i++) {
      const c = text.charCodeAt(i);
      if (c > 0xff) this.fail('latin-1 text for _codecs.encode', `character U+${c.toString(16).padStart(4, '0')}`);
      out[i] = c;
    }
    this.charge(out.length);
    return new PickleBytes(this.at, out.length, out, false);
  }

  private newObject(cls: PickleValue, args: PickleValue, kwargs: Map<PickleKey, PickleValue>): QuantizedWeight8bit {
    if (!(cls instanceof PickleGlobal) || cls.qualifiedName !== QW8) {
      this.fail(`NEWOBJ only of ${QW8}`, typeName(cls));
    }
    if (!isTuple(args) || args.length !== 0 || kwargs.size !== 0) this.fail(`${QW8} created without arguments`, typeName(args));
    return new QuantizedWeight8bit();
  }

  private build(obj: PickleValue, state: PickleValue): void {
    if (obj instanceof NumpyDType) return this.buildDType(obj, state);
    if (obj instanceof NumpyArray) return this.buildArray(obj, state);
    if (obj instanceof QuantizedWeight8bit) return this.buildQuantized(obj, state);
    this.fail('BUILD only of a numpy dtype, ndarray or QuantizedWeight8bit', typeName(obj));
  }

  private buildDType(d: NumpyDType, state: PickleValue): void {
    // numpy arraydescr_setstate, version 3: (3, byteorder, subarray, names, fields, elsize, alignment, flags)
    if (d.byteOrder !== undefined) this.fail('one BUILD per dtype', 'a second BUILD');
    if (!isTuple(state) || state.length !== 8 || state[0] !== 3) {
      this.fail('a numpy dtype state (3, byteorder, None, None, None, elsize, alignment, flags)', typeName(state));
    }
    const [, order, subarray, names, fields, elsize, alignment, flags] = state;
    if (subarray !== null || names !== null || fields !== null) this.fail('a plain numeric dtype', `a structured or subarray dtype ${d.numpyName}`);
    if (typeof elsize !== 'number' || typeof alignment !== 'number' || typeof flags !== 'number') {
      this.fail('integer elsize, alignment and flags in the dtype state', `${typeName(elsize!)}, ${typeName(alignment!)}, ${typeName(flags!)}`);
    }
    if (elsize !== -1 && elsize !== d.itemsize) this.fail(`elsize ${d.itemsize} for dtype ${d.numpyName}`, `${elsize}`);
    const o = typeof order === 'string' ? order : order instanceof PickleBytes && order.py2str && order.data ? latin1(order.data) : undefined;
    const wanted = d.itemsize === 1 ? ['|', '<'] : ['<'];
    if (o === undefined || !wanted.includes(o)) {
      this.fail(`byte order ${wanted.map((c) => `'${c}'`).join(' or ')} for dtype ${d.numpyName} (little-endian only)`, JSON.stringify(o ?? typeName(order!)));
    }
    d.byteOrder = o as '<' | '|';
  }

  private buildArray(a: NumpyArray, state: PickleValue): void {
    // numpy array_setstate: (version, shape, dtype, is_fortran, rawdata); version omitted in old files
    if (a.info) this.fail('one BUILD per ndarray', 'a second BUILD');
    if (!isTuple(state) || (state.length !== 5 && state.length !== 4)) this.fail('an ndarray state (1, shape, dtype, fortran, data)', typeName(state));
    const s = state.length === 5 ? state.slice(1) : state;
    if (state.length === 5 && state[0] !== 1) this.fail('ndarray state version 1', String(state[0]));
    const [shapeV, dtypeV, fortran, data] = s as [PickleValue, PickleValue, PickleValue, PickleValue];
    if (!isTuple(shapeV)) this.fail('a shape tuple', typeName(shapeV));
    if (shapeV.length > PICKLE_LIMITS.maxRank) this.fail(`at most ${PICKLE_LIMITS.maxRank} dimensions`, `${shapeV.length}`);
    const shape: number[] = [];
    let count = 1;
    for (const n of shapeV) {
      if (typeof n !== 'number' || !Number.isSafeInteger(n) || n < 0) this.fail('non-negative integer dimensions', typeName(n));
      shape.push(n);
      count *= n;
    }
    if (!(dtypeV instanceof NumpyDType) || dtypeV.byteOrder === undefined) this.fail('a built numpy dtype in the ndarray state', typeName(dtypeV));
    if (fortran !== false && fortran !== 0) {
      this.fail('a C-order array (is_fortran False)', fortran === true || fortran === 1 ? 'Fortran order' : typeName(fortran));
    }
    if (!(data instanceof PickleBytes)) this.fail('raw bytes as the ndarray data', typeName(data));
    const byteLength = count * dtypeV.itemsize;
    if (!Number.isSafeInteger(byteLength) || byteLength !== data.length) {
      this.fail(`${byteLength} data bytes for shape [${shape.join(', ')}] of ${dtypeV.dtype}`, `${data.length}`);
    }
    a.info = {
      dtype: dtypeV.dtype,
      shape,
      offset: data.offset,
      byteLength,
      ...(data.verbatim ? {} : { decoded: data.data! }),
    };
  }

  private buildQuantized(q: QuantizedWeight8bit, state: PickleValue): void {
    if (q.weight) this.fail(`one BUILD per ${QW8}`, 'a second BUILD');
    if (!(state instanceof Map) || state.size !== 2 || !state.has('weight') || !state.has('scales')) {
      this.fail(`a state dict {'weight', 'scales'} for ${QW8}`, state instanceof Map ? `keys ${[...state.keys()].join(', ')}` : typeName(state));
    }
    const w = state.get('weight')!;
    const s = state.get('scales')!;
    if (!(w instanceof NumpyArray) || !w.info || !(s instanceof NumpyArray) || !s.info) {
      this.fail(`built ndarrays as ${QW8} weight and scales`, `${typeName(w)}, ${typeName(s)}`);
    }
    q.weight = w.info;
    q.scales = s.info;
  }
}

/**
 * Interprets the pickle at the start of `src`. Reads the opcode stream and small objects only;
 * every bytes object above PICKLE_LIMITS.inlineBytes is skipped and returned as a file range.
 * Any opcode, global or construction outside the numpy-array subset is a FormatError naming the
 * file, the byte offset and what was expected.
 */
export function unpickle(src: ByteSource): UnpickleResult {
  return new Unpickler(src).run();
}
