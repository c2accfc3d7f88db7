/**
 * The BPE merge loop of bpe_model.cc over one run of symbols, and the splitting of UNUSED pieces
 * back into the pieces they were merged from.
 */
import type { PrefixMatcher } from './prefix-matcher.js';
import { PieceType } from './sentencepiece-model.js';
import { codePointLength } from './spans.js';
import type { PieceTable, Vocabulary } from './vocabulary.js';

/** Scratch for up to this many symbols stays allocated between encodes (≈ 80 bytes each). */
const MAX_RETAINED_SYMBOLS = 1 << 16;

/**
 * The library's BPE over one run of symbols, with typed-array scratch reused between calls.
 * Symbols are spans of the normalised text; a pair is merged when its concatenation is a
 * mergeable piece, best score first, leftmost first among equal scores (SymbolPairComparator).
 */
export class BpeCore {
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
