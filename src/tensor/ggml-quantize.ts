/**
 * Quantisers for the types `convert` writes: f32, f16, bf16, q8_0, q4_0, q4_k, q6_k. Each follows
 * ggml's reference quantiser (ggml-quants.c quantize_row_*_ref, the one llama-quantize uses without
 * an importance matrix) step by step, with every float32 intermediate rounded by Math.fround in
 * C's evaluation order, so the bytes equal those of a ggml build without FMA contraction.
 */
import { UnsupportedError } from '../errors.js';
import { f16ToF32, f32ToBf16, f32ToF16 } from './dtype.js';
import { ggmlRowBytes } from './ggml.js';

const fr = Math.fround;
const QK_K = 256;
/** GROUP_MAX_EPS: below this a group counts as all zeros. */
const GROUP_MAX_EPS = fr(1e-15);

/** The types quantizeGgml can produce. */
export const QUANTIZE_TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q6_k'] as const;
export type QuantizeType = (typeof QUANTIZE_TYPES)[number];

/** Whether `t` names one of QUANTIZE_TYPES (narrows a user-given string). */
export function isQuantizeType(t: string): t is QuantizeType {
  return (QUANTIZE_TYPES as readonly string[]).includes(t);
}

/** ggml's nearest_int: round half to even through the 1.5·2^23 trick, on a float32 argument. */
function nearestInt(f: number): number {
  return fr(f + 12582912) - 12582912;
}

function putU16(out: Uint8Array, p: number, v: number): void {
  out[p] = v & 255;
  out[p + 1] = (v >> 8) & 255;
}

/** C's roundf: half away from zero. */
function roundAway(x: number): number {
  return x < 0 ? -Math.round(-x) : Math.round(x);
}

function quantizeQ8_0(x: Float32Array, xo: number, out: Uint8Array, o: number, nb: number): void {
  for (let b = 0; b < nb; b++, xo += 32, o += 34) {
    let amax = 0;
    for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]!));
    const d = fr(amax / 127);
    const id = d ? fr(1 / d) : 0;
    putU16(out, o, f32ToF16(d));
    for (let j = 0; j < 32; j++) out[o + 2 + j] = roundAway(fr(x[xo + j]! * id)) & 255;
  }
}

function quantizeQ4_0(x: Float32Array, xo: number, out: Uint8Array, o: number, nb: number): void {
  for (let b = 0; b < nb; b++, xo += 32, o += 18) {
    let amax = 0;
    let max = 0;
    for (let j = 0; j < 32; j++) {
      const v = x[xo + j]!;
      if (amax < Math.abs(v)) {
        amax = Math.abs(v);
        max = v;
      }
    }
    const d = fr(max / -8);
    const id = d ? fr(1 / d) : 0;
    putU16(out, o, f32ToF16(d));
    for (let j = 0; j < 16; j++) {
      const q0 = Math.min(15, Math.trunc(fr(fr(x[xo + j]! * id) + 8.5)));
      const q1 = Math.min(15, Math.trunc(fr(fr(x[xo + 16 + j]! * id) + 8.5)));
      out[o + 2 + j] = q0 | (q1 << 4);
    }
  }
}

/** Scratch for makeQkx2Quants (groups of at most 32 values): the group, and the group minus its min. */
const groupX = new Float32Array(32);
const shifted = new Float32Array(32);

/**
 * make_qkx2_quants: scale and min of an asymmetric nmax-level quantisation of x[0..n), searching
 * nstep+1 candidate scales around the min/max one by weighted least squares. Writes the levels to
 * L and returns the scale; the min, negated as ggml returns it, goes to mins[mi].
 */
function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number,
  mins: Float32Array, mi: number, Laux: Uint8Array, rmin: number, rdelta: number, nstep: number,
): number {
  const g = groupX;
  for (let i = 0; i < n; i++) g[i] = x[xo + i]!;
  let min = g[0]!;
  let max = g[0]!;
  let sumW = w[0]!;
  let sumX = fr(sumW * g[0]!);
  for (let i = 1; i < n; i++) {
    const v = g[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
    sumW = fr(sumW + w[i]!);
    sumX = fr(sumX + fr(w[i]! * v));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    mins[mi] = -min;
    return 0;
  }
  for (let i = 0; i < n; i++) shifted[i] = g[i]! - min;
  let iscale = fr(nmax / fr(max - min));
  let scale = fr(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * shifted[i]!))));
    L[lo + i] = l;
    let diff = fr(fr(fr(scale * l) + min) - g[i]!);
    diff = fr(diff * diff);
    bestError = fr(bestError + fr(w[i]! * diff));
  }
  for (let is = 0; is <= nstep; is++) {
    // min is the best candidate's so far (as in ggml): later candidates are centred on it
    iscale = fr(fr(fr(rmin + fr(rdelta * is)) + nmax) / fr(max - min));
    let sumL = 0;
    let sumL2 = 0;
    let sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(fr(iscale * shifted[i]!))));
      Laux[i] = l;
      const wl = fr(w[i]! * l);
      sumL = fr(sumL + wl);
      sumL2 = fr(sumL2 + fr(wl * l));
      sumXL = fr(sumXL + fr(wl * g[i]!));
    }
    const D = fr(fr(sumW * sumL2) - fr(sumL * sumL));
    if (D > 0) {
      let thisScale = fr(fr(fr(sumW * sumXL) - fr(sumX * sumL)) / D);
      let thisMin = fr(fr(fr(sumL2 * sumX) - fr(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = fr(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        let diff = fr(fr(fr(thisScale * Laux[i]!) + thisMin) - g[i]!);
        diff = fr(diff * diff);
        curError = fr(curError + fr(w[i]! * diff));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i]!;
        bestError = curError;
        scale = thisScale;
        min = thisMin;
        for (let i = 0; i < n; i++) shifted[i] = g[i]! - min;
      }
    }
  }
  mins[mi] = -min;
  return scale;
}

function quantizeQ4_K(x: Float32Array, xo: number, out: Uint8Array, o: number, nb: number): void {
  const L = new Uint8Array(QK_K);
  const Laux = new Uint8Array(32);
  const weights = new Float32Array(32);
  const mins = new Float32Array(8);
  const scales = new Float32Array(8);
  const rdelta = fr(0.1);
  for (let b = 0; b < nb; b++, xo += QK_K, o += 144) {
    let maxScale = 0;
    let maxMin = 0;
    for (let j = 0; j < 8; j++) {
      let sumX2 = 0;
      for (let l = 0; l < 32; l++) sumX2 = fr(sumX2 + fr(x[xo + 32 * j + l]! * x[xo + 32 * j + l]!));
      const avX = fr(Math.sqrt(fr(sumX2 / 32)));
      for (let l = 0; l < 32; l++) weights[l] = fr(avX + Math.abs(x[xo + 32 * j + l]!));
      scales[j] = makeQkx2Quants(32, 15, x, xo + 32 * j, weights, L, 32 * j, mins, j, Laux, -1, rdelta, 20);
      if (scales[j]! > maxScale) maxScale = scales[j]!;
      if (mins[j]! > maxMin) maxMin = mins[j]!;
    }
    const invScale = maxScale > 0 ? fr(63 / maxScale) : 0;
    const invMin = maxMin > 0 ? fr(63 / maxMin) : 0;
    const sc = o + 4; // scales[12]
    out.fill(0, sc, sc + 12);
    for (let j = 0; j < 8; j++) {
      const ls = Math.min(63, nearestInt(fr(invScale * scales[j]!)) & 255);
      const lm = Math.min(63, nearestInt(fr(invMin * mins[j]!)) & 255);
      if (j < 4) {
        out[sc + j] = ls;
        out[sc + j + 4] = lm;
      } else {
        out[sc + j + 4] = (ls & 15) | ((lm & 15) << 4);
        out[sc + j - 4]! |= (ls >> 4) << 6;
        out[sc + j]! |= (lm >> 4) << 6;
      }
    }
    const d16 = f32ToF16(fr(maxScale / 63));
    const dmin16 = f32ToF16(fr(maxMin / 63));
    putU16(out, o, d16);
    putU16(out, o + 2, dmin16);
    const dAll = f16ToF32(d16);
    const dminAll = f16ToF32(dmin16);
    for (let j = 0; j < 8; j++) {
      const s = j < 4 ? out[sc + j]! & 63 : (out[sc + j + 4]! & 15) | ((out[sc + j - 4]! >> 6) << 4);
      const m = j < 4 ? out[sc + j + 4]! & 63 : (out[sc + j + 4]! >> 4) | ((out[sc + j]! >> 6) << 4);
      const d = fr(dAll * s);
      if (!d) continue; // keeps make_qkx2_quants' levels, as ggml does
      const dm = fr(dminAll * m);
      for (let ii = 0; ii < 32; ii++) {
        L[32 * j + ii] = Math.max(0, Math.min(15, nearestInt(fr(fr(x[xo + 32 * j + ii]! + dm) / d))));
      }
    }
    let q = o + 16;
    for (let j = 0; j < QK_K; j += 64, q += 32) {
      for (let l = 0; l < 32; l++) out[q + l] = L[j + l]! | (L[j + l + 32]! << 4);
    }
  }
}

/**
 * make_qx_quants with rmse_type 1 (weights x², no importance matrix): a symmetric scale for
 * 2·nmax levels, refined over 18 candidate scales. Writes levels + nmax to L.
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Int8Array, lo: number): number {
  let max = 0;
  let amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]!);
    if (ax > amax) {
      amax = ax;
      max = x[xo + i]!;
    }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  const clampL = (l: number) => Math.max(-nmax, Math.min(nmax - 1, l));
  let iscale = fr(-nmax / max);
  let sumlx = 0;
  let suml2 = 0;
  for (let i = 0; i < n; i++) {
    const v = x[xo + i]!;
    const l = clampL(nearestInt(fr(iscale * v)));
    L[lo + i] = l + nmax;
    const w = fr(v * v);
    sumlx = fr(sumlx + fr(fr(w * v) * l));
    suml2 = fr(suml2 + fr(fr(w * l) * l));
  }
  let scale = suml2 ? fr(sumlx / suml2) : 0;
  let best = fr(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = fr(-fr(nmax + fr(fr(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const v = x[xo + i]!;
      const l = clampL(nearestInt(fr(iscale * v)));
      const w = fr(v * v);
      sumlx = fr(sumlx + fr(fr(w * v) * l));
      suml2 = fr(suml2 + fr(fr(w * l) * l));
    }
    if (suml2 > 0 && fr(sumlx * sumlx) > fr(best * suml2)) {
      for (let i = 0; i < n; i++) L[lo + i] = nmax + clampL(nearestInt(fr(iscale * x[xo + i]!)));
      scale = fr(sumlx / suml2);
      best = fr(scale * sumlx);
    }
  }
  return scale;
}

function quantizeQ6_K(x: Float32Array, xo: number, out: Uint8Array, o: number, nb: number): void {
  const L = new Int8Array(QK_K);
  const scales = new Float32Array(16);
  for (let b = 0; b < nb; b++, xo += QK_K, o += 210) {
    let maxScale = 0;
    let maxAbsScale = 0;
    for (let ib = 0; ib < 16; ib++) {
      const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib);
      scales[ib] = scale;
      if (Math.abs(scale) > maxAbsScale) {
        maxAbsScale = Math.abs(scale);
        maxScale = scale;
      }
    }
    out.fill(0, o, o + 210);
    if (maxAbsScale < GROUP_MAX_EPS) continue; // an all-zero block: every byte 0, d = +0
    const iscale = fr(-128 / maxScale);
    const d16 = f32ToF16(fr(1 / iscale));
    putU16(out, o + 208, d16);
    const dAll = f16ToF32(d16);
    for (let ib = 0; ib < 16; ib++) out[o + 192 + ib] = Math.min(127, nearestInt(fr(iscale * scales[ib]!))) & 255;
    for (let j = 0; j < 16; j++) {
      const d = fr(dAll * ((out[o + 192 + j]! << 24) >> 24));
      if (!d) continue;
      for (let ii = 0; ii < 16; ii++) {
        L[16 * j + ii] = Math.max(-32, Math.min(31, nearestInt(fr(x[xo + 16 * j + ii]! / d)))) + 32;
      }
    }
    let ql = o;
    let qh = o + 128;
    for (let j = 0; j < QK_K; j += 128, ql += 64, qh += 32) {
      for (let l = 0; l < 32; l++) {
        const q1 = L[j + l]!;
        const q2 = L[j + l + 32]!;
        const q3 = L[j + l + 64]!;
        const q4 = L[j + l + 96]!;
        out[ql + l] = (q1 & 15) | ((q3 & 15) << 4);
        out[ql + l + 32] = (q2 & 15) | ((q4 & 15) << 4);
        out[qh + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) | ((q4 >> 4) << 6);
      }
    }
  }
}

/**
 * Quantises n values (a whole number of blocks) from x[xOffset…] into out[outOffset…] in ggml
 * type `type`; returns the number of bytes written (ggmlRowBytes(type, n)).
 */
export function quantizeGgml(type: string, x: Float32Array, xOffset: number, out: Uint8Array, outOffset: number, n: number): number {
  if (!isQuantizeType(type)) {
    throw new UnsupportedError(type, `cannot write ggml type ${type}; convert writes ${QUANTIZE_TYPES.join(', ')}`);
  }
  const bytes = ggmlRowBytes(type, n);
  if (xOffset < 0 || xOffset + n > x.length || outOffset < 0 || outOffset + bytes > out.length) {
    throw new RangeError(`quantizeGgml(${type}): ${n} values exceed the buffers`);
  }
  switch (type) {
    case 'f32':
      out.set(new Uint8Array(x.buffer, x.byteOffset + 4 * xOffset, 4 * n), outOffset);
      break;
    case 'f16':
      for (let i = 0; i < n; i++) putU16(out, outOffset + 2 * i, f32ToF16(x[xOffset + i]!));
      break;
    case 'bf16':
      for (let i = 0; i < n; i++) putU16(out, outOffset + 2 * i, f32ToBf16(x[xOffset + i]!));
      break;
    case 'q8_0':
      quantizeQ8_0(x, xOffset, out, outOffset, n / 32);
      break;
    case 'q4_0':
      quantizeQ4_0(x, xOffset, out, outOffset, n / 32);
      break;
    case 'q4_k':
      quantizeQ4_K(x, xOffset, out, outOffset, n / QK_K);
      break;
    case 'q6_k':
      quantizeQ6_K(x, xOffset, out, outOffset, n / QK_K);
      break;
  }
  return bytes;
}
