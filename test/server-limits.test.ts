/**
 * The server's limits against misbehaving clients, over real sockets: a client that stops reading
 * its stream, one request that asks for the whole batch, idle and half-open connections, huge
 * prompts that are slow to tokenise. Every wait is for a state of the server (its scheduler or
 * connection counts, or a socket event), never for a length of time.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { createServer } from '../src/server/index.js';
import { shared } from './shared.js';

let tiny: LanguageModel;
let demo: LanguageModel;
before(async () => {
  tiny = await loadModel(shared('fixtures', 'tiny'), { backend: 'js' });
  demo = await loadModel(undefined, { backend: 'js' });
});
after(async () => {
  await tiny.close();
  await demo.close();
});

/** Resolves with `probe()`'s first truthy value, checked on every turn of the event loop; fails after `limitMs`. */
async function waitFor<T>(probe: () => T | undefined | false, what: string, limitMs = 60_000): Promise<T> {
  const t0 = performance.now();
  for (;;) {
    const v = probe();
    if (v) return v;
    if (performance.now() - t0 > limitMs) throw new Error(`gave up waiting for ${what} after ${limitMs} ms`);
    await new Promise((r) => setTimeout(r, 1));
  }
}

interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  text: string;
  json: Record<string, any>; // eslint-disable-line @typescript-eslint/no-explicit-any
}

type Target = { socketPath: string } | { host: string; port: number; localAddress?: string };

function request(at: Target, method: string, urlPath: string, body?: unknown, headers: Record<string, string> = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : JSON.stringify(body);
    const req = http.request({ ...at, method, path: urlPath, agent: false, headers: { ...headers, ...(data !== undefined ? { 'Content-Type': 'application/json' } : {}) } }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => {
        let json = {};
        try {
          json = JSON.parse(text);
        } catch {
          // event streams stay text
        }
        resolve({ status: res.statusCode!, headers: res.headers, text, json });
      });
    });
    req.on('error', reject);
    req.end(data);
  });
}

/** A raw HTTP/1.1 request on a socket of our own, so the test decides when (and whether) to read. */
async function rawPost(socket: net.Socket, urlPath: string, body: unknown): Promise<void> {
  if (socket.connecting) await once(socket, 'connect');
  const data = JSON.stringify(body);
  socket.write(`POST ${urlPath} HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(data)}\r\n\r\n${data}`);
}

test('a client that stops reading its stream leaves the batch; others are served at once; after the stall limit it ends with stream_stalled and its connection closes', { timeout: 120_000 }, async (t) => {
  // A Unix socket: the kernel holds ~130 kB of unread output on it, where a loopback TCP
  // connection holds ~4 MB, which would take the tiny model minutes to generate.
  const sock = path.join(os.tmpdir(), `grok-ts-stall-${process.pid}.sock`);
  fs.rmSync(sock, { force: true });
  const s = createServer(tiny, { modelId: 'tiny', maxBatch: 4, maxQueue: 64, queueTimeoutMs: 30_000, stallTimeoutMs: 300 });
  await s.listen(sock);
  const a = net.connect(sock);
  try {
    // The request: n = 16 with 20 alternatives per token, never read.
    a.pause();
    await rawPost(a, '/v1/completions', { model: 'tiny', prompt: [5, 6, 7], n: 16, max_tokens: 120, logprobs: 20, ignore_eos: true, stream: true });
    const blocked = await waitFor(() => {
      const st = s.scheduler.stats();
      return st.paused > 0 && st;
    }, 'the unread stream to fill the socket');
    assert.equal(blocked.active, 0, 'the blocked request holds no batch slot');
    assert.ok(blocked.paused >= 1 && blocked.paused <= 2, 'its sequences in the batch (at most its share, half of 4) were held out, caches kept');
    assert.equal(blocked.queued + blocked.paused + blocked.finished, 16, 'its other choices are not admitted while it is blocked');

    const t0 = performance.now();
    const b = await request({ socketPath: sock }, 'POST', '/v1/completions', { model: 'tiny', prompt: [9, 10], max_tokens: 8, ignore_eos: true });
    const bMs = performance.now() - t0;
    assert.equal(b.status, 200, b.text);
    assert.equal(b.json.usage.completion_tokens, 8);
    t.diagnostic(`another client's 8-token completion took ${bMs.toFixed(0)} ms while the stalled stream was held`);

    await waitFor(() => s.scheduler.stats().stalled === 1, 'the stall limit to end the stalled request');
    const cut = s.scheduler.stats();
    assert.deepEqual([cut.active, cut.queued, cut.paused], [0, 0, 0], 'every choice of it ended, caches freed');
    // The client reads again: what was buffered arrives, then the error event, then the connection closes.
    let text = '';
    a.setEncoding('utf8');
    a.on('data', (c: string) => (text += c));
    a.resume();
    await once(a, 'close');
    assert.match(text, /^HTTP\/1\.1 200/);
    const lastData = text.slice(text.lastIndexOf('data: '));
    assert.match(lastData, /"code":"stream_stalled"/, 'the stream ends with a stream_stalled error event');
    assert.ok(!text.includes('[DONE]'));
    // A client that never reads again: once its stream is cut, its connection is closed by the
    // server when its last bytes do not leave (the server counts one connection fewer).
    const c = net.connect(sock);
    c.pause();
    await rawPost(c, '/v1/completions', { model: 'tiny', prompt: [8, 9], n: 4, max_tokens: 120, logprobs: 20, ignore_eos: true, stream: true });
    await waitFor(() => s.connections().open === 1, 'the server to count it');
    await waitFor(() => s.scheduler.stats().stalled === 2, 'the second stalled request to be ended');
    await waitFor(() => s.connections().open === 0, 'the server to close the connection nobody reads');
    c.destroy();
    // Nothing is left behind: the server still serves.
    const health = await request({ socketPath: sock }, 'GET', '/health');
    assert.equal(health.json.status, 'ok');
    assert.equal(health.json.paused, 0);
  } finally {
    a.destroy();
    await s.close(1000);
    fs.rmSync(sock, { force: true });
  }
});

test("one request's choices hold at most its share of the batch: a second client starts at once", { timeout: 120_000 }, async () => {
  const s = createServer(tiny, { modelId: 'tiny', maxBatch: 4, maxQueue: 64 });
  const { url } = await s.listen(0);
  const at = { host: '127.0.0.1', port: Number(new URL(url).port) };
  try {
    const big = request(at, 'POST', '/v1/completions', { model: 'tiny', prompt: [5, 6, 7], n: 16, max_tokens: 40, ignore_eos: true });
    const started = await waitFor(() => {
      const st = s.scheduler.stats();
      return st.active > 0 && st;
    }, 'the n = 16 request to start');
    assert.deepEqual([started.active, started.queued], [2, 14], 'two slots of four (--max-batch-per-request defaults to half the batch)');
    const small = await request(at, 'POST', '/v1/completions', { model: 'tiny', prompt: [9, 10], max_tokens: 8, ignore_eos: true });
    assert.equal(small.status, 200, small.text);
    assert.ok(s.scheduler.stats().finished < 16, 'the small request finished while the big one was still running');
    const r = await big;
    assert.equal(r.status, 200);
    assert.equal(r.json.choices.length, 16);
  } finally {
    await s.close(1000);
  }
});

test('connection caps: over the per-address or total cap a connection answers /health only; past the reserve it is closed at once', { timeout: 60_000 }, async () => {
  const KEY = 'k-limits';
  const s = createServer(tiny, { modelId: 'tiny', apiKey: KEY, maxConnections: 6, maxConnectionsPerAddress: 4, headerTimeoutMs: 60_000 });
  const { url } = await s.listen(0);
  const port = Number(new URL(url).port);
  const from = (localAddress: string): Target => ({ host: '127.0.0.1', port, localAddress });
  const idle: net.Socket[] = [];
  const openIdle = async (localAddress: string): Promise<net.Socket> => {
    const c = net.connect({ host: '127.0.0.1', port, localAddress });
    c.on('error', () => {});
    idle.push(c);
    await once(c, 'connect');
    return c;
  };
  try {
    for (let i = 0; i < 4; i++) await openIdle('127.0.0.1');
    await waitFor(() => s.connections().open === 4, 'four idle connections to be counted');
    // A fifth from the same address is over its cap: health answers, the API does not.
    const h = await request(from('127.0.0.1'), 'GET', '/health');
    assert.equal(h.status, 200);
    assert.equal(h.json.status, 'ok');
    assert.equal(h.headers.connection, 'close');
    assert.deepEqual(h.json.connections, { open: 4, overflow: 1, refused: 0 });
    const busy = await request(from('127.0.0.1'), 'GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}` });
    assert.equal(busy.status, 503);
    assert.equal(busy.json.error.code, 'too_many_connections');
    // Another address is served until the total cap.
    assert.equal((await request(from('127.0.0.2'), 'GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}` })).status, 200);
    for (let i = 0; i < 2; i++) await openIdle('127.0.0.2');
    await waitFor(() => s.connections().open === 6, 'the total cap to be reached');
    assert.equal((await request(from('127.0.0.3'), 'GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}` })).status, 503);
    assert.equal((await request(from('127.0.0.3'), 'GET', '/health')).status, 200);
    // Fill the reserve with idle connections: the next one is closed without a byte.
    await waitFor(() => s.connections().overflow === 0, 'the answered overflow connections to close');
    for (let i = 0; i < 16; i++) await openIdle('127.0.0.3');
    await waitFor(() => s.connections().overflow === 16, 'the reserve to fill');
    const late = net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.4' });
    late.on('error', () => {});
    let got = 0;
    late.on('data', (d: Buffer) => (got += d.length));
    late.write('GET /health HTTP/1.1\r\nHost: x\r\n\r\n');
    await once(late, 'close');
    assert.equal(got, 0);
    assert.equal(s.connections().refused, 1);
    // Idle connections leave: new ones are served again.
    for (const c of idle.splice(0)) c.destroy();
    await waitFor(() => s.connections().open === 0 && s.connections().overflow === 0, 'the idle connections to close');
    assert.equal((await request(from('127.0.0.1'), 'GET', '/v1/models', undefined, { Authorization: `Bearer ${KEY}` })).status, 200);
  } finally {
    for (const c of idle) c.destroy();
    await s.close(1000);
  }
});

test('a connection that sends no request headers within the header timeout gets 408 and is closed', { timeout: 60_000 }, async () => {
  const s = createServer(tiny, { modelId: 'tiny', headerTimeoutMs: 200 });
  const { url } = await s.listen(0);
  const port = Number(new URL(url).port);
  try {
    const silent = net.connect({ host: '127.0.0.1', port });
    const partial = net.connect({ host: '127.0.0.1', port });
    let silentText = '';
    silent.on('data', (d: Buffer) => (silentText += d.toString()));
    partial.resume(); // a paused socket would never see the server's end
    await once(partial, 'connect');
    partial.write('GET /health HTTP/1.1\r\nHost: x\r\n'); // the headers never end
    await Promise.all([once(silent, 'close'), once(partial, 'close')]);
    assert.match(silentText, /^HTTP\/1\.1 408/);
    await waitFor(() => s.connections().open === 0, 'the server to forget them');
    assert.equal((await request({ host: '127.0.0.1', port }, 'GET', '/health')).status, 200);
  } finally {
    await s.close(1000);
  }
});

test('prompt text over the character budget is refused before tokenising; several prompts are tokenised one per event-loop turn', { timeout: 120_000 }, async () => {
  const ctx = demo.config.sequenceLen;
  const encodePrompt = demo.encodePrompt.bind(demo);
  const s = createServer(demo, { maxBatch: 8 });
  const stepsAtEncode: number[] = [];
  demo.encodePrompt = (p, addBos) => {
    if (typeof p === 'string') stepsAtEncode.push(s.scheduler.stats().steps);
    return encodePrompt(p, addBos);
  };
  const { url } = await s.listen(0);
  const at = { host: '127.0.0.1', port: Number(new URL(url).port) };
  try {
    // Runs of one character tokenise at ~0.4 MB/s; 8 characters per context token at most by default.
    const over = await request(at, 'POST', '/v1/completions', { model: 'fortune-demo', prompt: 'a'.repeat(ctx * 8 + 1), max_tokens: 1 });
    assert.equal(over.status, 400, over.text);
    assert.equal(over.json.error.code, 'context_length_exceeded');
    assert.match(over.json.error.message, /tokenises at most 1024/);
    assert.deepEqual(stepsAtEncode, [], 'refused from its length alone');

    // While a stream decodes, a request with four long prompts: a decode step runs between each two.
    let firstEvent!: () => void;
    const streaming = new Promise<void>((r) => (firstEvent = r));
    const stream = new Promise<void>((resolve, reject) => {
      const req = http.request({ ...at, method: 'POST', path: '/v1/completions', agent: false }, (res) => {
        res.on('data', () => firstEvent());
        res.on('end', () => resolve());
      });
      req.on('error', reject);
      req.end(JSON.stringify({ model: 'fortune-demo', prompt: [5, 6, 7], max_tokens: 100, ignore_eos: true, stream: true }));
    });
    await streaming;
    const four = await request(at, 'POST', '/v1/completions', { model: 'fortune-demo', prompt: Array.from({ length: 4 }, (_, i) => 'ab'.repeat(100 + i)), max_tokens: 1 });
    assert.equal(four.status, 200, four.text);
    assert.equal(stepsAtEncode.length, 4);
    for (let i = 1; i < 4; i++) assert.ok(stepsAtEncode[i]! > stepsAtEncode[i - 1]!, `a step ran between prompts ${i - 1} and ${i}: ${stepsAtEncode}`);
    await stream;
  } finally {
    demo.encodePrompt = encodePrompt;
    await s.close(1000);
  }
});

test('a model still loading: the port answers 503 "loading" (health too), then serves once it is ready', async () => {
  let provide!: (lm: LanguageModel) => void;
  const s = createServer(new Promise<LanguageModel>((r) => (provide = r)), { modelId: 'tiny', apiKey: 'k' });
  const { url } = await s.listen(0);
  const at = { host: '127.0.0.1', port: Number(new URL(url).port) };
  try {
    const h = await request(at, 'GET', '/health');
    assert.equal(h.status, 503);
    assert.equal(h.json.status, 'loading');
    assert.ok(Number(h.headers['retry-after']) >= 1);
    assert.equal((await request(at, 'GET', '/v1/models')).status, 401, 'the key is still checked first');
    const m = await request(at, 'GET', '/v1/models', undefined, { Authorization: 'Bearer k' });
    assert.equal(m.status, 503);
    assert.equal(m.json.error.code, 'model_loading');
    provide(tiny);
    await s.ready;
    assert.equal((await request(at, 'GET', '/health')).json.status, 'ok');
    assert.equal((await request(at, 'GET', '/v1/models', undefined, { Authorization: 'Bearer k' })).json.data[0].id, 'tiny');
  } finally {
    await s.close(1000);
  }
});
