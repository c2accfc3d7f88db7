/**
 * A SentencePiece vocabulary as the encoder and decoder use it: the pieces by spelling, split
 * into the ones BPE may produce and the reserved ones, plus the tables derived once at load. The
 * checks here are the ones the library makes when it loads a model.
 */
import { PieceType, TokenizerModelError } from './sentencepiece-model.js';
import { codePointLength, spanHash } from './spans.js';

const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

/**
 * Pieces by spelling, looked up by a span of a longer text: an open-addressing table over
 * FNV hashes that compares in place (startsWith), so the hot loop allocates no substrings.
 */
export class PieceTable {
  private readonly slotId: Int32Array;
  private readonly slotHash: Int32Array;
  private readonly mask: number;

  constructor(private readonly pieces: readonly string[], capacity: number) {
    let slots = 16;
    while (slots < 2 * capacity) slots *= 2;
    this.slotId = new Int32Array(slots).fill(-1);
    this.slotHash = new Int32Array(slots);
    this.mask = slots - 1;
  }

  /** Adds piece `id`; returns the id already holding that spelling instead, if any. */
  add(id: number): number {
    const piece = this.pieces[id]!;
    const h = spanHash(piece, 0, piece.length);
    let i = h & this.mask;
    for (let other = this.slotId[i]!; other !== -1; i = (i + 1) & this.mask, other = this.slotId[i]!) {
      if (this.slotHash[i] === h && this.pieces[other] === piece) return other;
    }
    this.slotId[i] = id;
    this.slotHash[i] = h;
    return id;
  }

  /** The id spelled text[s, e), or -1. */
  find(text: string, s: number, e: number): number {
    const h = spanHash(text, s, e);
    const len = e - s;
    for (let i = h & this.mask; ; i = (i + 1) & this.mask) {
      const id = this.slotId[i]!;
      if (id === -1) return -1;
      if (this.slotHash[i] === h) {
        const piece = this.pieces[id]!;
        if (piece.length === len && text.startsWith(piece, s)) return id;
      }
    }
  }

  get(piece: string): number | undefined {
    const id = this.find(piece, 0, piece.length);
    return id < 0 ? undefined : id;
  }
}

/** Everything derived from the piece list once, at load. */
export interface Vocabulary {
  readonly pieces: readonly string[];
  readonly scores: Float32Array;
  readonly types: Uint8Array;
  /** NORMAL, USER_DEFINED and UNUSED pieces: the ones BPE may produce (the library's `pieces_`). */
  readonly mergeable: PieceTable;
  /** CONTROL, UNKNOWN and BYTE pieces (the library's `reserved_id_map_`). */
  readonly reserved: Map<string, number>;
  readonly unkId: number;
  /** The id PieceToId gives each piece's spelling: itself, or the reserved id of the same spelling. */
  readonly outputId: Int32Array;
  /** Mergeable id of each one-code-unit piece, -1 when none (BMP fast path for BPE's start). */
  readonly bmpCharId: Int32Array;
  /** PieceToId of each byte's piece <0xNN> (byte fallback). */
  readonly byteId: Int32Array;
  readonly hasUnused: boolean;
  /** Some reserved piece is one code point long, so an unknown character may still be found. */
  readonly hasOneCharReserved: boolean;
}

/** NORMAL, USER_DEFINED and UNUSED pieces take part in BPE (the library's `pieces_`). */
export function isMergeableType(type: number): boolean {
  return type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED;
}

export function buildVocabulary(
  pieces: readonly string[],
  scores: Float32Array,
  types: Uint8Array,
  byteFallback: boolean,
  source: string,
): Vocabulary {
  const fail: (field: string, expected: string, found?: string) => never = (field, expected, found) => {
    throw new TokenizerModelError({ file: source, field, expected, ...(found === undefined ? {} : { found }) });
  };
  let mergeableCount = 0;
  for (let id = 0; id < pieces.length; id++) if (isMergeableType(types[id]!)) mergeableCount++;
  const mergeable = new PieceTable(pieces, mergeableCount);
  const reserved = new Map<string, number>();
  const bytesSeen = new Uint8Array(256);
  let unkId = -1;
  let hasUnused = false;
  for (let id = 0; id < pieces.length; id++) {
    const piece = pieces[id]!;
    const type = types[id]!;
    if (piece === '') fail(`pieces[${id}]`, 'a non-empty piece', 'an empty string');
    if (type < PieceType.NORMAL || type > PieceType.BYTE) fail(`pieces[${id}].type`, 'a piece type 1..6', String(type));
    if (isMergeableType(type)) {
      const before = mergeable.add(id);
      if (before !== id) fail(`pieces[${id}]`, 'a piece defined once', `${JSON.stringify(piece)} is already id ${before}`);
    } else {
      const before = reserved.get(piece);
      if (before !== undefined) fail(`pieces[${id}]`, 'a piece defined once', `${JSON.stringify(piece)} is already id ${before}`);
      reserved.set(piece, id);
    }
    if (type === PieceType.UNUSED) hasUnused = true;
    if (type === PieceType.UNKNOWN) {
      if (unkId >= 0) fail(`pieces[${id}].type`, 'one UNKNOWN piece', `a second one (the first is id ${unkId})`);
      unkId = id;
    }
    if (type === PieceType.BYTE) {
      if (!byteFallback) fail(`pieces[${id}].type`, 'no BYTE pieces, since byte_fallback is false', `BYTE piece ${JSON.stringify(piece)}`);
      const m = BYTE_PIECE.exec(piece);
      if (!m) fail(`pieces[${id}].piece`, 'a byte piece spelled <0xNN> (upper-case hex)', JSON.stringify(piece));
      bytesSeen[parseInt(m[1]!, 16)] = 1;
    }
  }
  if (unkId < 0) fail('pieces', 'an UNKNOWN piece', 'none');
  const missing = bytesSeen.indexOf(0);
  if (byteFallback && missing >= 0) {
    fail('pieces', 'all 256 byte pieces, since byte_fallback is true', `no <0x${missing.toString(16).toUpperCase().padStart(2, '0')}>`);
  }

  // PieceToId looks in the reserved pieces first, so a mergeable piece spelled like a reserved
  // one is output as the reserved id.
  const pieceToId = (p: string): number => reserved.get(p) ?? mergeable.get(p) ?? unkId;
  const outputId = new Int32Array(pieces.length);
  for (let id = 0; id < pieces.length; id++) outputId[id] = id;
  for (const [piece, id] of reserved) {
    const shadowed = mergeable.get(piece);
    if (shadowed !== undefined) outputId[shadowed] = id;
  }
  const bmpCharId = new Int32Array(0x10000).fill(-1);
  for (let id = 0; id < pieces.length; id++) {
    const piece = pieces[id]!;
    if (piece.length === 1 && isMergeableType(types[id]!)) bmpCharId[piece.charCodeAt(0)] = id;
  }
  const byteId = new Int32Array(256);
  for (let b = 0; b < 256; b++) byteId[b] = pieceToId(byteToPiece(b));
  const hasOneCharReserved = [...reserved.keys()].some((p) => p.length === codePointLength(p, 0));
  return { pieces, scores, types, mergeable, reserved, unkId, outputId, bmpCharId, byteId, hasUnused, hasOneCharReserved };
}

function byteToPiece(b: number): string {
  return `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
}
