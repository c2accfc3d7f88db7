/**
 * HTTP to an OpenAI-compatible server: JSON requests with retries on 429/503 (honouring
 * Retry-After, else exponential backoff), cancellation through an AbortSignal, server-sent events,
 * and the one place where an error response becomes one of the library's typed errors:
 *
 *   400 context_length_exceeded (or a message about the context length) → ContextLengthError
 *   400/404/422 otherwise                                               → UsageError (with its param)
 *   400 code unsupported                                                → UnsupportedError
 *   401/403, 429/503 after the retries, 5xx, no connection              → RemoteError (status, type, code)
 *   an aborted signal                                                   → AbortError
 */
import { AbortError, ContextLengthError, GrokError, UnsupportedError, UsageError } from '../errors.js';

/** A failure of the remote server or of the way to it, with what the server said. */
/** The longest server-sent event line accepted (a chunk is a few hundred bytes). */
const MAX_SSE_LINE_CHARS = 4 << 20;

export class RemoteError extends GrokError {
  constructor(
    message: string,
    /** The HTTP status (0: no response: refused, reset, DNS, timeout). */
    readonly status: number,
    /** The server's error type (OpenAI's `type`), e.g. `authentication_error`. */
    readonly type: string | null = null,
    /** The server's error code (OpenAI's `code`). */
    readonly apiCode: string | null = null,
    /** Seconds the server asked us to wait (Retry-After), when it did. */
    readonly retryAfter?: number,
  ) {
    super(status === 0 ? 'connection_error' : status === 401 || status === 403 ? 'authentication_error' : 'remote_error', message);
  }
}

export interface RetryPolicy {
  /** Retries after the first attempt on 429/503 (default 3). */
  readonly maxRetries: number;
  /** First backoff when the server gives no Retry-After (default 500 ms), doubled each retry. */
  readonly baseDelayMs: number;
  /** Longest wait, Retry-After included (default 30 s): a server asking for more gets the error instead. */
  readonly maxDelayMs: number;
}

export const DEFAULT_RETRY: RetryPolicy = { maxRetries: 3, baseDelayMs: 500, maxDelayMs: 30_000 };

export interface HttpClientOptions {
  readonly apiKey?: string;
  readonly headers?: Readonly<Record<string, string>>;
  readonly retry?: Partial<RetryPolicy>;
  /** Called before each retry (for logs and tests). */
  readonly onRetry?: (info: { attempt: number; delayMs: number; status: number }) => void;
}

/** Seconds from a Retry-After header: delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now = Date.now()): number | undefined {
  if (!value) return undefined;
  const v = value.trim();
  if (/^\d+(\.\d+)?$/.test(v)) return Number(v);
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, (t - now) / 1000);
}

/** Sleeps, or rejects with AbortError as soon as the signal aborts. */
function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(abortErrorOf(signal));
    const onAbort = () => {
      clearTimeout(timer);
      reject(abortErrorOf(signal!));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export function abortErrorOf(signal: AbortSignal): AbortError {
  const r: unknown = signal.reason;
  return r instanceof AbortError ? r : new AbortError();
}

interface ErrorBody {
  message?: unknown;
  type?: unknown;
  param?: unknown;
  code?: unknown;
}

/** The OpenAI error body `{"error": {...}}`, or what llama-server/vLLM send instead, as fields. */
function errorFields(body: unknown): { message?: string; type?: string; param?: string; code?: string } {
  const e = (typeof body === 'object' && body !== null ? ((body as { error?: unknown }).error ?? body) : undefined) as ErrorBody | string | undefined;
  if (typeof e === 'string') return { message: e };
  if (!e || typeof e !== 'object') return {};
  const s = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'number' ? String(v) : undefined);
  const out: { message?: string; type?: string; param?: string; code?: string } = {};
  const message = s(e.message) ?? s((body as { detail?: unknown }).detail);
  if (message !== undefined) out.message = message;
  const type = s(e.type);
  if (type !== undefined) out.type = type;
  const param = s(e.param);
  if (param !== undefined) out.param = param;
  const code = s(e.code);
  if (code !== undefined) out.code = code;
  return out;
}

/** Maps an error response to the library's typed error (see the module comment). */
export function errorFromResponse(status: number, body: unknown, url: string, retryAfter?: number): GrokError {
  const f = errorFields(body);
  const message = f.message ?? `HTTP ${status}`;
  if (status === 400 || status === 413 || status === 422 || status === 404) {
    // grok-ts and OpenAI say context_length_exceeded; vLLM and llama-server say it in words.
    if (f.code === 'context_length_exceeded' || /context length|context window|maximum context|exceeds the available context|context size/i.test(message)) {
      // llama-server also sends the numbers as fields
      const b = ((body as { error?: Record<string, unknown> } | null)?.error ?? {}) as Record<string, unknown>;
      if (typeof b.n_prompt_tokens === 'number' && typeof b.n_ctx === 'number') return new ContextLengthError(b.n_prompt_tokens, b.n_ctx, `the server said: ${message}`);
      const nums = [...message.matchAll(/(\d+)\s*tokens?/g)].map((m) => Number(m[1]));
      const prompt = /prompt has (\d+)/.exec(message)?.[1] ?? /requested (\d+)/.exec(message)?.[1];
      const ctx = /context is (\d+)/.exec(message)?.[1] ?? /maximum context length is (\d+)/.exec(message)?.[1];
      return new ContextLengthError(Number(prompt ?? nums[0] ?? 0), Number(ctx ?? nums[1] ?? 0), `the server said: ${message}`);
    }
    if (f.code === 'unsupported' || f.code === 'unsupported_parameter') return new UnsupportedError(f.param ?? 'parameter', `${url}: ${message}`);
    if (status !== 404 || f.code === 'model_not_found') return new UsageError(`${url}: ${message}`, f.param ?? (f.code === 'model_not_found' ? 'model' : undefined));
  }
  return new RemoteError(`${url}: HTTP ${status}: ${message}`, status, f.type ?? null, f.code ?? null, retryAfter);
}

export class HttpClient {
  private readonly retry: RetryPolicy;

  constructor(private readonly opts: HttpClientOptions = {}) {
    this.retry = { ...DEFAULT_RETRY, ...opts.retry };
  }

  private headers(json: boolean): Record<string, string> {
    return {
      ...(json ? { 'Content-Type': 'application/json' } : {}),
      Accept: 'application/json, text/event-stream',
      ...(this.opts.apiKey ? { Authorization: `Bearer ${this.opts.apiKey}` } : {}),
      ...this.opts.headers,
    };
  }

  /**
   * Sends a request and returns the response once its status is 2xx; 429 and 503 are retried
   * (the body of a refused attempt is discarded), any other status becomes a typed error.
   */
  async send(method: 'GET' | 'POST', url: string, body: unknown, signal: AbortSignal | undefined): Promise<Response> {
    for (let attempt = 0; ; attempt++) {
      if (signal?.aborted) throw abortErrorOf(signal);
      let res: Response;
      try {
        res = await fetch(url, { method, headers: this.headers(body !== undefined), ...(body !== undefined ? { body: JSON.stringify(body) } : {}), ...(signal ? { signal } : {}) });
      } catch (err) {
        if (signal?.aborted) throw abortErrorOf(signal);
        const cause = (err as { cause?: { code?: string; message?: string } }).cause;
        throw new RemoteError(`${url}: no response (${cause?.code ?? cause?.message ?? (err as Error).message})`, 0);
      }
      if (res.ok) return res;
      const retryAfter = parseRetryAfter(res.headers.get('retry-after'));
      const text = await res.text().catch(() => '');
      let parsed: unknown = text;
      try {
        parsed = JSON.parse(text);
      } catch {
        // a plain-text error body
      }
      if ((res.status === 429 || res.status === 503) && attempt < this.retry.maxRetries) {
        const delayMs = retryAfter !== undefined ? retryAfter * 1000 : this.retry.baseDelayMs * 2 ** attempt;
        if (delayMs <= this.retry.maxDelayMs) {
          this.opts.onRetry?.({ attempt: attempt + 1, delayMs, status: res.status });
          await sleep(delayMs, signal);
          continue;
        }
      }
      throw errorFromResponse(res.status, parsed, url, retryAfter);
    }
  }

  async json(method: 'GET' | 'POST', url: string, body: unknown, signal: AbortSignal | undefined): Promise<unknown> {
    const res = await this.send(method, url, body, signal);
    try {
      return await res.json();
    } catch (err) {
      if (signal?.aborted) throw abortErrorOf(signal);
      throw new RemoteError(`${url}: the response is not JSON (${(err as Error).message})`, res.status);
    }
  }
}

/**
 * The `data:` payloads of a server-sent-event stream, parsed as JSON, until `[DONE]` or the end.
 * An `error` object inside the stream (how OpenAI-style servers report a failure after the
 * headers) is thrown as a typed error.
 */
export async function* sseEvents(res: Response, url: string, signal: AbortSignal | undefined): AsyncGenerator<Record<string, unknown>> {
  if (!res.body) throw new RemoteError(`${url}: the streamed response has no body`, res.status);
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let data: string[] = [];
  try {
    for (;;) {
      let chunk: ReadableStreamReadResult<Uint8Array>;
      try {
        chunk = await reader.read();
      } catch (err) {
        if (signal?.aborted) throw abortErrorOf(signal);
        throw new RemoteError(`${url}: the stream broke off (${(err as Error).message})`, 0);
      }
      if (chunk.done) return;
      buf += decoder.decode(chunk.value, { stream: true });
      // A server that never ends a line must not grow this without bound.
      if (buf.length > MAX_SSE_LINE_CHARS && buf.indexOf('\n') < 0) throw new RemoteError(`${url}: an event line longer than ${MAX_SSE_LINE_CHARS} characters`, 0);
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        if (line.startsWith('data:')) {
          data.push(line.slice(5).replace(/^ /, ''));
          continue;
        }
        if (line !== '' || data.length === 0) continue;
        const payload = data.join('\n');
        data = [];
        if (payload === '[DONE]') return;
        let event: unknown;
        try {
          event = JSON.parse(payload);
        } catch {
          throw new RemoteError(`${url}: a streamed event is not JSON: ${payload.slice(0, 80)}`, res.status);
        }
        if (typeof event !== 'object' || event === null) continue;
        // An error after the headers: `{"error": {...}}` (OpenAI, grok-ts, llama-server) or vLLM's `{"object": "error", ...}`.
        const ev = event as { error?: { code?: unknown; type?: unknown }; object?: unknown; code?: unknown; type?: unknown };
        const e = ev.error ?? (ev.object === 'error' ? ev : undefined);
        if (e) throw errorFromResponse(typeof e.code === 'number' ? e.code : e.type === 'invalid_request_error' ? 400 : 500, event, url);
        yield event as Record<string, unknown>;
      }
    }
  } finally {
    // Stops the transfer when the consumer leaves early (abort, break).
    await reader.cancel().catch(() => {});
  }
}
