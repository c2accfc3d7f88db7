/**
 * The SentencePiece BPE tokenizer, id for id with the C++ library (sentencepiece 0.1.97 – 0.2.x)
 * for models with the identity normaliser, which is what Grok-1's tokenizer.model uses.
 *
 * Sections, in the order a text flows through them:
 *   1. vocabulary: piece tables, the checks the library makes when it loads a model
 *   2. normaliser (normalizer.cc): dummy prefix, whitespace escaping, optional whitespace removal
 *   3. encoder (bpe_model.cc, PopulateSentencePieceText): user-defined symbols as frozen symbols,
 *      BPE merges by score, byte fallback, unknown-run merging
 *   4. decoder (SentencePieceProcessor::Decode): the leading-space rule, byte pieces reassembled
 *      into UTF-8 with the library's one-U+FFFD-per-invalid-byte rule, and a streaming decoder
 *
 * Encoding speed: the library runs one BPE over the whole text. Here the text is cut into
 * segments at places no merge can cross (around frozen symbols, and before a run of ▁ when no
 * piece holds a ▁ after another character; checked per vocabulary at load). BPE restricted to a
 * segment performs exactly the merges the whole-text BPE performs there, because a merge only
 * reads and changes its own segment and the priority order (score, then position) restricted to a
 * segment is the segment's own order. Segments (mostly words) are cached, so a known word costs one
 * hash lookup; everything else runs the library's linked-list + priority-queue BPE in O(n log n).
 * Pieces are found by hashing spans of the text in place, so the hot loops allocate no strings.
 */
import { fileURLToPath } from 'node:url';
import { readRegularFile } from '../formats/tensor-file.js';
import { UnsupportedError, UsageError } from '../errors.js';
import {
  ModelType,
  PieceType,
  TokenizerModelError,
  parseModelProto,
  type SentencePieceModel,
} from './sentencepiece-model.js';

/** U+2581 LOWER ONE EIGHTH BLOCK: how SentencePiece writes a space inside pieces. */
const SPACE_SYMBOL = '\u2581';
const SPACE_CODE = 0x2581;
const REPLACEMENT_CHAR = '\ufffd';
const BYTE_PIECE = /^<0x([0-9A-F]{2})>$/;

/** The tokenizer that ships with the package (xai-org/grok-1, Apache-2.0; see NOTICE). */
/** Grok-1's tokenizer.model (131072 pieces) is 2.2 MB; a file far larger is not one. */
export const MAX_TOKENIZER_FILE_BYTES = 64 << 20;

export const BUNDLED_TOKENIZER_PATH = fileURLToPath(new URL('../../../assets/tokenizer.model', import.meta.url));

/**
 * A vocabulary given as plain arrays, e.g. from GGUF metadata: `tokenizer.ggml.tokens` → pieces,
 * `tokenizer.ggml.scores` → scores, `tokenizer.ggml.token_type` → types (the GGUF numbers are
 * SentencePiece's PieceType numbers). With the defaults below, Grok-1's GGUF vocabulary encodes
 * exactly as its tokenizer.model does; pass `unkSurface: '[UNK]'` to also decode id 3 the same way
 * (GGUF does not store the unknown surface).
 */
export interface VocabularySpec {
  readonly pieces: readonly string[];
  /** Merge priority of each piece (higher merges first). Default 0 for all. */
  readonly scores?: ArrayLike<number>;
  /** PieceType of each piece (1 NORMAL … 6 BYTE). Default NORMAL for all. */
  readonly types?: ArrayLike<number>;
  /** Prepend ▁ to non-empty input (SentencePiece `add_dummy_prefix`, GGUF `add_space_prefix`). Default true. */
  readonly addDummyPrefix?: boolean;
  /** Drop leading/trailing spaces and collapse runs (`remove_extra_whitespaces`). Default false. */
  readonly removeExtraWhitespaces?: boolean;
  /** Write spaces as ▁ (`escape_whitespaces`). Default true. */
  readonly escapeWhitespaces?: boolean;
  /** Put the dummy ▁ at the end instead (`treat_whitespace_as_suffix`). Default false. */
  readonly treatWhitespaceAsSuffix?: boolean;
  /** Spell characters outside the vocabulary as byte pieces. Default: whether the vocabulary has BYTE pieces. */
  readonly byteFallback?: boolean;
  /** What decode prints for the unknown piece. Default " ⁇ " (the library's default). */
  readonly unkSurface?: string;
  /** Special ids; default: the id of `bosPiece` / `eosPiece` / `padPiece` when that piece is a CONTROL piece, else -1. */
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly bosPiece?: string;
  readonly eosPiece?: string;
  readonly padPiece?: string;
  /** Names the source in error messages. */
  readonly name?: string;
}

export interface EncodeOptions {
  /** Prepend the BOS id (the official Grok-1 runner does not). */
  readonly addBos?: boolean;
  readonly addEos?: boolean;
}

// ---------------------------------------------------------------------------------------------
// 1. Vocabulary
// ---------------------------------------------------------------------------------------------

/** Longest-prefix matcher over the user-defined symbols (the library's PrefixMatcher). */
class PrefixMatcher {
  /** children[node] maps a UTF-16 code unit to the next node; node 0 is the root. */
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminal: boolean[] = [false];
  /** Code units that start some symbol: the scan tests this before walking the trie. */
  readonly startsSymbol = new Uint8Array(0x10000);
  readonly empty: boolean;

  constructor(symbols: readonly string[]) {
    for (const s of symbols) {
      let node = 0;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        let next = this.children[node]!.get(c);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminal.push(false);
          this.children[node]!.set(c, next);
        }
        node = next;
      }
      this.terminal[node] = true;
      this.startsSymbol[s.charCodeAt(0)] = 1;
    }
    this.empty = symbols.length === 0;
  }

  /** Length (in code units) of the longest symbol starting at `pos` in text[..end), or 0. */
  match(text: string, pos: number, end: number): number {
    let node = 0;
    let best = 0;
    for (let i = pos; i < end; i++) {
      const next = this.children[node]!.get(text.charCodeAt(i));
      if (next === undefined) break;
      node = next;
      if (this.terminal[node]) best = i + 1 - pos;
    }
    return best;
  }
}

/** FNV-1a over the UTF-16 code units of text[s, e). */
function spanHash(text: string, s: number, e: number): number {
  let h = 0x811c9dc5;
  for (let i = s; i < e; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h;
}

/**
 * Pieces by spelling, looked up by a span of a longer text: an open-addressing table over
 * FNV hashes that compares in place (startsWith), so the hot loop allocates no substrings.
 */
class PieceTable {
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
interface Vocabulary {
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
function isMergeableType(type: number): boolean {
  return type === PieceType.NORMAL || type === PieceType.USER_DEFINED || type === PieceType.UNUSED;
}

function buildVocabulary(
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

/**
 * Where a segment may end without changing the result: before a ▁ that follows another character
 * (no piece contains "x▁"), or after a ▁ that precedes another character (no piece contains "▁x").
 * Grok-1's vocabulary allows the first, so every word is its own segment.
 */
function segmentRules(v: Vocabulary): { beforeSpace: boolean; afterSpace: boolean } {
  if (v.hasUnused) return { beforeSpace: false, afterSpace: false }; // resegmentation is whole-text state
  let beforeSpace = true;
  let afterSpace = true;
  for (let id = 0; id < v.pieces.length; id++) {
    const piece = v.pieces[id]!;
    if (!isMergeableType(v.types[id]!) || piece.indexOf(SPACE_SYMBOL) < 0) continue;
    for (let i = 1; i < piece.length; i++) {
      const a = piece.charCodeAt(i - 1) === SPACE_CODE;
      const b = piece.charCodeAt(i) === SPACE_CODE;
      if (!a && b) beforeSpace = false;
      if (a && !b) afterSpace = false;
    }
  }
  return { beforeSpace, afterSpace };
}

// ---------------------------------------------------------------------------------------------
// 2. Normaliser (identity rules; normalizer.cc Normalize)
// ---------------------------------------------------------------------------------------------

interface NormalizerFlags {
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
}

function normalize(text: string, f: NormalizerFlags, matcher: PrefixMatcher): string {
  if (text === '') return '';
  const ws = f.escapeWhitespaces ? SPACE_SYMBOL : ' ';
  if (!f.removeExtraWhitespaces) {
    // Each unit (a user-defined symbol or a character) is copied with ' ' escaped, so the units
    // do not matter here.
    const body = f.escapeWhitespaces ? text.replaceAll(' ', SPACE_SYMBOL) : text;
    if (!f.addDummyPrefix) return body;
    return f.treatWhitespaceAsSuffix ? body + ws : ws + body;
  }
  // remove_extra_whitespaces works on units: a user-defined symbol is one unit even if it holds
  // spaces, so the units must be found as the library finds them.
  const n = text.length;
  const unitEnd = (pos: number): number => {
    if (!matcher.empty && matcher.startsSymbol[text.charCodeAt(pos)]) {
      const len = matcher.match(text, pos, n);
      if (len > 0) return pos + len;
    }
    return pos + codePointLength(text, pos);
  };
  let pos = 0;
  while (pos < n && text.charCodeAt(pos) === 0x20 && unitEnd(pos) === pos + 1) pos++;
  if (pos === n) return '';
  let out = f.addDummyPrefix && !f.treatWhitespaceAsSuffix ? ws : '';
  let prevSpace = true;
  while (pos < n) {
    const end = unitEnd(pos);
    let s = pos;
    if (prevSpace) while (s < end && text.charCodeAt(s) === 0x20) s++;
    if (s < end) {
      const unit = text.slice(s, end);
      out += f.escapeWhitespaces ? unit.replaceAll(' ', SPACE_SYMBOL) : unit;
      prevSpace = text.charCodeAt(end - 1) === 0x20;
    }
    pos = end;
  }
  while (out.endsWith(ws)) out = out.slice(0, out.length - ws.length);
  if (f.addDummyPrefix && f.treatWhitespaceAsSuffix) out += ws;
  return out;
}

/** ES2024 String methods (Node 20 has them; the ES2022 lib typings do not). */
interface WellFormedString {
  toWellFormed(): string;
}

function codePointLength(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d < 0xe000) return 2;
  }
  return 1;
}

// ---------------------------------------------------------------------------------------------
// 3. Encoder
// ---------------------------------------------------------------------------------------------

/** Segments longer than this bypass the cache. */
const MAX_CACHED_SEGMENT = 256;
/** The cache is emptied when its keys reach this many code units (≈ 2 bytes each, plus ids). */
const MAX_CACHE_CHARS = 1 << 22;

/** Scratch for up to this many symbols stays allocated between encodes (≈ 80 bytes each). */
const MAX_RETAINED_SYMBOLS = 1 << 16;

/**
 * Ids of recently seen segments (words, mostly), looked up by span like PieceTable so a hit
 * allocates nothing. Bounded: emptied when half full or when its keys reach MAX_CACHE_CHARS.
 */
class SegmentCache {
  private static readonly SLOTS = 1 << 17;
  private readonly keys: (string | undefined)[] = new Array<string | undefined>(SegmentCache.SLOTS);
  private readonly hashes = new Int32Array(SegmentCache.SLOTS);
  /** One id as a number (most words), several as an Int32Array. */
  private readonly values: (number | Int32Array)[] = new Array<number | Int32Array>(SegmentCache.SLOTS);
  private count = 0;
  private chars = 0;

  get(text: string, s: number, e: number, h: number): number | Int32Array | undefined {
    const mask = SegmentCache.SLOTS - 1;
    const len = e - s;
    for (let i = h & mask; ; i = (i + 1) & mask) {
      const key = this.keys[i];
      if (key === undefined) return undefined;
      if (this.hashes[i] === h && key.length === len && text.startsWith(key, s)) return this.values[i];
    }
  }

  set(text: string, s: number, e: number, h: number, value: number | Int32Array): void {
    if (2 * (this.count + 1) > SegmentCache.SLOTS || this.chars > MAX_CACHE_CHARS) {
      this.keys.fill(undefined);
      this.values.fill(0);
      this.count = 0;
      this.chars = 0;
    }
    const mask = SegmentCache.SLOTS - 1;
    let i = h & mask;
    while (this.keys[i] !== undefined) i = (i + 1) & mask;
    // A copy, so the cache never keeps a long input alive through a sliced string.
    this.keys[i] = (text.slice(s, e) + '\0').slice(0, -1);
    this.hashes[i] = h;
    this.values[i] = value;
    this.count++;
    this.chars += e - s;
  }
}

/**
 * The library's BPE over one run of symbols, with typed-array scratch reused between calls.
 * Symbols are spans of the normalised text; a pair is merged when its concatenation is a
 * mergeable piece, best score first, leftmost first among equal scores (SymbolPairComparator).
 */
class BpeCore {
  private cap = 0;
  // Symbols (bpe_model.cc `Symbol`): start offset and length in code units, neighbours, the
  // mergeable id of the span (-1: not a piece; only a single character can be that).
  private symStart = new Int32Array(0);
  private symLen = new Int32Array(0);
  private symPrev = new Int32Array(0);
  private symNext = new Int32Array(0);
  private symId = new Int32Array(0);
  private symFrozen = new Uint8Array(0);
  // Candidate pairs (`SymbolPair`) and a binary max-heap of their indices.
  private pairLeft = new Int32Array(0);
  private pairRight = new Int32Array(0);
  private pairSize = new Int32Array(0);
  private pairPiece = new Int32Array(0);
  private pairScore = new Float32Array(0); // scores are float32 in the model, as in the library
  private heap = new Int32Array(0);
  private heapLen = 0;
  private pairCount = 0;
  /** Reverse merges for UNUSED pieces (`rev_merge`): last writer wins, as in the library. */
  private revMerge: Map<string, [string, string]> | undefined;

  private readonly pieceTable: PieceTable;
  private readonly scores: Float32Array;

  constructor(private readonly v: Vocabulary, private readonly matcher: PrefixMatcher) {
    this.pieceTable = v.mergeable;
    this.scores = v.scores;
  }

  private ensure(n: number): void {
    if (n <= this.cap) return;
    const cap = Math.max(n, this.cap * 2, 64);
    this.symStart = new Int32Array(cap);
    this.symLen = new Int32Array(cap);
    this.symPrev = new Int32Array(cap);
    this.symNext = new Int32Array(cap);
    this.symId = new Int32Array(cap);
    this.symFrozen = new Uint8Array(cap);
    // Each merge adds at most two pairs to the n-1 initial ones.
    this.pairLeft = new Int32Array(3 * cap);
    this.pairRight = new Int32Array(3 * cap);
    this.pairSize = new Int32Array(3 * cap);
    this.pairPiece = new Int32Array(3 * cap);
    this.pairScore = new Float32Array(3 * cap);
    this.heap = new Int32Array(3 * cap);
    this.cap = cap;
  }

  /**
   * Runs BPE over text[start, end) and calls `emit(start, end, mergeableId)` for each resulting
   * symbol in order (mergeableId -1: the span is not a mergeable piece). With `frozen`, symbols
   * are found with the user-defined prefix matcher (whole-text mode); otherwise the span holds no
   * user-defined symbol and each symbol starts as one code point.
   */
  run(text: string, start: number, end: number, frozen: boolean, emit: (s: number, e: number, id: number) => void): void {
    this.ensure(end - start + 1);
    const { symStart, symLen, symPrev, symNext, symId, symFrozen } = this;
    const bmpCharId = this.v.bmpCharId;
    let n = 0;
    for (let pos = start; pos < end; ) {
      let len = 0;
      let isFrozen = 0;
      if (frozen && this.matcher.startsSymbol[text.charCodeAt(pos)]) {
        len = this.matcher.match(text, pos, end);
        if (len > 0) isFrozen = 1;
      }
      if (len === 0) len = codePointLength(text, pos);
      symStart[n] = pos;
      symLen[n] = len;
      symPrev[n] = n - 1;
      symNext[n] = pos + len < end ? n + 1 : -1;
      symId[n] = len === 1 ? bmpCharId[text.charCodeAt(pos)]! : this.v.mergeable.find(text, pos, pos + len);
      symFrozen[n] = isFrozen;
      n++;
      pos += len;
    }
    this.heapLen = 0;
    this.pairCount = 0;
    if (this.v.hasUnused) this.revMerge = new Map();
    for (let i = 1; i < n; i++) this.maybeAddPair(text, i - 1, i);

    const { pairLeft, pairRight, pairSize, pairPiece } = this;
    while (this.heapLen > 0) {
      const top = this.popTop();
      const left = pairLeft[top]!;
      const right = pairRight[top]!;
      // Stale: one side was merged away, or grew since the pair was queued.
      if (symLen[left] === 0 || symLen[right] === 0 || symLen[left]! + symLen[right]! !== pairSize[top]) continue;
      symLen[left] = symLen[left]! + symLen[right]!;
      symId[left] = pairPiece[top]!;
      symNext[left] = symNext[right]!;
      if (symNext[right]! >= 0) symPrev[symNext[right]!] = left;
      symLen[right] = 0;
      this.maybeAddPair(text, symPrev[left]!, left);
      this.maybeAddPair(text, left, symNext[left]!);
    }

    for (let i = n > 0 ? 0 : -1; i !== -1; i = symNext[i]!) {
      const s = symStart[i]!;
      const id = symId[i]!;
      if (id >= 0 && this.v.types[id] === PieceType.UNUSED) this.resegment(text.slice(s, s + symLen[i]!), s, emit);
      else emit(s, s + symLen[i]!, id);
    }
    // One huge segment (a long text without spaces) must not pin its scratch memory.
    if (this.cap > MAX_RETAINED_SYMBOLS) {
      this.cap = 0;
      this.ensure(64);
    }
  }

  private maybeAddPair(text: string, left: number, right: number): void {
    if (left === -1 || right === -1 || this.symFrozen[left] || this.symFrozen[right]) return;
    const s = this.symStart[left]!;
    const size = this.symLen[left]! + this.symLen[right]!;
    const id = this.pieceTable.find(text, s, s + size);
    if (id < 0) return;
    const p = this.pairCount++;
    this.pairLeft[p] = left;
    this.pairRight[p] = right;
    this.pairSize[p] = size;
    this.pairPiece[p] = id;
    this.pairScore[p] = this.scores[id]!;
    this.push(p);
    if (this.revMerge !== undefined && this.v.types[id] === PieceType.UNUSED) {
      const ls = this.symLen[left]!;
      this.revMerge.set(text.slice(s, s + size), [text.slice(s, s + ls), text.slice(s + ls, s + size)]);
    }
  }

  /** Pair a is served before pair b: higher score, then smaller left index. */
  private before(a: number, b: number): boolean {
    const sa = this.pairScore[a]!;
    const sb = this.pairScore[b]!;
    return sa > sb || (sa === sb && this.pairLeft[a]! < this.pairLeft[b]!);
  }

  private push(p: number): void {
    const heap = this.heap;
    let i = this.heapLen++;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      const q = heap[parent]!;
      if (!this.before(p, q)) break;
      heap[i] = q;
      i = parent;
    }
    heap[i] = p;
  }

  private popTop(): number {
    const heap = this.heap;
    const top = heap[0]!;
    const last = heap[--this.heapLen]!;
    const n = this.heapLen;
    let i = 0;
    for (;;) {
      let child = 2 * i + 1;
      if (child >= n) break;
      if (child + 1 < n && this.before(heap[child + 1]!, heap[child]!)) child++;
      if (!this.before(heap[child]!, last)) break;
      heap[i] = heap[child]!;
      i = child;
    }
    if (n > 0) heap[i] = last;
    return top;
  }

  /** Splits an UNUSED piece back into the pieces it was merged from (`resegment`), without recursion. */
  private resegment(w: string, start: number, emit: (s: number, e: number, id: number) => void): void {
    const stack: [string, number][] = [[w, start]];
    while (stack.length > 0) {
      const [piece, at] = stack.pop()!;
      const id = this.v.reserved.get(piece) ?? this.v.mergeable.get(piece) ?? -1;
      const split = id >= 0 && this.v.types[id] === PieceType.UNUSED ? this.revMerge?.get(piece) : undefined;
      if (split === undefined) {
        emit(at, at + piece.length, this.v.mergeable.get(piece) ?? -1);
        continue;
      }
      stack.push([split[1], at + split[0].length], [split[0], at]);
    }
  }
}

/**
 * Turns BPE symbols into output ids as PopulateSentencePieceText does: the id is PieceToId of the
 * symbol's text; an unknown symbol becomes its UTF-8 bytes with byte fallback, else runs of
 * unknown symbols become one unknown id.
 */
class IdSink {
  ids: number[] = [];
  pieces: string[] | undefined;
  /** The last symbol was unknown (the library's `is_prev_unk`). */
  prevUnk = false;
  private text = '';
  readonly emit = (s: number, e: number, mergeableId: number): void => this.symbol(s, e, mergeableId);

  constructor(private readonly v: Vocabulary, private readonly byteFallback: boolean) {}

  reset(text: string, ids: number[], pieces: string[] | undefined): void {
    this.text = text;
    this.ids = ids;
    this.pieces = pieces;
    this.prevUnk = false;
  }

  symbol(s: number, e: number, mergeableId: number): void {
    const v = this.v;
    // Only a single character can be outside the mergeable pieces; PieceToId may still find it
    // among the reserved ones.
    const id =
      mergeableId >= 0
        ? v.outputId[mergeableId]!
        : v.hasOneCharReserved
          ? (v.reserved.get(this.text.slice(s, e)) ?? v.unkId)
          : v.unkId;
    const isUnk = id === v.unkId;
    if (isUnk && this.byteFallback) {
      this.pushUtf8Bytes(s, e);
    } else if (isUnk && this.prevUnk) {
      if (this.pieces) this.pieces[this.pieces.length - 1] += this.text.slice(s, e);
    } else {
      this.ids.push(id);
      this.pieces?.push(this.text.slice(s, e));
    }
    this.prevUnk = isUnk;
  }

  /** Byte fallback: the ids of the UTF-8 bytes of text[s, e). */
  private pushUtf8Bytes(s: number, e: number): void {
    const { ids, text } = this;
    const byteId = this.v.byteId;
    for (let i = s; i < e; ) {
      let cp = text.charCodeAt(i++);
      if (cp >= 0xd800 && cp < 0xdc00 && i < e) {
        const d = text.charCodeAt(i);
        if (d >= 0xdc00 && d < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      const start = ids.length;
      if (cp < 0x80) ids.push(byteId[cp]!);
      else if (cp < 0x800) ids.push(byteId[0xc0 | (cp >> 6)]!, byteId[0x80 | (cp & 0x3f)]!);
      else if (cp < 0x10000) ids.push(byteId[0xe0 | (cp >> 12)]!, byteId[0x80 | ((cp >> 6) & 0x3f)]!, byteId[0x80 | (cp & 0x3f)]!);
      else {
        ids.push(byteId[0xf0 | (cp >> 18)]!, byteId[0x80 | ((cp >> 12) & 0x3f)]!, byteId[0x80 | ((cp >> 6) & 0x3f)]!, byteId[0x80 | (cp & 0x3f)]!);
      }
      if (this.pieces) for (let k = start; k < ids.length; k++) this.pieces.push(this.v.pieces[ids[k]!]!);
    }
  }

  /** Appends ids computed earlier for an identical segment (the cache). */
  replay(cached: number | Int32Array): void {
    if (typeof cached === 'number') {
      this.pushId(cached);
    } else {
      for (let i = 0; i < cached.length; i++) this.pushId(cached[i]!);
    }
  }

  private pushId(id: number): void {
    // Unknown runs merge across segments too; byte fallback never leaves an unknown id.
    const isUnk = id === this.v.unkId;
    if (!(isUnk && this.prevUnk)) this.ids.push(id);
    this.prevUnk = isUnk;
  }
}

// ---------------------------------------------------------------------------------------------
// 4. Decoder
// ---------------------------------------------------------------------------------------------

const KIND_TEXT = 0;
const KIND_CONTROL = 1;
const KIND_UNKNOWN = 2;
const KIND_BYTE = 3;

/** Per id, what Decode does with it (after the library's PieceToId(IdToPiece(id)) round trip). */
interface DecodeTable {
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

function buildDecodeTable(v: Vocabulary, unkSurface: string, f: NormalizerFlags): DecodeTable {
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

// ---------------------------------------------------------------------------------------------
// The Tokenizer
// ---------------------------------------------------------------------------------------------

interface TokenizerSettings extends NormalizerFlags {
  readonly byteFallback: boolean;
  readonly unkSurface: string;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
}

/**
 * Grok-1's tokenizer (or any SentencePiece BPE model with the identity normaliser).
 *
 *   const tok = Tokenizer.fromFile();            // the bundled tokenizer.model
 *   tok.encode('Hello world')                    // [11770, 1135]
 *   tok.decode([11770, 1135])                    // 'Hello world'
 *   const d = tok.decoder(); d.push(id) … d.flush()   // streaming text deltas
 *
 * Build one from tokenizer.model bytes (fromFile, fromBytes, fromModel) or from plain arrays such
 * as GGUF metadata (fromVocab). Instances are not safe to share between threads (they reuse
 * scratch memory), but may be shared freely within one.
 */
export class Tokenizer {
  /** Where the vocabulary came from (a path, or the name given to fromBytes/fromVocab). */
  readonly source: string;
  private readonly v: Vocabulary;
  private readonly settings: TokenizerSettings;
  private readonly matcher: PrefixMatcher;
  private readonly splitBeforeSpace: boolean;
  private readonly splitAfterSpace: boolean;
  private readonly bpe: BpeCore;
  private readonly sink: IdSink;
  private decodeTable: DecodeTable | undefined;
  /** Made on first use; unused when BPE needs whole-text state (UNUSED pieces). */
  private cache: SegmentCache | undefined;
  private readonly useCache: boolean;

  private constructor(source: string, v: Vocabulary, settings: TokenizerSettings, userDefined: readonly string[]) {
    this.source = source;
    this.v = v;
    this.settings = settings;
    this.matcher = new PrefixMatcher(userDefined);
    const rules = segmentRules(v);
    this.splitBeforeSpace = rules.beforeSpace;
    this.splitAfterSpace = rules.afterSpace;
    this.useCache = !v.hasUnused;
    this.bpe = new BpeCore(v, this.matcher);
    this.sink = new IdSink(v, settings.byteFallback);
  }

  /** Loads a tokenizer.model file; without a path, the bundled Grok-1 tokenizer. */
  static fromFile(path: string = BUNDLED_TOKENIZER_PATH): Tokenizer {
    return Tokenizer.fromBytes(readRegularFile(path, MAX_TOKENIZER_FILE_BYTES, 'a readable tokenizer.model file'), path);
  }

  /** Parses the bytes of a tokenizer.model (a SentencePiece ModelProto). */
  static fromBytes(bytes: Uint8Array, name = 'tokenizer.model'): Tokenizer {
    return Tokenizer.fromModel(parseModelProto(bytes, name), name);
  }

  static fromModel(model: SentencePieceModel, name = 'tokenizer.model'): Tokenizer {
    const { trainer, normalizer } = model;
    if (trainer.modelType !== ModelType.BPE) {
      const names: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };
      throw new UnsupportedError(
        'trainer_spec.model_type',
        `${name}: trainer_spec.model_type is ${names[trainer.modelType] ?? trainer.modelType}; only BPE models are supported`,
      );
    }
    for (const [field, spec] of [['normalizer_spec', normalizer], ['denormalizer_spec', model.denormalizer]] as const) {
      if (spec && spec.precompiledCharsmap.length > 0) {
        throw new UnsupportedError(
          `${field}.precompiled_charsmap`,
          `${name}: ${field}.precompiled_charsmap holds a normalisation map (${spec.name || 'unnamed'}); only the identity normaliser is supported`,
        );
      }
    }
    const v = buildVocabulary(model.pieces, model.scores, model.types, trainer.byteFallback, name);
    const userDefined = model.pieces.filter((_, id) => model.types[id] === PieceType.USER_DEFINED);
    const controlId = (piece: string): number => {
      const id = v.reserved.get(piece) ?? v.mergeable.get(piece) ?? v.unkId;
      return v.types[id] === PieceType.CONTROL ? id : -1;
    };
    const settings: TokenizerSettings = {
      addDummyPrefix: normalizer.addDummyPrefix,
      removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
      escapeWhitespaces: normalizer.escapeWhitespaces,
      treatWhitespaceAsSuffix: trainer.treatWhitespaceAsSuffix,
      byteFallback: trainer.byteFallback,
      unkSurface: trainer.unkSurface,
      bosId: controlId(trainer.bosPiece),
      eosId: controlId(trainer.eosPiece),
      padId: controlId(trainer.padPiece),
    };
    return new Tokenizer(name, v, settings, userDefined);
  }

  /**
   * Builds a tokenizer from plain arrays, e.g. GGUF's `tokenizer.ggml.tokens` / `scores` /
   * `token_type`. See VocabularySpec for the defaults; they reproduce Grok-1's tokenizer.model.
   */
  static fromVocab(spec: VocabularySpec): Tokenizer {
    const name = spec.name ?? 'vocabulary';
    const size = spec.pieces.length;
    const field: (f: string, expected: string, found: string) => never = (f, expected, found) => {
      throw new TokenizerModelError({ file: name, field: f, expected, found });
    };
    if (size === 0) field('pieces', 'at least one piece', 'none');
    if (spec.scores && spec.scores.length !== size) field('scores', `${size} scores, one per piece`, String(spec.scores.length));
    if (spec.types && spec.types.length !== size) field('types', `${size} types, one per piece`, String(spec.types.length));
    const scores = new Float32Array(size);
    const types = new Uint8Array(size).fill(PieceType.NORMAL);
    for (let id = 0; id < size; id++) {
      if (typeof spec.pieces[id] !== 'string') field(`pieces[${id}]`, 'a string', typeof spec.pieces[id]);
      if (spec.scores) {
        const s = spec.scores[id]!;
        if (typeof s !== 'number' || Number.isNaN(s)) field(`scores[${id}]`, 'a number', String(s));
        scores[id] = s;
      }
      if (spec.types) {
        const t = spec.types[id]!;
        if (!Number.isInteger(t) || t < PieceType.NORMAL || t > PieceType.BYTE) field(`types[${id}]`, 'a piece type 1..6', String(t));
        types[id] = t;
      }
    }
    const byteFallback = spec.byteFallback ?? types.includes(PieceType.BYTE);
    const v = buildVocabulary(spec.pieces, scores, types, byteFallback, name);
    const userDefined = spec.pieces.filter((_, id) => types[id] === PieceType.USER_DEFINED);
    const special = (f: string, explicit: number | undefined, piece: string): number => {
      if (explicit === undefined) {
        const id = v.reserved.get(piece) ?? v.mergeable.get(piece) ?? v.unkId;
        return v.types[id] === PieceType.CONTROL ? id : -1;
      }
      if (!Number.isInteger(explicit) || explicit < -1 || explicit >= size) field(f, `-1 or an id below ${size}`, String(explicit));
      return explicit;
    };
    const settings: TokenizerSettings = {
      addDummyPrefix: spec.addDummyPrefix ?? true,
      removeExtraWhitespaces: spec.removeExtraWhitespaces ?? false,
      escapeWhitespaces: spec.escapeWhitespaces ?? true,
      treatWhitespaceAsSuffix: spec.treatWhitespaceAsSuffix ?? false,
      byteFallback,
      unkSurface: spec.unkSurface ?? ' \u2047 ',
      bosId: special('bosId', spec.bosId, spec.bosPiece ?? '<s>'),
      eosId: special('eosId', spec.eosId, spec.eosPiece ?? '</s>'),
      padId: special('padId', spec.padId, spec.padPiece ?? '<pad>'),
    };
    return new Tokenizer(name, v, settings, userDefined);
  }

  get vocabSize(): number {
    return this.v.pieces.length;
  }
  /** -1 when the model has none (as the library reports it). */
  get bosId(): number {
    return this.settings.bosId;
  }
  get eosId(): number {
    return this.settings.eosId;
  }
  get padId(): number {
    return this.settings.padId;
  }
  get unkId(): number {
    return this.v.unkId;
  }

  idToPiece(id: number): string {
    this.checkId(id);
    return this.v.pieces[id]!;
  }

  /** The id of a piece; the unknown id for text that is not a piece (as the library does). */
  pieceToId(piece: string): number {
    return this.v.reserved.get(piece) ?? this.v.mergeable.get(piece) ?? this.v.unkId;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (opts.addBos) ids.push(this.special('bos', this.settings.bosId));
    this.encodeInto(text, ids, undefined);
    if (opts.addEos) ids.push(this.special('eos', this.settings.eosId));
    return ids;
  }

  /** The pieces `encode` picks, as the library's `encode(out_type=str)` spells them. */
  encodeAsPieces(text: string): string[] {
    const pieces: string[] = [];
    this.encodeInto(text, [], pieces);
    return pieces;
  }

  decode(ids: readonly number[]): string {
    const d = this.decoder();
    let out = '';
    for (let i = 0; i < ids.length; i++) out += d.push(ids[i]!);
    return out + d.flush();
  }

  /** A fresh streaming decoder (one per sequence); see StreamingDecoder for `continuation`. */
  decoder(opts: { continuation?: boolean } = {}): StreamingDecoder {
    this.decodeTable ??= buildDecodeTable(this.v, this.settings.unkSurface, this.settings);
    return new StreamingDecoder(this.decodeTable, this.v.pieces.length, opts.continuation ?? false);
  }

  private special(what: string, id: number): number {
    if (id < 0) throw new UsageError(`${this.source} defines no ${what.toUpperCase()} piece`, `add${what[0]!.toUpperCase()}${what.slice(1)}`);
    return id;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.v.pieces.length) {
      throw new UsageError(`token id ${id} is out of range: this vocabulary has ids 0..${this.v.pieces.length - 1}`, 'id');
    }
  }

  /**
   * Normalises, cuts the text into independent segments and appends their ids (and, when asked,
   * pieces). The cut points are chosen so the result equals one BPE over the whole text.
   */
  private encodeInto(text: string, ids: number[], pieces: string[] | undefined): void {
    // A JS string may hold lone surrogates; UTF-8 (TextEncoder) writes them as U+FFFD.
    const wellFormed = (text as unknown as WellFormedString).toWellFormed();
    const norm = normalize(wellFormed, this.settings, this.matcher);
    const n = norm.length;
    if (n === 0) return;
    const sink = this.sink;
    sink.reset(norm, ids, pieces);
    if (!this.useCache && !this.splitBeforeSpace && !this.splitAfterSpace) {
      this.bpe.run(norm, 0, n, true, sink.emit);
      return;
    }
    const matcher = this.matcher;
    const startsSymbol = matcher.startsSymbol;
    const checkUser = !matcher.empty;
    const before = this.splitBeforeSpace;
    const after = this.splitAfterSpace;
    let segStart = 0;
    let prevSpace = false;
    let i = 0;
    while (i < n) {
      const c = norm.charCodeAt(i);
      if (checkUser && startsSymbol[c]) {
        const len = matcher.match(norm, i, n);
        if (len > 0) {
          if (i > segStart) this.segment(norm, segStart, i, pieces !== undefined);
          sink.symbol(i, i + len, this.v.mergeable.find(norm, i, i + len));
          i += len;
          segStart = i;
          prevSpace = false;
          continue;
        }
      }
      const isSpace = c === SPACE_CODE;
      if (i > segStart && isSpace !== prevSpace && (isSpace ? before : after)) {
        this.segment(norm, segStart, i, pieces !== undefined);
        segStart = i;
      }
      prevSpace = isSpace;
      i += c >= 0xd800 && c < 0xdc00 ? codePointLength(norm, i) : 1;
    }
    if (n > segStart) this.segment(norm, segStart, n, pieces !== undefined);
  }

  /** Encodes norm[s, e), which holds no user-defined symbol, through the cache when it is short. */
  private segment(norm: string, s: number, e: number, wantPieces: boolean): void {
    const sink = this.sink;
    if (wantPieces || !this.useCache || e - s > MAX_CACHED_SEGMENT) {
      this.bpe.run(norm, s, e, false, sink.emit);
      return;
    }
    const cache = (this.cache ??= new SegmentCache());
    const h = spanHash(norm, s, e);
    const hit = cache.get(norm, s, e, h);
    if (hit !== undefined) {
      sink.replay(hit);
      return;
    }
    // Encode the segment on its own (no unknown run open before it), then append it like a hit.
    const outer = sink.ids;
    const outerPrevUnk = sink.prevUnk;
    const local: number[] = [];
    sink.ids = local;
    sink.prevUnk = false;
    this.bpe.run(norm, s, e, false, sink.emit);
    sink.ids = outer;
    sink.prevUnk = outerPrevUnk;
    const value = local.length === 1 ? local[0]! : Int32Array.from(local);
    sink.replay(value);
    cache.set(norm, s, e, h, value);
  }
}
