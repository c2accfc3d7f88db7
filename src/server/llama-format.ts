/**
 * llama-server's response shapes for its native /completion: one JSON object, or server-sent
 * events of `{content, stop: false}` pieces ending with one `stop: true` event that carries the
 * totals (tokens_predicted, tokens_evaluated, stop_type, timings...). No `[DONE]` line, as
 * llama-server sends none on this endpoint.
 */
import type { ServerResponse } from 'node:http';
import type { GenerationChunk, GenerationResult, StopReason } from '../generate/sequence.js';
import type { Job, Output } from './completion-job.js';
import { sendJson, SSE_HEADERS, sseEvent } from './respond.js';

export interface NativeJobInfo {
  readonly model: string;
  readonly prompt: string;
  readonly returnTokens: boolean;
  readonly timingsPerToken: boolean;
  /** generation_settings in the last event / the response. */
  readonly settings: Record<string, unknown>;
}

export interface LlamaTimings {
  prompt_n: number;
  prompt_ms: number;
  prompt_per_token_ms: number;
  prompt_per_second: number;
  predicted_n: number;
  predicted_ms: number;
  predicted_per_token_ms: number;
  predicted_per_second: number;
}

export function llamaTimings(promptN: number, promptMs: number, predictedN: number, predictedMs: number): LlamaTimings {
  const per = (ms: number, n: number) => (n > 0 ? ms / n : 0);
  const rate = (ms: number, n: number) => (ms > 0 ? (n * 1000) / ms : 0);
  return {
    prompt_n: promptN,
    prompt_ms: promptMs,
    prompt_per_token_ms: per(promptMs, promptN),
    prompt_per_second: rate(promptMs, promptN),
    predicted_n: predictedN,
    predicted_ms: predictedMs,
    predicted_per_token_ms: per(predictedMs, predictedN),
    predicted_per_second: rate(predictedMs, predictedN),
  };
}

/** llama-server's stop_type: `eos` (the model's end, or a constraint's complete match), `word` (a stop string), `limit` (n_predict or the context). */
export function stopType(r: StopReason): 'eos' | 'word' | 'limit' {
  return r === 'eos' || r === 'constraint' ? 'eos' : r === 'stop_string' ? 'word' : 'limit';
}

export function nativeFinal(info: NativeJobInfo, job: Job, r: GenerationResult, content: string): Record<string, unknown> {
  return {
    index: 0,
    content,
    tokens: info.returnTokens ? r.ids : [],
    id_slot: 0,
    stop: true,
    model: info.model,
    tokens_predicted: r.usage.completionTokens,
    tokens_evaluated: job.promptTokens,
    generation_settings: { ...info.settings, seed: r.seed },
    prompt: info.prompt,
    has_new_line: r.text.includes('\n'),
    truncated: false,
    stop_type: stopType(r.stopReason),
    stopping_word: r.stopString ?? '',
    tokens_cached: job.promptTokens + r.usage.completionTokens,
    timings: llamaTimings(job.promptTokens, r.timings.prefillMs, r.usage.completionTokens, r.timings.decodeMs),
  };
}

/** The Output runJob writes a native /completion job through (always one choice). */
export class NativeOutput implements Output {
  private prefillMs = 0;
  private decodeMs = 0;
  private predicted = 0;

  constructor(
    private readonly job: Job,
    private readonly res: ServerResponse,
    private readonly info: NativeJobInfo,
  ) {}

  chunk(i: number, c: GenerationChunk): boolean {
    if (!this.job.stream) return true;
    this.predicted += c.ids.length;
    if (c.text === '' && !this.info.returnTokens) return true;
    const event: Record<string, unknown> = { index: 0, content: c.text, tokens: this.info.returnTokens ? c.ids : [], stop: false, id_slot: 0 };
    if (this.info.timingsPerToken) {
      const seq = this.job.choices[i]!.seq;
      this.prefillMs = seq.prefillMs;
      this.decodeMs = seq.decodeMs;
      event.timings = llamaTimings(this.job.promptTokens, this.prefillMs, this.predicted, this.decodeMs);
    }
    return this.send(event);
  }

  done(_i: number, r: GenerationResult): void {
    if (!this.job.stream) {
      sendJson(this.res, 200, nativeFinal(this.info, this.job, r, r.text));
      return;
    }
    this.send(nativeFinal(this.info, this.job, r, ''));
    this.res.end();
  }

  private send(event: object): boolean {
    const res = this.res;
    if (res.writableEnded || res.destroyed) return true;
    if (!res.headersSent) res.writeHead(200, SSE_HEADERS);
    return res.write(sseEvent(event));
  }
}
