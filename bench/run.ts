/**
 * `npm run bench` / `grok-ts bench`: every benchmark in one run, so ratios compare like with like
 * on a noisy shared machine. Results are printed and written under bench/results/ with the machine
 * they ran on.
 */
import { execSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { loadModel } from '../src/language-model.js';
import { benchConstrain } from './constrain.js';
import { benchKernels } from './kernels.js';
import { benchPrefill } from './prefill.js';
import { benchThreadCounts, llamaCppRunner } from './llama-cpp.js';
import { benchMemory } from './memory.js';
import { benchPack } from './pack.js';
import { benchFormats, mixesFromEnv } from './formats.js';
import { benchTrueWidth } from './true-width.js';
import { benchModel, benchModelPath, type BenchFormat } from './model.js';
import { benchServer } from './server.js';
import { benchStreaming } from './streaming.js';
import { benchTokenizer } from './tokenizer.js';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The project root (this file runs from dist/bench/). */
const ROOT = path.resolve(here, '..', '..');

export interface BenchOptions {
  /** Which sections to run (default: all). */
  readonly only?: readonly string[];
  /** Where generated checkpoints are cached (default bench/cache/). */
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
}

export function machineInfo(): Record<string, string | number> {
  let commit = 'unknown';
  try {
    commit = execSync('git rev-parse --short HEAD', { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }).trim();
  } catch {
    // not a git checkout (an installed package)
  }
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryBytes: os.totalmem(),
    platform: `${os.platform()} ${os.release()} ${os.arch()}`,
    node: process.version,
    commit,
    date: new Date().toISOString(),
  };
}

type Section = (log: (l: string) => void, cacheDir: string) => Promise<Record<string, number>>;

const BENCH_LAYERS = 6;

/** Decode/prefill of the wasm backend on the bench model in one precision, beside llama.cpp where one is at hand (llama-cpp.ts). */
async function modelSection(format: BenchFormat, log: (l: string) => void, cache: string): Promise<Record<string, number>> {
  const r = await benchModel(log, cache, { format, layers: BENCH_LAYERS });
  const out: Record<string, number> = {};
  for (const [k, v] of Object.entries(r)) out[`model.${format}.${k}`] = v;
  if (format !== 'q8_0') return out;
  const llama = llamaCppRunner();
  if (!llama) {
    log('llama.cpp: llama-bench is not on PATH and GROK_TS_NODE_LLAMA_CPP is not set; no side-by-side ratio in this run');
    return out;
  }
  log(`llama.cpp: ${llama.name}`);
  const gguf = benchModelPath(cache, 'q8_0', BENCH_LAYERS);
  for (const t of benchThreadCounts()) {
    const l = llama.run(gguf, t);
    const ours = r[`decode_tok_s_t${t}`]!;
    const oursPrefill = r[`prefill_tok_s_t${t}`]!;
    out[`llama_cpp.q8_0.decode_tok_s_t${t}`] = l.decodeTokS;
    out[`llama_cpp.q8_0.prefill_tok_s_t${t}`] = l.prefillTokS;
    out[`ratio_vs_llama_cpp.q8_0.decode_t${t}`] = ours / l.decodeTokS;
    out[`ratio_vs_llama_cpp.q8_0.prefill_t${t}`] = oursPrefill / l.prefillTokS;
    log(`llama.cpp threads ${t}: decode ${l.decodeTokS.toFixed(2)} tok/s, prefill ${l.prefillTokS.toFixed(1)} tok/s; grok-ts/llama.cpp: decode ${(ours / l.decodeTokS).toFixed(2)}×, prefill ${(oursPrefill / l.prefillTokS).toFixed(2)}×`);
  }
  return out;
}

export const SECTIONS: Record<string, Section> = {
  memory: (log, cache) => benchMemory(log, cache, ['js', 'wasm']),
  tokenizer: async (log) => prefixed('tokenizer', await benchTokenizer(log)),
  constrain: async (log) => prefixed('constrain', await benchConstrain(log)),
  kernels: async (log) => prefixed('kernels', await benchKernels(log)),
  pack: async (log) => prefixed('pack', await benchPack(log)),
  prefill: async (log) => {
    const r: Record<string, number> = {};
    for (const t of benchThreadCounts()) Object.assign(r, await benchPrefill(log, 64, t));
    return prefixed('prefill', r);
  },
  'model-int8': (log, cache) => modelSection('int8', log, cache),
  'model-q8_0': (log, cache) => modelSection('q8_0', log, cache),
  formats: (log, cache) => benchFormats(log, cache, { layers: BENCH_LAYERS, mixes: mixesFromEnv(), prefillTokens: 256 }),
  'true-width': (log, cache) => benchTrueWidth(log, cache, { mixes: mixesFromEnv() }),
  streaming: (log, cache) => benchStreaming(log, cache),
  server: async (log, cache) => {
    const lm = await loadModel(benchModelPath(cache, 'int8', BENCH_LAYERS), { backend: 'auto' });
    await lm.whenResident();
    log(`server bench on the int8 bench model (${lm.backend} backend)`);
    try {
      return await benchServer(lm, log);
    } finally {
      await lm.close();
    }
  },
};

/** Sections that run only when named (they write and read tens of GB and take half an hour or more). */
export const OPT_IN_SECTIONS: readonly string[] = ['true-width', 'streaming'];

function prefixed(prefix: string, r: Record<string, number>): Record<string, number> {
  return Object.fromEntries(Object.entries(r).map(([k, v]) => [`${prefix}.${k}`, v]));
}

export async function runBenchmarks(opts: BenchOptions = {}): Promise<Record<string, number>> {
  const lines: string[] = [];
  const print = opts.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const log = (l: string): void => {
    lines.push(l);
    print(l);
  };
  const cacheDir = opts.cacheDir ?? path.join(ROOT, 'bench', 'cache');
  const machine = machineInfo();
  for (const name of opts.only ?? []) {
    if (!(name in SECTIONS)) throw new Error(`unknown benchmark section "${name}"; sections: ${Object.keys(SECTIONS).join(', ')}`);
  }
  log(`grok-ts bench on ${machine.cpu} (${machine.cores} cores, ${(Number(machine.memoryBytes) / 2 ** 30).toFixed(0)} GiB), node ${machine.node}, commit ${machine.commit}`);
  const results: Record<string, number> = {};
  for (const [name, section] of Object.entries(SECTIONS)) {
    if (opts.only ? !opts.only.includes(name) : OPT_IN_SECTIONS.includes(name)) continue;
    log(`\n== ${name}`);
    Object.assign(results, await section(log, cacheDir));
  }
  const outDir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = String(machine.date).replace(/[:.]/g, '-');
  const file = path.join(outDir, `${stamp}.json`);
  fs.writeFileSync(file, JSON.stringify({ machine, sections: opts.only ?? Object.keys(SECTIONS).filter((n) => !OPT_IN_SECTIONS.includes(n)), log: lines, results }, null, 1) + '\n');
  log(`\nresults written to ${path.relative(process.cwd(), file)}`);
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  await runBenchmarks(only.length ? { only } : {});
}
