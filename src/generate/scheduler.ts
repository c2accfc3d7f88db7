/**
 * The generation engine: continuous batching, and the only thing that drives sequences. Every
 * step runs ONE forward pass over all active sequences: those that just joined contribute their
 * whole prompt (prefill) while the others contribute their last sampled token (decode); each has
 * its own KV cache and sampler (SequenceState), so a step reads the weights once for the whole
 * batch. A sequence leaves the batch the moment it ends (finished, aborted, failed) and its cache
 * is freed then (unless its submission keeps it, as a chat session does); queued sequences take its
 * place at the next step. `LanguageModel` owns one Scheduler; `generate`, `stream`, chat sessions
 * and the server all submit to it, so concurrent library calls batch like server requests.
 *
 * Lanes. Submissions go through a lane: its own limits, queue and counters. The library uses the
 * scheduler's default lane; a server opens a lane of its own with the limits it was given (and
 * closes it at shutdown without touching the library's work). Lanes share the forward pass: the
 * batch is every lane's active sequences, each lane admitting up to its own `maxBatch`.
 *
 * The forward pass is synchronous, so the loop yields to the event loop between steps
 * (setImmediate): I/O, client disconnects and new submissions are handled there, and an abort
 * always lands between two steps, never inside one.
 *
 * Slow readers. A submission whose reader stops taking output (its sink says so) is *blocked*: its
 * sequences leave the batch at the end of that step, keeping their caches ("held"), and none of its
 * queued sequences is admitted, so the batch keeps serving everyone else. When the reader takes
 * output again (`resume()`), its held sequences rejoin ahead of queued ones. A submission that stays
 * blocked for `stallTimeoutMs` is ended with a StreamStalledError; so is the one blocked longest
 * when more than `maxPaused` sequences are held (their caches are memory). The library's lane has
 * neither limit: a program that reads its stream slowly is not a stalled network client.
 *
 * Fairness. One submission (a request's prompts × n) never holds more than `maxBatchPerRequest`
 * batch slots; the rest of its sequences wait their turn. When a slot frees, the queued sequence
 * whose client (`submit`'s `client`; the server passes the remote address) has the fewest sequences
 * running goes in, then the one whose submission has the fewest, then the oldest.
 */
import { AbortError, QueueFullError, QueueTimeoutError, StreamStalledError } from '../errors.js';
import type { GrokModel } from '../model/grok.js';
import type { GenerationChunk, GenerationResult, SequenceState } from './sequence.js';

/** Where a sequence's output goes. */
export interface SequenceSink {
  /** One step's output. Returning false (the reader is behind) blocks the submission until `resume()`. */
  chunk(c: GenerationChunk): boolean;
  done(r: GenerationResult): void;
  /** The sequence ended early (aborted, failed, timed out in the queue, stalled, shutdown); its cache is already freed. */
  fail(err: unknown): void;
}

export interface SchedulerLimits {
  /** Most sequences of one lane in one forward pass; the rest wait in the queue. */
  readonly maxBatch: number;
  /** Most sequences waiting; a submission that would overflow it is refused with a QueueFullError. */
  readonly maxQueue: number;
  /**
   * Prompt tokens admitted into one step, so a burst of long prompts does not stall everyone's
   * decode for one huge step (a prompt longer than this still goes in, alone).
   */
  readonly maxPrefillTokens: number;
  /** A sequence still queued after this long fails with a QueueTimeoutError (Infinity: never). */
  readonly queueTimeoutMs: number;
  /** Most batch slots one submission's sequences hold at once. Default: half the batch, rounded up. */
  readonly maxBatchPerRequest: number;
  /** Most sequences held out of the batch with their caches (blocked on their reader, or waiting to rejoin). Default: maxBatch (Infinity: no limit). */
  readonly maxPaused: number;
  /** A submission whose reader takes no output for this long is ended with a StreamStalledError (Infinity: never). */
  readonly stallTimeoutMs: number;
}

/** The server's defaults. */
export const DEFAULT_LIMITS: SchedulerLimits = {
  maxBatch: 16,
  maxQueue: 64,
  maxPrefillTokens: 2048,
  queueTimeoutMs: 60_000,
  maxBatchPerRequest: 8,
  maxPaused: 16,
  stallTimeoutMs: 30_000,
};

/** The library's lane: the server's batch and queue sizes, but no timeouts and no stall limits. */
export const LIBRARY_LIMITS: Partial<SchedulerLimits> = { queueTimeoutMs: Infinity, maxPaused: Infinity, stallTimeoutMs: Infinity };

/** The longest delay setTimeout honours; a longer one fires at once. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Limits that may be Infinity ("no limit"); the rest are positive integers. */
const UNBOUNDED_OK = new Set(['queueTimeoutMs', 'maxPaused', 'stallTimeoutMs']);

/**
 * Fills in what `limits` leaves out (from `base`, then the defaults); unless set, the per-request
 * share follows maxBatch (half, rounded up) and so does the held cap.
 */
export function resolveLimits(limits: Partial<SchedulerLimits> = {}, base: Partial<SchedulerLimits> = {}): SchedulerLimits {
  // Only the scheduler's own keys (a server passes all its options), and only those set.
  const pick = (o: Partial<SchedulerLimits>) =>
    Object.fromEntries(Object.keys(DEFAULT_LIMITS).flatMap((k) => {
      const v = o[k as keyof SchedulerLimits];
      return v === undefined ? [] : [[k, v]];
    })) as Partial<SchedulerLimits>;
  const defined = pick(limits);
  const from = pick(base);
  const maxBatch = defined.maxBatch ?? from.maxBatch ?? DEFAULT_LIMITS.maxBatch;
  const resolved: SchedulerLimits = {
    ...DEFAULT_LIMITS,
    maxBatchPerRequest: Math.ceil(maxBatch / 2),
    maxPaused: maxBatch,
    ...from,
    ...defined,
  };
  for (const [k, v] of Object.entries(resolved)) {
    if (v === Infinity && UNBOUNDED_OK.has(k)) continue;
    if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`scheduler limit ${k} must be a positive integer, got ${v}`);
    // Node fires a timer longer than this after 1 ms.
    if (k.endsWith('Ms') && v > MAX_TIMER_MS) throw new RangeError(`scheduler limit ${k} must be at most ${MAX_TIMER_MS} ms (or Infinity), got ${v}`);
  }
  return resolved;
}

export interface SchedulerStats {
  /** Sequences in the batch. */
  readonly active: number;
  readonly queued: number;
  /** Sequences out of the batch with their caches kept: their reader is slower than they generate, or they wait to rejoin. */
  readonly paused: number;
  /** Forward passes run (for a lane: those it had rows in), and the token rows they held in total. */
  readonly steps: number;
  readonly rows: number;
  readonly finished: number;
  readonly aborted: number;
  readonly failed: number;
  /** Submissions ended because their reader stopped taking output (stall limit, or too many held sequences). */
  readonly stalled: number;
}

/** A submission's handle. */
export interface Submission {
  /** The reader takes output again: the submission's held sequences may rejoin the batch. */
  resume(): void;
}

export interface SubmitOptions {
  /** Aborting it ends every sequence of the submission that is still running and frees its cache at once. */
  readonly signal?: AbortSignal;
  /** Groups submissions for fairness (the server passes the remote address); by default each submission is a client of its own. */
  readonly client?: string;
  /** Leave the caches alone when the sequences end (a chat session keeps its history there). */
  readonly keepCaches?: boolean;
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
  readonly keepCaches: boolean;
  /** Sequences not yet ended. */
  open: number;
  /** Sequences in the batch. */
  running: number;
  /** Its reader is not taking output: none of its sequences runs. */
  blocked: boolean;
  /** Orders blocked groups: the lowest was blocked first. */
  blockedSince: number;
  stallTimer: NodeJS.Timeout | undefined;
  readonly detach: () => void;
}

type Outcome = 'finished' | 'aborted' | 'failed';

/** A lane of the scheduler: its own limits, queue, held list and counters; its active sequences share the batch. */
export class SchedulerLane {
  readonly limits: SchedulerLimits;
  /** @internal */ readonly queue: Entry[] = [];
  /** @internal */ readonly active: Entry[] = [];
  /** Out of the batch with a cache: blocked on their reader, or resumed and waiting for a slot. */
  private readonly held: Entry[] = [];
  /** Running sequences per client. */
  private readonly clientRunning = new Map<string, number>();
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private blockCounter = 0;
  private anonymous = 0;
  /** @internal */ readonly counts = { steps: 0, rows: 0, finished: 0, aborted: 0, failed: 0, stalled: 0 };

  /** @internal */
  constructor(
    private readonly engine: Scheduler,
    limits: SchedulerLimits,
    /** Says whose lane is closing in the AbortError its sequences get. */
    private readonly closingMessage: string,
  ) {
    this.limits = limits;
  }

  stats(): SchedulerStats {
    return { active: this.active.length, queued: this.queue.length, paused: this.held.length, ...this.counts };
  }

  get accepting(): boolean {
    return !this.closing;
  }

  /**
   * Queues sequences (one request's choices) as a unit: all are accepted or, when the queue has no
   * room for all of them (QueueFullError) or the lane is closing (AbortError), none.
   */
  submit(seqs: readonly SequenceState[], sinks: readonly SequenceSink[], options: SubmitOptions = {}): Submission {
    if (seqs.length !== sinks.length || seqs.length === 0) throw new RangeError('submit needs one sink per sequence and at least one sequence');
    if (this.closing || this.engine.closed) throw new AbortError(this.closingMessage);
    if (seqs.length > this.limits.maxQueue) throw new RangeError(`${seqs.length} sequences exceed the queue size ${this.limits.maxQueue}`);
    if (this.queue.length + seqs.length > this.limits.maxQueue) throw new QueueFullError(this.queue.length, this.limits.maxQueue, 1);
    const signal = options.signal;
    const onAbort = (): void => {
      const reason: unknown = signal?.reason;
      const err = reason instanceof AbortError ? reason : new AbortError();
      for (const e of group.entries) this.end(e, 'aborted', err);
    };
    const group: Group = {
      client: options.client ?? `\0anonymous-${this.anonymous++}`,
      entries: [],
      keepCaches: options.keepCaches ?? false,
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
      const ms = this.limits.queueTimeoutMs;
      if (Number.isFinite(ms)) {
        e.timer = setTimeout(() => this.end(e, 'failed', new QueueTimeoutError(ms, 1)), ms);
        e.timer.unref();
      }
    }
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.engine.kick();
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
    const err = new AbortError(this.closingMessage);
    for (const e of [...this.queue, ...this.active, ...this.held]) this.end(e, 'aborted', err);
    this.engine.release(this);
  }

  /** @internal */
  idle(): boolean {
    return this.queue.length === 0 && this.active.length === 0 && this.held.length === 0;
  }

  /**
   * The sequence to admit next, if any may go in: a held sequence of a submission that reads
   * again (it holds a cache), else the fairest queued one. Blocked submissions and submissions at
   * their share of the batch are passed over.
   * @internal
   */
  next(): Entry | undefined {
    if (this.active.length >= this.limits.maxBatch) return undefined;
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

  /** Moves sequences into the batch while there is room and prefill budget. @internal */
  admit(): void {
    let prefill = 0;
    for (;;) {
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

  /** Hands one step's logits to this lane's sequences in the batch. @internal */
  deliver(batch: readonly Entry[], logits: readonly Float32Array[], ms: number): void {
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

  /** The forward pass failed: every sequence in it fails. @internal */
  failAll(batch: readonly Entry[], err: unknown): void {
    for (const e of batch) this.end(e, 'failed', err);
  }

  /** The submission's reader is not taking output: its sequences leave the batch, keeping their caches. */
  private block(g: Group): void {
    if (g.open === 0) return;
    if (!g.blocked) {
      g.blocked = true;
      g.blockedSince = ++this.blockCounter;
      const ms = this.limits.stallTimeoutMs;
      // Not unref'd: a blocked request is pending work, and this timer is what ends it.
      if (Number.isFinite(ms)) g.stallTimer = setTimeout(() => this.cut(g, new StreamStalledError(`the client took no output for ${ms} ms; the stream was ended`)), ms);
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
    this.engine.kick();
  }

  /** Held caches are memory: past the limit, the submission blocked longest is ended. */
  private enforceHeldLimit(): void {
    while (this.held.length > this.limits.maxPaused) {
      let victim: Group | undefined;
      for (const e of this.held) if (e.group.blocked && (!victim || e.group.blockedSince < victim.blockedSince)) victim = e.group;
      if (!victim) return;
      this.cut(victim, new StreamStalledError(`the client took no output while ${this.limits.maxPaused} sequences waited on slow clients; the stream was ended`));
    }
  }

  /** Ends a submission whose reader stopped taking output. */
  private cut(g: Group, err: StreamStalledError): void {
    if (g.open === 0) return;
    this.counts.stalled++;
    for (const e of g.entries) this.end(e, 'failed', err);
  }

  /** Takes a sequence out of the queue, batch or held list, frees its cache, and tells its sink. Idempotent. */
  private end(e: Entry, outcome: Outcome, err?: unknown): void {
    if (e.state === 'ended') return;
    const list = e.state === 'queued' ? this.queue : e.state === 'active' ? this.active : this.held;
    list.splice(list.indexOf(e), 1);
    if (e.state === 'active') this.running(e.group, -1);
    e.state = 'ended';
    clearTimeout(e.timer);
    const g = e.group;
    if (!g.keepCaches) e.seq.cache.free();
    this.counts[outcome]++;
    if (--g.open === 0) {
      clearTimeout(g.stallTimer);
      g.detach();
    }
    try {
      if (outcome === 'finished') e.sink.done(e.seq.result());
      else e.sink.fail(err);
    } catch (sinkErr) {
      // A sink's bug must not end the step for the rest of the batch, nor the process.
      try {
        if (outcome === 'finished') e.sink.fail(sinkErr);
        else throw sinkErr;
      } catch (again) {
        process.emitWarning(`a generation's consumer threw while it was being told the outcome: ${(again as Error)?.message ?? String(again)}`);
      }
    } finally {
      if (this.idle()) for (const w of this.idleWaiters.splice(0)) w();
      this.engine.kick(); // a freed slot lets a queued sequence in
    }
  }
}

export class Scheduler {
  /** The default lane (the library's, when a LanguageModel owns this scheduler). */
  readonly lane: SchedulerLane;
  private readonly lanes: SchedulerLane[] = [];
  private scheduled = false;
  /** @internal */ closed = false;
  private steps = 0;
  private rows = 0;
  /** Which lane admits first this step: turns rotate so that no lane always fills the batch first. */
  private turn = 0;

  constructor(private readonly model: GrokModel, limits: Partial<SchedulerLimits> = DEFAULT_LIMITS) {
    this.lane = new SchedulerLane(this, resolveLimits(limits), 'the scheduler is shutting down');
    this.lanes.push(this.lane);
  }

  /** The default lane's limits. */
  get limits(): SchedulerLimits {
    return this.lane.limits;
  }

  /** A new lane with its own limits and counters (`base` fills what `limits` leaves out); close it to remove it. */
  openLane(limits: Partial<SchedulerLimits> = {}, closingMessage = 'the server is shutting down', base: Partial<SchedulerLimits> = {}): SchedulerLane {
    if (this.closed) throw new AbortError('the scheduler is shut down');
    const lane = new SchedulerLane(this, resolveLimits(limits, base), closingMessage);
    this.lanes.push(lane);
    return lane;
  }

  /** Every lane together: sequences and outcomes summed, forward passes counted once. */
  stats(): SchedulerStats {
    const sum = { active: 0, queued: 0, paused: 0, finished: 0, aborted: 0, failed: 0, stalled: 0 };
    for (const l of this.lanes) {
      const s = l.stats();
      for (const k of Object.keys(sum) as (keyof typeof sum)[]) sum[k] += s[k];
    }
    return { ...sum, steps: this.steps, rows: this.rows };
  }

  get accepting(): boolean {
    return this.lane.accepting && !this.closed;
  }

  /** Submits to the default lane; see SchedulerLane.submit. */
  submit(seqs: readonly SequenceState[], sinks: readonly SequenceSink[], signal?: AbortSignal, client?: string, keepCaches?: boolean): Submission {
    return this.lane.submit(seqs, sinks, { ...(signal ? { signal } : {}), ...(client !== undefined ? { client } : {}), ...(keepCaches ? { keepCaches } : {}) });
  }

  /** Closes every lane: running sequences get `graceMs` to finish, then the rest are aborted; nothing is taken after. */
  async close(graceMs: number): Promise<void> {
    const lanes = [...this.lanes];
    await Promise.all(lanes.map((l) => l.close(graceMs)));
    this.closed = true;
  }

  /** @internal A closed lane leaves (the default one stays, closed). */
  release(lane: SchedulerLane): void {
    if (lane === this.lane) return;
    const i = this.lanes.indexOf(lane);
    if (i >= 0) this.lanes.splice(i, 1);
  }

  /** @internal Schedules a step when there is work. */
  kick(): void {
    if (this.scheduled || !this.lanes.some((l) => l.active.length > 0 || l.next() !== undefined)) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.step();
      this.kick();
    });
  }

  private step(): void {
    const n = this.lanes.length;
    const order = this.lanes.map((_, i) => this.lanes[(this.turn + i) % n]!);
    this.turn = (this.turn + 1) % Math.max(1, n);
    for (const l of order) l.admit();
    const parts = order.map((l) => ({ lane: l, batch: l.active.slice() })).filter((p) => p.batch.length > 0);
    if (parts.length === 0) return;
    const all = parts.flatMap((p) => p.batch);
    const inputs = all.map((e) => ({ tokens: e.seq.nextInput(), cache: e.seq.cache }));
    const t0 = performance.now();
    let logits: Float32Array[];
    try {
      logits = this.model.forward(inputs);
    } catch (err) {
      for (const p of parts) p.lane.failAll(p.batch, err);
      return;
    }
    const ms = performance.now() - t0;
    this.steps++;
    let at = 0;
    for (const p of parts) {
      let rows = 0;
      for (let i = 0; i < p.batch.length; i++) rows += inputs[at + i]!.tokens.length;
      this.rows += rows;
      p.lane.counts.steps++;
      p.lane.counts.rows += rows;
      p.lane.deliver(p.batch, logits.slice(at, at + p.batch.length), ms);
      at += p.batch.length;
    }
  }
}
