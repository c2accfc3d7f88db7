/**
 * True width: one layer of Grok-1 at its real shapes (D 6144, F 32768, 48 q / 8 kv heads, key 128,
 * vocab 131072, 8 experts top 2), in the official int8 layout and in every llama.cpp mix (each
 * layer's types those of a typical layer of the 64, layer 20), so kernels run at the widths of the
 * real model rather than the bench model's 2048. Per format:
 * - the wasm logits' cosine to the js oracle's for a 4-token prompt (the end-to-end numerics at
 *   Grok width, where int16 activation blocks and column panels are longest);
 * - the decode step time, split into the output projection (131072 × 6144, once per token) and
 *   the layer, and projected to the 64-layer model: seconds per token on this machine, and tokens/s
 *   at 100 / 300 / 460 GB/s if the kernels keep the fraction of the bandwidth they reach here.
 *
 * Opt-in (`grok-ts bench true-width`): each file is 5–9 GB, written, measured and deleted in turn
 * (kept with GROK_TS_BENCH_KEEP=1); the whole section takes about half an hour here.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { jsKernels } from '../src/backend/js/kernels.js';
import type { WasmKernels } from '../src/backend/wasm/index.js';
import { makeConfig, type GrokConfig } from '../src/config.js';
import { loadModel } from '../src/language-model.js';
import { GrokModel } from '../src/model/grok.js';
import { MIXES, ensureMixGguf, type Mix } from './mixes.js';
import { decodeBytesPerToken } from './model.js';
import { cosine } from './random-blocks.js';
import { ensureSyntheticCheckpoint } from './synthetic.js';

export function trueWidthConfig(layers = 1): Readonly<GrokConfig> {
  return makeConfig({ embSize: 6144, numQHeads: 48, numKvHeads: 8, keySize: 128, numLayers: layers, ffnSize: 32768, numExperts: 8, numSelectedExperts: 2, sequenceLen: 256 });
}

const GROK1_LAYERS = 64;
const BANDWIDTHS_GBS = [100, 300, 460];

const median = (a: number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

/** One format in this process: cosine to js, step time split into output projection and layer. */
async function measureOnce(modelPath: string, steps: number): Promise<Record<string, number>> {
  const lm = await loadModel(modelPath, { backend: 'wasm' });
  await lm.whenResident(); // every expert packed before timing
  const k = lm.kernels as WasmKernels;
  try {
    const model = lm.model;
    const w = lm.files.weights;
    const V = lm.config.vocabSize;
    const prompt = [17, 2049, 31337, 777];
    const [fast] = model.forward([{ tokens: prompt, cache: model.newCache(64) }]);
    const fastLast = fast!.slice(fast!.length - V);
    // the oracle on the same weights (the wasm backend released its copies: they are read again)
    const ref = new GrokModel(w, jsKernels);
    const [want] = ref.forward([{ tokens: prompt, cache: ref.newCache(64) }]);
    const cos = cosine(fastLast, want!.slice(want!.length - V));
    const cache = model.newCache(steps + 8);
    model.forward([{ tokens: prompt, cache }]);
    const times: number[] = [];
    const bws: number[] = [];
    let tok = 5;
    for (let s = 0; s < steps; s++) {
      if (s % 4 === 0) bws.push(k.measureReadBandwidth(512 << 20, 2));
      const t = performance.now();
      const [logits] = model.forward([{ tokens: [tok], cache }]);
      times.push((performance.now() - t) / 1e3);
      tok = 3 + (Math.abs(Math.floor(logits![0]! * 1e6)) % 1000);
    }
    // the output projection alone (the tied embedding, once per token)
    const D = lm.config.embSize;
    const h = new Float32Array(D).fill(0.01);
    const out = new Float32Array(V);
    const outTimes: number[] = [];
    for (let s = 0; s < 5; s++) {
      const t = performance.now();
      k.matmul(out, h, 1, w.embedding);
      outTimes.push((performance.now() - t) / 1e3);
    }
    const layerBytes = decodeBytesPerToken(w) - w.embedding.byteLength;
    return {
      cosine_vs_js: cos,
      step_s: median(times),
      output_s: median(outTimes),
      read_bandwidth_gbs: median(bws) / 1e9,
      layer_bytes: layerBytes,
      output_bytes: w.embedding.byteLength,
      js_fallback_calls: [...k.stats.js.values()].reduce((a, b) => a + b, 0),
    };
  } finally {
    await lm.close();
  }
}

export async function benchTrueWidth(log: (l: string) => void, cacheDir: string, opts: { mixes?: readonly Mix[]; steps?: number } = {}): Promise<Record<string, number>> {
  const config = trueWidthConfig(1);
  const steps = opts.steps ?? 8;
  const keep = process.env['GROK_TS_BENCH_KEEP'] === '1';
  const out: Record<string, number> = {};
  const rows: string[] = [];
  log(`one Grok-1 layer at true width: D ${config.embSize}, F ${config.ffnSize}, ${config.numQHeads}/${config.numKvHeads} heads, vocab ${config.vocabSize}, ${config.numExperts} experts top ${config.numSelectedExperts}; projected to ${GROK1_LAYERS} layers`);
  const formats: (Mix | 'int8')[] = ['int8', ...(opts.mixes ?? MIXES)];
  for (const f of formats) {
    const file = f === 'int8' ? path.join(cacheDir, 'truewidth-1l-int8') : path.join(cacheDir, `truewidth-1l-${f}.gguf`);
    if (f === 'int8') {
      if (!fs.existsSync(path.join(file, 'COMPLETE'))) log(`writing ${file} (official layout) …`);
      ensureSyntheticCheckpoint(file, config, 7);
    } else {
      ensureMixGguf(config, f, file, log, { layer: 20, of: GROK1_LAYERS });
    }
    try {
      const o = execFileSync(process.execPath, [fileURLToPath(import.meta.url), '--once', file, String(steps)], { encoding: 'utf8', maxBuffer: 1 << 20 });
      const r = JSON.parse(o.trim().split('\n').pop()!) as Record<string, number>;
      const layerS = Math.max(r['step_s']! - r['output_s']!, 0);
      const projS = r['output_s']! + GROK1_LAYERS * layerS;
      const projBytes = r['output_bytes']! + GROK1_LAYERS * r['layer_bytes']!;
      const fraction = (r['layer_bytes']! + r['output_bytes']!) / r['step_s']! / (r['read_bandwidth_gbs']! * 1e9);
      for (const [key, v] of Object.entries(r)) out[`true_width.${f}.${key}`] = v;
      out[`true_width.${f}.projected_s_per_token`] = projS;
      out[`true_width.${f}.projected_bytes_per_token`] = projBytes;
      out[`true_width.${f}.bandwidth_fraction`] = fraction;
      const at = BANDWIDTHS_GBS.map((b) => (fraction * b * 1e9) / projBytes);
      BANDWIDTHS_GBS.forEach((b, i) => (out[`true_width.${f}.projected_tok_s_at_${b}gbs`] = at[i]!));
      log(`${f.padEnd(8)} cosine ${r['cosine_vs_js']!.toFixed(6)}; step ${(1e3 * r['step_s']!).toFixed(0)} ms (output ${(1e3 * r['output_s']!).toFixed(0)} ms, layer ${(1e3 * layerS).toFixed(0)} ms, ` +
        `${(100 * fraction).toFixed(0)} % of ${r['read_bandwidth_gbs']!.toFixed(1)} GB/s); 64 layers: ${(projBytes / 1e9).toFixed(1)} GB/token, ${projS.toFixed(1)} s/token here, ` +
        `${at.map((x, i) => `${x.toFixed(2)} tok/s at ${BANDWIDTHS_GBS[i]} GB/s`).join(', ')}; js-fallback matmuls ${r['js_fallback_calls']}`);
      rows.push(`| ${f} | ${r['cosine_vs_js']!.toFixed(6)} | ${(projBytes / 1e9).toFixed(1)} | ${projS.toFixed(1)} | ${at.map((x) => x.toFixed(2)).join(' | ')} | ${r['js_fallback_calls']} |`);
    } finally {
      if (!keep) fs.rmSync(file, { recursive: true, force: true });
    }
  }
  log(`\n| format | cosine wasm vs js | Grok-1 GB/token | s/token here | ${BANDWIDTHS_GBS.map((b) => `tok/s at ${b} GB/s`).join(' | ')} | js calls |\n|${'---|'.repeat(5 + BANDWIDTHS_GBS.length)}\n${rows.join('\n')}`);
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1] && process.argv[2] === '--once') {
  console.log(JSON.stringify(await measureOnce(process.argv[3]!, Number(process.argv[4]))));
}
