/**
 * The OpenAI-compatible HTTP server on node:http: routing, body limits, API-key check, the two
 * generation endpoints over the batching scheduler, health, and graceful shutdown.
 *
 *   GET  /health                 liveness and scheduler load (no API key needed)
 *   GET  /v1/models              the one served model
 *   GET  /v1/models/{id}
 *   POST /v1/completions
 *   POST /v1/chat/completions
 *
 * Requests never name files: the model is fixed when the server is created, and `model` in a
 * request must be its id.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import { AbortError } from '../errors.js';
import type { LanguageModel } from '../language-model.js';
import { DEFAULT_CHAT_TEMPLATE, type ServerChatTemplate } from './chat-template-file.js';
import { runJob, type JobChoice } from './completion-job.js';
import { RequestError } from './errors.js';
import { modelJson, type Envelope } from './openai-format.js';
import { parseChatRequest, parseCompletionRequest, type CommonParams } from './openai-schema.js';
import { PromptEncoder } from './prompt.js';
import { sendError, sendJson, type ErrorReporting } from './respond.js';
import { DEFAULT_LIMITS, Scheduler, type SchedulerLimits, type SchedulerStats } from './scheduler.js';

export interface ServerOptions extends Partial<SchedulerLimits> {
  /** The id clients pass as `model`; default: `fortune-demo` for the demo, else the checkpoint's directory or file name. */
  readonly modelId?: string;
  /** Require `Authorization: Bearer <key>` on /v1 routes. */
  readonly apiKey?: string;
  /** Largest request body; larger ones get 413. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** A request still running after this long is ended with 504. Default 10 minutes. */
  readonly requestTimeoutMs?: number;
  /** Largest `n`. Default 16. */
  readonly maxN?: number;
  readonly chatTemplate?: ServerChatTemplate;
  /** Receives one line per internal error (never request contents or the API key). */
  readonly log?: (line: string) => void;
}

export interface GrokServer {
  readonly modelId: string;
  readonly scheduler: Scheduler;
  /** Starts listening; port 0 picks a free port. Default host: 127.0.0.1 (loopback only). */
  listen(port?: number, host?: string): Promise<{ url: string }>;
  /**
   * Stops taking requests, lets running ones finish for up to `graceMs`, aborts the rest, closes
   * every connection. The model stays open: it belongs to the caller.
   */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
const DEFAULT_MAX_N = 16;
const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;
/** OpenAI's default max_tokens for /v1/completions. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
/** A request body must arrive within this time (slow uploads would otherwise hold a socket forever). */
const REQUEST_BODY_TIMEOUT_MS = 30_000;
/** At shutdown, how long finished responses may take to drain to their clients before sockets are closed. */
const FLUSH_GRACE_MS = 1000;

/** The served model's id when none is given: what a user would call the checkpoint. */
export function defaultModelId(lm: LanguageModel): string {
  if (lm.isDemo) return 'fortune-demo';
  const p = lm.files.path.replace(/[\\/]+$/, '');
  const base = path.basename(p);
  if (/^ckpt-\d+$/.test(base)) return path.basename(path.dirname(p)) || 'grok-1';
  return base.replace(/(?:-\d{5}-of-\d{5})?\.gguf(?:\.part\d+of\d+)?$/i, '') || 'grok-1';
}

type Handler = (req: http.IncomingMessage, res: http.ServerResponse, parts: { id?: string }) => Promise<void> | void;

interface Route {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, Handler>>;
  readonly open?: boolean;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function notFound(req: http.IncomingMessage): RequestError {
  return new RequestError(404, `Unknown request URL: ${req.method} ${req.url}`, 'invalid_request_error', 'unknown_url');
}

export function createServer(lm: LanguageModel, options: ServerOptions = {}): GrokServer {
  const modelId = options.modelId ?? defaultModelId(lm);
  const created = Math.floor(Date.now() / 1000);
  const limits: SchedulerLimits = {
    maxBatch: options.maxBatch ?? DEFAULT_LIMITS.maxBatch,
    maxQueue: options.maxQueue ?? DEFAULT_LIMITS.maxQueue,
    maxPrefillTokens: options.maxPrefillTokens ?? DEFAULT_LIMITS.maxPrefillTokens,
    queueTimeoutMs: options.queueTimeoutMs ?? DEFAULT_LIMITS.queueTimeoutMs,
  };
  const scheduler = new Scheduler(lm.model, limits);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const maxN = Math.min(options.maxN ?? DEFAULT_MAX_N, limits.maxQueue);
  const template = options.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
  const keyDigest = options.apiKey !== undefined && options.apiKey !== '' ? digest(options.apiKey) : undefined;
  const log = options.log ?? (() => {});
  const prompts = new PromptEncoder(lm);
  const onInternal = (err: unknown): void => log(`internal error: ${(err as Error)?.stack ?? String(err)}`);
  let draining = false;

  function authorized(req: http.IncomingMessage): boolean {
    if (!keyDigest) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    // Hash both sides first: equal-length digests make the comparison constant-time whatever the key's length.
    return m !== null && timingSafeEqual(digest(m[1]!), keyDigest);
  }

  function checkModel(id: string): void {
    if (id !== modelId) {
      throw new RequestError(404, `The model \`${id}\` does not exist; this server serves \`${modelId}\``, 'invalid_request_error', 'model_not_found', 'model');
    }
  }

  function envelope(prefix: string, model: string): Envelope {
    return { id: `${prefix}-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model };
  }

  /** One SequenceState per choice: prompt-major, then n; with a seed, choice i of a prompt uses seed + i. */
  function sequences(promptIds: number[][], p: CommonParams, maxTokensFor: (ids: number[]) => number, extraStop: readonly string[], logprobs: number | undefined, textOffsets: number[]): JobChoice[] {
    const choices: JobChoice[] = [];
    promptIds.forEach((ids, k) => {
      const maxTokens = maxTokensFor(ids);
      for (let i = 0; i < p.n; i++) {
        const seed = p.sampling.seed === undefined ? {} : { seed: p.sampling.seed + i };
        const seq = lm.newSequence(
          ids,
          { ...p.sampling, ...seed, maxTokens, stop: [...extraStop, ...p.stop], ignoreEos: p.ignoreEos, ...(logprobs !== undefined ? { logprobs } : {}) },
          // An empty cache: memory is taken when the sequence is admitted and runs, not while it waits.
          lm.model.newCache(0),
        );
        choices.push({ seq, textOffset: textOffsets[k]! });
      }
    });
    return choices;
  }

  async function completions(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const p = parseCompletionRequest(await readJsonBody(req, maxBody), { maxN });
    checkModel(p.model);
    if (p.prompts.length * p.n > limits.maxQueue) {
      throw new RequestError(400, `the request asks for ${p.prompts.length * p.n} sequences (prompts × n); this server takes at most ${limits.maxQueue} at once`, 'invalid_request_error', 'invalid_value', 'n');
    }
    const ids = p.prompts.map((x) => prompts.encode(x));
    const offsets = p.prompts.map((x, k) => (typeof x === 'string' ? x : lm.tokenizer.decode(ids[k]!)).length);
    const choices = sequences(ids, p, (x) => prompts.budget(x.length, p.maxTokens, COMPLETIONS_DEFAULT_MAX_TOKENS), [], p.logprobs, offsets);
    const job = {
      kind: 'completion' as const,
      env: envelope('cmpl', p.model),
      choices,
      promptTokens: ids.reduce((n, x) => n + x.length, 0),
      stream: p.stream,
      includeUsage: p.includeUsage,
      logprobs: p.logprobs !== undefined,
    };
    await runJob(scheduler, job, res, { promptParam: 'prompt', onInternal }, requestTimeoutMs);
  }

  async function chat(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const p = parseChatRequest(await readJsonBody(req, maxBody), { maxN });
    checkModel(p.model);
    const ids = prompts.encode(template.render(p.messages), 'messages');
    const choices = sequences([ids], p, (x) => prompts.budget(x.length, p.maxTokens, Infinity), template.stop, p.logprobs ? p.topLogprobs : undefined, [0]);
    const job = {
      kind: 'chat' as const,
      env: envelope('chatcmpl', p.model),
      choices,
      promptTokens: ids.length,
      stream: p.stream,
      includeUsage: p.includeUsage,
      logprobs: p.logprobs,
    };
    await runJob(scheduler, job, res, { promptParam: 'messages', onInternal }, requestTimeoutMs);
  }

  const routes: Route[] = [
    {
      pattern: /^\/health$/,
      open: true,
      methods: {
        GET: (_req, res) => {
          const s: SchedulerStats = scheduler.stats();
          sendJson(res, draining ? 503 : 200, { status: draining ? 'shutting_down' : 'ok', model: modelId, backend: lm.backend, ...s });
        },
      },
    },
    { pattern: /^\/v1\/models$/, methods: { GET: (_req, res) => sendJson(res, 200, { object: 'list', data: [modelJson(modelId, created)] }) } },
    {
      pattern: /^\/v1\/models\/(?<id>[^/]+)$/,
      methods: {
        GET: (_req, res, { id }) => {
          let name = id!;
          try {
            name = decodeURIComponent(name);
          } catch {
            // not percent-encoded text: compare it as given
          }
          checkModel(name);
          sendJson(res, 200, modelJson(modelId, created));
        },
      },
    },
    { pattern: /^\/v1\/completions$/, methods: { POST: completions } },
    { pattern: /^\/v1\/chat\/completions$/, methods: { POST: chat } },
  ];

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const pathname = (req.url ?? '/').split('?')[0]!;
    let reporting: ErrorReporting = { onInternal };
    try {
      let route: Route | undefined;
      let match: RegExpExecArray | null = null;
      for (const r of routes) {
        match = r.pattern.exec(pathname);
        if (match) {
          route = r;
          break;
        }
      }
      if (!route) throw notFound(req);
      const handler = route.methods[req.method ?? ''];
      if (!handler) {
        const allow = Object.keys(route.methods).join(', ');
        throw new RequestError(405, `Method ${req.method} is not allowed on ${pathname}; use ${allow}`, 'invalid_request_error', 'method_not_allowed', null, { Allow: allow });
      }
      if (!route.open && !authorized(req)) {
        throw new RequestError(401, 'Incorrect API key provided: pass it as "Authorization: Bearer <key>"', 'authentication_error', 'invalid_api_key');
      }
      if (draining && !route.open) throw new RequestError(503, 'the server is shutting down', 'server_error', 'server_unavailable', null, { 'Retry-After': '5', Connection: 'close' });
      reporting = { onInternal, promptParam: pathname.endsWith('/chat/completions') ? 'messages' : 'prompt' };
      await handler(req, res, { ...(match?.groups?.id !== undefined ? { id: match.groups.id } : {}) });
    } catch (err) {
      if (err instanceof AbortError && (res.destroyed || req.destroyed)) return; // the client left
      sendError(res, err, reporting);
    }
  }

  /** Responses not yet finished, so a shutdown can let their last bytes out before closing sockets. */
  const inflight = new Set<Promise<void>>();
  const server = http.createServer({ requestTimeout: REQUEST_BODY_TIMEOUT_MS, headersTimeout: REQUEST_BODY_TIMEOUT_MS }, (req, res) => {
    const closed = new Promise<void>((resolve) => res.once('close', resolve));
    inflight.add(closed);
    void closed.then(() => inflight.delete(closed));
    void handle(req, res);
  });
  // The request timeout covers receiving the request; generation itself is bounded by max_tokens
  // and the context, and its responses must not be cut off by an idle timer.
  server.timeout = 0;

  return {
    modelId,
    scheduler,
    listen(port = 8080, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen(port, host, () => {
          server.off('error', reject);
          const a = server.address() as AddressInfo;
          const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve({ url: `http://${h}:${a.port}` });
        });
      });
    },
    async close(graceMs = 10_000) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      await scheduler.close(graceMs);
      // Every generation has ended and written its last bytes; give them a moment to leave.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(inflight), new Promise((resolve) => (timer = setTimeout(resolve, FLUSH_GRACE_MS)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
    },
  };
}

/** Reads a JSON request body of at most `limit` bytes. */
function readJsonBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new RequestError(413, `the request body is larger than the limit of ${limit} bytes`, 'invalid_request_error', 'request_too_large', null, { Connection: 'close' });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      fn();
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) settle(() => reject(tooLarge()));
      else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () =>
      settle(() => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new RequestError(400, `We could not parse the JSON body of your request: ${(err as Error).message}`, 'invalid_request_error', 'invalid_json'));
        }
      }),
    );
    req.on('error', (err) => settle(() => reject(new AbortError(`the request body did not arrive: ${err.message}`))));
    req.on('close', () => settle(() => reject(new AbortError('the client went away while sending the request'))));
  });
}
