/**
 * Server throughput under concurrency: aggregate decode tokens/s of 1, 4 and 16 simultaneous
 * streaming completions through a real server on loopback, and each against one stream. With
 * continuous batching a step reads the weights once for every stream, so on a memory-bound model
 * the aggregate should grow far faster than the per-step cost.
 *
 * Decode rate, prefill excluded: each stream asks for per-token logprobs so every token arrives in
 * its own event with a timestamp; the window runs from the moment every stream has its first token
 * (all are decoding) to the moment the first stream ends (all still are), and counts the tokens of
 * all streams inside it. Run standalone: `node dist/bench/server.js [MODEL] [--backend js|wasm]`.
 */
import * as http from 'node:http';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel, type BackendName, type LanguageModel } from '../src/language-model.js';
import { createServer } from '../src/server/index.js';

export interface ServerBenchOptions {
  readonly concurrency?: readonly number[];
  /** Tokens per stream (capped by the model's context). Default 32. */
  readonly maxTokens?: number;
}

interface StreamTrace {
  /** Arrival time (ms) of each generated token. */
  readonly times: number[];
}

function streamOnce(url: URL, agent: http.Agent, body: object): Promise<StreamTrace> {
  return new Promise((resolve, reject) => {
    const times: number[] = [];
    let buffer = '';
    const req = http.request({ host: url.hostname, port: url.port, method: 'POST', path: '/v1/completions', agent }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        reject(new Error(`server answered ${res.statusCode}`));
        return;
      }
      res.setEncoding('utf8');
      res.on('data', (c: string) => {
        const now = performance.now();
        buffer += c;
        let at: number;
        while ((at = buffer.indexOf('\n\n')) >= 0) {
          const event = buffer.slice(0, at).replace(/^data: /, '');
          buffer = buffer.slice(at + 2);
          if (event === '[DONE]') continue;
          const chunk = JSON.parse(event) as { choices: { logprobs: { tokens: string[] } | null }[]; error?: { message: string } };
          if (chunk.error) return reject(new Error(chunk.error.message));
          for (const ch of chunk.choices) for (let i = 0; i < (ch.logprobs?.tokens.length ?? 0); i++) times.push(now);
        }
      });
      res.on('end', () => resolve({ times }));
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

/** Tokens per second of all streams together while all of them are decoding. */
export function aggregateDecodeRate(traces: readonly StreamTrace[]): number {
  const start = Math.max(...traces.map((t) => t.times[0]!));
  const end = Math.min(...traces.map((t) => t.times[t.times.length - 1]!));
  let tokens = 0;
  for (const t of traces) for (const x of t.times) if (x > start && x <= end) tokens++;
  return end > start ? (tokens * 1000) / (end - start) : 0;
}

export async function benchServer(lm: LanguageModel, log: (line: string) => void, opts: ServerBenchOptions = {}): Promise<Record<string, number>> {
  const levels = opts.concurrency ?? [1, 4, 16];
  const maxBatch = Math.max(...levels);
  const promptLen = 4;
  const maxTokens = Math.min(opts.maxTokens ?? 32, lm.config.sequenceLen - promptLen - 1);
  const server = createServer(lm, { modelId: 'bench', maxBatch, maxQueue: maxBatch * 2 });
  const agent = new http.Agent({ keepAlive: true, maxSockets: maxBatch * 2 });
  const results: Record<string, number> = {};
  try {
    const url = new URL((await server.listen(0, '127.0.0.1')).url);
    const vocab = lm.config.vocabSize;
    const body = (i: number) => ({
      model: 'bench',
      // Distinct prompts of ordinary ids, so no two streams are the same sequence.
      prompt: Array.from({ length: promptLen }, (_, j) => 3 + ((i * 7919 + j * 104729) % (vocab - 3))),
      max_tokens: maxTokens,
      temperature: 1,
      seed: i,
      ignore_eos: true,
      logprobs: 0,
      stream: true,
    });
    // Warm-up: JIT, first weight reads, and one open keep-alive connection per stream, so that the
    // streams measured below start together instead of trickling in while connections are made.
    await Promise.all(Array.from({ length: maxBatch }, (_, i) => streamOnce(url, agent, { ...body(i), max_tokens: 2 })));
    let single = 0;
    for (const k of levels) {
      const stepsBefore = server.scheduler.stats().steps;
      const t0 = performance.now();
      const traces = await Promise.all(Array.from({ length: k }, (_, i) => streamOnce(url, agent, body(i))));
      const wall = performance.now() - t0;
      const rate = aggregateDecodeRate(traces);
      if (k === 1) single = rate;
      const steps = server.scheduler.stats().steps - stepsBefore;
      const ratio = single > 0 ? rate / single : 0;
      log(`server: ${String(k).padStart(2)} concurrent streams × ${maxTokens} tokens: ${rate.toFixed(1)} decode tok/s aggregate (${(rate / k).toFixed(1)} per stream), ${ratio.toFixed(2)}× one stream; ${steps} forward steps, ${(wall / 1000).toFixed(2)} s wall`);
      results[`server.decode_tok_s.c${k}`] = rate;
      if (k !== 1 && single > 0) results[`server.ratio.c${k}`] = ratio;
    }
  } finally {
    agent.destroy();
    await server.close(1000);
  }
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const args = process.argv.slice(2);
  const b = args.indexOf('--backend');
  const backend = (b >= 0 ? args.splice(b, 2)[1] : 'auto') as BackendName;
  const lm = await loadModel(args[0], { backend });
  await lm.whenResident();
  log(`server bench on ${args[0] ?? 'the bundled demo'} (${lm.backend} backend)`);
  try {
    await benchServer(lm, log);
  } finally {
    await lm.close();
  }
}

function log(line: string): void {
  process.stdout.write(line + '\n');
}
