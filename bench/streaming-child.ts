/**
 * One grok-ts run of the streaming benchmark in its own process (so peak RSS and /proc/self/io
 * belong to this run alone): load under a memory budget, time to first token, then greedy decode
 * steps. Prints one JSON line. Run as
 * `node dist/bench/streaming-child.js MODEL.gguf BUDGET_BYTES|resident TOKENS THREADS [policy] [readers] [predict 0|1] [lazy|eager] [direct|buffered] [WARMUP]`
 * (an empty argument keeps the default). With WARMUP > 0, up to that many decode steps run first,
 * until the expert cache is full (every slot filled), and TOKENS are measured after them: a
 * cache's first fill writes memory no one touched before, which on a VM can cost more than the
 * reads (first touch of fresh pages measured 0.2–0.4 GB/s on this project's VMs).
 */
import type { WasmKernels } from '../src/backend/wasm/index.js';
import { loadModel } from '../src/language-model.js';
import { decodeBytesPerToken } from './model.js';
import { diskReadBytes } from './proc-io.js';

async function main(): Promise<void> {
  const [file, budgetArg, tokensArg, threadsArg, policy, readersArg, predictArg, startArg, readsArg, warmupArg] = process.argv.slice(2);
  const tokens = Number(tokensArg);
  const warmupMax = Number(warmupArg || 0);
  const t0 = performance.now();
  const trace: number[][] = [];
  let step = -1;
  const lm = await loadModel(file!, {
    backend: 'wasm',
    threads: Number(threadsArg),
    ...(budgetArg !== 'resident' ? { memoryBudget: Number(budgetArg) } : {}),
    ...(policy ? { evictionPolicy: policy as 'lru' } : {}),
    ...(readersArg ? { expertReaders: Number(readersArg) } : {}),
    predictExperts: predictArg === '1',
    ...(startArg === 'eager' ? { lazyExperts: false } : {}),
    ...(readsArg ? { expertDirectReads: readsArg === 'direct' } : {}),
    onRoute: (layer, experts) => {
      if (layer === 0) step++;
      (trace[step] ??= []).push(layer, experts.length, ...experts);
    },
  });
  const loadS = (performance.now() - t0) / 1000;
  // time to first token: a 4-token prompt through the library's generation path
  const prompt = [1, 4000, 7919, 12345].map((t) => t % lm.config.vocabSize);
  await lm.generate(prompt, { maxTokens: 1, temperature: 0, ignoreEos: true });
  const first = performance.now();
  const stats = () => {
    const c = lm.memory.cache;
    return { bytes: c?.bytesRead ?? 0, hits: c?.hits ?? 0, uses: c ? c.hits + c.misses : 0, disk: diskReadBytes(), wait: c?.waitMs ?? 0 };
  };
  // decode: one token per step, fed pseudo-random ids rather than the greedy pick (random
  // weights repeat one token for ever, which would make every step hit the same experts)
  const V = lm.config.vocabSize;
  const kv = lm.model.newCache(prompt.length + warmupMax + tokens + 1);
  lm.model.forward([{ tokens: prompt, cache: kv }]);
  const id = (s: number) => 3 + ((s * 7919 + 104729) % (V - 3));
  const w0 = performance.now();
  let warmupTokens = 0;
  const warm = () => !lm.memory.cache || lm.memory.cache.slotsUsed >= lm.memory.slots;
  while (warmupTokens < warmupMax && !warm()) {
    lm.model.forward([{ tokens: [id(1_000_000 + warmupTokens)], cache: kv }]);
    warmupTokens++;
  }
  const warmupS = (performance.now() - w0) / 1000;
  const firstStats = stats();
  const t1 = performance.now();
  const decoded = tokens;
  for (let s = 0; s < decoded; s++) lm.model.forward([{ tokens: [id(s)], cache: kv }]);
  const end = performance.now();
  const last = stats();
  // the memory read bandwidth right after the decode steps (the VM's drifts from minute to minute),
  // over packed weights already resident: the ceiling for any engine that holds every weight in RAM
  const bws = [0, 1, 2].map(() => (lm.kernels as WasmKernels).measureReadBandwidth(256 * 1024 * 1024, 3)).sort((a, b) => a - b);
  kv.free();
  const m = lm.memory;
  // consecutive decode tokens: how many of a layer's K experts the previous token also used
  const K = lm.config.numSelectedExperts;
  let same = 0;
  let pairs = 0;
  const perLayer = (s: number[]): Map<number, number[]> => {
    const out = new Map<number, number[]>();
    for (let i = 0; i < s.length;) {
      const layer = s[i]!;
      const k = s[i + 1]!;
      out.set(layer, s.slice(i + 2, i + 2 + k));
      i += 2 + k;
    }
    return out;
  };
  // trace: [0] the first-token prompt, [1] its 1-token step if any… decode steps are the last `decoded`
  for (let s = trace.length - decoded + 1; s < trace.length; s++) {
    if (s < 1 || !trace[s - 1] || !trace[s]) continue; // no expert cache (packed resident): no trace
    const a = perLayer(trace[s - 1]!);
    const b = perLayer(trace[s]!);
    for (const [layer, ex] of b) {
      const prev = a.get(layer);
      if (!prev || ex.length !== K) continue;
      same += ex.filter((e) => prev.includes(e)).length;
      pairs += K;
    }
  }
  const out = {
    loadS,
    ttftS: (first - t0) / 1000,
    decodeTokS: decoded > 0 ? decoded / ((end - t1) / 1000) : 0,
    decodedTokens: decoded,
    warmupTokens,
    warmupTokS: warmupTokens > 0 ? warmupTokens / warmupS : 0,
    cacheFull: warm(),
    bytesReadPerToken: decoded > 0 ? (last.bytes - firstStats.bytes) / decoded : 0,
    diskBytesPerToken: decoded > 0 ? (last.disk - firstStats.disk) / decoded : 0,
    hitRate: last.uses - firstStats.uses > 0 ? (last.hits - firstStats.hits) / (last.uses - firstStats.uses) : 1,
    waitSPerToken: decoded > 0 ? (last.wait - firstStats.wait) / 1000 / decoded : 0,
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
    residentBytes: m.residentBytes,
    kvBytes: (lm.kernels as { arenaBytes?: number }).arenaBytes ?? 0,
    slots: m.slots,
    policy: m.cache?.policy ?? '',
    experts: m.experts,
    consecutiveOverlap: pairs ? same / pairs : NaN,
    readBandwidthBytesS: bws[1]!,
    weightBytesPerToken: decodeBytesPerToken(lm.files.weights),
    trace: trace.slice(trace.length - decoded),
  };
  await lm.close();
  console.log(JSON.stringify(out));
}

await main();
