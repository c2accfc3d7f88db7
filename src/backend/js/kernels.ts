/**
 * The plain TypeScript backend: simple loops, exact dequantisation, float64 accumulation. It is the
 * numerics oracle every fast kernel is tested against, so clarity beats speed here.
 *
 * Legend: T rows, I input width, O output width, G scale groups, S cache slots.
 */
import type { LinearWeight } from '../../tensor/linear.js';
import type { AttentionArgs, Kernels } from '../kernels.js';
import { bf16BytesToF32, f16BytesToF32, f32View } from '../../tensor/dtype.js';
import { decodeOutMajorRow, outMajorRowSize } from '../../tensor/rows.js';

/** out[t, o] = Σ_i x[t, i] · W[i, o] for an input-major f32 matrix [I, O]. */
function matmulInMajor(out: Float32Array, x: Float32Array, T: number, W: Float32Array, I: number, O: number): void {
  const acc = new Float64Array(O);
  for (let t = 0; t < T; t++) {
    acc.fill(0);
    for (let i = 0; i < I; i++) {
      const xi = x[t * I + i]!;
      if (xi === 0) continue;
      const row = i * O;
      for (let o = 0; o < O; o++) acc[o]! += xi * W[row + o]!;
    }
    for (let o = 0; o < O; o++) out[t * O + o] = acc[o]!;
  }
}

/** The official int8 layout: W[i, o] = q[i, o] · s[floor(i·G/I), o]; the scale is applied per group. */
function matmulInt8Grouped(out: Float32Array, x: Float32Array, T: number, w: LinearWeight, G: number): void {
  const I = w.inDim;
  const O = w.outDim;
  const bytes = w.bytes();
  const q = new Int8Array(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const s = bf16BytesToF32(w.scaleBytes()); // [G, O]
  const rowsPerGroup = I / G;
  const total = new Float64Array(O);
  const group = new Float64Array(O);
  for (let t = 0; t < T; t++) {
    total.fill(0);
    for (let g = 0; g < G; g++) {
      group.fill(0);
      for (let i = g * rowsPerGroup; i < (g + 1) * rowsPerGroup; i++) {
        const xi = x[t * I + i]!;
        if (xi === 0) continue;
        const row = i * O;
        for (let o = 0; o < O; o++) group[o]! += xi * q[row + o]!;
      }
      for (let o = 0; o < O; o++) total[o]! += group[o]! * s[g * O + o]!;
    }
    for (let o = 0; o < O; o++) out[t * O + o] = total[o]!;
  }
}

/** Out-major weights: dequantise one output row at a time, then dot it with every input row. */
function matmulOutMajor(out: Float32Array, x: Float32Array, T: number, w: LinearWeight, row: (o: number) => Float32Array): void {
  const I = w.inDim;
  const O = w.outDim;
  for (let o = 0; o < O; o++) {
    const r = row(o);
    for (let t = 0; t < T; t++) out[t * O + o] = dot(x, t * I, r, 0, I);
  }
}

/** The common f32 case without a per-row view (the tied output projection is V rows). */
function matmulOutMajorF32(out: Float32Array, x: Float32Array, T: number, W: Float32Array, I: number, O: number): void {
  for (let o = 0; o < O; o++) {
    for (let t = 0; t < T; t++) out[t * O + o] = dot(x, t * I, W, o * I, I);
  }
}

/** Σ a[ai + i]·b[bi + i] in float64, four partial sums for instruction-level parallelism. */
function dot(a: Float32Array, ai: number, b: Float32Array, bi: number, n: number): number {
  let s0 = 0;
  let s1 = 0;
  let s2 = 0;
  let s3 = 0;
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    s0 += a[ai + i]! * b[bi + i]!;
    s1 += a[ai + i + 1]! * b[bi + i + 1]!;
    s2 += a[ai + i + 2]! * b[bi + i + 2]!;
    s3 += a[ai + i + 3]! * b[bi + i + 3]!;
  }
  for (; i < n; i++) s0 += a[ai + i]! * b[bi + i]!;
  return s0 + s1 + (s2 + s3);
}

/** Row o of an out-major weight as f32 (a view for f32, a fresh decode into one scratch row otherwise). */
function outMajorRowReader(w: LinearWeight): (o: number) => Float32Array {
  const I = w.inDim;
  const bytes = w.bytes();
  const size = outMajorRowSize(w.format, I, w.name);
  if (w.format.kind === 'dense' && w.format.dtype === 'f32') {
    const all = f32View(bytes);
    return (o) => all.subarray(o * I, (o + 1) * I);
  }
  const tmp = new Float32Array(I);
  return (o) => {
    decodeOutMajorRow(w.format, bytes, o * size, I, tmp);
    return tmp;
  };
}

function matmul(out: Float32Array, x: Float32Array, T: number, w: LinearWeight): void {
  const f = w.format;
  if (f.kind === 'int8-grouped') return matmulInt8Grouped(out, x, T, w, f.groups);
  if (f.kind === 'dense' && f.order === 'out-major' && f.dtype === 'f32') return matmulOutMajorF32(out, x, T, f32View(w.bytes()), w.inDim, w.outDim);
  if (f.kind === 'dense' && f.order === 'in-major') {
    const bytes = w.bytes();
    const W = f.dtype === 'f32' ? f32View(bytes) : f.dtype === 'bf16' ? bf16BytesToF32(bytes) : f16BytesToF32(bytes);
    return matmulInMajor(out, x, T, W, w.inDim, w.outDim);
  }
  return matmulOutMajor(out, x, T, w, outMajorRowReader(w));
}

/** One matmul per weight: the oracle has nothing to share between them. */
function matmulMany(outs: readonly Float32Array[], x: Float32Array, T: number, ws: readonly LinearWeight[]): void {
  if (outs.length !== ws.length) throw new RangeError(`matmulMany: ${ws.length} weights but ${outs.length} outputs`);
  ws.forEach((w, i) => matmul(outs[i]!, x, T, w));
}

function rmsNorm(out: Float32Array, x: Float32Array, T: number, D: number, scale: Float32Array, eps: number): void {
  for (let t = 0; t < T; t++) {
    let ss = 0;
    for (let i = 0; i < D; i++) ss += x[t * D + i]! * x[t * D + i]!;
    const inv = 1 / Math.sqrt(ss / D + eps);
    for (let i = 0; i < D; i++) out[t * D + i] = x[t * D + i]! * inv * scale[i]!;
  }
}

/** Rotate-half RoPE, tiled frequencies (docs/REFERENCE.md §2): lanes i and i + d/2 share inv[i]. */
function rope(x: Float32Array, T: number, heads: number, headDim: number, positions: Int32Array, base: number): void {
  const half = headDim / 2;
  const inv = new Float64Array(half);
  for (let i = 0; i < half; i++) inv[i] = 1 / base ** ((2 * i) / headDim);
  for (let t = 0; t < T; t++) {
    const pos = positions[t]!;
    for (let i = 0; i < half; i++) {
      const c = Math.cos(pos * inv[i]!);
      const s = Math.sin(pos * inv[i]!);
      for (let h = 0; h < heads; h++) {
        const p = (t * heads + h) * headDim + i;
        const a = x[p]!;
        const b = x[p + half]!;
        x[p] = a * c - b * s;
        x[p + half] = b * c + a * s;
      }
    }
  }
}

/** Scale, then soft cap, then mask, then softmax (docs/REFERENCE.md §2); a row with every key masked is uniform, as in the reference. */
function attention(a: AttentionArgs): void {
  const { out, q, k, v, keyValid, T, start, numQHeads: H, numKvHeads: Hkv, headDim: d, scale, softcap } = a;
  const group = H / Hkv;
  const S = start + T;
  const scores = new Float64Array(S);
  const acc = new Float64Array(d);
  for (let t = 0; t < T; t++) {
    const pos = start + t;
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / group);
      const qo = (t * H + h) * d;
      let max = -Infinity;
      let visible = 0;
      for (let j = 0; j < S; j++) {
        if (j > pos || !keyValid[j]) {
          scores[j] = NaN;
          continue;
        }
        const ko = (j * Hkv + kvh) * d;
        let dot = 0;
        for (let i = 0; i < d; i++) dot += q[qo + i]! * k[ko + i]!;
        let s = dot * scale;
        if (softcap > 0) s = softcap * Math.tanh(s / softcap);
        scores[j] = s;
        if (s > max) max = s;
        visible++;
      }
      let sum = 0;
      for (let j = 0; j < S; j++) {
        const p = visible === 0 ? 1 : Number.isNaN(scores[j]!) ? 0 : Math.exp(scores[j]! - max);
        scores[j] = p;
        sum += p;
      }
      acc.fill(0);
      for (let j = 0; j < S; j++) {
        const p = scores[j]! / sum;
        if (p === 0) continue;
        const vo = (j * Hkv + kvh) * d;
        for (let i = 0; i < d; i++) acc[i]! += p * v[vo + i]!;
      }
      for (let i = 0; i < d; i++) out[qo + i] = acc[i]!;
    }
  }
}

const GELU_C = Math.sqrt(2 / Math.PI);

/** gelu_tanh(g) · u (model.py uses jax.nn.gelu, whose default is the tanh approximation). */
function geluMul(gate: Float32Array, up: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const g = gate[i]!;
    gate[i] = 0.5 * g * (1 + Math.tanh(GELU_C * (g + 0.044715 * g * g * g))) * up[i]!;
  }
}

export const jsKernels: Kernels = {
  name: 'js',
  matmul,
  matmulMany,
  rmsNorm,
  rope,
  attention,
  geluMul,
  close: async () => {},
};
