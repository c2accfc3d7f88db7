/**
 * A model behind an OpenAI-compatible server (vLLM, SGLang, llama-server, `grok-ts serve`) with
 * the surface of a local LanguageModel (text-model.ts): generate, stream, chat, tokenizer (where
 * the server has one), abort, close. Requests go to `/completions` and `/chat/completions` under
 * the base URL (streamed, with usage); the tokenizer uses the server's `/tokenize` and
 * `/detokenize` beside `/v1` (llama-server's and grok-ts's body, or vLLM's).
 *
 * What a server cannot tell us is left out rather than made up: `ids` of a result are empty (the
 * OpenAI API returns text), `stopReason` is `eos` or `stop_string` only where the server says
 * which (vLLM's and grok-ts's `stop_reason`; otherwise a `stop` finish is reported as `eos`).
 */
import { AbortError, UnsupportedError, UsageError } from '../errors.js';
import { CHAT_STOP } from '../generate/chat-template.js';
import type { GenerateOptions, GenerationChunk, GenerationResult, StopReason, Usage } from '../generate/sequence.js';
import { validateGenerateOptions } from '../generate/sequence.js';
import { pendingResult } from '../generate/sequence-stream.js';
import type { GenerationStream } from '../language-model.js';
import { abortErrorOf, HttpClient, RemoteError, sseEvents, type HttpClientOptions, type RetryPolicy } from './http.js';
import type { TextChat, TextChatOptions, TextModel, TextTokenizer } from './text-model.js';

export interface RemoteLoadOptions {
  /** Sent as `Authorization: Bearer …`. */
  readonly apiKey?: string;
  /** The model id to ask for; default: the first one the server lists at /v1/models. */
  readonly model?: string;
  /** Extra headers for every request. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Retries on 429/503 (default: 3 retries, 500 ms doubling, at most 30 s a wait). */
  readonly retry?: Partial<RetryPolicy>;
  readonly onRetry?: HttpClientOptions['onRetry'];
  /** Cancels loading (the /v1/models and tokenizer probes). */
  readonly signal?: AbortSignal;
}

/** `http://` or `https://`: what loadModel treats as a server rather than a path. */
export type RemoteUrl = `http://${string}` | `https://${string}`;

export function isRemoteUrl(s: unknown): s is RemoteUrl {
  return typeof s === 'string' && /^https?:\/\//i.test(s);
}

type TokenizeStyle = 'llama' | 'vllm';

/** The server's tokenizer, over HTTP. */
export class RemoteTokenizer implements TextTokenizer {
  constructor(
    private readonly model: RemoteModel,
    private readonly style: TokenizeStyle,
  ) {}

  async encode(text: string, options: { signal?: AbortSignal } = {}): Promise<number[]> {
    const m = this.model;
    const body = this.style === 'llama' ? { content: text, add_special: false } : { model: m.modelId, prompt: text, add_special_tokens: false };
    const r = (await m.request('POST', `${m.rootUrl}/tokenize`, body, options.signal)) as { tokens?: unknown };
    const tokens = Array.isArray(r?.tokens) ? r.tokens.map((t: unknown) => (typeof t === 'object' && t !== null ? (t as { id: unknown }).id : t)) : undefined;
    if (!tokens || !tokens.every((t) => Number.isSafeInteger(t))) throw new RemoteError(`${m.rootUrl}/tokenize: expected {"tokens": [ids]}`, 200);
    return tokens as number[];
  }

  async decode(ids: readonly number[], options: { signal?: AbortSignal } = {}): Promise<string> {
    const m = this.model;
    const body = this.style === 'llama' ? { tokens: ids } : { model: m.modelId, tokens: ids };
    const r = (await m.request('POST', `${m.rootUrl}/detokenize`, body, options.signal)) as { content?: unknown; prompt?: unknown };
    const text = typeof r?.content === 'string' ? r.content : r?.prompt;
    if (typeof text !== 'string') throw new RemoteError(`${m.rootUrl}/detokenize: expected {"content": text}`, 200);
    return text;
  }
}

/** The request fields of one generation (OpenAI names; top_k, min_p, repetition_penalty and ignore_eos are understood by vLLM, SGLang, llama-server and grok-ts). */
function samplingFields(o: GenerateOptions, seed: number): Record<string, unknown> {
  if (o.addBos) throw new UnsupportedError('addBos', 'addBos: a remote server decides the special tokens of a prompt itself; give token ids to control them');
  if (o.truncate === 'left') throw new UnsupportedError('truncate', 'truncate: "left" is not part of the OpenAI API; shorten the prompt');
  if (o.logprobs !== undefined) throw new UnsupportedError('logprobs', 'logprobs from a remote model are not supported yet');
  if (o.penaltyWindow !== undefined) throw new UnsupportedError('penaltyWindow', 'penaltyWindow is grok-ts-only; a remote server uses its own');
  const f: Record<string, unknown> = { seed };
  const put = (k: string, v: unknown) => {
    if (v !== undefined) f[k] = v;
  };
  put('max_tokens', o.maxTokens);
  put('temperature', o.temperature);
  put('top_p', o.topP);
  put('top_k', o.topK);
  put('min_p', o.minP);
  put('repetition_penalty', o.repetitionPenalty);
  put('presence_penalty', o.presencePenalty);
  put('frequency_penalty', o.frequencyPenalty);
  put('logit_bias', o.logitBias);
  if (o.stop?.length) f.stop = [...o.stop];
  if (o.ignoreEos) f.ignore_eos = true;
  // Constrained output, in the fields OpenAI-compatible servers share (grammar: llama-server's and grok-ts's).
  if (o.jsonSchema !== undefined) f.response_format = { type: 'json_schema', json_schema: { name: 'output', schema: o.jsonSchema, strict: true } };
  if (o.jsonObject) f.response_format = { type: 'json_object' };
  if (o.grammar !== undefined) {
    if (o.grammarRoot !== undefined) throw new UnsupportedError('grammarRoot', 'grammarRoot: a remote server starts a grammar at its "root" rule; rename the rule');
    f.grammar = o.grammar;
  }
  if (o.regex !== undefined) throw new UnsupportedError('regex', 'regex: the OpenAI API has no regular-expression constraint; give a grammar or a JSON schema');
  return f;
}

/** What the first choice of a stream chunk carries. */
interface ChoiceDelta {
  text: string;
  finish?: 'stop' | 'length';
  stopReason?: unknown;
}

function choiceOf(event: Record<string, unknown>, chat: boolean): ChoiceDelta | undefined {
  const choices = event.choices;
  if (!Array.isArray(choices) || choices.length === 0) return undefined;
  const c = choices[0] as Record<string, unknown>;
  const text = chat ? (c.delta as { content?: unknown } | undefined)?.content : c.text;
  const fr = c.finish_reason;
  return {
    text: typeof text === 'string' ? text : '',
    ...(fr === 'stop' || fr === 'length' ? { finish: fr } : typeof fr === 'string' && fr !== '' ? { finish: 'stop' as const } : {}),
    ...(c.stop_reason !== undefined && c.stop_reason !== null ? { stopReason: c.stop_reason } : {}),
  };
}

function usageOf(event: Record<string, unknown>): Usage | undefined {
  const u = event.usage as { prompt_tokens?: unknown; completion_tokens?: unknown; total_tokens?: unknown } | null | undefined;
  if (!u || typeof u.prompt_tokens !== 'number' || typeof u.completion_tokens !== 'number') return undefined;
  return { promptTokens: u.prompt_tokens, completionTokens: u.completion_tokens, totalTokens: typeof u.total_tokens === 'number' ? u.total_tokens : u.prompt_tokens + u.completion_tokens };
}

export class RemoteModel implements TextModel {
  /** The URL without its /v1 (where /tokenize and /health live). */
  readonly rootUrl: string;
  tokenizer: RemoteTokenizer | undefined;
  private readonly http: HttpClient;
  /** One controller per request in flight, so that abort() and close() can end them all. */
  private readonly inFlight = new Set<AbortController>();
  /** abort() calls so far: a stream created before one and started after it is aborted too. */
  private aborts = 0;
  private closed = false;

  constructor(
    /** The API base, e.g. http://host:8000/v1. */
    readonly baseUrl: string,
    /** The model id sent with each request. */
    readonly modelId: string,
    options: RemoteLoadOptions = {},
  ) {
    this.baseUrl = baseUrl.replace(/\/+$/, '');
    this.rootUrl = this.baseUrl.replace(/\/v1$/, '');
    this.http = new HttpClient({
      ...(options.apiKey !== undefined ? { apiKey: options.apiKey } : {}),
      ...(options.headers ? { headers: options.headers } : {}),
      ...(options.retry ? { retry: options.retry } : {}),
      ...(options.onRetry ? { onRetry: options.onRetry } : {}),
    });
  }

  /**
   * A signal for one request that aborts with the caller's `signal` or with abort()/close();
   * `done()` must be called when the request ends.
   */
  private track(signal: AbortSignal | undefined): { signal: AbortSignal; done: () => void } {
    this.checkOpen();
    const c = new AbortController();
    const onAbort = () => c.abort(signal!.reason);
    if (signal?.aborted) c.abort(signal.reason);
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.inFlight.add(c);
    return {
      signal: c.signal,
      done: () => {
        signal?.removeEventListener('abort', onAbort);
        this.inFlight.delete(c);
      },
    };
  }

  private checkOpen(): void {
    if (this.closed) throw new UsageError('the remote model is closed');
  }

  /** @internal One JSON request under this model's key, retries and abort. */
  async request(method: 'GET' | 'POST', url: string, body: unknown, signal?: AbortSignal): Promise<unknown> {
    const t = this.track(signal);
    try {
      return await this.http.json(method, url, body, t.signal);
    } finally {
      t.done();
    }
  }

  /** Looks the model up at /v1/models (the first one listed when none is named) and probes the tokenizer. */
  static async connect(baseUrl: string, options: RemoteLoadOptions = {}): Promise<RemoteModel> {
    const probe = new RemoteModel(baseUrl, options.model ?? '', options);
    let list: { data?: unknown };
    try {
      list = (await probe.request('GET', `${probe.baseUrl}/models`, undefined, options.signal)) as { data?: unknown };
    } catch (err) {
      if (err instanceof RemoteError && err.status === 404 && !/\/v1$/.test(probe.baseUrl)) {
        throw new RemoteError(`${err.message} (an OpenAI-compatible API is usually under /v1: try ${probe.baseUrl}/v1)`, 404, err.type, err.apiCode);
      }
      throw err;
    }
    const ids = Array.isArray(list?.data) ? list.data.map((m: unknown) => (m as { id?: unknown })?.id).filter((id): id is string => typeof id === 'string') : [];
    if (ids.length === 0) throw new RemoteError(`${probe.baseUrl}/models: the server lists no model`, 200);
    if (options.model !== undefined && !ids.includes(options.model)) {
      throw new UsageError(`${probe.baseUrl}: the server has no model "${options.model}"; it serves ${ids.map((i) => `"${i}"`).join(', ')}`, 'model');
    }
    const model = new RemoteModel(baseUrl, options.model ?? ids[0]!, options);
    model.tokenizer = await model.probeTokenizer(options.signal);
    return model;
  }

  /** llama-server's and grok-ts's /tokenize body first, then vLLM's; none → no tokenizer. */
  private async probeTokenizer(signal: AbortSignal | undefined): Promise<RemoteTokenizer | undefined> {
    for (const style of ['llama', 'vllm'] as const) {
      const t = new RemoteTokenizer(this, style);
      try {
        const ids = await t.encode('a', signal ? { signal } : {});
        if (ids.length > 0) return t;
      } catch (err) {
        if (err instanceof UsageError || (err instanceof RemoteError && err.status !== 0 && err.status !== 401 && err.status !== 403)) continue;
        throw err;
      }
    }
    return undefined;
  }

  /** The tokenizer, or a clear error saying the server has none. */
  private requireTokenizer(): RemoteTokenizer {
    if (!this.tokenizer) throw new UnsupportedError('tokenizer', `${this.rootUrl} exposes no /tokenize and /detokenize (llama-server, vLLM and grok-ts serve do); give text prompts instead of token ids or use a server that has them`);
    return this.tokenizer;
  }

  /** Text → ids through the server (UnsupportedError when it has no tokenizer). */
  async tokenize(text: string, signal?: AbortSignal): Promise<number[]> {
    return this.requireTokenizer().encode(text, signal ? { signal } : {});
  }

  async detokenize(ids: readonly number[], signal?: AbortSignal): Promise<string> {
    return this.requireTokenizer().decode(ids, signal ? { signal } : {});
  }

  stream(prompt: string | readonly number[], options: GenerateOptions = {}): GenerationStream {
    if (typeof prompt !== 'string' && !Array.isArray(prompt)) throw new UsageError('prompt must be a string or an array of token ids', 'prompt');
    if (prompt.length === 0) throw new UsageError('the prompt is empty: give at least one token', 'prompt');
    return this.run('completions', { prompt: typeof prompt === 'string' ? prompt : [...prompt] }, options);
  }

  async generate(prompt: string | readonly number[], options: GenerateOptions = {}): Promise<GenerationResult> {
    const s = this.stream(prompt, options);
    for await (const _ of s);
    return s.result;
  }

  chat(options: TextChatOptions = {}): RemoteChat {
    return new RemoteChat(this, options);
  }

  /** Aborts every generation in flight (each rejects with AbortError); the model stays usable. */
  abort(): void {
    this.aborts++;
    for (const c of this.inFlight) c.abort();
    this.inFlight.clear();
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.abort();
    this.closed = true;
  }

  /** @internal One streamed generation against `/completions` or `/chat/completions`. */
  run(endpoint: 'completions' | 'chat/completions', input: Record<string, unknown>, options: GenerateOptions): GenerationStream {
    validateGenerateOptions(options);
    const seed = options.seed ?? Math.floor(Math.random() * 2 ** 31);
    const body = { model: this.modelId, ...input, ...samplingFields(options, seed), stream: true, stream_options: { include_usage: true } };
    // A closed model refuses here; the request (and the listener on the caller's signal) starts
    // with the first next(), so a stream that is never iterated holds nothing.
    this.checkOpen();
    const abortsAtCreation = this.aborts;
    const start = (): { signal: AbortSignal; done: () => void } => {
      if (this.aborts !== abortsAtCreation) throw new AbortError('the remote model was aborted or closed before this stream started');
      return this.track(options.signal);
    };
    let tracked: { signal: AbortSignal; done: () => void } | undefined;
    const url = `${this.baseUrl}/${endpoint}`;
    const chat = endpoint !== 'completions';
    const { result, resolve, reject } = pendingResult();
    const http = this.http;
    let started = false;
    async function* produce(signal: AbortSignal): AsyncGenerator<GenerationChunk> {
      const t0 = performance.now();
      let tFirst: number | undefined;
      let text = '';
      let finish: ChoiceDelta['finish'];
      let stopReason: unknown;
      let usage: Usage | undefined;
      let chunks = 0;
      const res = await http.send('POST', url, body, signal);
      for await (const event of sseEvents(res, url, signal)) {
        usage = usageOf(event) ?? usage;
        const c = choiceOf(event, chat);
        if (!c) continue;
        if (c.finish) finish = c.finish;
        if (c.stopReason !== undefined) stopReason = c.stopReason;
        if (c.text === '') continue;
        tFirst ??= performance.now();
        chunks++;
        text += c.text;
        yield { text: c.text, ids: [] };
      }
      if (signal.aborted) throw abortErrorOf(signal);
      if (!finish) throw new RemoteError(`${url}: the stream ended without a finish_reason`, 200);
      const t1 = performance.now();
      const stopString = typeof stopReason === 'string' ? stopReason : undefined;
      const why: StopReason = finish === 'length' ? 'max_tokens' : stopString !== undefined ? 'stop_string' : 'eos';
      const u = usage ?? { promptTokens: 0, completionTokens: chunks, totalTokens: chunks };
      const prefillMs = (tFirst ?? t1) - t0;
      const decodeMs = t1 - (tFirst ?? t1);
      resolve({
        text,
        ids: [],
        finishReason: finish,
        stopReason: why,
        ...(stopString !== undefined ? { stopString } : {}),
        usage: u,
        seed,
        timings: {
          prefillMs,
          decodeMs,
          prefillTokensPerSec: prefillMs > 0 ? (u.promptTokens * 1000) / prefillMs : 0,
          decodeTokensPerSec: decodeMs > 0 ? (Math.max(0, u.completionTokens - 1) * 1000) / decodeMs : 0,
        },
      });
    }
    return {
      result,
      [Symbol.asyncIterator]() {
        if (started) throw new UsageError('a generation stream can be iterated once');
        started = true;
        let inner: AsyncGenerator<GenerationChunk> | undefined;
        return {
          async next() {
            try {
              if (!inner) {
                tracked = start();
                inner = produce(tracked.signal);
              }
              const r = await inner.next();
              if (r.done) tracked!.done();
              return r;
            } catch (err) {
              tracked?.done();
              reject(err);
              throw err;
            }
          },
          async return() {
            // Leaving early (break) ends the HTTP request too.
            tracked?.done();
            await inner?.return(undefined);
            reject(new UsageError('the stream was closed before generation finished'));
            return { done: true as const, value: undefined };
          },
        };
      },
    };
  }
}

/** A conversation through the server's /chat/completions: the history is resent each turn (the server's prefix cache keeps that cheap). */
export class RemoteChat implements TextChat {
  private messages: { role: 'system' | 'user' | 'assistant'; content: string }[] = [];
  private readonly system: { role: 'system'; content: string } | undefined;

  constructor(
    private readonly model: RemoteModel,
    options: TextChatOptions = {},
  ) {
    const system = options.system?.trim();
    this.system = system ? { role: 'system', content: system } : undefined;
    this.reset();
  }

  /** The conversation so far (the system message first). */
  get history(): readonly { role: string; content: string }[] {
    return this.messages;
  }

  send(message: string, options: GenerateOptions = {}): GenerationStream {
    if (typeof message !== 'string' || message === '') throw new UsageError('a chat message must be a non-empty string', 'message');
    const messages = [...this.messages, { role: 'user' as const, content: message }];
    // As a local chat: a turn ends where the model starts the next one (the plain transcript's
    // stops; grok-ts serve applies them itself, vLLM and SGLang need them sent).
    const stop = [...new Set([...CHAT_STOP, ...(options.stop ?? [])])];
    const stream = this.model.run('chat/completions', { messages }, { ...options, stop });
    const chat = this;
    return {
      result: stream.result,
      async *[Symbol.asyncIterator]() {
        let reply = '';
        try {
          for await (const c of stream) {
            reply += c.text;
            yield c;
          }
        } finally {
          // The turn stays in the history with whatever reply came back, as a local chat keeps it.
          chat.messages = [...messages, { role: 'assistant', content: reply }];
        }
      },
    };
  }

  reset(): void {
    this.messages = this.system ? [this.system] : [];
  }
}

/** Connects to an OpenAI-compatible server: `loadModel('http://host:8000/v1', { apiKey, model })`. */
export function loadRemoteModel(url: string, options: RemoteLoadOptions = {}): Promise<RemoteModel> {
  if (!isRemoteUrl(url)) throw new UsageError(`expected an http:// or https:// URL, got ${JSON.stringify(url)}`, 'model');
  try {
    new URL(url);
  } catch {
    throw new UsageError(`not a valid URL: ${JSON.stringify(url)}`, 'model');
  }
  return RemoteModel.connect(url, options);
}
