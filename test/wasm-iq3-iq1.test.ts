/**
 * What the shared conformance test (wasm-block-formats.test.ts) leaves out for IQ3_XXS, IQ3_S,
 * IQ1_S and IQ1_M (src/backend/wasm/formats/iq3-iq1.ts): every sequence of token groups (the
 * kernels take 4 tokens, then 2, then 1, per quad and tile), and the largest sums the i32
 * accumulators can meet (IQ3_XXS's bound, 2.015e9, is within 7 % of 2^31).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels } from '../src/backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { f32ToF16 } from '../src/tensor/dtype.js';
import { iqGrid } from '../src/tensor/iq-tables.js';
import { ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import { rng } from './shared.js';
import { activations, relErr } from './wasm-check.js';

const TYPES = ['iq3_xxs', 'iq3_s', 'iq1_s', 'iq1_m'] as const;
type Type = (typeof TYPES)[number];

/** O rows of I inputs: `fill(block)` writes each block's bytes (then the f16 scale where the type keeps one). */
function weight(type: Type, I: number, O: number, fill: (b: Uint8Array) => void): MemoryLinear {
  const size = ggmlType(type).typeSize;
  const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
  for (let at = 0; at < bytes.length; at += size) fill(bytes.subarray(at, at + size));
  return new MemoryLinear(`${type} ${I}x${O}`, I, O, { kind: 'ggml', type }, bytes);
}

/** Random codes, d in [0.002, 0.012] (IQ1_M: spread over the top nibbles of its scale words). */
function randomWeight(r: () => number, type: Type, I: number, O: number): MemoryLinear {
  return weight(type, I, O, (b) => {
    for (let i = 0; i < b.length; i++) b[i] = Math.floor(r() * 256);
    const d = f32ToF16(0.002 + 0.01 * r());
    if (type === 'iq1_m') for (let k = 0; k < 4; k++) b[49 + 2 * k] = (b[49 + 2 * k]! & 0x0f) | (((d >> (4 * k)) & 15) << 4);
    else [b[0], b[1]] = [d & 255, d >> 8];
  });
}

/** The grid entry with the largest Σ|value|. */
function largestEntry(name: 'iq3xxs' | 'iq3s' | 'iq1s', width: number): number {
  const g = iqGrid(name);
  let best = 0;
  let sum = -1;
  for (let e = 0; e < g.length / width; e++) {
    let s = 0;
    for (let j = 0; j < width; j++) s += Math.abs(g[e * width + j]!);
    if (s > sum) [best, sum] = [e, s];
  }
  return best;
}

/**
 * Every block at its largest magnitude, all signs and delta signs alike: the largest entry
 * everywhere, scale 15 (IQ3) or 7 (IQ1), no sign bits (IQ3), delta sign negative like the all −1
 * IQ1 entry. With x ≡ 1 every product has the same sign and the int16 activations are 32767.
 */
function extremeWeight(type: Type, I: number, O: number): MemoryLinear {
  const d = f32ToF16(0.01);
  return weight(type, I, O, (b) => {
    b.fill(0);
    [b[0], b[1]] = [d & 255, d >> 8];
    if (type === 'iq3_xxs') {
      b.fill(largestEntry('iq3xxs', 4), 2, 66);
      for (let ib = 0; ib < 8; ib++) b[69 + 4 * ib] = 0xf0; // scale 15 in the top nibble of each u32, sign codes 0
    } else if (type === 'iq3_s') {
      const e = largestEntry('iq3s', 4);
      b.fill(e & 255, 2, 66);
      b.fill(e >> 8 ? 0xff : 0, 66, 74);
      b.fill(0xff, 106, 110);
    } else if (type === 'iq1_s') {
      const e = largestEntry('iq1s', 8);
      b.fill(e & 255, 2, 34);
      for (let ib = 0; ib < 8; ib++) [b[34 + 2 * ib], b[35 + 2 * ib]] = [((e >> 8) * 0x249) & 255, 0xf0 | (((e >> 8) * 0x249) >> 8)];
    } else {
      const e = largestEntry('iq1s', 8);
      b.fill(e & 255, 0, 32);
      b.fill(((e >> 8) | 8) * 0x11, 32, 48);
      for (let k = 0; k < 4; k++) [b[48 + 2 * k], b[49 + 2 * k]] = [0xff, 0x0f | (((d >> (4 * k)) & 15) << 4)];
    }
  });
}

describe('wasm IQ3/IQ1 kernels', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  let k: WasmKernels;
  before(async () => {
    k = await createWasmKernels({ threads: 1, panelInputs: 256 });
  });
  after(async () => {
    await k.close();
  });
  for (const type of TYPES) {
    test(`${type}: token groups 4, 2, 1 in every combination (T = 3, 4, 6, 7, 11) match js`, () => {
      const I = 768;
      const O = 12;
      const w = randomWeight(rng(31 + type.length), type, I, O);
      for (const T of [3, 4, 6, 7, 11]) {
        const x = activations(rng(5 + T), T * I);
        const want = new Float32Array(T * O);
        const got = new Float32Array(T * O).fill(NaN);
        jsKernels.matmul(want, x, T, w);
        k.matmul(got, x, T, w);
        const e = relErr(got, want);
        assert.ok(e <= 1e-3, `T=${T}: relative error ${e.toExponential(2)}`);
      }
      assert.equal(k.stats.js.get(`matmul:${type}`), undefined);
    });

    test(`${type}: the largest sums (all entries at their largest, scales at their maximum) do not overflow`, () => {
      const I = 2048;
      const O = 4;
      const w = extremeWeight(type, I, O);
      for (const sign of [1, -1]) {
        const T = 5; // a group of 4 and a single token
        const x = new Float32Array(T * I).fill(sign);
        const want = new Float32Array(T * O);
        const got = new Float32Array(T * O);
        jsKernels.matmul(want, x, T, w);
        k.matmul(got, x, T, w);
        assert.ok(Math.abs(want[0]!) > 100, `the extreme weight is not extreme: ${want[0]}`);
        const e = relErr(got, want);
        assert.ok(e <= 1e-5, `x ≡ ${sign}: relative error ${e.toExponential(2)} (${got[0]} vs ${want[0]})`);
      }
    });
  }
});
