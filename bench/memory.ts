/** Load time and peak RSS against the bytes of weights on disk (goal: RSS ≤ 1.2 × weights). */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeConfig } from '../src/config.js';
import { ensureSyntheticCheckpoint } from './synthetic.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** A ~690 MB checkpoint: big enough that the fixed costs (node ≈ 50 MB, tokenizer ≈ 30 MB) matter little. */
export const MEMORY_BENCH_CONFIG = makeConfig({
  vocabSize: 32768, embSize: 1024, numQHeads: 8, numKvHeads: 2, keySize: 128, numLayers: 4,
  wideningFactor: 8, sequenceLen: 1024, attnOutputMultiplier: 1 / Math.sqrt(128),
  embeddingMultiplierScale: 32, outputMultiplierScale: 0.5,
});

function dirBytes(dir: string): number {
  let n = 0;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) n += e.isDirectory() ? dirBytes(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).size;
  return n;
}

export async function benchMemory(log: (line: string) => void, cacheDir: string, backends: string[]): Promise<Record<string, number>> {
  const dir = path.join(cacheDir, 'memory-bench');
  const t0 = performance.now();
  ensureSyntheticCheckpoint(dir, MEMORY_BENCH_CONFIG, 7);
  const genMs = performance.now() - t0;
  const diskBytes = dirBytes(path.join(dir, 'ckpt-0'));
  log(`memory: checkpoint of ${(diskBytes / 1e6).toFixed(0)} MB on disk (generated in ${(genMs / 1000).toFixed(1)} s, cached in ${dir})`);
  const results: Record<string, number> = { 'memory.disk_bytes': diskBytes };
  for (const backend of backends) {
    const r = spawnSync(process.execPath, [path.join(here, 'load-probe.js'), dir, backend], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`load probe failed: ${r.stderr}`);
    const p = JSON.parse(r.stdout) as { loadMs: number; maxRssBytes: number; baselineRssBytes: number; backend: string };
    const ratio = p.maxRssBytes / diskBytes;
    const net = (p.maxRssBytes - p.baselineRssBytes) / diskBytes;
    log(`memory [${p.backend}]: load ${(p.loadMs / 1000).toFixed(2)} s (${(diskBytes / 1e6 / (p.loadMs / 1000)).toFixed(0)} MB/s), peak RSS ${(p.maxRssBytes / 1e6).toFixed(0)} MB = ${ratio.toFixed(3)} × weights (${net.toFixed(3)} × without node's own ${(p.baselineRssBytes / 1e6).toFixed(0)} MB); goal ≤ 1.2`);
    results[`memory.${p.backend}.load_ms`] = p.loadMs;
    results[`memory.${p.backend}.peak_rss_ratio`] = ratio;
    results[`memory.${p.backend}.peak_rss_net_ratio`] = net;
  }
  return results;
}
