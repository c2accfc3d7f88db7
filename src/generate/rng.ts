/**
 * The randomness behind sampling: a counter-based generator. The uniform for token id i at step t
 * of a sequence seeded s is a hash of (s, k, t, i), where k is the sequence's stream key (a hash
 * of its prompt, see streamKey) — murmur3's 32-bit finaliser chained over the inputs, two hashes
 * for 52 bits. Being a pure function of its inputs, a draw does not depend on how many draws came
 * before or which tokens a filter removed, so the same seed, prompt and options give the same
 * tokens on every run and platform; and because the prompt is an input, different prompts under
 * one seed draw independent noise instead of the same noise (which made one seed begin unrelated
 * prompts with the same word). It is not JAX's threefry: the official runner's exact samples are
 * not reproduced (docs/REFERENCE.md §6).
 */

function fmix32(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

export class CounterRng {
  private readonly lo: number;
  private readonly hi: number;

  /** `stream`: a 32-bit key that selects an independent stream for the same seed (streamKey); none = the seed's own. */
  constructor(readonly seed: number, readonly stream?: number) {
    if (!Number.isSafeInteger(seed) || seed < 0) throw new RangeError(`seed must be a non-negative safe integer, got ${seed}`);
    this.lo = seed >>> 0;
    this.hi = Math.floor(seed / 2 ** 32) >>> 0;
  }

  /** 32 random bits for (step, index, lane). */
  bits(step: number, index: number, lane: number): number {
    let h = fmix32(this.lo ^ 0x9e3779b9);
    h = fmix32(h ^ Math.imul(this.hi + 0x7f4a7c15, 0xcc9e2d51));
    if (this.stream !== undefined) h = fmix32(h ^ Math.imul(this.stream ^ 0x2545f491, 0x85ebca77));
    h = fmix32(h ^ Math.imul(step + 1, 0x1b873593));
    h = fmix32(h ^ Math.imul(index + 1, 0xe6546b64));
    return fmix32(h ^ (lane + 0x632be5ab));
  }

  /** Uniform double in the open interval (0, 1): 52 random bits, centred, so 0 and 1 never occur. */
  uniform(step: number, index: number): number {
    const a = this.bits(step, index, 0) >>> 6; // 26 bits
    const b = this.bits(step, index, 1) >>> 6; // 26 bits
    return (a * 67108864 + b + 0.5) / 4503599627370496; // exact: (x + ½)/2^52 with x < 2^52
  }
}

/**
 * The stream key of a sequence: a hash of the token ids it starts from and the position they
 * start at (a chat turn continues a cache), so each prompt gets its own noise for a given seed.
 */
export function streamKey(ids: readonly number[], position = 0): number {
  let h = fmix32(0x3c6ef372 ^ Math.imul(position + 1, 0xcc9e2d51));
  for (const id of ids) h = fmix32(h ^ Math.imul(id + 1, 0x1b873593));
  return fmix32(h ^ ids.length);
}

/** A fresh random seed for callers that gave none (reported back so a run can be repeated). */
export function randomSeed(): number {
  return Math.floor(Math.random() * 2 ** 32);
}
