/**
 * Conformance of the wasm backend against the js oracle (jsKernels: exact dequantisation, f64
 * accumulation) on seeded random shapes, including awkward ones (odd sizes, inputs not a multiple
 * of the 16-wide chunk, a group length of 11, a single output row), for 1 and 2 threads.
 *
 * Error bound per format, as ‖y_wasm − y_js‖ / ‖y_js‖ over the whole output:
 * - dense f32 / bf16 / f16 weights (f32 activations, f32 accumulation): 1e-5
 * - int8-grouped, q8_0, q4_0, q4_k, q6_k (int16 activations, one scale per block of 16–256): 1e-3
 *   on these outlier-heavy inputs (2 % of values 20× larger: nearly every block holds one, and
 *   int16 rounding is ≤ 1/65534 of a block's largest |x|; typically ~1e-4, up to ~6e-4 with few
 *   outputs), and 3e-5 on well-spread activations at Grok width (tested separately)
 * - rmsNorm, rope, geluMul, attention: 1e-5 (f32 arithmetic, polynomial exp)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { AttentionArgs, Kernels } from '../src/backend/kernels.js';
import { jsKernels } from '../src/backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { buildKernelModule, relaxedSimdAvailable } from '../src/backend/wasm/kernels-wasm.js';
import { RESERVED, Runtime } from '../src/backend/wasm/runtime.js';
import { f32ToBf16, f32ToF16 } from '../src/tensor/dtype.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { quantizeGgml } from '../src/tensor/ggml-quantize.js';
import { MemoryLinear, type LinearFormat, type LinearWeight } from '../src/tensor/linear.js';
import { KvCache } from '../src/model/kv-cache.js';
import { makeConfig } from '../src/config.js';
import { FIXTURES, readJson, rng } from './shared.js';
import { activations, checkEndToEnd, ckptCase, ggufCase, relErr, type E2eCase } from './wasm-check.js';
import { UnsupportedError } from '../src/errors.js';



function u16Bytes(vals: number[]): Uint8Array {
  return new Uint8Array(new Uint16Array(vals).buffer);
}

function int8Grouped(r: () => number, I: number, O: number, G: number): LinearWeight {
  const q = new Uint8Array(I * O);
  for (let i = 0; i < q.length; i++) q[i] = (Math.floor(r() * 255) - 127) & 255;
  const scales = u16Bytes(Array.from({ length: G * O }, () => f32ToBf16(0.002 + 0.02 * r())));
  return new MemoryLinear(`i8g ${I}x${O}/${G}`, I, O, { kind: 'int8-grouped', groups: G }, q, scales);
}

function dense(r: () => number, I: number, O: number, dtype: 'f32' | 'bf16' | 'f16', order: 'in-major' | 'out-major'): LinearWeight {
  const v = Array.from({ length: I * O }, () => (r() - 0.5) * 0.2);
  const bytes =
    dtype === 'f32' ? new Uint8Array(new Float32Array(v).buffer) : u16Bytes(v.map((x) => (dtype === 'bf16' ? f32ToBf16(x) : f32ToF16(x))));
  return new MemoryLinear(`${dtype} ${order} ${I}x${O}`, I, O, { kind: 'dense', dtype, order }, bytes);
}

function ggml(r: () => number, I: number, O: number, type: string): LinearWeight {
  const rowBytes = ggmlRowBytes(type, I);
  const bytes = new Uint8Array(rowBytes * O);
  for (let o = 0; o < O; o++) {
    const row = new Float32Array(I);
    for (let i = 0; i < I; i++) row[i] = (r() - 0.5) * 0.1 * (1 + (o % 3));
    quantizeGgml(type, row, 0, bytes, o * rowBytes, I);
  }
  return new MemoryLinear(`${type} ${I}x${O}`, I, O, { kind: 'ggml', type }, bytes);
}

function checkMatmul(k: Kernels, w: LinearWeight, T: number, seed: number, tol: number): number {
  const r = rng(seed);
  const x = activations(r, T * w.inDim);
  const want = new Float32Array(T * w.outDim);
  const got = new Float32Array(T * w.outDim).fill(NaN);
  jsKernels.matmul(want, x, T, w);
  k.matmul(got, x, T, w);
  const e = relErr(got, want);
  assert.ok(e <= tol, `${w.name}, T=${T}: relative error ${e.toExponential(2)} > ${tol}`);
  return e;
}

const QUANT_TOL = 1e-3;
const FLOAT_TOL = 1e-5;

interface Case {
  readonly make: (r: () => number) => LinearWeight;
  readonly tol: number;
}

const CASES: Case[] = [
  { make: (r) => int8Grouped(r, 33, 7, 3), tol: QUANT_TOL },
  { make: (r) => int8Grouped(r, 768, 13, 8), tol: QUANT_TOL },
  { make: (r) => int8Grouped(r, 64, 1, 1), tol: QUANT_TOL },
  { make: (r) => int8Grouped(r, 1024, 96, 1), tol: QUANT_TOL },
  { make: (r) => int8Grouped(r, 600, 11, 2), tol: QUANT_TOL },
  // groups ≥ 1024 wide and not a multiple of the 256-block: the last block of each group is short
  { make: (r) => int8Grouped(r, 1100, 5, 1), tol: QUANT_TOL },
  { make: (r) => int8Grouped(r, 10928, 9, 8), tol: QUANT_TOL },
  { make: (r) => dense(r, 37, 9, 'f32', 'out-major'), tol: FLOAT_TOL },
  { make: (r) => dense(r, 64, 8, 'f32', 'in-major'), tol: FLOAT_TOL },
  { make: (r) => dense(r, 21, 5, 'bf16', 'out-major'), tol: FLOAT_TOL },
  { make: (r) => dense(r, 40, 6, 'f16', 'out-major'), tol: FLOAT_TOL },
  { make: (r) => dense(r, 19, 3, 'bf16', 'in-major'), tol: FLOAT_TOL },
  { make: (r) => ggml(r, 96, 7, 'q8_0'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 64, 130, 'q8_0'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 96, 7, 'q4_0'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 768, 7, 'q4_k'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 256, 9, 'q4_k'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 768, 7, 'q6_k'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 512, 66, 'q6_k'), tol: QUANT_TOL },
  { make: (r) => ggml(r, 64, 5, 'f16'), tol: FLOAT_TOL },
];

/** checkMatmul for every weight and row count, at its format's tolerance. */
function checkEach(k: Kernels, weights: readonly LinearWeight[], Ts: readonly number[], seed: number): void {
  weights.forEach((w, i) => {
    const tol = w.format.kind === 'dense' ? FLOAT_TOL : QUANT_TOL;
    for (const T of Ts) checkMatmul(k, w, T, seed + 5 * i + T, tol);
  });
}

function randomAttention(r: () => number, o: { T: number; start: number; H: number; Hkv: number; d: number; softcap: number; invalid: number[] }): AttentionArgs {
  const S = o.start + o.T + 3; // capacity beyond the used slots, as a real cache has
  const keyValid = new Uint8Array(S).fill(1);
  for (const j of o.invalid) keyValid[j] = 0;
  return {
    out: new Float32Array(o.T * o.H * o.d),
    q: activations(r, o.T * o.H * o.d),
    k: activations(r, S * o.Hkv * o.d),
    v: activations(r, S * o.Hkv * o.d),
    keyValid,
    T: o.T,
    start: o.start,
    numQHeads: o.H,
    numKvHeads: o.Hkv,
    headDim: o.d,
    scale: 1 / Math.sqrt(o.d),
    softcap: o.softcap,
  };
}

describe('wasm backend', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  for (const threads of [1, 2]) {
    describe(`${threads} thread(s)`, () => {
      let k: WasmKernels;
      before(async () => {
        k = await createWasmKernels({ threads });
      });
      after(async () => {
        await k.close();
      });

      test('matmul matches js for every implemented format (T = 1 and 5)', () => {
        CASES.forEach((c, i) => {
          const w = c.make(rng(100 + i));
          for (const T of [1, 5]) checkMatmul(k, w, T, 7 * i + T, c.tol);
        });
        assert.equal(k.stats.js.size, 0, `unexpected js fallbacks: ${[...k.stats.js.keys()].join(', ')}`);
      });

      test('matmulMany: each result bit-identical to its own matmul (shared staging, mixed formats, a js fallback, > one pool job of kernels)', async () => {
        const kj = await createWasmKernels({ threads, jsFormats: ['q6_k'] });
        try {
          const I = 512;
          const ws = [
            ggml(rng(70), I, 256, 'q8_0'), // q-sized
            ggml(rng(71), I, 64, 'q8_0'), // k- and v-sized
            ggml(rng(72), I, 64, 'q8_0'),
            ggml(rng(73), I, 40, 'q4_k'), // another staging form in the same call
            int8Grouped(rng(74), I, 33, 2),
            dense(rng(75), I, 9, 'f32', 'out-major'),
            ggml(rng(76), I, 24, 'q6_k'), // js fallback (jsFormats)
            ...Array.from({ length: 6 }, (_, i) => ggml(rng(80 + i), I, 16 + 8 * i, 'q8_0')), // 9 q8_0 kernels: more than one pool job holds
          ];
          for (const T of [1, 3, 40]) {
            const x = activations(rng(90 + T), T * I);
            const outs = ws.map((w) => new Float32Array(T * w.outDim).fill(NaN));
            kj.matmulMany(outs, x, T, ws);
            ws.forEach((w, i) => {
              const one = new Float32Array(T * w.outDim);
              kj.matmul(one, x, T, w);
              assert.deepEqual(outs[i], one, `${w.name}, T = ${T}`);
              const want = new Float32Array(T * w.outDim);
              jsKernels.matmul(want, x, T, w);
              assert.ok(relErr(outs[i]!, want) < QUANT_TOL, `${w.name}, T = ${T}: error ${relErr(outs[i]!, want)}`);
            });
          }
          assert.equal(kj.stats.js.get('matmul:q6_k'), 6);
          assert.throws(() => kj.matmulMany([new Float32Array(256)], new Float32Array(I), 1, [ws[0]!, ws[1]!]), /2 weights but 1 outputs/);
          assert.throws(() => kj.matmulMany([new Float32Array(256), new Float32Array(16)], new Float32Array(I), 1, [ws[0]!, ggml(rng(99), 256, 16, 'q8_0')]), /takes 256 inputs/);
        } finally {
          await kj.close();
        }
      });

      test('without outliers the int16 activations cost ≤ 3e-5 on a Grok-sized row (in = 6144, groups 8)', () => {
        const w = int8Grouped(rng(5), 6144, 64, 8);
        const r = rng(11);
        const x = Float32Array.from({ length: 3 * 6144 }, () => r() - 0.5);
        const want = new Float32Array(3 * 64);
        const got = new Float32Array(3 * 64);
        jsKernels.matmul(want, x, 3, w);
        k.matmul(got, x, 3, w);
        assert.ok(relErr(got, want) < 3e-5, `error ${relErr(got, want)}`);
      });

      test('prefill-sized T uses the same kernels', () => {
        checkMatmul(k, ggml(rng(9), 256, 24, 'q8_0'), 67, 12, QUANT_TOL);
        checkMatmul(k, int8Grouped(rng(10), 128, 20, 2), 67, 13, QUANT_TOL);
      });

      test('batched T: the token-pair paths of every kernel match js (T = 2, 16, 17)', () => {
        const weights = [
          int8Grouped(rng(20), 1100, 9, 1),
          ggml(rng(21), 96, 13, 'q8_0'),
          ggml(rng(22), 512, 6, 'q4_k'),
          ggml(rng(23), 512, 6, 'q6_k'),
          dense(rng(24), 37, 9, 'f32', 'out-major'),
          dense(rng(25), 21, 6, 'bf16', 'in-major'),
          dense(rng(26), 40, 5, 'f16', 'out-major'),
        ];
        checkEach(k, weights, [2, 16, 17], 40);
      });

      test('column panels: weights several panels wide, the last one short, match js (T = 1, 2, 5, 17)', async () => {
        for (const panelInputs of [256, 512]) {
          const kp = await createWasmKernels({ threads, panelInputs });
          try {
            const weights = [
              int8Grouped(rng(58), 1100, 9, 1), // 256-blocks, a short last panel and block
              int8Grouped(rng(59), 1536, 7, 2), // 768-wide groups of 16-blocks, 3 panels each at 256
              ggml(rng(60), 608, 9, 'q8_0'),
              ggml(rng(61), 608, 7, 'q4_0'),
              ggml(rng(62), 1280, 6, 'q4_k'),
              ggml(rng(63), 1280, 5, 'q6_k'),
              dense(rng(64), 600, 7, 'f32', 'out-major'),
              dense(rng(65), 530, 6, 'bf16', 'out-major'),
              dense(rng(66), 1000, 5, 'f16', 'out-major'),
            ];
            checkEach(kp, weights, [1, 2, 5, 17], 90);
            assert.equal(kp.stats.js.size, 0);
          } finally {
            await kp.close();
          }
        }
      });

      test('attention reads a KV cache from allocFloats in place, and matches js (d 32 and 128; d 24 is copied)', () => {
        for (const [d, T, start, H, Hkv] of [[32, 1, 9, 4, 2], [128, 5, 3, 4, 1], [128, 1, 0, 2, 2], [24, 3, 4, 2, 1]] as const) {
          const want = randomAttention(rng(d + T), { T, start, H, Hkv, d, softcap: 30, invalid: [1] });
          const k2 = k.allocFloats(want.k.length);
          const v2 = k.allocFloats(want.v.length);
          k2.set(want.k);
          v2.set(want.v);
          const got = { ...want, out: new Float32Array(want.out.length), k: k2, v: v2 };
          const before = k.stats.wasm.get('attention:kv-in-place') ?? 0;
          jsKernels.attention(want);
          k.attention(got);
          assert.ok(relErr(got.out, want.out) <= FLOAT_TOL, `d=${d} T=${T}: ${relErr(got.out, want.out)}`);
          assert.equal((k.stats.wasm.get('attention:kv-in-place') ?? 0) - before, d % 16 === 0 ? 1 : 0, `in place for d=${d}`);
          k.freeFloats(k2);
          k.freeFloats(v2);
        }
      });

      test('allocFloats: zero-filled views, freed blocks reused and coalesced, a KV cache returns all it took', () => {
        const base = k.arenaBytes;
        const a = k.allocFloats(1000);
        const b = k.allocFloats(1000);
        assert.equal(k.arenaBytes - base, 2 * 4032); // 4000 bytes rounded up to 64
        a.fill(7);
        k.freeFloats(a);
        k.freeFloats(a); // a second free is ignored
        const c = k.allocFloats(500); // first fit: into a's block
        assert.equal(c.byteOffset, a.byteOffset);
        assert.ok(c.every((x) => x === 0), 'reused storage is zero-filled');
        k.freeFloats(c);
        k.freeFloats(b);
        const d = k.allocFloats(2000); // a's and b's blocks, coalesced, hold 8000 bytes
        assert.equal(d.byteOffset, a.byteOffset);
        k.freeFloats(d);
        assert.equal(k.arenaBytes, base);

        const config = makeConfig({ embSize: 32, numQHeads: 4, numKvHeads: 2, keySize: 16, numLayers: 3, ffnSize: 64, vocabSize: 40, sequenceLen: 256, numExperts: 2, numSelectedExperts: 1 });
        const cache = new KvCache(config, 4, k);
        cache.reserve(3);
        cache.k[1]![5] = 1.5;
        cache.length = 3;
        cache.reserve(20); // grows: contents kept, old arrays returned
        assert.equal(cache.k[1]![5], 1.5);
        assert.equal(k.arenaBytes - base, 3 * 2 * 23 * 32 * 4); // 3 layers × K, V × (3 + 20) slots × Hkv·d floats
        cache.free();
        assert.equal(k.arenaBytes, base);
      });

      test('a format without a wasm kernel falls back to js and is recorded', async () => {
        // Every ggml block type has a wasm kernel now, so the fallback is taken on request
        // (jsFormats): planFor is then not asked, the call runs the js kernel (bit-identical
        // result) and is counted as a fallback.
        const kj = await createWasmKernels({ threads, jsFormats: ['q5_0'] });
        try {
          const r = rng(3);
          const I = 64;
          const bytes = new Uint8Array(ggmlRowBytes('q5_0', I) * 3);
          for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(r() * 256);
          for (let b = 0; b < bytes.length; b += 22) bytes.set(u16Bytes([f32ToF16(0.01)]), b); // sane block scales
          const w = new MemoryLinear('q5_0 64x3', I, 3, { kind: 'ggml', type: 'q5_0' } satisfies LinearFormat, bytes);
          assert.equal(kj.prepare(w), false);
          checkMatmul(kj, w, 2, 1, 1e-12);
          assert.equal(kj.stats.js.get('matmul:q5_0'), 1);
          assert.equal(kj.stats.wasm.get('matmul:q5_0'), undefined);
          assert.equal(k.prepare(w), true, 'q5_0 has a wasm kernel otherwise');
        } finally {
          await kj.close();
        }
      });

      test('rmsNorm matches js (odd and aligned widths, in place)', () => {
        for (const [T, D] of [[3, 37], [2, 64], [1, 6144]] as const) {
          const r = rng(T * D);
          const x = activations(r, T * D);
          const scale = activations(r, D);
          const want = new Float32Array(T * D);
          jsKernels.rmsNorm(want, x, T, D, scale, 1e-5);
          const got = Float32Array.from(x);
          k.rmsNorm(got, got, T, D, scale, 1e-5);
          assert.ok(relErr(got, want) <= FLOAT_TOL, `rmsNorm T=${T} D=${D}: ${relErr(got, want)}`);
        }
      });

      test('rope matches js (head sizes 6 and 128, arbitrary positions)', () => {
        for (const [T, heads, hd] of [[4, 3, 6], [2, 5, 128]] as const) {
          const r = rng(hd);
          const x = activations(r, T * heads * hd);
          const pos = Int32Array.from({ length: T }, (_, i) => 3 + 17 * i);
          const want = Float32Array.from(x);
          jsKernels.rope(want, T, heads, hd, pos, 10000);
          const got = Float32Array.from(x);
          k.rope(got, T, heads, hd, pos, 10000);
          assert.ok(relErr(got, want) <= FLOAT_TOL, `rope hd=${hd}: ${relErr(got, want)}`);
        }
      });

      test('geluMul matches js over the whole range, including large |x|', () => {
        const n = 1001;
        const r = rng(8);
        const g = Float32Array.from({ length: n }, (_, i) => (i < 20 ? (i - 10) * 3 : (r() - 0.5) * 20));
        const u = activations(r, n);
        const want = Float32Array.from(g);
        jsKernels.geluMul(want, u, n);
        const got = Float32Array.from(g);
        k.geluMul(got, u, n);
        for (let i = 0; i < n; i++) {
          assert.ok(Math.abs(got[i]! - want[i]!) <= 1e-5 * (Math.abs(want[i]!) + Math.abs(u[i]!) * 1e-2), `gelu at ${g[i]}: ${got[i]} vs ${want[i]}`);
        }
      });

      test('attention matches js (GQA, soft cap on/off, masked keys, padding of the head size)', () => {
        const cases = [
          { T: 1, start: 9, H: 6, Hkv: 2, d: 20, softcap: 30, invalid: [0, 4] },
          { T: 5, start: 3, H: 4, Hkv: 4, d: 128, softcap: 0, invalid: [2] },
          { T: 7, start: 0, H: 8, Hkv: 1, d: 16, softcap: 30, invalid: [] },
          // the first key is masked: query 0 sees nothing and averages all slots, as the oracle does
          { T: 3, start: 0, H: 2, Hkv: 1, d: 32, softcap: 30, invalid: [0] },
        ];
        cases.forEach((c, i) => {
          const a = randomAttention(rng(40 + i), c);
          const want = new Float32Array(a.out.length);
          jsKernels.attention({ ...a, out: want });
          k.attention(a);
          assert.ok(relErr(a.out, want) <= FLOAT_TOL, `attention case ${i}: ${relErr(a.out, want)}`);
        });
      });
    });
  }

  test('weights larger than a shard are split across memories; many shards; T in chunks', async () => {
    // 512 KiB shards with a 64 KiB staging area: a 614 KB weight spans two memories, the next
    // weight opens a third, and the staging area holds only a few tokens of in = 4096, so T = 9
    // runs in chunks.
    const k = await createWasmKernels({ threads: 2, shardBytes: 8 * 65536, stageBytes: 65536 });
    try {
      const big = int8Grouped(rng(1), 4096, 150, 2);
      const small = ggml(rng(2), 256, 40, 'q4_k');
      checkMatmul(k, big, 9, 3, QUANT_TOL);
      checkMatmul(k, small, 2, 4, QUANT_TOL);
      checkMatmul(k, big, 1, 5, QUANT_TOL);
      // Q8_0 packs units of 8 rows: an 870 KB weight is split across shards at unit boundaries
      const q8 = ggml(rng(3), 4096, 203, 'q8_0');
      checkMatmul(k, q8, 3, 6, QUANT_TOL);
      checkMatmul(k, q8, 1, 7, QUANT_TOL);
      // several weights in one call: one group per shard and staging form, T in chunks
      for (const T of [1, 9]) {
        const x = activations(rng(8 + T), T * 4096);
        const ws = [big, q8, big];
        const outs = ws.map((w) => new Float32Array(T * w.outDim));
        k.matmulMany(outs, x, T, ws);
        ws.forEach((w, i) => {
          const one = new Float32Array(T * w.outDim);
          k.matmul(one, x, T, w);
          assert.deepEqual(outs[i], one, `${w.name}, T = ${T}`);
        });
      }
      assert.ok(k.weightShards >= 4, `only ${k.weightShards} shards`);
      // KV storage comes from shards of its own; a block larger than a shard is a typed error
      const kv = k.allocFloats(1000);
      assert.equal(kv.length, 1000);
      k.freeFloats(kv);
      assert.throws(() => k.allocFloats(1 << 20), (e: unknown) => e instanceof UnsupportedError && /does not fit a memory shard/.test(e.message));
    } finally {
      await k.close();
    }
  });

  test('relaxed SIMD: the Q4_0 i8-dot kernel matches js where the runtime has it, and the fallback matches too', () => {
    // Node 20 validates relaxed SIMD only behind a flag, so the relaxed path runs in a child
    // process started with it; this process (no flag) covers the fallback in the tests above.
    const url = new URL('../src/backend/wasm/index.js', import.meta.url).href;
    const code = `
      import { createWasmKernels } from ${JSON.stringify(url)};
      import { jsKernels } from ${JSON.stringify(new URL('../src/backend/js/kernels.js', import.meta.url).href)};
      import { MemoryLinear } from ${JSON.stringify(new URL('../src/tensor/linear.js', import.meta.url).href)};
      import { quantizeGgml } from ${JSON.stringify(new URL('../src/tensor/ggml-quantize.js', import.meta.url).href)};
      let s = 7; const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const res = {};
      for (const relaxed of [true, false]) {
        const k = await createWasmKernels({ threads: 2, relaxed });
        const errs = [];
        for (const [I, O, T] of [[96, 7, 1], [256, 13, 5], [1024, 66, 3]]) {
          const bytes = new Uint8Array(I / 32 * 18 * O);
          for (let o = 0; o < O; o++) quantizeGgml('q4_0', Float32Array.from({ length: I }, () => r() - 0.5), 0, bytes, o * I / 32 * 18, I);
          const w = new MemoryLinear('q4_0', I, O, { kind: 'ggml', type: 'q4_0' }, bytes);
          const x = Float32Array.from({ length: T * I }, () => (r() - 0.5) * (r() < 0.02 ? 40 : 2));
          const a = new Float32Array(T * O), b = new Float32Array(T * O);
          jsKernels.matmul(a, x, T, w); k.matmul(b, x, T, w);
          let num = 0, den = 0; for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += a[i] ** 2; }
          errs.push(Math.sqrt(num / den));
        }
        res[relaxed ? 'relaxed' : 'fallback'] = { used: k.relaxed, errs };
        await k.close();
      }
      console.log(JSON.stringify(res));`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-relaxed-'));
    const script = path.join(dir, 'relaxed.mjs');
    fs.writeFileSync(script, code);
    const r = spawnSync(process.execPath, ['--experimental-wasm-relaxed-simd', script], { encoding: 'utf8', timeout: 30000 });
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    const res = JSON.parse(r.stdout.trim()) as Record<'relaxed' | 'fallback', { used: boolean; errs: number[] }>;
    assert.equal(res.relaxed.used, true);
    assert.equal(res.fallback.used, false);
    // 15-bit activations for the relaxed path: twice the int16 rounding step, same bound (blocks of 32)
    for (const e of [...res.relaxed.errs, ...res.fallback.errs]) assert.ok(e <= QUANT_TOL, `error ${e}`);
  });

  test('relaxed: true on a runtime without relaxed SIMD is refused', async () => {
    if (relaxedSimdAvailable()) return assert.ok(true);
    await assert.rejects(createWasmKernels({ relaxed: true }), /relaxed SIMD/);
  });

  test('a trap inside a worker comes back as an error on the main thread, and the pool stays usable', async () => {
    const rt = await Runtime.create(buildKernelModule({ relaxed: false, maxPages: 64 }), { threads: 2, shardBytes: 64 * 65536, stageBytes: 65536 });
    try {
      // the work memory is one 64 KiB page: units of 64 KiB from its end are out of bounds on every thread
      assert.throws(() => rt.exec(rt.work, 'read_sum', [RESERVED, 65536, 0], 4, true), /out of bounds/);
      rt.exec(rt.work, 'read_sum', [1024, 16, 0], 2, true); // in bounds: works again
    } finally {
      await rt.close();
    }
  });

  test('thread count is validated', async () => {
    await assert.rejects(createWasmKernels({ threads: 0 }), /threads/);
  });

  test('the pool leaves no handle open: a process that forgets close() still exits', () => {
    const url = new URL('../src/backend/wasm/index.js', import.meta.url).href;
    const code = `const m = await import(${JSON.stringify(url)}); const k = await m.createWasmKernels({ threads: 2 }); ` +
      `const x = new Float32Array(4); k.geluMul(x, x, 4); console.log('done');`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-wasm-'));
    const script = path.join(dir, 'forget-close.mjs');
    fs.writeFileSync(script, code);
    const r = spawnSync(process.execPath, [script], { encoding: 'utf8', timeout: 20000 });
    fs.rmSync(dir, { recursive: true, force: true });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), 'done');
  });
});

// ---------------------------------------------------------------------------------------------
// end to end: the same model code on both backends







describe('wasm backend end to end against the exact js path', { skip: (!wasmAvailable() && 'no SIMD128 in this runtime') || FIXTURES.skip }, () => {
  let k: WasmKernels;
  before(async () => {
    k = await createWasmKernels({ threads: 2 });
  });
  after(async () => {
    await k.close();
  });

  const tiny = readJson<{ prompt_ids: number[]; greedy_ids: number[] }>('fixtures', 'tiny', 'expected.json');
  const fortune = readJson<{ samples: { prompt_ids: number[]; greedy: { ids: number[] } }[] }>('demo', 'fortune', 'samples.json').samples[0]!;
  const cases: E2eCase[] = [
    ckptCase('tiny (official int8 layout)', ['fixtures', 'tiny'], tiny.prompt_ids, tiny.greedy_ids),
    ckptCase('fortune demo (trained, 131072-token f32 embedding)', ['demo', 'fortune'], fortune.prompt_ids, fortune.greedy.ids.slice(0, 12)),
    ggufCase('mini-q8_0.gguf'),
    ggufCase('mini-q4_0.gguf'),
    ggufCase('mini-q4_k_m.gguf'),
    ggufCase('mini-q6_k.gguf'),
    ggufCase('tiny-f32.gguf'),
  ];

  for (const c of cases) {
    test(`${c.name}: logits cosine ≥ 0.9999 at every position, identical greedy ids`, () => {
      const files = c.open();
      try {
        checkEndToEnd(k, files.weights, c);
      } finally {
        files.close();
      }
    });
  }

  test('the official int8 weights ran in wasm, not in the js fallback', () => {
    assert.ok((k.stats.wasm.get('matmul:int8-grouped') ?? 0) > 0);
    assert.equal(k.stats.js.get('matmul:int8-grouped'), undefined);
  });
});
