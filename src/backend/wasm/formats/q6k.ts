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

/** The unsigned 6-bit code of value v (0..255) of a stored Q6_K block at `at`. */
function code(src: Uint8Array, at: number, v: number): number {
  const n = v >> 7;
  const l = v & 31;
  const quarter = (v >> 5) & 3;
  const ql = src[at + 64 * n + l + 32 * (quarter & 1)]!;
  const qh = src[at + 128 + 32 * n + l]!;
  return ((quarter >> 1 ? ql >> 4 : ql & 15) | (((qh >> (2 * quarter)) & 3) << 4));
}

function pack(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / STORED;
  const o16 = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
  for (let b = 0; b < nb; b++) {
    const o = b * QB;
    const at = (r: number) => r * rowBytes + b * STORED;
    for (let r = 0; r < 4; r++) {
      out[o + 2 * r] = rows[at(r) + 208]!; // d
      out[o + 2 * r + 1] = rows[at(r) + 209]!;
      for (let j = 0; j < 16; j++) out[o + 8 + 4 * j + r] = rows[at(r) + 192 + j]!;
    }
    for (let j = 0; j < 16; j++) {
      const h = (o + 72 + 48 * j) >>> 1; // in u16 units
      for (let i = 0; i < 8; i++) {
        const c = (r: number, g: number) => code(rows, at(r), 16 * j + 8 * g + i);
        o16[h + i] = c(0, 0) | (c(0, 1) << 6) | ((c(2, 0) & 15) << 12);
        o16[h + 8 + i] = c(1, 0) | (c(1, 1) << 6) | ((c(2, 1) & 15) << 12);
        o16[h + 16 + i] = c(3, 0) | (c(3, 1) << 6) | ((c(2, 0) >> 4) << 12) | ((c(2, 1) >> 4) << 14);
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
