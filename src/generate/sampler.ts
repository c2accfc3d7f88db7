/**
 * Token sampling. The reference (docs/REFERENCE.md §6) divides the logits by the temperature,
 * applies the nucleus filter with its exact semantics (ascending sort, cumulative sum from the
 * smallest, keep every logit ≥ the one where the sum first reaches 1 - p) and samples. On top of
 * that: greedy (temperature 0: argmax, lowest id on ties — our own definition, the reference has
 * none), top-k, min-p, repetition / presence / frequency penalties and logit bias.
 *
 * Order per step: logit bias → penalties → (greedy) → temperature → top-k → top-p → min-p → sample.
 * Sampling is Gumbel-max, as the reference's jax.random.categorical: argmax over ids of
 * logit + Gumbel noise, the noise drawn per (seed, prompt, step, id) from a counter-based hash. Besides
 * matching the reference's method, it is robust to the last digits of the logits: a choice flips
 * only when the two best noisy scores are within the logits' error (≈ 1e-4 between backends),
 * where walking a CDF flips whenever the draw falls near any shifted boundary.
 */
import { UsageError } from '../errors.js';
import { CounterRng, randomSeed } from './rng.js';

export interface SamplingOptions {
  /** 0 = greedy. Default 1. */
  readonly temperature?: number;
  /** Nucleus mass in (0, 1]; 1 keeps all. */
  readonly topP?: number;
  /** Keep only the k most likely tokens; 0 = off. */
  readonly topK?: number;
  /** Keep tokens whose probability is ≥ minP × the top probability; 0 = off. */
  readonly minP?: number;
  /** CTRL-style: positive logits of seen tokens are divided by it, negative ones multiplied; 1 = off. */
  readonly repetitionPenalty?: number;
  /** OpenAI-style: subtracted once from the logit of every seen token; 0 = off. */
  readonly presencePenalty?: number;
  /** OpenAI-style: subtracted per occurrence of a seen token; 0 = off. */
  readonly frequencyPenalty?: number;
  /** How many of the most recent tokens (prompt and generated) the penalties look at. Default 64. */
  readonly penaltyWindow?: number;
  /** Added to the logit of the given token ids. */
  readonly logitBias?: Readonly<Record<number, number>>;
  /** PRNG seed; a random one is drawn (and reported) when absent. */
  readonly seed?: number;
}

const MASKED = -1e10; // the reference's value for filtered tokens
/** An upper bound of -log(-log(u)) for u ≤ 1 - 2^-53, the largest uniform CounterRng gives (≈ 36.7). */
const GUMBEL_MAX = 37;

function check(cond: boolean, param: string, message: string): void {
  if (!cond) throw new UsageError(`${param} ${message}`, param);
}

/** Validates options once, naming the offending field. */
export function validateSamplingOptions(o: SamplingOptions, vocabSize: number): void {
  const isNum = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
  if (o.temperature !== undefined) check(isNum(o.temperature) && o.temperature >= 0 && o.temperature <= 100, 'temperature', 'must be a number in [0, 100]');
  if (o.topP !== undefined) check(isNum(o.topP) && o.topP > 0 && o.topP <= 1, 'top_p', 'must be in (0, 1]');
  if (o.topK !== undefined) check(Number.isSafeInteger(o.topK) && o.topK >= 0, 'top_k', 'must be a non-negative integer');
  if (o.minP !== undefined) check(isNum(o.minP) && o.minP >= 0 && o.minP <= 1, 'min_p', 'must be in [0, 1]');
  if (o.repetitionPenalty !== undefined) check(isNum(o.repetitionPenalty) && o.repetitionPenalty > 0 && o.repetitionPenalty <= 10, 'repetition_penalty', 'must be in (0, 10]');
  if (o.presencePenalty !== undefined) check(isNum(o.presencePenalty) && Math.abs(o.presencePenalty) <= 2, 'presence_penalty', 'must be in [-2, 2]');
  if (o.frequencyPenalty !== undefined) check(isNum(o.frequencyPenalty) && Math.abs(o.frequencyPenalty) <= 2, 'frequency_penalty', 'must be in [-2, 2]');
  if (o.penaltyWindow !== undefined) check(Number.isSafeInteger(o.penaltyWindow) && o.penaltyWindow >= 0, 'penalty_window', 'must be a non-negative integer');
  if (o.seed !== undefined) check(Number.isSafeInteger(o.seed) && o.seed >= 0, 'seed', 'must be a non-negative integer');
  if (o.logitBias !== undefined) {
    check(typeof o.logitBias === 'object' && o.logitBias !== null, 'logit_bias', 'must map token ids to numbers');
    for (const [k, v] of Object.entries(o.logitBias)) {
      // Only the decimal digits of a token id, as JSON object keys carry it: " 5", "0x10", "1e3", "05" or "5.0" are not ids.
      const id = /^(?:0|[1-9][0-9]*)$/.test(k) ? Number(k) : NaN;
      check(Number.isSafeInteger(id) && id >= 0 && id < vocabSize, 'logit_bias', `key "${k}" is not a token id in [0, ${vocabSize})`);
      check(isNum(v) && Math.abs(v) <= 100, 'logit_bias', `value for ${k} must be a number in [-100, 100]`);
    }
  }
}

export class Sampler {
  readonly seed: number;
  private readonly rng: CounterRng;
  private readonly work: Float64Array;
  /** Sampling steps taken so far: the counter of the noise. */
  private step = 0;

  /** `stream`: the sequence's stream key (rng.ts streamKey of its prompt), so prompts under one seed get their own noise. */
  constructor(readonly options: SamplingOptions, readonly vocabSize: number, stream?: number) {
    validateSamplingOptions(options, vocabSize);
    this.seed = options.seed ?? randomSeed();
    this.rng = new CounterRng(this.seed, stream);
    this.work = new Float64Array(vocabSize);
  }

  get greedy(): boolean {
    return (this.options.temperature ?? 1) === 0;
  }

  /** Picks the next token from one row of logits [V]; `history` is the sequence so far (prompt + generated). */
  sample(logits: Float32Array, history: readonly number[]): number {
    const o = this.options;
    const V = this.vocabSize;
    const l = this.work;
    for (let i = 0; i < V; i++) l[i] = logits[i]!;
    if (o.logitBias) for (const [k, v] of Object.entries(o.logitBias)) l[Number(k)]! += v;
    this.applyPenalties(l, history);
    if (this.greedy) return argmax(l);

    const t = o.temperature ?? 1;
    for (let i = 0; i < V; i++) l[i]! /= t;
    if (o.topK && o.topK < V) topK(l, o.topK);
    if (o.topP !== undefined && o.topP < 1) nucleus(l, o.topP);
    if (o.minP) minP(l, o.minP);
    return gumbelMax(l, this.rng, this.step++);
  }

  private applyPenalties(l: Float64Array, history: readonly number[]): void {
    const o = this.options;
    const rep = o.repetitionPenalty ?? 1;
    const pres = o.presencePenalty ?? 0;
    const freq = o.frequencyPenalty ?? 0;
    if (rep === 1 && pres === 0 && freq === 0) return;
    const window = o.penaltyWindow ?? 64;
    const counts = new Map<number, number>();
    for (let i = Math.max(0, history.length - window); i < history.length; i++) {
      const id = history[i]!;
      counts.set(id, (counts.get(id) ?? 0) + 1);
    }
    for (const [id, n] of counts) {
      if (id < 0 || id >= l.length) continue;
      let v = l[id]!;
      if (rep !== 1) v = v > 0 ? v / rep : v * rep;
      v -= pres + freq * n;
      l[id] = v;
    }
  }
}

/** Index of the largest value; lowest index on ties. */
export function argmax(l: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < l.length; i++) if (l[i]! > l[best]!) best = i;
  return best;
}

/** Keeps the k largest logits (ties at the boundary broken towards lower ids), masks the rest. */
function topK(l: Float64Array, k: number): void {
  const sorted = Float64Array.from(l).sort(); // native numeric sort: no comparator calls
  const threshold = sorted[l.length - k]!;
  let above = 0;
  for (let i = 0; i < l.length; i++) if (l[i]! > threshold) above++;
  let tiesLeft = k - above;
  for (let i = 0; i < l.length; i++) {
    if (l[i]! > threshold) continue;
    if (l[i] === threshold && tiesLeft > 0) tiesLeft--;
    else l[i] = MASKED;
  }
}

/**
 * The reference nucleus filter (runners.py): ascending sort, softmax, cumulative sum from the
 * smallest; the threshold is the logit at the first index where the sum reaches 1 - p; logits ≥ it
 * stay (ties and the crossing token included). If rounding keeps the sum below 1 - p, index 0 is
 * the threshold and everything stays, as argmax of an all-false row is 0.
 */
export function nucleus(l: Float64Array, p: number): void {
  const sorted = Float64Array.from(l).sort();
  const max = sorted[sorted.length - 1]!;
  let z = 0;
  for (let i = 0; i < sorted.length; i++) z += Math.exp(sorted[i]! - max);
  let cum = 0;
  let idx = 0;
  for (let i = 0; i < sorted.length; i++) {
    cum += Math.exp(sorted[i]! - max) / z;
    if (cum >= 1 - p) {
      idx = i;
      break;
    }
  }
  const threshold = sorted[idx]!;
  for (let i = 0; i < l.length; i++) if (l[i]! < threshold) l[i] = MASKED;
}

/** Masks tokens whose probability is below minP × the top probability. */
function minP(l: Float64Array, m: number): void {
  let max = -Infinity;
  for (let i = 0; i < l.length; i++) max = Math.max(max, l[i]!);
  const cut = max + Math.log(m);
  for (let i = 0; i < l.length; i++) if (l[i]! < cut) l[i] = MASKED;
}

/**
 * argmax_i(l_i + g_i) with g_i = -log(-log(u_i)): a sample from softmax(l). Filtered ids (at the
 * reference's -1e10) cannot win against any kept one, so they are skipped.
 */
function gumbelMax(l: Float64Array, rng: CounterRng, step: number): number {
  let best = -1;
  let bestScore = -Infinity;
  for (let i = 0; i < l.length; i++) {
    // The noise never exceeds GUMBEL_MAX: ids that cannot win need no draw.
    if (l[i]! <= MASKED || l[i]! + GUMBEL_MAX <= bestScore) continue;
    const score = l[i]! - Math.log(-Math.log(rng.uniform(step, i)));
    if (score > bestScore) {
      bestScore = score;
      best = i;
    }
  }
  return best < 0 ? argmax(l) : best;
}

/** Natural-log probabilities of softmax(logits): the chosen token's and the top-n alternatives. */
export function logprobs(logits: Float32Array, chosen: number, topN: number): { logprob: number; top: { id: number; logprob: number }[] } {
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) max = Math.max(max, logits[i]!);
  let z = 0;
  for (let i = 0; i < logits.length; i++) z += Math.exp(logits[i]! - max);
  const lz = max + Math.log(z);
  const top: { id: number; logprob: number }[] = [];
  if (topN > 0) {
    // Keep a small sorted list instead of sorting V entries.
    for (let i = 0; i < logits.length; i++) {
      const v = logits[i]!;
      if (top.length < topN || v > top[top.length - 1]!.logprob) {
        let at = top.length;
        while (at > 0 && top[at - 1]!.logprob < v) at--;
        top.splice(at, 0, { id: i, logprob: v });
        if (top.length > topN) top.pop();
      }
    }
    for (const t of top) t.logprob -= lz;
  }
  return { logprob: logits[chosen]! - lz, top };
}
