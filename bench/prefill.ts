/**
 * Prefill-shaped matmuls (2048 → 10240, T tokens: one expert's share of a prompt) per block format:
 * each format's own kernel against its prefill kernel (src/backend/wasm/decoded.ts), two backends in
 * one process (prefillMinTokens Infinity and 1) alternating call by call, the best of `rounds` calls
 * each, so that a shared machine's swings fall on both alike. Prints G multiply-adds per second
 * and the speed-up, and the JSON record.
 *
 * `node dist/bench/prefill.js [T=64] [threads=1] [types=all with a prefill kernel] [rounds=11]`
 */
import { fileURLToPath } from 'node:url';
import { createWasmKernels } from '../src/backend/wasm/index.js';
import { BLOCK_FORMATS } from '../src/backend/wasm/formats/index.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import { randomBlocks, scaleForRms } from './random-blocks.js';

export const PREFILL_TYPES: readonly string[] = ['q4_k', ...BLOCK_FORMATS.filter((b) => b.prefill).map((b) => b.type)];

export async function benchPrefill(log: (l: string) => void, T = 64, threads = 1, types: readonly string[] = PREFILL_TYPES, rounds = 11): Promise<Record<string, number>> {
  const I = 2048;
  const O = 10240;
  const own = await createWasmKernels({ threads, prefillMinTokens: Infinity });
  const pre = await createWasmKernels({ threads, prefillMinTokens: 1 });
  const out: Record<string, number> = {};
  try {
    let s = 2;
    const r = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 4294967296;
    const x = new Float32Array(T * I).map((_, i) => Math.sin(i));
    const y = new Float32Array(T * O);
    for (const type of types) {
      const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
      randomBlocks(type, bytes, r, scaleForRms(type, 1 / Math.sqrt(I)));
      const w = new MemoryLinear(type, I, O, { kind: 'ggml', type }, bytes);
      own.prepare(w);
      pre.prepare(w);
      for (let i = 0; i < 3; i++) {
        own.matmul(y, x, T, w);
        pre.matmul(y, x, T, w);
      }
      const best = [Infinity, Infinity];
      for (let i = 0; i < rounds; i++) {
        for (const k of i % 2 ? [1, 0] : [0, 1]) {
          const t0 = process.hrtime.bigint();
          (k ? pre : own).matmul(y, x, T, w);
          best[k] = Math.min(best[k]!, Number(process.hrtime.bigint() - t0) / 1e9);
        }
      }
      const gmac = (sec: number) => (T * I * O) / sec / 1e9;
      out[`${type}_own_gmacs_T${T}_t${threads}`] = gmac(best[0]!);
      out[`${type}_prefill_gmacs_T${T}_t${threads}`] = gmac(best[1]!);
      out[`${type}_speedup_T${T}_t${threads}`] = best[0]! / best[1]!;
      log(`${type.padEnd(8)} T=${T} threads ${threads}: own ${gmac(best[0]!).toFixed(1)} GMAC/s, prefill ${gmac(best[1]!).toFixed(1)} GMAC/s: ${(best[0]! / best[1]!).toFixed(2)}×`);
    }
  } finally {
    await own.close();
    await pre.close();
  }
  return out;
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  const [T = '64', threads = '1', types, rounds = '11'] = process.argv.slice(2);
  const r = await benchPrefill((l) => console.log(l), Number(T), Number(threads), types ? types.split(',') : PREFILL_TYPES, Number(rounds));
  console.log(JSON.stringify(r));
}
