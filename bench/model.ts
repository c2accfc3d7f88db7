/**
 * End-to-end decode / prefill benchmark of the wasm backend on a bench-size Grok-architecture model
 * generated once and cached on disk, loaded through loadModel like any user's checkpoint: the
 * official int8 layout (int8 + bf16 scales, f32 embedding) or that checkpoint converted to a Q8_0
 * GGUF (the precision llama.cpp's Q8_0 runs at).
 *
 * Reported per thread count: memory read bandwidth measured in wasm between the decode steps
 * (median of rounds), decode tokens/s (median over single-token steps after a short prompt), weight bytes touched per decoded token (attention
 * weights, router, the 2 chosen experts, the tied output; plus the KV cache read), their product as
 * a fraction of the bandwidth, prefill tokens/s for one 512-token prompt, and peak RSS.
 *
 * Run alone: `node dist/bench/model.js [int8|q8_0] [layers]` (files cached under bench/cache/).
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { WasmKernels } from '../src/backend/wasm/index.js';
import { makeConfig, type GrokConfig } from '../src/config.js';
import { loadModel } from '../src/language-model.js';
import { convertToGguf } from '../src/convert/to-gguf.js';
import { openModelFiles } from '../src/model/load.js';
import type { GrokWeights } from '../src/model/weights.js';
import { parseModelProto } from '../src/tokenizer/sentencepiece-model.js';
import { BUNDLED_TOKENIZER_PATH } from '../src/tokenizer/sentencepiece.js';
import { benchThreadCounts } from './llama-cpp.js';
import { ensureSyntheticCheckpoint } from './synthetic.js';

export type BenchFormat = 'int8' | 'q8_0';

export interface ModelBenchOptions {
  readonly format?: BenchFormat;
  readonly layers?: number;
  readonly decodeSteps?: number;
  readonly prefillTokens?: number;
  readonly threads?: readonly number[];
}

/**
 * The bench-size Grok: PERF-NOTES' llama.cpp reference (3.37B parameters: emb 2048, 6 layers,
 * 8 experts top 2, vocab 131072), whose size implies F = 10240, a multiple of every ggml block.
 */
export function benchConfig(layers: number): Readonly<GrokConfig> {
  return makeConfig({ embSize: 2048, numQHeads: 16, numKvHeads: 8, keySize: 128, numLayers: layers, ffnSize: 10240, sequenceLen: 1024 });
}

/**
 * The bench model on disk, generated once and cached: the official ckpt-0 layout (int8 + bf16
 * scales, f32 embedding), or that checkpoint converted to a Q8_0 GGUF (the precision llama.cpp's
 * Q8_0 runs at, and a file llama-bench can read).
 */
export function benchModelPath(cacheDir: string, format: BenchFormat, layers: number, log: (l: string) => void = () => {}): string {
  const config = benchConfig(layers);
  const ckpt = path.join(cacheDir, `bench-${layers}l-int8`);
  if (!fs.existsSync(path.join(ckpt, 'COMPLETE'))) log(`generating the bench checkpoint in ${ckpt} (once) …`);
  ensureSyntheticCheckpoint(ckpt, config, 11);
  if (format === 'int8') return ckpt;
  const gguf = path.join(cacheDir, `bench-${layers}l-q8_0-v2.gguf`); // v2: with the real tokenizer
  if (!fs.existsSync(gguf)) {
    log(`converting it to ${gguf} (once) …`);
    const files = openModelFiles(ckpt);
    try {
      // The real tokenizer (the bench vocabulary is Grok-1's 131072), so llama.cpp can run the file too.
      const tokenizer = parseModelProto(new Uint8Array(fs.readFileSync(BUNDLED_TOKENIZER_PATH)), BUNDLED_TOKENIZER_PATH);
      convertToGguf(files.weights, files.store, gguf, { type: 'q8_0', name: 'grok-ts bench', tokenizer });
    } finally {
      files.close();
    }
  }
  return gguf;
}

/** Weight bytes one decoded token reads: everything but the 6 unchosen experts of each layer. */
export function decodeBytesPerToken(w: GrokWeights): number {
  let n = w.embedding.byteLength;
  for (const l of w.layers) {
    n += l.wq.byteLength + l.wk.byteLength + l.wv.byteLength + l.wo.byteLength + l.router.byteLength;
    const e = l.experts[0]!;
    n += w.config.numSelectedExperts * (e.gate.byteLength + e.up.byteLength + e.down.byteLength);
  }
  return n;
}

function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

/** One thread count in this process: the numbers of benchModel, without the peak RSS of other runs mixed in. */
export async function benchModelOnce(modelPath: string, threads: number, steps: number, P: number): Promise<Record<string, number>> {
  const t0 = performance.now();
  const lm = await loadModel(modelPath, { backend: 'wasm', threads }); // reads and packs every weight
  await lm.whenResident(); // a GGUF's experts are read in the background after a lazy start: wait for all of them
  const loadS = (performance.now() - t0) / 1e3;
  const k = lm.kernels as WasmKernels;
  const weights = lm.files.weights;
  const config = lm.config;
  const perToken = decodeBytesPerToken(weights);
  const rng = (i: number) => 3 + ((i * 7919) % (config.vocabSize - 3));
  try {
    const model = lm.model;
    const prompt = Array.from({ length: 8 }, (_, i) => rng(i));
    const cache = model.newCache(P + steps + 8);
    model.forward([{ tokens: prompt, cache }]);
    // The VM's bandwidth drifts by 1.5× from minute to minute (other tenants): measure it in
    // rounds between the decode steps, over the packed weights (no extra RAM), and take medians.
    const times: number[] = [];
    const bws: number[] = [];
    let tok = prompt[prompt.length - 1]!;
    for (let s = 0; s < steps; s++) {
      if (s % 4 === 0) bws.push(k.measureReadBandwidth(256 * 1024 * 1024, 3));
      const t = performance.now();
      const [logits] = model.forward([{ tokens: [tok], cache }]);
      times.push((performance.now() - t) / 1e3);
      tok = 3 + (Math.abs(Math.floor(logits![0]! * 1e6)) % 1000);
    }
    bws.push(k.measureReadBandwidth(256 * 1024 * 1024, 3));
    const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;
    const decodeTps = 1 / median(times);
    const bw = median(bws);
    const kvBytes = 2 * config.numLayers * (prompt.length + steps / 2) * config.numKvHeads * config.keySize * 4;
    const pre = Array.from({ length: P }, (_, i) => rng(i + 100));
    const tp = performance.now();
    model.forward([{ tokens: pre, cache: model.newCache(P) }]);
    const prefillTps = P / ((performance.now() - tp) / 1e3);
    const rss = peakRss();
    return {
      read_bandwidth_gbs: bw / 1e9,
      decode_tok_s: decodeTps,
      decode_bytes_per_token: perToken + kvBytes,
      decode_bandwidth_fraction: ((perToken + kvBytes) * decodeTps) / bw,
      prefill_tok_s: prefillTps,
      load_s: loadS,
      js_fallback_calls: [...k.stats.js.values()].reduce((a, b) => a + b, 0),
      peak_rss_bytes: rss,
      packed_bytes: k.packedBytes,
      weight_bytes: weights.byteLength,
    };
  } finally {
    await lm.close();
  }
}

/** benchModelOnce in a child process of its own (so its peak RSS is its own run's). */
export function benchModelInChild(modelPath: string, threads: number, steps: number, P: number): Record<string, number> {
  const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--once', modelPath, String(threads), String(steps), String(P)], {
    encoding: 'utf8',
    maxBuffer: 1 << 20,
  });
  return JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>;
}

/**
 * The model benchmark for 1 and all threads, each thread count in a child process (so each peak
 * RSS is its own run's).
 */
export async function benchModel(log: (line: string) => void, cacheDir: string, opts: ModelBenchOptions = {}): Promise<Record<string, number>> {
  const format = opts.format ?? 'int8';
  const layers = opts.layers ?? 6;
  const steps = opts.decodeSteps ?? 16;
  const P = opts.prefillTokens ?? 512;
  const threadCounts = opts.threads ?? benchThreadCounts();
  const config = benchConfig(layers);
  const modelPath = benchModelPath(cacheDir, format, layers, log);
  const files = openModelFiles(modelPath);
  const weightBytes = files.weights.byteLength;
  const perToken = decodeBytesPerToken(files.weights);
  files.close();
  const result: Record<string, number> = { weight_bytes: weightBytes, decode_weight_bytes_per_token: perToken };
  log(`bench model (${format}, ${modelPath}): ${layers} layers, D ${config.embSize}, F ${config.ffnSize}, ${config.numExperts} experts top ${config.numSelectedExperts}, ` +
    `${(weightBytes / 1e9).toFixed(2)} GB of weights, ${(perToken / 1e9).toFixed(3)} GB read per decoded token`);
  for (const threads of threadCounts) {
    const r = benchModelInChild(modelPath, threads, steps, P);
    for (const [key, v] of Object.entries(r)) result[`${key}_t${threads}`] = v;
    log(`threads ${threads}: bandwidth ${r['read_bandwidth_gbs']!.toFixed(1)} GB/s; decode ${r['decode_tok_s']!.toFixed(2)} tok/s = ` +
      `${((r['decode_bytes_per_token']! * r['decode_tok_s']!) / 1e9).toFixed(1)} GB/s (${(100 * r['decode_bandwidth_fraction']!).toFixed(0)} % of bandwidth); ` +
      `prefill ${P}: ${r['prefill_tok_s']!.toFixed(1)} tok/s; packing ${r['load_s']!.toFixed(1)} s; ` +
      `peak RSS ${(r['peak_rss_bytes']! / 1e9).toFixed(2)} GB (${(r['peak_rss_bytes']! / weightBytes).toFixed(2)}× weights); js fallback calls ${r['js_fallback_calls']}`);
  }
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--once') {
    const [modelPath, threads, steps, P] = process.argv.slice(3);
    const r = await benchModelOnce(modelPath!, Number(threads), Number(steps), Number(P));
    console.log(JSON.stringify(r));
  } else {
    const format = (process.argv[2] ?? 'int8') as BenchFormat;
    const layers = process.argv[3] ? Number(process.argv[3]) : undefined;
    const cacheDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'bench', 'cache');
    const r = await benchModel((l) => console.log(l), cacheDir, { format, ...(layers ? { layers } : {}) });
    console.log(JSON.stringify(r, null, 2));
  }
}
