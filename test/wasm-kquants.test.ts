/**
 * Q2_K, Q3_K, Q5_K wasm kernels (src/backend/wasm/formats/kquants.ts) beyond the conformance test
 * (wasm-block-formats.test.ts, tolerance 1e-3 from the int16 activation rounding):
 * - with integer activations whose every activation block holds ±32767, quant_x is exact, so the
 *   kernel must match the js oracle to f32 rounding: this checks every packed bit and every token
 *   group (T = 1..9: fours, a pair, one), panel and partial quad tightly;
 * - the worst cases of the stated i32 bounds (largest codes, scales and mins against activations
 *   of ±32767) come out right, i.e. nothing wraps.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { jsKernels } from '../src/backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { KQUANT_FORMATS } from '../src/backend/wasm/formats/kquants.js';
import { f32ToF16 } from '../src/tensor/dtype.js';
import { ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import { rng } from './shared.js';
import { relErr } from './wasm-check.js';

const TYPES = ['q2_k', 'q3_k', 'q5_k'] as const;
type KType = (typeof TYPES)[number];

/** Offsets of the f16 scales in a block of each type. */
const F16_AT: Record<KType, readonly number[]> = { q2_k: [80, 82], q3_k: [108], q5_k: [0, 2] };

/** O rows of I inputs: every byte from `byte(i)` except the f16 scales, which are `d`. */
function blocks(type: KType, I: number, O: number, byte: (i: number) => number, d: (b: number) => number): MemoryLinear {
  const size = ggmlType(type).typeSize;
  const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
  for (let i = 0; i < bytes.length; i++) bytes[i] = byte(i) & 255;
  for (let b = 0; b < bytes.length; b += size) {
    for (const o of F16_AT[type]) {
      const h = f32ToF16(d(b));
      bytes[b + o] = h & 255;
      bytes[b + o + 1] = h >> 8;
    }
  }
  return new MemoryLinear(`${type} ${I}x${O}`, I, O, { kind: 'ggml', type }, bytes);
}

/** Integer activations in ±32767 with ±32767 at the start of every 32 inputs: quant_x then has scale 1 and no rounding. */
function exactActivations(r: () => number, T: number, I: number): Float32Array {
  const x = new Float32Array(T * I);
  for (let i = 0; i < x.length; i++) x[i] = i % 32 === 0 ? (r() < 0.5 ? -32767 : 32767) : Math.round((r() * 2 - 1) * 32767);
  return x;
}

describe('wasm Q2_K / Q3_K / Q5_K kernels', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  for (const threads of [1, 2]) {
    describe(`${threads} thread(s)`, () => {
      let k: WasmKernels;
      before(async () => {
        k = await createWasmKernels({ threads, panelInputs: 256 });
      });
      after(async () => {
        await k.close();
      });
      for (const type of TYPES) {
        test(`${type}: exact activations, T = 1..9, 3 panels, 9 rows: within f32 rounding of js`, () => {
          const r = rng(type.length * 31 + threads);
          const I = 768;
          const O = 9;
          const w = blocks(type, I, O, () => Math.floor(r() * 256), () => 0.001 + 0.01 * r());
          for (let T = 1; T <= 9; T++) {
            const x = exactActivations(r, T, I);
            const want = new Float32Array(T * O);
            const got = new Float32Array(T * O).fill(NaN);
            jsKernels.matmul(want, x, T, w);
            k.matmul(got, x, T, w);
            const e = relErr(got, want);
            assert.ok(e <= 2e-6, `${type}, T=${T}: relative error ${e.toExponential(2)}`);
          }
          assert.equal(k.stats.js.get(`matmul:${type}`), undefined, `${type} fell back to js`);
        });

        test(`${type}: the worst case of the i32 bounds does not wrap`, () => {
          // largest codes, scales and mins (Q3_K: the most negative scale, −32, and codes 0 → −4 as
          // well as 7 → +3), all activations +32767 or all −32767
          const I = 512;
          const O = 8;
          const info = ggmlType(type).typeSize;
          const byte = (i: number): number => {
            const row = Math.floor(i / ggmlRowBytes(type, I));
            const at = i % info;
            if (type === 'q3_k') {
              if (at >= 96 && at < 108) return 0; // scales: 0 → −32
              return row % 2 ? 0 : 255; // codes: hmask and qs all 0 (q3 = 0 → −4) or all 1 (q3 = 7 → +3)
            }
            return 255; // Q2_K: q = 3, sc = m = 15; Q5_K: q = 31, sc = m = 63
          };
          const w = blocks(type, I, O, byte, () => 0.01);
          for (const sign of [1, -1]) {
            const x = new Float32Array(2 * I).fill(sign * 32767);
            const want = new Float32Array(2 * O);
            const got = new Float32Array(2 * O);
            jsKernels.matmul(want, x, 2, w);
            k.matmul(got, x, 2, w);
            const e = relErr(got, want);
            assert.ok(e <= 1e-5, `${type}, x = ${sign * 32767}: relative error ${e.toExponential(2)} (${got[0]} vs ${want[0]})`);
          }
        });
      }
    });
  }

  test('packed sizes: Q2_K as stored, Q3_K and Q5_K within 4 %', () => {
    for (const f of KQUANT_FORMATS) {
      const stored = 4 * ggmlType(f.type).typeSize;
      assert.ok(f.quadBlockBytes >= stored && f.quadBlockBytes <= stored * 1.04, `${f.type}: ${f.quadBlockBytes} vs ${stored}`);
    }
  });
});
