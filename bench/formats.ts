/**
 * The formats benchmark: the bench-size Grok (bench/model.ts) written in every llama.cpp
 * quantisation mix (bench/mixes.ts), each loaded through loadModel like a user's file and decoded
 * on the wasm backend with 1 and all threads, beside llama.cpp on the same file and thread count
 * in the same run where one is at hand (llama-bench on PATH, or node-llama-cpp through
 * $GROK_TS_NODE_LLAMA_CPP). Per mix: decode and prefill tokens/s, weight bytes per decoded token,
 * that as a fraction of the measured bandwidth, the ratios to llama.cpp, and the number of matmul
 * calls that fell back to the js kernel (0 is the goal; any other number is printed, never hidden).
 *
 * `GROK_TS_BENCH_MIXES=Q4_K_M,IQ3_S` limits the mixes; the files (1.2–3.6 GB each) are kept in the
 * cache directory for the next run.
 */
import * as path from 'node:path';
import { benchThreadCounts, llamaCppRunner, type LlamaBenchResult } from './llama-cpp.js';
import { MIXES, ensureMixGguf, type Mix } from './mixes.js';
import { benchConfig, benchModelInChild } from './model.js';

export interface FormatsBenchOptions {
  readonly mixes?: readonly Mix[];
  readonly layers?: number;
  readonly threads?: readonly number[];
  readonly decodeSteps?: number;
  readonly prefillTokens?: number;
}

/** The mixes named in $GROK_TS_BENCH_MIXES (all when unset); an unknown name is an error. */
export function mixesFromEnv(): readonly Mix[] {
  const v = process.env['GROK_TS_BENCH_MIXES'];
  if (!v) return MIXES;
  const names = v.split(',').map((s) => s.trim().toUpperCase()).filter(Boolean);
  for (const n of names) if (!(MIXES as readonly string[]).includes(n)) throw new Error(`GROK_TS_BENCH_MIXES: unknown mix ${n}; mixes: ${MIXES.join(', ')}`);
  return names as Mix[];
}

export async function benchFormats(log: (l: string) => void, cacheDir: string, opts: FormatsBenchOptions = {}): Promise<Record<string, number>> {
  const layers = opts.layers ?? 6;
  const steps = opts.decodeSteps ?? 16;
  const P = opts.prefillTokens ?? 512;
  const threadCounts = opts.threads ?? benchThreadCounts();
  const config = benchConfig(layers);
  const llama = llamaCppRunner();
  log(llama ? `llama.cpp side by side: ${llama.name}`
    : 'llama.cpp: llama-bench is not on PATH and GROK_TS_NODE_LLAMA_CPP is not set; no side-by-side ratios in this run');
  const out: Record<string, number> = {};
  const rows: string[] = [];
  for (const mix of opts.mixes ?? MIXES) {
    const file = ensureMixGguf(config, mix, path.join(cacheDir, `bench-${layers}l-${mix}.gguf`), log);
    const cells: string[] = [];
    for (const t of threadCounts) {
      const r = benchModelInChild(file, t, steps, P);
      const key = (k: string) => `formats.${mix}.${k}_t${t}`;
      for (const [k, v] of Object.entries(r)) out[key(k)] = v;
      let l: LlamaBenchResult | undefined;
      if (llama) {
        try {
          l = llama.run(file, t, P);
          out[key('llama_cpp_decode_tok_s')] = l.decodeTokS;
          out[key('llama_cpp_prefill_tok_s')] = l.prefillTokS;
          out[key('ratio_decode')] = r['decode_tok_s']! / l.decodeTokS;
          out[key('ratio_prefill')] = r['prefill_tok_s']! / l.prefillTokS;
        } catch (err) {
          log(`${mix} llama.cpp threads ${t}: ${(err as Error).message.split('\n')[0]}`);
        }
      }
      const ratio = (a: number, b?: number) => (b ? `${(a / b).toFixed(2)}×` : '–');
      log(`${mix.padEnd(8)} threads ${t}: decode ${r['decode_tok_s']!.toFixed(2)} tok/s (${(100 * r['decode_bandwidth_fraction']!).toFixed(0)} % of ${r['read_bandwidth_gbs']!.toFixed(1)} GB/s)` +
        (l ? `, llama.cpp ${l.decodeTokS.toFixed(2)} → ${ratio(r['decode_tok_s']!, l.decodeTokS)}` : '') +
        `; prefill ${P}: ${r['prefill_tok_s']!.toFixed(1)} tok/s` + (l ? `, llama.cpp ${l.prefillTokS.toFixed(1)} → ${ratio(r['prefill_tok_s']!, l.prefillTokS)}` : '') +
        `; js-fallback matmuls ${r['js_fallback_calls']}`);
      cells.push(`${r['decode_tok_s']!.toFixed(1)} | ${l ? l.decodeTokS.toFixed(1) : '–'} | ${ratio(r['decode_tok_s']!, l?.decodeTokS)} | ${ratio(r['prefill_tok_s']!, l?.prefillTokS)}`);
      if (t === threadCounts[0]) {
        out[`formats.${mix}.weight_bytes`] = r['weight_bytes']!;
        cells.unshift(`${(r['weight_bytes']! / 1e9).toFixed(2)} | ${(r['decode_bytes_per_token']! / 1e9).toFixed(3)}`);
      }
      out[key('js_fallback_calls')] = r['js_fallback_calls']!;
      cells.push(String(r['js_fallback_calls']));
    }
    rows.push(`| ${mix} | ${cells.join(' | ')} |`);
  }
  const head = threadCounts.map((t) => `${t}T grok-ts tok/s | ${t}T llama.cpp | ${t}T decode ratio | ${t}T prefill ratio | ${t}T js calls`).join(' | ');
  log(`\n| mix | GB | GB/token | ${head} |\n|${'---|'.repeat(3 + 5 * threadCounts.length)}\n${rows.join('\n')}`);
  return out;
}
