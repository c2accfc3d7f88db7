/** The continuous-batching scheduler on the tiny fixture: same tokens as one stream, one forward per step, caches freed at once. */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import { AbortError, QueueFullError, QueueTimeoutError, StreamStalledError } from '../src/errors.js';
import type { GenerateOptions, GenerationResult, SequenceState } from '../src/generate/sequence.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { Scheduler, type SchedulerLimits, type SchedulerStats, type SequenceSink, type Submission } from '../src/generate/scheduler.js';
import { fixtureTest as test, HAVE_FIXTURES, shared } from './shared.js';

let lm: LanguageModel;
before(async () => {
  if (!HAVE_FIXTURES) return;
  lm = await loadModel(shared('fixtures', 'tiny'), { backend: 'js' });
});
after(async () => {
  if (!HAVE_FIXTURES) return;
  await lm.close();
});

const PROMPTS = [[5, 6, 7], [9, 10, 11, 12, 13], [100], [200, 201]];
const options = (i: number, maxTokens = 12): GenerateOptions => ({ temperature: 0.9, seed: 10 + i, maxTokens, ignoreEos: true });
const limits = (o: Partial<SchedulerLimits> = {}): Partial<SchedulerLimits> => ({ maxBatch: 4, maxQueue: 8, maxPrefillTokens: 512, queueTimeoutMs: 10_000, ...o });

function seq(i: number, maxTokens?: number): SequenceState {
  return lm.newSequence(PROMPTS[i % PROMPTS.length]!, options(i, maxTokens), lm.model.newCache(0));
}

/** Submits one sequence per request and resolves with its result (or rejects with its failure). */
function run(s: Scheduler, q: SequenceState, signal?: AbortSignal, onChunk: SequenceSink['chunk'] = () => true): Promise<GenerationResult> {
  return new Promise((resolve, reject) => s.submit([q], [{ chunk: onChunk, done: resolve, fail: reject }], signal));
}

test('batched sequences produce exactly the tokens each produces alone, in one forward pass per step', async () => {
  const refs: number[][] = [];
  for (let i = 0; i < 4; i++) refs.push((await lm.generate(PROMPTS[i]!, options(i))).ids);
  const s = new Scheduler(lm.model, limits());
  const seqs = [0, 1, 2, 3].map((i) => seq(i));
  const results = await Promise.all(seqs.map((q) => run(s, q)));
  results.forEach((r, i) => {
    assert.deepEqual(r.ids, refs[i]);
    assert.equal(r.finishReason, 'length');
  });
  const st = s.stats();
  // All four joined the first step (prefill rows of all prompts), then decoded together: 12 steps, not 48.
  assert.equal(st.steps, 12);
  assert.equal(st.rows, 3 + 5 + 1 + 2 + 11 * 4);
  assert.deepEqual([st.active, st.queued, st.finished], [0, 0, 4]);
  for (const q of seqs) assert.equal(q.cache.capacity, 0, 'cache freed when the sequence ended');
});

test('--max-batch caps a step; waiting sequences join as soon as a slot frees', async () => {
  const s = new Scheduler(lm.model, limits({ maxBatch: 2 }));
  const seqs = [seq(0, 4), seq(1, 8), seq(2, 4), seq(3, 4)];
  let widest = 0;
  const chunk = () => {
    widest = Math.max(widest, s.stats().active);
    return true;
  };
  await Promise.all(seqs.map((q) => run(s, q, undefined, chunk)));
  assert.equal(widest, 2);
  // 0 and 1 start together; 2 joins at step 5 when 0 ends; 3 joins at step 9 when 1 and 2 end: 12 steps.
  assert.equal(s.stats().steps, 12);
});

test('a sequence aborted mid-generation leaves the batch and frees its cache before the next step', async () => {
  const s = new Scheduler(lm.model, limits());
  const victim = seq(0, 50);
  const other = seq(1, 20);
  const ac = new AbortController();
  let chunks = 0;
  let capacityAtAbort = -1;
  const aborted = run(s, victim, ac.signal, () => {
    if (++chunks === 3) {
      ac.abort();
      capacityAtAbort = victim.cache.capacity;
    }
    return true;
  });
  const survivor = run(s, other);
  await assert.rejects(aborted, AbortError);
  assert.equal(chunks, 3, 'no step ran for it after the abort');
  assert.ok(capacityAtAbort === 0, 'freed synchronously by the abort');
  assert.equal((await survivor).ids.length, 20);
  assert.deepEqual([s.stats().aborted, s.stats().finished, s.stats().active], [1, 1, 0]);
});

test('a full queue refuses the whole request with a QueueFullError, without queuing part of it', async () => {
  const s = new Scheduler(lm.model, limits({ maxQueue: 3 }));
  const sink = (): SequenceSink => ({ chunk: () => true, done: () => {}, fail: () => {} });
  const ac = new AbortController();
  s.submit([seq(0), seq(1)], [sink(), sink()], ac.signal);
  assert.throws(
    () => s.submit([seq(2), seq(3)], [sink(), sink()]),
    (e: unknown) => e instanceof QueueFullError && e.queued === 2 && e.limit === 3 && e.retryAfterSeconds === 1,
  );
  assert.equal(s.stats().queued, 2);
  ac.abort();
  assert.deepEqual([s.stats().queued, s.stats().aborted], [0, 2]);
});

test('a sink that reports backpressure sits out steps until resumed', async () => {
  const s = new Scheduler(lm.model, limits());
  const slow = seq(0, 6);
  const fast = seq(1, 6);
  let slowChunks = 0;
  let resume: (() => void) | undefined;
  const slowDone = new Promise<GenerationResult>((resolve, reject) => {
    const sub = s.submit([slow], [{ chunk: () => ++slowChunks > 1, done: resolve, fail: reject }]);
    resume = sub.resume;
  });
  await run(s, fast);
  assert.equal(slowChunks, 1, 'parked after its first chunk while the other ran to the end');
  assert.equal(s.stats().paused, 1);
  resume!();
  assert.equal((await slowDone).ids.length, 6);
  assert.equal(s.stats().paused, 0);
});

test('close() lets running sequences finish within the grace period, then aborts the rest and refuses new ones', async () => {
  const s = new Scheduler(lm.model, limits());
  const short = run(s, seq(0, 2));
  // Parked after its first chunk (a client that stopped reading): it cannot finish, so the grace period runs out.
  const stuck = run(s, seq(1, 50), undefined, () => false).catch((e: unknown) => e);
  const t0 = performance.now();
  await s.close(300);
  assert.ok(performance.now() - t0 >= 290);
  assert.equal((await short).ids.length, 2);
  const err = await stuck;
  assert.ok(err instanceof AbortError && /shutting down/.test(err.message));
  assert.throws(() => s.submit([seq(2)], [{ chunk: () => true, done: () => {}, fail: () => {} }]), (e: unknown) => e instanceof AbortError && /shutting down/.test(e.message));
  assert.deepEqual([s.stats().active, s.stats().queued], [0, 0]);
});

test('close() returns as soon as the last sequence ends', async () => {
  const s = new Scheduler(lm.model, limits());
  const done = run(s, seq(0, 3));
  const t0 = performance.now();
  await s.close(60_000);
  assert.ok(performance.now() - t0 < 10_000);
  assert.equal((await done).ids.length, 3);
});

test('a sequence still queued after the queue timeout fails with a QueueTimeoutError', async () => {
  const s = new Scheduler(lm.model, limits({ maxBatch: 1, queueTimeoutMs: 50 }));
  const ac = new AbortController();
  const running = run(s, seq(0, 120), ac.signal);
  const waiting = run(s, seq(1, 4));
  await assert.rejects(waiting, (e: unknown) => e instanceof QueueTimeoutError && e.waitedMs === 50);
  ac.abort();
  await assert.rejects(running, AbortError);
});

/** A sink that refuses output after `accept` chunks (its client stopped reading). */
function stallingSink(accept: number, onFail: (e: unknown) => void): SequenceSink & { chunks: number } {
  const sink = {
    chunks: 0,
    chunk: () => ++sink.chunks <= accept,
    done: () => onFail(new Error('finished, but it should have stalled')),
    fail: onFail,
  };
  return sink;
}

test('a blocked request leaves the batch, keeping its cache; it is ended with stream_stalled after the stall limit unless its client reads again', async () => {
  const s = new Scheduler(lm.model, limits({ stallTimeoutMs: 300 }));
  let stalledErr: unknown;
  const stalled = new Promise<void>((resolve) => s.submit([seq(0, 60)], [stallingSink(2, (e) => ((stalledErr = e), resolve()))]));
  // Another request blocks once; its client reads again on the next turn of the event loop, well within the limit.
  let sub!: Submission;
  let whileBlocked: SchedulerStats | undefined;
  const resumed = new Promise<GenerationResult>((resolve, reject) => {
    let blocked = false;
    const chunk = (): boolean => {
      if (blocked) return true;
      blocked = true;
      setImmediate(() => {
        whileBlocked = s.stats();
        sub.resume();
      });
      return false;
    };
    sub = s.submit([seq(1, 20)], [{ chunk, done: resolve, fail: reject }]);
  });
  const other = run(s, seq(2, 30));
  assert.equal((await resumed).ids.length, 20);
  assert.ok(whileBlocked!.paused >= 1 && whileBlocked!.active <= 2, `held out of the batch while blocked: ${JSON.stringify(whileBlocked)}`);
  assert.equal((await other).ids.length, 30);
  await stalled;
  assert.ok(stalledErr instanceof StreamStalledError, String(stalledErr));
  assert.deepEqual([s.stats().stalled, s.stats().paused, s.stats().active], [1, 0, 0]);
  assert.equal(s.stats().finished, 2);
});

test('past maxPaused held sequences, the request blocked longest is ended', async () => {
  const s = new Scheduler(lm.model, limits({ maxPaused: 2, stallTimeoutMs: 60_000 }));
  const errs: unknown[] = [];
  const first = new Promise<void>((resolve) => s.submit([seq(0, 60), seq(1, 60)], [stallingSink(1, (e) => (errs.push(e), resolve())), stallingSink(1, () => {})]));
  for (let i = 0; s.stats().paused < 2; i++) {
    assert.ok(i < 10_000, 'never blocked');
    await new Promise((r) => setImmediate(r));
  }
  // A second request blocks: three held sequences, one too many; the first request is ended.
  const ac = new AbortController();
  const second = new Promise<unknown>((resolve) => s.submit([seq(2, 60)], [stallingSink(3, resolve)], ac.signal));
  await first;
  assert.ok(errs[0] instanceof StreamStalledError);
  assert.deepEqual([s.stats().stalled, s.stats().paused], [1, 1]);
  ac.abort();
  assert.ok((await second) instanceof AbortError);
  assert.equal(s.stats().paused, 0);
});

test('fairness: the next slot goes to the client with the fewest running sequences, then the request with the fewest', async () => {
  const s = new Scheduler(lm.model, limits({ maxBatch: 3, maxBatchPerRequest: 2 }));
  const firstStep: string[] = [];
  const sink = (label: string, done: () => void): SequenceSink => ({
    chunk: () => {
      if (s.stats().steps === 1) firstStep.push(label);
      return true;
    },
    done,
    fail: (e) => assert.fail(String(e)),
  });
  const ends: Promise<void>[] = [];
  const submit = (client: string, req: string, n: number): void => {
    const seqs = Array.from({ length: n }, (_, i) => seq(i, 4));
    const dones = seqs.map(() => {
      let d!: () => void;
      ends.push(new Promise<void>((r) => (d = r)));
      return d;
    });
    s.submit(seqs, seqs.map((_, i) => sink(`${client}/${req}#${i}`, dones[i]!)), undefined, client);
  };
  submit('x', 'a', 3); // three choices, but two slots per request
  submit('x', 'b', 2);
  submit('y', 'c', 2);
  await Promise.all(ends);
  // x/a#0 first (oldest); then y (no sequence running) before x's second; then x/b (its request has none running) before x/a#1.
  assert.deepEqual(firstStep, ['x/a#0', 'y/c#0', 'x/b#0']);
});
