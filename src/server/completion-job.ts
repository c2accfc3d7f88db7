/**
 * One completion or chat request, after validation: its choices (one SequenceState each) go to the
 * scheduler together, and their output is written to the HTTP response either as one JSON body when
 * all have finished, or as server-sent events while they run (ending with `data: [DONE]`).
 *
 * Lifecycle: a client that disconnects aborts every choice at once (the scheduler frees their
 * caches); a choice that fails aborts its siblings and the client gets one error; a stream whose
 * client reads slowly parks its choices (backpressure) until the socket drains, out of the batch;
 * the scheduler ends it when its client reads nothing for the stall limit.
 */
import type { ServerResponse } from 'node:http';
import { AbortError, StreamStalledError } from '../errors.js';
import type { GenerationChunk, GenerationResult, SequenceState, TokenLogprob } from '../generate/sequence.js';
import { newToolCallId, ToolCallParser } from '../generate/tool-call.js';
import {
  chatChoice,
  chatDeltaChoice,
  chatToolCallChoice,
  toolCallArgumentsDelta,
  toolCallOpenDelta,
  type FinishReason,
  chatLogprobs,
  chatResponse,
  completionChoice,
  completionResponse,
  legacyLogprobs,
  streamChunk,
  usageJson,
  type Envelope,
  type UsageJson,
} from './openai-format.js';
import { RequestError } from './errors.js';
import { sendError, sendJson, SSE_HEADERS, sseEvent, type ErrorReporting } from './respond.js';
import type { SchedulerLane, SequenceSink } from '../generate/scheduler.js';

export interface JobChoice {
  readonly seq: SequenceState;
  /** Legacy logprobs' text_offset of the first completion character: the prompt's length in characters. */
  readonly textOffset: number;
}

export interface Job {
  readonly kind: 'completion' | 'chat';
  readonly env: Envelope;
  readonly choices: readonly JobChoice[];
  /** Prompt tokens, each distinct prompt counted once however many choices it has (as OpenAI counts). */
  readonly promptTokens: number;
  readonly stream: boolean;
  readonly includeUsage: boolean;
  readonly logprobs: boolean;
  /** Chat with tools: a reply that opens with this tag is a tool call (generate/tool-call.ts). */
  readonly toolCallTag?: string;
}

/** A reply of calls: `tool_calls` when every call was complete, `length` when max_tokens cut one. */
function callFinish(r: GenerationResult, parser: ToolCallParser): FinishReason {
  return r.finishReason === 'stop' || parser.complete ? 'tool_calls' : 'length';
}

/**
 * A chat reply starts after "Assistant:" and ends before the template's stop string, so it comes
 * with a leading space and a trailing newline. Both are dropped, also while streaming: leading
 * whitespace is skipped, trailing whitespace is held back until more text follows it.
 */
export class TrimmedText {
  private started = false;
  private held = '';

  push(text: string): string {
    if (!this.started) {
      text = text.replace(/^\s+/, '');
      if (text === '') return '';
      this.started = true;
    }
    const all = this.held + text;
    const cut = all.length - (/\s*$/.exec(all)?.[0].length ?? 0);
    this.held = all.slice(cut);
    return all.slice(0, cut);
  }
}

export interface JobOptions {
  /** A job still running after this long is ended with a 504 (or an error event when streaming). */
  readonly timeoutMs: number;
  /**
   * Once the response is complete, a client that takes none of its remaining bytes for this long
   * has its connection closed (while generating, the scheduler's stall limit applies).
   */
  readonly stallMs: number;
  /** Who asked, for the scheduler's fairness between clients (the remote address). */
  readonly client?: string;
}

/**
 * Submits the job (a full queue or a closing server throws here, before anything is written) and
 * returns a promise that settles once the response is complete or the client has gone.
 */
export function runJob(scheduler: SchedulerLane, job: Job, res: ServerResponse, reporting: ErrorReporting, opts: JobOptions, makeOutput?: (job: Job, res: ServerResponse) => Output): Promise<void> {
  const controller = new AbortController();
  const output = makeOutput ? makeOutput(job, res) : job.stream ? new StreamOutput(job, res) : new JsonOutput(job, res);
  let failed = false;
  const fail = (err: unknown): void => {
    if (failed) return;
    failed = true;
    controller.abort(err instanceof AbortError ? err : new AbortError('another choice of this request failed'));
    if (!res.writableEnded && !res.destroyed) sendError(res, err, reporting);
    // A client that stopped reading does not keep its connection: closed once the error event is out.
    const socket = res.socket; // detached from the response once it finishes
    if (err instanceof StreamStalledError && socket) {
      if (res.writableFinished) socket.end();
      else res.once('finish', () => socket.end());
    }
    closeWhenStuck(res, opts.stallMs);
  };
  const sinks: SequenceSink[] = job.choices.map((_, i) => ({
    chunk: (c) => (failed ? true : output.chunk(i, c)),
    done: (r) => {
      if (failed) return;
      output.done(i, r);
      closeWhenStuck(res, opts.stallMs);
    },
    fail,
  }));
  if (res.destroyed || !res.socket || res.socket.destroyed) throw new AbortError('the client went away');
  const submission = scheduler.submit(
    job.choices.map((c) => c.seq),
    sinks,
    { signal: controller.signal, ...(opts.client !== undefined ? { client: opts.client } : {}) },
  );
  const deadline = Number.isFinite(opts.timeoutMs)
    ? setTimeout(() => fail(new RequestError(504, `the request did not finish within ${opts.timeoutMs} ms`, 'server_error', 'timeout')), opts.timeoutMs)
    : undefined;
  return new Promise<void>((resolve) => {
    res.on('drain', () => submission.resume());
    res.on('close', () => {
      clearTimeout(deadline);
      if (!res.writableEnded) {
        failed = true; // nobody to tell
        controller.abort(new AbortError('the client went away'));
      }
      resolve();
    });
  });
}

const watched = new WeakSet<ServerResponse>();

/**
 * A response that has ended but whose bytes are still waiting for the client: its connection is
 * closed once the client takes none of them for `stallMs` (else a client that never reads would
 * hold the socket for ever).
 */
function closeWhenStuck(res: ServerResponse, stallMs: number): void {
  const socket = res.socket;
  if (!Number.isFinite(stallMs) || !res.writableEnded || res.writableFinished || !socket || socket.destroyed || watched.has(res)) return;
  watched.add(res);
  let last = Infinity;
  const timer = setInterval(() => {
    const pending = socket.writableLength;
    if (pending >= last) {
      clearInterval(timer);
      socket.destroy();
    } else last = pending;
  }, stallMs);
  timer.unref();
  // Once every byte is with the kernel, the connection is idle and node's keep-alive timeout takes over.
  const stop = (): void => clearInterval(timer);
  res.once('finish', stop);
  socket.once('close', stop);
}

/** How a job's output is written; the OpenAI shapes by default, another API's through runJob's `makeOutput`. */
export interface Output {
  /** Returns false when the socket's buffer is full. */
  chunk(i: number, c: GenerationChunk): boolean;
  done(i: number, r: GenerationResult): void;
}

class JsonOutput implements Output {
  private readonly results: (GenerationResult | undefined)[];
  private left: number;

  constructor(private readonly job: Job, private readonly res: ServerResponse) {
    this.results = job.choices.map(() => undefined);
    this.left = job.choices.length;
  }

  chunk(): boolean {
    return true;
  }

  done(i: number, r: GenerationResult): void {
    this.results[i] = r;
    if (--this.left > 0) return;
    const job = this.job;
    const results = this.results as GenerationResult[];
    const usage = usageJson(job.promptTokens, results.reduce((n, x) => n + x.usage.completionTokens, 0));
    const choices = results.map((r, index) => {
      const lps = job.logprobs ? (r.logprobs ?? []) : undefined;
      if (job.kind === 'chat' && job.toolCallTag !== undefined) {
        const parser = new ToolCallParser(job.toolCallTag);
        const events = [...parser.push(r.text), ...parser.finish()];
        if (parser.isCall) {
          const calls = parser.calls.map((c) => ({ id: newToolCallId(), name: c.name, arguments: c.arguments }));
          const after = events.flatMap((e) => (e.kind === 'content' ? [e.text] : [])).join('').trim();
          return chatToolCallChoice(index, calls, after === '' ? null : after, callFinish(r, parser), lps ? chatLogprobs(lps) : null);
        }
      }
      if (job.kind === 'chat') return chatChoice(index, r.text.trim(), r.finishReason, lps ? chatLogprobs(lps) : null);
      return completionChoice(index, r.text, r.finishReason, lps ? legacyLogprobs(lps, job.choices[index]!.textOffset).logprobs : null);
    });
    sendJson(this.res, 200, job.kind === 'chat' ? chatResponse(job.env, choices, usage) : completionResponse(job.env, choices, usage));
  }
}

class StreamOutput implements Output {
  private readonly offsets: number[];
  private readonly trims: TrimmedText[];
  private readonly opened: boolean[];
  /** Chat with tools: each choice's reply, told apart as text or a call. */
  private readonly calls: (ToolCallParser | undefined)[];
  private left: number;
  private completionTokens = 0;

  constructor(private readonly job: Job, private readonly res: ServerResponse) {
    this.offsets = job.choices.map((c) => c.textOffset);
    this.trims = job.choices.map(() => new TrimmedText());
    this.opened = job.choices.map(() => false);
    this.calls = job.choices.map(() => (job.kind === 'chat' && job.toolCallTag !== undefined ? new ToolCallParser(job.toolCallTag) : undefined));
    this.left = job.choices.length;
  }

  /** A tool-call reply's events as OpenAI's deltas: each call opens with its index, id and name, then its arguments arrive in pieces. */
  private callEvents(i: number, events: ReturnType<ToolCallParser['push']>, lps: TokenLogprob[]): boolean {
    let ok = true;
    for (const e of events) {
      if (e.kind === 'content') {
        const text = this.trims[i]!.push(e.text);
        if (text === '') continue;
        this.open(i);
        ok = this.send([chatDeltaChoice(i, { content: text }, null, this.job.logprobs ? chatLogprobs(lps) : null)]) && ok;
      } else if (e.kind === 'call') {
        const first = !this.opened[i];
        this.opened[i] = true;
        ok = this.send([chatDeltaChoice(i, toolCallOpenDelta(e.index, newToolCallId(), e.name, first), null, null)]) && ok;
      } else {
        ok = this.send([chatDeltaChoice(i, toolCallArgumentsDelta(e.index, e.text), null, null)]) && ok;
      }
    }
    return ok;
  }

  chunk(i: number, c: GenerationChunk): boolean {
    const job = this.job;
    const lps = job.logprobs ? (c.logprobs ?? []) : [];
    const parser = this.calls[i];
    if (parser) return this.callEvents(i, parser.push(c.text), lps);
    const text = job.kind === 'chat' ? this.trims[i]!.push(c.text) : c.text;
    if (text === '' && lps.length === 0) return true;
    if (job.kind === 'chat') {
      this.open(i);
      return this.send([chatDeltaChoice(i, { content: text }, null, job.logprobs ? chatLogprobs(lps) : null)]);
    }
    let logprobs = null;
    if (job.logprobs) {
      const l = legacyLogprobs(lps, this.offsets[i]!);
      this.offsets[i] = l.end;
      logprobs = l.logprobs;
    }
    return this.send([completionChoice(i, text, null, logprobs)]);
  }

  done(i: number, r: GenerationResult): void {
    this.completionTokens += r.usage.completionTokens;
    const parser = this.calls[i];
    if (parser) {
      this.callEvents(i, parser.finish(), []);
      this.open(i);
      this.send([chatDeltaChoice(i, {}, parser.isCall ? callFinish(r, parser) : r.finishReason, null)]);
    } else if (this.job.kind === 'chat') {
      this.open(i);
      this.send([chatDeltaChoice(i, {}, r.finishReason, null)]);
    } else {
      this.send([completionChoice(i, '', r.finishReason, null)]);
    }
    if (--this.left > 0) return;
    if (this.job.includeUsage) this.send([], usageJson(this.job.promptTokens, this.completionTokens));
    this.res.end(sseEvent('[DONE]'));
  }

  /** Chat streams open each choice with an empty assistant delta, as OpenAI does. */
  private open(i: number): void {
    if (this.opened[i]) return;
    this.opened[i] = true;
    this.send([chatDeltaChoice(i, { role: 'assistant', content: '' }, null, null)]);
  }

  private send(choices: object[], usage?: UsageJson): boolean {
    const res = this.res;
    if (res.writableEnded || res.destroyed) return true;
    if (!res.headersSent) res.writeHead(200, SSE_HEADERS);
    return res.write(sseEvent(streamChunk(this.job.kind, this.job.env, choices, this.job.includeUsage ? (usage ?? null) : undefined)));
  }
}
