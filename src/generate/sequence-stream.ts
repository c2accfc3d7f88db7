/**
 * One library generation as an AsyncIterable over the scheduler: nothing is submitted until the
 * stream is first iterated (an untouched stream holds only its KV cache, freed by return()); chunks are buffered for the reader,
 * and a reader that falls behind by more than a few chunks blocks its sequence (out of the batch,
 * cache kept) until it reads again. Breaking out of the loop aborts the sequence; an AbortSignal
 * ends it at the next step boundary.
 */
import { AbortError, UsageError } from '../errors.js';
import type { SchedulerLane } from './scheduler.js';
import type { GenerationChunk, GenerationResult, SequenceState } from './sequence.js';

/** A generation in progress: iterate for text deltas; `result` settles when it ends. */
export interface GenerationStream extends AsyncIterable<GenerationChunk> {
  readonly result: Promise<GenerationResult>;
}

/** Chunks a reader may fall behind before its sequence sits out steps. */
const READ_AHEAD = 8;

/** A stream's `result`, settled by its producer; the iterator rethrows, so an unawaited rejection is not a crash. */
export function pendingResult(): { result: Promise<GenerationResult>; resolve: (r: GenerationResult) => void; reject: (e: unknown) => void } {
  let resolve!: (r: GenerationResult) => void;
  let reject!: (e: unknown) => void;
  const result = new Promise<GenerationResult>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  result.catch(() => {});
  return { result, resolve, reject };
}

export function sequenceStream(lane: SchedulerLane, seq: SequenceState, signal: AbortSignal | undefined, keepCache: boolean): GenerationStream {
  const { result, resolve, reject } = pendingResult();
  let started = false;
  return {
    result,
    [Symbol.asyncIterator]() {
      if (started) throw new UsageError('a generation stream can be iterated once');
      started = true;
      const buffered: GenerationChunk[] = [];
      let ended: { ok: true } | { ok: false; err: unknown } | undefined;
      let waiting: { resolve: (v: IteratorResult<GenerationChunk, void>) => void; reject: (e: unknown) => void } | undefined;
      const controller = new AbortController();
      const onAbort = (): void => controller.abort(signal!.reason instanceof AbortError ? signal!.reason : new AbortError());
      if (signal?.aborted) onAbort();
      else signal?.addEventListener('abort', onAbort, { once: true });
      const detach = (): void => signal?.removeEventListener('abort', onAbort);
      const wake = (): void => {
        if (!waiting) return;
        const w = waiting;
        if (buffered.length > 0) {
          waiting = undefined;
          w.resolve({ value: buffered.shift()!, done: false });
        } else if (ended) {
          waiting = undefined;
          if (ended.ok) w.resolve({ value: undefined, done: true });
          else w.reject(ended.err);
        }
      };
      let submission: { resume(): void } | undefined;
      const submit = (): void => {
        submission = lane.submit(
          [seq],
          [
            {
              chunk: (c) => {
                buffered.push(c);
                wake();
                return buffered.length < READ_AHEAD;
              },
              done: (r) => {
                detach();
                ended = { ok: true };
                resolve(r);
                wake();
              },
              fail: (err) => {
                detach();
                ended = { ok: false, err };
                reject(err);
                wake();
              },
            },
          ],
          { signal: controller.signal, keepCaches: keepCache },
        );
      };
      return {
        next(): Promise<IteratorResult<GenerationChunk, void>> {
          if (!submission && !ended) {
            try {
              submit();
            } catch (err) {
              detach();
              // Refused (full queue, closing lane): nothing will run, so the cache goes now.
              if (!keepCache) seq.cache.free();
              ended = { ok: false, err };
              reject(err);
            }
          }
          return new Promise((res, rej) => {
            waiting = { resolve: res, reject: rej };
            wake();
            if (waiting && !ended) submission?.resume();
          });
        },
        async return(): Promise<IteratorResult<GenerationChunk, void>> {
          if (!ended) {
            ended = { ok: false, err: new UsageError('the stream was closed before generation finished') };
            controller.abort(new AbortError('the stream was closed before generation finished'));
            detach();
            reject(ended.err);
            if (!submission && !keepCache) seq.cache.free();
          }
          return { done: true, value: undefined };
        },
      };
    },
  };
}
