/**
 * loadModel(url): the library's generation behaviour (greedy text, streaming, stop strings, token-id
 * prompts, abort, typed errors, chat, tokenizer) against `grok-ts serve` on loopback, compared
 * with the same model loaded locally; retries against a tiny node:http server that answers 429/503.
 */
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { AbortError, ContextLengthError, UnsupportedError, UsageError } from '../src/errors.js';
import { CHAT_STOP, plainChatTemplate } from '../src/generate/chat-template.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { parseRetryAfter, RemoteError } from '../src/remote/http.js';
import { RemoteModel, type RemoteUrl } from '../src/remote/remote-model.js';
import type { TextModel } from '../src/remote/text-model.js';
import { createServer, type GrokServer } from '../src/server/index.js';
import { FIXTURES, HAVE_FIXTURES } from './shared.js';

const API_KEY = 'remote-test-key-0123';
const PROMPT = 'You will be';

describe('loadModel(url) against grok-ts serve', FIXTURES, () => {
  let demo: LanguageModel;
  let server: GrokServer;
  let url: RemoteUrl;
  let remote: RemoteModel;

  before(async () => {
    if (!HAVE_FIXTURES) return;
    demo = await loadModel(undefined, { backend: 'js' });
    server = createServer(demo, { apiKey: API_KEY });
    const s = await server.listen(0, '127.0.0.1');
    url = `${s.url}/v1` as RemoteUrl;
    remote = await loadModel(url, { apiKey: API_KEY, model: 'fortune-demo' });
  });
  after(async () => {
    if (!HAVE_FIXTURES) return;
    await remote.close();
    await server.close(1000);
    await demo.close();
  });

  it('is the same TextModel surface: both satisfy the interface and give the same greedy text and usage', async () => {
    assert.ok(remote instanceof RemoteModel);
    assert.equal(remote.modelId, 'fortune-demo');
    const models: TextModel[] = [demo, remote];
    const [local, far] = await Promise.all(models.map((m) => m.generate(PROMPT, { temperature: 0, maxTokens: 8 })));
    assert.equal(far!.text, local!.text);
    assert.equal(far!.finishReason, local!.finishReason);
    assert.equal(far!.stopReason, 'max_tokens');
    assert.deepEqual(far!.usage, local!.usage);
    assert.deepEqual(far!.ids, [], 'the OpenAI API returns text, not ids');
  });

  it('streams deltas that add up to the result; token-id prompts work too', async () => {
    const s = remote.stream(PROMPT, { temperature: 0, maxTokens: 10 });
    const parts: string[] = [];
    for await (const c of s) parts.push(c.text);
    const r = await s.result;
    assert.ok(parts.length > 1, 'more than one chunk');
    assert.equal(parts.join(''), r.text);
    assert.equal(r.text, (await demo.generate(PROMPT, { temperature: 0, maxTokens: 10 })).text);
    const ids = demo.tokenizer.encode(PROMPT);
    assert.equal((await remote.generate(ids, { temperature: 0, maxTokens: 5 })).text, (await demo.generate(ids, { temperature: 0, maxTokens: 5 })).text);
  });

  it('stop strings end the text before the stop, as locally', async () => {
    const full = await demo.generate(PROMPT, { temperature: 0, maxTokens: 12 });
    const stop = full.text.trim().split(/\s+/)[1]!;
    const local = await demo.generate(PROMPT, { temperature: 0, maxTokens: 12, stop: [stop] });
    const far = await remote.generate(PROMPT, { temperature: 0, maxTokens: 12, stop: [stop] });
    assert.equal(local.stopReason, 'stop_string');
    assert.equal(far.text, local.text);
    assert.equal(far.finishReason, 'stop');
    assert.ok(!far.text.includes(stop));
  });

  it('a seed repeats a sampled completion, and the seed used is reported', async () => {
    const a = await remote.generate(PROMPT, { temperature: 0.9, maxTokens: 8, seed: 7 });
    const b = await remote.generate(PROMPT, { temperature: 0.9, maxTokens: 8, seed: 7 });
    assert.equal(a.text, b.text);
    assert.equal(a.seed, 7);
    assert.ok(Number.isSafeInteger((await remote.generate(PROMPT, { temperature: 0.9, maxTokens: 2 })).seed));
  });

  it('an AbortSignal cancels the request mid-stream with AbortError; abort() cancels everything in flight', async () => {
    const controller = new AbortController();
    const s = remote.stream(PROMPT, { temperature: 0, maxTokens: 100, ignoreEos: true, signal: controller.signal });
    let n = 0;
    await assert.rejects(
      (async () => {
        for await (const _ of s) if (++n === 2) controller.abort();
      })(),
      AbortError,
    );
    await assert.rejects(s.result, AbortError);
    const pre = new AbortController();
    pre.abort();
    await assert.rejects(remote.generate(PROMPT, { signal: pre.signal }), AbortError);
    const pending = remote.generate(PROMPT, { temperature: 0, maxTokens: 100, ignoreEos: true });
    setTimeout(() => remote.abort(), 20);
    await assert.rejects(pending, AbortError);
    assert.equal((await remote.generate(PROMPT, { temperature: 0, maxTokens: 2 })).usage.completionTokens, 2, 'usable after abort()');
    // leaving a stream early ends its request; its result says so
    const early = remote.stream(PROMPT, { temperature: 0, maxTokens: 100, ignoreEos: true });
    for await (const _ of early) break;
    await assert.rejects(early.result, /closed before generation finished/);
  });

  it('errors are the library typed errors', async () => {
    await assert.rejects(loadModel(url, { apiKey: 'wrong' }), (e: unknown) => e instanceof RemoteError && e.status === 401 && e.code === 'authentication_error');
    await assert.rejects(loadModel(url, { apiKey: API_KEY, model: 'nope' }), (e: unknown) => e instanceof UsageError && e.param === 'model' && /fortune-demo/.test(e.message));
    await assert.rejects(remote.generate('word '.repeat(400), { maxTokens: 4 }), ContextLengthError);
    await assert.rejects(remote.generate(PROMPT, { temperature: -1 }), (e: unknown) => e instanceof UsageError && e.param === 'temperature');
    assert.throws(() => remote.stream(PROMPT, { logprobs: 2 }), UnsupportedError);
    assert.throws(() => remote.stream('', {}), UsageError);
    await assert.rejects(loadModel('http://127.0.0.1:1/v1'), (e: unknown) => e instanceof RemoteError && e.status === 0 && e.code === 'connection_error');
    await assert.rejects(loadModel(url.replace(/\/v1$/, '') as RemoteUrl, { apiKey: API_KEY }), (e: unknown) => e instanceof RemoteError && e.status === 404 && /try .*\/v1/.test(e.message));
  });

  it("the tokenizer is the server's /tokenize and /detokenize, matching the local one", async () => {
    assert.ok(remote.tokenizer);
    const text = 'Fortune favours the  bold.\n';
    const ids = await remote.tokenizer.encode(text);
    assert.deepEqual(ids, demo.tokenizer.encode(text));
    assert.equal(await remote.tokenizer.decode(ids), demo.tokenizer.decode(ids));
    assert.deepEqual(await remote.tokenize(text), ids);
  });

  it('chat keeps the history between turns, rendered by the server like the local transcript', async () => {
    const chat = remote.chat({ system: 'You tell fortunes.' });
    const first = await collect(chat.send('What does the future hold?', { temperature: 0, maxTokens: 6 }));
    const ref = await demo.generate(plainChatTemplate([{ role: 'system', content: 'You tell fortunes.' }, { role: 'user', content: 'What does the future hold?' }]), { temperature: 0, maxTokens: 6, stop: CHAT_STOP });
    assert.equal(first, ref.text.trim());
    await collect(chat.send('And then?', { temperature: 0, maxTokens: 4 }));
    assert.deepEqual(chat.history.map((m) => m.role), ['system', 'user', 'assistant', 'user', 'assistant']);
    chat.reset();
    assert.deepEqual(chat.history.map((m) => m.role), ['system']);
  });
});

async function collect(s: AsyncIterable<{ text: string }>): Promise<string> {
  let t = '';
  for await (const c of s) t += c.text;
  return t;
}

/** A stand-in server: answers each request from a script of responses, recording what came. */
function scripted(responses: Array<(req: http.IncomingMessage, res: http.ServerResponse) => void>) {
  const seen: { url: string; at: number; auth: string | undefined }[] = [];
  let i = 0;
  const server = http.createServer((req, res) => {
    seen.push({ url: req.url ?? '', at: Date.now(), auth: req.headers.authorization });
    req.resume();
    req.on('end', () => (responses[Math.min(i++, responses.length - 1)] ?? ((_q, r) => r.end()))(req, res));
  });
  return {
    seen,
    async start(): Promise<RemoteUrl> {
      await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
      return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
    },
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}

const models = (_q: http.IncomingMessage, r: http.ServerResponse) => r.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
const notFound = (_q: http.IncomingMessage, r: http.ServerResponse) => r.writeHead(404, { 'Content-Type': 'application/json' }).end(JSON.stringify({ error: { message: 'no route', type: 'not_found_error' } }));
const refuse = (status: 429 | 503, retryAfter?: string) => (_q: http.IncomingMessage, r: http.ServerResponse) =>
  r.writeHead(status, { 'Content-Type': 'application/json', ...(retryAfter !== undefined ? { 'Retry-After': retryAfter } : {}) }).end(JSON.stringify({ error: { message: 'busy', type: 'rate_limit_error', code: 'queue_full' } }));
const completion = (text: string) => (_q: http.IncomingMessage, r: http.ServerResponse) => {
  r.writeHead(200, { 'Content-Type': 'text/event-stream' });
  r.write(`data: ${JSON.stringify({ choices: [{ index: 0, text, finish_reason: null }] })}\n\n`);
  r.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: '', finish_reason: 'stop', stop_reason: '\n' }] })}\n\n`);
  r.write(`data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 } })}\n\n`);
  r.end('data: [DONE]\n\n');
};

describe('a stream holds the caller\'s signal only while it is iterated', () => {
  it('no abort listener before the first chunk or after the last; a closed model still refuses stream() at once', async () => {
    const s = scripted([models, notFound, notFound, completion('hi')]);
    const url = await s.start();
    try {
      const m = await loadModel(url);
      const requests = s.seen.length;
      const controller = new AbortController();
      const listeners = () => getEventListeners(controller.signal, 'abort').length;
      const never = m.stream('x', { signal: controller.signal });
      const stream = m.stream('x', { signal: controller.signal });
      assert.equal(listeners(), 0, 'created, not iterated: nothing on the signal');
      assert.equal(s.seen.length, requests, 'and no request sent');
      const during: number[] = [];
      for await (const c of stream) {
        assert.equal(c.text, 'hi');
        during.push(listeners());
      }
      assert.deepEqual(during, [1], 'one listener while the request runs');
      assert.equal((await stream.result).text, 'hi');
      assert.equal(listeners(), 0, 'removed when the stream ends');
      await m.close();
      assert.equal(listeners(), 0, 'the stream never iterated left nothing behind either');
      assert.throws(() => m.stream('x'), (e: unknown) => e instanceof UsageError && /closed/.test(e.message));
      // Created before close(), iterated after it: aborted, as a stream in flight is, without a request.
      await assert.rejects(collect(never), AbortError);
      await assert.rejects(never.result, AbortError);
      assert.equal(s.seen.length, requests + 1);
    } finally {
      await s.close();
    }
  });
});

describe('retries on 429/503', () => {
  it('honours Retry-After (seconds), then succeeds; the key goes with every attempt', async () => {
    // /v1/models, /tokenize (llama body), /tokenize (vLLM body), then the completion: 429 with Retry-After 1, then the stream
    const s = scripted([models, notFound, notFound, refuse(429, '1'), completion('hi')]);
    const url = await s.start();
    try {
      const delays: number[] = [];
      const m = await loadModel(url, { apiKey: 'k', onRetry: (i) => delays.push(i.delayMs) });
      assert.equal(m.tokenizer, undefined, 'no /tokenize: no tokenizer');
      await assert.rejects(m.tokenize('x'), (e: unknown) => e instanceof UnsupportedError && /exposes no \/tokenize/.test(e.message));
      const r = await m.generate('x');
      assert.equal(r.text, 'hi');
      assert.equal(r.stopReason, 'stop_string');
      assert.equal(r.stopString, '\n');
      assert.deepEqual(r.usage, { promptTokens: 3, completionTokens: 2, totalTokens: 5 });
      assert.deepEqual(delays, [1000]);
      const [refused, retried] = s.seen.slice(-2);
      assert.ok(retried!.at - refused!.at >= 950, `waited ${retried!.at - refused!.at} ms for Retry-After: 1`);
      assert.ok(s.seen.every((x) => x.auth === 'Bearer k'));
      await m.close();
    } finally {
      await s.close();
    }
  });

  it('backs off exponentially without Retry-After, and gives the typed error when retries run out', async () => {
    const s = scripted([models, notFound, notFound, refuse(503), refuse(503), refuse(429, '0'), refuse(429, '0')]);
    const url = await s.start();
    try {
      const delays: number[] = [];
      const m = await loadModel(url, { retry: { maxRetries: 3, baseDelayMs: 20 }, onRetry: (i) => delays.push(i.delayMs) });
      await assert.rejects(m.generate('x'), (e: unknown) => e instanceof RemoteError && e.status === 429 && e.retryAfter === 0 && e.apiCode === 'queue_full');
      assert.deepEqual(delays, [20, 40, 0]);
      await m.close();
    } finally {
      await s.close();
    }
  });

  it('an abort during the wait ends it at once', async () => {
    const s = scripted([models, notFound, notFound, refuse(503, '30')]);
    const url = await s.start();
    try {
      const m = await loadModel(url);
      const controller = new AbortController();
      const t0 = Date.now();
      setTimeout(() => controller.abort(), 50);
      await assert.rejects(m.generate('x', { signal: controller.signal }), AbortError);
      assert.ok(Date.now() - t0 < 5000);
      await m.close();
    } finally {
      await s.close();
    }
  });

  it('Retry-After: seconds or an HTTP date', () => {
    assert.equal(parseRetryAfter('3'), 3);
    assert.equal(parseRetryAfter(new Date(Date.UTC(2030, 0, 1, 0, 0, 10)).toUTCString(), Date.UTC(2030, 0, 1)), 10);
    assert.equal(parseRetryAfter('soon'), undefined);
    assert.equal(parseRetryAfter(null), undefined);
  });
});
