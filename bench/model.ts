/**
 * End-to-end decode / prefill benchmark of the wasm backend on a bench-size Grok-architecture model
 * whose weights are generated in memory (no files): the official int8 layout (int8 + bf16 scales,
 * f32 embedding) or Q8_0 throughout (GGUF-like; the precision llama.cpp's Q8_0 runs at).
 *
 * Reported per thread count: memory read bandwidth measured in wasm, decode tokens/s (median over
 * single-token steps after a short prompt), weight bytes touched per decoded token (attention
 * weights, router, the 2 chosen experts, the tied output; plus the KV cache read), their product as
 * a fraction of the bandwidth, prefill tokens/s for one 512-token prompt, and peak RSS.
 *
 * Run alone: `node dist/bench/model.js [int8|q8_0] [layers]`.
 */
import { execFileSync } from 'node:child_process';
import * as os from 'node:os';
import { fileURLToPath } from 'node:url';
import type { LinearFormat, LinearWeight } from '../src/backend/kernels.js';
import { createWasmKernels } from '../src/backend/wasm/index.js';
import { makeConfig, type GrokConfig } from '../src/config.js';
import { GrokModel } from '../src/model/grok.js';
import type { ExpertWeights, GrokWeights, LayerWeights } from '../src/model/weights.js';
import { f32ToBf16, f32ToF16 } from '../src/tensor/dtype.js';

export type BenchFormat = 'int8' | 'q8_0';

export interface ModelBenchOptions {
  readonly format?: BenchFormat;
  readonly layers?: number;
  readonly decodeSteps?: number;
  readonly prefillTokens?: number;
  readonly threads?: readonly number[];
}

/** Deterministic pseudo-random bytes (xorshift32), fast enough for gigabytes. */
function randomBytes(n: number, seed: number): Uint8Array {
  const out = new Uint8Array(Math.ceil(n / 4) * 4);
  const u32 = new Uint32Array(out.buffer);
  let s = seed | 1;
  for (let i = 0; i < u32.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    u32[i] = s;
  }
  return out.subarray(0, n);
}

/**
 * A weight whose bytes are generated on first use and dropped on release (as a file-backed weight
 * is read and released), so memory holds each tensor once: in wasm after packing.
 */
class GeneratedLinear implements LinearWeight {
  readonly byteLength: number;
  private data: Uint8Array | undefined;

  constructor(
    readonly name: string,
    readonly inDim: number,
    readonly outDim: number,
    readonly format: LinearFormat,
    private readonly seed: number,
  ) {
    this.byteLength = this.weightBytes() + (format.kind === 'int8-grouped' ? format.groups * outDim * 2 : 0);
  }

  private weightBytes(): number {
    const f = this.format;
    if (f.kind === 'int8-grouped') return this.inDim * this.outDim;
    if (f.kind === 'dense') return this.inDim * this.outDim * 4;
    return (this.inDim / 32) * 34 * this.outDim;
  }

  bytes(): Uint8Array {
    if (this.data) return this.data;
    const b = randomBytes(this.weightBytes(), this.seed);
    // scales that keep activations O(1): uniform int8 has rms ≈ 73
    const scale = 1 / (73 * Math.sqrt(this.inDim));
    if (this.format.kind === 'dense') {
      const f = new Float32Array(b.buffer, b.byteOffset, b.byteLength / 4);
      for (let i = 0; i < f.length; i++) f[i] = ((b[4 * i]! - 127.5) / 73) * scale * 73;
    } else if (this.format.kind === 'ggml') {
      const d = f32ToF16(scale);
      for (let p = 0; p < b.length; p += 34) {
        b[p] = d & 255;
        b[p + 1] = d >> 8;
      }
    }
    this.data = b;
    return b;
  }

  scaleBytes(): Uint8Array {
    if (this.format.kind !== 'int8-grouped') throw new Error(`${this.name} has no scales`);
    const s = f32ToBf16(1 / (73 * Math.sqrt(this.inDim)));
    return new Uint8Array(new Uint16Array(this.format.groups * this.outDim).fill(s).buffer);
  }

  release(): void {
    this.data = undefined;
  }
}

/** The bench-size Grok: PERF-NOTES' llama.cpp reference shape (emb 2048, 8 experts top 2, vocab 131072). */
export function benchConfig(layers: number): Readonly<GrokConfig> {
  return makeConfig({ embSize: 2048, numQHeads: 16, numKvHeads: 8, keySize: 128, numLayers: layers, sequenceLen: 1024 });
}

export function benchWeights(config: Readonly<GrokConfig>, format: BenchFormat): GrokWeights {
  const c = config;
  const D = c.embSize;
  let seed = 1;
  const lin = (name: string, I: number, O: number, groups: number): LinearWeight =>
    new GeneratedLinear(name, I, O, format === 'int8' ? { kind: 'int8-grouped', groups } : { kind: 'ggml', type: 'q8_0' }, seed++);
  const dense = (name: string, I: number, O: number, order: 'in-major' | 'out-major') =>
    new GeneratedLinear(name, I, O, { kind: 'dense', dtype: 'f32', order }, seed++);
  const ones = () => new Float32Array(D).fill(1);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < c.numLayers; l++) {
    const experts: ExpertWeights[] = [];
    for (let e = 0; e < c.numExperts; e++) {
      experts.push({ gate: lin(`l${l}.e${e}.gate`, D, c.ffnSize, 1), up: lin(`l${l}.e${e}.up`, D, c.ffnSize, 1), down: lin(`l${l}.e${e}.down`, c.ffnSize, D, 8) });
    }
    layers.push({
      attnNorm: ones(),
      wq: lin(`l${l}.q`, D, c.numQHeads * c.keySize, 1),
      wk: lin(`l${l}.k`, D, c.numKvHeads * c.keySize, 1),
      wv: lin(`l${l}.v`, D, c.numKvHeads * c.keySize, 1),
      wo: lin(`l${l}.o`, c.numQHeads * c.keySize, D, 8),
      attnOutNorm: ones(),
      ffnNorm: ones(),
      router: dense(`l${l}.router`, D, c.numExperts, 'in-major'),
      experts,
      ffnOutNorm: ones(),
    });
  }
  const embedding = format === 'int8' ? dense('embedding', D, c.vocabSize, 'out-major') : lin('embedding', D, c.vocabSize, 1);
  let bytes = embedding.byteLength;
  for (const l of layers) {
    bytes += l.wq.byteLength + l.wk.byteLength + l.wv.byteLength + l.wo.byteLength + l.router.byteLength;
    for (const e of l.experts) bytes += e.gate.byteLength + e.up.byteLength + e.down.byteLength;
  }
  return { config: c, embedding, finalNorm: ones(), layers, byteLength: bytes };
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
export async function benchModelOnce(format: BenchFormat, layers: number, threads: number, steps: number, P: number): Promise<Record<string, number>> {
  const config = benchConfig(layers);
  const weights = benchWeights(config, format);
  const perToken = decodeBytesPerToken(weights);
  const rng = (i: number) => 3 + ((i * 7919) % (config.vocabSize - 3));
  const k = await createWasmKernels({ threads });
  try {
    const model = new GrokModel(weights, k);
    const t0 = performance.now();
    const prompt = Array.from({ length: 8 }, (_, i) => rng(i));
    const cache = model.newCache(P + steps + 8);
    model.forward([{ tokens: prompt, cache }]); // packs every weight it touches
    for (const l of weights.layers) for (const e of l.experts) for (const m of [e.gate, e.up, e.down]) k.prepare(m);
    const loadS = (performance.now() - t0) / 1e3;
    const times: number[] = [];
    let tok = prompt[prompt.length - 1]!;
    for (let s = 0; s < steps; s++) {
      const t = performance.now();
      const [logits] = model.forward([{ tokens: [tok], cache }]);
      times.push((performance.now() - t) / 1e3);
      tok = 3 + (Math.abs(Math.floor(logits![0]! * 1e6)) % 1000);
    }
    times.sort((a, b) => a - b);
    const decodeTps = 1 / times[Math.floor(times.length / 2)]!;
    const kvBytes = 2 * config.numLayers * (prompt.length + steps / 2) * config.numKvHeads * config.keySize * 4;
    const pre = Array.from({ length: P }, (_, i) => rng(i + 100));
    const tp = performance.now();
    model.forward([{ tokens: pre, cache: model.newCache(P) }]);
    const prefillTps = P / ((performance.now() - tp) / 1e3);
    const rss = peakRss();
    const bw = k.measureReadBandwidth(512 * 1024 * 1024, 5); // over the packed weights: no extra RAM
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
    };
  } finally {
    await k.close();
  }
}

/**
 * The model benchmark for 1 and all threads, each thread count in a child process (so each peak
 * RSS is its own run's).
 */
export async function benchModel(log: (line: string) => void, opts: ModelBenchOptions = {}): Promise<Record<string, number>> {
  const format = opts.format ?? 'int8';
  const layers = opts.layers ?? 6;
  const steps = opts.decodeSteps ?? 16;
  const P = opts.prefillTokens ?? 512;
  const all = os.availableParallelism();
  const threadCounts = opts.threads ?? (all > 1 ? [1, all] : [1]);
  const config = benchConfig(layers);
  const weights = benchWeights(config, format);
  const result: Record<string, number> = { weight_bytes: weights.byteLength, decode_weight_bytes_per_token: decodeBytesPerToken(weights) };
  log(`bench model (${format}): ${layers} layers, D ${config.embSize}, F ${config.ffnSize}, ${config.numExperts} experts top ${config.numSelectedExperts}, ` +
    `${(weights.byteLength / 1e9).toFixed(2)} GB of weights, ${(decodeBytesPerToken(weights) / 1e9).toFixed(3)} GB read per decoded token`);
  for (const threads of threadCounts) {
    const out = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--once', format, String(layers), String(threads), String(steps), String(P)], {
      encoding: 'utf8',
      maxBuffer: 1 << 20,
    });
    const r = JSON.parse(out.trim().split('\n').pop()!) as Record<string, number>;
    for (const [key, v] of Object.entries(r)) result[`${key}_t${threads}`] = v;
    log(`threads ${threads}: bandwidth ${r['read_bandwidth_gbs']!.toFixed(1)} GB/s; decode ${r['decode_tok_s']!.toFixed(2)} tok/s = ` +
      `${((r['decode_bytes_per_token']! * r['decode_tok_s']!) / 1e9).toFixed(1)} GB/s (${(100 * r['decode_bandwidth_fraction']!).toFixed(0)} % of bandwidth); ` +
      `prefill ${P}: ${r['prefill_tok_s']!.toFixed(1)} tok/s; packing ${r['load_s']!.toFixed(1)} s; ` +
      `peak RSS ${(r['peak_rss_bytes']! / 1e9).toFixed(2)} GB (${(r['peak_rss_bytes']! / weights.byteLength).toFixed(2)}× weights); js fallback calls ${r['js_fallback_calls']}`);
  }
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] === '--once') {
    const [format, layers, threads, steps, P] = process.argv.slice(3);
    const r = await benchModelOnce(format as BenchFormat, Number(layers), Number(threads), Number(steps), Number(P));
    console.log(JSON.stringify(r));
  } else {
    const format = (process.argv[2] ?? 'int8') as BenchFormat;
    const layers = process.argv[3] ? Number(process.argv[3]) : undefined;
    const r = await benchModel((l) => console.log(l), { format, ...(layers ? { layers } : {}) });
    console.log(JSON.stringify(r, null, 2));
  }
}
