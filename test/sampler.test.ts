/** Sampling: reference nucleus semantics, filters, penalties, seeded reproducibility, and distributions. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CounterRng, streamKey } from '../src/generate/rng.js';
import { argmax, logprobs, nucleus, Sampler, validateSamplingOptions } from '../src/generate/sampler.js';
import { UsageError } from '../src/errors.js';
import { FIXTURES, readJson } from './shared.js';

const MASKED = -1e10;

test('CounterRng: a pure function of (seed, step, id); seeds differ; uniforms in (0, 1) with mean 1/2', () => {
  const a = new CounterRng(42);
  const b = new CounterRng(42);
  const c = new CounterRng(43);
  const draws = (r: CounterRng) => Array.from({ length: 8 }, (_, i) => r.uniform(3, i));
  assert.deepEqual(draws(a), draws(b));
  assert.notDeepEqual(draws(a), draws(c));
  assert.notEqual(a.uniform(0, 5), a.uniform(1, 5));
  assert.equal(a.uniform(7, 9), new CounterRng(42).uniform(7, 9)); // no hidden state
  let sum = 0;
  let sumSq = 0;
  const n = 20000;
  for (let i = 0; i < n; i++) {
    const u = a.uniform(i >> 8, i & 255);
    assert.ok(u > 0 && u < 1);
    sum += u;
    sumSq += u * u;
  }
  assert.ok(Math.abs(sum / n - 0.5) < 0.01);
  assert.ok(Math.abs(sumSq / n - 1 / 3) < 0.01);
  assert.ok(Math.abs(new CounterRng(2 ** 40 + 7).uniform(0, 0) - new CounterRng(7).uniform(0, 0)) > 0); // high seed bits count
  const top = (2 ** 52 - 0.5) / 2 ** 52; // the largest value uniform() can return stays below 1
  assert.ok(top < 1 && -Math.log(-Math.log(top)) < 37);
});

test('nucleus: ascending cumsum, threshold where it reaches 1 - p, ties and crossing token kept', () => {
  // probs ∝ [1, 1, 2, 4] → [0.125, 0.125, 0.25, 0.5]; ascending cumsum 0.125, 0.25, 0.5, 1.0
  const base = [Math.log(1), Math.log(1), Math.log(2), Math.log(4)];
  const run = (p: number) => {
    const l = Float64Array.from(base);
    nucleus(l, p);
    return Array.from(l, (v) => v !== MASKED);
  };
  assert.deepEqual(run(0.45), [false, false, false, true]); // 1 - p = 0.55: reached at index 3
  assert.deepEqual(run(0.55), [false, false, true, true]); // 1 - p = 0.45: reached at index 2, the crossing token stays
  assert.deepEqual(run(0.8), [true, true, true, true]); // 1 - p = 0.2: reached at index 1, its tie at index 0 stays too
});

test('nucleus: p = 1 keeps everything; tiny p keeps at least the top token; ties at the threshold stay', () => {
  const l = Float64Array.from([0, 1, 2, 2]);
  nucleus(l, 1);
  assert.ok(Array.from(l).every((v) => v !== MASKED));
  const t = Float64Array.from([0, 1, 2, 2]);
  nucleus(t, 1e-6);
  assert.deepEqual(Array.from(t, (v) => v !== MASKED), [false, false, true, true]);
});

test('greedy: argmax with the lowest id on ties, after bias and penalties', () => {
  assert.equal(argmax([1, 3, 3, 2]), 1);
  const s = new Sampler({ temperature: 0, logitBias: { 0: 5 } }, 4);
  assert.equal(s.sample(new Float32Array([1, 3, 3, 2]), []), 0);
  const p = new Sampler({ temperature: 0, presencePenalty: 1, penaltyWindow: 8 }, 4);
  assert.equal(p.sample(new Float32Array([1, 3, 3, 2.5]), [1, 2]), 3);
  const r = new Sampler({ temperature: 0, repetitionPenalty: 2 }, 3);
  assert.equal(r.sample(new Float32Array([1.9, 3, -1]), [1]), 0); // 3 / 2 = 1.5 < 1.9
  const f = new Sampler({ temperature: 0, frequencyPenalty: 0.4 }, 2);
  assert.equal(f.sample(new Float32Array([1, 1.7]), [1, 1]), 0); // 1.7 - 0.8 < 1
});

test('options are validated and errors name the field', () => {
  for (const [o, param] of [
    [{ temperature: -1 }, 'temperature'],
    [{ topP: 0 }, 'top_p'],
    [{ topK: 1.5 }, 'top_k'],
    [{ minP: 2 }, 'min_p'],
    [{ seed: -3 }, 'seed'],
    [{ logitBias: { 99: 1 } }, 'logit_bias'],
    [{ presencePenalty: 3 }, 'presence_penalty'],
  ] as const) {
    assert.throws(() => validateSamplingOptions(o, 10), (e: unknown) => e instanceof UsageError && e.param === param);
  }
});

test('seeded sampling is reproducible and seeds differ', () => {
  const logits = new Float32Array(Array.from({ length: 50 }, (_, i) => Math.sin(i) * 2));
  const draw = (seed: number) => {
    const s = new Sampler({ temperature: 1, seed }, 50);
    return Array.from({ length: 30 }, () => s.sample(logits, []));
  };
  assert.deepEqual(draw(1), draw(1));
  assert.notDeepEqual(draw(1), draw(2));
});

test('one seed, different prompts: independent noise streams; the same prompt repeats its stream', () => {
  const flat = new Float32Array(1000); // every token equally likely: the draw is the noise alone
  const draw = (seed: number, stream?: number) => {
    const s = new Sampler({ temperature: 1, seed }, 1000, stream);
    return Array.from({ length: 20 }, () => s.sample(flat, []));
  };
  const a = streamKey([5, 6, 7]);
  assert.equal(streamKey([5, 6, 7]), a);
  for (const other of [streamKey([5, 6, 8]), streamKey([5, 6]), streamKey([5, 6, 7], 1), streamKey([7, 6, 5])]) assert.notEqual(other, a);
  assert.deepEqual(draw(2, a), draw(2, a));
  assert.notDeepEqual(draw(2, a), draw(2, streamKey([9, 10])));
  assert.notDeepEqual(draw(2, a), draw(3, a));
  // streams are unrelated: the first draws of 200 prompts under one seed are spread over the vocabulary
  const firsts = new Set(Array.from({ length: 200 }, (_, i) => draw(2, streamKey([i]))[0]));
  assert.ok(firsts.size > 150, `${firsts.size} distinct first tokens`);
});

/** The distribution a configuration should sample from, computed directly from its definition. */
function expectedDistribution(logits: Float32Array, o: { temperature: number; topK?: number; topP?: number; minP?: number }): Float64Array {
  const V = logits.length;
  const l = Float64Array.from(logits, (v) => v / o.temperature);
  const order = Array.from(l.keys()).sort((a, b) => l[b]! - l[a]! || a - b);
  const keep = new Uint8Array(V).fill(1);
  if (o.topK) order.slice(o.topK).forEach((i) => (keep[i] = 0));
  const softmax = (mask: Uint8Array) => {
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (mask[i]) max = Math.max(max, l[i]!);
    const p = new Float64Array(V);
    let z = 0;
    for (let i = 0; i < V; i++) if (mask[i]) z += p[i] = Math.exp(l[i]! - max);
    return p.map((v) => v / z);
  };
  if (o.topP !== undefined) {
    // smallest set of top tokens whose mass reaches p (equivalent to the reference's ascending rule away from exact ties)
    const p = softmax(keep);
    let mass = 0;
    let reached = false;
    for (const i of order) {
      if (!keep[i]) continue;
      if (reached) keep[i] = 0;
      mass += p[i]!;
      if (mass >= o.topP) reached = true;
    }
  }
  if (o.minP) {
    const p = softmax(keep);
    const top = Math.max(...p);
    for (let i = 0; i < V; i++) if (p[i]! < o.minP * top) keep[i] = 0;
  }
  return softmax(keep);
}

/** Pearson χ² of counts against probabilities, pooling cells with expected count < 5. */
function chiSquare(counts: Uint32Array, probs: Float64Array, n: number): { stat: number; df: number } {
  let stat = 0;
  let df = -1;
  let poolO = 0;
  let poolE = 0;
  for (let i = 0; i < probs.length; i++) {
    const e = probs[i]! * n;
    if (e < 5) {
      poolO += counts[i]!;
      poolE += e;
      continue;
    }
    stat += (counts[i]! - e) ** 2 / e;
    df++;
  }
  if (poolE > 0) {
    stat += (poolO - poolE) ** 2 / Math.max(poolE, 1e-9);
    df++;
  }
  return { stat, df };
}

/** χ² critical value at p = 1e-4 (Wilson–Hilferty). */
function chiCritical(df: number): number {
  const z = 3.719;
  return df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
}

test('empirical distributions match the computed ones on fixture logits (temperature, top-k, top-p, min-p)', FIXTURES, () => {
  const exp = readJson<{ logits: number[][] }>('fixtures', 'tiny', 'expected.json');
  // Real logits of the tiny fixture, sharpened so the filters bite (its raw spread is small).
  const logits = Float32Array.from(exp.logits[exp.logits.length - 1]!, (v) => v * 60);
  const V = logits.length;
  const N = 20000;
  const configs = [
    { temperature: 1 },
    { temperature: 0.7, topK: 20 },
    { temperature: 1.3, topP: 0.6 },
    { temperature: 1, minP: 0.2 },
    { temperature: 0.9, topK: 50, topP: 0.8, minP: 0.05 },
  ];
  for (const [ci, o] of configs.entries()) {
    const s = new Sampler({ ...o, seed: 1234 + ci }, V);
    const counts = new Uint32Array(V);
    for (let i = 0; i < N; i++) counts[s.sample(logits, [])]!++;
    const p = expectedDistribution(logits, o);
    for (let i = 0; i < V; i++) if (p[i] === 0) assert.equal(counts[i], 0, `config ${ci}: filtered token ${i} was sampled`);
    const { stat, df } = chiSquare(counts, p, N);
    assert.ok(stat < chiCritical(df), `config ${ci}: χ²=${stat.toFixed(1)} over ${df} df exceeds ${chiCritical(df).toFixed(1)}`);
    // The test can tell a wrong distribution apart: the untempered, unfiltered one must fail it.
    const wrong = expectedDistribution(logits, { temperature: o.temperature === 1 ? 1.5 : 1 });
    const w = chiSquare(counts, wrong, N);
    assert.ok(w.stat > 10 * chiCritical(w.df), `config ${ci}: a wrong distribution was not rejected (χ²=${w.stat.toFixed(1)})`);
  }
});

test('logprobs: chosen and top-n from log-softmax', () => {
  const r = logprobs(new Float32Array([0, Math.log(3)]), 1, 2);
  assert.ok(Math.abs(r.logprob - Math.log(0.75)) < 1e-6);
  assert.deepEqual(r.top.map((t) => t.id), [1, 0]);
  assert.ok(Math.abs(r.top[1]!.logprob - Math.log(0.25)) < 1e-6);
});
