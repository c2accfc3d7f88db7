/**
 * Every ggml type the reader dequantises runs in wasm (formats/ and the older kernels), matching
 * the js oracle (exact dequantisation, f64 accumulation) on random blocks of that type: awkward
 * row counts (1, 7, 66 rows: partial quads), several column panels with a short last one, T = 1,
 * 2, 5 and 17 (single and paired token paths, several tiles), 1 and 2 threads. Then end to end
 * on every GGUF fixture: logits within cosine 0.9999 of the js path, identical greedy ids, and
 * not one matmul in the js fallback.
 *
 * Bound: ‖y_wasm − y_js‖ ≤ 1e-4 · ‖|W|·|x|‖ on outlier-heavy activations (the int16 activation
 * rounding; see scaledErr and src/backend/wasm/README.md).
 */
import { after, before, describe, test } from 'node:test';
import { Func, ValType, type Local, type Op, get, forLoop, i32, v128, encodeModule } from '../src/backend/wasm/asm.js';
import { f16x4, f16x4At } from '../src/backend/wasm/kernel-parts.js';
import { f16ToF32 } from '../src/tensor/dtype.js';
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { jsKernels } from '../src/backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from '../src/backend/wasm/index.js';
import { dequantizeGgml, ggmlRowBytes } from '../src/tensor/ggml.js';
import { randomBlocks } from '../bench/random-blocks.js';
import { MemoryLinear, type LinearWeight } from '../src/tensor/linear.js';
import { BLOCK_FORMATS } from '../src/backend/wasm/formats/index.js';
import { RESERVED } from '../src/backend/wasm/runtime.js';
import { loadModel } from '../src/language-model.js';
import { FIXTURES, HAVE_FIXTURES, rng, shared } from './shared.js';
import { activations, checkEndToEnd, ggufCase } from './wasm-check.js';

/** Every block-quantised type of the GGUF reader. */
export const BLOCK_TYPES = [
  'q8_0', 'q4_0', 'q4_1', 'q5_0', 'q5_1', 'q2_k', 'q3_k', 'q4_k', 'q5_k', 'q6_k',
  'iq4_nl', 'iq4_xs', 'iq3_xxs', 'iq3_s', 'iq2_xxs', 'iq2_xs', 'iq2_s', 'iq1_s', 'iq1_m',
] as const;

/** O rows of I inputs of `type`: random codes, finite scales. */
function randomWeight(r: () => number, type: string, I: number, O: number): LinearWeight {
  const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
  randomBlocks(type, bytes, r, 0.006);
  return new MemoryLinear(`${type} ${I}x${O}`, I, O, { kind: 'ggml', type }, bytes);
}

/**
 * ‖y − y_js‖ / ‖|W|·|x|‖: the int16 activation rounding perturbs every product w·x by up to
 * |w|·|x|/65534 of its block's largest |x|, so the error is bounded relative to Σ|w||x|, not to
 * |y|, which may cancel to almost nothing (a random 256-input row once gave |y| = Σ|w||x| / 3100).
 */
function scaledErr(got: Float32Array, want: Float32Array, mag: Float32Array): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < got.length; i++) {
    assert.ok(Number.isFinite(got[i]!), `non-finite output at ${i}: ${got[i]}`);
    num += (got[i]! - want[i]!) ** 2;
    den += mag[i]! ** 2;
  }
  return Math.sqrt(num / den);
}

/** |W|·|x| for every row and token, with W dequantised exactly. */
function magnitudes(w: LinearWeight, x: Float32Array, T: number): Float32Array {
  const absW = new Float32Array(w.inDim * w.outDim);
  const type = w.format.kind === 'ggml' ? w.format.type : '';
  dequantizeGgml(type, w.bytes(), 0, absW, 0, absW.length);
  for (let i = 0; i < absW.length; i++) absW[i] = Math.abs(absW[i]!);
  const dense = new MemoryLinear('|W|', w.inDim, w.outDim, { kind: 'dense', dtype: 'f32', order: 'out-major' }, new Uint8Array(absW.buffer));
  const mag = new Float32Array(T * w.outDim);
  jsKernels.matmul(mag, x.map(Math.abs), T, dense);
  return mag;
}

const TOL = 1e-4;

describe('wasm kernels for every ggml block type', { skip: !wasmAvailable() && 'no SIMD128 in this runtime' }, () => {
  for (const threads of [1, 2]) {
    describe(`${threads} thread(s)`, () => {
      let k: WasmKernels;
      before(async () => {
        // panels of 256 inputs: the 768- and 1280-wide rows below span 3 and 5 panels
        k = await createWasmKernels({ threads, panelInputs: 256 });
      });
      after(async () => {
        await k.close();
      });
      for (const type of BLOCK_TYPES) {
        test(`${type}: matches js (rows 1, 7, 66; 1 to 5 panels; T = 1, 2, 5, 17), never in the fallback`, () => {
          const shapes: [number, number][] = [[256, 1], [768, 7], [1280, 66]];
          shapes.forEach(([I, O], si) => {
            const w = randomWeight(rng(1000 * si + type.length), type, I, O);
            for (const T of [1, 2, 5, 17]) {
              const r = rng(77 + T + si);
              const x = activations(r, T * I);
              const want = new Float32Array(T * O);
              const got = new Float32Array(T * O).fill(NaN);
              jsKernels.matmul(want, x, T, w);
              k.matmul(got, x, T, w);
              const e = scaledErr(got, want, magnitudes(w, x, T));
              if (process.env.SHOW_ERR) console.log(type, I, O, T, e.toExponential(2));
              assert.ok(e <= TOL, `${w.name}, T=${T}: error ${e.toExponential(2)} of ‖|W|·|x|‖ > ${TOL}`);
            }
          });
          assert.equal(k.stats.js.get(`matmul:${type}`), undefined, `${type} fell back to js`);
          assert.ok((k.stats.wasm.get(`matmul:${type}`) ?? 0) > 0);
        });
      }
    });
  }
});

describe('every GGUF fixture end to end on wasm', { skip: !wasmAvailable() ? 'no SIMD128 in this runtime' : FIXTURES.skip }, () => {
  let k: WasmKernels;
  before(async () => {
    k = await createWasmKernels({ threads: 2 });
  });
  after(async () => {
    await k.close();
  });
  const files = !HAVE_FIXTURES ? [] : fs.readdirSync(shared('fixtures', 'gguf')).filter((f) => f.endsWith('.gguf') && !/-000\d\d-of-/.test(f));
  test('the fixture directory holds the 14 quantisation types', () => {
    assert.ok(files.filter((f) => f.startsWith('mini-')).length >= 14, files.join(', '));
  });
  for (const file of files) {
    test(`${file}: cosine ≥ 0.9999 at every position, identical greedy ids, 0 js-fallback matmuls`, () => {
      const c = ggufCase(file);
      const m = c.open();
      try {
        k.stats.js.clear();
        checkEndToEnd(k, m.weights, c);
        const fallbacks = [...k.stats.js].filter(([key]) => key.startsWith('matmul:'));
        assert.deepEqual(fallbacks, [], `js-fallback matmuls: ${JSON.stringify(fallbacks)}`);
      } finally {
        m.close();
      }
    });
  }
});

test('block formats: lookup tables lie in the first page above 1 KiB and never overlap', () => {
  const spans = BLOCK_FORMATS.flatMap((f) => (f.tables ?? []).map((t) => ({ type: f.type, a: t.at, b: t.at + t.bytes.length })));
  for (const s of spans) assert.ok(s.a >= 1024 && s.b <= RESERVED, `${s.type}: table at [${s.a}, ${s.b}) outside [1024, ${RESERVED})`);
  spans.sort((x, y) => x.a - y.a);
  for (let i = 1; i < spans.length; i++) assert.ok(spans[i]!.a >= spans[i - 1]!.b, `${spans[i - 1]!.type} and ${spans[i]!.type} tables overlap`);
});

describe('loadModel names every weight without a fast kernel', { skip: !wasmAvailable() ? 'no SIMD128 in this runtime' : FIXTURES.skip }, () => {
  test('every GGUF fixture loads on wasm with no slow tensors; the js backend reports none', async () => {
    const dir = shared('fixtures', 'gguf');
    for (const f of fs.readdirSync(dir).filter((n) => /^mini-.*\.gguf$/.test(n) && !/-000\d\d-of-/.test(n))) {
      const lm = await loadModel(`${dir}/${f}`, { backend: 'wasm', threads: 1 });
      try {
        assert.deepEqual(lm.slowTensors, [], f);
      } finally {
        await lm.close();
      }
    }
    const js = await loadModel(`${dir}/mini-q8_0.gguf`, { backend: 'js' });
    assert.deepEqual(js.slowTensors, []);
    await js.close();
  });
});

/** Runs `convert` (four f16 at an address → f32x4) over `patterns`, four at a time, in wasm. */
function convertAll(convert: (f: Func, addr: Op) => Op, patterns: Uint16Array): Float32Array {
  const f = new Func('cvt', [ValType.i32, ValType.i32, ValType.i32]);
  const [src, dst, n] = f.params as [Local, Local, Local];
  const [i] = f.locals32(1);
  f.body = forLoop(i, i32.const(0), get(n), 4,
    v128.store(i32.add(get(dst), i32.shl(get(i), i32.const(2))), convert(f, i32.add(get(src), i32.shl(get(i), i32.const(1))))));
  const mem = new WebAssembly.Memory({ initial: 8, maximum: 8, shared: true });
  const inst = new WebAssembly.Instance(new WebAssembly.Module(encodeModule([f], { minPages: 8, maxPages: 8 }) as Uint8Array<ArrayBuffer>), { env: { mem } });
  new Uint16Array(mem.buffer, 0, 65536).set(patterns);
  (inst.exports['cvt'] as (s: number, d: number, n: number) => void)(0, 131072, 65536);
  return new Float32Array(mem.buffer, 131072, 65536).slice();
}

test('f16x4 and f16x4At convert every f16 bit pattern exactly, subnormals included, alone or mixed with normals', () => {
  const natural = Uint16Array.from({ length: 65536 }, (_, h) => h);
  // shuffled: most groups of four then mix zeros, subnormals and normals (f16x4At's two paths)
  const shuffled = natural.slice();
  const r = rng(11);
  for (let i = shuffled.length - 1; i > 0; i--) {
    const j = Math.floor(r() * (i + 1));
    [shuffled[i], shuffled[j]] = [shuffled[j]!, shuffled[i]!];
  }
  const converters: [string, (f: Func, addr: Op) => Op][] = [
    ['f16x4', (f, addr) => f16x4(f, v128.load16x4U(addr))],
    ['f16x4At', (f, addr) => f16x4At(f, addr)],
  ];
  for (const [name, convert] of converters) {
    for (const patterns of [natural, shuffled]) {
      const got = convertAll(convert, patterns);
      for (let i = 0; i < 65536; i++) {
        const h = patterns[i]!;
        if ((h & 0x7c00) === 0x7c00) continue; // Inf/NaN: GGUF scales are finite
        assert.ok(Object.is(got[i], Math.fround(f16ToF32(h))), `${name}: f16 0x${h.toString(16)} gave ${got[i]}`);
      }
    }
  }
});

for (const type of BLOCK_TYPES) {
  test(`${type}: subnormal f16 scales (tiny weights, common in real files) match js`, async () => {
    const k = await createWasmKernels({ threads: 1 });
    try {
      const I = 512;
      const O = 9;
      const bytes = new Uint8Array(ggmlRowBytes(type, I) * O);
      randomBlocks(type, bytes, rng(5), 2e-6); // d below 6.1e-5: subnormal as f16
      const w = new MemoryLinear(`${type} tiny`, I, O, { kind: 'ggml', type }, bytes);
      const x = activations(rng(6), 2 * I);
      const want = new Float32Array(2 * O);
      const got = new Float32Array(2 * O);
      jsKernels.matmul(want, x, 2, w);
      k.matmul(got, x, 2, w);
      const e = scaledErr(got, want, magnitudes(w, x, 2));
      assert.ok(e <= TOL, `${type}: error ${e.toExponential(2)}`);
    } finally {
      await k.close();
    }
  });
}
