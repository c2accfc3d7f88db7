/** Generation on the bundled demo (real tokenizer) and the tiny fixture: stop rules, streaming, abort, seeds. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { AbortError, ContextLengthError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { FIXTURES, HAVE_FIXTURES, readJson, shared } from './shared.js';

let demo: LanguageModel;
/** The tiny fixture (loaded only when the fixtures are there; the tests that use it are skipped otherwise). */
let tiny: LanguageModel;

before(async () => {
  demo = await loadModel(undefined, { backend: 'js' });
  if (HAVE_FIXTURES) tiny = await loadModel(shared('fixtures', 'tiny'), { backend: 'js' });
});
after(async () => {
  await demo.close();
  await (tiny as LanguageModel | undefined)?.close();
});

const samples = () =>
  readJson<{ samples: { prompt: string; prompt_ids: number[]; greedy: { ids: number[]; text: string; full_text: string } }[] }>('demo', 'fortune', 'samples.json').samples;

test('the prompt is encoded without BOS, as the reference runner does; prompt + output text = the full greedy text', FIXTURES, async () => {
  for (const s of samples()) {
    assert.deepEqual(demo.encodePrompt(s.prompt), s.prompt_ids);
    const r = await demo.generate(s.prompt, { temperature: 0, maxTokens: s.greedy.ids.length, ignoreEos: true });
    assert.deepEqual(r.ids, s.greedy.ids);
    assert.equal(s.prompt + r.text, s.greedy.full_text);
  }
});

test('EOS ends generation by default (finish_reason stop), and is not part of the output', FIXTURES, async () => {
  const s = samples()[0]!; // its greedy continuation holds EOS (id 2) at step 15
  const eosAt = s.greedy.ids.indexOf(2);
  assert.ok(eosAt > 0);
  const r = await demo.generate(s.prompt, { temperature: 0, maxTokens: 40 });
  assert.equal(r.finishReason, 'stop');
  assert.equal(r.stopReason, 'eos');
  assert.deepEqual(r.ids, s.greedy.ids.slice(0, eosAt));
  assert.equal(r.usage.completionTokens, eosAt);
});

test('a stop string spanning several tokens ends generation and is not emitted, also while streaming', FIXTURES, async () => {
  const s = samples()[1]!; // "is a man who is a man who can be …"
  const full = (await demo.generate(s.prompt, { temperature: 0, maxTokens: 20 })).text;
  const stop = 'man who can';
  const at = full.indexOf(stop);
  assert.ok(at > 0, full);
  const stream = demo.stream(s.prompt, { temperature: 0, maxTokens: 20, stop: ['zzz', stop] });
  let streamed = '';
  for await (const c of stream) streamed += c.text;
  const r = await stream.result;
  assert.equal(r.text, full.slice(0, at));
  assert.equal(streamed, r.text);
  assert.equal(r.finishReason, 'stop');
  assert.equal(r.stopReason, 'stop_string');
  assert.equal(r.stopString, stop);
});

test('max tokens: finish_reason length; prompt + streamed deltas = the decoded sequence', async () => {
  const stream = demo.stream('A computer', { temperature: 0.9, seed: 5, maxTokens: 12, ignoreEos: true });
  let text = '';
  for await (const c of stream) text += c.text;
  const r = await stream.result;
  assert.equal(r.ids.length, 12);
  assert.equal(r.finishReason, 'length');
  assert.equal(r.stopReason, 'max_tokens');
  assert.equal(text, r.text);
  assert.equal('A computer' + text, demo.tokenizer.decode([...demo.encodePrompt('A computer'), ...r.ids]));
});

test('the same seed gives the same continuation, different seeds differ', async () => {
  const run = (seed: number) => demo.generate('Never', { temperature: 1, topP: 0.95, seed, maxTokens: 16, ignoreEos: true });
  const a = await run(11);
  const b = await run(11);
  const c = await run(12);
  assert.deepEqual(a.ids, b.ids);
  assert.equal(a.seed, 11);
  assert.notDeepEqual(a.ids, c.ids);
});

test('one seed over different prompts: each prompt gets its own noise (seed 2 no longer opens them alike)', async () => {
  const prompts = ['The meaning of life is', 'A computer', 'Never', 'In the beginning', 'Why'];
  const firsts: number[] = [];
  for (const p of prompts) {
    const r = await demo.generate(p, { temperature: 0.8, seed: 2, maxTokens: 1, ignoreEos: true });
    firsts.push(r.ids[0]!);
    assert.deepEqual((await demo.generate(p, { temperature: 0.8, seed: 2, maxTokens: 1, ignoreEos: true })).ids, r.ids, 'same seed and prompt: same text');
  }
  const most = Math.max(...firsts.map((id) => firsts.filter((x) => x === id).length));
  assert.ok(most <= 1, `first tokens ${firsts.map((id) => JSON.stringify(demo.tokenizer.decode([id]))).join(', ')}`);
});

test('chat past the context: the oldest turns are dropped, the system message stays, the session goes on', async () => {
  const trims: number[] = [];
  const chat = demo.chat({ system: 'Fortunes only.', onTrim: (t) => trims.push(t.droppedTurns) });
  const system = demo.encodePrompt('Fortunes only.\n\n');
  const ctx = demo.config.sequenceLen;
  for (const [i, message] of ['Tell me a fortune.', 'Another one?', 'And a third?', 'One more, please.', 'The last one.'].entries()) {
    const turn = chat.send(message, { temperature: 0.8, seed: i, maxTokens: 40, ignoreEos: true });
    for await (const _ of turn);
    const r = await turn.result;
    assert.ok(r.usage.completionTokens > 0);
    assert.ok(chat.length < ctx, `${chat.length} tokens in a ${ctx}-token context`);
    assert.deepEqual(chat.ids.slice(0, system.length), system, 'the system message leads the transcript');
  }
  assert.ok(trims.length >= 1 && trims.every((n) => n >= 1), `trims ${trims}`);
  // a message that cannot fit even alone is an error naming the message, not an option
  await assert.rejects(
    async () => {
      for await (const _ of chat.send('word '.repeat(200), { maxTokens: 4 }));
    },
    (e: unknown) => e instanceof ContextLengthError && /the message and the system message leave no room/.test(e.message) && !/truncate/.test(e.message),
  );
});

test('context limit: a prompt that fills the context is an error unless truncated; generation stops at the limit', FIXTURES, async () => {
  const ctx = tiny.config.sequenceLen; // 128
  const ids = Array.from({ length: ctx }, (_, i) => 3 + (i % 900));
  await assert.rejects(tiny.generate(ids, { temperature: 0 }), (e: unknown) => e instanceof ContextLengthError && e.promptTokens === ctx);
  const t = await tiny.generate(ids, { temperature: 0, truncate: 'left', maxTokens: 4 });
  assert.equal(t.usage.promptTokens, ctx - 4);
  assert.equal(t.ids.length, 4);
  const r = await tiny.generate(ids.slice(0, ctx - 3), { temperature: 0, maxTokens: 50, ignoreEos: true });
  assert.equal(r.stopReason, 'context_length');
  assert.equal(r.finishReason, 'length');
  assert.equal(r.usage.totalTokens, ctx + 1); // the last token is sampled but has no slot to be fed into
});

test('abort: an AbortSignal stops generation at the next step, throws AbortError and frees the cache', async () => {
  const controller = new AbortController();
  const seq = demo.newSequence('In the beginning', { temperature: 0, maxTokens: 30, ignoreEos: true });
  const stream = demo.streamSequence(seq, controller.signal, true);
  let chunks = 0;
  await assert.rejects(
    (async () => {
      for await (const _ of stream) {
        chunks++;
        if (chunks === 3) controller.abort();
      }
    })(),
    (e: unknown) => e instanceof AbortError,
  );
  assert.equal(chunks, 3);
  assert.equal(seq.cache.capacity, 0);
  await assert.rejects(stream.result, (e: unknown) => e instanceof AbortError);
});

test('chat: each turn only prefills its new text; history stays in the cache; reset forgets it', async () => {
  const chat = demo.chat();
  let first = '';
  for await (const c of chat.send('Tell me a fortune.', { temperature: 0, maxTokens: 8 })) first += c.text;
  const afterFirst = chat.length;
  assert.ok(afterFirst > 8);
  const turn = chat.send('And another?', { temperature: 0, maxTokens: 5 });
  for await (const _ of turn);
  const r = await turn.result;
  // prompt tokens of turn 2 = its own text (plus at most one token left unfed by turn 1), not the history
  assert.ok(r.usage.promptTokens < afterFirst, `${r.usage.promptTokens} vs ${afterFirst}`);
  assert.ok(chat.length > afterFirst);
  chat.reset();
  assert.equal(chat.length, 0);
  assert.equal(typeof first, 'string');
});

test('logprobs: chosen token and top alternatives, sorted, the greedy pick on top', async () => {
  const r = await demo.generate('Why', { temperature: 0, maxTokens: 3, logprobs: 3, ignoreEos: true });
  assert.equal(r.logprobs!.length, 3);
  for (const [i, lp] of r.logprobs!.entries()) {
    assert.equal(lp.id, r.ids[i]);
    assert.equal(lp.top.length, 3);
    assert.equal(lp.top[0]!.id, lp.id);
    assert.ok(lp.logprob <= 0 && lp.top[0]!.logprob >= lp.top[1]!.logprob);
  }
});
