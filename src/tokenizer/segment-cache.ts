/**
 * A bounded cache of the ids of recently encoded segments (words, mostly), so a known word costs
 * one hash lookup instead of a BPE run.
 */

/** Segments longer than this bypass the cache. */
export const MAX_CACHED_SEGMENT = 256;
/** The cache is emptied when its keys reach this many code units (≈ 2 bytes each, plus ids). */
const MAX_CACHE_CHARS = 1 << 22;

/**
 * Ids of recently seen segments (words, mostly), looked up by span like PieceTable so a hit
 * allocates nothing. Bounded: emptied when half full or when its keys reach MAX_CACHE_CHARS.
 */
export class SegmentCache {
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
