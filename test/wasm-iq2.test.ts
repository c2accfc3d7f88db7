/**
 * The IQ2 kernels (src/backend/wasm/formats/iq2.ts) beyond the shared conformance test: the
 * worst case of their i32 sums (every grid value the largest entry's, every scale 15, every
 * activation at ±32767, so a 32-value IQ2_XXS group reaches 32·43·32767·31 = 1.4e9 < 2^31), and
 * the error on well-spread activations at Grok width (6144 inputs).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels } from '../src/backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { f32ToF16 } from '../src/tensor/dtype.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { iqGrid } from '../src/tensor/iq-tables.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import { rng } from './shared.js';
import { relErr } from './wasm-check.js';

/** O rows of I inputs of `type`: random codes, f16 d (at byte 0 of each block) in [0.002, 0.012). */
function randomBlocks(r: () => number, type: 'iq2_xxs' | 'iq2_xs' | 'iq2_s', I: number, O: number): MemoryLinear {
  const bytes = Uint8Array.from({ length: ggmlRowBytes(type, I) * O }, () => Math.floor(r() * 256));
  const blockBytes = { iq2_xxs: 66, iq2_xs: 74, iq2_s: 82 }[type];
  for (let b = 0; b < bytes.length; b += blockBytes) {
    const d = f32ToF16(0.002 + 0.01 * r());
    bytes[b] = d & 255;
    bytes[b + 1] = d >> 8;
  }
  return new MemoryLinear(`${type} ${I}x${O}`, I, O, { kind: 'ggml', type }, bytes);
}

/** The grid entry with the largest sum of values (all 8 values positive). */
function largestEntry(name: 'iq2xxs' | 'iq2xs' | 'iq2s'): number {
  const g = iqGrid(name);
  let best = 0;
  let bestSum = -1;
  for (let i = 0; i < g.length / 8; i++) {
    let s = 0;
    for (let j = 0; j < 8; j++) s += g[8 * i + j]!;
    if (s > bestSum) [best, bestSum] = [i, s];
  }
  return best;
}

/** O rows of I inputs whose every 8 values are grid entry `idx` with positive signs, every scale 15, d = 0.01. */
function worstCase(type: 'iq2_xxs' | 'iq2_xs' | 'iq2_s', I: number, O: number): MemoryLinear {
  const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
  const d = f32ToF16(0.01);
  const blockBytes = { iq2_xxs: 66, iq2_xs: 74, iq2_s: 82 }[type];
  const idx = largestEntry(({ iq2_xxs: 'iq2xxs', iq2_xs: 'iq2xs', iq2_s: 'iq2s' } as const)[type]);
  for (let b = 0; b < bytes.length; b += blockBytes) {
    bytes[b] = d & 255;
    bytes[b + 1] = d >> 8;
    if (type === 'iq2_xxs') {
      // per 32 values: 4 index bytes, then a u32 of 4 sign codes (0: all positive) and the scale
      for (let ib = 0; ib < 8; ib++) {
        bytes.fill(idx, b + 2 + 8 * ib, b + 6 + 8 * ib);
        bytes[b + 9 + 8 * ib] = 15 << 4;
      }
    } else if (type === 'iq2_xs') {
      for (let k = 0; k < 32; k++) {
        bytes[b + 2 + 2 * k] = idx & 255;
        bytes[b + 3 + 2 * k] = idx >> 8;
      }
      bytes.fill(0xff, b + 66, b + 74);
    } else {
      bytes.fill(idx & 255, b + 2, b + 34);
      bytes.fill(0x55 * (idx >> 8), b + 66, b + 74);
      bytes.fill(0xff, b + 74, b + 82);
    }
  }
  return new MemoryLinear(`${type} worst case`, I, O, { kind: 'ggml', type }, bytes);
}

describe('wasm IQ2 kernels', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  let k: WasmKernels;
  before(async () => {
    k = await createWasmKernels({ threads: 1, panelInputs: 1024 });
  });
  after(async () => {
    await k.close();
  });
  for (const type of ['iq2_xxs', 'iq2_xs', 'iq2_s'] as const) {
    test(`${type}: the largest i32 sums do not overflow (1, 2 and 4 tokens at once)`, () => {
      const I = 2048;
      const O = 8;
      const w = worstCase(type, I, O);
      for (const sign of [1, -1]) {
        const T = 7; // 4 tokens, a pair, then a single token (the kernel's three paths)
        const x = new Float32Array(T * I).fill(sign);
        const want = new Float32Array(T * O);
        const got = new Float32Array(T * O);
        jsKernels.matmul(want, x, T, w);
        k.matmul(got, x, T, w);
        assert.ok(relErr(got, want) < 1e-6, `${type}, x = ${sign}: ${relErr(got, want)}`);
      }
    });
    test(`${type}: error ≤ 3e-5 on well-spread activations at Grok width`, () => {
      const I = 6144;
      const O = 32;
      const w = randomBlocks(rng(7), type, I, O);
      const r = rng(8);
      const T = 7;
      const x = Float32Array.from({ length: T * I }, () => (r() + r() + r() + r() - 2) * 1.7);
      const want = new Float32Array(T * O);
      const got = new Float32Array(T * O);
      jsKernels.matmul(want, x, T, w);
      k.matmul(got, x, T, w);
      const e = relErr(got, want);
      assert.ok(e <= 3e-5, `${type}: relative error ${e.toExponential(2)}`);
    });
  }
});
