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
 */
import { AbortError } from '../errors.js';
import type { GenerationChunk, GenerationResult, SequenceState } from '../generate/sequence.js';
import type { GrokModel } from '../model/grok.js';
import { overloaded } from './errors.js';

/** Where a sequence's output goes. */
export interface SequenceSink {
  /** One step's output. Returning false (the reader is behind) parks the sequence until `resume()`. */
  chunk(c: GenerationChunk): boolean;
  done(r: GenerationResult): void;
  /** The sequence ended early (aborted, failed, timed out in the queue, shutdown); its cache is already freed. */
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
}

export const DEFAULT_LIMITS: SchedulerLimits = { maxBatch: 16, maxQueue: 64, maxPrefillTokens: 2048, queueTimeoutMs: 60_000 };

export interface SchedulerStats {
  readonly active: number;
  readonly queued: number;
  /** Active sequences sitting out steps because their client reads slower than they generate. */
  readonly paused: number;
  /** Forward passes run, and the token rows they held in total. */
  readonly steps: number;
  readonly rows: number;
  readonly finished: number;
  readonly aborted: number;
  readonly failed: number;
}

/** A submitted request's handle. */
export interface Submission {
  /** Lets parked sequences (see SequenceSink.chunk) take part in steps again. */
  resume(): void;
}

interface Entry {
  readonly seq: SequenceState;
  readonly sink: SequenceSink;
  readonly group: Group;
  state: 'queued' | 'active' | 'ended';
  paused: boolean;
  timer: NodeJS.Timeout | undefined;
}

interface Group {
  open: number;
  readonly detach: () => void;
}

export class Scheduler {
  private readonly queue: Entry[] = [];
  private readonly active: Entry[] = [];
  private scheduled = false;
  private closing = false;
  private idleWaiters: (() => void)[] = [];
  private counts = { steps: 0, rows: 0, finished: 0, aborted: 0, failed: 0 };

  constructor(private readonly model: GrokModel, readonly limits: SchedulerLimits = DEFAULT_LIMITS) {
    for (const [k, v] of Object.entries(limits)) {
      if (!Number.isSafeInteger(v) || v < 1) throw new RangeError(`scheduler limit ${k} must be a positive integer, got ${v}`);
    }
  }

  stats(): SchedulerStats {
    return {
      active: this.active.length,
      queued: this.queue.length,
      paused: this.active.filter((e) => e.paused).length,
      ...this.counts,
    };
  }

  get accepting(): boolean {
    return !this.closing;
  }

  /**
   * Queues sequences (one request's choices) as a unit: all are accepted or, when the queue has no
   * room for all of them or the server is closing, none (a RequestError with Retry-After).
   * Aborting `signal` ends every one of them that is still running and frees its cache at once.
   */
  submit(seqs: readonly SequenceState[], sinks: readonly SequenceSink[], signal?: AbortSignal): Submission {
    if (seqs.length !== sinks.length || seqs.length === 0) throw new RangeError('submit needs one sink per sequence and at least one sequence');
    if (this.closing) throw overloaded(503, 'the server is shutting down', 5);
    if (seqs.length > this.limits.maxQueue) throw new RangeError(`${seqs.length} sequences exceed the queue size ${this.limits.maxQueue}`);
    if (this.queue.length + seqs.length > this.limits.maxQueue) {
      throw overloaded(429, `the server is busy: ${this.queue.length} sequences are waiting (limit ${this.limits.maxQueue}); retry later`, 1);
    }
    const onAbort = (): void => {
      const reason: unknown = signal?.reason;
      const err = reason instanceof AbortError ? reason : new AbortError('the client went away');
      for (const e of entries) this.end(e, 'aborted', err);
    };
    const group: Group = { open: seqs.length, detach: () => signal?.removeEventListener('abort', onAbort) };
    const entries: Entry[] = seqs.map((seq, i) => ({ seq, sink: sinks[i]!, group, state: 'queued', paused: false, timer: undefined }));
    for (const e of entries) {
      this.queue.push(e);
      e.timer = setTimeout(() => {
        this.end(e, 'failed', overloaded(503, `the request waited ${this.limits.queueTimeoutMs} ms in the queue without starting`, 1));
      }, this.limits.queueTimeoutMs);
      e.timer.unref();
    }
    if (signal?.aborted) onAbort();
    else signal?.addEventListener('abort', onAbort, { once: true });
    this.kick();
    return {
      resume: () => {
        for (const e of entries) e.paused = false;
        this.kick();
      },
    };
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
    for (const e of [...this.queue, ...this.active]) this.end(e, 'aborted', err);
  }

  private idle(): boolean {
    return this.queue.length === 0 && this.active.length === 0;
  }

  private runnable(): boolean {
    return (this.queue.length > 0 && this.active.length < this.limits.maxBatch) || this.active.some((e) => !e.paused);
  }

  private kick(): void {
    if (this.scheduled || !this.runnable()) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.step();
      this.kick();
    });
  }

  /** Moves queued sequences into the batch while there is room and prefill budget. */
  private admit(): void {
    let prefill = 0;
    while (this.queue.length > 0 && this.active.length < this.limits.maxBatch) {
      const e = this.queue[0]!;
      const n = e.seq.nextInput().length;
      if (prefill > 0 && prefill + n > this.limits.maxPrefillTokens) break;
      this.queue.shift();
      clearTimeout(e.timer);
      e.state = 'active';
      this.active.push(e);
      prefill += n;
      if (e.seq.done) this.end(e, 'finished'); // nothing to generate (max tokens 0)
    }
  }

  private step(): void {
    this.admit();
    const batch = this.active.filter((e) => !e.paused);
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
    for (const [i, e] of batch.entries()) {
      // A sink called earlier in this loop may have ended a sibling (e.g. a failed request aborts its other choices).
      if (e.state !== 'active') continue;
      const seq = e.seq;
      if (seq.generated.length === 0) seq.prefillMs += ms;
      else seq.decodeMs += ms;
      try {
        const chunk = seq.accept(logits[i]!);
        if ((chunk.text !== '' || chunk.ids.length > 0) && !e.sink.chunk(chunk)) e.paused = true;
      } catch (err) {
        this.end(e, 'failed', err);
        continue;
      }
      if (seq.done) this.end(e, 'finished');
    }
  }

  /** Takes a sequence out of the queue or batch, frees its cache, and tells its sink. Idempotent. */
  private end(e: Entry, outcome: 'finished' | 'aborted' | 'failed', err?: unknown): void {
    if (e.state === 'ended') return;
    const list = e.state === 'queued' ? this.queue : this.active;
    list.splice(list.indexOf(e), 1);
    e.state = 'ended';
    clearTimeout(e.timer);
    e.seq.cache.free();
    this.counts[outcome]++;
    if (--e.group.open === 0) e.group.detach();
    try {
      if (outcome === 'finished') e.sink.done(e.seq.result());
      else e.sink.fail(err);
    } finally {
      if (this.idle()) for (const w of this.idleWaiters.splice(0)) w();
      this.kick(); // a freed slot lets a queued sequence in
    }
  }
}
