/**
 * The side-by-side reference: llama.cpp on the same bench model as a Q8_0 GGUF and the same thread
 * counts, so ratios come from one run. Either `llama-bench` on PATH, or (where no llama.cpp build
 * is at hand) node-llama-cpp's prebuilt CPU binaries, installed outside the project:
 *
 *     (cd /some/dir && npm install node-llama-cpp @node-llama-cpp/linux-x64 --omit=optional --ignore-scripts)
 *     GROK_TS_NODE_LLAMA_CPP=/some/dir/node_modules/node-llama-cpp npm run bench
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface LlamaBenchResult {
  readonly threads: number;
  readonly prefillTokS: number;
  readonly decodeTokS: number;
}

export function llamaBenchAvailable(): boolean {
  const r = spawnSync('llama-bench', ['--help'], { encoding: 'utf8' });
  return !r.error && r.status === 0;
}

/** Runs llama-bench (prefill `prefillTokens` tokens, decode 16) and returns its average rates. */
export function runLlamaBench(gguf: string, threads: number, prefillTokens = 512): LlamaBenchResult {
  const r = spawnSync('llama-bench', ['-m', gguf, '-t', String(threads), '-p', String(prefillTokens), '-n', '16', '-o', 'json'], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.error || r.status !== 0) throw new Error(`llama-bench failed: ${r.error?.message ?? r.stderr.slice(-400)}`);
  const rows = JSON.parse(r.stdout) as { n_prompt: number; n_gen: number; avg_ts: number }[];
  const prefill = rows.find((x) => x.n_prompt > 0 && x.n_gen === 0);
  const decode = rows.find((x) => x.n_gen > 0 && x.n_prompt === 0);
  if (!prefill || !decode) throw new Error('llama-bench printed no prefill/decode rows');
  return { threads, prefillTokS: prefill.avg_ts, decodeTokS: decode.avg_ts };
}

/** The node-llama-cpp package directory named by $GROK_TS_NODE_LLAMA_CPP, if it holds one. */
export function nodeLlamaCppDir(): string | undefined {
  const dir = process.env['GROK_TS_NODE_LLAMA_CPP'];
  if (!dir) return undefined;
  if (!fs.existsSync(path.join(dir, 'dist', 'index.js'))) {
    throw new Error(`GROK_TS_NODE_LLAMA_CPP=${dir}: no node-llama-cpp there (expected ${path.join(dir, 'dist', 'index.js')})`);
  }
  return dir;
}

/** Runs llama.cpp through node-llama-cpp in a child process (llama-cpp-node.ts) with the bench protocol. */
export function runNodeLlamaCpp(dir: string, gguf: string, threads: number, steps = 32, prefill = 512): LlamaBenchResult {
  const script = path.join(path.dirname(fileURLToPath(import.meta.url)), 'llama-cpp-node.js');
  const r = spawnSync(process.execPath, [script, dir, gguf, String(threads), String(steps), String(prefill)], { encoding: 'utf8', maxBuffer: 16 << 20 });
  if (r.error || r.status !== 0) throw new Error(`node-llama-cpp run failed: ${r.error?.message ?? r.stderr.slice(-400)}`);
  const out = JSON.parse(r.stdout.trim().split('\n').pop()!) as { decodeTokS: number; prefillTokS: number };
  return { threads, decodeTokS: out.decodeTokS, prefillTokS: out.prefillTokS };
}

/** A llama.cpp to measure beside: what it is, and one run on a GGUF at a thread count. */
export interface LlamaCppRunner {
  readonly name: string;
  run(gguf: string, threads: number, prefill?: number): LlamaBenchResult;
}

/** llama-bench on PATH, else node-llama-cpp named by $GROK_TS_NODE_LLAMA_CPP; undefined when neither is at hand. */
export function llamaCppRunner(): LlamaCppRunner | undefined {
  if (llamaBenchAvailable()) return { name: 'llama-bench', run: (gguf, t, prefill) => runLlamaBench(gguf, t, prefill) };
  const dir = nodeLlamaCppDir();
  if (!dir) return undefined;
  return { name: `node-llama-cpp from ${dir}`, run: (gguf, t, prefill) => runNodeLlamaCpp(dir, gguf, t, 32, prefill) };
}

/** 1 thread and all of them (the thread counts every benchmark section compares). */
export function benchThreadCounts(): number[] {
  const all = os.availableParallelism();
  return all > 1 ? [1, all] : [1];
}
