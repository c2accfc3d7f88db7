/**
 * The prefill kernels (src/backend/wasm/decoded.ts: each quad decoded once per token tile) give
 * bit for bit what each format's own kernel gives token by token: random blocks of every format
 * that has one, awkward shapes (1, 7, 66 rows; 1 to 5 column panels), T from 2 to 400 (token
 * groups 4, 2, 1 and, at 400, two token tiles), 1 and 2 threads; and the worst cases (every code
 * and scale at an extreme, activations all ±max), where an i32 sum would show an overflow.
 * (Against the js oracle they are held by test/wasm-block-formats.test.ts, whose T = 17 runs them.)
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { BLOCK_FORMATS } from '../src/backend/wasm/formats/index.js';
import { ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';
import { f32ToF16 } from '../src/tensor/dtype.js';
import { MemoryLinear, type LinearWeight } from '../src/tensor/linear.js';
import { randomBlocks } from '../bench/random-blocks.js';
import { rng } from './shared.js';
import { activations } from './wasm-check.js';

/** Every format with a prefill kernel (Q4_K's lives beside its kernel in kernels-wasm.ts). */
const TYPES = ['q4_k', ...BLOCK_FORMATS.filter((b) => b.prefill).map((b) => b.type)];

/** Byte offsets of the f16 scales in a stored block (set finite in the worst-case weights); IQ1_M's d is spread over its scales' top nibbles. */
const F16_AT: Record<string, readonly number[]> = {
  q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208],
  iq4_xs: [0], iq3_xxs: [0], iq3_s: [0], iq2_xxs: [0], iq2_xs: [0], iq2_s: [0], iq1_s: [0], iq1_m: [],
};

/** Every byte `fill`, scales finite (d = 0.01, a second f16 −0.02; IQ1_M's d = 1/64). */
function extremeWeight(type: string, I: number, O: number, fill: number): LinearWeight {
  const bytes = new Uint8Array(ggmlRowBytes(type, I) * O).fill(fill);
  const size = ggmlType(type).typeSize;
  for (let b = 0; b < bytes.length; b += size) {
    F16_AT[type]!.forEach((o, i) => {
      const h = f32ToF16(i === 0 ? 0.01 : -0.02);
      bytes[b + o] = h & 255;
      bytes[b + o + 1] = h >> 8;
    });
    if (type === 'iq1_m') {
      // d = 0x2400 (1/64) from the top nibbles of the 4 u16 scales (s0: bits 0-3 of d, …, s3: 12-15)
      [0x0, 0x0, 0x4, 0x2].forEach((nib, k) => {
        bytes[b + 49 + 2 * k] = (bytes[b + 49 + 2 * k]! & 0x0f) | (nib << 4);
      });
    }
  }
  return new MemoryLinear(`${type} ${I}x${O} 0x${fill.toString(16)}`, I, O, { kind: 'ggml', type }, bytes);
}

function assertSameBits(got: Float32Array, want: Float32Array, what: string): void {
  for (let i = 0; i < want.length; i++) {
    assert.ok(Number.isFinite(want[i]!), `${what}: non-finite output at ${i}`);
    if (!Object.is(got[i], want[i])) assert.fail(`${what}: output ${i} is ${got[i]}, the per-token kernel gives ${want[i]}`);
  }
}

describe('prefill kernels: bit for bit the formats\' own kernels', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  for (const threads of [1, 2]) {
    describe(`${threads} thread(s)`, () => {
      let own: WasmKernels;
      let pre: WasmKernels;
      before(async () => {
        // panels of 256 inputs (so 768 and 1280 inputs span 3 and 5); 2 tokens are enough for the prefill kernels here
        own = await createWasmKernels({ threads, panelInputs: 256, prefillMinTokens: Infinity });
        pre = await createWasmKernels({ threads, panelInputs: 256, prefillMinTokens: 2 });
      });
      after(async () => {
        await own.close();
        await pre.close();
      });
      for (const type of TYPES) {
        test(`${type}: random blocks, rows 1, 7, 66, T = 2 … 400`, () => {
          const shapes: [number, number, readonly number[]][] = [[256, 1, [2, 3, 5, 17]], [768, 7, [2, 7, 33]], [1280, 66, [9, 17, 400]]];
          shapes.forEach(([I, O, Ts], si) => {
            const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
            randomBlocks(type, bytes, rng(31 * si + type.length), 0.006);
            const w = new MemoryLinear(`${type} ${I}x${O}`, I, O, { kind: 'ggml', type }, bytes);
            for (const T of Ts) {
              const x = activations(rng(5 + T + si), T * I);
              const want = new Float32Array(T * O);
              const got = new Float32Array(T * O).fill(NaN);
              own.matmul(want, x, T, w);
              pre.matmul(got, x, T, w);
              assertSameBits(got, want, `${w.name}, T = ${T}`);
            }
          });
          assert.equal(own.stats.js.get(`matmul:${type}`), undefined);
          assert.equal(pre.stats.js.get(`matmul:${type}`), undefined);
        });
      }
    });
  }

  test('worst cases: extreme codes and scales against activations all ±max', async () => {
    const own = await createWasmKernels({ threads: 1, prefillMinTokens: Infinity });
    const pre = await createWasmKernels({ threads: 1, prefillMinTokens: 2 });
    try {
      const I = 2048;
      const O = 8;
      const T = 7; // token groups of 4, 2 and 1
      for (const type of TYPES) {
        for (const fill of [0x00, 0xff, 0x55]) {
          const w = extremeWeight(type, I, O, fill);
          for (const sign of [1, -1]) {
            const x = new Float32Array(T * I).map((_, i) => (i % I === 0 && i / I === T - 1 ? -sign : sign));
            const want = new Float32Array(T * O);
            const got = new Float32Array(T * O);
            own.matmul(want, x, T, w);
            pre.matmul(got, x, T, w);
            assertSameBits(got, want, `${w.name}, x = ${sign}`);
          }
        }
      }
    } finally {
      await own.close();
      await pre.close();
    }
  });

  test('the threshold: fewer tokens than prefillMinTokens run the own kernel, as many the prefill kernel (same results)', async () => {
    await assert.rejects(createWasmKernels({ threads: 1, prefillMinTokens: 0 }), /prefillMinTokens/);
    const k = await createWasmKernels({ threads: 1 });
    try {
      const I = 512;
      const O = 12;
      const bytes = new Uint8Array(ggmlRowBytes('iq2_xs', I) * O);
      randomBlocks('iq2_xs', bytes, rng(3), 0.006);
      const w = new MemoryLinear('iq2_xs', I, O, { kind: 'ggml', type: 'iq2_xs' }, bytes);
      const T = 16;
      const x = activations(rng(4), T * I);
      const all = new Float32Array(T * O);
      k.matmul(all, x, T, w);
      for (let t = 0; t < T; t++) {
        const one = new Float32Array(O);
        k.matmul(one, x.subarray(t * I, (t + 1) * I), 1, w);
        assertSameBits(all.subarray(t * O, (t + 1) * O), one, `token ${t}`);
      }
    } finally {
      await k.close();
    }
  });
});
