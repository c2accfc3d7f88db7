/**
 * The llama-server surface of the HTTP server on the bundled demo model: /tokenize, /detokenize,
 * /props, native /completion (its fields map onto the same sampler as /v1/completions: same seed,
 * same text), /slots, /metrics read with a real Prometheus parser, CORS, aliases and request logs.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import parsePrometheus, { type ParsedFamily } from 'parse-prometheus-text-format';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { Logger } from '../src/server/request-log.js';
import { createServer, type GrokServer } from '../src/server/index.js';

const KEY = 'sk-llama-test';
const AUTH = { Authorization: `Bearer ${KEY}` };
const PAGE_ORIGIN = 'http://page.example:3000';
let lm: LanguageModel;
let server: GrokServer;
let base: string;
const logLines: string[] = [];

before(async () => {
  lm = await loadModel(undefined, { backend: 'js' });
  server = createServer(lm, {
    apiKey: KEY,
    aliases: ['grok-1', 'llama'],
    corsOrigins: [PAGE_ORIGIN],
    requestLog: new Logger({ format: 'json', write: (l) => logLines.push(l) }),
  });
  base = (await server.listen(0)).url;
});
after(async () => {
  await server.close(1000);
  await lm.close();
});

async function post(path: string, body: unknown, headers: Record<string, string> = AUTH): Promise<{ status: number; json: any; headers: Headers }> {
  const res = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body) });
  const text = await res.text();
  return { status: res.status, json: text ? JSON.parse(text) : undefined, headers: res.headers };
}

async function get(path: string, headers: Record<string, string> = AUTH): Promise<Response> {
  return fetch(base + path, { headers });
}

/** The `data:` payloads of an event stream, parsed. */
function events(text: string): any[] {
  return text
    .split('\n\n')
    .filter((e) => e.startsWith('data: '))
    .map((e) => JSON.parse(e.slice(6)));
}

test('/tokenize and /detokenize: llama-server shapes, with_pieces, round trip', async () => {
  const text = 'Hello world, naïve café';
  const t = await post('/tokenize', { content: text });
  assert.equal(t.status, 200);
  assert.deepEqual(t.json.tokens, lm.encodePrompt(text));
  const withPieces = await post('/tokenize', { content: text, with_pieces: true });
  assert.deepEqual(withPieces.json.tokens.map((x: { id: number }) => x.id), t.json.tokens);
  assert.equal(withPieces.json.tokens.map((x: { piece: string | number[] }) => (typeof x.piece === 'string' ? x.piece : '')).join('').trim(), text);
  const bos = await post('/tokenize', { content: 'Hi', add_special: true });
  assert.equal(bos.json.tokens[0], lm.tokenizer.bosId);
  const d = await post('/detokenize', { tokens: t.json.tokens });
  assert.deepEqual(d.json, { content: text });
  const bad = await post('/detokenize', { tokens: [lm.tokenizer.vocabSize] });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.param, 'tokens');
});

test('/props: model, aliases, context, chat template, /completion defaults', async () => {
  const p = await (await get('/props')).json();
  assert.equal(p.model, 'fortune-demo');
  assert.deepEqual(p.model_alias, ['grok-1', 'llama']);
  assert.equal(p.n_ctx, lm.config.sequenceLen);
  assert.match(p.chat_template, /User: \{user\}/);
  assert.equal(p.default_generation_settings.params.temperature, 0.8);
  assert.equal(p.default_generation_settings.params.top_k, 40);
});

test('native /completion: same sampling as /v1/completions under llama-server field names', async () => {
  const prompt = 'The meaning of life is';
  const openai = await post('/v1/completions', { model: 'fortune-demo', prompt, max_tokens: 12, temperature: 0.9, top_k: 30, top_p: 0.9, min_p: 0.02, repetition_penalty: 1.3, seed: 5 });
  assert.equal(openai.status, 200, JSON.stringify(openai.json));
  const native = await post('/completion', { prompt, n_predict: 12, temperature: 0.9, top_k: 30, top_p: 0.9, min_p: 0.02, repeat_penalty: 1.3, seed: 5, cache_prompt: true, mirostat: 0 });
  assert.equal(native.status, 200, JSON.stringify(native.json));
  const r = native.json;
  assert.equal(r.content, openai.json.choices[0].text);
  assert.equal(r.stop, true);
  assert.equal(r.tokens_predicted, openai.json.usage.completion_tokens);
  assert.equal(r.tokens_evaluated, openai.json.usage.prompt_tokens);
  assert.equal(r.stop_type, openai.json.choices[0].finish_reason === 'length' ? 'limit' : 'eos');
  assert.equal(r.generation_settings.seed, 5);
  assert.equal(r.model, 'fortune-demo');
  assert.equal(r.timings.predicted_n, r.tokens_predicted);
  assert.ok(r.timings.predicted_ms > 0 && r.timings.predicted_per_second > 0);
  // Token ids as the prompt, and back as the output with return_tokens.
  const ids = lm.encodePrompt(prompt);
  const byIds = await post('/completion', { prompt: ids, n_predict: 12, temperature: 0.9, top_k: 30, top_p: 0.9, min_p: 0.02, repeat_penalty: 1.3, seed: 5, return_tokens: true });
  assert.equal(byIds.json.content, r.content);
  // The ids continue the prompt: decoding prompt + output gives prompt text + content.
  assert.equal(lm.tokenizer.decode([...ids, ...byIds.json.tokens]), lm.tokenizer.decode(ids) + r.content);
  assert.equal(byIds.json.tokens.length, r.tokens_predicted);
});

test('native /completion streams {content, stop:false} events and a last stop:true one, no [DONE]', async () => {
  const body = { prompt: 'Once upon a time', n_predict: 10, seed: 3, stream: true };
  const res = await fetch(base + '/completion', { method: 'POST', headers: { 'Content-Type': 'application/json', ...AUTH }, body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type')!, /^text\/event-stream/);
  const text = await res.text();
  assert.ok(!text.includes('[DONE]'));
  const evs = events(text);
  const last = evs.at(-1);
  assert.equal(last.stop, true);
  assert.ok(evs.slice(0, -1).every((e) => e.stop === false && typeof e.content === 'string'));
  const whole = await post('/completion', { ...body, stream: false });
  assert.equal(evs.map((e) => e.content).join(''), whole.json.content);
  assert.equal(last.tokens_predicted, whole.json.tokens_predicted);
});

test('native /completion refuses what it cannot honour, by name', async () => {
  const mirostat = await post('/completion', { prompt: 'a', mirostat: 2 });
  assert.equal(mirostat.status, 400);
  assert.equal(mirostat.json.error.param, 'mirostat');
  assert.equal(mirostat.json.error.code, 'unsupported_parameter');
  const unknown = await post('/completion', { prompt: 'a', no_such_field: 1 });
  assert.equal(unknown.status, 400);
  assert.equal(unknown.json.error.param, 'no_such_field');
  const several = await post('/completion', { prompt: ['a', ['b']] });
  assert.equal(several.status, 400);
  const noKey = await post('/completion', { prompt: 'a' }, {});
  assert.equal(noKey.status, 401);
});

test('aliases: listed by /v1/models, accepted as model and echoed back', async () => {
  const models = await (await get('/v1/models')).json();
  assert.deepEqual(models.data.map((m: { id: string }) => m.id), ['fortune-demo', 'grok-1', 'llama']);
  assert.equal((await get('/v1/models/llama')).status, 200);
  const r = await post('/v1/completions', { model: 'grok-1', prompt: 'Hi', max_tokens: 2, seed: 1 });
  assert.equal(r.status, 200);
  assert.equal(r.json.model, 'grok-1');
  assert.equal((await post('/v1/completions', { model: 'gpt-4', prompt: 'Hi', max_tokens: 2 })).json.error.code, 'model_not_found');
});

test('CORS: an allowed origin gets its preflight answered and the header on answers; others get neither', async () => {
  const preflight = await fetch(base + '/v1/chat/completions', {
    method: 'OPTIONS',
    headers: { Origin: PAGE_ORIGIN, 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'authorization, content-type' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), PAGE_ORIGIN);
  assert.match(preflight.headers.get('access-control-allow-methods')!, /POST/);
  assert.equal(preflight.headers.get('access-control-allow-headers'), 'authorization, content-type');
  const actual = await get('/v1/models', { ...AUTH, Origin: PAGE_ORIGIN });
  assert.equal(actual.status, 200);
  assert.equal(actual.headers.get('access-control-allow-origin'), PAGE_ORIGIN);
  // The key is still needed for the request itself, and the browser may read the 401.
  const noKey = await get('/v1/models', { Origin: PAGE_ORIGIN });
  assert.equal(noKey.status, 401);
  assert.equal(noKey.headers.get('access-control-allow-origin'), PAGE_ORIGIN);
  const other = await fetch(base + '/v1/models', { method: 'OPTIONS', headers: { Origin: 'http://evil.example', 'Access-Control-Request-Method': 'GET' } });
  assert.equal(other.headers.get('access-control-allow-origin'), null);
  assert.equal(other.status, 401);
});

test('CORS is off by default: no header, and a preflight is not answered', async () => {
  const plain = createServer(lm, { webui: false });
  const url = (await plain.listen(0)).url;
  try {
    const pre = await fetch(url + '/v1/models', { method: 'OPTIONS', headers: { Origin: PAGE_ORIGIN, 'Access-Control-Request-Method': 'GET' } });
    assert.equal(pre.status, 405);
    assert.equal(pre.headers.get('access-control-allow-origin'), null);
    // --no-webui: nothing at /.
    assert.equal((await fetch(url + '/')).status, 404);
  } finally {
    await plain.close(1000);
  }
});

function family(families: ParsedFamily[], name: string): ParsedFamily {
  const f = families.find((x) => x.name === name);
  assert.ok(f, `metric ${name} is missing`);
  return f;
}

function value(families: ParsedFamily[], name: string, labels?: Record<string, string>): number {
  const f = family(families, name);
  const m = f.metrics.find((s) => !labels || Object.entries(labels).every(([k, v]) => s.labels?.[k] === v));
  assert.ok(m, `${name}${JSON.stringify(labels)} has no sample`);
  return Number(m.value);
}

test('/metrics parses as Prometheus text; counters follow requests and tokens; /slots empties', async () => {
  const scrape = async () => {
    const res = await get('/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type')!, /^text\/plain; version=0\.0\.4/);
    return parsePrometheus(await res.text());
  };
  const before = await scrape();
  const r = await post('/v1/completions', { model: 'fortune-demo', prompt: 'The sea', max_tokens: 5, seed: 2 });
  assert.equal(r.status, 200);
  await post('/v1/completions', { model: 'nope', prompt: 'x' });
  const now = await scrape();
  assert.equal(family(now, 'grokts_requests_total').type, 'COUNTER');
  assert.equal(family(now, 'grokts_kv_cache_tokens').type, 'GAUGE');
  assert.equal(value(now, 'grokts_tokens_predicted_total') - value(before, 'grokts_tokens_predicted_total'), r.json.usage.completion_tokens);
  assert.equal(value(now, 'grokts_prompt_tokens_total') - value(before, 'grokts_prompt_tokens_total'), r.json.usage.prompt_tokens);
  assert.ok(value(now, 'grokts_requests_total', { status: '404' }) >= 1);
  assert.ok(value(now, 'grokts_requests_total', { status: '200' }) > value(before, 'grokts_requests_total', { status: '200' }));
  assert.ok(value(now, 'grokts_resident_memory_bytes') > 1e6);
  assert.ok(value(now, 'grokts_resident_memory_peak_bytes') >= value(now, 'grokts_resident_memory_bytes'));
  assert.ok(value(now, 'grokts_predicted_tokens_per_second') > 0);
  assert.equal(value(now, 'grokts_sequences_active'), 0);
  assert.equal(value(now, 'grokts_kv_cache_tokens'), 0);
  assert.deepEqual(await (await get('/slots')).json(), []);
});

test('/slots lists a running sequence with its counts, and frees it when its client leaves', async () => {
  const controller = new AbortController();
  const res = await fetch(base + '/completion', { method: 'POST', headers: { 'Content-Type': 'application/json', ...AUTH }, body: JSON.stringify({ prompt: 'Long ago', n_predict: 100, ignore_eos: true, stream: true, seed: 1 }), signal: controller.signal });
  const reader = res.body!.getReader();
  await reader.read(); // the first event: the sequence is in the batch
  const slots = await (await get('/slots')).json();
  assert.equal(slots.length, 1);
  assert.equal(slots[0].endpoint, '/completion');
  assert.equal(slots[0].n_ctx, lm.config.sequenceLen);
  assert.ok(slots[0].n_prompt_tokens > 0);
  controller.abort();
  await reader.closed.catch(() => {});
  for (let i = 0; i < 100; i++) {
    if ((await (await get('/slots')).json()).length === 0) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  assert.deepEqual(await (await get('/slots')).json(), []);
  const health = await (await get('/health')).json();
  assert.ok(health.aborted >= 1);
});

test('request logs: one JSON line per request with method, path, status, tokens, duration, client', async () => {
  logLines.length = 0;
  const r = await post('/v1/completions', { model: 'fortune-demo', prompt: 'Hello', max_tokens: 3, seed: 4 });
  await get('/v1/nothing');
  await new Promise((r) => setTimeout(r, 50));
  const lines = logLines.map((l) => JSON.parse(l));
  const ok = lines.find((l) => l.path === '/v1/completions');
  assert.ok(ok, logLines.join(''));
  assert.equal(ok.level, 'info');
  assert.equal(ok.method, 'POST');
  assert.equal(ok.status, 200);
  assert.equal(ok.prompt_tokens, r.json.usage.prompt_tokens);
  assert.equal(ok.completion_tokens, r.json.usage.completion_tokens);
  assert.ok(ok.duration_ms > 0);
  assert.equal(ok.client, '127.0.0.1');
  assert.match(ok.time, /^\d{4}-\d\d-\d\dT/);
  assert.ok(lines.some((l) => l.path === '/v1/nothing' && l.status === 404));
});

test('request logs: text format, and --log-level warn keeps only 5xx', () => {
  const out: string[] = [];
  const now = () => new Date('2026-01-02T03:04:05.000Z');
  const text = new Logger({ write: (l) => out.push(l), now });
  text.request({ method: 'GET', path: '/health', status: 200, promptTokens: 0, completionTokens: 0, durationMs: 1.26, client: '::1' });
  text.request({ method: 'POST', path: '/v1/completions', status: 200, promptTokens: 4, completionTokens: 9, durationMs: 120, client: '10.0.0.2' });
  assert.deepEqual(out, ['2026-01-02T03:04:05.000Z info GET /health 200 1.3ms ::1\n', '2026-01-02T03:04:05.000Z info POST /v1/completions 200 tokens=4+9 120ms 10.0.0.2\n']);
  out.length = 0;
  const quiet = new Logger({ level: 'warn', write: (l) => out.push(l), now });
  quiet.request({ method: 'GET', path: '/health', status: 200, promptTokens: 0, completionTokens: 0, durationMs: 1, client: '::1' });
  quiet.request({ method: 'POST', path: '/v1/completions', status: 503, promptTokens: 0, completionTokens: 0, durationMs: 1, client: '::1' });
  assert.equal(out.length, 1);
  assert.match(out[0]!, / warn POST \/v1\/completions 503 /);
});

test('/v1/embeddings: LanguageModel.embed per input, as floats or base64, with usage', async () => {
  const inputs = ['The sea is calm tonight', 'Hello'];
  const r = await post('/v1/embeddings', { model: 'grok-1', input: inputs });
  assert.equal(r.status, 200, JSON.stringify(r.json));
  assert.equal(r.json.object, 'list');
  assert.equal(r.json.model, 'grok-1');
  assert.equal(r.json.data.length, 2);
  for (const [i, text] of inputs.entries()) {
    const d = r.json.data[i];
    assert.equal(d.index, i);
    assert.equal(d.object, 'embedding');
    assert.deepEqual(d.embedding, Array.from(await lm.embed(text)));
    assert.equal(d.embedding.length, lm.config.embSize);
    assert.ok(Math.abs(Math.hypot(...d.embedding) - 1) < 1e-5, 'L2-normalised');
  }
  assert.equal(r.json.usage.prompt_tokens, inputs.reduce((n, t) => n + lm.encodePrompt(t).length, 0));
  const b64 = await post('/embeddings', { model: 'fortune-demo', input: lm.encodePrompt('Hello'), encoding_format: 'base64' });
  assert.equal(b64.status, 200);
  const buf = Buffer.from(b64.json.data[0].embedding, 'base64');
  assert.deepEqual(Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.byteLength / 4)), r.json.data[1].embedding);
  const empty = await post('/v1/embeddings', { model: 'fortune-demo', input: '' });
  assert.equal(empty.status, 400);
  assert.equal(empty.json.error.param, 'input');
  assert.equal((await post('/v1/embeddings', { model: 'text-embedding-3-small', input: 'x' })).json.error.code, 'model_not_found');
});
