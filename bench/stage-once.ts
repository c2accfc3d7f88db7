/**
 * What matmulMany saves: the bench model's weights that share an input (q/k/v: 2048 → 2048 + 1024
 * + 1024; an expert's gate/up: 2048 → 2 × 10240) run as separate matmuls (each stages and
 * quantises x and wakes the pool) and as one matmulMany (stage and quantise once, one pool job),
 * alternating call by call so that a busy machine slows both alike. Reported per shape, format,
 * T and thread count: the median time of each, the median of the per-pair differences, and the
 * implied saving per decoded token of the bench model (6 layers × (q/k/v + 2 experts' gate/up)).
 *
 * Run alone: `node dist/bench/stage-once.js [reps]`.
 */
import { fileURLToPath } from 'node:url';
import { createWasmKernels, type WasmKernels } from '../src/backend/wasm/index.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { MemoryLinear, type LinearWeight } from '../src/tensor/linear.js';
import { benchThreadCounts } from './llama-cpp.js';

const D = 2048;

function random(bytes: Uint8Array, seed: number): Uint8Array {
  let s = seed >>> 0 || 1;
  for (let i = 0; i < bytes.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    bytes[i] = s & 255;
  }
  return bytes;
}

function weight(format: 'int8' | 'q8_0', out: number, seed: number): LinearWeight {
  if (format === 'int8') {
    const scales = new Uint8Array(new Uint16Array(out).fill(f32ToBf16(0.01)).buffer);
    return new MemoryLinear(`int8 ${D}x${out}`, D, out, { kind: 'int8-grouped', groups: 1 }, random(new Uint8Array(D * out), seed), scales);
  }
  const rowBytes = ggmlRowBytes('q8_0', D);
  const bytes = random(new Uint8Array(rowBytes * out), seed);
  for (let o = 0; o < out; o++) for (let b = 0; b < D / 32; b++) bytes.set([0x00, 0x1c], o * rowBytes + b * 34); // d = f16 0.0039
  return new MemoryLinear(`q8_0 ${D}x${out}`, D, out, { kind: 'ggml', type: 'q8_0' }, bytes);
}

const median = (a: readonly number[]) => [...a].sort((x, y) => x - y)[Math.floor(a.length / 2)]!;

function pairTimes(k: WasmKernels, ws: readonly LinearWeight[], T: number, reps: number): { separate: number; many: number; saved: number } {
  const x = new Float32Array(T * D).map((_, i) => Math.sin(i));
  const outs = ws.map((w) => new Float32Array(T * w.outDim));
  const sep: number[] = [];
  const many: number[] = [];
  const saved: number[] = [];
  const separate = () => ws.forEach((w, i) => k.matmul(outs[i]!, x, T, w));
  const together = () => k.matmulMany(outs, x, T, ws);
  for (let r = 0; r < 3; r++) {
    separate();
    together();
  }
  for (let r = 0; r < reps; r++) {
    const order = r % 2 ? [together, separate] : [separate, together];
    const t: number[] = [];
    for (const f of order) {
      const t0 = process.hrtime.bigint();
      f();
      t.push(Number(process.hrtime.bigint() - t0) / 1e3);
    }
    const [s, m] = r % 2 ? [t[1]!, t[0]!] : [t[0]!, t[1]!];
    sep.push(s);
    many.push(m);
    saved.push(s - m);
  }
  return { separate: median(sep), many: median(many), saved: median(saved) };
}

export async function benchStageOnce(log: (line: string) => void, reps = 200): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  for (const threads of benchThreadCounts()) {
    const k = await createWasmKernels({ threads });
    try {
      for (const format of ['int8', 'q8_0'] as const) {
        const qkv = [weight(format, D, 1), weight(format, 1024, 2), weight(format, 1024, 3)];
        const gateUp = [weight(format, 10240, 4), weight(format, 10240, 5)];
        for (const T of [1, 16, 512]) {
          const n = T === 512 ? Math.max(6, Math.floor(reps / 20)) : reps;
          const a = pairTimes(k, qkv, T, n);
          const b = pairTimes(k, gateUp, T, n);
          const perToken = (6 * (a.saved + 2 * b.saved)) / 1e3; // ms per forward of T tokens on the bench model
          const key = `${format}_T${T}_t${threads}`;
          Object.assign(result, {
            [`qkv_separate_us_${key}`]: a.separate, [`qkv_many_us_${key}`]: a.many, [`qkv_saved_us_${key}`]: a.saved,
            [`gateup_separate_us_${key}`]: b.separate, [`gateup_many_us_${key}`]: b.many, [`gateup_saved_us_${key}`]: b.saved,
            [`forward_saved_ms_${key}`]: perToken,
          });
          log(`${threads} thread(s) ${format} T=${T}: q/k/v ${a.separate.toFixed(0)} → ${a.many.toFixed(0)} µs (saved ${a.saved.toFixed(0)}), ` +
            `gate/up ${b.separate.toFixed(0)} → ${b.many.toFixed(0)} µs (saved ${b.saved.toFixed(0)}); ≈ ${perToken.toFixed(2)} ms per bench-model forward`);
        }
      }
    } finally {
      await k.close();
    }
  }
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await benchStageOnce((l) => console.log(l), process.argv[2] ? Number(process.argv[2]) : undefined);
  console.log(JSON.stringify(r));
}
