/** Writing JSON, errors and server-sent events to a node:http response. */
import type { ServerResponse } from 'node:http';
import { toErrorResponse } from './errors.js';

export function sendJson(res: ServerResponse, status: number, body: unknown, headers: Readonly<Record<string, string>> = {}): void {
  if (res.headersSent || res.destroyed) {
    if (!res.writableEnded) res.end();
    return;
  }
  const text = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(text), ...headers });
  res.end(text);
}

export interface ErrorReporting {
  readonly promptParam?: 'prompt' | 'messages' | 'input';
  readonly onInternal?: (err: unknown) => void;
}

/** Answers with the OpenAI error body; inside an event stream that already began, as a last `data:` event. */
export function sendError(res: ServerResponse, err: unknown, reporting: ErrorReporting = {}): void {
  const { status, headers, body } = toErrorResponse(err, reporting);
  if (res.headersSent) {
    if (!res.writableEnded && !res.destroyed) res.end(sseEvent(body));
    return;
  }
  sendJson(res, status, body, headers);
}

export const SSE_HEADERS = {
  'Content-Type': 'text/event-stream; charset=utf-8',
  'Cache-Control': 'no-cache',
  Connection: 'keep-alive',
  // Proxies (nginx) would otherwise buffer the stream.
  'X-Accel-Buffering': 'no',
} as const;

export function sseEvent(data: unknown): string {
  return `data: ${typeof data === 'string' ? data : JSON.stringify(data)}\n\n`;
}
