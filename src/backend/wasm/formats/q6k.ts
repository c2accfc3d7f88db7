/**
 * Q6_K (256 values: 6-bit codes q, value = d · sc_j · (q − 32) with an int8 scale sc_j per 16) in
 * "6-bit lanes": per 16-value sub-block, the 4 rows' 8 groups of 8 codes are packed into three
 * vectors of 16-bit lanes, so that every group comes out with at most two ops (and; shift + and;
 * or the two halves of a split code joined with an or) and no byte unpacking:
 *
 *   A lane i = r0 g0 | r0 g1 << 6 | (r2 g0 & 15) << 12
 *   B lane i = r1 g0 | r1 g1 << 6 | (r2 g1 & 15) << 12
 *   C lane i = r3 g0 | r3 g1 << 6 | (r2 g0 >> 4) << 12 | (r2 g1 >> 4) << 14
 *
 * (rR gG: the code of value 16j + 8G + i of row R). 48 bytes per sub-block of a quad, exactly the
 * stored 6 bits per value. With ggml's ql/qh bytes each 16 values needed and, shift, or and the
 * int8 offset in bytes, then two sign extensions (one of them two x64 instructions).
 *
 * Per sub-block the 4 rows' i32 dot products are summed across lanes into one vector of the 4 rows
 * (hsum4), the −32 offset is taken off as 32 · Σx (bsum per 16), and the int8 scales, stored
 * [sub-block][row], scale all 4 rows at once in f32. A quad-superblock (840 bytes, as stored):
 * d[4] f16 | sc[16][4] i8 | 16 × (A, B, C).
 */
import {
  Func, type Local, type Op, seq, get, set, forPtr, i32, f32, v128, i16x8, i32x4, f32x4,
} from '../asm.js';
import type { BlockFormat } from '../block-format.js';
import { I32, zero, inc, hsum4, f16x4, initAcc, blockPointers, quadLoop } from '../kernel-parts.js';
import { transposeStore, type DecodedSpec } from '../decoded.js';

const QB = 840;
const STORED = 210;

/** 4 codes in the bytes of a word: nibbles at lsh of the ql word at p, with bits hsh of the qh word at p + dh on top. */
const codes4 = (dv: DataView, p: number, dh: number, lsh: number, hsh: number): number =>
  ((dv.getUint32(p, true) >>> lsh) & 0x0f0f0f0f) | (((dv.getUint32(p + dh, true) >>> hsh) & 0x03030303) << 4);

/** The three words of lanes i, i + 1 from the rows' codes of groups 0, 1 (code i at bit 0, i + 1 at bit 16). */
function put6(o32: Uint32Array, p: number, s00: number, s01: number, s10: number, s11: number, s20: number, s21: number, s30: number, s31: number): void {
  o32[p] = s00 | (s01 << 6) | ((s20 & 0xf000f) << 12);
  o32[p + 4] = s10 | (s11 << 6) | ((s21 & 0xf000f) << 12);
  o32[p + 8] = s30 | (s31 << 6) | (((s20 >>> 4) & 0x30003) << 12) | (((s21 >>> 4) & 0x30003) << 14);
}

function pack(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / STORED;
  const dv = new DataView(rows.buffer, rows.byteOffset, rows.byteLength);
  const o32 = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
  for (let b = 0; b < nb; b++) {
    const o = b * QB;
    for (let r = 0; r < 4; r++) {
      const at = r * rowBytes + b * STORED;
      out[o + 2 * r] = rows[at + 208]!; // d
      out[o + 2 * r + 1] = rows[at + 209]!;
      for (let j = 0; j < 16; j++) out[o + 8 + 4 * j + r] = rows[at + 192 + j]!;
    }
    // Value v = 16j + 8G + i (sub-block j, group G, lane i) of row R is nibble (q >> 1) of
    // ql[64n + 32·(q & 1) + l] with bits 2q of qh[32n + l] on top (n = j >> 3, q = (j >> 1) & 3,
    // l = 16·(j & 1) + 8G + i): 4 codes at a time in the bytes of a word, then two lanes (i, i + 1)
    // of A, B, C at a time as one 32-bit word.
    for (let j = 0; j < 16; j++) {
      const q = (j >> 1) & 3;
      const lsh = 4 * (q >> 1);
      const hsh = 2 * q;
      const p0 = b * STORED + 64 * (j >> 3) + 32 * (q & 1) + 16 * (j & 1);
      const dh = 128 + 32 * (j >> 3) - 64 * (j >> 3) - 32 * (q & 1); // qh's offset from ql's
      const h = (o >> 2) + 18 + 12 * j;
      for (let w = 0; w < 8; w += 4) {
        const p = p0 + w;
        const x00 = codes4(dv, p, dh, lsh, hsh);
        const x01 = codes4(dv, p + 8, dh, lsh, hsh);
        const x10 = codes4(dv, p + rowBytes, dh, lsh, hsh);
        const x11 = codes4(dv, p + rowBytes + 8, dh, lsh, hsh);
        const x20 = codes4(dv, p + 2 * rowBytes, dh, lsh, hsh);
        const x21 = codes4(dv, p + 2 * rowBytes + 8, dh, lsh, hsh);
        const x30 = codes4(dv, p + 3 * rowBytes, dh, lsh, hsh);
        const x31 = codes4(dv, p + 3 * rowBytes + 8, dh, lsh, hsh);
        const e = h + (w >> 1);
        put6(o32, e,
          (x00 & 0x3f) | ((x00 & 0x3f00) << 8), (x01 & 0x3f) | ((x01 & 0x3f00) << 8),
          (x10 & 0x3f) | ((x10 & 0x3f00) << 8), (x11 & 0x3f) | ((x11 & 0x3f00) << 8),
          (x20 & 0x3f) | ((x20 & 0x3f00) << 8), (x21 & 0x3f) | ((x21 & 0x3f00) << 8),
          (x30 & 0x3f) | ((x30 & 0x3f00) << 8), (x31 & 0x3f) | ((x31 & 0x3f00) << 8));
        put6(o32, e + 1,
          ((x00 >>> 16) & 0x3f) | ((x00 >>> 8) & 0x3f0000), ((x01 >>> 16) & 0x3f) | ((x01 >>> 8) & 0x3f0000),
          ((x10 >>> 16) & 0x3f) | ((x10 >>> 8) & 0x3f0000), ((x11 >>> 16) & 0x3f) | ((x11 >>> 8) & 0x3f0000),
          ((x20 >>> 16) & 0x3f) | ((x20 >>> 8) & 0x3f0000), ((x21 >>> 16) & 0x3f) | ((x21 >>> 8) & 0x3f0000),
          ((x30 >>> 16) & 0x3f) | ((x30 >>> 8) & 0x3f0000), ((x31 >>> 16) & 0x3f) | ((x31 >>> 8) & 0x3f0000));
      }
    }
  }
}

/**
 * mm_q6_k(w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, tid); x int16 with one scale per
 * 256, bsum per 16. Bounds: a row's sub-block sum Σ q·x ≤ 16 · 63 · 32767 = 3.3e7, minus
 * 32 · Σx (≤ 1.7e7): < 2^26 in i32, then f32 (rounding ≤ 6e-8 relative).
 */
function emit(): Func {
  const f = new Func('mm_q6_k', new Array(13).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, xp, xsp, bp, we, qp, qe, scp] = f.locals32(8);
  const rd = f.vlocals(4);
  const [acc, sacc, X0, X1, A, B, C, m63, m30] = f.vlocals(9);
  const lo = (v: Local) => v128.and(get(v), get(m63));
  const mid = (v: Local) => v128.and(i16x8.shrU(get(v), 6), get(m63));
  const dot2 = (g0: Op, g1: Op) => i32x4.add(i32x4.dotI16x8S(g0, get(X0)), i32x4.dotI16x8S(g1, get(X1)));
  // One loop step per 16-value sub-block (every step the same code: the rows' layout above), so
  // only 2 activation and 3 weight vectors are loaded per step (TurboFan issues a body's loads first).
  const step: Op[] = [
    set(X0, v128.load(get(xp))),
    set(X1, v128.load(get(xp), 16)),
    set(A, v128.load(get(qp))),
    set(B, v128.load(get(qp), 16)),
    set(C, v128.load(get(qp), 32)),
    set(rd[0]!, dot2(lo(A), mid(A))),
    set(rd[1]!, dot2(lo(B), mid(B))),
    set(rd[3]!, dot2(lo(C), mid(C))),
    set(rd[2]!, dot2(
      v128.or(i16x8.shrU(get(A), 12), v128.and(i16x8.shrU(get(C), 8), get(m30))),
      v128.or(i16x8.shrU(get(B), 12), v128.and(i16x8.shrU(get(C), 10), get(m30))))),
    set(sacc, f32x4.add(get(sacc), f32x4.mul(
      f32x4.convertI32x4S(i32x4.sub(hsum4(f, i32x4.add, rd[0]!, rd[1]!, rd[2]!, rd[3]!), i32x4.splat(i32.shl(i32.load(get(bp)), i32.const(5))))),
      f32x4.convertI32x4S(i32x4.extendLowI16x8S(i16x8.extendLowI8x16S(v128.load32Splat(get(scp)))))))),
    inc(xp, 32),
    inc(bp, 4),
    inc(scp, 4),
  ];
  f.body = seq(set(m63, i16x8.const(0x3f)), set(m30, i16x8.const(0x30)), quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: xsp, bsum: bp }, { x, xs, bsum, nb }, q, t, pn!, { weights: QB, x: 512, bsum: 64 }),
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, QB,
      set(sacc, zero()),
      set(scp, i32.add(get(wp), i32.const(8))),
      set(qp, i32.add(get(wp), i32.const(72))),
      set(qe, i32.add(get(wp), i32.const(QB))),
      forPtr(qp, qe, 48, ...step),
      set(acc, f32x4.add(get(acc), f32x4.mul(get(sacc), f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.splat(f32.load(get(xsp))))))),
      inc(xsp, 4)),
    v128.store(outAddr, get(acc)),
  ], { w, nb, pb, quadBlockBytes: QB, outP }));
  return f;
}

/**
 * The prefill kernel (decoded.ts): per sub-block each row's two groups of 8 codes taken out as in
 * emit's step, less 32 (−32..31), transposed into pair vectors: a sub-block's i32 sum is emit's
 * hsum4 − 32·bsum, and the f32 steps are emit's: sacc += conv(sum) · sc per sub-block (the 4 rows'
 * f32 scales stored as group extras), acc += sacc · (d · xs) per block.
 */
const DECODED: DecodedSpec = {
  name: 'mmp_q6_k', QB, G: 16, xBlock: 256, bsumLen: 0, groupExtra: 16, blockExtra: 16, accs: 1,
  decode(f, wp, dp, gx, bx) {
    const [op, gp, scp, qp, qe] = f.locals32(5) as [Local, Local, Local, Local, Local];
    const [A, B, C, m63, m30, k32] = f.vlocals(6) as [Local, Local, Local, Local, Local, Local];
    const g = f.vlocals(4);
    const lo = (v: Local) => v128.and(get(v), get(m63));
    const mid = (v: Local) => v128.and(i16x8.shrU(get(v), 6), get(m63));
    const rows = (half: 0 | 1): Op[] => [
      set(g[0]!, i16x8.sub(half ? mid(A) : lo(A), get(k32))),
      set(g[1]!, i16x8.sub(half ? mid(B) : lo(B), get(k32))),
      set(g[2]!, i16x8.sub(half
        ? v128.or(i16x8.shrU(get(B), 12), v128.and(i16x8.shrU(get(C), 10), get(m30)))
        : v128.or(i16x8.shrU(get(A), 12), v128.and(i16x8.shrU(get(C), 8), get(m30))), get(k32))),
      set(g[3]!, i16x8.sub(half ? mid(C) : lo(C), get(k32))),
      ...transposeStore(f, g, op, 64 * half),
    ];
    return [
      v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp)))),
      set(m63, i16x8.const(0x3f)), set(m30, i16x8.const(0x30)), set(k32, i16x8.const(32)),
      set(op, get(dp)),
      set(gp, get(gx)),
      set(scp, i32.add(get(wp), i32.const(8))),
      set(qp, i32.add(get(wp), i32.const(72))),
      set(qe, i32.add(get(wp), i32.const(QB))),
      forPtr(qp, qe, 48,
        v128.store(get(gp), f32x4.convertI32x4S(i32x4.extendLowI16x8S(i16x8.extendLowI8x16S(v128.load32Splat(get(scp)))))),
        set(A, v128.load(get(qp))),
        set(B, v128.load(get(qp), 16)),
        set(C, v128.load(get(qp), 32)),
        ...rows(0),
        ...rows(1),
        inc(op, 128),
        inc(gp, 16),
        inc(scp, 4)),
    ];
  },
  groupEnd: (_f, k, sum, gx) => [set(k.F[0]!, f32x4.add(get(k.F[0]!), f32x4.mul(f32x4.convertI32x4S(sum), v128.load(get(gx)))))],
  blockEnd: (_f, k, bx) => f32x4.mul(get(k.F[0]!), f32x4.mul(v128.load(get(bx)), f32x4.splat(f32.load(get(k.xs))))),
};

export const Q6K_FORMAT: BlockFormat = { type: 'q6_k', blockInputs: 256, quadBlockBytes: QB, xBlock: 256, bsumLen: 16, pack, emit, prefill: DECODED };
