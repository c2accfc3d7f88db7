/**
 * The OpenAI-compatible server end to end, through the official `openai` client against a real
 * server on loopback: the bundled demo for text (its tokenizer matches), the tiny fixture for
 * token-id prompts where text quality does not matter.
 */
import assert from 'node:assert/strict';
import { after, before } from 'node:test';
import OpenAI from 'openai';
import { CHAT_STOP, plainChatTemplate, type ChatMessage } from '../src/generate/chat-template.js';
import { logprobs as logprobsOf } from '../src/generate/sampler.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { createServer, parseChatTemplate, type GrokServer } from '../src/server/index.js';
import { fixtureTest as test, HAVE_FIXTURES, shared } from './shared.js';

const API_KEY = 'test-key-0123456789';
let demo: LanguageModel;
let tiny: LanguageModel;
let demoServer: GrokServer;
let tinyServer: GrokServer;
let demoClient: OpenAI;
let tinyClient: OpenAI;

before(async () => {
  if (!HAVE_FIXTURES) return;
  demo = await loadModel(undefined, { backend: 'js' });
  tiny = await loadModel(shared('fixtures', 'tiny'), { backend: 'js' });
  demoServer = createServer(demo);
  tinyServer = createServer(tiny, { modelId: 'tiny', apiKey: API_KEY });
  const d = await demoServer.listen(0, '127.0.0.1');
  const t = await tinyServer.listen(0, '127.0.0.1');
  demoClient = new OpenAI({ baseURL: `${d.url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });
  tinyClient = new OpenAI({ baseURL: `${t.url}/v1`, apiKey: API_KEY, maxRetries: 0, timeout: 30_000 });
});

after(async () => {
  if (!HAVE_FIXTURES) return;
  await demoServer.close(1000);
  await tinyServer.close(1000);
  await demo.close();
  await tiny.close();
});

const PROMPT = 'You will be';
const MESSAGES: ChatMessage[] = [
  { role: 'system', content: 'You tell fortunes.' },
  { role: 'user', content: 'What does the future hold?' },
];

test('GET /v1/models lists the one served model', async () => {
  const models = await demoClient.models.list();
  assert.deepEqual(
    models.data.map((m) => [m.id, m.object, m.owned_by]),
    [['fortune-demo', 'model', 'grok-ts']],
  );
  assert.equal((await tinyClient.models.retrieve('tiny')).id, 'tiny');
  assert.equal(createServer(tiny).modelId, 'tiny', "by default, the checkpoint's directory name");
});

test('completions: greedy text, usage and finish_reason match the library; streaming gives the same text', async () => {
  const ref = await demo.generate(PROMPT, { temperature: 0, maxTokens: 6 });
  const r = await demoClient.completions.create({ model: 'fortune-demo', prompt: PROMPT, max_tokens: 6, temperature: 0 });
  assert.equal(r.object, 'text_completion');
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0]!.text, ref.text);
  assert.equal(r.choices[0]!.finish_reason, ref.finishReason);
  assert.deepEqual(r.usage, { prompt_tokens: ref.usage.promptTokens, completion_tokens: ref.usage.completionTokens, total_tokens: ref.usage.totalTokens });

  const stream = await demoClient.completions.create({ model: 'fortune-demo', prompt: PROMPT, max_tokens: 6, temperature: 0, stream: true, stream_options: { include_usage: true } });
  let text = '';
  const finish: (string | null)[] = [];
  let usage;
  let chunks = 0;
  for await (const c of stream) {
    chunks++;
    if (c.usage) usage = c.usage;
    for (const ch of c.choices) {
      text += ch.text;
      if (ch.finish_reason) finish.push(ch.finish_reason);
    }
  }
  assert.equal(text, ref.text);
  assert.ok(chunks >= 3, 'text arrives in several events');
  assert.deepEqual(finish, [ref.finishReason]);
  assert.deepEqual(usage, r.usage);
});

test('chat: rendered with the plain transcript template, the reply trimmed; streaming gives the same deltas', async () => {
  const ref = await demo.generate(plainChatTemplate(MESSAGES), { temperature: 0, maxTokens: 6, stop: CHAT_STOP });
  const r = await demoClient.chat.completions.create({ model: 'fortune-demo', messages: MESSAGES, max_completion_tokens: 6, temperature: 0 });
  assert.equal(r.object, 'chat.completion');
  assert.match(r.id, /^chatcmpl-/);
  const msg = r.choices[0]!.message;
  assert.equal(msg.role, 'assistant');
  assert.equal(msg.content, ref.text.trim());
  assert.ok(msg.content!.length > 0);
  assert.equal(r.choices[0]!.finish_reason, ref.finishReason);
  assert.equal(r.usage!.prompt_tokens, demo.encodePrompt(plainChatTemplate(MESSAGES)).length);
  assert.equal(r.usage!.completion_tokens, ref.usage.completionTokens);

  const stream = await demoClient.chat.completions.create({ model: 'fortune-demo', messages: MESSAGES, max_tokens: 6, temperature: 0, stream: true });
  const deltas: { role?: string; content?: string | null }[] = [];
  let finish: string | null = null;
  for await (const c of stream) {
    assert.equal(c.object, 'chat.completion.chunk');
    for (const ch of c.choices) {
      deltas.push(ch.delta);
      finish = ch.finish_reason ?? finish;
    }
  }
  assert.equal(deltas[0]!.role, 'assistant');
  assert.equal(deltas.map((d) => d.content ?? '').join(''), msg.content);
  assert.equal(finish, r.choices[0]!.finish_reason);
});

test('stop strings end the text before the stop, with finish_reason stop', async () => {
  const full = (await demoClient.completions.create({ model: 'fortune-demo', prompt: PROMPT, max_tokens: 8, temperature: 0 })).choices[0]!.text;
  const words = full.trim().split(/\s+/);
  assert.ok(words.length >= 3, `need a few words of greedy text, got ${JSON.stringify(full)}`);
  const stopWord = ` ${words[2]}`;
  const cut = full.slice(0, full.indexOf(stopWord));
  const r = await demoClient.completions.create({ model: 'fortune-demo', prompt: PROMPT, max_tokens: 8, temperature: 0, stop: [stopWord, 'never-appears'] });
  assert.equal(r.choices[0]!.text, cut);
  assert.equal(r.choices[0]!.finish_reason, 'stop');
  const s = await demoClient.completions.create({ model: 'fortune-demo', prompt: PROMPT, max_tokens: 8, temperature: 0, stop: stopWord, stream: true });
  let text = '';
  for await (const c of s) for (const ch of c.choices) text += ch.text;
  assert.equal(text, cut);
});

test('seed: the same seed repeats a sampled completion; n choices use seed, seed + 1, ... batched together', async () => {
  const ask = (seed: number, n = 1) => tinyClient.completions.create({ model: 'tiny', prompt: [5, 6, 7], max_tokens: 12, temperature: 1, seed, n });
  const a = await ask(42);
  const b = await ask(42);
  assert.equal(a.choices[0]!.text, b.choices[0]!.text);
  const c = await ask(43);
  assert.notEqual(a.choices[0]!.text, c.choices[0]!.text);

  const many = await ask(42, 3);
  assert.deepEqual(many.choices.map((x) => x.index), [0, 1, 2]);
  assert.equal(many.choices[0]!.text, a.choices[0]!.text);
  assert.equal(many.choices[1]!.text, c.choices[0]!.text);
  assert.equal(many.usage!.prompt_tokens, 3, 'the prompt is counted once');
  assert.equal(many.usage!.completion_tokens, 36);

  const stream = await tinyClient.completions.create({ model: 'tiny', prompt: [5, 6, 7], max_tokens: 12, temperature: 1, seed: 42, n: 3, stream: true });
  const texts = ['', '', ''];
  for await (const chunk of stream) for (const ch of chunk.choices) texts[ch.index] += ch.text;
  assert.deepEqual(texts, many.choices.map((x) => x.text));
});

test('several prompts in one request: choices are prompt-major, then n', async () => {
  const r = await tinyClient.completions.create({ model: 'tiny', prompt: [[5, 6, 7], [9, 10]], max_tokens: 4, temperature: 0, n: 2 });
  assert.equal(r.choices.length, 4);
  const one = async (p: number[]) => (await tinyClient.completions.create({ model: 'tiny', prompt: p, max_tokens: 4, temperature: 0 })).choices[0]!.text;
  assert.deepEqual(r.choices.map((c) => c.text), [await one([5, 6, 7]), await one([5, 6, 7]), await one([9, 10]), await one([9, 10])]);
  assert.equal(r.usage!.prompt_tokens, 5);
});

test('completions logprobs: chosen token and top-N alternatives, log-softmax of the real logits, with text offsets', async () => {
  const prompt = [5, 6, 7];
  const r = await tinyClient.completions.create({ model: 'tiny', prompt, max_tokens: 5, temperature: 0, logprobs: 3 });
  const lp = r.choices[0]!.logprobs!;
  assert.equal(lp.tokens!.length, 5);
  assert.equal(lp.token_logprobs!.length, 5);
  const ref = logprobsOf(tiny.logits(prompt)[0]!, 0, 3); // alternatives of the first position
  const firstTop = Object.values(lp.top_logprobs![0]!).sort((x, y) => y - x); // a dict: key order is not rank order
  assert.equal(firstTop.length, 3);
  ref.top.forEach((t, i) => assert.ok(Math.abs(firstTop[i]! - t.logprob) < 1e-9));
  // Greedy: the chosen token is the best alternative.
  lp.token_logprobs!.forEach((l, i) => assert.equal(l, Math.max(...Object.values(lp.top_logprobs![i]!))));
  assert.equal(lp.text_offset![0], tiny.tokenizer.decode(prompt).length, 'offsets count from the start of the prompt');
  for (let i = 1; i < 5; i++) assert.equal(lp.text_offset![i], lp.text_offset![i - 1]! + lp.tokens![i - 1]!.length);

  const stream = await tinyClient.completions.create({ model: 'tiny', prompt, max_tokens: 5, temperature: 0, logprobs: 3, stream: true });
  const streamed: number[] = [];
  for await (const c of stream) for (const ch of c.choices) streamed.push(...(ch.logprobs?.token_logprobs ?? []));
  assert.deepEqual(streamed, lp.token_logprobs);
});

test('chat logprobs: content entries with token, bytes and top_logprobs', async () => {
  const r = await demoClient.chat.completions.create({ model: 'fortune-demo', messages: MESSAGES, max_tokens: 3, temperature: 0, logprobs: true, top_logprobs: 2 });
  const content = r.choices[0]!.logprobs!.content!;
  assert.equal(content.length, r.usage!.completion_tokens);
  for (const t of content) {
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.logprob, t.top_logprobs[0]!.logprob, 'greedy picks the top alternative');
    assert.ok(t.top_logprobs[0]!.logprob >= t.top_logprobs[1]!.logprob);
    assert.deepEqual(t.bytes, [...Buffer.from(t.token, 'utf8')]);
  }
  assert.equal(content.map((t) => t.token).join('').trim(), r.choices[0]!.message.content);
});

test('a chat template given as a file format replaces the transcript and its stop strings', async () => {
  const template = parseChatTemplate(
    { system: '{content}\n', user: 'Q: {content}\n', assistant: 'A: {content}\n', assistant_start: 'A:', stop: ['\nQ:'] },
    'inline.json',
  );
  const rendered = template.render(MESSAGES);
  assert.equal(rendered, 'You tell fortunes.\nQ: What does the future hold?\nA:');
  const ref = await demo.generate(rendered, { temperature: 0, maxTokens: 6, stop: ['\nQ:'] });
  const words = ref.text.trim().split(/\s+/);
  assert.ok(words.length >= 2, `need a few words of greedy text, got ${JSON.stringify(ref.text)}`);
  // A template stop that appears in the greedy reply proves the template's stops are applied.
  const server = createServer(demo, { chatTemplate: { render: template.render, stop: [...template.stop, ` ${words[1]}`] } });
  try {
    const { url } = await server.listen(0);
    const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'fortune-demo', messages: MESSAGES, max_tokens: 6, temperature: 0 });
    assert.equal(r.usage!.prompt_tokens, demo.encodePrompt(rendered).length);
    assert.equal(r.choices[0]!.message.content, ref.text.slice(0, ref.text.indexOf(` ${words[1]}`)).trim());
    assert.equal(r.choices[0]!.finish_reason, 'stop');
  } finally {
    await server.close(1000);
  }
});

test('the API key is required on /v1 routes when set', async () => {
  const anonymous = new OpenAI({ baseURL: tinyClient.baseURL, apiKey: 'wrong-key', maxRetries: 0 });
  await assert.rejects(anonymous.models.list(), (e: unknown) => e instanceof OpenAI.AuthenticationError && e.status === 401);
});

test('errors reach the client as typed API errors with status, param and code', async () => {
  await assert.rejects(
    demoClient.completions.create({ model: 'fortune-demo', prompt: PROMPT, temperature: 5 }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && (e.error as { param?: string }).param === 'temperature',
  );
  await assert.rejects(
    demoClient.completions.create({ model: 'grok-9', prompt: PROMPT }),
    (e: unknown) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found',
  );
  await assert.rejects(
    tinyClient.completions.create({ model: 'tiny', prompt: Array.from({ length: 200 }, () => 5) }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === 'context_length_exceeded',
  );
});
