/**
 * What a route handler sees of the server: its settings, the model once loaded, and the state
 * /health reports. createServer (http.ts) builds one per server; handlers (routes/*.ts) take it as
 * their first argument instead of closing over createServer's locals.
 */
import type * as http from 'node:http';
import type { Socket } from 'node:net';
import type { LanguageModel } from '../language-model.js';
import type { ServerChatTemplate } from './chat-template-file.js';
import { RequestError } from './errors.js';
import type { LiveSequences } from './live.js';
import type { Metrics } from './metrics.js';
import type { PromptEncoder } from './prompt.js';
import type { SchedulerLane, SchedulerLimits } from '../generate/scheduler.js';

export interface ConnectionStats {
  /** Connections being served. */
  readonly open: number;
  /** Connections over a cap, let in to answer /health only. */
  readonly overflow: number;
  /** Connections closed at once because every cap was full. */
  readonly refused: number;
}

/** What exists once the model is loaded. */
export interface Loaded {
  readonly lm: LanguageModel;
  readonly modelId: string;
  /** Every name a request may give as `model`: the id, then the aliases. */
  readonly names: readonly string[];
  readonly scheduler: SchedulerLane;
  readonly prompts: PromptEncoder;
}

export interface ServerContext {
  readonly limits: SchedulerLimits;
  readonly maxBodyBytes: number;
  /** Largest `n`. */
  readonly maxN: number;
  readonly requestTimeoutMs: number;
  readonly template: ServerChatTemplate;
  /** When the server was created, in Unix seconds (the models' `created`). */
  readonly created: number;
  /** The id given in the options, known before the model loads. */
  readonly configuredModelId: string | undefined;
  readonly onInternal: (err: unknown) => void;
  /** Sequences of requests still being answered (/slots, KV use, log token counts). */
  readonly live: LiveSequences;
  readonly metrics: Metrics;
  /** The chat page is served at `/`. */
  readonly webui: boolean;
  /** The loaded model, or undefined while it loads (or after it failed to). */
  loaded(): Loaded | undefined;
  loadFailed(): boolean;
  draining(): boolean;
  connections(): ConnectionStats;
}

/** The loaded model, or a 503 while it loads. */
export function core(ctx: ServerContext): Loaded {
  const c = ctx.loaded();
  if (c) return c;
  if (ctx.loadFailed()) throw new RequestError(503, 'the model failed to load', 'server_error', 'server_unavailable');
  throw new RequestError(503, 'the model is still loading; retry shortly', 'server_error', 'model_loading', null, { 'Retry-After': '5' });
}

/** A request's `model` must name the served model (its id or an alias). */
export function checkModel(c: Loaded, id: string): void {
  if (!c.names.includes(id)) {
    throw new RequestError(404, `The model \`${id}\` does not exist; this server serves \`${c.modelId}\``, 'invalid_request_error', 'model_not_found', 'model');
  }
}

/** One key per remote address (an IPv4 client of a dual-stack socket is the same as over IPv4). */
export function addressKey(socket: Socket): string {
  return (socket.remoteAddress ?? 'unknown').replace(/^::ffff:(?=\d+\.\d+\.\d+\.\d+$)/, '');
}

export function notFound(req: http.IncomingMessage): RequestError {
  return new RequestError(404, `Unknown request URL: ${req.method} ${req.url}`, 'invalid_request_error', 'unknown_url');
}
