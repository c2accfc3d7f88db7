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
import { benchMemory } from './memory.js';
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

const SECTIONS: Record<string, Section> = {
  tokenizer: (log) => benchTokenizer(log),
  memory: (log, cache) => benchMemory(log, cache, ['js']),
};

export async function runBenchmarks(opts: BenchOptions = {}): Promise<Record<string, number>> {
  const log = opts.log ?? ((l: string) => process.stdout.write(l + '\n'));
  const cacheDir = opts.cacheDir ?? path.join(ROOT, 'bench', 'cache');
  const machine = machineInfo();
  log(`grok-ts bench on ${machine.cpu} (${machine.cores} cores, ${(Number(machine.memoryBytes) / 2 ** 30).toFixed(0)} GiB), node ${machine.node}, commit ${machine.commit}`);
  const results: Record<string, number> = {};
  for (const [name, section] of Object.entries(SECTIONS)) {
    if (opts.only && !opts.only.includes(name)) continue;
    log(`\n== ${name}`);
    Object.assign(results, await section(log, cacheDir));
  }
  const outDir = path.join(ROOT, 'bench', 'results');
  fs.mkdirSync(outDir, { recursive: true });
  const stamp = String(machine.date).replace(/[:.]/g, '-');
  const file = path.join(outDir, `${stamp}.json`);
  fs.writeFileSync(file, JSON.stringify({ machine, results }, null, 1) + '\n');
  log(`\nresults written to ${path.relative(process.cwd(), file)}`);
  return results;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const only = process.argv.slice(2).filter((a) => !a.startsWith('-'));
  await runBenchmarks(only.length ? { only } : {});
}
