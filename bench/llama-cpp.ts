/**
 * The side-by-side reference: where `llama-bench` (llama.cpp) is on PATH, run it on the same
 * bench model as a Q8_0 GGUF and the same thread counts, so ratios come from one run.
 */
import { spawnSync } from 'node:child_process';

export interface LlamaBenchResult {
  readonly threads: number;
  readonly prefillTokS: number;
  readonly decodeTokS: number;
}

export function llamaBenchAvailable(): boolean {
  const r = spawnSync('llama-bench', ['--help'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

/** Runs llama-bench (prefill 512, decode 16) and returns its average rates. */
export function runLlamaBench(gguf: string, threads: number): LlamaBenchResult {
  const r = spawnSync('llama-bench', ['-m', gguf, '-t', String(threads), '-p', '512', '-n', '16', '-o', 'json'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.error || r.status !== 0) throw new Error(`llama-bench failed: ${r.error?.message ?? r.stderr.slice(-400)}`);
  const rows = JSON.parse(r.stdout) as { n_prompt: number; n_gen: number; avg_ts: number }[];
  const prefill = rows.find((x) => x.n_prompt > 0 && x.n_gen === 0);
  const decode = rows.find((x) => x.n_gen > 0 && x.n_prompt === 0);
  if (!prefill || !decode) throw new Error('llama-bench printed no prefill/decode rows');
  return { threads, prefillTokS: prefill.avg_ts, decodeTokS: decode.avg_ts };
}
