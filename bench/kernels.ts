/**
 * Kernel microbenchmarks of the wasm backend: the memory read bandwidth measured in wasm, and
 * matrix-vector (decode-shaped, T = 1) throughput per weight format for 1 thread and all threads,
 * as GB/s of packed weight bytes read, and as a fraction of the measured bandwidth; for a few
 * formats also the time of a call with T = 4 and 16 rows (batched decode) on all threads.
 *
 * Run alone: `node dist/bench/kernels.js` (prints a table and the JSON record).
 */
import { benchThreadCounts } from './llama-cpp.js';
import { fileURLToPath } from 'node:url';
import { createWasmKernels, type WasmKernels } from '../src/backend/wasm/index.js';
import { f32ToBf16, f32ToF16 } from '../src/tensor/dtype.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { RANDOM_BLOCK_TYPES, randomBlocks, scaleForRms } from './random-blocks.js';
import { MemoryLinear, type LinearFormat, type LinearWeight } from '../src/tensor/linear.js';

/** Weight bytes per benchmarked matrix: far beyond the caches, small enough for a CI machine. */
const WEIGHT_BYTES = 192 * 1024 * 1024;
const IN = 6144;

function fill(bytes: Uint8Array, seed: number): void {
  let s = seed >>> 0;
  const u32 = new Uint32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  for (let i = 0; i < u32.length; i++) {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    u32[i] = s;
  }
}

/** A random weight of about WEIGHT_BYTES in `format`, with sane (finite, small) scales. */
function makeWeight(format: LinearFormat): LinearWeight {
  if (format.kind === 'int8-grouped') {
    const out = Math.floor(WEIGHT_BYTES / IN);
    const q = new Uint8Array(IN * out);
    fill(q, 1);
    const scales = new Uint8Array(new Uint16Array(format.groups * out).fill(f32ToBf16(0.01)).buffer);
    return new MemoryLinear(`int8-grouped/${format.groups}`, IN, out, format, q, scales);
  }
  if (format.kind === 'dense') {
    const eb = format.dtype === 'f32' ? 4 : 2;
    const out = Math.floor(WEIGHT_BYTES / (IN * eb));
    const bytes = new Uint8Array(IN * out * eb);
    if (format.dtype === 'f32') new Float32Array(bytes.buffer).fill(0.01);
    else new Uint16Array(bytes.buffer).fill(format.dtype === 'bf16' ? f32ToBf16(0.01) : f32ToF16(0.01));
    return new MemoryLinear(`dense-${format.dtype}`, IN, out, format, bytes);
  }
  if (format.kind !== 'ggml') throw new Error('unknown format');
  const rowBytes = ggmlRowBytes(format.type, IN);
  const out = Math.floor(WEIGHT_BYTES / rowBytes);
  const bytes = new Uint8Array(rowBytes * out);
  let s = 2;
  randomBlocks(format.type, bytes, () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296), scaleForRms(format.type, 1 / Math.sqrt(IN)));
  return new MemoryLinear(format.type, IN, out, format, bytes);
}

const FORMATS: LinearFormat[] = [
  { kind: 'int8-grouped', groups: 1 },
  ...RANDOM_BLOCK_TYPES.map((type): LinearFormat => ({ kind: 'ggml', type })),
  { kind: 'dense', dtype: 'f32', order: 'out-major' },
  { kind: 'dense', dtype: 'bf16', order: 'out-major' },
];

/** Formats also timed with T rows per call, on all threads. */
const BATCHED = new Set(['int8', 'q8_0', 'q4_k', 'f32']);
const BATCH_T = [4, 16];

function formatName(f: LinearFormat): string {
  return f.kind === 'ggml' ? f.type : f.kind === 'dense' ? f.dtype : 'int8';
}

/** Seconds per call with T rows: median of `n` calls after warm-up calls (TurboFan tiers up during those). */
function timeMatvec(k: WasmKernels, w: LinearWeight, n: number, T = 1): number {
  const x = new Float32Array(T * w.inDim).map((_, i) => Math.sin(i));
  const y = new Float32Array(T * w.outDim);
  for (let i = 0; i < 5; i++) k.matmul(y, x, T, w);
  const times: number[] = [];
  for (let i = 0; i < n; i++) {
    const t = process.hrtime.bigint();
    k.matmul(y, x, T, w);
    times.push(Number(process.hrtime.bigint() - t) / 1e9);
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(n / 2)]!;
}

export async function benchKernels(log: (line: string) => void): Promise<Record<string, number>> {
  const result: Record<string, number> = {};
  const threadCounts = benchThreadCounts();
  for (const threads of threadCounts) {
    const k = await createWasmKernels({ threads });
    try {
      const bw = k.measureReadBandwidth(512 * 1024 * 1024, 7) / 1e9;
      result[`read_bandwidth_gbs_t${threads}`] = bw;
      log(`threads ${threads}: memory read bandwidth ${bw.toFixed(1)} GB/s`);
      for (const f of FORMATS) {
        const w = makeWeight(f);
        const before = k.packedBytes;
        k.prepare(w);
        const bytes = k.packedBytes - before; // what one matvec reads
        const s = timeMatvec(k, w, 15);
        // the VM's bandwidth drifts from minute to minute: compare with a measurement made just now
        const bwNow = k.measureReadBandwidth(256 * 1024 * 1024, 3) / 1e9;
        const gbs = bytes / s / 1e9;
        const name = formatName(f);
        result[`matvec_${name}_gbs_t${threads}`] = gbs;
        result[`matvec_${name}_fraction_t${threads}`] = gbs / bwNow;
        log(`  matvec ${name.padEnd(6)} ${w.inDim}x${w.outDim}: ${(s * 1e3).toFixed(2)} ms, ${gbs.toFixed(1)} GB/s (${((100 * gbs) / bwNow).toFixed(0)} % of ${bwNow.toFixed(1)} GB/s measured after it)`);
        if (threads === threadCounts[threadCounts.length - 1] && BATCHED.has(name)) {
          // batched decode (the server's case): the weight is read once per call, so the time
          // beyond T = 1 is compute
          const parts = BATCH_T.map((T) => {
            const st = timeMatvec(k, w, 7, T);
            result[`matmul_${name}_T${T}_ms_t${threads}`] = st * 1e3;
            return `T=${T} ${(st * 1e3).toFixed(2)} ms (${(st / s).toFixed(1)}×)`;
          });
          log(`         batched: ${parts.join(', ')}`);
        }
      }
    } finally {
      await k.close();
    }
  }
  return result;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const r = await benchKernels((l) => console.log(l));
  console.log(JSON.stringify(r, null, 2));
}
