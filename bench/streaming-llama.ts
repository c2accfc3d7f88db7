/**
 * llama.cpp (node-llama-cpp, default mmap) on the streaming benchmark's file, in its own process:
 * load time, time to first token after a 4-token prompt, then median single-token decode steps,
 * peak RSS and bytes fetched from storage. Prints one JSON line. Run as
 * `node dist/bench/streaming-llama.js PACKAGE_DIR MODEL.gguf THREADS STEPS [WARMUP]`: WARMUP steps
 * (default 0) run first and are timed apart, as grok-ts's runs warm their expert cache.
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';
import { diskReadBytes } from './proc-io.js';

type EvalItem = number | [number, { generateNext: { token: boolean; options: { temperature: number } } }];
interface Lib {
  getLlama(o: object): Promise<{
    loadModel(o: object): Promise<{
      createContext(o: object): Promise<{ getSequence(): { controlledEvaluate(items: EvalItem[]): Promise<{ next: { token?: number } }[]> }; dispose(): Promise<void> }>;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}

const [dir, modelPath, threadsArg, stepsArg, warmupArg] = process.argv.slice(2);
const threads = Number(threadsArg);
const steps = Number(stepsArg);
const warmup = Number(warmupArg || 0);
const t0 = performance.now();
const lib = (await import(pathToFileURL(path.join(dir!, 'dist', 'index.js')).href)) as Lib;
const llama = await lib.getLlama({ gpu: false, build: 'never', maxThreads: 0, logLevel: 'error' });
const model = await llama.loadModel({ modelPath: modelPath!, gpuLayers: 0, useMmap: true, ignoreMemorySafetyChecks: true }); // larger than RAM on purpose
const ctx = await model.createContext({ contextSize: Math.max(256, 16 + warmup + steps), batchSize: 64, threads: { ideal: threads, min: threads }, sequences: 1, ignoreMemorySafetyChecks: true });
const loadS = (performance.now() - t0) / 1000;
const seq = ctx.getSequence();
const next = { generateNext: { token: true, options: { temperature: 0 } } };
await seq.controlledEvaluate([1, 4000, 7919, [12345, next]]);
const ttftS = (performance.now() - t0) / 1000;
// pseudo-random ids, as the grok-ts child feeds (a random model's greedy pick repeats one token)
const id = (s: number) => 3 + ((s * 7919 + 104729) % (131072 - 3));
const w0 = performance.now();
for (let s = 0; s < warmup; s++) await seq.controlledEvaluate([[id(1_000_000 + s), next]]);
const warmupS = (performance.now() - w0) / 1000;
const d0 = diskReadBytes();
const times: number[] = [];
for (let s = 0; s < steps; s++) {
  const t = performance.now();
  await seq.controlledEvaluate([[id(s), next]]);
  times.push((performance.now() - t) / 1000);
}
const disk = (diskReadBytes() - d0) / steps;
const total = times.reduce((a, b) => a + b, 0);
times.sort((a, b) => a - b);
console.log(JSON.stringify({ loadS, ttftS, warmupTokS: warmup > 0 ? warmup / warmupS : 0, decodeTokS: steps / total, medianStepTokS: 1 / times[times.length >> 1]!, diskBytesPerToken: disk, peakRssBytes: process.resourceUsage().maxRSS * 1024 }));
await ctx.dispose();
await model.dispose();
await llama.dispose();
