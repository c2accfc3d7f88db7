/**
 * The single-stream generation loop: prefill the whole prompt in one forward call, then decode one
 * token at a time with the KV cache. Streaming is an AsyncIterable of text deltas; an AbortSignal
 * stops at the next step boundary and frees the cache.
 */
import { AbortError } from '../errors.js';
import type { GrokModel } from '../model/grok.js';
import type { GenerationChunk, GenerationResult, SequenceState } from './sequence.js';

/** Streams one sequence's chunks; the final result is delivered through `onDone`. */
export async function* runSequence(
  model: GrokModel,
  seq: SequenceState,
  signal: AbortSignal | undefined,
  onDone: (r: GenerationResult) => void,
  /** Free the cache when the sequence ends or is aborted (a chat session keeps it). */
  freeCache = true,
): AsyncGenerator<GenerationChunk, void, void> {
  try {
    while (!seq.done) {
      throwIfAborted(signal);
      const input = seq.nextInput();
      const t0 = performance.now();
      const [logits] = model.forward([{ tokens: input, cache: seq.cache }]);
      const ms = performance.now() - t0;
      if (seq.generated.length === 0) seq.prefillMs += ms;
      else seq.decodeMs += ms;
      const chunk = seq.accept(logits!);
      if (chunk.text !== '' || chunk.ids.length > 0) yield chunk;
      // Let timers, I/O and abort handlers run between steps: a forward call is synchronous.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
    onDone(seq.result());
  } finally {
    if (freeCache) seq.cache.free();
  }
}

export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    throw reason instanceof AbortError ? reason : new AbortError();
  }
}
