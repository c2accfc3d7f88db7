/**
 * The sequences a request created, from creation until its response is over: what /slots lists,
 * what /metrics counts as KV-cache use, and where a request's log line finds its token counts. It
 * reads SequenceState only (its cache, prompt and generated tokens, timings), never the
 * scheduler's internals, so it holds whatever the scheduler does.
 */
import type * as http from 'node:http';
import type { SequenceState } from '../generate/sequence.js';

export interface TrackedRequest {
  readonly id: string;
  readonly endpoint: string;
  readonly client: string;
  readonly seqs: readonly SequenceState[];
  readonly started: number;
}

export interface TokenCounts {
  /** Prompt tokens of the sequences that were run (prefilled). */
  readonly prompt: number;
  readonly completion: number;
  readonly prefillMs: number;
  readonly decodeMs: number;
}

export interface KvUsage {
  /** Tokens held in live sequences' caches. */
  readonly tokens: number;
  /** Bytes their buffers take. */
  readonly bytes: number;
}

export interface SlotView {
  readonly id: number;
  readonly id_task: string;
  readonly endpoint: string;
  /** True once the sequence has entered the batch (its cache holds tokens). */
  readonly is_processing: boolean;
  readonly n_ctx: number;
  readonly n_prompt_tokens: number;
  readonly n_decoded: number;
  readonly n_cached: number;
}

export function countTokens(seqs: readonly SequenceState[]): TokenCounts {
  let prompt = 0;
  let completion = 0;
  let prefillMs = 0;
  let decodeMs = 0;
  for (const s of seqs) {
    const ran = s.prefillMs > 0 || s.generated.length > 0;
    if (ran) prompt += s.promptTokens;
    completion += s.generated.length;
    prefillMs += s.prefillMs;
    decodeMs += s.decodeMs;
  }
  return { prompt, completion, prefillMs, decodeMs };
}

export class LiveSequences {
  private readonly requests = new Set<TrackedRequest>();
  private readonly byResponse = new WeakMap<http.ServerResponse, TrackedRequest[]>();
  private nextSlot = 0;
  private readonly slotIds = new WeakMap<SequenceState, number>();

  /**
   * Tracks a request's sequences until `release` is called (once its response is over); the
   * response keeps a reference so its log line can count their tokens.
   */
  track(res: http.ServerResponse, info: Omit<TrackedRequest, 'started'>): () => TokenCounts {
    const t: TrackedRequest = { ...info, started: Date.now() };
    for (const s of t.seqs) this.slotIds.set(s, this.nextSlot++);
    this.requests.add(t);
    const list = this.byResponse.get(res) ?? [];
    list.push(t);
    this.byResponse.set(res, list);
    let released: TokenCounts | undefined;
    return () => {
      if (!released) {
        this.requests.delete(t);
        released = countTokens(t.seqs);
      }
      return released;
    };
  }

  /** Tokens of every sequence a response's request created (zero for requests that generate nothing). */
  tokensOf(res: http.ServerResponse): TokenCounts {
    return countTokens((this.byResponse.get(res) ?? []).flatMap((t) => t.seqs));
  }

  get size(): number {
    let n = 0;
    for (const t of this.requests) n += t.seqs.length;
    return n;
  }

  kv(): KvUsage {
    let tokens = 0;
    let bytes = 0;
    for (const t of this.requests) {
      for (const s of t.seqs) {
        tokens += s.cache.length;
        bytes += s.cache.byteLength;
      }
    }
    return { tokens, bytes };
  }

  slots(contextLength: number): SlotView[] {
    const out: SlotView[] = [];
    for (const t of this.requests) {
      for (const s of t.seqs) {
        if (s.done) continue;
        out.push({
          id: this.slotIds.get(s)!,
          id_task: t.id,
          endpoint: t.endpoint,
          is_processing: s.cache.length > 0,
          n_ctx: contextLength,
          n_prompt_tokens: s.promptTokens,
          n_decoded: s.generated.length,
          n_cached: s.cache.length,
        });
      }
    }
    return out;
  }
}
