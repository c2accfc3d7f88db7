/** `grok-ts serve`: the OpenAI-compatible HTTP server over one loaded model. */
import { UsageError } from '../../errors.js';
import type { LanguageModel } from '../../language-model.js';
import { createServer, DEFAULT_HEADER_TIMEOUT_MS, DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS } from '../../server/http.js';
import { loadChatTemplateFile } from '../../server/chat-template-file.js';
import { ListenError } from '../../server/errors.js';
import { DEFAULT_MAX_CHARS_PER_TOKEN } from '../../server/prompt.js';
import { LOG_LEVELS, Logger, type LogFormat, type LogLevel } from '../../server/request-log.js';
import { DEFAULT_LIMITS } from '../../generate/scheduler.js';
import { num, str, type Command, type CommandContext } from '../command.js';
import { MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.js';

export const API_KEY_ENV = 'GROK_TS_API_KEY';

/** `10s`, `500ms`, `2m` or a bare number of seconds → milliseconds. */
export function parseDuration(raw: string, flag: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)?$/.exec(raw.trim());
  if (!m) throw new UsageError(`--${flag} must be a duration such as 10s, 500ms or 2m, got "${raw}"`, flag);
  const scale = m[2] === 'ms' ? 1 : m[2] === 'm' ? 60_000 : 1000;
  return Math.round(Number(m[1]) * scale);
}

function duration(ctx: CommandContext, flag: string, fallbackMs: number): number {
  const raw = str(ctx, flag);
  return raw === undefined ? fallbackMs : parseDuration(raw, flag);
}

/** Bind failures that say the --host value is wrong (not that the port is taken). */
const BAD_HOST = new Set(['EADDRNOTAVAIL', 'ENOTFOUND', 'EAI_AGAIN', 'EAI_FAIL', 'EAI_NONAME', 'EAFNOSUPPORT', 'EINVAL']);

/** The fields of `o` that are set. */
function defined<T extends object>(o: T): { [K in keyof T]?: Exclude<T[K], undefined> } {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as { [K in keyof T]?: Exclude<T[K], undefined> };
}

/** A repeatable string flag's values (none: empty). */
function list(ctx: CommandContext, flag: string): string[] {
  const v = ctx.values[flag];
  return v === undefined || typeof v === 'boolean' ? [] : Array.isArray(v) ? v : [v];
}

function oneOf<T extends string>(ctx: CommandContext, flag: string, allowed: readonly T[], fallback: T): T {
  const v = str(ctx, flag);
  if (v === undefined) return fallback;
  if (!(allowed as readonly string[]).includes(v)) throw new UsageError(`--${flag} must be one of ${allowed.join(', ')}, got "${v}"`, flag);
  return v as T;
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'OpenAI- and llama-server-compatible HTTP server with request batching and a chat page',
  help: `Usage: grok-ts serve [--model PATH] [--host 127.0.0.1] [--port 8080] [options]

Serves the model over HTTP with the OpenAI API: GET /v1/models, POST /v1/completions,
POST /v1/chat/completions (streaming with server-sent events), POST /v1/embeddings; llama-server's
POST /completion, /tokenize, /detokenize and GET /props, /slots, /metrics (Prometheus); GET /health;
and a chat page at / (open it in a browser). Concurrent requests are batched into one forward pass
per step. The port is bound before the model loads (a
port in use fails at once, exit 1; a bad --host exits 2); while it loads, /health answers 503
"loading" and so does every other route. Prints "listening on URL" once ready; SIGTERM or Ctrl-C
stops taking requests, lets running ones finish (--shutdown-grace), and exits.

Grok-1 is a base model: chat messages are written as a plain transcript ("User: …", "Assistant: …")
that the model continues; --chat-template replaces that format.

      --host HOST            interface to bind (default 127.0.0.1: this machine only)
      --port N               port (default 8080; 0 picks a free one)
      --api-key KEY          require "Authorization: Bearer KEY" on every route but /health; prefer
                             the ${API_KEY_ENV} environment variable (flags show up in process lists)
      --model-id NAME        the id clients pass as "model" (default: fortune-demo for the demo,
                             else the checkpoint's directory or file name)
      --alias NAME           another name clients may pass as "model" (repeatable)
      --cors ORIGIN          let browser pages from ORIGIN (e.g. http://localhost:3000; * for any)
                             call the API (repeatable; off by default)
      --no-webui             do not serve the chat page at /
      --log-format F         request logs on stderr as text (default) or json
      --log-level L          debug, info (default: one line per request), warn (only failures
                             and warnings) or error
      --chat-template FILE   chat format as JSON: {"system": "{content}\\n\\n", "user": "User: {content}\\n\\n",
                             "assistant": "Assistant: {content}\\n\\n", "assistant_start": "Assistant:",
                             "stop": ["\\nUser:"]}
      --shutdown-grace T     on SIGTERM, how long running requests may finish (default 10s)

Limits (durations: 10s, 500ms, 2m):
      --max-batch N          most sequences in one forward pass (default ${DEFAULT_LIMITS.maxBatch})
      --max-batch-per-request N  most batch slots one request's choices (prompts × n) hold at
                             once; the rest wait their turn (default: half of --max-batch, rounded up)
      --max-queue N          most sequences waiting; beyond it requests get 429 (default ${DEFAULT_LIMITS.maxQueue})
      --max-n N              largest n per request (default 16, at most --max-queue)
      --queue-timeout T      a request still waiting after T gets 503 (default ${DEFAULT_LIMITS.queueTimeoutMs / 1000}s)
      --request-timeout T    a request still running after T is ended with 504 (default 10m)
      --stall-timeout T      a stream whose client reads nothing for T is ended with a
                             "stream_stalled" error and its connection closed; meanwhile it is out
                             of the batch (default ${DEFAULT_LIMITS.stallTimeoutMs / 1000}s)
      --max-paused N         most sequences kept out of the batch with their KV caches while their
                             clients are slow; past it the longest-stalled stream is ended
                             (default: --max-batch)
      --max-body-bytes N     largest request body (default 1048576)
      --max-chars-per-token N  prompt text tokenised at most: N characters per token of the
                             model's context; longer prompts get 400 before tokenising (default ${DEFAULT_MAX_CHARS_PER_TOKEN})
      --max-connections N    connections served at once (default ${DEFAULT_MAX_CONNECTIONS}); a few more are let in
                             to answer /health only, the rest are closed at once
      --max-connections-per-address N  connections from one client address (default
                             ${DEFAULT_MAX_CONNECTIONS_PER_ADDRESS}; behind a reverse proxy every client has the proxy's address)
      --header-timeout T     a connection must send its request headers within T (default ${DEFAULT_HEADER_TIMEOUT_MS / 1000}s)

${MODEL_HELP}
`,
  options: {
    ...MODEL_OPTIONS,
    host: { type: 'string' },
    port: { type: 'string' },
    'api-key': { type: 'string' },
    'model-id': { type: 'string' },
    'max-batch': { type: 'string' },
    'max-batch-per-request': { type: 'string' },
    'max-queue': { type: 'string' },
    'max-n': { type: 'string' },
    'max-body-bytes': { type: 'string' },
    'max-chars-per-token': { type: 'string' },
    'max-paused': { type: 'string' },
    'max-connections': { type: 'string' },
    'max-connections-per-address': { type: 'string' },
    'queue-timeout': { type: 'string' },
    'request-timeout': { type: 'string' },
    'stall-timeout': { type: 'string' },
    'header-timeout': { type: 'string' },
    'shutdown-grace': { type: 'string' },
    'chat-template': { type: 'string' },
    alias: { type: 'string', multiple: true },
    cors: { type: 'string', multiple: true },
    'no-webui': { type: 'boolean' },
    'log-format': { type: 'string' },
    'log-level': { type: 'string' },
  },
  async run(ctx) {
    const host = str(ctx, 'host') ?? '127.0.0.1';
    const port = num(ctx, 'port', { integer: true, min: 0, max: 65535 }) ?? 8080;
    const apiKey = str(ctx, 'api-key') ?? process.env[API_KEY_ENV];
    const count = (flag: string, max: number): number | undefined => num(ctx, flag, { integer: true, min: 1, max });
    const positiveDuration = (flag: string, fallbackMs: number): number => {
      const ms = duration(ctx, flag, fallbackMs);
      if (ms < 1) throw new UsageError(`--${flag} must be positive`, flag);
      return ms;
    };
    const limits = {
      maxBatch: count('max-batch', 1024),
      maxBatchPerRequest: count('max-batch-per-request', 1024),
      maxQueue: count('max-queue', 100_000),
      maxN: count('max-n', 128),
      maxBodyBytes: num(ctx, 'max-body-bytes', { integer: true, min: 1024, max: 1 << 30 }),
      maxCharsPerToken: count('max-chars-per-token', 1024),
      maxPaused: count('max-paused', 100_000),
      maxConnections: count('max-connections', 1_000_000),
      maxConnectionsPerAddress: count('max-connections-per-address', 1_000_000),
      queueTimeoutMs: positiveDuration('queue-timeout', DEFAULT_LIMITS.queueTimeoutMs),
      requestTimeoutMs: positiveDuration('request-timeout', 10 * 60_000),
      stallTimeoutMs: positiveDuration('stall-timeout', DEFAULT_LIMITS.stallTimeoutMs),
      headerTimeoutMs: positiveDuration('header-timeout', DEFAULT_HEADER_TIMEOUT_MS),
    };
    const graceMs = duration(ctx, 'shutdown-grace', 10_000);
    const templateFile = str(ctx, 'chat-template');
    const chatTemplate = templateFile !== undefined ? loadChatTemplateFile(templateFile) : undefined; // before loading weights: fail fast
    const modelId = str(ctx, 'model-id');
    const aliases = list(ctx, 'alias');
    for (const a of aliases) if (a === '' || /[\s/]/.test(a)) throw new UsageError(`--alias: "${a}" is not a model name (no spaces or slashes)`, 'alias');
    const corsOrigins = list(ctx, 'cors');
    for (const o of corsOrigins) {
      if (o !== '*' && !/^https?:\/\/[^/\s]+$/.test(o.replace(/\/+$/, ''))) throw new UsageError(`--cors: "${o}" is not an origin such as http://localhost:3000 (or *)`, 'cors');
    }
    const logger = new Logger({
      format: oneOf<LogFormat>(ctx, 'log-format', ['text', 'json'], 'text'),
      level: oneOf<LogLevel>(ctx, 'log-level', LOG_LEVELS, 'info'),
      write: (line) => ctx.stderr.write(line),
    });
    /** Messages about the server itself: plain lines as before, or log records in JSON. */
    const note = (level: LogLevel, text: string): void => {
      if (logger.format === 'json') logger.message(level, text);
      else if (logger.enabled(level)) ctx.stderr.write(`grok-ts serve: ${text}\n`);
    };

    // Bind first, then load: a port in use or a bad host is reported at once, not after minutes of
    // loading; requests that arrive meanwhile are answered 503 "loading".
    let provide!: (lm: LanguageModel) => void;
    let failLoad!: (err: unknown) => void;
    const model = new Promise<LanguageModel>((resolve, reject) => {
      provide = resolve;
      failLoad = reject;
    });
    const server = createServer(model, {
      ...defined(limits),
      ...(modelId !== undefined ? { modelId } : {}),
      ...(apiKey ? { apiKey } : {}),
      ...(chatTemplate ? { chatTemplate } : {}),
      aliases,
      corsOrigins,
      webui: ctx.values['no-webui'] !== true,
      requestLog: logger,
      log: (line) => note('error', line),
    });
    let url: string;
    try {
      ({ url } = await server.listen(port, host));
    } catch (err) {
      if (err instanceof ListenError && BAD_HOST.has(err.reason)) throw new UsageError(`--host: ${err.message}`, 'host');
      throw err;
    }
    let lm: LanguageModel;
    try {
      note('info', `bound to ${url}; loading the model (requests get 503 until it is ready)`);
      lm = await openModel(ctx);
    } catch (err) {
      failLoad(err);
      await server.close(0);
      throw err;
    }
    try {
      provide(lm);
      await server.ready;
      const stopped = new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      if (!ctx.signal.aborted) ctx.stdout.write(`listening on ${url}\n`);
      if (!isLoopback(host) && !apiKey) {
        note('warn', `warning: listening on ${host} without an API key; anyone who can reach this port can use the model (set ${API_KEY_ENV})`);
      }
      await stopped;
      note('info', `shutting down (up to ${graceMs} ms for running requests)`);
      await server.close(graceMs);
      return 0;
    } finally {
      await lm.close();
    }
  },
};
