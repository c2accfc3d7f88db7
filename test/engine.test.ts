/** One engine: library calls go through the model's scheduler, so concurrent ones batch like server requests. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { QueueFullError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';

let demo: LanguageModel;
before(async () => {
  demo = await loadModel(undefined, { backend: 'js' });
});
after(async () => {
  await demo.close();
});

const PROMPTS = ['A friend asks', 'You will find', 'Good luck comes', 'The sun'];
const opts = (i: number) => ({ temperature: 0.8, seed: 7 + i, maxTokens: 10, ignoreEos: true });

test('concurrent generate calls share forward passes and give exactly the tokens of sequential ones', async () => {
  const alone = [];
  for (const [i, p] of PROMPTS.entries()) alone.push((await demo.generate(p, opts(i))).ids);
  const before = demo.scheduler.stats().steps;
  const together = await Promise.all(PROMPTS.map((p, i) => demo.generate(p, opts(i))));
  assert.deepEqual(together.map((r) => r.ids), alone);
  // Four sequences of 10 tokens: 10 steps together (40 one at a time).
  assert.equal(demo.scheduler.stats().steps - before, 10);
});

test('a full library queue is a QueueFullError; a slow reader is held, never cut off', async () => {
  const lm = await loadModel(undefined, { backend: 'js', scheduler: { maxBatch: 1, maxQueue: 1 } });
  try {
    const first = lm.stream(PROMPTS[0]!, opts(0));
    const it = first[Symbol.asyncIterator]();
    await it.next(); // running
    const second = lm.generate(PROMPTS[1]!, opts(1)); // queued
    await assert.rejects(lm.generate(PROMPTS[2]!, opts(2)), (e: unknown) => e instanceof QueueFullError && e.limit === 1);
    // The first stream's reader now takes its time: its sequence sits out, the queued one runs.
    assert.equal((await second).ids.length, 10);
    await new Promise((r) => setTimeout(r, 50));
    let n = 1;
    while (!(await it.next()).done) n++;
    assert.equal(n, 10);
    assert.equal((await first.result).ids.length, 10);
  } finally {
    await lm.close();
  }
});

test('closing the model aborts what still runs', async () => {
  const lm = await loadModel(undefined, { backend: 'js' });
  const s = lm.stream(PROMPTS[0]!, { ...opts(0), maxTokens: 200 });
  const it = s[Symbol.asyncIterator]();
  await it.next();
  await lm.close();
  await assert.rejects(s.result, /shutting down/);
});
