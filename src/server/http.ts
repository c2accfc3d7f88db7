/**
 * The OpenAI-compatible HTTP server on node:http: routing, body limits, API-key check, the two
 * generation endpoints over the batching scheduler, health, connection limits, and graceful
 * shutdown.
 *
 *   GET  /health                 liveness and scheduler load (no API key needed)
 *   GET  /v1/models              the one served model
 *   GET  /v1/models/{id}
 *   POST /v1/completions
 *   POST /v1/chat/completions
 *
 * Requests never name files: the model is fixed when the server is created, and `model` in a
 * request must be its id. The model may still be loading when the server starts listening (a
 * promise): until it is ready, /health says "loading" and every other route answers 503.
 *
 * Limits. With an API key set, every route but /health needs it, unknown ones too (404 and 405
 * tell nothing to a client without the key). At most `maxConnections` connections are served, and
 * at most `maxConnectionsPerAddress` from one address; beyond that a few more are let in to answer
 * /health only (everything else on them gets 503 and the connection is closed), and the rest are
 * closed at once. A connection must send its request headers within `headerTimeoutMs`.
 */
import { createHash, randomUUID, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import { AbortError } from '../errors.js';
import type { LanguageModel } from '../language-model.js';
import { DEFAULT_CHAT_TEMPLATE, type ServerChatTemplate } from './chat-template-file.js';
import { runJob, type JobChoice } from './completion-job.js';
import { listenError, RequestError } from './errors.js';
import { modelJson, type Envelope } from './openai-format.js';
import { parseChatRequest, parseCompletionRequest, type CommonParams } from './openai-schema.js';
import { DEFAULT_MAX_CHARS_PER_TOKEN, PromptEncoder } from './prompt.js';
import { sendError, sendJson, type ErrorReporting } from './respond.js';
import { resolveLimits, Scheduler, type SchedulerLimits, type SchedulerStats } from './scheduler.js';

export interface ServerOptions extends Partial<SchedulerLimits> {
  /** The id clients pass as `model`; default: `fortune-demo` for the demo, else the checkpoint's directory or file name. */
  readonly modelId?: string;
  /** Require `Authorization: Bearer <key>` on every route but /health. */
  readonly apiKey?: string;
  /** Largest request body; larger ones get 413. Default 1 MiB. */
  readonly maxBodyBytes?: number;
  /** A request still running after this long is ended with 504. Default 10 minutes. */
  readonly requestTimeoutMs?: number;
  /** Largest `n`. Default 16. */
  readonly maxN?: number;
  /** Characters of prompt text tokenised per token of the model's context at most. Default 8. */
  readonly maxCharsPerToken?: number;
  /** Connections served at once. Default 512. */
  readonly maxConnections?: number;
  /** Connections served at once from one remote address. Default 128. */
  readonly maxConnectionsPerAddress?: number;
  /** A connection must send its request headers within this time (else 408 and closed). Default 10 s. */
  readonly headerTimeoutMs?: number;
  readonly chatTemplate?: ServerChatTemplate;
  /** Receives one line per internal error (never request contents or the API key). */
  readonly log?: (line: string) => void;
}

export interface ConnectionStats {
  /** Connections being served. */
  readonly open: number;
  /** Connections over a cap, let in to answer /health only. */
  readonly overflow: number;
  /** Connections closed at once because every cap was full. */
  readonly refused: number;
}

export interface GrokServer {
  /** Throws while a model given as a promise is loading, unless `modelId` was given. */
  readonly modelId: string;
  /** Throws while a model given as a promise is loading. */
  readonly scheduler: Scheduler;
  /** Settles when the model is ready (at once for a loaded one); rejects when it failed to load. */
  readonly ready: Promise<void>;
  connections(): ConnectionStats;
  /**
   * Starts listening; port 0 picks a free port. Default host: 127.0.0.1 (loopback only). A string
   * instead of a port is the path of a Unix domain socket to listen on (host unused; the url is
   * `unix:PATH`). A port in use, a host that is not this machine's, ... reject with a ListenError.
   */
  listen(port?: number | string, host?: string): Promise<{ url: string }>;
  /**
   * Stops taking requests, lets running ones finish for up to `graceMs`, aborts the rest, closes
   * every connection. The model stays open: it belongs to the caller.
   */
  close(graceMs?: number): Promise<void>;
}

export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
export const DEFAULT_MAX_CONNECTIONS = 512;
export const DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 128;
export const DEFAULT_HEADER_TIMEOUT_MS = 10_000;
const DEFAULT_MAX_N = 16;
const DEFAULT_REQUEST_TIMEOUT_MS = 10 * 60_000;
/** OpenAI's default max_tokens for /v1/completions. */
const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;
/** A request body must arrive within this time (slow uploads would otherwise hold a socket forever). */
const REQUEST_BODY_TIMEOUT_MS = 30_000;
/** At shutdown, how long finished responses may take to drain to their clients before sockets are closed. */
const FLUSH_GRACE_MS = 1000;
/** Connections over the caps that are still let in, to answer /health, and how long they may stay. */
const OVERFLOW_RESERVE = 16;
const OVERFLOW_TIMEOUT_MS = 2000;

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

/** What exists once the model is loaded. */
interface Loaded {
  readonly lm: LanguageModel;
  readonly modelId: string;
  readonly scheduler: Scheduler;
  readonly prompts: PromptEncoder;
}

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

function notFound(req: http.IncomingMessage): RequestError {
  return new RequestError(404, `Unknown request URL: ${req.method} ${req.url}`, 'invalid_request_error', 'unknown_url');
}

/** One key per remote address (an IPv4 client of a dual-stack socket is the same as over IPv4). */
function addressKey(socket: Socket): string {
  return (socket.remoteAddress ?? 'unknown').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

function isPromise<T>(v: T | Promise<T>): v is Promise<T> {
  return typeof (v as Promise<T>)?.then === 'function';
}

function positive(name: string, v: number): number {
  if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`server option ${name} must be a positive integer, got ${v}`);
  return v;
}

export function createServer(model: LanguageModel | Promise<LanguageModel>, options: ServerOptions = {}): GrokServer {
  const limits = resolveLimits(options);
  const maxBody = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const requestTimeoutMs = options.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const maxN = Math.min(options.maxN ?? DEFAULT_MAX_N, limits.maxQueue);
  const maxConnections = positive('maxConnections', options.maxConnections ?? DEFAULT_MAX_CONNECTIONS);
  const maxPerAddress = positive('maxConnectionsPerAddress', options.maxConnectionsPerAddress ?? DEFAULT_MAX_CONNECTIONS_PER_ADDRESS);
  const headerTimeoutMs = positive('headerTimeoutMs', options.headerTimeoutMs ?? DEFAULT_HEADER_TIMEOUT_MS);
  const maxCharsPerToken = options.maxCharsPerToken ?? DEFAULT_MAX_CHARS_PER_TOKEN;
  if (!(maxCharsPerToken > 0)) throw new RangeError(`server option maxCharsPerToken must be positive, got ${maxCharsPerToken}`);
  const template = options.chatTemplate ?? DEFAULT_CHAT_TEMPLATE;
  const keyDigest = options.apiKey !== undefined && options.apiKey !== '' ? digest(options.apiKey) : undefined;
  const log = options.log ?? (() => {});
  const onInternal = (err: unknown): void => log(`internal error: ${(err as Error)?.stack ?? String(err)}`);
  const created = Math.floor(Date.now() / 1000);
  let draining = false;

  let loaded: Loaded | undefined;
  let loadFailed = false;
  const attach = (lm: LanguageModel): void => {
    loaded = { lm, modelId: options.modelId ?? defaultModelId(lm), scheduler: new Scheduler(lm.model, limits), prompts: new PromptEncoder(lm, maxCharsPerToken) };
  };
  let ready: Promise<void>;
  if (isPromise(model)) {
    ready = model.then(attach, (err: unknown) => {
      loadFailed = true;
      throw err;
    });
    ready.catch(() => {}); // the caller hears of it through `ready`; requests get 503 meanwhile
  } else {
    attach(model);
    ready = Promise.resolve();
  }

  /** The loaded model, or a 503 while it loads. */
  function core(): Loaded {
    if (loaded) return loaded;
    if (loadFailed) throw new RequestError(503, 'the model failed to load', 'server_error', 'server_unavailable');
    throw new RequestError(503, 'the model is still loading; retry shortly', 'server_error', 'model_loading', null, { 'Retry-After': '5' });
  }

  function authorized(req: http.IncomingMessage): boolean {
    if (!keyDigest) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    // Hash both sides first: equal-length digests make the comparison constant-time whatever the key's length.
    return m !== null && timingSafeEqual(digest(m[1]!), keyDigest);
  }

  function checkModel(c: Loaded, id: string): void {
    if (id !== c.modelId) {
      throw new RequestError(404, `The model \`${id}\` does not exist; this server serves \`${c.modelId}\``, 'invalid_request_error', 'model_not_found', 'model');
    }
  }

  function envelope(prefix: string, model: string): Envelope {
    return { id: `${prefix}-${randomUUID().replace(/-/g, '')}`, created: Math.floor(Date.now() / 1000), model };
  }

  /** One SequenceState per choice: prompt-major, then n; with a seed, choice i of a prompt uses seed + i. */
  function sequences(c: Loaded, promptIds: number[][], p: CommonParams, maxTokensFor: (ids: number[]) => number, extraStop: readonly string[], logprobs: number | undefined, textOffsets: number[]): JobChoice[] {
    const choices: JobChoice[] = [];
    promptIds.forEach((ids, k) => {
      const maxTokens = maxTokensFor(ids);
      for (let i = 0; i < p.n; i++) {
        const seed = p.sampling.seed === undefined ? {} : { seed: p.sampling.seed + i };
        const seq = c.lm.newSequence(
          ids,
          { ...p.sampling, ...seed, maxTokens, stop: [...extraStop, ...p.stop], ignoreEos: p.ignoreEos, ...(logprobs !== undefined ? { logprobs } : {}) },
          // An empty cache: memory is taken when the sequence is admitted and runs, not while it waits.
          c.lm.model.newCache(0),
        );
        choices.push({ seq, textOffset: textOffsets[k]! });
      }
    });
    return choices;
  }

  const jobOptions = (req: http.IncomingMessage) => ({ timeoutMs: requestTimeoutMs, stallMs: limits.stallTimeoutMs, client: addressKey(req.socket) });

  async function completions(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const c = core();
    const p = parseCompletionRequest(await readJsonBody(req, maxBody), { maxN });
    checkModel(c, p.model);
    if (p.prompts.length * p.n > limits.maxQueue) {
      throw new RequestError(400, `the request asks for ${p.prompts.length * p.n} sequences (prompts × n); this server takes at most ${limits.maxQueue} at once`, 'invalid_request_error', 'invalid_value', 'n');
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
    await runJob(c.scheduler, job, res, { promptParam: 'prompt', onInternal }, jobOptions(req));
  }

  async function chat(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const c = core();
    const p = parseChatRequest(await readJsonBody(req, maxBody), { maxN });
    checkModel(c, p.model);
    const [ids] = await c.prompts.encodeAll([template.render(p.messages)], 'messages');
    const choices = sequences(c, [ids!], p, (x) => c.prompts.budget(x.length, p.maxTokens, Infinity), template.stop, p.logprobs ? p.topLogprobs : undefined, [0]);
    const job = {
      kind: 'chat' as const,
      env: envelope('chatcmpl', p.model),
      choices,
      promptTokens: ids!.length,
      stream: p.stream,
      includeUsage: p.includeUsage,
      logprobs: p.logprobs,
    };
    await runJob(c.scheduler, job, res, { promptParam: 'messages', onInternal }, jobOptions(req));
  }

  function health(res: http.ServerResponse, headers: Record<string, string> = {}): void {
    const connections = conns();
    if (!loaded) {
      const status = draining ? 'shutting_down' : loadFailed ? 'failed' : 'loading';
      sendJson(res, 503, { status, ...(options.modelId !== undefined ? { model: options.modelId } : {}), connections }, { 'Retry-After': '5', ...headers });
      return;
    }
    const s: SchedulerStats = loaded.scheduler.stats();
    sendJson(res, draining ? 503 : 200, { status: draining ? 'shutting_down' : 'ok', model: loaded.modelId, backend: loaded.lm.backend, ...s, connections, memory: loaded.lm.memoryHealth() }, headers);
  }

  const routes: Route[] = [
    { pattern: /^\/health$/, open: true, methods: { GET: (_req, res) => health(res) } },
    {
      pattern: /^\/v1\/models$/,
      methods: {
        GET: (_req, res) => {
          const c = core();
          sendJson(res, 200, { object: 'list', data: [modelJson(c.modelId, created)] });
        },
      },
    },
    {
      pattern: /^\/v1\/models\/(?<id>[^/]+)$/,
      methods: {
        GET: (_req, res, { id }) => {
          const c = core();
          let name = id!;
          try {
            name = decodeURIComponent(name);
          } catch {
            // not percent-encoded text: compare it as given
          }
          checkModel(c, name);
          sendJson(res, 200, modelJson(c.modelId, created));
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
      if (overflow.has(req.socket)) {
        // A connection over the caps: health only, then it closes.
        if (route?.open && req.method === 'GET') return health(res, { Connection: 'close' });
        throw new RequestError(503, 'too many connections; retry later', 'server_error', 'too_many_connections', null, { 'Retry-After': '1', Connection: 'close' });
      }
      // The key first: without it, nothing (not even which routes exist) but the health probe.
      if (!route?.open && !authorized(req)) {
        throw new RequestError(401, 'Incorrect API key provided: pass it as "Authorization: Bearer <key>"', 'authentication_error', 'invalid_api_key');
      }
      if (!route) throw notFound(req);
      const handler = route.methods[req.method ?? ''];
      if (!handler) {
        const allow = Object.keys(route.methods).join(', ');
        throw new RequestError(405, `Method ${req.method} is not allowed on ${pathname}; use ${allow}`, 'invalid_request_error', 'method_not_allowed', null, { Allow: allow });
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
  const server = http.createServer(
    {
      headersTimeout: headerTimeoutMs,
      requestTimeout: Math.max(REQUEST_BODY_TIMEOUT_MS, headerTimeoutMs),
      // How often expired header and body timers are looked for: a tenth of the header timeout, within [10 ms, 1 s].
      connectionsCheckingInterval: Math.min(1000, Math.max(10, Math.floor(headerTimeoutMs / 10))),
    },
    (req, res) => {
      const closed = new Promise<void>((resolve) => res.once('close', resolve));
      inflight.add(closed);
      void closed.then(() => inflight.delete(closed));
      void handle(req, res);
    },
  );
  // The request timeout covers receiving the request; generation itself is bounded by max_tokens
  // and the context, and its responses must not be cut off by an idle timer.
  server.timeout = 0;

  // Connection caps. Node's own connection checker closes connections that do not send their
  // headers in time; here every connection is counted, per address too.
  let open = 0;
  let refused = 0;
  const perAddress = new Map<string, number>();
  const overflow = new Set<Socket>();
  const conns = (): ConnectionStats => ({ open, overflow: overflow.size, refused });
  server.on('connection', (socket: Socket) => {
    const addr = addressKey(socket);
    const fromAddr = perAddress.get(addr) ?? 0;
    if (open < maxConnections && fromAddr < maxPerAddress) {
      open++;
      perAddress.set(addr, fromAddr + 1);
      socket.once('close', () => {
        open--;
        const n = perAddress.get(addr)! - 1;
        if (n === 0) perAddress.delete(addr);
        else perAddress.set(addr, n);
      });
      return;
    }
    if (overflow.size >= OVERFLOW_RESERVE || draining) {
      refused++;
      socket.destroy();
      return;
    }
    overflow.add(socket);
    const timer = setTimeout(() => socket.destroy(), Math.min(OVERFLOW_TIMEOUT_MS, headerTimeoutMs));
    timer.unref();
    socket.once('close', () => {
      overflow.delete(socket);
      clearTimeout(timer);
    });
  });

  return {
    get modelId(): string {
      if (loaded) return loaded.modelId;
      if (options.modelId !== undefined) return options.modelId;
      throw new Error('the model is still loading: its id is not known yet');
    },
    get scheduler(): Scheduler {
      if (loaded) return loaded.scheduler;
      throw new Error('the model is still loading: there is no scheduler yet');
    },
    ready,
    connections: conns,
    listen(port: number | string = 8080, host = '127.0.0.1') {
      return new Promise((resolve, reject) => {
        const onError = (err: NodeJS.ErrnoException): void =>
          reject(typeof port === 'string' ? listenError(port, 0, err) : listenError(host, port, err));
        server.once('error', onError);
        const onListening = (): void => {
          server.off('error', onError);
          if (typeof port === 'string') return resolve({ url: `unix:${port}` });
          const a = server.address() as AddressInfo;
          const h = a.family === 'IPv6' ? `[${a.address}]` : a.address;
          resolve({ url: `http://${h}:${a.port}` });
        };
        if (typeof port === 'string') server.listen(port, onListening);
        else server.listen(port, host, onListening);
      });
    },
    async close(graceMs = 10_000) {
      draining = true;
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      if (loaded) await loaded.scheduler.close(graceMs);
      // Every generation has ended and written its last bytes; give them a moment to leave.
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.all(inflight), new Promise((resolve) => (timer = setTimeout(resolve, FLUSH_GRACE_MS)))]);
      clearTimeout(timer);
      server.closeAllConnections();
      for (const s of overflow) s.destroy();
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
