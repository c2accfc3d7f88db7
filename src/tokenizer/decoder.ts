/**
 * The decoder (SentencePieceProcessor::Decode): the leading-space rule, byte pieces reassembled
 * into UTF-8 with the library's one-U+FFFD-per-invalid-byte rule, and a streaming decoder that
 * emits text as soon as it is certain, never half a character.
 */
import { UsageError } from '../errors.js';
import type { NormalizerFlags } from './normalizer.js';
import { PieceType } from './sentencepiece-model.js';
import { SPACE_CODE, SPACE_SYMBOL } from './spans.js';
import type { Vocabulary } from './vocabulary.js';

const REPLACEMENT_CHAR = '\ufffd';

const KIND_TEXT = 0;
const KIND_CONTROL = 1;
const KIND_UNKNOWN = 2;
const KIND_BYTE = 3;

/** Per id, what Decode does with it (after the library's PieceToId(IdToPiece(id)) round trip). */
export interface DecodeTable {
  readonly kind: Uint8Array;
  /** KIND_TEXT: the piece with ▁ written as ' '; KIND_BYTE: unused. */
  readonly text: readonly string[];
  /** KIND_BYTE: the byte value. */
  readonly byte: Uint8Array;
  /** KIND_TEXT: whether the piece starts with ▁ (the leading-space rule may drop it). */
  readonly startsWithSpace: Uint8Array;
  readonly unkSurface: string;
  /** add_dummy_prefix || remove_extra_whitespaces: whether the leading ▁ is dropped at all. */
  readonly stripLeadingSpace: boolean;
  readonly removeExtraWhitespaces: boolean;
}

export function buildDecodeTable(v: Vocabulary, unkSurface: string, f: NormalizerFlags): DecodeTable {
  const size = v.pieces.length;
  const kind = new Uint8Array(size);
  const byte = new Uint8Array(size);
  const startsWithSpace = new Uint8Array(size);
  const text: string[] = new Array<string>(size);
  for (let id = 0; id < size; id++) {
    const piece = v.pieces[id]!;
    // Decode maps ids to pieces and back (PieceToId), so a shadowed piece acts as the reserved one.
    const type = v.types[v.outputId[id]!]!;
    text[id] = '';
    if (type === PieceType.CONTROL) kind[id] = KIND_CONTROL;
    else if (type === PieceType.UNKNOWN) kind[id] = KIND_UNKNOWN;
    else if (type === PieceType.BYTE) {
      kind[id] = KIND_BYTE;
      byte[id] = parseInt(piece.slice(3, 5), 16);
    } else {
      kind[id] = KIND_TEXT;
      const hasSpace = piece.indexOf(SPACE_SYMBOL) >= 0;
      text[id] = hasSpace ? piece.replaceAll(SPACE_SYMBOL, ' ') : piece;
      startsWithSpace[id] = hasSpace && piece.charCodeAt(0) === SPACE_CODE ? 1 : 0;
    }
  }
  return {
    kind,
    text,
    byte,
    startsWithSpace,
    unkSurface,
    stripLeadingSpace: f.addDummyPrefix || f.removeExtraWhitespaces,
    removeExtraWhitespaces: f.removeExtraWhitespaces,
  };
}

function isTrail(b: number): boolean {
  return (b & 0xc0) === 0x80;
}

/** Bytes a sequence led by `b0` needs, by the library's OneCharLen-style test; 1 for invalid leads. */
function sequenceLength(b0: number): number {
  if (b0 < 0x80) return 1;
  if ((b0 & 0xe0) === 0xc0) return 2;
  if ((b0 & 0xf0) === 0xe0) return 3;
  if ((b0 & 0xf8) === 0xf0) return 4;
  return 1;
}

/**
 * Whether the first two bytes already rule the sequence out (overlong, surrogate, > U+10FFFF),
 * whatever follows. Only makes a streaming decoder emit U+FFFD sooner; the result is the same.
 */
function hopelessStart(b0: number, b1: number): boolean {
  if (b0 === 0xc0 || b0 === 0xc1 || (b0 >= 0xf5 && b0 <= 0xf7)) return true;
  if (b0 === 0xe0) return b1 < 0xa0;
  if (b0 === 0xed) return b1 >= 0xa0;
  if (b0 === 0xf0) return b1 < 0x90;
  if (b0 === 0xf4) return b1 >= 0x90;
  return false;
}

/**
 * Decodes ids one at a time. `push` returns the text that is now certain (possibly ''): bytes of a
 * character split over several byte pieces are held until the character is complete or cannot
 * be. The concatenation of all `push` results and a final `flush()` equals `decode(ids)`.
 */
export class StreamingDecoder {
  /** The library's `is_bos_ws`: the next ▁-led piece may still lose its ▁. */
  private isBosWs: boolean;
  private bosWsSeen = false;
  private textEmpty: boolean;
  private readonly pending = new Uint8Array(4);
  private pendingLen = 0;

  /**
   * `continuation`: the ids continue a text decoded elsewhere (a prompt), so the first piece keeps
   * its leading ▁ as a space: prompt text + these deltas = decode(prompt ids + these ids).
   */
  constructor(private readonly table: DecodeTable, private readonly vocabSize: number, continuation = false) {
    this.isBosWs = !continuation;
    this.textEmpty = !continuation;
  }

  push(id: number): string {
    const t = this.table;
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new UsageError(`token id ${id} is out of range: this vocabulary has ids 0..${this.vocabSize - 1}`, 'ids');
    }
    const kind = t.kind[id]!;
    if (kind === KIND_BYTE) {
      this.pending[this.pendingLen++] = t.byte[id]!;
      return this.drainBytes(false);
    }
    let out = this.pendingLen > 0 ? this.drainBytes(true) : '';
    if (this.bosWsSeen || !this.textEmpty) this.isBosWs = false;
    let piece: string;
    let seen = false;
    if (kind === KIND_CONTROL) piece = '';
    else if (kind === KIND_UNKNOWN) piece = t.unkSurface;
    else {
      piece = t.text[id]!;
      if (this.isBosWs && t.stripLeadingSpace && t.startsWithSpace[id]) {
        piece = piece.slice(1);
        seen = !t.removeExtraWhitespaces;
      }
    }
    this.bosWsSeen = seen;
    if (piece !== '') this.textEmpty = false;
    return out + piece;
  }

  /** Ends the sequence: bytes still held become U+FFFD, one per byte, as the library does. */
  flush(): string {
    return this.pendingLen > 0 ? this.drainBytes(true) : '';
  }

  /**
   * Emits the characters the held bytes now determine. `final`: the byte run has ended (a
   * non-byte piece or the end), so a truncated sequence is invalid. Invalid sequences give one
   * U+FFFD for their first byte and are re-read from the next byte (util.cc DecodeUTF8).
   */
  private drainBytes(final: boolean): string {
    const p = this.pending;
    let out = '';
    while (this.pendingLen > 0) {
      const k = this.pendingLen;
      const b0 = p[0]!;
      const need = sequenceLength(b0);
      let consumed = 1;
      let cp = -1;
      if (need === 1) {
        if (b0 < 0x80) cp = b0;
      } else if (k < need) {
        let invalid = final || (k > 1 && hopelessStart(b0, p[1]!)) || b0 === 0xc0 || b0 === 0xc1 || b0 >= 0xf5;
        for (let j = 1; j < k && !invalid; j++) if (!isTrail(p[j]!)) invalid = true;
        if (!invalid) break; // the character may still complete: wait for the next byte
      } else {
        cp = decodeSequence(p, need);
        if (cp >= 0) consumed = need;
      }
      out += cp < 0 ? REPLACEMENT_CHAR : String.fromCodePoint(cp);
      p.copyWithin(0, consumed, k);
      this.pendingLen = k - consumed;
    }
    if (out !== '') this.textEmpty = false;
    return out;
  }
}

/** The code point of a complete `need`-byte sequence at p[0], or -1 (util.cc DecodeUTF8). */
function decodeSequence(p: Uint8Array, need: number): number {
  const b0 = p[0]!;
  let cp: number;
  let min: number;
  if (need === 2) {
    if (!isTrail(p[1]!)) return -1;
    cp = ((b0 & 0x1f) << 6) | (p[1]! & 0x3f);
    min = 0x80;
  } else if (need === 3) {
    if (!isTrail(p[1]!) || !isTrail(p[2]!)) return -1;
    cp = ((b0 & 0x0f) << 12) | ((p[1]! & 0x3f) << 6) | (p[2]! & 0x3f);
    min = 0x800;
  } else {
    if (!isTrail(p[1]!) || !isTrail(p[2]!) || !isTrail(p[3]!)) return -1;
    cp = ((b0 & 0x07) << 18) | ((p[1]! & 0x3f) << 12) | ((p[2]! & 0x3f) << 6) | (p[3]! & 0x3f);
    min = 0x10000;
  }
  if (cp < min || (cp >= 0xd800 && cp < 0xe000) || cp > 0x10ffff) return -1;
  return cp;
}
