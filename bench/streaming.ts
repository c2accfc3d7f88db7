/**
 * `grok-ts bench streaming` (opt-in: it writes a file larger than this machine's RAM): a
 * Grok-architecture Q8_0 GGUF of ≈ 30 GB (D 2048, F 10240, 14 layers × 32 experts, top-2; random
 * weights, so routing is near-uniform, the pessimistic case for a cache), then in one run:
 *
 * - the disk's own read speed, one stream and 4 at once (page cache dropped first where permitted),
 *   and from it the bound no engine can beat here with uniform routing;
 * - grok-ts decode tok/s under memory budgets of 4, 8, 16 and 20 GiB, each in a fresh process with
 *   a cold page cache: time to first token; the first decode steps, until every expert slot has
 *   been filled (a slot's first fill writes pages never touched before: slow on a VM); then, with a full
 *   cache, decode tok/s, expert bytes read per token (requested, and fetched from
 *   storage per /proc/self/io), cache hit rate, peak RSS against budget + KV + 1 GB, and how many
 *   of a layer's experts consecutive tokens share;
 * - llama.cpp (node-llama-cpp, default mmap) on the same file, after as many warm-up steps as the
 *   longest grok-ts warm-up (its page cache fills meanwhile);
 * - the other ceilings: the memory read bandwidth measured after each grok-ts run over the weight
 *   bytes a token reads, and the resident Q8_0 decode (the 6-layer start file packed eagerly) in
 *   GB/s of weights, projected onto this file;
 * - the eviction policies (LRU, LFU, decayed frequency) replayed through the real ExpertCache on
 *   the measured trace and on the trained demo model's routing (the random model cannot tell them
 *   apart: every policy gets ≈ slots / experts there).
 *
 * The file is deleted afterwards unless GROK_TS_BENCH_KEEP=1 (`--keep`). GROK_TS_STREAMING_GB
 * resizes it (layers scale), GROK_TS_STREAMING_EXPERTS its experts per layer (32),
 * GROK_TS_STREAMING_BUDGETS the budgets in GiB (4,8,16,20), GROK_TS_STREAMING_TOKENS the decode steps
 * measured per budget (16), GROK_TS_STREAMING_WARMUP the most warm-up steps before them (64).
 */
import { spawnSync } from 'node:child_process';
import { Worker } from 'node:worker_threads';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { makeConfig } from '../src/config.js';
import { ExpertCache, type EvictionPolicy, type ExpertLoader } from '../src/backend/wasm/expert-cache.js';
import type { Shard } from '../src/backend/wasm/runtime.js';
import { loadModel } from '../src/language-model.js';
import type { LinearWeight } from '../src/tensor/linear.js';
import { nodeLlamaCppDir } from './llama-cpp.js';
import { ensureMixGguf, MIXES, mixPlan, type Mix } from './mixes.js';
import { benchConfig } from './model.js';
import { tensorBytes } from '../src/formats/gguf-writer.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const GiB = 2 ** 30;

/** MemAvailable from /proc/meminfo (free RAM plus reclaimable page cache), else os.freemem(). */
function memAvailable(): number {
  try {
    const m = /MemAvailable:\s*(\d+) kB/.exec(fs.readFileSync('/proc/meminfo', 'utf8'));
    if (m) return Number(m[1]) * 1024;
  } catch {
    // not Linux
  }
  return os.freemem();
}

/** Drops the page cache (root only); false where not permitted. */
export function dropCaches(): boolean {
  try {
    spawnSync('sync');
    fs.writeFileSync('/proc/sys/vm/drop_caches', '3');
    return true;
  } catch {
    return false;
  }
}

/**
 * Read speed of `file` in bytes/s: `bytes` from its middle, split into `streams` contiguous ranges
 * read at once (worker threads, 8 MB positioned reads each, as the expert readers do). One stream
 * is the disk's sequential speed; several show what it gives to requests in flight together.
 */
export async function readSpeed(file: string, bytes: number, streams = 1): Promise<number> {
  const size = fs.statSync(file).size;
  const start = Math.max(0, Math.floor((size - bytes) / 2 / 4096) * 4096);
  const per = Math.floor(bytes / streams / 4096) * 4096;
  const code = `
    const fs = require('node:fs');
    const { workerData: { file, from, n }, parentPort } = require('node:worker_threads');
    const fd = fs.openSync(file, 'r');
    const buf = new Uint8Array(8 << 20);
    let done = 0;
    while (done < n) {
      const got = fs.readSync(fd, buf, 0, Math.min(buf.length, n - done), from + done);
      if (got <= 0) break;
      done += got;
    }
    parentPort.postMessage(done);`;
  const t = performance.now();
  const done = await Promise.all(Array.from({ length: streams }, (_, i) => new Promise<number>((resolve, reject) => {
    const w = new Worker(code, { eval: true, workerData: { file, from: start + i * per, n: per } });
    w.once('message', (n: number) => {
      resolve(n);
      void w.terminate();
    });
    w.once('error', reject);
  })));
  return done.reduce((a, b) => a + b, 0) / ((performance.now() - t) / 1000);
}

/**
 * Hit rate of `policy` with `slots` slots on a routing trace (per MoE call: layer, count, experts…),
 * replayed through the production ExpertCache with a loader that reads nothing.
 */
export function replayHitRate(trace: readonly (readonly number[])[], experts: number, E: number, slots: number, policy: EvictionPolicy): number {
  const groups = Array.from({ length: experts }, () => [{ byteLength: 1 } as LinearWeight]);
  const layouts = groups.map(() => ({ plans: [], offsets: [0], bytes: 64 }));
  const loader: ExpertLoader = { start: () => 1, done: () => true, wait: () => {}, close: async () => {} };
  const cache = new ExpertCache(groups, layouts, slots, () => ({ shard: undefined as unknown as Shard, ptr: 0 }), loader, { policy });
  for (const step of trace) {
    for (let i = 0; i < step.length;) {
      const layer = step[i]!;
      const k = step[i + 1]!;
      const gs = step.slice(i + 2, i + 2 + k).map((e) => layer * E + e);
      for (const g of cache.begin(gs)) cache.done(g);
      cache.end();
      i += 2 + k;
    }
  }
  const s = cache.stats;
  return s.hits / (s.hits + s.misses);
}

interface ChildResult {
  loadS: number; ttftS: number; decodeTokS: number; decodedTokens: number; warmupTokens: number; warmupTokS: number; cacheFull: boolean;
  bytesReadPerToken: number; diskBytesPerToken: number;
  hitRate: number; waitSPerToken: number; peakRssBytes: number; residentBytes: number; kvBytes: number; slots: number; policy: string; experts: number;
  consecutiveOverlap: number; trace: number[][];
  /** measured in wasm right after the decode steps; weight bytes a decoded token reads (2 experts a layer, the rest). */
  readBandwidthBytesS: number; weightBytesPerToken: number;
}

/**
 * The other ceiling: whatever holds the weights, a decoded token reads `weightBytes` from RAM, so no
 * engine decodes faster than the memory bandwidth over them. When llama.cpp's page cache holds
 * most of the file, this, not the disk, is what 2× llama.cpp runs into.
 */
function memoryBound(bandwidths: readonly number[], weightBytes: number, llamaTokS: number, out: Record<string, number>): string {
  const sorted = [...bandwidths].sort((a, b) => a - b);
  const bw = sorted[Math.floor(sorted.length / 2)]!;
  const bound = bw / weightBytes;
  const needed = 2 * llamaTokS * weightBytes;
  out['streaming.memory.read_bandwidth_gbs'] = bw / 1e9;
  out['streaming.memory.weight_bytes_per_token'] = weightBytes;
  out['streaming.memory.bound_tok_s'] = bound;
  out['streaming.two_x_llama_cpp.bandwidth_share_needed'] = needed / bw;
  return `memory: a decoded token reads ${(weightBytes / 1e9).toFixed(2)} GB of weights (2 experts a layer, attention, router, the tied embedding); ` +
    `the read bandwidth measured after each grok-ts run was ${(sorted[0]! / 1e9).toFixed(1)}–${(sorted[sorted.length - 1]! / 1e9).toFixed(1)} GB/s (median ${(bw / 1e9).toFixed(1)}) → ` +
    `at most ${bound.toFixed(2)} tok/s for any engine even with every weight in RAM; llama.cpp reads ${((llamaTokS * weightBytes) / 1e9).toFixed(1)} GB/s (${(100 * llamaTokS * weightBytes / bw).toFixed(0)} % of it), ` +
    `2× llama.cpp would read ${(needed / 1e9).toFixed(1)} GB/s (${(100 * needed / bw).toFixed(0)} % of it)`;
}

function runChild(script: string, args: string[], timeoutMs: number): unknown {
  const r = spawnSync(process.execPath, [path.join(here, script), ...args], { encoding: 'utf8', maxBuffer: 256 << 20, timeout: timeoutMs });
  if (r.error || r.status !== 0) throw new Error(`${script} failed: ${r.error?.message ?? ''} ${r.stderr.slice(-600)}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!);
}

const POLICIES: readonly EvictionPolicy[] = ['lru', 'lfu', 'decay'];

/** The demo model's routing while it writes text: the trained case for the policy comparison. */
async function demoTrace(tokens: number): Promise<{ trace: number[][]; experts: number; E: number; K: number; predicted: number; predictedUsed: number }> {
  const trace: number[][] = [];
  let step = -1;
  const probe = await loadModel(undefined, { backend: 'wasm', threads: 1, preload: false });
  const minimum = probe.memory.minimumBytes;
  await probe.close();
  const lm = await loadModel(undefined, {
    backend: 'wasm', threads: 1, memoryBudget: minimum, expertReaders: 0, predictExperts: true,
    onRoute: (layer, experts) => {
      if (layer === 0) step++;
      (trace[step] ??= []).push(layer, experts.length, ...experts);
    },
  });
  try {
    for (const [i, p] of ['A wise man', 'You will', 'Good fortune', 'The stars say'].entries()) {
      step = trace.length - 1;
      await lm.generate(p, { maxTokens: tokens / 4, temperature: 0.8, seed: i + 1, ignoreEos: true });
    }
    const p = lm.memory.prediction!;
    return { predicted: p.predicted, predictedUsed: p.used, trace: trace.filter((s) => s.length > 0 && s[1]! <= lm.config.numSelectedExperts), experts: lm.memory.experts, E: lm.config.numExperts, K: lm.config.numSelectedExperts };
  } finally {
    await lm.close();
  }
}

export async function benchStreaming(log: (l: string) => void, cacheDir: string, opts: { keep?: boolean } = {}): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  const keep = opts.keep ?? process.env['GROK_TS_BENCH_KEEP'] === '1';
  const targetGB = Number(process.env['GROK_TS_STREAMING_GB'] ?? 30);
  const tokens = Number(process.env['GROK_TS_STREAMING_TOKENS'] ?? 16);
  const warmupMax = Number(process.env['GROK_TS_STREAMING_WARMUP'] ?? 64);
  let warmupMost = 0;
  const budgetsGiB = (process.env['GROK_TS_STREAMING_BUDGETS'] ?? '4,8,16,20').split(',').map(Number);
  const E = Number(process.env['GROK_TS_STREAMING_EXPERTS'] ?? 32);
  const expertBytes = 3 * 2048 * 10240 * (34 / 32);
  const layers = Math.max(1, Math.round((targetGB * 1e9) / (E * expertBytes)));
  const config = makeConfig({ embSize: 2048, numQHeads: 16, numKvHeads: 8, keySize: 128, numLayers: layers, numExperts: E, numSelectedExperts: 2, ffnSize: 10240, sequenceLen: 1024 });
  const file = path.join(cacheDir, `streaming-${layers}l-${E}e-q8_0.gguf`);
  const need = layers * E * expertBytes * 1.02 + 1e9;
  fs.mkdirSync(cacheDir, { recursive: true });
  const free = fs.statfsSync(cacheDir);
  if (!fs.existsSync(file) && free.bavail * free.bsize < need + 5e9) {
    log(`streaming: ${(need / 1e9).toFixed(1)} GB needed in ${cacheDir}, ${(free.bavail * free.bsize / 1e9).toFixed(1)} GB free; skipped`);
    return out;
  }
  log(`load average at the start: ${os.loadavg().map((x) => x.toFixed(1)).join(' ')} on ${os.availableParallelism()} cores (the machine is shared: figures move with it)`);
  log(`streaming: ${layers} layers × ${E} experts (top 2), D 2048, F 10240, Q8_0: ${(need / 1e9).toFixed(1)} GB on a ${(os.totalmem() / GiB).toFixed(0)} GiB machine`);
  try {
    // 1. the demo model's routing (trained): policies compared where they can differ
    const demo = await demoTrace(256);
    const demoCaps = [0.25, 0.5, 0.75].map((f) => Math.max(demo.K, Math.round(f * demo.experts)));
    for (const cap of demoCaps) {
      const cells = POLICIES.map((p) => {
        const h = replayHitRate(demo.trace, demo.experts, demo.E, cap, p);
        out[`streaming.demo_hit_rate.${p}.slots_${cap}_of_${demo.experts}`] = h;
        return `${p} ${(100 * h).toFixed(1)} %`;
      });
      log(`demo model routing (${demo.trace.length} decode steps), ${cap} of ${demo.experts} experts cached: ${cells.join(', ')}`);
    }
    out['streaming.demo_prediction_precision'] = demo.predictedUsed / demo.predicted;
    log(`demo model: layer l+1's experts predicted through its router from layer l's input: ${(100 * demo.predictedUsed / demo.predicted).toFixed(1)} % of predictions used (chance: ${(100 * demo.K / demo.E).toFixed(0)} % for one row)`);

    // 2. the start on the bench model's shape (6 layers × 8 experts, 3.6 GB): lazy vs packing everything first
    const startFile = path.join(cacheDir, 'streaming-start-6l-q8_0.gguf');
    ensureMixGguf(makeConfig({ embSize: 2048, numQHeads: 16, numKvHeads: 8, keySize: 128, numLayers: 6, ffnSize: 10240, sequenceLen: 1024 }), 'Q8_0', startFile, log);
    // every weight packed (eager) is also today's resident decode: its weight bytes per second are
    // what these kernels compute on this machine, the ceiling for the streamed file's decode
    let resident: { weightBytesS: number; bandwidth: number } | undefined;
    for (const start of ['eager', 'lazy'] as const) {
      dropCaches();
      try {
        const r = runChild('streaming-child.js', [startFile, 'resident', start === 'eager' ? '16' : '4', String(os.availableParallelism()), 'lru', '', '0', start], 1800_000) as ChildResult;
        out[`streaming.start_6l.${start}.ttft_s`] = r.ttftS;
        out[`streaming.start_6l.${start}.load_s`] = r.loadS;
        if (start === 'eager') {
          resident = { weightBytesS: r.decodeTokS * r.weightBytesPerToken, bandwidth: r.readBandwidthBytesS };
          out['streaming.start_6l.eager.decode_tok_s'] = r.decodeTokS;
          out['streaming.resident_q8_0.weight_gbs'] = resident.weightBytesS / 1e9;
        }
        log(`start, 6-layer bench shape (${(fs.statSync(startFile).size / 1e9).toFixed(2)} GB, cold page cache), ${start === 'eager' ? 'packing every weight first' : 'lazy (non-expert weights, then experts on demand and in the background)'}: load ${r.loadS.toFixed(1)} s, first token at ${r.ttftS.toFixed(1)} s`);
      } catch (err) {
        log(`start (${start}): ${(err as Error).message.split('\n')[0]}`);
      }
    }
    if (!keep) fs.rmSync(startFile, { force: true });

    // 3. the file
    const tw = performance.now();
    ensureMixGguf(config, 'Q8_0', file, log);
    const size = fs.statSync(file).size;
    out['streaming.file_bytes'] = size;
    log(`file: ${file}, ${(size / 1e9).toFixed(2)} GB (written in ${((performance.now() - tw) / 1000).toFixed(0)} s, or found)`);

    // 3. the disk
    const dropped = dropCaches();
    out['streaming.page_cache_dropped'] = dropped ? 1 : 0;
    const disk = await readSpeed(file, Math.min(4e9, size / 4));
    out['streaming.disk_read_gbs'] = disk / 1e9;
    dropCaches();
    const diskParallel = await readSpeed(file, Math.min(4e9, size / 4), 4);
    out['streaming.disk_read_4_streams_gbs'] = diskParallel / 1e9;
    log(`disk read (${dropped ? 'page cache dropped' : 'page cache NOT dropped: not permitted'}): ${(disk / 1e9).toFixed(2)} GB/s sequential, ${(diskParallel / 1e9).toFixed(2)} GB/s with 4 streams at once`);
    // What no engine can beat on this machine: with uniform routing, a token needs K experts per
    // layer, and whatever RAM holds (at most all of it, as llama.cpp's page cache may) is the best
    // cache there is; the rest comes from the disk at its best speed.
    const perTokenBytes = config.numLayers * config.numSelectedExperts * expertBytes;
    const cacheable = Math.min(1, os.totalmem() / (layers * E * expertBytes));
    const bound = diskParallel / (perTokenBytes * (1 - cacheable));
    out['streaming.any_engine_bound_tok_s'] = bound;
    log(`bound for any engine here: ${(perTokenBytes / 1e9).toFixed(2)} GB of experts per token; even with all ${(os.totalmem() / GiB).toFixed(0)} GiB of RAM caching experts, ${((perTokenBytes * (1 - cacheable)) / 1e9).toFixed(2)} GB/token come from the disk → at most ${bound.toFixed(2)} tok/s at ${(diskParallel / 1e9).toFixed(2)} GB/s`);

    // 4. grok-ts under budgets, each cold
    const threads = os.availableParallelism();
    const bandwidths: number[] = [];
    let weightBytesPerToken = 0;
    const runs: { gib: number; predict: boolean }[] = [...budgetsGiB.map((gib) => ({ gib, predict: false })), { gib: budgetsGiB[1] ?? budgetsGiB[0]!, predict: true }];
    for (const { gib, predict } of runs) {
      dropCaches();
      const budget = gib * GiB;
      const available = memAvailable();
      out[`streaming.budget_${gib}g${predict ? '_predict' : ''}.load_average`] = os.loadavg()[0]!;
      if (budget + GiB > available) { // the run peaks at budget + KV + staging, well under 1 GiB more
        log(`budget ${gib} GiB: skipped, only ${(available / GiB).toFixed(1)} GiB of RAM available now (other processes on this shared machine)`);
        continue;
      }
      let r: ChildResult;
      try {
        r = runChild('streaming-child.js', [file, String(budget), String(tokens), String(threads), '', '', predict ? '1' : '0', '', '', String(warmupMax)], 3600_000) as ChildResult;
      } catch (err) {
        log(`budget ${gib} GiB: ${(err as Error).message.split('\n')[0]}`);
        continue;
      }
      const k = (s: string) => `streaming.budget_${gib}g${predict ? '_predict' : ''}.${s}`;
      warmupMost = Math.max(warmupMost, r.warmupTokens);
      out[k('decode_tok_s')] = r.decodeTokS;
      out[k('warmup_tokens')] = r.warmupTokens;
      out[k('warmup_tok_s')] = r.warmupTokS;
      out[k('cache_full')] = r.cacheFull ? 1 : 0;
      out[k('ttft_s')] = r.ttftS;
      out[k('load_s')] = r.loadS;
      out[k('bytes_read_per_token')] = r.bytesReadPerToken;
      out[k('disk_bytes_per_token')] = r.diskBytesPerToken;
      out[k('hit_rate')] = r.hitRate;
      out[k('wait_s_per_token')] = r.waitSPerToken;
      out[k('peak_rss_bytes')] = r.peakRssBytes;
      out[k('resident_bytes')] = r.residentBytes;
      out[k('rss_bound_bytes')] = budget + r.kvBytes + 1e9;
      out[k('slots')] = r.slots;
      out[k('consecutive_overlap')] = r.consecutiveOverlap;
      out[k('read_bandwidth_gbs')] = r.readBandwidthBytesS / 1e9;
      bandwidths.push(r.readBandwidthBytesS);
      weightBytesPerToken = r.weightBytesPerToken;
      // what the disk allows with this cache: its bytes per token at the disk's parallel speed, compute free
      const budgetBound = diskParallel / Math.max(1, r.diskBytesPerToken);
      out[k('disk_bound_tok_s')] = budgetBound;
      const replay = POLICIES.map((p) => `${p} ${(100 * replayHitRate(r.trace, r.experts, E, r.slots, p)).toFixed(1)} %`).join(', ');
      log(`budget ${gib} GiB${predict ? ' with next-layer prediction' : ''} (${r.slots} of ${r.experts} experts cached, ${r.policy}): ${r.warmupTokens ? `${r.warmupTokens} warm-up tokens at ${r.warmupTokS.toFixed(3)} tok/s${r.cacheFull ? ' filled the cache' : ' (the cache not yet full)'}` : 'cache full after the first token'}, then decode ${r.decodeTokS.toFixed(3)} tok/s over ${r.decodedTokens} tokens, TTFT ${r.ttftS.toFixed(1)} s (load ${r.loadS.toFixed(1)} s), ` +
        `${(r.bytesReadPerToken / 1e9).toFixed(2)} GB/token read (${(r.diskBytesPerToken / 1e9).toFixed(2)} from storage), hit rate ${(100 * r.hitRate).toFixed(1)} %, ` +
        `waiting ${r.waitSPerToken.toFixed(2)} s/token, peak RSS ${(r.peakRssBytes / GiB).toFixed(2)} GiB (bound ${((budget + r.kvBytes + 1e9) / GiB).toFixed(2)}), ` +
        `consecutive-token overlap ${(100 * r.consecutiveOverlap).toFixed(0)} %; policies replayed on this trace: ${replay}; ` +
        `the disk allows at most ${budgetBound.toFixed(2)} tok/s for these reads (${(100 * r.decodeTokS / budgetBound).toFixed(0)} % reached)`);
    }

    // 5. llama.cpp, cold
    const dir = nodeLlamaCppDir();
    if (!dir) {
      log('llama.cpp: GROK_TS_NODE_LLAMA_CPP is not set; no side-by-side figure');
    } else {
      dropCaches();
      try {
        const llamaWarmup = Math.max(8, warmupMost);
        const l = runChild('streaming-llama.js', [dir, file, String(threads), String(tokens), String(llamaWarmup)], 3600_000) as { loadS: number; ttftS: number; warmupTokS: number; decodeTokS: number; medianStepTokS: number; diskBytesPerToken: number; peakRssBytes: number };
        out['streaming.llama_cpp.decode_tok_s'] = l.decodeTokS;
        out['streaming.llama_cpp.warmup_tokens'] = llamaWarmup;
        out['streaming.llama_cpp.warmup_tok_s'] = l.warmupTokS;
        out['streaming.llama_cpp.median_step_tok_s'] = l.medianStepTokS;
        out['streaming.llama_cpp.ttft_s'] = l.ttftS;
        out['streaming.llama_cpp.disk_bytes_per_token'] = l.diskBytesPerToken;
        out['streaming.llama_cpp.peak_rss_bytes'] = l.peakRssBytes;
        log(`llama.cpp (node-llama-cpp, mmap, cold): ${llamaWarmup} warm-up tokens at ${l.warmupTokS.toFixed(3)} tok/s, then decode ${l.decodeTokS.toFixed(3)} tok/s over ${tokens} tokens (median step ${l.medianStepTokS.toFixed(3)}), TTFT ${l.ttftS.toFixed(1)} s, ` +
          `${(l.diskBytesPerToken / 1e9).toFixed(2)} GB/token from storage, peak RSS ${(l.peakRssBytes / GiB).toFixed(2)} GiB (mapped file pages included)`);
        for (const gib of budgetsGiB) {
          const ours = out[`streaming.budget_${gib}g.decode_tok_s`];
          if (ours) out[`streaming.ratio_vs_llama_cpp.budget_${gib}g`] = ours / l.decodeTokS;
        }
        log(`llama.cpp reaches ${(100 * l.decodeTokS / bound).toFixed(0)} % of the bound above; 2× llama.cpp would be ${(2 * l.decodeTokS).toFixed(2)} tok/s`);
        // What 2× llama.cpp takes on this disk even with compute free: few enough bytes per token,
        // so a hit rate, so (routing uniform) a cache of that share of the experts.
        const allowed = diskParallel / (2 * l.decodeTokS);
        const hitNeeded = Math.max(0, 1 - allowed / perTokenBytes);
        const cacheNeeded = hitNeeded * layers * E * expertBytes;
        out['streaming.two_x_llama_cpp.cache_bytes_needed'] = cacheNeeded;
        log(`2× llama.cpp at ${(diskParallel / 1e9).toFixed(2)} GB/s needs ≤ ${(allowed / 1e9).toFixed(2)} GB/token from the disk even with compute free: ` +
          `a hit rate ≥ ${(100 * hitNeeded).toFixed(0)} %, i.e. (uniform routing) ≈ ${(cacheNeeded / GiB).toFixed(1)} GiB of cached experts on this ${(os.totalmem() / GiB).toFixed(0)} GiB machine` +
          ` (llama.cpp's page cache may use all of it)`);
        if (bandwidths.length > 0) log(memoryBound(bandwidths, weightBytesPerToken, l.decodeTokS, out));
        if (resident && weightBytesPerToken > 0) {
          const tokS = resident.weightBytesS / weightBytesPerToken;
          out['streaming.resident_q8_0.projected_tok_s'] = tokS;
          log(`resident Q8_0 decode here (the 6-layer start file, every weight packed, 16 tokens): ${(resident.weightBytesS / 1e9).toFixed(1)} GB/s of weights ` +
            `(${(100 * resident.weightBytesS / resident.bandwidth).toFixed(0)} % of the ${(resident.bandwidth / 1e9).toFixed(1)} GB/s measured beside it${resident.weightBytesS / resident.bandwidth < 0.7 ? ': the kernels, not memory, bound it' : ''}) → ` +
            `this file, were it resident, at ≈ ${tokS.toFixed(2)} tok/s = ${(tokS / l.decodeTokS).toFixed(2)}× llama.cpp`);
        }
      } catch (err) {
        log(`llama.cpp: ${(err as Error).message.split('\n')[0]}`);
      }
    }
    // 6. every mix's expert loads, on the formats section's bench files
    await formatLoads(log, cacheDir, out, diskParallel, threads);

    // 7. Grok-1 on 64–256 GB machines, projected from the loads measured here
    const computeS = { Q8_0: 4.0, Q4_K_M: 3.7, Q2_K: 2.7, IQ2_XXS: 3.2, IQ1_S: 2.2 }; // README's mix table: resident s/token on this VM
    // A mix loads at the disk's 4-stream speed (the readers keep reads in flight), or at its
    // repacking's ceiling on these cores (its warm load speed) where that is lower.
    const ceiling = (m: string) => (out[`streaming.loads.${m}.warm_load_gbs`] ?? Infinity) * 1e9;
    const at = (disk: number) => Object.fromEntries(Object.keys(computeS).map((m) => [m, Math.min(disk, ceiling(m))]));
    log(`Grok-1 under --memory-budget (RAM − 8 GB) at this disk's ${(diskParallel / 1e9).toFixed(2)} GB/s (4 streams) or the mix's repacking ceiling above where lower, uniform routing:\n${grok1Projection(at(diskParallel), computeS).join('\n')}`);
    log(`the same at 3 GB/s (a PCIe 3 NVMe drive) or the mix's repacking ceiling:\n${grok1Projection(at(3e9), computeS).join('\n')}`);
  } finally {
    if (!keep && fs.existsSync(file)) {
      fs.rmSync(file);
      log(`deleted ${file} (GROK_TS_BENCH_KEEP=1 or --keep keeps it)`);
    }
  }
  return out;
}

/**
 * Expert loads of every mix on the 6-layer bench files (bench-6l-MIX.gguf, as the formats section
 * writes them): a budget of the minimum + 2 experts, so nearly every expert a token uses is read,
 * split, repacked into its layout and waited for. Load speed = stored bytes read ÷ time the
 * forward pass waited. Twice per mix: cold (page cache dropped, direct reads: what a user gets
 * from this disk) and warm (the file in the page cache, buffered reads: the disk out of the way,
 * so the repacking's own ceiling on these cores). GROK_TS_STREAMING_MIXES picks mixes (default all).
 */
export async function formatLoads(log: (l: string) => void, cacheDir: string, out: Record<string, number>, diskBps: number, threads: number): Promise<void> {
  const mixes = (process.env['GROK_TS_STREAMING_MIXES'] ?? MIXES.join(',')).split(',').map((m) => m.trim().toUpperCase()).filter(Boolean);
  const rows = ['| mix | one expert | load speed, cold | warm (repacking\'s ceiling) | decode under the minimum + 2 experts, cold | read per token |', '|---|---|---|---|---|---|'];
  for (const mix of mixes) {
    if (!(MIXES as readonly string[]).includes(mix)) throw new Error(`GROK_TS_STREAMING_MIXES: unknown mix ${mix}; mixes: ${MIXES.join(', ')}`);
    const file = path.join(cacheDir, `bench-6l-${mix}.gguf`);
    const free = fs.statfsSync(cacheDir);
    if (!fs.existsSync(file) && free.bavail * free.bsize < 8e9) {
      log(`${mix} loads: ${file} is not written and the disk is nearly full; skipped`);
      continue;
    }
    ensureMixGguf(benchConfig(6), mix as Mix, file, log);
    const probe = await loadModel(file, { backend: 'wasm', threads: 1, preload: false });
    const { minimumBytes, expertBytes: one } = probe.memory; // the largest expert's packed bytes
    await probe.close();
    const run = (reads: 'direct' | 'buffered'): ChildResult | undefined => {
      try {
        return runChild('streaming-child.js', [file, String(Math.ceil(minimumBytes + 2 * one)), '8', String(threads), '', '', '0', '', reads], 1800_000) as ChildResult;
      } catch (err) {
        log(`${mix} loads (${reads}): ${(err as Error).message.split('\n')[0]}`);
        return undefined;
      }
    };
    dropCaches();
    const cold = run('direct');
    readThrough(file);
    const warm = run('buffered');
    if (!cold || !warm) continue;
    const speed = (r: ChildResult) => r.bytesReadPerToken / Math.max(1e-9, r.waitSPerToken);
    out[`streaming.loads.${mix}.load_gbs`] = speed(cold) / 1e9;
    out[`streaming.loads.${mix}.warm_load_gbs`] = speed(warm) / 1e9;
    out[`streaming.loads.${mix}.decode_tok_s`] = cold.decodeTokS;
    out[`streaming.loads.${mix}.hit_rate`] = cold.hitRate;
    rows.push(`| ${mix} | ${(one / 1e6).toFixed(1)} MB | ${(speed(cold) / 1e9).toFixed(2)} GB/s | ${(speed(warm) / 1e9).toFixed(2)} GB/s | ${cold.decodeTokS.toFixed(2)} tok/s (hit rate ${(100 * cold.hitRate).toFixed(0)} %) | ${(cold.bytesReadPerToken / 1e6).toFixed(0)} MB |`);
  }
  log(`expert loads per mix (6-layer bench files, ${threads} threads; load speed = bytes read ÷ time waited; disk ${(diskBps / 1e9).toFixed(2)} GB/s with 4 streams):\n${rows.join('\n')}`);
}

/** Reads a file through once, so that the page cache holds it. */
function readThrough(file: string): void {
  const fd = fs.openSync(file, 'r');
  try {
    const buf = Buffer.allocUnsafe(16 << 20);
    for (let at = 0; fs.readSync(fd, buf, 0, buf.length, at) > 0; at += buf.length);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * What a machine with `ramGB` of RAM runs of Grok-1 in each llama.cpp mix under a budget of
 * RAM − 8 GB (KV cache at 4k context, node, the OS): experts cached out of 512, the hit rate if
 * routing were uniform (the pessimistic case; the trained demo model did better, see above), the
 * expert bytes read from disk per token at the mix's `loadBps`, and seconds per token = load time + compute
 * time (`computeSPerToken`: the resident speed on this VM, README's mix table), assuming reads do
 * not overlap compute (they partly do).
 */
export function grok1Projection(loadBps: Readonly<Record<string, number>>, computeSPerToken: Readonly<Record<string, number>>): string[] {
  const { GROK1 } = { GROK1: makeConfig({}) };
  const rows: string[] = [];
  for (const mix of ['Q8_0', 'Q4_K_M', 'Q2_K', 'IQ2_XXS', 'IQ1_S'] as const) {
    const plans = mixPlan(GROK1, mix);
    let nonExpert = 0;
    let experts = 0;
    for (const p of plans) {
      const b = tensorBytes(p);
      if (/_exps\./.test(p.name)) experts += b;
      else nonExpert += b;
    }
    const n = GROK1.numLayers * GROK1.numExperts;
    const per = experts / n;
    const perToken = GROK1.numLayers * GROK1.numSelectedExperts * per;
    const cells = [64, 128, 256].map((ram) => {
      const budget = ram * 1e9 - 8e9;
      if (budget < nonExpert + 2 * per) return 'does not fit';
      const slots = Math.min(n, Math.floor((budget - nonExpert) / per));
      const hit = slots / n;
      const miss = perToken * (1 - hit);
      const s = miss / (loadBps[mix] ?? NaN) + (computeSPerToken[mix] ?? NaN);
      return hit >= 1 ? `resident: ${(computeSPerToken[mix] ?? NaN).toFixed(1)} s/token` : `${(100 * hit).toFixed(0)} % cached, ${(miss / 1e9).toFixed(0)} GB/token from disk, ≈ ${s.toFixed(0)} s/token`;
    });
    rows.push(`| ${mix} | ${((nonExpert + experts) / 1e9).toFixed(0)} GB | ${(nonExpert / 1e9).toFixed(1)} GB | ${(per / 1e6).toFixed(0)} MB | ${((loadBps[mix] ?? NaN) / 1e9).toFixed(2)} GB/s | ${cells.join(' | ')} |`);
  }
  return [
    `| Grok-1 mix | file | non-expert | one expert | loads at | 64 GB machine | 128 GB | 256 GB |`,
    `|---|---|---|---|---|---|---|---|`,
    ...rows,
  ];
}
