/**
 * The OpenAI-compatible HTTP server on node:http: the request pipeline (route lookup, overflow
 * connections, API-key check, 404/405, draining), connection limits, listening and graceful
 * shutdown. The endpoints themselves live in routes/*.ts, one module per group, and see the server
 * through a ServerContext (context.ts).
 *
 *   GET  /health                 liveness and scheduler load (no API key needed)
 *   GET  /v1/models              the one served model (under each of its names)
 *   GET  /v1/models/{id}
 *   POST /v1/completions
 *   POST /v1/chat/completions
 *   POST /v1/embeddings          (also /embeddings)
 *   POST /completion             llama-server's native completion (also /completions)
 *   POST /tokenize, /detokenize
 *   GET  /props, /slots, /metrics
 *   GET  /                       the chat page (unless webui is false; no API key needed)
 *
 * Requests never name files: the model is fixed when the server is created, and `model` in a
 * request must be its id or one of its aliases. The model may still be loading when the server starts listening (a
 * promise): until it is ready, /health says "loading" and every other route answers 503.
 *
 * Limits. With an API key set, every route but /health needs it, unknown ones too (404 and 405
 * tell nothing to a client without the key). At most `maxConnections` connections are served, and
 * at most `maxConnectionsPerAddress` from one address; beyond that a few more are let in to answer
 * /health only (everything else on them gets 503 and the connection is closed), and the rest are
 * closed at once. A connection must send its request headers within `headerTimeoutMs`.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import * as path from 'node:path';
import { AbortError } from '../errors.js';
import type { LanguageModel } from '../language-model.js';
import { DEFAULT_CHAT_TEMPLATE, type ServerChatTemplate } from './chat-template-file.js';
import { addressKey, notFound, type ConnectionStats, type Loaded, type ServerContext } from './context.js';
import { Cors } from './cors.js';
import { listenError, RequestError } from './errors.js';
import { LiveSequences } from './live.js';
import { Metrics } from './metrics.js';
import type { Logger } from './request-log.js';
import { DEFAULT_MAX_CHARS_PER_TOKEN, PromptEncoder } from './prompt.js';
import { sendError, type ErrorReporting } from './respond.js';
import { Router } from './router.js';
import { health, healthRoutes } from './routes/health.js';
import { embeddingRoutes } from './routes/embeddings.js';
import { llamaRoutes } from './routes/llama.js';
import { metricsRoutes } from './routes/metrics.js';
import { modelRoutes } from './routes/models.js';
import { openaiRoutes } from './routes/openai.js';
import { loadWebUi, webuiRoutes } from './routes/webui.js';
import { MAX_TIMER_MS, resolveLimits, type SchedulerLane, type SchedulerLimits } from '../generate/scheduler.js';

export type { ConnectionStats } from './context.js';

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
  /** More names clients may pass as `model` (listed by /v1/models after the id). */
  readonly aliases?: readonly string[];
  /** Origins whose browser pages may call the server (`*`: any); none by default. */
  readonly corsOrigins?: readonly string[];
  /** Writes one line per request (method, path, status, tokens, duration, client). */
  readonly requestLog?: Logger;
  /** Serve the chat page at `/`. Default true. */
  readonly webui?: boolean;
}

export interface GrokServer {
  /** Throws while a model given as a promise is loading, unless `modelId` was given. */
  readonly modelId: string;
  /** Throws while a model given as a promise is loading. */
  readonly scheduler: SchedulerLane;
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

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
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
  if (!(requestTimeoutMs === Infinity || (Number.isSafeInteger(requestTimeoutMs) && requestTimeoutMs >= 1 && requestTimeoutMs <= MAX_TIMER_MS))) {
    throw new RangeError(`requestTimeoutMs must be a whole number of ms from 1 to ${MAX_TIMER_MS}, or Infinity; got ${requestTimeoutMs}`);
  }
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
  const aliases = [...new Set(options.aliases ?? [])];
  for (const a of aliases) if (a === '' || /[\s/]/.test(a)) throw new RangeError(`server option aliases: ${JSON.stringify(a)} is not a model name (no spaces or slashes)`);
  const cors = new Cors(options.corsOrigins ?? []);
  const webui = options.webui ?? true;
  const webuiFiles = webui ? loadWebUi() : undefined;
  let draining = false;

  let loaded: Loaded | undefined;
  let loadFailed = false;
  const attach = (lm: LanguageModel): void => {
    const modelId = options.modelId ?? defaultModelId(lm);
    loaded = { lm, modelId, names: [modelId, ...aliases.filter((a) => a !== modelId)], scheduler: lm.openLane(limits), prompts: new PromptEncoder(lm, maxCharsPerToken) };
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

  function authorized(req: http.IncomingMessage): boolean {
    if (!keyDigest) return true;
    const m = /^Bearer\s+(\S+)\s*$/i.exec(req.headers.authorization ?? '');
    // Hash both sides first: equal-length digests make the comparison constant-time whatever the key's length.
    return m !== null && timingSafeEqual(digest(m[1]!), keyDigest);
  }

  const ctx: ServerContext = {
    limits,
    maxBodyBytes: maxBody,
    maxN,
    requestTimeoutMs,
    template,
    created,
    configuredModelId: options.modelId,
    onInternal,
    live: new LiveSequences(),
    metrics: new Metrics(),
    webui,
    loaded: () => loaded,
    loadFailed: () => loadFailed,
    draining: () => draining,
    connections: () => conns(),
  };
  const router = new Router().add(
    ...healthRoutes(ctx),
    ...modelRoutes(ctx),
    ...openaiRoutes(ctx),
    ...embeddingRoutes(ctx),
    ...llamaRoutes(ctx),
    ...metricsRoutes(ctx),
    ...(webuiFiles ? webuiRoutes(webuiFiles) : []),
  );

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const pathname = (req.url ?? '/').split('?')[0]!;
    let reporting: ErrorReporting = { onInternal };
    try {
      const found = router.match(pathname);
      const route = found?.route;
      if (overflow.has(req.socket)) {
        // A connection over the caps: health only, then it closes.
        if (route?.health && req.method === 'GET') return health(ctx, res, { Connection: 'close' });
        throw new RequestError(503, 'too many connections; retry later', 'server_error', 'too_many_connections', null, { 'Retry-After': '1', Connection: 'close' });
      }
      // A browser's preflight carries no credentials: answered (for allowed origins) before the key.
      if (cors.apply(req, res)) return;
      // The key first: without it, nothing (not even which routes exist) but the open routes.
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
      reporting = { onInternal, promptParam: pathname.endsWith('/chat/completions') ? 'messages' : pathname.endsWith('/embeddings') ? 'input' : 'prompt' };
      await handler(req, res, found!.params);
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
      const started = performance.now();
      const client = addressKey(req.socket);
      res.once('close', () => {
        // A response cut off before its headers went out never reached the client: status 0.
        const status = res.headersSent ? res.statusCode : 0;
        ctx.metrics.request(status);
        if (!options.requestLog) return;
        const t = ctx.live.tokensOf(res);
        options.requestLog.request({
          method: req.method ?? '',
          path: (req.url ?? '/').split('?')[0]!,
          status,
          promptTokens: t.prompt,
          completionTokens: t.completion,
          durationMs: performance.now() - started,
          client,
        });
      });
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
    get scheduler(): SchedulerLane {
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
