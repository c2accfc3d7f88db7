/**
 * A bounded load test: 32 concurrent streaming requests against a real server on loopback, a
 * quarter of them abandoned midway (client abort, or the socket destroyed). Every request must be
 * answered in full or cleanly aborted, the server must stay healthy with nothing left running, and
 * closing it must leave no sockets behind.
 */
import assert from 'node:assert/strict';
import * as http from 'node:http';
import { test } from 'node:test';
import OpenAI from 'openai';
import { loadModel } from '../src/language-model.js';
import { createServer } from '../src/server/index.js';
import { FIXTURES, shared } from './shared.js';

const STREAMS = 32;
const MAX_TOKENS = 12;

function tcpHandles(): string[] {
  return process.getActiveResourcesInfo().filter((r) => r.startsWith('TCP'));
}

test(`${STREAMS} concurrent streams, some aborted midway: all answered or cleanly aborted, server healthy after, no leaked handles`, { ...FIXTURES, timeout: 60_000 }, async () => {
  const lm = await loadModel(shared('fixtures', 'tiny'), { backend: 'js' });
  const server = createServer(lm, { modelId: 'tiny', maxBatch: 16, maxQueue: 64 });
  const { url } = await server.listen(0, '127.0.0.1');
  const base = new URL(url);
  const client = new OpenAI({ baseURL: `${url}/v1`, apiKey: 'unused', maxRetries: 0, timeout: 30_000 });
  const agent = new http.Agent({ keepAlive: false });
  const body = (i: number) => ({ model: 'tiny', prompt: [5 + i, 6, 7], max_tokens: MAX_TOKENS, temperature: 1, seed: i, stream: true, stream_options: { include_usage: true }, ignore_eos: true });

  /** Reads a whole stream through the official client; aborts after `abortAfter` chunks when given. */
  async function viaClient(i: number, abortAfter?: number): Promise<'done' | 'aborted'> {
    const ac = new AbortController();
    const params = body(i) as unknown as OpenAI.CompletionCreateParamsStreaming; // ignore_eos is a server extension
    const stream = await client.completions.create(params, { signal: ac.signal });
    let chunks = 0;
    let usage: OpenAI.CompletionUsage | undefined;
    let finish: string | null = null;
    try {
      for await (const c of stream) {
        if (c.usage) usage = c.usage;
        for (const ch of c.choices) finish = ch.finish_reason ?? finish;
        if (++chunks === abortAfter) ac.abort();
      }
    } catch (err) {
      if (ac.signal.aborted && err instanceof OpenAI.APIUserAbortError) return 'aborted';
      throw err;
    }
    // The client ends an aborted stream's iteration quietly.
    if (ac.signal.aborted) return 'aborted';
    assert.equal(finish, 'length');
    assert.deepEqual(usage, { prompt_tokens: 3, completion_tokens: MAX_TOKENS, total_tokens: 3 + MAX_TOKENS });
    return 'done';
  }

  /** Raw HTTP: destroys the socket as soon as the first event arrives. */
  function dropSocket(i: number): Promise<'aborted'> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: base.hostname, port: base.port, method: 'POST', path: '/v1/completions', agent }, (res) => {
        assert.equal(res.statusCode, 200);
        res.once('data', () => {
          req.destroy();
          resolve('aborted');
        });
      });
      req.on('error', (e: NodeJS.ErrnoException) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
      req.end(JSON.stringify(body(i)));
    });
  }

  try {
    const t0 = performance.now();
    const outcomes = await Promise.all(
      Array.from({ length: STREAMS }, (_, i) => {
        if (i % 8 === 3) return viaClient(i, 3);
        if (i % 8 === 6) return dropSocket(i);
        return viaClient(i);
      }),
    );
    const elapsed = performance.now() - t0;
    assert.equal(outcomes.filter((o) => o === 'done').length, 24);
    assert.equal(outcomes.filter((o) => o === 'aborted').length, 8);

    // The server notices a dropped socket on its next turn of the event loop.
    for (let i = 0; i < 200 && server.scheduler.stats().active + server.scheduler.stats().queued > 0; i++) await new Promise((r) => setTimeout(r, 10));
    const st = server.scheduler.stats();
    assert.deepEqual([st.active, st.queued, st.paused, st.failed], [0, 0, 0, 0]);
    assert.equal(st.finished, 24);
    assert.equal(st.aborted, 8);
    // Batched: 24 full streams of 24 tokens in steps of up to 16 sequences, far fewer than one step per token.
    assert.ok(st.steps < (24 * MAX_TOKENS) / 4, `${st.steps} steps`);
    assert.ok(elapsed < 30_000);

    const health = await fetch(`${url}/health`);
    assert.equal(health.status, 200);
    assert.equal(((await health.json()) as { status: string }).status, 'ok');
    const after = await client.completions.create({ model: 'tiny', prompt: [5], max_tokens: 3 });
    assert.equal(after.usage!.completion_tokens, 3);
  } finally {
    await server.close(1000);
    agent.destroy();
    await lm.close();
  }
  // Client sockets close once the server has closed its side.
  for (let i = 0; i < 100 && tcpHandles().length > 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(tcpHandles(), []);
});
