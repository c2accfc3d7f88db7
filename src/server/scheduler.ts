/**
 * Continuous batching. Every step runs ONE forward pass over all active sequences: those that just
 * joined contribute their whole prompt (prefill) while the others contribute their last sampled
 * token (decode); each has its own KV cache and sampler (SequenceState), so a step reads the weights
 * once for the whole batch. A sequence leaves the batch the moment it ends (finished, aborted,
 * failed) and its cache is freed then; queued sequences take its place at the next step.
 *
 * The forward pass is synchronous, so the loop yields to the event loop between steps
 * (setImmediate): HTTP I/O, client disconnects and new requests are handled there, and an abort
 * always lands between two steps, never inside one.
 *
 * Slow and stalled clients. A request whose client stops taking output (its sink says so) is
 * *blocked*: its sequences leave the batch at the end of that step, keeping their caches ("held"),
 * and none of its queued sequences is admitted, so the batch keeps serving everyone else. When the
 * client reads again (`resume()`), its held sequences rejoin ahead of queued ones. A request that
 * stays blocked for `stallTimeoutMs` is ended with a `stream_stalled` error; so is the one blocked
 * longest when more than `maxPaused` sequences are held (their caches are memory).
 *
 * Fairness. One request (its prompts × n) never holds more than `maxBatchPerRequest` batch slots;
 * the rest of its sequences wait their turn. When a slot frees, the queued sequence whose client
 * (`submit`'s `client`, the server passes the remote address) has the fewest sequences running goes
 * in, then the one whose request has the fewest, then the oldest.
 */
import { AbortError } from '../errors.js';
import type { GenerationChunk, GenerationResult, SequenceState } from '../generate/sequence.js';
import type { GrokModel } from '../model/grok.js';
import { overloaded, RequestError } from './errors.js';

/** Where a sequence's output goes. */
export interface SequenceSink {
  /** One step's output. Returning false (the reader is behind) blocks the request until `resume()`. */
  chunk(c: GenerationChunk): boolean;
  done(r: GenerationResult): void;
  /** The sequence ended early (aborted, failed, timed out in the queue, stalled, shutdown); its cache is already freed. */
  fail(err: unknown): void;
}

export interface SchedulerLimits {
  /** Most sequences in one forward pass; the rest wait in the queue. */
  readonly maxBatch: number;
  /** Most sequences waiting; a request that would overflow it is refused with 429. */
  readonly maxQueue: number;
  /**
   * Prompt tokens admitted into one step, so a burst of long prompts does not stall everyone's
   * decode for one huge step (a prompt longer than this still goes in, alone).
   */
  readonly maxPrefillTokens: number;
  /** A sequence still queued after this long is refused with 503 and Retry-After. */
  readonly queueTimeoutMs: number;
  /** Most batch slots one request's sequences hold at once. Default: half the batch, rounded up. */
  readonly maxBatchPerRequest: number;
  /** Most sequences held out of the batch with their caches (blocked on their client, or waiting to rejoin). Default: maxBatch. */
  readonly maxPaused: number;
  /** A request whose client takes no output for this long is ended with `stream_stalled`. */
  readonly stallTimeoutMs: number;
}

export const DEFAULT_LIMITS: SchedulerLimits = {
  maxBatch: 16,
  maxQueue: 64,
  maxPrefillTokens: 2048,
  queueTimeoutMs: 60_000,
  maxBatchPerRequest: 8,
  maxPaused: 16,
  stallTimeoutMs: 30_000,
};

/** Fills in what `limits` leaves out; the per-request share and the held cap follow maxBatch. */
export function resolveLimits(limits: Partial<SchedulerLimits> = {}): SchedulerLimits {
  // Only the scheduler's own keys (a server passes all its options), and only those set.
  const defined = Object.fromEntries(Object.keys(DEFAULT_LIMITS).flatMap((k) => {
    const v = limits[k as keyof SchedulerLimits];
    return v === undefined ? [] : [[k, v]];
  })) as Partial<SchedulerLimits>;
  const maxBatch = defined.maxBatch ?? DEFAULT_LIMITS.maxBatch;
  const resolved: SchedulerLimits = {
    ...DEFAULT_LIMITS,
    maxBatchPerRequest: Math.ceil(maxBatch / 2),
    maxPaused: maxBatch,
    ...defined,
  };
  for (const [k, v] of Object.entries(resolved)) {
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`scheduler limit ${k} must be a positive integer, got ${v}`);
  }
  return resolved;
}

export interface SchedulerStats {
  /** Sequences in the batch. */
  readonly active: number;
  readonly queued: number;
  /** Sequences out of the batch with their caches kept: their client reads slower than they generate, or they wait to rejoin. */
  readonly paused: number;
  /** Forward passes run, and the token rows they held in total. */
  readonly steps: number;
  readonly rows: number;
  readonly finished: number;
  readonly aborted: number;
  readonly failed: number;
  /** Requests ended because their client stopped reading (stall limit, or too many held sequences). */
  readonly stalled: number;
}

/** A submitted request's handle. */
export interface Submission {
  /** The client takes output again: the request's held sequences may rejoin the batch. */
  resume(): void;
}

interface Entry {
  readonly seq: SequenceState;
  readonly sink: SequenceSink;
  readonly group: Group;
  state: 'queued' | 'active' | 'held' | 'ended';
  /** The queue timeout, while queued. */
  timer: NodeJS.Timeout | undefined;
}

/** One submission: a request's sequences. */
interface Group {
  readonly client: string;
  readonly entries: Entry[];
  /** Sequences not yet ended. */
  open: number;
  /** Sequences in the batch. */
  running: number;
  /** Its client is not taking output: none of its sequences runs. */
  blocked: boolean;
  /** Orders blocked groups: the lowest was blocked first. */
  blockedSince: number;
  stallTimer: NodeJS.Timeout | undefined;
  readonly detach: () => void;
}

export function stalledError(message: string): RequestError {
  return new RequestError(408, message, 'server_error', 'stream_stalled');
}

export class Scheduler {
  readonly limits: SchedulerLimits;
  private readonly queue: Entry[] = [];
  private readonly active: Entry[] = [];
  /** Out of the batch with a cache: blocked on their client, or resumed and waiting for a slot. */
  private readonly held: Entry[] = [];
  /** Running sequences per client. */
  private readonly clientRunning = new Map<string, number>();
  private scheduled = false;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private blockCounter = 0;
  private anonymous = 0;
  private counts = { steps: 0, rows: 0, finished: 0, aborted: 0, failed: 0, stalled: 0 };

  constructor(private readonly model: GrokModel, limits: Partial<SchedulerLimits> = DEFAULT_LIMITS) {
    this.limits = resolveLimits(limits);
  }

  stats(): SchedulerStats {
    return { active: this.active.length, queued: this.queue.length, paused: this.held.length, ...this.counts };
  }

  get accepting(): boolean {
    return !this.closing;
  }

  /**
   * Queues sequences (one request's choices) as a unit: all are accepted or, when the queue has no
   * room for all of them or the server is closing, none (a RequestError with Retry-After).
   * Aborting `signal` ends every one of them that is still running and frees its cache at once.
   * `client` groups requests for fairness (the server passes the remote address); by default each
   * submission is a client of its own.
   */
  submit(seqs: readonly SequenceState[], sinks: readonly SequenceSink[], signal?: AbortSignal, client?: string): Submission {
    if (seqs.length !== sinks.length || seqs.length === 0) throw new RangeError('submit needs one sink per sequence and at least one sequence');
    if (this.closing) throw overloaded(503, 'the server is shutting down', 5);
    if (seqs.length > this.limits.maxQueue) throw new RangeError(`${seqs.length} sequences exceed the queue size ${this.limits.maxQueue}`);
    if (this.queue.length + seqs.length > this.limits.maxQueue) {
      throw overloaded(429, `the server is busy: ${this.queue.length} sequences are waiting (limit ${this.limits.maxQueue}); retry later`, 1);
    }
    const onAbort = (): void => {
      const reason: unknown = signal?.reason;
      const err = reason instanceof AbortError ? reason : new AbortError('the client went away');
      for (const e of group.entries) this.end(e, 'aborted', err);
    };
    const group: Group = {
      client: client ?? `\0anonymous-${this.anonymous++}`,
      entries: [],
      open: seqs.length,
      running: 0,
      blocked: false,
      blockedSince: 0,
      stallTimer: undefined,
      detach: () => signal?.removeEventListener('abort', onAbort),
    };
    for (const [i, seq] of seqs.entries()) {
      const e: Entry = { seq, sink: sinks[i]!, group, state: 'queued', timer: undefined };
      group.entries.push(e);
      this.queue.push(e);
      e.timer = setTimeout(() => {
        this.end(e, 'failed', overloaded(503, `the request waited ${this.limits.queueTimeoutMs} ms in the queue without starting`, 1));
      }, this.limits.queueTimeoutMs);
      e.timer.unref();
    }
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.kick();
    return { resume: () => this.unblock(group) };
  }

  /**
   * Stops taking sequences; waits up to `graceMs` for those queued and running to finish, then
   * aborts what is left (their sinks get an AbortError).
   */
  async close(graceMs: number): Promise<void> {
    this.closing = true;
    if (!this.idle()) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.idleWaiters.push(resolve)),
        new Promise<void>((resolve) => (timer = setTimeout(resolve, Math.max(0, graceMs)))),
      ]);
      clearTimeout(timer);
    }
    const err = new AbortError('the server is shutting down');
    for (const e of [...this.queue, ...this.active, ...this.held]) this.end(e, 'aborted', err);
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.active.length === 0 && this.held.length === 0;
  }

  private kick(): void {
    if (this.scheduled || !(this.active.length > 0 || (this.active.length < this.limits.maxBatch && this.next() !== undefined))) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.step();
      this.kick();
    });
  }

  /**
   * The sequence to admit next, if any may go in: a held sequence of a request that reads again
   * (it holds a cache), else the fairest queued one. Blocked requests and requests at their share
   * of the batch are passed over.
   */
  private next(): Entry | undefined {
    const share = this.limits.maxBatchPerRequest;
    for (const e of this.held) if (!e.group.blocked && e.group.running < share) return e;
    let best: Entry | undefined;
    let bestClient = Infinity;
    for (const e of this.queue) {
      const g = e.group;
      if (g.blocked || g.running >= share) continue;
      const c = this.clientRunning.get(g.client) ?? 0;
      if (c < bestClient || (c === bestClient && g.running < best!.group.running)) {
        best = e;
        bestClient = c;
      }
    }
    return best;
  }

  /** Moves sequences into the batch while there is room and prefill budget. */
  private admit(): void {
    let prefill = 0;
    while (this.active.length < this.limits.maxBatch) {
      const e = this.next();
      if (!e) break;
      const n = e.seq.nextInput().length;
      if (prefill > 0 && prefill + n > this.limits.maxPrefillTokens) break;
      const from = e.state === 'queued' ? this.queue : this.held;
      from.splice(from.indexOf(e), 1);
      clearTimeout(e.timer);
      e.timer = undefined;
      e.state = 'active';
      this.active.push(e);
      this.running(e.group, +1);
      prefill += n;
      if (e.seq.done) this.end(e, 'finished'); // nothing to generate (max tokens 0)
    }
  }

  private running(g: Group, delta: number): void {
    g.running += delta;
    const n = (this.clientRunning.get(g.client) ?? 0) + delta;
    if (n === 0) this.clientRunning.delete(g.client);
    else this.clientRunning.set(g.client, n);
  }

  private step(): void {
    this.admit();
    const batch = this.active.slice();
    if (batch.length === 0) return;
    const inputs = batch.map((e) => ({ tokens: e.seq.nextInput(), cache: e.seq.cache }));
    const t0 = performance.now();
    let logits: Float32Array[];
    try {
      logits = this.model.forward(inputs);
    } catch (err) {
      for (const e of batch) this.end(e, 'failed', err);
      return;
    }
    const ms = performance.now() - t0;
    this.counts.steps++;
    for (const x of inputs) this.counts.rows += x.tokens.length;
    const blocked = new Set<Group>();
    for (const [i, e] of batch.entries()) {
      // A sink called earlier in this loop may have ended a sibling (e.g. a failed request aborts its other choices).
      if (e.state !== 'active') continue;
      const seq = e.seq;
      if (seq.generated.length === 0) seq.prefillMs += ms;
      else seq.decodeMs += ms;
      try {
        const chunk = seq.accept(logits[i]!);
        if ((chunk.text !== '' || chunk.ids.length > 0) && !e.sink.chunk(chunk)) blocked.add(e.group);
      } catch (err) {
        this.end(e, 'failed', err);
        continue;
      }
      if (seq.done) this.end(e, 'finished');
    }
    for (const g of blocked) this.block(g);
    this.enforceHeldLimit();
  }

  /** The request's client is not taking output: its sequences leave the batch, keeping their caches. */
  private block(g: Group): void {
    if (g.open === 0) return;
    if (!g.blocked) {
      g.blocked = true;
      g.blockedSince = ++this.blockCounter;
      const ms = this.limits.stallTimeoutMs;
      // Not unref'd: a blocked request is pending work, and this timer is what ends it.
      g.stallTimer = setTimeout(() => this.cut(g, stalledError(`the client took no output for ${ms} ms; the stream was ended`)), ms);
    }
    for (const e of g.entries) {
      if (e.state !== 'active') continue;
      this.active.splice(this.active.indexOf(e), 1);
      this.running(g, -1);
      e.state = 'held';
      this.held.push(e);
    }
  }

  private unblock(g: Group): void {
    if (!g.blocked) return;
    g.blocked = false;
    clearTimeout(g.stallTimer);
    g.stallTimer = undefined;
    this.kick();
  }

  /** Held caches are memory: past the limit, the request blocked longest is ended. */
  private enforceHeldLimit(): void {
    while (this.held.length > this.limits.maxPaused) {
      let victim: Group | undefined;
      for (const e of this.held) if (e.group.blocked && (!victim || e.group.blockedSince < victim.blockedSince)) victim = e.group;
      if (!victim) return;
      this.cut(victim, stalledError(`the client took no output while ${this.limits.maxPaused} sequences waited on slow clients; the stream was ended`));
    }
  }

  /** Ends a request whose client stopped reading. */
  private cut(g: Group, err: RequestError): void {
    if (g.open === 0) return;
    this.counts.stalled++;
    for (const e of g.entries) this.end(e, 'failed', err);
  }

  /** Takes a sequence out of the queue, batch or held list, frees its cache, and tells its sink. Idempotent. */
  private end(e: Entry, outcome: 'finished' | 'aborted' | 'failed', err?: unknown): void {
    if (e.state === 'ended') return;
    const list = e.state === 'queued' ? this.queue : e.state === 'active' ? this.active : this.held;
    list.splice(list.indexOf(e), 1);
    if (e.state === 'active') this.running(e.group, -1);
    e.state = 'ended';
    clearTimeout(e.timer);
    e.seq.cache.free();
    this.counts[outcome]++;
    const g = e.group;
    if (--g.open === 0) {
      clearTimeout(g.stallTimer);
      g.detach();
    }
    try {
      if (outcome === 'finished') e.sink.done(e.seq.result());
      else e.sink.fail(err);
    } finally {
      if (this.idle()) for (const w of this.idleWaiters.splice(0)) w();
      this.kick(); // a freed slot lets a queued sequence in
    }
  }
}
