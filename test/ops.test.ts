/** Each kernel of the plain backend on small hand-checked cases. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { jsKernels as k } from '../src/backend/js/kernels.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import { f32ToBf16 } from '../src/tensor/dtype.js';
import { route } from '../src/model/moe.js';

const close = (a: ArrayLike<number>, b: ArrayLike<number>, tol = 1e-6) => {
  assert.equal(a.length, b.length);
  for (let i = 0; i < a.length; i++) assert.ok(Math.abs(a[i]! - b[i]!) <= tol, `index ${i}: ${a[i]} vs ${b[i]}`);
};

test('rmsNorm: x / sqrt(mean(x²) + eps) · scale, no +1 offset, no mean subtraction', () => {
  const x = new Float32Array([3, 4, 0, 0, 1, 1, 1, 1]);
  const out = new Float32Array(8);
  k.rmsNorm(out, x, 2, 4, new Float32Array([1, 2, 1, 0.5]), 1e-5);
  const r0 = Math.sqrt(25 / 4 + 1e-5);
  const r1 = Math.sqrt(1 + 1e-5);
  close(out, [3 / r0, 8 / r0, 0, 0, 1 / r1, 2 / r1, 1 / r1, 0.5 / r1], 1e-6);
});

test('rope: rotate-half with tiled frequencies, position 0 is identity', () => {
  const d = 4; // lanes (0,2) use inv[0] = 1, lanes (1,3) use inv[1] = 1/base^(2/4)
  const x = new Float32Array([1, 2, 3, 4, 1, 2, 3, 4]);
  k.rope(x, 2, 1, d, new Int32Array([0, 1]), 100);
  close(x.subarray(0, 4), [1, 2, 3, 4]);
  const a0 = 1;
  const a1 = 1 / 10; // 100^(-2/4)
  close(
    x.subarray(4),
    [1 * Math.cos(a0) - 3 * Math.sin(a0), 2 * Math.cos(a1) - 4 * Math.sin(a1), 3 * Math.cos(a0) + 1 * Math.sin(a0), 4 * Math.cos(a1) + 2 * Math.sin(a1)],
    1e-6,
  );
});

test('geluMul: tanh-approximate GELU times the linear branch', () => {
  const g = new Float32Array([0, 1, -1, 3]);
  k.geluMul(g, new Float32Array([5, 2, 1, 1]), 4);
  const gelu = (x: number) => 0.5 * x * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (x + 0.044715 * x ** 3)));
  close(g, [0, 2 * gelu(1), gelu(-1), gelu(3)], 1e-6);
  assert.ok(Math.abs(gelu(1) - 0.8411920) < 1e-6); // tanh form, not erf (0.8413447)
});

test('attention: scale, then 30·tanh cap, then causal + pad mask, then softmax; GQA uses h // group', () => {
  // 2 query heads share 1 KV head; d = 1; three cached keys, key 1 is a pad.
  const k1 = new Float32Array([1, 100, 2]);
  const v1 = new Float32Array([10, 20, 30]);
  const q = new Float32Array([1, 3, 1, 3]); // T=2 rows (positions 1 and 2), heads [1, 3]
  const out = new Float32Array(4);
  k.attention({ out, q, k: k1, v: v1, keyValid: new Uint8Array([1, 0, 1]), T: 2, start: 1, numQHeads: 2, numKvHeads: 1, headDim: 1, scale: 20, softcap: 30 });
  const cap = (s: number) => 30 * Math.tanh(s / 30);
  // position 1 sees key 0 only (key 1 is pad): output = v0
  close(out.subarray(0, 2), [10, 10], 1e-5);
  // position 2 sees keys 0 and 2
  for (const [h, qv] of [[0, 1], [1, 3]] as const) {
    const s0 = cap(qv * 1 * 20);
    const s2 = cap(qv * 2 * 20);
    const p2 = 1 / (1 + Math.exp(s0 - s2));
    assert.ok(Math.abs(out[2 + h]! - (10 * (1 - p2) + 30 * p2)) < 1e-4);
  }
});

test('attention: a query with every key masked averages all keys uniformly, as the reference softmax does', () => {
  const out = new Float32Array(2);
  k.attention({ out, q: new Float32Array([1, 1]), k: new Float32Array([1, 1]), v: new Float32Array([2, 6]), keyValid: new Uint8Array([0, 0]), T: 2, start: 0, numQHeads: 1, numKvHeads: 1, headDim: 1, scale: 1, softcap: 30 });
  close(out, [4, 4]);
});

test('matmul: official int8 with grouped bf16 scales equals the dequantised f32 product', () => {
  const I = 4, O = 3, G = 2;
  const q = new Int8Array([1, -2, 3, 4, 5, -6, -7, 8, 9, 10, -11, 12]); // [I, O]
  const s = [0.5, 2, -1, 0.25, 4, 3]; // [G, O], exact in bf16
  const scales = new Uint8Array(G * O * 2);
  const dv = new DataView(scales.buffer);
  s.forEach((v, i) => dv.setUint16(2 * i, f32ToBf16(v), true));
  const w = new MemoryLinear('w', I, O, { kind: 'int8-grouped', groups: G }, new Uint8Array(q.buffer), scales);
  const x = new Float32Array([1, 2, 3, 4, -1, 0, 1, 0.5]); // T = 2
  const out = new Float32Array(2 * O);
  k.matmul(out, x, 2, w);
  const expected: number[] = [];
  for (let t = 0; t < 2; t++) {
    for (let o = 0; o < O; o++) {
      let acc = 0;
      for (let i = 0; i < I; i++) acc += x[t * I + i]! * q[i * O + o]! * s[Math.floor((i * G) / I) * O + o]!;
      expected.push(acc);
    }
  }
  close(out, expected, 1e-5);
});

test('matmul: out-major and in-major f32 agree with a hand product', () => {
  const W = [1, 2, 3, 4, 5, 6]; // in-major [I=2, O=3]
  const Wt = [1, 4, 2, 5, 3, 6]; // out-major [O=3, I=2]
  const x = new Float32Array([1, -1]);
  const a = new Float32Array(3);
  const b = new Float32Array(3);
  k.matmul(a, x, 1, new MemoryLinear('a', 2, 3, { kind: 'dense', dtype: 'f32', order: 'in-major' }, new Uint8Array(new Float32Array(W).buffer)));
  k.matmul(b, x, 1, new MemoryLinear('b', 2, 3, { kind: 'dense', dtype: 'f32', order: 'out-major' }, new Uint8Array(new Float32Array(Wt).buffer)));
  close(a, [-3, -3, -3]);
  close(b, [-3, -3, -3]);
});

test('router: softmax over all experts, top-2 by probability, ties to the lower index, gates not renormalised', () => {
  const logits = new Float32Array([0, 1, 1, -1]);
  const { experts, gates } = route(logits, 1, 4, 2);
  assert.deepEqual(Array.from(experts), [1, 2]);
  const z = 1 + 2 * Math.E + Math.exp(-1);
  close(gates, [Math.E / z, Math.E / z], 1e-6);
  assert.ok(gates[0]! + gates[1]! < 1);
});

test('matmulMany: one exact matmul per weight sharing the input', () => {
  const I = 3;
  const w1 = new MemoryLinear('w1', I, 2, { kind: 'dense', dtype: 'f32', order: 'out-major' }, new Uint8Array(new Float32Array([1, 2, 3, -1, 0, 4]).buffer));
  const w2 = new MemoryLinear('w2', I, 1, { kind: 'dense', dtype: 'f32', order: 'in-major' }, new Uint8Array(new Float32Array([0.5, -2, 1]).buffer));
  const x = new Float32Array([1, 1, 2, 0, 3, -1]);
  const o1 = new Float32Array(4);
  const o2 = new Float32Array(2);
  k.matmulMany([o1, o2], x, 2, [w1, w2]);
  close(o1, [9, 7, 3, -4]);
  close(o2, [0.5, -7]);
  assert.throws(() => k.matmulMany([o1], x, 2, [w1, w2]), RangeError);
});
