/**
 * Encoding: normalise, cut the text into segments no merge can cross, run BPE per segment (through
 * the segment cache for short ones) and collect the ids.
 *
 * The library runs one BPE over the whole text. Here the text is cut around user-defined symbols
 * and, when the vocabulary allows it, before a run of ▁ (see segmentRules). BPE restricted to a
 * segment performs exactly the merges the whole-text BPE performs there, because a merge only
 * reads and changes its own segment and the priority order (score, then position) restricted to a
 * segment is the segment's own order. Segments (mostly words) are cached, so a known word costs one
 * hash lookup; everything else runs the library's linked-list + priority-queue BPE in O(n log n).
 */
import { BpeCore } from './bpe.js';
import { IdSink } from './id-sink.js';
import { normalize, type NormalizerFlags } from './normalizer.js';
import { PrefixMatcher } from './prefix-matcher.js';
import { MAX_CACHED_SEGMENT, SegmentCache } from './segment-cache.js';
import { SPACE_CODE, SPACE_SYMBOL, codePointLength, spanHash, type WellFormedString } from './spans.js';
import { isMergeableType, type Vocabulary } from './vocabulary.js';

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

/** One vocabulary's encoder. Reuses scratch memory: one per tokenizer, not shared across threads. */
export class Encoder {
  private readonly matcher: PrefixMatcher;
  private readonly splitBeforeSpace: boolean;
  private readonly splitAfterSpace: boolean;
  private readonly bpe: BpeCore;
  private readonly sink: IdSink;
  /** Made on first use; unused when BPE needs whole-text state (UNUSED pieces). */
  private cache: SegmentCache | undefined;
  private readonly useCache: boolean;

  constructor(
    private readonly v: Vocabulary,
    private readonly flags: NormalizerFlags,
    byteFallback: boolean,
    userDefined: readonly string[],
  ) {
    this.matcher = new PrefixMatcher(userDefined);
    const rules = segmentRules(v);
    this.splitBeforeSpace = rules.beforeSpace;
    this.splitAfterSpace = rules.afterSpace;
    this.useCache = !v.hasUnused;
    this.bpe = new BpeCore(v, this.matcher);
    this.sink = new IdSink(v, byteFallback);
  }

  /**
   * Normalises, cuts the text into independent segments and appends their ids (and, when asked,
   * pieces). The cut points are chosen so the result equals one BPE over the whole text.
   */
  encode(text: string, ids: number[], pieces: string[] | undefined): void {
    // A JS string may hold lone surrogates; UTF-8 (TextEncoder) writes them as U+FFFD.
    const wellFormed = (text as unknown as WellFormedString).toWellFormed();
    const norm = normalize(wellFormed, this.flags, this.matcher);
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
