/**
 * /metrics in the Prometheus text exposition format (version 0.0.4): counters the server keeps
 * (requests by status, tokens in and out, time spent on them) and gauges read when scraped (queue
 * and batch from the scheduler, memory from the process, KV cache from the live sequences).
 */
import type { KvUsage, TokenCounts } from './live.js';
import type { SchedulerStats } from '../generate/scheduler.js';

export const METRICS_CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8';

/** What is read at scrape time. */
export interface MetricsSnapshot {
  /** undefined while the model loads. */
  readonly scheduler: SchedulerStats | undefined;
  readonly kv: KvUsage;
  /** The KV cache every batch slot would take at full context, in tokens (for a usage ratio). */
  readonly kvCapacityTokens: number;
  readonly connections: number;
  readonly memory: NodeJS.MemoryUsage;
  /** Peak resident set size, in bytes. */
  readonly peakRss: number;
}

export class Metrics {
  private readonly byStatus = new Map<string, number>();
  private prompt = 0;
  private completion = 0;
  private prefillMs = 0;
  private decodeMs = 0;

  /** One finished request; status 0 is a request whose client left before any answer. */
  request(status: number): void {
    const k = String(status);
    this.byStatus.set(k, (this.byStatus.get(k) ?? 0) + 1);
  }

  tokens(t: TokenCounts): void {
    this.prompt += t.prompt;
    this.completion += t.completion;
    this.prefillMs += t.prefillMs;
    this.decodeMs += t.decodeMs;
  }

  render(s: MetricsSnapshot): string {
    const out: string[] = [];
    const metric = (name: string, type: 'counter' | 'gauge', help: string, samples: [labels: string, value: number][]): void => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`);
      for (const [labels, value] of samples) out.push(`${name}${labels} ${Number.isFinite(value) ? value : 0}`);
    };
    const statuses = [...this.byStatus.entries()].sort(([a], [b]) => a.localeCompare(b));
    metric('grokts_requests_total', 'counter', 'HTTP requests answered, by status (0: the client left first).', statuses.length ? statuses.map(([k, v]) => [`{status="${k}"}`, v]) : [['{status="200"}', 0]]);
    metric('grokts_prompt_tokens_total', 'counter', 'Prompt tokens processed (prefill).', [['', this.prompt]]);
    metric('grokts_tokens_predicted_total', 'counter', 'Tokens generated.', [['', this.completion]]);
    metric('grokts_prompt_seconds_total', 'counter', 'Time sequences spent in prefill, summed over sequences.', [['', this.prefillMs / 1000]]);
    metric('grokts_tokens_predicted_seconds_total', 'counter', 'Time sequences spent decoding, summed over sequences.', [['', this.decodeMs / 1000]]);
    metric('grokts_prompt_tokens_per_second', 'gauge', 'Average prefill throughput per sequence since start.', [['', this.prefillMs > 0 ? (this.prompt * 1000) / this.prefillMs : 0]]);
    metric('grokts_predicted_tokens_per_second', 'gauge', 'Average decode throughput per sequence since start.', [['', this.decodeMs > 0 ? (this.completion * 1000) / this.decodeMs : 0]]);
    const sch = s.scheduler;
    metric('grokts_sequences_active', 'gauge', 'Sequences in the batch.', [['', sch?.active ?? 0]]);
    metric('grokts_sequences_queued', 'gauge', 'Sequences waiting for a batch slot.', [['', sch?.queued ?? 0]]);
    metric('grokts_sequences_paused', 'gauge', 'Sequences held out of the batch while their client reads slowly.', [['', sch?.paused ?? 0]]);
    metric('grokts_forward_steps_total', 'counter', 'Batched forward passes run.', [['', sch?.steps ?? 0]]);
    metric('grokts_connections_open', 'gauge', 'HTTP connections being served.', [['', s.connections]]);
    metric('grokts_kv_cache_tokens', 'gauge', 'Tokens held in the KV caches of live sequences.', [['', s.kv.tokens]]);
    metric('grokts_kv_cache_bytes', 'gauge', 'Bytes taken by the KV caches of live sequences.', [['', s.kv.bytes]]);
    metric('grokts_kv_cache_usage_ratio', 'gauge', 'KV cache tokens over what a full batch at full context would hold.', [['', s.kvCapacityTokens > 0 ? s.kv.tokens / s.kvCapacityTokens : 0]]);
    metric('grokts_resident_memory_bytes', 'gauge', 'Resident set size of the process.', [['', s.memory.rss]]);
    metric('grokts_resident_memory_peak_bytes', 'gauge', 'Largest resident set size so far.', [['', s.peakRss]]);
    metric('grokts_heap_used_bytes', 'gauge', 'V8 heap in use.', [['', s.memory.heapUsed]]);
    metric('grokts_array_buffers_bytes', 'gauge', 'Memory held by ArrayBuffers (weights read into memory, KV caches).', [['', s.memory.arrayBuffers]]);
    return out.join('\n') + '\n';
  }
}
