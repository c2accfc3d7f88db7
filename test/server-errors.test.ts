/**
 * Every refusal of the HTTP server, over raw HTTP on loopback: the OpenAI error shape
 * `{"error": {"message", "type", "param", "code"}}` with the right status, and never a hang.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { after, before } from 'node:test';
import { FormatError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { createServer, loadChatTemplateFile, parseChatTemplate, type GrokServer } from '../src/server/index.js';
import { fixtureTest as test, HAVE_FIXTURES, shared } from './shared.js';

const KEY = 'sk-local-test';
const AUTH = { Authorization: `Bearer ${KEY}` };
let lm: LanguageModel;
let server: GrokServer;
let base: URL;
const agent = new http.Agent({ keepAlive: false });

before(async () => {
  if (!HAVE_FIXTURES) return;
  lm = await loadModel(shared('fixtures', 'tiny'), { backend: 'js' });
  server = createServer(lm, { modelId: 'tiny', apiKey: KEY, maxBodyBytes: 4096, maxBatch: 1, maxQueue: 2 });
  base = new URL((await server.listen(0)).url);
});
after(async () => {
  if (!HAVE_FIXTURES) return;
  await server.close(1000);
  agent.destroy();
  await lm.close();
});

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: { error?: { message: string; type: string; param: string | null; code: string | null } } & Record<string, unknown>;
}

/** One request; `body` as given (a string is sent verbatim). Resolves with the whole reply. */
function request(method: string, path: string, body?: unknown, headers: Record<string, string> = AUTH, at = base): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = http.request({ host: at.hostname, port: at.port, method, path, agent, headers: { ...headers, ...(data !== undefined ? { 'Content-Type': 'application/json' } : {}) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json = {};
        try {
          json = JSON.parse(text);
        } catch {
          // event streams and empty bodies stay text
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.setTimeout(20_000, () => req.destroy(new Error(`${method} ${path}: no reply within 20 s`)));
    req.end(data);
  });
}

/** Resolves once `probe()` holds, checked every millisecond or so; fails after `limitMs`. */
async function waitFor(probe: () => boolean, what: string, limitMs = 30_000): Promise<void> {
  const t0 = performance.now();
  while (!probe()) {
    if (performance.now() - t0 > limitMs) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

function assertError(r: Reply, status: number, want: { type?: string; param?: string | null; code?: string | null } = {}): void {
  assert.equal(r.status, status, r.text);
  assert.match(String(r.headers['content-type']), /application\/json/);
  const e = r.json.error!;
  assert.ok(e, `an error body: ${r.text}`);
  assert.deepEqual(Object.keys(e).sort(), ['code', 'message', 'param', 'type']);
  assert.equal(typeof e.message, 'string');
  assert.ok(e.message.length > 0);
  if (want.type !== undefined) assert.equal(e.type, want.type);
  if (want.param !== undefined) assert.equal(e.param, want.param);
  if (want.code !== undefined) assert.equal(e.code, want.code);
}

const completion = (extra: Record<string, unknown> = {}) => ({ model: 'tiny', prompt: [5, 6, 7], max_tokens: 2, ...extra });
const chat = (extra: Record<string, unknown> = {}) => ({ model: 'tiny', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });

test('malformed JSON and non-object bodies: 400', async () => {
  assertError(await request('POST', '/v1/completions', '{"model": "tiny", '), 400, { type: 'invalid_request_error', code: 'invalid_json' });
  assertError(await request('POST', '/v1/completions', ''), 400, { code: 'invalid_json' });
  assertError(await request('POST', '/v1/completions', '[1, 2]'), 400, { code: 'invalid_type' });
  assertError(await request('POST', '/v1/chat/completions', 'null'), 400, { code: 'invalid_type' });
});

test('unknown fields: 400 naming the field', async () => {
  assertError(await request('POST', '/v1/completions', completion({ frobnicate: true })), 400, { param: 'frobnicate', code: 'unknown_parameter' });
  assertError(await request('POST', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: 'hi', mood: 'sunny' }] })), 400, { param: 'messages[0].mood' });
  assertError(await request('POST', '/v1/completions', completion({ stream: true, stream_options: { include_usage: true, extra: 1 } })), 400, { param: 'stream_options.extra' });
  // Known OpenAI features this server does not implement are refused by name.
  assertError(await request('POST', '/v1/chat/completions', chat({ tools: [] })), 400, { param: 'tools', code: 'unsupported_parameter' });
  assertError(await request('POST', '/v1/completions', completion({ echo: true })), 400, { param: 'echo' });
  assertError(await request('POST', '/v1/chat/completions', chat({ messages: [{ role: 'tool', content: 'x' }] })), 400, { param: 'messages[0].role' });
});

test('mistyped fields: 400 naming the field', async () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['/v1/completions', completion({ temperature: 'hot' }), 'temperature'],
    ['/v1/completions', completion({ max_tokens: 2.5 }), 'max_tokens'],
    ['/v1/completions', completion({ n: '2' }), 'n'],
    ['/v1/completions', completion({ stream: 'yes' }), 'stream'],
    ['/v1/completions', completion({ stop: [1] }), 'stop'],
    ['/v1/completions', completion({ prompt: { text: 'x' } }), 'prompt'],
    ['/v1/completions', completion({ prompt: [5, 'x'] }), 'prompt'],
    ['/v1/completions', completion({ model: 7 }), 'model'],
    ['/v1/completions', completion({ logit_bias: { 5: 'up' } }), 'logit_bias.5'],
    ['/v1/chat/completions', chat({ messages: 'hi' }), 'messages'],
    ['/v1/chat/completions', chat({ messages: [{ role: 'user', content: 5 }] }), 'messages[0].content'],
    ['/v1/chat/completions', chat({ logprobs: 1 }), 'logprobs'],
  ];
  for (const [path, body, param] of cases) assertError(await request('POST', path, body), 400, { param, type: 'invalid_request_error' });
});

test('missing and out-of-range values: 400 naming the field', async () => {
  const cases: [string, Record<string, unknown>, string][] = [
    ['/v1/completions', { prompt: [5] }, 'model'],
    ['/v1/completions', { model: 'tiny' }, 'prompt'],
    ['/v1/chat/completions', { model: 'tiny' }, 'messages'],
    ['/v1/chat/completions', chat({ messages: [] }), 'messages'],
    ['/v1/completions', completion({ temperature: 2.5 }), 'temperature'],
    ['/v1/completions', completion({ temperature: -1 }), 'temperature'],
    ['/v1/completions', completion({ top_p: 0 }), 'top_p'],
    ['/v1/completions', completion({ top_p: 1.5 }), 'top_p'],
    ['/v1/completions', completion({ top_k: -2 }), 'top_k'],
    ['/v1/completions', completion({ min_p: 2 }), 'min_p'],
    ['/v1/completions', completion({ presence_penalty: 3 }), 'presence_penalty'],
    ['/v1/completions', completion({ frequency_penalty: -3 }), 'frequency_penalty'],
    ['/v1/completions', completion({ max_tokens: 0 }), 'max_tokens'],
    ['/v1/completions', completion({ n: 0 }), 'n'],
    ['/v1/completions', completion({ n: 17 }), 'n'],
    ['/v1/completions', completion({ prompt: [[5], [6]], n: 2 }), 'n'], // 4 sequences: more than the queue of 2 could ever hold
    ['/v1/completions', completion({ seed: -1 }), 'seed'],
    ['/v1/completions', completion({ logprobs: 21 }), 'logprobs'],
    ['/v1/completions', completion({ stop: ['a', 'b', 'c', 'd', 'e'] }), 'stop'],
    ['/v1/completions', completion({ stop: '' }), 'stop'],
    ['/v1/completions', completion({ logit_bias: { 99999: 1 } }), 'logit_bias'],
    ['/v1/completions', completion({ prompt: [5, 4096] }), 'prompt'],
    ['/v1/completions', completion({ stream_options: { include_usage: true } }), 'stream_options'],
    ['/v1/chat/completions', chat({ top_logprobs: 2 }), 'top_logprobs'],
    ['/v1/chat/completions', chat({ logprobs: true, top_logprobs: 21 }), 'top_logprobs'],
    ['/v1/chat/completions', chat({ max_tokens: 2, max_completion_tokens: 3 }), 'max_completion_tokens'],
    // The server's tokenizer gives this text ids beyond the tiny model's 1024-token vocabulary.
    ['/v1/chat/completions', chat(), 'messages'],
  ];
  for (const [path, body, param] of cases) assertError(await request('POST', path, body), 400, { param, type: 'invalid_request_error' });
});

test('logit_bias keys: only the decimal digits of a token id', async () => {
  for (const key of [' 5', '5 ', '0x10', '1e1', '05', '5.0', '-0', '+5', '', 'Infinity', '٥']) {
    const r = await request('POST', '/v1/completions', completion({ logit_bias: { [key]: 1 } }));
    assertError(r, 400, { param: 'logit_bias', code: 'invalid_value' });
    assert.match(r.json.error!.message, /is not a token id/, JSON.stringify(key));
  }
  for (const key of ['0', '5', '1023']) assert.equal((await request('POST', '/v1/completions', completion({ logit_bias: { [key]: -100 } }))).status, 200, key);
});

test('prompts over the context: 400 context_length_exceeded, without tokenising a huge text', async () => {
  const ctx = lm.config.sequenceLen;
  assertError(await request('POST', '/v1/completions', completion({ prompt: Array.from({ length: ctx }, () => 5) })), 400, { param: 'prompt', code: 'context_length_exceeded' });
  assertError(await request('POST', '/v1/completions', completion({ prompt: [5, 6, 7], max_tokens: ctx })), 400, { param: 'prompt', code: 'context_length_exceeded' });
  const long = 'word '.repeat(700); // 3500 characters: more than 128 tokens of at most 16 characters each
  const r = await request('POST', '/v1/chat/completions', chat({ messages: [{ role: 'user', content: long }] }));
  assertError(r, 400, { param: 'messages', code: 'context_length_exceeded' });
  assert.match(r.json.error!.message, /characters/, 'refused from its length, before tokenising');
});

test('a body over the size limit: 413, whether its length is declared or streamed', async () => {
  const big = JSON.stringify(completion({ user: 'x'.repeat(5000) }));
  assertError(await request('POST', '/v1/completions', big), 413, { code: 'request_too_large' });
  const chunked = await new Promise<Reply>((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method: 'POST', path: '/v1/completions', agent, headers: { ...AUTH, 'Transfer-Encoding': 'chunked' } }, (res) => {
      let text = '';
      res.on('data', (c: Buffer) => (text += c.toString()));
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, text, json: JSON.parse(text) }));
    });
    req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'EPIPE' || e.code === 'ECONNRESET' ? undefined : reject(e)));
    for (let i = 0; i < 10; i++) req.write('x'.repeat(1000));
    req.end();
  });
  assertError(chunked, 413, { code: 'request_too_large' });
});

test('unknown routes: 404; wrong methods: 405 with Allow', async () => {
  assertError(await request('GET', '/v1/engines'), 404, { code: 'unknown_url' });
  assertError(await request('GET', '/v1'), 404, { code: 'unknown_url' });
  const r = await request('GET', '/v1/completions');
  assertError(r, 405, { code: 'method_not_allowed' });
  assert.equal(r.headers.allow, 'POST');
  assert.equal((await request('DELETE', '/v1/models')).headers.allow, 'GET');
});

test('an unknown model id: 404 model_not_found; requests cannot name files', async () => {
  assertError(await request('POST', '/v1/completions', completion({ model: 'grok-1' })), 404, { param: 'model', code: 'model_not_found' });
  assertError(await request('POST', '/v1/completions', completion({ model: shared('fixtures', 'tiny') })), 404, { code: 'model_not_found' });
  assertError(await request('GET', '/v1/models/..%2F..%2Fetc%2Fpasswd'), 404, { code: 'model_not_found' });
});

test('API key: 401 without it or with a wrong one, unknown routes and wrong methods too; /health stays open', async () => {
  assertError(await request('GET', '/v1/models', undefined, {}), 401, { type: 'authentication_error', code: 'invalid_api_key' });
  // Without the key, a client learns nothing about which routes exist.
  assertError(await request('GET', '/v1/engines', undefined, {}), 401, { code: 'invalid_api_key' });
  assertError(await request('GET', '/v1', undefined, {}), 401);
  // The chat page holds no secret: it loads without the key and asks for it.
  const page = await request('GET', '/', undefined, {});
  assert.equal(page.status, 200);
  assert.match(String(page.headers['content-type']), /^text\/html/);
  assertError(await request('DELETE', '/v1/models', undefined, {}), 401);
  assertError(await request('GET', '/v1/completions', undefined, {}), 401);
  assertError(await request('GET', '/v1/engines', undefined, { Authorization: 'Bearer wrong' }), 401);
  assertError(await request('POST', '/health', undefined, {}), 405, { code: 'method_not_allowed' });
  assertError(await request('GET', '/v1/models', undefined, { Authorization: 'Bearer sk-local-tesT' }), 401);
  assertError(await request('GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}x` }), 401);
  assertError(await request('POST', '/v1/completions', completion(), { Authorization: KEY }), 401);
  assert.equal((await request('GET', '/v1/models')).status, 200);
  const h = await request('GET', '/health', undefined, {});
  assert.equal(h.status, 200);
  assert.equal(h.json.status, 'ok');
});

test('a full queue answers 429 with Retry-After at once; the server recovers', async () => {
  // max batch 1, queue 2: one long stream runs, a request with n = 2 fills the queue.
  const ac = new AbortController();
  const running = new Promise<void>((resolve, reject) => {
    const req = http.request({ host: base.hostname, port: base.port, method: 'POST', path: '/v1/completions', agent, headers: AUTH, signal: ac.signal }, (res) => {
      res.once('data', () => resolve()); // it is generating: admitted into the batch
      res.on('error', () => {});
    });
    req.on('error', (e) => (e.name === 'AbortError' ? undefined : reject(e)));
    req.end(JSON.stringify(completion({ max_tokens: 120, ignore_eos: true, stream: true })));
  });
  await running;
  const queued = request('POST', '/v1/completions', completion({ n: 2, max_tokens: 2 }));
  for (let i = 0; (await request('GET', '/health')).json.queued !== 2; i++) {
    assert.ok(i < 1000, 'the n = 2 request never reached the queue');
    await new Promise((r) => setTimeout(r, 5));
  }
  const t0 = performance.now();
  const refused = await request('POST', '/v1/completions', completion());
  assertError(refused, 429, { type: 'rate_limit_error', code: 'queue_full' });
  assert.equal(refused.headers['retry-after'], '1');
  assert.ok(performance.now() - t0 < 5000);
  ac.abort(); // the long stream's client leaves: its slot frees, the queued request runs
  const later = await queued;
  assert.equal(later.status, 200, later.text);
  assert.equal((later.json.choices as unknown[]).length, 2);
  assert.equal((await request('POST', '/v1/completions', completion())).status, 200);
});

test('a request still queued after the queue timeout: 503 with Retry-After', async () => {
  const s = createServer(lm, { modelId: 'tiny', maxBatch: 1, queueTimeoutMs: 100 });
  const at = new URL((await s.listen(0)).url);
  try {
    const long = request('POST', '/v1/completions', completion({ max_tokens: 120, ignore_eos: true }), {}, at);
    await waitFor(() => s.scheduler.stats().active === 1, 'the long request to run');
    const r = await request('POST', '/v1/completions', completion(), {}, at);
    assertError(r, 503, { type: 'server_error' });
    assert.ok(Number(r.headers['retry-after']) >= 1);
    assert.equal((await long).status, 200);
  } finally {
    await s.close(1000);
  }
});

test('a request still running after the request timeout: 504, its sequence aborted', async () => {
  const s = createServer(lm, { modelId: 'tiny', requestTimeoutMs: 50 });
  const at = new URL((await s.listen(0)).url);
  try {
    const r = await request('POST', '/v1/completions', completion({ max_tokens: 120, ignore_eos: true }), {}, at);
    assertError(r, 504, { type: 'server_error', code: 'timeout' });
    assert.deepEqual([s.scheduler.stats().active, s.scheduler.stats().aborted], [0, 1]);
  } finally {
    await s.close(1000);
  }
});

test('shutdown: requests that finish within the grace period are answered; new connections are refused', async () => {
  const s = createServer(lm, { modelId: 'tiny' });
  const at = new URL((await s.listen(0)).url);
  const pending = request('POST', '/v1/completions', completion({ max_tokens: 40, ignore_eos: true }), {}, at);
  // Closing before the request has reached the server would reset its connection: wait until it runs.
  await waitFor(() => s.scheduler.stats().active + s.scheduler.stats().finished > 0, 'the request to reach the scheduler');
  await s.close(30_000);
  const r = await pending;
  assert.equal(r.status, 200, r.text);
  assert.equal((r.json.usage as { completion_tokens: number }).completion_tokens, 40);
  await assert.rejects(request('GET', '/health', undefined, {}, at), /ECONNREFUSED/);
});

test('shutdown: a stream still running when the grace period ends gets an error event, not [DONE]', async () => {
  const s = createServer(lm, { modelId: 'tiny' });
  const at = new URL((await s.listen(0)).url);
  let text = '';
  let firstData!: () => void;
  const started = new Promise<void>((r) => (firstData = r));
  const ended = new Promise<number>((resolve, reject) => {
    const req = http.request({ host: at.hostname, port: at.port, method: 'POST', path: '/v1/completions', agent }, (res) => {
      res.on('data', (c: Buffer) => {
        text += c.toString();
        firstData();
      });
      res.on('end', () => resolve(res.statusCode!));
    });
    req.on('error', reject);
    req.end(JSON.stringify(completion({ max_tokens: 120, ignore_eos: true, stream: true })));
  });
  await started;
  await s.close(0);
  assert.equal(await ended, 200);
  const events = text.split('\n\n').filter((e) => e !== '');
  assert.ok(events.length >= 2);
  const last = JSON.parse(events[events.length - 1]!.replace(/^data: /, '')) as { error: { code: string; type: string } };
  assert.equal(last.error.code, 'server_unavailable');
  assert.ok(!text.includes('[DONE]'));
  assert.equal(s.scheduler.stats().aborted, 1);
});

test('chat template files: a malformed one is a FormatError naming the file', () => {
  assert.throws(() => parseChatTemplate({ user: 'no placeholder', system: '{content}', assistant: '{content}', assistant_start: '' }, 't.json'), (e: unknown) => e instanceof FormatError && /t\.json/.test(e.message) && /\{content\}/.test(e.message));
  assert.throws(() => parseChatTemplate({ system: '{content}', user: '{content}', assistant: '{content}', assistant_start: 'A:', script: 'x' }, 't.json'), FormatError);
  assert.throws(() => parseChatTemplate({ system: '{content}', user: '{content}', assistant: '{content}', assistant_start: 'A:', stop: [''] }, 't.json'), FormatError);
  assert.throws(() => loadChatTemplateFile('/nonexistent/template.json'), (e: unknown) => e instanceof FormatError && /nonexistent/.test(e.message));
});
