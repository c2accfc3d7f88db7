/** POST /v1/completions and /v1/chat/completions: validated requests become jobs on the scheduler. */
import { randomUUID } from 'node:crypto';
import type * as http from 'node:http';
import { readJsonBody } from '../body.js';
import { runJob, type JobChoice, type JobOptions } from '../completion-job.js';
import { addressKey, checkModel, core, type Loaded, type ServerContext } from '../context.js';
import { RequestError } from '../errors.js';
import type { Envelope } from '../openai-format.js';
import { parseChatRequest, parseCompletionRequest, type CommonParams } from '../openai-schema.js';
import type { Route } from '../router.js';

/** OpenAI's default max_tokens for /v1/completions. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

export function envelope(prefix: string, model: string): Envelope {
  return { id: `${prefix}-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model };
}

/** One SequenceState per choice: prompt-major, then n; with a seed, choice i of a prompt uses seed + i. */
export function sequences(c: Loaded, promptIds: number[][], p: CommonParams, maxTokensFor: (ids: number[]) => number, extraStop: readonly string[], logprobs: number | undefined, textOffsets: number[]): JobChoice[] {
  const choices: JobChoice[] = [];
  promptIds.forEach((ids, k) => {
    const maxTokens = maxTokensFor(ids);
    for (let i = 0; i < p.n; i++) {
      const seed = p.sampling.seed === undefined ? {} : { seed: p.sampling.seed + i };
      const seq = c.lm.newSequence(
        ids,
        { ...p.sampling, ...seed, maxTokens, stop: [...extraStop, ...p.stop], ignoreEos: p.ignoreEos, ...(logprobs !== undefined ? { logprobs } : {}) },
        // An empty cache: memory is taken when the sequence is admitted and runs, not while it waits.
        c.lm.newCache(0),
      );
      choices.push({ seq, textOffset: textOffsets[k]! });
    }
  });
  return choices;
}

export function jobOptions(ctx: ServerContext, req: http.IncomingMessage): JobOptions {
  return { timeoutMs: ctx.requestTimeoutMs, stallMs: ctx.limits.stallTimeoutMs, client: addressKey(req.socket) };
}

/** Runs a job with its sequences listed as live until the response is over; their tokens go to the metrics then. */
export async function tracked(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse, id: string, choices: readonly JobChoice[], run: () => Promise<void>): Promise<void> {
  const release = ctx.live.track(res, { id, endpoint: (req.url ?? '').split('?')[0]!, client: addressKey(req.socket), seqs: choices.map((c) => c.seq) });
  try {
    await run();
  } finally {
    ctx.metrics.tokens(release());
  }
}

export async function completions(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const c = core(ctx);
  const p = parseCompletionRequest(await readJsonBody(req, ctx.maxBodyBytes), { maxN: ctx.maxN });
  checkModel(c, p.model);
  const maxQueue = ctx.limits.maxQueue;
  if (p.prompts.length * p.n > maxQueue) {
    throw new RequestError(400, `the request asks for ${p.prompts.length * p.n} sequences (prompts × n); this server takes at most ${maxQueue} at once`, 'invalid_request_error', 'invalid_value', 'n');
  }
  const ids = await c.prompts.encodeAll(p.prompts);
  const offsets = p.prompts.map((x, k) => (typeof x === 'string' ? x : c.lm.tokenizer.decode(ids[k]!)).length);
  const choices = sequences(c, ids, p, (x) => c.prompts.budget(x.length, p.maxTokens, COMPLETIONS_DEFAULT_MAX_TOKENS), [], p.logprobs, offsets);
  const job = {
    kind: 'completion' as const,
    env: envelope('cmpl', p.model),
    choices,
    promptTokens: ids.reduce((n, x) => n + x.length, 0),
    stream: p.stream,
    includeUsage: p.includeUsage,
    logprobs: p.logprobs !== undefined,
  };
  await tracked(ctx, req, res, job.env.id, choices, () => runJob(c.scheduler, job, res, { promptParam: 'prompt', onInternal: ctx.onInternal }, jobOptions(ctx, req)));
}

export async function chat(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const c = core(ctx);
  const p = parseChatRequest(await readJsonBody(req, ctx.maxBodyBytes), { maxN: ctx.maxN });
  checkModel(c, p.model);
  const [ids] = await c.prompts.encodeAll([ctx.template.render(p.messages)], 'messages');
  const choices = sequences(c, [ids!], p, (x) => c.prompts.budget(x.length, p.maxTokens, Infinity), ctx.template.stop, p.logprobs ? p.topLogprobs : undefined, [0]);
  const job = {
    kind: 'chat' as const,
    env: envelope('chatcmpl', p.model),
    choices,
    promptTokens: ids!.length,
    stream: p.stream,
    includeUsage: p.includeUsage,
    logprobs: p.logprobs,
  };
  await tracked(ctx, req, res, job.env.id, choices, () => runJob(c.scheduler, job, res, { promptParam: 'messages', onInternal: ctx.onInternal }, jobOptions(ctx, req)));
}

export function openaiRoutes(ctx: ServerContext): Route[] {
  return [
    { pattern: /^\/v1\/completions$/, methods: { POST: (req, res) => completions(ctx, req, res) } },
    { pattern: /^\/v1\/chat\/completions$/, methods: { POST: (req, res) => chat(ctx, req, res) } },
  ];
}
