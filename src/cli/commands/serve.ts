/** `grok-ts serve`: the OpenAI-compatible HTTP server over one loaded model. */
import { UsageError } from '../../errors.js';
import { createServer } from '../../server/http.js';
import { loadChatTemplateFile } from '../../server/chat-template-file.js';
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

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '::1' || /^127\./.test(host);
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'OpenAI-compatible HTTP server (/v1/completions, /v1/chat/completions) with request batching',
  help: `Usage: grok-ts serve [--model PATH] [--host 127.0.0.1] [--port 8080] [options]

Serves the model over HTTP with the OpenAI API: GET /v1/models, POST /v1/completions,
POST /v1/chat/completions (streaming with server-sent events), and GET /health. Concurrent
requests are batched into one forward pass per step. Prints "listening on URL" once ready; SIGTERM
or Ctrl-C stops taking requests, lets running ones finish (--shutdown-grace), and exits.

Grok-1 is a base model: chat messages are written as a plain transcript ("User: …", "Assistant: …")
that the model continues; --chat-template replaces that format.

      --host HOST            interface to bind (default 127.0.0.1: this machine only)
      --port N               port (default 8080; 0 picks a free one)
      --api-key KEY          require "Authorization: Bearer KEY" on /v1 routes; prefer the
                             ${API_KEY_ENV} environment variable (flags show up in process lists)
      --model-id NAME        the id clients pass as "model" (default: fortune-demo for the demo,
                             else the checkpoint's directory or file name)
      --max-batch N          most sequences in one forward pass (default 16)
      --max-queue N          most sequences waiting; beyond it requests get 429 (default 64)
      --max-body-bytes N     largest request body (default 1048576)
      --queue-timeout T      a request still waiting after T gets 503 (default 60s)
      --request-timeout T    a request still running after T is ended with 504 (default 10m)
      --shutdown-grace T     on SIGTERM, how long running requests may finish (default 10s)
      --chat-template FILE   chat format as JSON: {"system": "{content}\\n\\n", "user": "User: {content}\\n\\n",
                             "assistant": "Assistant: {content}\\n\\n", "assistant_start": "Assistant:",
                             "stop": ["\\nUser:"]}

${MODEL_HELP}
`,
  options: {
    ...MODEL_OPTIONS,
    host: { type: 'string' },
    port: { type: 'string' },
    'api-key': { type: 'string' },
    'model-id': { type: 'string' },
    'max-batch': { type: 'string' },
    'max-queue': { type: 'string' },
    'max-body-bytes': { type: 'string' },
    'queue-timeout': { type: 'string' },
    'request-timeout': { type: 'string' },
    'shutdown-grace': { type: 'string' },
    'chat-template': { type: 'string' },
  },
  async run(ctx) {
    const host = str(ctx, 'host') ?? '127.0.0.1';
    const port = num(ctx, 'port', { integer: true, min: 0, max: 65535 }) ?? 8080;
    const apiKey = str(ctx, 'api-key') ?? process.env[API_KEY_ENV];
    const maxBatch = num(ctx, 'max-batch', { integer: true, min: 1, max: 1024 });
    const maxQueue = num(ctx, 'max-queue', { integer: true, min: 1, max: 100_000 });
    const maxBodyBytes = num(ctx, 'max-body-bytes', { integer: true, min: 1024, max: 1 << 30 });
    const queueTimeoutMs = duration(ctx, 'queue-timeout', 60_000);
    const requestTimeoutMs = duration(ctx, 'request-timeout', 10 * 60_000);
    const graceMs = duration(ctx, 'shutdown-grace', 10_000);
    if (queueTimeoutMs < 1) throw new UsageError('--queue-timeout must be positive', 'queue-timeout');
    if (requestTimeoutMs < 1) throw new UsageError('--request-timeout must be positive', 'request-timeout');
    const templateFile = str(ctx, 'chat-template');
    const chatTemplate = templateFile !== undefined ? loadChatTemplateFile(templateFile) : undefined; // before loading weights: fail fast
    const modelId = str(ctx, 'model-id');

    const lm = await openModel(ctx);
    try {
      const server = createServer(lm, {
        ...(modelId !== undefined ? { modelId } : {}),
        ...(apiKey ? { apiKey } : {}),
        ...(maxBatch !== undefined ? { maxBatch } : {}),
        ...(maxQueue !== undefined ? { maxQueue } : {}),
        ...(maxBodyBytes !== undefined ? { maxBodyBytes } : {}),
        ...(chatTemplate ? { chatTemplate } : {}),
        queueTimeoutMs,
        requestTimeoutMs,
        log: (line) => ctx.stderr.write(`grok-ts serve: ${line}\n`),
      });
      const stopped = new Promise<void>((resolve) => {
        if (ctx.signal.aborted) resolve();
        else ctx.signal.addEventListener('abort', () => resolve(), { once: true });
      });
      const { url } = await server.listen(port, host);
      ctx.stdout.write(`listening on ${url}\n`);
      if (!isLoopback(host) && !apiKey) {
        ctx.stderr.write(`grok-ts serve: warning: listening on ${host} without an API key; anyone who can reach this port can use the model (set ${API_KEY_ENV})\n`);
      }
      await stopped;
      ctx.stderr.write(`grok-ts serve: shutting down (up to ${graceMs} ms for running requests)\n`);
      await server.close(graceMs);
      return 0;
    } finally {
      await lm.close();
    }
  },
};
