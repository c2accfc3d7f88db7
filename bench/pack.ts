/**
 * Repacking speed of the wasm backend: how fast packQuads turns stored ggml rows into the packed
 * quad layouts (layout.ts, formats/), single-threaded, per format, as GB/s of stored bytes. Eager
 * packing at model start and expert streaming under a memory budget (experts read from disk and
 * repacked on reader threads) both run at this speed; a disk gives 1–3 GB/s.
 *
 * Run alone: `node dist/bench/pack.js [type…]` (prints one line per format and the JSON record).
 */
import { fileURLToPath } from 'node:url';
import { packQuads, partBytes, planFor, type PackPlan } from '../src/backend/wasm/layout.js';
import { packKernels, packStaged, unitsPerStage } from '../src/backend/wasm/pack-kernels.js';
import { BLOCK_FORMATS } from '../src/backend/wasm/formats/index.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { MemoryLinear } from '../src/tensor/linear.js';

/** Grok-like width, 2 column panels of the default 1024; out rows for a few MB per weight (L2 misses, as in real packing). */
const IN = 2048;
const OUT = 2048;
/** Per format: best of the runs in this much time (at least MIN_RUNS): the machine is shared and noisy. */
const BUDGET_MS = 600;
const MIN_RUNS = 5;

export const PACK_TYPES: readonly string[] = ['q8_0', 'q4_0', 'q4_k', 'f16', ...BLOCK_FORMATS.map((f) => f.type)];

/** GB/s of stored bytes packed by one thread, per ggml type. */
export async function benchPack(log: (l: string) => void, types: readonly string[] = PACK_TYPES): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const type of types) {
    const rowBytes = ggmlRowBytes(type, IN);
    const raw = new Uint8Array(rowBytes * OUT);
    let s = 0x9e3779b9;
    for (let i = 0; i < raw.length; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      raw[i] = s >>> 24;
    }
    const w = new MemoryLinear(type, IN, OUT, { kind: 'ggml', type }, raw);
    const plan = planFor(w);
    if (!plan) throw new Error(`bench pack: no wasm plan for ${type}`);
    const dst = new Uint8Array(partBytes(plan, plan.quads));
    const gbs = raw.length / bestOf(() => packQuads(plan, w, 0, plan.quads, dst), () => dst.fill(0)) / 1e6; // packQuads wants zeroed memory, as a fresh shard is
    out[`${type}_gb_s`] = gbs;
    log(`pack ${type.padEnd(8)} ${gbs.toFixed(2)} GB/s of stored bytes (${(raw.length / 2 ** 20).toFixed(1)} MiB, 1 thread)`);
    const wasm = benchWasm(plan, raw);
    if (wasm !== undefined) {
      out[`${type}_wasm_gb_s`] = wasm;
      log(`pack ${type.padEnd(8)} ${wasm.toFixed(2)} GB/s in wasm (pack-kernels.ts, as the expert readers repack)`);
    }
  }
  return out;
}

/** Best time (ms) of `run` over the budget, `reset` before each run. */
function bestOf(run: () => void, reset: () => void): number {
  let best = Infinity;
  const start = performance.now();
  for (let k = 0; k < MIN_RUNS || performance.now() - start < BUDGET_MS; k++) {
    reset();
    const t = performance.now();
    run();
    best = Math.min(best, performance.now() - t);
  }
  return best;
}

/** GB/s of the wasm repack (the stored rows already staged in the shard), or undefined when no kernel packs the plan. */
function benchWasm(plan: PackPlan, raw: Uint8Array): number | undefined {
  if (unitsPerStage(plan, raw.length) < 1) return undefined;
  const bytes = partBytes(plan, plan.quads);
  const memory = new WebAssembly.Memory({ initial: Math.ceil((raw.length + bytes) / 65536) + 1, maximum: 65536, shared: true });
  new Uint8Array(memory.buffer).set(raw);
  const k = packKernels(memory);
  const rowBytes = raw.length / plan.outDim;
  const run = () => packStaged(k, memory, raw.length, plan, 0, plan.quads, raw.length, (first) => first * rowBytes);
  return raw.length / bestOf(run, () => {}) / 1e6;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const only = process.argv.slice(2);
  console.log(JSON.stringify(await benchPack((l) => console.log(l), only.length ? only : PACK_TYPES), null, 1));
}
