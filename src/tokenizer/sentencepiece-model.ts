/**
 * Decodes a SentencePiece `tokenizer.model` (a protobuf `ModelProto`, sentencepiece_model.proto)
 * into plain arrays and the trainer/normaliser settings that change encoding. Only the fields the
 * tokenizer uses are kept; every other field is skipped by its wire type. Bad bytes raise a
 * TokenizerModelError naming the field path (`pieces[17].score`, `trainer_spec.unk_surface`, ...).
 *
 * Proto2 defaults matter: an absent `remove_extra_whitespaces` means true, an absent `type` means
 * NORMAL. A truncated file can still end on a field boundary, so `trainer_spec` and
 * `normalizer_spec` (which every real model file carries, after the pieces) are required: without
 * them a cut file would silently load with default settings and encode differently.
 */
import { FormatError } from '../errors.js';

/** ModelProto.SentencePiece.Type: the same numbers GGUF stores in `tokenizer.ggml.token_type`. */
export const PieceType = {
  NORMAL: 1,
  UNKNOWN: 2,
  CONTROL: 3,
  USER_DEFINED: 4,
  UNUSED: 5,
  BYTE: 6,
} as const;
export type PieceTypeValue = (typeof PieceType)[keyof typeof PieceType];

/** TrainerSpec.ModelType. */
export const ModelType = { UNIGRAM: 1, BPE: 2, WORD: 3, CHAR: 4 } as const;

export interface TrainerSpec {
  readonly modelType: number;
  readonly vocabSize: number;
  readonly byteFallback: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
  readonly unkPiece: string;
  readonly bosPiece: string;
  readonly eosPiece: string;
  readonly padPiece: string;
  /** What decode prints for the unknown piece (the library's default is " ⁇ "). */
  readonly unkSurface: string;
  readonly userDefinedSymbols: readonly string[];
  readonly controlSymbols: readonly string[];
}

export interface NormalizerSpec {
  readonly name: string;
  /** Empty for the identity normaliser; otherwise a Darts trie plus replacement strings. */
  readonly precompiledCharsmap: Uint8Array;
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
}

export interface SentencePieceModel {
  /** The piece of each id, as UTF-8-decoded text. */
  readonly pieces: readonly string[];
  readonly scores: Float32Array;
  /** PieceType of each id. */
  readonly types: Uint8Array;
  readonly trainer: TrainerSpec;
  readonly normalizer: NormalizerSpec;
  /** Present when the file has a denormalizer_spec. */
  readonly denormalizer: NormalizerSpec | undefined;
}

/**
 * A FormatError that also names the field it was raised for: a protobuf field path
 * (`pieces[3].piece`, `trainer_spec.unk_surface`) or a vocabulary entry (`pieces[7]`).
 */
export class TokenizerModelError extends FormatError {
  readonly field: string;
  constructor(args: { file: string; offset?: number; field: string; expected: string; found?: string }) {
    super({ ...args, expected: `${args.field}: ${args.expected}` });
    this.field = args.field;
  }
}

export const TRAINER_DEFAULTS: TrainerSpec = Object.freeze({
  modelType: ModelType.UNIGRAM,
  vocabSize: 8000,
  byteFallback: false,
  treatWhitespaceAsSuffix: false,
  unkPiece: '<unk>',
  bosPiece: '<s>',
  eosPiece: '</s>',
  padPiece: '<pad>',
  unkSurface: ' \u2047 ',
  userDefinedSymbols: [],
  controlSymbols: [],
});

export const NORMALIZER_DEFAULTS: NormalizerSpec = Object.freeze({
  name: '',
  precompiledCharsmap: new Uint8Array(0),
  addDummyPrefix: true,
  removeExtraWhitespaces: true,
  escapeWhitespaces: true,
});

const WIRE_VARINT = 0;
const WIRE_I64 = 1;
const WIRE_LEN = 2;
const WIRE_I32 = 5;
const WIRE_NAMES = ['varint', '64-bit', 'length-delimited', 'group start', 'group end', '32-bit', 'wire type 6', 'wire type 7'];

/** Well-formed UTF-8: no stray or missing continuation bytes, overlongs, surrogates or > U+10FFFF. */
function isStrictUtf8(b: Uint8Array, start: number, end: number): boolean {
  for (let i = start; i < end; ) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let min: number;
    if (c >= 0xc2 && c <= 0xdf) (need = 1), (min = 0x80);
    else if (c >= 0xe0 && c <= 0xef) (need = 2), (min = 0x800);
    else if (c >= 0xf0 && c <= 0xf4) (need = 3), (min = 0x10000);
    else return false;
    if (i + need >= end) return false;
    let cp = c & (0x3f >> need);
    for (let k = 1; k <= need; k++) {
      const t = b[i + k]!;
      if ((t & 0xc0) !== 0x80) return false;
      cp = (cp << 6) | (t & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp < 0xe000)) return false;
    i += need + 1;
  }
  return true;
}

/**
 * A bounds-checked cursor over one protobuf message. Lengths are checked against the bytes left
 * before anything is sliced, so a hostile length can neither allocate nor read past the message.
 */
class ProtoReader {
  pos: number;
  /** Low and high 32 bits of the last varint read (kept as fields: no allocation per varint). */
  lo = 0;
  hi = 0;
  fieldNumber = 0;
  wireType = 0;
  tagOffset = 0;

  constructor(
    private readonly bytes: Uint8Array,
    readonly view: DataView,
    readonly text: Buffer,
    private readonly file: string,
    start: number,
    readonly end: number,
    /** Where this message sits (`trainer_spec`); built only for error messages. */
    private readonly parentPath: string,
    private readonly fieldName: string,
    private readonly index: number,
  ) {
    this.pos = start;
  }

  static forMessage(bytes: Uint8Array, file: string): ProtoReader {
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    return new ProtoReader(bytes, view, text, file, 0, bytes.length, '', '', -1);
  }

  private path(): string {
    const own = this.index < 0 ? this.fieldName : `${this.fieldName}[${this.index}]`;
    return this.parentPath === '' ? own : own === '' ? this.parentPath : `${this.parentPath}.${own}`;
  }

  fail(field: string, expected: string, found?: string, offset = this.tagOffset): never {
    const path = this.path();
    const where = path === '' ? field : `${path}.${field}`;
    throw new TokenizerModelError({ file: this.file, offset, field: where, expected, ...(found === undefined ? {} : { found }) });
  }

  /** Reads the next tag; false at the end of the message. */
  nextField(): boolean {
    if (this.pos >= this.end) return false;
    this.tagOffset = this.pos;
    this.readVarint('tag');
    if (this.hi !== 0 || this.lo >>> 3 === 0) this.fail('tag', 'a field number between 1 and 2^29-1', `${this.hi ? 'a 64-bit value' : 0}`);
    this.fieldNumber = this.lo >>> 3;
    this.wireType = this.lo & 7;
    return true;
  }

  readVarint(field: string): void {
    const b = this.bytes;
    let lo = 0;
    let hi = 0;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) this.fail(field, 'a complete varint', 'the end of the message (truncated file?)', this.pos);
      const byte = b[this.pos++]!;
      if (i < 4) lo |= (byte & 0x7f) << (7 * i);
      else if (i === 4) {
        lo |= (byte & 0x0f) << 28;
        hi = (byte & 0x7f) >>> 4;
      } else hi |= (byte & 0x7f) << (7 * i - 32);
      if (byte < 0x80) {
        this.lo = lo >>> 0;
        this.hi = hi >>> 0;
        return;
      }
    }
    this.fail(field, 'a varint of at most 10 bytes', 'a longer one');
  }

  private expectWire(field: string, wire: number): void {
    if (this.wireType !== wire) this.fail(field, `wire type ${WIRE_NAMES[wire]}`, WIRE_NAMES[this.wireType]);
  }

  /** int32 / enum: the low 32 bits as two's complement (negative values are 10-byte varints). */
  int32(field: string): number {
    this.expectWire(field, WIRE_VARINT);
    this.readVarint(field);
    return this.lo | 0;
  }

  bool(field: string): boolean {
    this.expectWire(field, WIRE_VARINT);
    this.readVarint(field);
    return this.lo !== 0 || this.hi !== 0;
  }

  float(field: string): number {
    this.expectWire(field, WIRE_I32);
    if (this.end - this.pos < 4) this.fail(field, '4 bytes of float', `${this.end - this.pos} bytes before the end of the message (truncated file?)`);
    const value = this.view.getFloat32(this.pos, true);
    this.pos += 4;
    return value;
  }

  /** Returns [start, end) of a length-delimited payload and moves past it. */
  span(field: string, index = -1): [number, number] {
    const name = index < 0 ? field : `${field}[${index}]`;
    this.expectWire(name, WIRE_LEN);
    this.readVarint(name);
    const left = this.end - this.pos;
    if (this.hi !== 0 || this.lo > left) {
      this.fail(name, `a length of at most the ${left} bytes left in the message`, this.hi ? 'a 64-bit length' : `${this.lo} (truncated file?)`);
    }
    const start = this.pos;
    this.pos += this.lo;
    return [start, this.pos];
  }

  string(field: string): string {
    const [s, e] = this.span(field);
    const b = this.bytes;
    let ascii = true;
    for (let i = s; i < e; i++) {
      if (b[i]! >= 0x80) {
        ascii = false;
        break;
      }
    }
    if (ascii) return this.text.toString('latin1', s, e);
    if (!isStrictUtf8(b, s, e)) this.fail(field, 'UTF-8 text', 'invalid UTF-8', s);
    // Buffer's decoder keeps a leading U+FEFF (a piece may be exactly that), unlike TextDecoder.
    return this.text.toString('utf8', s, e);
  }

  bytesField(field: string): Uint8Array {
    const [s, e] = this.span(field);
    return this.bytes.slice(s, e);
  }

  /** A reader over the embedded message in this field; `index` numbers a repeated field. */
  child(field: string, index = -1): ProtoReader {
    const [s, e] = this.span(field, index);
    return new ProtoReader(this.bytes, this.view, this.text, this.file, s, e, this.path(), field, index);
  }

  skip(): void {
    const field = `field ${this.fieldNumber}`;
    switch (this.wireType) {
      case WIRE_VARINT:
        this.readVarint(field);
        return;
      case WIRE_I64:
      case WIRE_I32: {
        const n = this.wireType === WIRE_I64 ? 8 : 4;
        if (this.end - this.pos < n) this.fail(field, `${n} bytes`, `${this.end - this.pos} before the end of the message (truncated file?)`);
        this.pos += n;
        return;
      }
      case WIRE_LEN:
        this.span(field);
        return;
      default:
        this.fail(field, 'wire type varint, 64-bit, length-delimited or 32-bit', WIRE_NAMES[this.wireType]);
    }
  }
}

/**
 * The usual layout of a piece (piece string shorter than 128 bytes, score, optional type), read
 * in one tight loop: loading 131072 pieces through the general reader costs several times more
 * in a cold process. Returns false for anything else, which the general reader then handles.
 */
function readPieceFast(
  bytes: Uint8Array,
  view: DataView,
  text: Buffer,
  start: number,
  end: number,
  pieces: string[],
  scores: number[],
  types: number[],
): boolean {
  let p = start;
  if (end - p < 2 || bytes[p] !== 0x0a) return false;
  const len = bytes[p + 1]!;
  p += 2;
  if (len === 0 || len >= 0x80 || p + len > end) return false;
  let ascii = true;
  for (let i = p; i < p + len; i++) if (bytes[i]! >= 0x80) ascii = false;
  if (!ascii && !isStrictUtf8(bytes, p, p + len)) return false;
  const piece = text.toString(ascii ? 'latin1' : 'utf8', p, p + len);
  p += len;
  let score = 0;
  let type: number = PieceType.NORMAL;
  if (p < end && bytes[p] === 0x15) {
    if (p + 5 > end) return false;
    score = view.getFloat32(p + 1, true);
    p += 5;
  }
  if (p < end && bytes[p] === 0x18) {
    if (p + 2 > end) return false;
    type = bytes[p + 1]!;
    if (type < PieceType.NORMAL || type > PieceType.BYTE) return false;
    p += 2;
  }
  if (p !== end) return false;
  pieces.push(piece);
  scores.push(score);
  types.push(type);
  return true;
}

function readPiece(r: ProtoReader, pieces: string[], scores: number[], types: number[]): void {
  let piece: string | undefined;
  let score = 0;
  let type: number = PieceType.NORMAL;
  while (r.nextField()) {
    switch (r.fieldNumber) {
      case 1:
        piece = r.string('piece');
        break;
      case 2:
        score = r.float('score');
        break;
      case 3:
        type = r.int32('type');
        if (type < PieceType.NORMAL || type > PieceType.BYTE) r.fail('type', 'a piece type 1..6 (NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE)', String(type));
        break;
      default:
        r.skip();
    }
  }
  if (piece === undefined || piece === '') r.fail('piece', 'a non-empty piece', piece === undefined ? 'none' : 'an empty string', r.end);
  pieces.push(piece);
  scores.push(score);
  types.push(type);
}

function readTrainer(r: ProtoReader): TrainerSpec {
  const t = { ...TRAINER_DEFAULTS, userDefinedSymbols: [] as string[], controlSymbols: [] as string[] };
  while (r.nextField()) {
    switch (r.fieldNumber) {
      case 3:
        t.modelType = r.int32('model_type');
        break;
      case 4:
        t.vocabSize = r.int32('vocab_size');
        break;
      case 24:
        t.treatWhitespaceAsSuffix = r.bool('treat_whitespace_as_suffix');
        break;
      case 30:
        t.controlSymbols.push(r.string('control_symbols'));
        break;
      case 31:
        t.userDefinedSymbols.push(r.string('user_defined_symbols'));
        break;
      case 35:
        t.byteFallback = r.bool('byte_fallback');
        break;
      case 44:
        t.unkSurface = r.string('unk_surface');
        break;
      case 45:
        t.unkPiece = r.string('unk_piece');
        break;
      case 46:
        t.bosPiece = r.string('bos_piece');
        break;
      case 47:
        t.eosPiece = r.string('eos_piece');
        break;
      case 48:
        t.padPiece = r.string('pad_piece');
        break;
      default:
        r.skip();
    }
  }
  return t;
}

function readNormalizer(r: ProtoReader): NormalizerSpec {
  const n = { ...NORMALIZER_DEFAULTS };
  while (r.nextField()) {
    switch (r.fieldNumber) {
      case 1:
        n.name = r.string('name');
        break;
      case 2:
        n.precompiledCharsmap = r.bytesField('precompiled_charsmap');
        break;
      case 3:
        n.addDummyPrefix = r.bool('add_dummy_prefix');
        break;
      case 4:
        n.removeExtraWhitespaces = r.bool('remove_extra_whitespaces');
        break;
      case 5:
        n.escapeWhitespaces = r.bool('escape_whitespaces');
        break;
      default:
        r.skip();
    }
  }
  return n;
}

/** Parses the bytes of a `tokenizer.model`. `file` names the source in error messages. */
export function parseModelProto(bytes: Uint8Array, file = 'tokenizer.model'): SentencePieceModel {
  const r: ProtoReader = ProtoReader.forMessage(bytes, file);
  const pieces: string[] = [];
  const scores: number[] = [];
  const types: number[] = [];
  let trainer: TrainerSpec | undefined;
  let normalizer: NormalizerSpec | undefined;
  let denormalizer: NormalizerSpec | undefined;
  while (r.nextField()) {
    switch (r.fieldNumber) {
      case 1: {
        const child = r.child('pieces', pieces.length);
        if (!readPieceFast(bytes, r.view, r.text, child.pos, child.end, pieces, scores, types)) readPiece(child, pieces, scores, types);
        break;
      }
      case 2:
        trainer = readTrainer(r.child('trainer_spec'));
        break;
      case 3:
        normalizer = readNormalizer(r.child('normalizer_spec'));
        break;
      case 5:
        denormalizer = readNormalizer(r.child('denormalizer_spec'));
        break;
      default:
        r.skip();
    }
  }
  if (pieces.length === 0) r.fail('pieces', 'at least one piece', 'none (not a SentencePiece model?)', bytes.length);
  if (trainer === undefined) r.fail('trainer_spec', 'a trainer_spec message after the pieces', 'none (truncated file?)', bytes.length);
  if (normalizer === undefined) r.fail('normalizer_spec', 'a normalizer_spec message after trainer_spec', 'none (truncated file?)', bytes.length);
  return {
    pieces,
    scores: Float32Array.from(scores),
    types: Uint8Array.from(types),
    trainer,
    normalizer,
    denormalizer,
  };
}
