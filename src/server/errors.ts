/**
 * The server's errors and the one place where any error becomes an OpenAI error body and an HTTP
 * status: `{"error": {"message", "type", "param", "code"}}`. Library errors (UsageError,
 * ContextLengthError, QueueFullError, ...) are mapped here; server-only conditions (unknown route, body too large,
 * full queue, bad API key) are RequestErrors that carry their own status.
 */
import { AbortError, ContextLengthError, GrokError, QueueFullError, QueueTimeoutError, StreamStalledError, UnsupportedError, UsageError } from '../errors.js';

/** OpenAI's error `type` values that this server uses. */
export type ApiErrorType = 'invalid_request_error' | 'authentication_error' | 'not_found_error' | 'rate_limit_error' | 'server_error';

/** A request the server refuses for a reason with its own HTTP status. */
export class RequestError extends GrokError {
  constructor(
    readonly status: number,
    message: string,
    readonly type: ApiErrorType,
    /** OpenAI's machine-readable code, e.g. `model_not_found`. */
    readonly apiCode: string | null = null,
    readonly param: string | null = null,
    readonly headers: Readonly<Record<string, string>> = {},
  ) {
    super('request_error', message);
  }
}

export interface ErrorResponse {
  readonly status: number;
  readonly headers: Readonly<Record<string, string>>;
  readonly body: { error: { message: string; type: ApiErrorType; param: string | null; code: string | null } };
}

/**
 * Maps any thrown value to the response a client gets. Errors that are not ours are reported as a
 * bare internal error (their text may hold paths or stack details a client has no business seeing);
 * `onInternal` receives them for the server log. `promptParam` names the field a context overflow
 * blames (`prompt` or `messages`).
 */
export function toErrorResponse(err: unknown, opts: { promptParam?: 'prompt' | 'messages' | 'input'; onInternal?: (err: unknown) => void } = {}): ErrorResponse {
  const make = (status: number, message: string, type: ApiErrorType, param: string | null = null, code: string | null = null, headers: Record<string, string> = {}): ErrorResponse => ({
    status,
    headers,
    body: { error: { message, type, param, code } },
  });
  if (err instanceof RequestError) return make(err.status, err.message, err.type, err.param, err.apiCode, { ...err.headers });
  const retry = (s: number) => ({ 'Retry-After': String(Math.max(1, Math.ceil(s))) });
  if (err instanceof QueueFullError) return make(429, `the server is busy: ${err.queued} sequences are waiting (limit ${err.limit}); retry later`, 'rate_limit_error', null, 'queue_full', retry(err.retryAfterSeconds));
  if (err instanceof QueueTimeoutError) return make(503, err.message, 'server_error', null, 'server_unavailable', retry(err.retryAfterSeconds));
  if (err instanceof StreamStalledError) return make(408, err.message, 'server_error', null, 'stream_stalled');
  if (err instanceof ContextLengthError) return make(400, err.message, 'invalid_request_error', opts.promptParam ?? null, 'context_length_exceeded');
  if (err instanceof UsageError) return make(400, err.message, 'invalid_request_error', err.param ?? null, 'invalid_value');
  if (err instanceof UnsupportedError) return make(400, err.message, 'invalid_request_error', null, 'unsupported');
  // Only a server shutdown aborts a request whose client is still there.
  if (err instanceof AbortError) return make(503, err.message, 'server_error', null, 'server_unavailable', { 'Retry-After': '1' });
  opts.onInternal?.(err);
  return make(500, 'the server hit an internal error while handling the request', 'server_error', null, 'internal_error');
}

/** The server could not bind its address: the port is taken, the host is not this machine's, ... */
export class ListenError extends GrokError {
  constructor(
    readonly host: string,
    readonly port: number,
    /** The system's error code: EADDRINUSE, EACCES, EADDRNOTAVAIL, ENOTFOUND, ... */
    readonly reason: string,
    message: string,
  ) {
    super('listen_error', message);
  }
}

/** Why a bind failed, in words, from the system's error code. */
export function listenError(host: string, port: number, err: NodeJS.ErrnoException): ListenError {
  const code = err.code ?? 'UNKNOWN';
  const where = port === 0 && host.includes('/') ? host : `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const why: Record<string, string> = {
    EADDRINUSE: 'the address is already in use (is another server running on that port?)',
    EACCES: 'permission denied (ports below 1024 need privileges)',
    EADDRNOTAVAIL: `${host} is not an address of this machine`,
    ENOTFOUND: `no such host: ${host}`,
    EAI_AGAIN: `the host name ${host} could not be resolved`,
    EAFNOSUPPORT: `this machine does not support ${host}'s address family`,
    EINVAL: `${host} is not a valid address to listen on`,
  };
  return new ListenError(host, port, code, `cannot listen on ${where}: ${why[code] ?? err.message}`);
}
