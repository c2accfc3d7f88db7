/**
 * The legacy block formats (src/backend/wasm/formats/legacy.ts: Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS)
 * beyond the conformance test of every type (wasm-block-formats.test.ts):
 * - worst-case magnitudes: every code at an extreme (all bits set or clear: nibbles 15, 5-bit
 *   values 31, IQ4 index 15, IQ4_XS sub-scales −32 and +31) against activations all ±max, where
 *   the i32 sums reach the bounds the kernels document; any overflow would show as a large error;
 * - the packed sizes (quad-block bytes against 4 stored blocks);
 * - the IQ4 kernels with and without `i8x16.relaxed_swizzle`, each in a child process (Node 20
 *   validates relaxed SIMD only behind --experimental-wasm-relaxed-simd; newer Node ships it), so
 *   both code paths run whatever this runtime has.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { jsKernels } from '../src/backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { LEGACY_FORMATS } from '../src/backend/wasm/formats/legacy.js';
import { f32ToF16 } from '../src/tensor/dtype.js';
import { ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import { relErr } from './wasm-check.js';

const TYPES = ['q4_1', 'q5_0', 'q5_1', 'iq4_nl', 'iq4_xs'] as const;
/** Byte offsets of each type's f16 fields (d; m for the _1 types). */
const F16: Record<(typeof TYPES)[number], readonly number[]> = { q4_1: [0, 2], q5_0: [0], q5_1: [0, 2], iq4_nl: [0], iq4_xs: [0] };

/** O rows of I inputs whose every byte is `fill` (codes at an extreme), scales d = 0.01 and m = −0.02. */
function extremeWeight(type: (typeof TYPES)[number], I: number, O: number, fill: number): MemoryLinear {
  const bytes = new Uint8Array(ggmlRowBytes(type, I) * O).fill(fill);
  const size = ggmlType(type).typeSize;
  for (let b = 0; b < bytes.length; b += size) {
    F16[type].forEach((o, i) => {
      const h = f32ToF16(i === 0 ? 0.01 : -0.02);
      bytes[b + o] = h & 255;
      bytes[b + o + 1] = h >> 8;
    });
  }
  return new MemoryLinear(`${type} ${I}x${O} 0x${fill.toString(16)}`, I, O, { kind: 'ggml', type }, bytes);
}

describe('legacy block formats', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  let k: WasmKernels;
  before(async () => {
    k = await createWasmKernels({ threads: 2, panelInputs: 256 });
  });
  after(async () => {
    await k.close();
  });

  test('worst-case magnitudes: extreme codes against activations all ±max match js (T = 1, 2, 3), no overflow', () => {
    const I = 512;
    const O = 9;
    for (const type of TYPES) {
      for (const fill of [0x00, 0xff]) {
        const w = extremeWeight(type, I, O, fill);
        for (const T of [1, 2, 3]) {
          // all +1 (every int16 activation 32767), and per token of the other sign
          const x = Float32Array.from({ length: T * I }, (_, i) => (Math.floor(i / I) % 2 ? -1 : 1));
          const want = new Float32Array(T * O);
          const got = new Float32Array(T * O).fill(NaN);
          jsKernels.matmul(want, x, T, w);
          k.matmul(got, x, T, w);
          const e = relErr(got, want);
          assert.ok(e <= 1e-5, `${w.name}, T=${T}: relative error ${e.toExponential(2)}`);
        }
      }
      assert.equal(k.stats.js.get(`matmul:${type}`), undefined, `${type} fell back to js`);
    }
  });

  test('packed sizes: the stored size for 32-blocks, + 8 bytes per 4 IQ4_XS super-blocks (sub-scales as bytes)', () => {
    const extra: Record<string, number> = { iq4_xs: 8 };
    for (const f of LEGACY_FORMATS) assert.equal(f.quadBlockBytes, 4 * ggmlType(f.type).typeSize + (extra[f.type] ?? 0), f.type);
    assert.deepEqual(LEGACY_FORMATS.map((f) => f.type), [...TYPES]);
  });

  test('IQ4 kernels with i8x16.relaxed_swizzle and with i8x16.swizzle both match js (child processes)', () => {
    const mod = (p: string) => JSON.stringify(new URL(p, import.meta.url).href);
    const code = `
      import { createWasmKernels } from ${mod('../src/backend/wasm/index.js')};
      import { relaxedSwizzleAvailable } from ${mod('../src/backend/wasm/formats/legacy.js')};
      import { jsKernels } from ${mod('../src/backend/js/kernels.js')};
      import { MemoryLinear } from ${mod('../src/tensor/linear.js')};
      import { ggmlRowBytes, ggmlType } from ${mod('../src/tensor/ggml.js')};
      import { f32ToF16 } from ${mod('../src/tensor/dtype.js')};
      let s = 11; const r = () => ((s = (Math.imul(s, 1103515245) + 12345) >>> 0) / 2 ** 32);
      const k = await createWasmKernels({ threads: 2, panelInputs: 256 });
      const errs = [];
      for (const type of ['iq4_nl', 'iq4_xs']) {
        for (const [I, O, T] of [[256, 7, 1], [768, 13, 2], [1280, 5, 5]]) {
          const bytes = Uint8Array.from({ length: ggmlRowBytes(type, I) * O }, () => Math.floor(r() * 256));
          for (let b = 0; b < bytes.length; b += ggmlType(type).typeSize) { const h = f32ToF16(0.002 + 0.01 * r()); bytes[b] = h & 255; bytes[b + 1] = h >> 8; }
          const w = new MemoryLinear(type, I, O, { kind: 'ggml', type }, bytes);
          const x = Float32Array.from({ length: T * I }, () => (r() - 0.5) * (r() < 0.02 ? 40 : 2));
          const a = new Float32Array(T * O), b = new Float32Array(T * O);
          jsKernels.matmul(a, x, T, w); k.matmul(b, x, T, w);
          let num = 0, den = 0; for (let i = 0; i < a.length; i++) { num += (a[i] - b[i]) ** 2; den += a[i] ** 2; }
          errs.push(Math.sqrt(num / den));
        }
      }
      const fallbacks = [...k.stats.js.keys()];
      await k.close();
      console.log(JSON.stringify({ relaxedSwizzle: relaxedSwizzleAvailable(), errs, fallbacks }));`;
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-legacy-'));
    try {
      const script = path.join(dir, 'iq4.mjs');
      fs.writeFileSync(script, code);
      for (const [flag, relaxed] of [['--experimental-wasm-relaxed-simd', true], ['--no-experimental-wasm-relaxed-simd', false]] as const) {
        const r = spawnSync(process.execPath, [flag, script], { encoding: 'utf8', timeout: 60000 });
        assert.equal(r.status, 0, `${flag}: ${r.stderr}`);
        const res = JSON.parse(r.stdout.trim()) as { relaxedSwizzle: boolean; errs: number[]; fallbacks: string[] };
        assert.equal(res.relaxedSwizzle, relaxed, `${flag}: relaxed_swizzle in use`);
        assert.deepEqual(res.fallbacks, []);
        for (const e of res.errs) assert.ok(e <= 1e-3, `${flag}: relative error ${e}`);
      }
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
