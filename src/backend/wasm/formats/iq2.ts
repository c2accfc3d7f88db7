/**
 * IQ2_XXS, IQ2_XS, IQ2_S: packed layouts and SIMD128 kernels (see ../block-format.ts).
 *
 * Every 8 weights of these types are one entry of a codebook ("grid": 8 magnitudes from {8, 25,
 * 43}) plus 8 sign bits (IQ2_XXS / IQ2_XS: a 7-bit code, the 8th sign making the count of minus
 * signs even; IQ2_S: 8 stored bits), and every 32 (IQ2_XXS) or 16 values share a 4-bit scale s:
 * w = d · (2s + 1) / 8 · grid[idx][j] · ±1.
 *
 * Kernel, per entry and row (9–13 x64 instructions, TurboFan's output checked):
 *   grid: the index → `v128.load8x8_u(GRID + 8·idx)`, the 8 magnitudes as int16 lanes;
 *   signs: the sign byte → `v128.load(SIGNS + 16·byte)`, 8 int16 ±1, then `i16x8.mul`;
 *   `i32x4.dot_i16x8_s` with 8 int16 activations, added to the row's accumulator.
 * Rows go in quads (one activation load serves 4 rows); at the end of a scale group the 4 rows'
 * accumulators are reduced (hsum4), multiplied by the 4 rows' integer scales 2s + 1 (i32x4.mul)
 * and converted to f32; d, the block's activation scale and 1/8 multiply once per 256 values.
 * Activations are int16 with one scale per 256 (quant_x), as for the K-quants.
 *
 * i32 bounds (|x| ≤ 32767, grid values ≤ 43, 2s + 1 ≤ 31), per row and scale group before the
 * conversion: IQ2_XXS 32 values · 43 · 32767 · 31 = 1.40e9 (its largest grid entry sums to 203,
 * so really ≤ 8.3e8); IQ2_XS / IQ2_S 16 values · 43 · 32767 · 31 = 6.99e8. Both < 2^31 (tested with every
 * value at its maximum: test/wasm-iq2.test.ts).
 *
 * Several tokens at once (prefill, batched decode): 4 or 2 tokens share each decoded entry (grid
 * and signs looked up and multiplied once, then one dot product per token). They run in two
 * passes of 2 rows over each scale group: 4 rows × 2 or 4 tokens of accumulators, the activations
 * and the loads TurboFan issues first did not fit x64's 15 usable vector registers and spilled.
 *
 * | type    | quad-block (4 rows × 256 values)                                    | vs 4 stored blocks |
 * |---------|----------------------------------------------------------------------|--------------------|
 * | IQ2_XXS | 4 d; 4-bit scales [sub-block pair][row]; per 8 values 4 index + 4 sign bytes | 280 vs 264 (+6.1 %) |
 * | IQ2_XS  | 4 d; scale bytes [pair][row]; per 8 values the 4 rows' u16 codes as stored | 296 = 296 |
 * | IQ2_S   | 4 d; scale bytes [pair][row]; per 8 values 4 low index bytes, 4 sign bytes, 1 byte of high bits | 328 = 328 |
 *
 * Tables (20 KB of the region's 22.5): the three grids as bytes (2 + 4 + 8 KB), 8 int16 ±1 per
 * sign byte (4 KB) and per 7-bit sign code (2 KB, IQ2_XS: its u16 has no room for the 8th sign).
 *
 * Speed (2 vCPU Zen 4, 2048 → 10240, best of 15–60 calls, Q4_K alternating in the same process;
 * G weight·tokens/s): one thread T = 1: IQ2_XXS 13.8 (0.70× Q4_K), IQ2_XS 11.7 (0.59×), IQ2_S
 * 10.0 (0.50×); T = 16: 22.2 (1.18×), 16.3 (0.87×), 15.7 (0.83×). Two threads T = 1: 28.6 (0.71×),
 * 24.4 (0.61×), 19.8 (0.49×). At T = 1 the decoding is the cost: without the sign lookup and
 * multiply the kernel ran 1.57× faster, so the ±1 table and its i16x8.mul are a third of the time.
 *
 * Measured and dropped (A/B in one process, 2048 → 1024..10240, one thread):
 * - activations xor-ed with a 0/−1 mask instead of weights times ±1, with a stored per-row
 *   correction Σ (2s+1)·grid over negative lanes (+16 bytes per quad-block): +5 % at T = 1;
 * - more than one entry position per loop step (unrolled): 25–50 % slower, TurboFan issues all of
 *   the step's table loads first and spills;
 * - a 4 KB int16 copy of the IQ2_XXS grid (plain load instead of load8x8_u), an IQ2_S table
 *   giving the high index bits' address part per qh byte, u32 loads of 4 rows' codes: no change;
 * - one signed-grid table per (index, sign code) (IQ2_XXS: 256 KB): T = 1 at 0.95× Q4_K while
 *   weights and table fit L2, but no gain on a 2048 × 10240 matrix (the streamed weights evict
 *   the table), and it does not fit this family's table region.
 */
import {
  Func, ValType, type Local, type Op, seq, get, set, forPtr, block, loop, br, brIf, i32, f32, v128, i8x16, i16x8, i32x4, f32x4,
} from '../asm.js';
import type { BlockFormat } from '../block-format.js';
import { I32, zero, inc, hsum4, f16x4, initAcc, tokenGroupLoop, mulC, type Panel } from '../kernel-parts.js';
import { iqGrid, KSIGNS_IQ2XS } from '../../../tensor/iq-tables.js';
import { transposeStore, type DecodedSpec } from '../decoded.js';

// ---------------------------------------------------------------------------------------------
// tables (TABLE_REGIONS.iq2 = [2048, 24576))

const GRID_XXS = 2048; // 256 × 8 bytes
const GRID_XS = 4096; // 512 × 8
const GRID_S = 8192; // 1024 × 8
const SIGNS8 = 16384; // 256 × 8 int16 ±1, indexed by the 8 sign bits
const SIGNS7 = 20480; // 128 × 8 int16 ±1, indexed by the 7-bit sign code (KSIGNS_IQ2XS applied)

const gridBytes = (name: 'iq2xxs' | 'iq2xs' | 'iq2s'): Uint8Array => new Uint8Array(iqGrid(name).buffer.slice(0));

const signTable = (n: number, bits: (i: number) => number): Uint8Array => {
  const t = new Int16Array(n * 8);
  for (let i = 0; i < n; i++) for (let j = 0; j < 8; j++) t[8 * i + j] = (bits(i) >> j) & 1 ? -1 : 1;
  return new Uint8Array(t.buffer);
};

const i8x16shuf = (a: Op, b: Op, l: number[]): Op => i8x16.shuffle(a, b, l.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]));

// ---------------------------------------------------------------------------------------------
// the kernel, shared by the three types

interface Spec {
  readonly name: string;
  /** Packed bytes of a quad-block. */
  readonly QB: number;
  /** Offset of the entries (32 positions of posBytes: the 4 rows' codes for 8 values each) in a quad-block. */
  readonly entriesAt: number;
  readonly posBytes: number;
  /** Positions per scale group (4: 32 values, 2: 16 values). */
  readonly groupPos: number;
  /** Offset of the scales: per 2 groups, the 4 rows' bytes (low nibble: first group, high: second). */
  readonly scalesAt: number;
  /** Scalar work per position (into i32 locals tmp), before the rows. */
  pre(ep: Local, tmp: readonly Local[]): Op[];
  /** Scalar work per row (into i32 locals tmp). */
  entry(ep: Local, r: number, tmp: readonly Local[]): Op[];
  /** i16x8: row r's 8 grid magnitudes at position pointer ep. */
  grid(ep: Local, r: number, tmp: readonly Local[]): Op;
  /** i16x8: row r's 8 signs as ±1. */
  signs(ep: Local, r: number, tmp: readonly Local[]): Op;
}

function emitKernel(S: Spec): Func {
  const f = new Func(`mm_${S.name}`, new Array<ValType>(13).fill(I32));
  const [w, x, xs, , out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, we, ep, ee, sp, ge, q, t, e0] = f.locals32(9);
  const xk = f.locals32(4); // token k's activations (current position)
  const xk0 = f.locals32(4); // ... at the group's first position
  const xsk = f.locals32(4); // token k's activation scales (current block)
  const acc = f.vlocals(4); // token k's outputs (f32, lanes = the quad's rows)
  const fsum = f.vlocals(4); // token k's sum over the block's groups (f32, before d · xs / 8)
  const xv = f.vlocals(4);
  const part = f.vlocals(4); // n = 4: rows 0, 1 half-reduced (hsum4's first level) while rows 2, 3 run
  const [g, sv, sb, one, k31] = f.vlocals(5);
  const tmp = f.locals32(2);
  const QB = S.QB;
  const outAddr = (k: number) => i32.add(get(out), mulC(i32.add(i32.mul(i32.add(get(t), i32.const(k)), get(outP)), mulC(get(q), 4)), 4));
  const pairSum = (a: Op, b: Op) => i32x4.add(i8x16shuf(a, b, [0, 4, 1, 5]), i8x16shuf(a, b, [2, 6, 3, 7]));

  /** Tokens t..t+n-1 (n = 1, 2, 4) against quad q in panel pn. */
  const body = (n: 1 | 2 | 4, pn: Panel): Op[] => {
    const ks = Array.from({ length: n }, (_, k) => k);
    // rows per pass over a group's positions: one token takes the 4 rows at once; with more,
    // 4 rows' accumulators for every token plus their table loads did not fit the 15 registers
    const passes = n === 1 ? [[0, 1, 2, 3]] : [[0, 1], [2, 3]];
    const racc = ks.map(() => f.vlocals(n === 1 ? 4 : 2));
    const slot = (r: number) => (n === 1 ? r : r & 1);
    const step = (rows: number[]): Op[] => [
      ...ks.map((k) => set(xv[k]!, v128.load(get(xk[k]!)))),
      ...S.pre(ep, tmp),
      ...rows.flatMap((r) => [
        ...S.entry(ep, r, tmp),
        set(g, i16x8.mul(S.grid(ep, r, tmp), S.signs(ep, r, tmp))),
        ...ks.map((k) => set(racc[k]![slot(r)]!, i32x4.add(get(racc[k]![slot(r)]!), i32x4.dotI16x8S(get(g), get(xv[k]!))))),
      ]),
      ...ks.map((k) => inc(xk[k]!, 16)),
    ];
    const group = (hi: boolean): Op[] => [
      set(ge, i32.add(get(ep), i32.const(S.groupPos * S.posBytes))),
      ...(n > 1 ? [set(e0, get(ep)), ...ks.map((k) => set(xk0[k]!, get(xk[k]!)))] : []),
      ...passes.flatMap((rows, pass) => [
        ...(pass ? [set(ep, get(e0)), ...ks.map((k) => set(xk[k]!, get(xk0[k]!)))] : []),
        ...ks.flatMap((k) => racc[k]!.map((l) => set(l, zero()))),
        forPtr(ep, ge, S.posBytes, ...step(rows)),
        // after rows 0, 1: their half-reduced sums [a0+a2, b0+b2, a1+a3, b1+b3] wait in part[k]
        ...(pass === 0 && n > 1 ? ks.map((k) => set(part[k]!, pairSum(get(racc[k]![0]!), get(racc[k]![1]!)))) : []),
      ]),
      // 2s + 1 of the 4 rows: (b >> 3) | 1 for the high nibble, ((b << 1) | 1) & 31 for the low one
      set(sv, hi ? v128.or(i32x4.shrU(get(sb), 3), get(one)) : v128.and(v128.or(i32x4.shl(get(sb), 1), get(one)), get(k31))),
      ...ks.map((k) => {
        const rowSums = n === 1
          ? hsum4(f, i32x4.add, racc[k]![0]!, racc[k]![1]!, racc[k]![2]!, racc[k]![3]!)
          : (() => {
            const cd = pairSum(get(racc[k]![0]!), get(racc[k]![1]!));
            return i32x4.add(i8x16shuf(get(part[k]!), cd, [0, 1, 4, 5]), i8x16shuf(get(part[k]!), cd, [2, 3, 6, 7]));
          })();
        return set(fsum[k]!, f32x4.add(get(fsum[k]!), f32x4.convertI32x4S(i32x4.mul(rowSums, get(sv)))));
      }),
    ];
    return [
      set(wp, i32.add(get(pn.pw), i32.mul(get(q), mulC(get(pn.pnb), QB)))),
      set(we, i32.add(get(wp), mulC(get(pn.pnb), QB))),
      ...ks.flatMap((k) => {
        const block0 = i32.add(i32.mul(i32.add(get(t), i32.const(k)), get(nb)), get(pn.b0));
        return [set(xk[k]!, i32.add(get(x), mulC(block0, 512))), set(xsk[k]!, i32.add(get(xs), mulC(block0, 4)))];
      }),
      ...ks.map((k) => initAcc(pn, acc[k]!, outAddr(k))),
      forPtr(wp, we, QB,
        set(ep, i32.add(get(wp), i32.const(S.entriesAt))),
        set(sp, i32.add(get(wp), i32.const(S.scalesAt))),
        set(ee, i32.add(get(ep), i32.const(32 * S.posBytes))),
        ...ks.map((k) => set(fsum[k]!, zero())),
        block(loop(
          brIf(1, i32.geU(get(ep), get(ee))),
          set(sb, i32x4.extendLowI16x8U(i16x8.extendLowI8x16U(v128.load32Zero(get(sp))))),
          ...group(false),
          ...group(true),
          inc(sp, 4),
          br(0))),
        set(sv, f16x4(f, v128.load16x4U(get(wp)))),
        ...ks.flatMap((k) => [
          set(acc[k]!, f32x4.add(get(acc[k]!), f32x4.mul(get(fsum[k]!),
            f32x4.mul(get(sv), f32x4.splat(f32.mul(f32.load(get(xsk[k]!)), f32.const(0.125))))))),
          inc(xsk[k]!, 4),
        ])),
      ...ks.map((k) => v128.store(outAddr(k), get(acc[k]!))),
    ];
  };
  f.body = seq(set(one, i32x4.const(1)), set(k31, i32x4.const(31)), tokenGroupLoop(f, T, tile, start, end, q, t, [4, 2, 1] as const, (n, pn) => body(n, pn!), { w, nb, pb, quadBlockBytes: QB, outP }));
  return f;
}

/**
 * The prefill kernel (decoded.ts): per entry position and row grid · signs · (2s + 1) as 8 int16
 * (≤ 43 · 31 = 1333), the 4 rows transposed into pair vectors. A group's i32 sum is then the
 * kernel's rowSums · (2s + 1), and the f32 steps are emitKernel's: fsum += conv(sum) per group,
 * acc += fsum · (d · xs / 8) per block.
 */
function decodedSpec(S: Spec): DecodedSpec {
  const scaleGroups = 32 / S.groupPos;
  return {
    name: `mmp_${S.name}`, QB: S.QB, G: S.groupPos === 4 ? 32 : 16, xBlock: 256, bsumLen: 0, groupExtra: 0, blockExtra: 16, accs: 1,
    decode(f, wp, dp, _gx, bx) {
      const [op, ep, ge, sp, se] = f.locals32(5);
      const tmp = f.locals32(2);
      const sc = f.vlocals(4);
      const g = f.vlocals(4);
      const rows = [0, 1, 2, 3];
      const half = (h: number): Op[] => [
        ...rows.map((r) => set(sc[r]!, i16x8.splat(i32.or(i32.shl(i32.and(i32.shrU(i32.load8U(get(sp), r), i32.const(4 * h)), i32.const(15)), i32.const(1)), i32.const(1))))),
        set(ge, i32.add(get(ep), i32.const(S.groupPos * S.posBytes))),
        forPtr(ep, ge, S.posBytes,
          ...S.pre(ep, tmp),
          ...rows.flatMap((r) => [...S.entry(ep, r, tmp), set(g[r]!, i16x8.mul(i16x8.mul(S.grid(ep, r, tmp), S.signs(ep, r, tmp)), get(sc[r]!)))]),
          ...transposeStore(f, g, op, 0),
          inc(op, 64)),
      ];
      return [
        v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp)))),
        set(op, get(dp)),
        set(ep, i32.add(get(wp), i32.const(S.entriesAt))),
        set(sp, i32.add(get(wp), i32.const(S.scalesAt))),
        set(se, i32.add(get(sp), i32.const(2 * scaleGroups))),
        forPtr(sp, se, 4, ...half(0), ...half(1)),
      ];
    },
    groupEnd: (_f, k, s) => [set(k.F[0]!, f32x4.add(get(k.F[0]!), f32x4.convertI32x4S(s)))],
    blockEnd: (_f, k, bx) => f32x4.mul(get(k.F[0]!), f32x4.mul(v128.load(get(bx)), f32x4.splat(f32.mul(f32.load(get(k.xs)), f32.const(0.125))))),
  };
}

const u32 = (a: Uint8Array, p: number): number => (a[p]! | (a[p + 1]! << 8) | (a[p + 2]! << 16) | (a[p + 3]! << 24)) >>> 0;

// ---------------------------------------------------------------------------------------------
// IQ2_XXS

/**
 * Quad-block (280 bytes): d[4] f16; scales [4 sub-block pairs][4 rows] (nibbles s, low: even sub-block);
 * per entry position k (32 of 8 values): the 4 rows' grid indices, then their 8 sign bits (KSIGNS applied).
 */
const XXS_QB = 280;

function packXXS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = new DataView(rows.buffer, rows.byteOffset, rows.byteLength);
  const o32 = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
  const nb = rowBytes / 66;
  for (let b = 0; b < nb; b++) {
    const o = b * XXS_QB;
    const s0 = b * 66;
    const s1 = s0 + rowBytes;
    const s2 = s1 + rowBytes;
    const s3 = s2 + rowBytes;
    for (let r = 0; r < 4; r++) {
      out[o + 2 * r] = rows[s0 + r * rowBytes]!;
      out[o + 2 * r + 1] = rows[s0 + r * rowBytes + 1]!;
    }
    for (let ib = 0; ib < 8; ib++) {
      const q = 2 + 8 * ib;
      const g0 = dv.getUint32(s0 + q, true);
      const g1 = dv.getUint32(s1 + q, true);
      const g2 = dv.getUint32(s2 + q, true);
      const g3 = dv.getUint32(s3 + q, true);
      const a0 = dv.getUint32(s0 + q + 4, true);
      const a1 = dv.getUint32(s1 + q + 4, true);
      const a2 = dv.getUint32(s2 + q + 4, true);
      const a3 = dv.getUint32(s3 + q + 4, true);
      const sh = 4 * (ib & 1);
      const sc = o + 8 + 4 * (ib >> 1);
      out[sc] |= (a0 >>> 28) << sh;
      out[sc + 1] |= (a1 >>> 28) << sh;
      out[sc + 2] |= (a2 >>> 28) << sh;
      out[sc + 3] |= (a3 >>> 28) << sh;
      // entry k = 4ib + l: the 4 rows' grid index bytes as a word, then their sign bytes
      for (let l = 0, e = (o + 24 + 32 * ib) >> 2; l < 4; l++, e += 2) {
        const gs = 8 * l;
        const ss = 7 * l;
        o32[e] = ((g0 >>> gs) & 255) | (((g1 >>> gs) & 255) << 8) | (((g2 >>> gs) & 255) << 16) | (((g3 >>> gs) & 255) << 24);
        o32[e + 1] = KSIGNS_IQ2XS[(a0 >>> ss) & 127]! | (KSIGNS_IQ2XS[(a1 >>> ss) & 127]! << 8)
          | (KSIGNS_IQ2XS[(a2 >>> ss) & 127]! << 16) | (KSIGNS_IQ2XS[(a3 >>> ss) & 127]! << 24);
      }
    }
  }
}

const XXS: Spec = {
  name: 'iq2_xxs', QB: XXS_QB, entriesAt: 24, posBytes: 8, groupPos: 4, scalesAt: 8,
  pre: () => [],
  entry: () => [],
  grid: (ep, r) => v128.load8x8U(i32.shl(i32.load8U(get(ep), r), i32.const(3)), GRID_XXS),
  signs: (ep, r) => v128.load(i32.shl(i32.load8U(get(ep), 4 + r), i32.const(4)), SIGNS8),
};

// ---------------------------------------------------------------------------------------------
// IQ2_XS

/**
 * Quad-block (296 bytes, = 4 stored blocks): d[4] f16; scales [8 group pairs][4 rows] (ggml's
 * bytes); per entry position k: the 4 rows' u16 codes as stored (9-bit grid index | 7-bit sign code << 9).
 */
const XS_QB = 296;

function packXS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = new DataView(rows.buffer, rows.byteOffset, rows.byteLength);
  const o32 = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
  const nb = rowBytes / 74;
  for (let b = 0; b < nb; b++) {
    const o = b * XS_QB;
    const s0 = b * 74;
    const s1 = s0 + rowBytes;
    const s2 = s1 + rowBytes;
    const s3 = s2 + rowBytes;
    for (let r = 0; r < 4; r++) {
      const s = s0 + r * rowBytes;
      out[o + 2 * r] = rows[s]!;
      out[o + 2 * r + 1] = rows[s + 1]!;
      for (let j = 0; j < 8; j++) out[o + 8 + 4 * j + r] = rows[s + 66 + j]!;
    }
    // entry k: rows 0, 1 and rows 2, 3 as two words of their u16 codes
    for (let k = 0, e = (o + 40) >> 2, p = 2; k < 32; k++, e += 2, p += 2) {
      o32[e] = dv.getUint16(s0 + p, true) | (dv.getUint16(s1 + p, true) << 16);
      o32[e + 1] = dv.getUint16(s2 + p, true) | (dv.getUint16(s3 + p, true) << 16);
    }
  }
}

const XS: Spec = {
  name: 'iq2_xs', QB: XS_QB, entriesAt: 40, posBytes: 8, groupPos: 2, scalesAt: 8,
  pre: () => [],
  entry: (ep, r, [c]) => [set(c!, i32.load16U(get(ep), 2 * r))],
  grid: (ep, r, [c]) => v128.load8x8U(i32.and(i32.shl(get(c!), i32.const(3)), i32.const(0xff8)), GRID_XS),
  signs: (ep, r, [c]) => v128.load(i32.and(i32.shrU(get(c!), i32.const(5)), i32.const(0x7f0)), SIGNS7),
};

// ---------------------------------------------------------------------------------------------
// IQ2_S

/**
 * Quad-block (328 bytes, = 4 stored blocks): d[4] f16; scales [8 group pairs][4 rows]; per entry
 * position k (9 bytes): the 4 rows' low 8 index bits, their 8 sign bits, and one byte of the 4
 * rows' 2 high index bits (row r at bit 2r).
 */
const S_QB = 328;

function packS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 82;
  for (let b = 0; b < nb; b++) {
    const o = b * S_QB;
    const s0 = b * 82;
    const s1 = s0 + rowBytes;
    const s2 = s1 + rowBytes;
    const s3 = s2 + rowBytes;
    for (let r = 0; r < 4; r++) {
      const s = s0 + r * rowBytes;
      out[o + 2 * r] = rows[s]!;
      out[o + 2 * r + 1] = rows[s + 1]!;
      for (let j = 0; j < 8; j++) out[o + 8 + 4 * j + r] = rows[s + 74 + j]!;
    }
    for (let k = 0, p = o + 40; k < 32; k++, p += 9) {
      out[p] = rows[s0 + 2 + k]!;
      out[p + 1] = rows[s1 + 2 + k]!;
      out[p + 2] = rows[s2 + 2 + k]!;
      out[p + 3] = rows[s3 + 2 + k]!;
      out[p + 4] = rows[s0 + 34 + k]!;
      out[p + 5] = rows[s1 + 34 + k]!;
      out[p + 6] = rows[s2 + 34 + k]!;
      out[p + 7] = rows[s3 + 34 + k]!;
      const h = 66 + (k >> 2);
      const sh = 2 * (k & 3);
      out[p + 8] = ((rows[s0 + h]! >> sh) & 3) | (((rows[s1 + h]! >> sh) & 3) << 2) | (((rows[s2 + h]! >> sh) & 3) << 4) | (((rows[s3 + h]! >> sh) & 3) << 6);
    }
  }
}

const S_: Spec = {
  name: 'iq2_s', QB: S_QB, entriesAt: 40, posBytes: 9, groupPos: 2, scalesAt: 8,
  pre: (ep, [, h]) => [set(h!, i32.load8U(get(ep), 8))],
  entry: () => [],
  grid: (ep, r, [, h]) => v128.load8x8U(i32.or(
    i32.shl(i32.load8U(get(ep), r), i32.const(3)),
    i32.and(i32.shl(get(h!), i32.const(11 - 2 * r)), i32.const(0x1800))), GRID_S),
  signs: (ep, r) => v128.load(i32.shl(i32.load8U(get(ep), 4 + r), i32.const(4)), SIGNS8),
};

export const IQ2_FORMATS: readonly BlockFormat[] = [
  {
    type: 'iq2_xxs', blockInputs: 256, quadBlockBytes: XXS_QB, xBlock: 256, bsumLen: 0,
    pack: packXXS, emit: () => emitKernel(XXS), prefill: decodedSpec(XXS),
    tables: [
      { at: GRID_XXS, bytes: gridBytes('iq2xxs') },
      { at: SIGNS8, bytes: signTable(256, (i) => i) },
    ],
  },
  {
    type: 'iq2_xs', blockInputs: 256, quadBlockBytes: XS_QB, xBlock: 256, bsumLen: 0,
    pack: packXS, emit: () => emitKernel(XS), prefill: decodedSpec(XS),
    tables: [
      { at: GRID_XS, bytes: gridBytes('iq2xs') },
      { at: SIGNS7, bytes: signTable(128, (i) => KSIGNS_IQ2XS[i]!) },
    ],
  },
  {
    type: 'iq2_s', blockInputs: 256, quadBlockBytes: S_QB, xBlock: 256, bsumLen: 0,
    pack: packS, emit: () => emitKernel(S_), prefill: decodedSpec(S_),
    tables: [{ at: GRID_S, bytes: gridBytes('iq2s') }],
  },
];
