/**
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M: packed layouts and SIMD128 kernels (see ../block-format.ts).
 *
 * These types store, per group of 8 values, indices into codebooks ("grids") of 4-value (IQ3) or
 * 8-value (IQ1) entries. SIMD128 has no gather, so every entry is one scalar index extraction and
 * one table load per row: the kernels are bound by instructions per weight, not by memory. What
 * keeps that count low:
 * - the grids live in lookup tables in every shard's first page (TABLE_REGIONS['iq3-iq1']), stored
 *   so that one load yields int16 lanes ready for i32x4.dot_i16x8_s: IQ3 entries as 4 × int16 (two
 *   entries per vector: load64_zero + load64_lane), IQ1 entries as 8 × int8 (load8x8_s); IQ3's signs
 *   as a ±1 int16 vector per sign byte (one i16x8.mul);
 * - packed groups of 4 rows keep the rows' bit fields of a group side by side, so a sub-block of 4
 *   rows is a loop step with a fixed stride, and fields are read through shared i32 windows with a
 *   shift and an and each (`FieldReader`);
 * - per 32 values the 4 rows' integer sums are summed horizontally, then scaled as one vector over
 *   the rows (scales from small pair tables) and converted to f32;
 * - with several tokens (prefill, batched decode) each row's decoded 8 weights serve up to 4 tokens
 *   (`tokenGroupLoop`): the decoding is most of the work.
 */
import { TABLE_REGIONS, type BlockFormat } from '../block-format.js';
import {
  Func, ValType, type Local, type Op, seq, get, set, forPtr, select,
  i32, v128, i8x16, i16x8, i32x4, f32x4,
} from '../asm.js';
import { transposeStore, type DecodedSpec, type DTok } from '../decoded.js';
import { I32, zero, inc, mulC, hsum4, f16x4, initAcc, blockPointers, tokenGroupLoop, type Panel } from '../kernel-parts.js';
import { iqGrid, KSIGNS_IQ2XS } from '../../../tensor/iq-tables.js';

// ---------------------------------------------------------------------------------------------
// lookup tables (written into every shard at these addresses; one format of the family lists them)

const [REGION_START, REGION_END] = TABLE_REGIONS['iq3-iq1'];
const TABLES: { at: number; bytes: Uint8Array }[] = [];
let tableTop: number = REGION_START;
function table(bytes: Uint8Array): number {
  const at = tableTop;
  tableTop = Math.ceil((at + bytes.length) / 16) * 16;
  if (tableTop > REGION_END) throw new Error('iq3-iq1 tables exceed their region');
  TABLES.push({ at, bytes });
  return at;
}
const i16Bytes = (v: ArrayLike<number>): Uint8Array => new Uint8Array(Int16Array.from(v).buffer);
const i32Bytes = (v: ArrayLike<number>): Uint8Array => new Uint8Array(Int32Array.from(v).buffer);
const bit = (v: number, j: number): number => (v >> j) & 1;

/** iq1s_grid as int8 (2048 entries × 8 values in {−1, 0, 1}): 16 KB. */
const GRID_IQ1 = table(new Uint8Array(Int8Array.from(iqGrid('iq1s')).buffer));
/** iq3s_grid as int16 (512 entries × 4 values, 8 bytes each): 4 KB. */
const GRID_IQ3S = table(i16Bytes(iqGrid('iq3s')));
/** iq3xxs_grid / 2 as int16 (every level is even: 4 … 62 → 2 … 31; 256 × 8 bytes): 2 KB. */
const GRID_IQ3XXS = table(i16Bytes(Array.from(iqGrid('iq3xxs'), (g) => g / 2)));
/** Per sign byte s: 8 × int16 ±1 (bit j set → lane j negative): 4 KB. (An int8 table read with load8x8_s measured 2–5 % slower.) */
const SIGNS16 = table(i16Bytes(Array.from({ length: 256 * 8 }, (_, i) => (bit(i >> 3, i & 7) ? -1 : 1))));
/** Per byte lo | hi << 4 of two 4-bit scales: i32 [2·lo + 1, 2·hi + 1] (IQ3: two rows' scales). */
const ODD4_PAIRS = table(i32Bytes(Array.from({ length: 512 }, (_, i) => 2 * (((i >> 1) >> (4 * (i & 1))) & 15) + 1)));
/** IQ1_S, per nibble n = scale s | delta-sign bit << 3: i32 [8·(2s+1), ±(2s+1)] (minus when the bit is set). */
const IQ1S_SCALES = table(i32Bytes(Array.from({ length: 32 }, (_, i) => {
  const n = i >> 1;
  const S = 2 * (n & 7) + 1;
  return i & 1 ? (n & 8 ? -S : S) : 8 * S;
})));
/** IQ1_M, per nibble of 4 rows' delta-sign bits: i32x4 of ±1 (minus where the row's bit is set). */
const IQ1M_SIGNS = table(i32Bytes(Array.from({ length: 64 }, (_, i) => (bit(i >> 2, i & 3) ? -1 : 1))));
/** IQ1_M, per 6 bits a | b << 3 (two rows' 3-bit scales): i32 [2a+1, 2b+1]. */
const IQ1M_SCALES = table(i32Bytes(Array.from({ length: 128 }, (_, i) => 2 * (((i >> 1) >> (3 * (i & 1))) & 7) + 1)));

// ---------------------------------------------------------------------------------------------
// bit fields of the packed groups (the packers below write them with shifts of their own)

/** A bit field of a packed step: `bits` bits at bit `pos` from the step's first byte. */
interface Field {
  readonly pos: number;
  readonly bits: number;
}

/**
 * Reads bit fields of the `bytes` bytes at ptr through i32 windows: each field as (field << k) (a
 * byte offset into a table of 2^k-byte entries) with a shift and an and. Fields that fit one
 * 32-bit window share its load; windows never reach outside the step's bytes. (One load per field,
 * byte-aligned fields, or fields extracted with SIMD lane moves all measured slower.)
 */
class FieldReader {
  private readonly windows = new Map<number, Local>();
  private readonly order: number[] = [];
  constructor(f: Func, private readonly ptr: Local, bytes: number, fields: readonly Field[]) {
    let cur = -1;
    for (const fd of [...fields].sort((a, b) => a.pos - b.pos)) {
      if (cur >= 0 && fd.pos >= 8 * cur && fd.pos + fd.bits <= 8 * cur + 32) continue;
      cur = Math.max(0, Math.min(fd.pos >> 3, bytes - 4));
      if (fd.pos + fd.bits > 8 * cur + 32) throw new Error('field does not fit a window');
      if (!this.windows.has(cur)) {
        this.windows.set(cur, f.local(I32));
        this.order.push(cur);
      }
    }
  }
  /** The window loads (at the start of a step). */
  loads(): Op[] {
    return this.order.map((b) => set(this.windows.get(b)!, i32.load(get(this.ptr), b)));
  }
  /** field << k. */
  get(fd: Field, k: number): Op {
    const w = this.order.find((b) => fd.pos >= 8 * b && fd.pos + fd.bits <= 8 * b + 32);
    if (w === undefined) throw new Error('field outside the planned windows');
    const W = get(this.windows.get(w)!);
    const sh = fd.pos - 8 * w - k;
    const shifted = sh > 0 ? i32.shrU(W, i32.const(sh)) : sh < 0 ? i32.shl(W, i32.const(-sh)) : W;
    return i32.and(shifted, i32.const(((1 << fd.bits) - 1) << k));
  }
}

// ---------------------------------------------------------------------------------------------
// loops

/**
 * How a kernel splits the 4 rows of a quad into group loops, per token-group size n: a loop over a
 * sub-block's groups per entry (the activations are re-read per loop). TurboFan issues a loop
 * body's loads first, so n tokens × 4 rows of accumulators plus the loaded vectors would spill;
 * with 4 tokens one row per loop measured best, with 2 tokens two rows.
 */
export type RowSplit = Readonly<Record<number, readonly (readonly number[])[]>>;

/** The common prologue of the kernels: the per-call locals and the n-token body's pointers. */
interface Common {
  readonly f: Func;
  readonly x: Local;
  readonly xs: Local;
  readonly bsum: Local;
  readonly out: Local;
  readonly nb: Local;
  readonly outP: Local;
  readonly q: Local;
  readonly t: Local;
  /** Bytes per token of the activations: nb · 512. */
  readonly xrow: Local;
}
function common(name: string): Common & { T: Local; tile: Local; pb: Local; start: Local; end: Local; w: Local } {
  const f = new Func(name, new Array<ValType>(13).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [q, t, xrow] = f.locals32(3);
  return { f, w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, q, t, xrow };
}
/** Address of out[(t + k)·outP + 4q]. */
const outAddr = (c: Common, k: number): Op => i32.add(get(c.out), mulC(i32.add(i32.mul(i32.add(get(c.t), i32.const(k)), get(c.outP)), mulC(get(c.q), 4)), 4));
/** p + k · bytes-per-token of an array with `perBlock` bytes per block (activations: 512, scales per 32: 32). */
const tokenOff = (c: Common, p: Local, k: number, perBlock: number): Op => (k ? i32.add(get(p), mulC(get(c.nb), perBlock * k)) : get(p));

// ---------------------------------------------------------------------------------------------
// IQ3: 4-value grid entries, two per group of 8 values, a sign byte per group, a 4-bit scale per 32

/**
 * Packed IQ3 quad-block: 4 × f16 d, then 8 sub-blocks (32 values): 2 bytes of the 4 rows' scale
 * nibbles (row r at bits 4r), then 4 groups (8 values) of `gBytes` each holding the 4 rows' fields.
 */
interface Iq3Spec {
  readonly type: 'iq3_s' | 'iq3_xxs';
  readonly storedBytes: number;
  readonly gBytes: number;
  readonly idxBits: 8 | 9;
  readonly grid: number;
  /** Field positions of row r in a group: grid entries A, B (values 0–3, 4–7) and the sign byte. */
  readonly a: (r: number) => Field;
  readonly b: (r: number) => Field;
  readonly s: (r: number) => Field;
  /** Float factor on d · Σ (2n+1) · Σ grid · sign · x. */
  readonly dFactor: number;
}

const IQ3_SB_HEADER = 2;
const iq3SubBytes = (s: Iq3Spec): number => IQ3_SB_HEADER + 4 * s.gBytes;
const iq3QuadBytes = (s: Iq3Spec): number => 8 + 8 * iq3SubBytes(s);

function packIq3(s: Iq3Spec, rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const QB = iq3QuadBytes(s);
  const SB = iq3SubBytes(s);
  const nb = rowBytes / s.storedBytes;
  const xxs = s.type === 'iq3_xxs';
  for (let b = 0; b < nb; b++) {
    const o = b * QB;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * s.storedBytes;
      out[o + 2 * r] = rows[p]!;
      out[o + 2 * r + 1] = rows[p + 1]!;
    }
    for (let ib = 0; ib < 8; ib++) {
      const sb = o + 8 + ib * SB;
      if (xxs) packIq3XxsSub(rows, rowBytes, b * s.storedBytes, ib, out, sb);
      else packIq3SSub(rows, rowBytes, b * s.storedBytes, ib, out, sb);
    }
  }
}

/**
 * IQ3_XXS sub-block ib of the 4 rows (row r's block at p + r·rowBytes) → packed at sb: header of
 * the scale nibbles (row r at bit 4r), per group l the rows' grid indices a, b at bytes 2r, 2r + 1
 * and their sign bytes (KSIGNS applied) at 8 + r.
 */
function packIq3XxsSub(rows: Uint8Array, rowBytes: number, p: number, ib: number, out: Uint8Array, sb: number): void {
  for (let r = 0; r < 4; r++, p += rowBytes) {
    const aux = u32At(rows, p + 66 + 4 * ib);
    out[sb + (r >> 1)]! |= (aux >>> 28) << (4 * (r & 1));
    const q = p + 2 + 8 * ib;
    for (let l = 0, g = sb + IQ3_SB_HEADER; l < 4; l++, g += 12) {
      out[g + 2 * r] = rows[q + 2 * l]!;
      out[g + 2 * r + 1] = rows[q + 2 * l + 1]!;
      out[g + 8 + r] = KSIGNS_IQ2XS[(aux >>> (7 * l)) & 127]!;
    }
  }
}

/**
 * IQ3_S sub-block ib of the 4 rows → packed at sb: header of the scale nibbles, per group l the
 * rows' 9-bit indices a | b << 9 at bit 18r (72 bits, bytes 0-8), then their sign bytes at 9 + r.
 */
function packIq3SSub(rows: Uint8Array, rowBytes: number, p: number, ib: number, out: Uint8Array, sb: number): void {
  const p1 = p + rowBytes;
  const p2 = p1 + rowBytes;
  const p3 = p2 + rowBytes;
  const sc = 106 + (ib >> 1);
  const ssh = 4 * (ib & 1);
  out[sb] = ((rows[p + sc]! >> ssh) & 15) | (((rows[p1 + sc]! >> ssh) & 15) << 4);
  out[sb + 1] = ((rows[p2 + sc]! >> ssh) & 15) | (((rows[p3 + sc]! >> ssh) & 15) << 4);
  const h0 = rows[p + 66 + ib]!;
  const h1 = rows[p1 + 66 + ib]!;
  const h2 = rows[p2 + 66 + ib]!;
  const h3 = rows[p3 + 66 + ib]!;
  for (let l = 0, g = sb + IQ3_SB_HEADER; l < 4; l++, g += 13) {
    const q = 2 + 8 * ib + 2 * l; // a at q, b at q + 1; their ninth bits 2l, 2l + 1 of qh[ib]
    const hs = 2 * l;
    const v0 = rows[p + q]! | (rows[p + q + 1]! << 9) | (((h0 >> hs) & 1) << 8) | (((h0 >> hs) & 2) << 16);
    const v1 = rows[p1 + q]! | (rows[p1 + q + 1]! << 9) | (((h1 >> hs) & 1) << 8) | (((h1 >> hs) & 2) << 16);
    const v2 = rows[p2 + q]! | (rows[p2 + q + 1]! << 9) | (((h2 >> hs) & 1) << 8) | (((h2 >> hs) & 2) << 16);
    const v3 = rows[p3 + q]! | (rows[p3 + q + 1]! << 9) | (((h3 >> hs) & 1) << 8) | (((h3 >> hs) & 2) << 16);
    const lo = v0 | (v1 << 18);
    const mid = (v1 >>> 14) | (v2 << 4) | (v3 << 22);
    out[g] = lo;
    out[g + 1] = lo >>> 8;
    out[g + 2] = lo >>> 16;
    out[g + 3] = lo >>> 24;
    out[g + 4] = mid;
    out[g + 5] = mid >>> 8;
    out[g + 6] = mid >>> 16;
    out[g + 7] = mid >>> 24;
    out[g + 8] = v3 >>> 10;
    const sg = 74 + 4 * ib + l;
    out[g + 9] = rows[p + sg]!;
    out[g + 10] = rows[p1 + sg]!;
    out[g + 11] = rows[p2 + sg]!;
    out[g + 12] = rows[p3 + sg]!;
  }
}

/**
 * mm_iq3_*(w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, tid). Per group of 8 values and
 * row: the two grid entries into one vector (load64_zero + load64_lane: 1.3× faster than two loads
 * and a shuffle), times the ±1 signs (i16x8.mul), then a dot product with each token's 8 int16
 * activations. Per sub-block the 4 rows' i32 sums go through one horizontal sum, are multiplied by
 * the rows' 2n+1, converted to f32 and scaled by the sub-block's activation scale (a row's integer
 * sum over a whole super-block could reach 8e9); d per super-block.
 */
function emitIq3(s: Iq3Spec, split: RowSplit, sizes: readonly number[], name = `mm_${s.type}`): Func {
  const c = common(name);
  const { f } = c;
  const [wp, we, sp, se, gp, ge, xb, xsb, unused] = f.locals32(9);
  const QB = iq3QuadBytes(s);
  const SB = iq3SubBytes(s);
  const N = Math.max(...sizes);
  const xpk = f.locals32(N);
  const v = Array.from({ length: 4 }, () => f.vlocals(N)); // [row][token]
  const fs = f.vlocals(N);
  const acc = f.vlocals(N);
  const xv = f.vlocals(N);
  const [wv, s4] = f.vlocals(2);
  const pair = (h: number): Field => ({ pos: 8 * h, bits: 8 }); // two rows' scale nibbles
  const scales = new FieldReader(f, sp, SB, [pair(0), pair(1)]);
  const body = (n: number, pn: Panel): Op[] => {
    const ks = Array.from({ length: n }, (_, k) => k);
    const groupLoop = (rows: readonly number[]): Op => {
      const fr = new FieldReader(f, gp, s.gBytes, rows.flatMap((r) => [s.a(r), s.b(r), s.s(r)]));
      return seq(
        set(gp, i32.add(get(sp), i32.const(IQ3_SB_HEADER))),
        ...ks.map((k) => set(xpk[k]!, k ? i32.add(get(xb), i32.mul(get(c.xrow), i32.const(k))) : get(xb))),
        forPtr(gp, ge, s.gBytes,
          ...fr.loads(),
          ...ks.map((k) => set(xv[k]!, v128.load(get(xpk[k]!)))),
          ...rows.flatMap((r) => [
            set(wv, i16x8.mul(v128.load64Lane(fr.get(s.b(r), 3), v128.load64Zero(fr.get(s.a(r), 3), s.grid), 1, s.grid), v128.load(fr.get(s.s(r), 4), SIGNS16))),
            ...ks.map((k) => set(v[r]![k]!, i32x4.add(get(v[r]![k]!), i32x4.dotI16x8S(get(wv), get(xv[k]!))))),
          ]),
          ...ks.map((k) => inc(xpk[k]!, 16))),
      );
    };
    return [
      ...blockPointers({ w: wp, we, x: xb, xs: unused }, { x: c.x, xs: c.xs, nb: c.nb }, c.q, c.t, pn, { weights: QB, x: 512, bsum: 0 }),
      set(xsb, i32.add(get(c.xs), i32.shl(i32.add(i32.mul(get(c.t), get(c.nb)), get(pn.b0)), i32.const(5)))), // 8 scales per block
      ...ks.map((k) => initAcc(pn, acc[k]!, outAddr(c, k))),
      forPtr(wp, we, QB,
        ...ks.map((k) => set(fs[k]!, zero())),
        set(sp, i32.add(get(wp), i32.const(8))),
        set(se, i32.add(get(wp), i32.const(QB))),
        forPtr(sp, se, SB,
          ...ks.flatMap((k) => v.map((vr) => set(vr[k]!, zero()))),
          set(ge, i32.add(get(sp), i32.const(SB))),
          ...(split[n] ?? [[0, 1, 2, 3]]).map(groupLoop),
          inc(xb, 64),
          ...scales.loads(),
          set(s4, v128.load64Lane(scales.get(pair(1), 3), v128.load64Zero(scales.get(pair(0), 3), ODD4_PAIRS), 1, ODD4_PAIRS)),
          // a row's sum over a super-block could exceed 2^31 (256 · 31 · 31 · 32767): f32 per sub-block
          ...ks.map((k) => set(fs[k]!, f32x4.add(get(fs[k]!), f32x4.mul(
            f32x4.convertI32x4S(i32x4.mul(hsum4(f, i32x4.add, v[0]![k]!, v[1]![k]!, v[2]![k]!, v[3]![k]!), get(s4))),
            v128.load32Splat(tokenOff(c, xsb, k, 32)))))),
          inc(xsb, 4)),
        set(wv, f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.const(s.dFactor))),
        ...ks.map((k) => set(acc[k]!, f32x4.add(get(acc[k]!), f32x4.mul(get(fs[k]!), get(wv)))))),
      ...ks.map((k) => v128.store(outAddr(c, k), get(acc[k]!))),
    ];
  };
  f.body = seq(
    set(c.xrow, mulC(get(c.nb), 512)),
    tokenGroupLoop(f, c.T, c.tile, c.start, c.end, c.q, c.t, sizes, (n, pn) => body(n, pn!), { w: c.w, nb: c.nb, pb: c.pb, quadBlockBytes: QB, outP: c.outP }));
  return f;
}

const u32At = (src: Uint8Array, p: number): number => (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;

/**
 * IQ3_S (110 bytes: d, qs[64] low index bits, qh[8] ninth bits, signs[32], scales[4] nibbles).
 * Quad-block 440 bytes (= 4 × 110): per group 13 bytes, the 4 rows' two 9-bit grid indices (72
 * bits), then their 4 sign bytes. i32 bound of a row's sum over a sub-block, times its scale:
 * 32 · 15 · 31 · 32767 = 4.9e8.
 */
const IQ3S: Iq3Spec = {
  type: 'iq3_s',
  storedBytes: 110,
  gBytes: 13,
  idxBits: 9,
  grid: GRID_IQ3S,
  a: (r) => ({ pos: 18 * r, bits: 9 }),
  b: (r) => ({ pos: 18 * r + 9, bits: 9 }),
  s: (r) => ({ pos: 72 + 8 * r, bits: 8 }),
  dFactor: 1,

};

/**
 * IQ3_XXS (98 bytes: d, qs[64] grid indices, u32[8] of 4 seven-bit sign codes and a 4-bit scale).
 * Quad-block 408 bytes (4 × 98 + 16, +4.1 %): per group 12 bytes, the 4 rows' two 8-bit indices,
 * then their sign bytes (the 7-bit codes expanded by KSIGNS, so IQ3_S's sign table serves and the
 * group stride is whole bytes). The grid table holds grid/2 (every level is even): i32 bound of a
 * row's sum over a sub-block, times its scale: 32 · 31 · 31 · 32767 = 1.0e9.
 */
const IQ3XXS: Iq3Spec = {
  type: 'iq3_xxs',
  storedBytes: 98,
  gBytes: 12,
  idxBits: 8,
  grid: GRID_IQ3XXS,
  a: (r) => ({ pos: 16 * r, bits: 8 }),
  b: (r) => ({ pos: 16 * r + 8, bits: 8 }),
  s: (r) => ({ pos: 64 + 8 * r, bits: 8 }),
  dFactor: 0.5,

};

// ---------------------------------------------------------------------------------------------
// IQ1: 8-value grid entries in {−1, 0, 1} plus a ±1/8 delta, 3-bit scales

/**
 * Packed IQ1 group (8 values of 4 rows): 6 bytes, the rows' 11-bit grid indices at bits 11r and 4
 * more bits at 44…47 (IQ1_S: row g's scale nibble in group g of a sub-block; IQ1_M: the 4 rows'
 * delta signs).
 */
const iq1Idx = (r: number): Field => ({ pos: 11 * r, bits: 11 });
const IQ1_NIB: Field = { pos: 44, bits: 4 };
const IQ1_GROUP = 6;
/** The even and odd i32 lanes of two vectors. */
const EVEN32 = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
const ODD32 = EVEN32.map((b) => b + 4);

/** The parts of an IQ1 kernel's n-token body shared by IQ1_S and IQ1_M. */
interface Iq1Body {
  readonly c: Common;
  readonly n: number;
  readonly ks: readonly number[];
  readonly v: readonly (readonly Local[])[];
  readonly xv: readonly Local[];
  readonly xpk: readonly Local[];
}

/**
 * A loop over the groups from gp to ge for `rows` (−1: IQ1_M's delta step instead of a row):
 * per group the rows' grid entries (load8x8_s), each times every token's 8 activations.
 */
function iq1GroupLoop(b: Iq1Body, gp: Local, ge: Local, xb: Local, rows: readonly number[], delta?: (fr: FieldReader) => Op[]): Op {
  const { c, ks, v, xv, xpk } = b;
  const grid = rows.filter((r) => r >= 0);
  const fr = new FieldReader(c.f, gp, IQ1_GROUP, [...grid.map(iq1Idx), ...(rows.includes(-1) ? [IQ1_NIB] : [])]);
  const wv = c.f.local(ValType.v128);
  return seq(
    ...ks.map((k) => set(xpk[k]!, k ? i32.add(get(xb), i32.mul(get(c.xrow), i32.const(k))) : get(xb))),
    forPtr(gp, ge, IQ1_GROUP,
      ...fr.loads(),
      ...ks.map((k) => set(xv[k]!, v128.load(get(xpk[k]!)))),
      ...grid.flatMap((r) => [
        set(wv, v128.load8x8S(fr.get(iq1Idx(r), 3), GRID_IQ1)),
        ...ks.map((k) => set(v[r]![k]!, i32x4.add(get(v[r]![k]!), i32x4.dotI16x8S(get(wv), get(xv[k]!))))),
      ]),
      ...(rows.includes(-1) ? delta!(fr) : []),
      ...ks.map((k) => inc(xpk[k]!, 16))),
  );
}

/**
 * IQ1_S (50 bytes: d, qs[32] low index bits, qh u16[8]: 3 high index bits per group, a 3-bit scale
 * and a delta sign per 32). Quad-block 200 bytes (= 4 × 50): 4 × d, then per sub-block 4 groups of
 * 6 bytes (group g also holds row g's nibble scale | sign << 3). Per sub-block the 4 rows' sums
 * Σ grid·x are summed horizontally, then as one vector over the rows: (2s+1)·(8·Σ grid·x ± Σx),
 * Σx from the 32-value block sums, times the sub-block's activation scale; d/8 per super-block.
 * i32 bound per row and sub-block: 15 · (8 · 32 + 32) · 32767 = 1.4e8.
 */
function emitIq1S(split: RowSplit, sizes: readonly number[], name = 'mm_iq1_s'): Func {
  const c = common(name);
  const { f } = c;
  const [wp, we, sp, se, gp, ge, xb, xsb, bpb, unused] = f.locals32(10);
  const QB = 200;
  const N = Math.max(...sizes);
  const b0: Omit<Iq1Body, 'n' | 'ks'> = { c, v: Array.from({ length: 4 }, () => f.vlocals(N)), xv: f.vlocals(N), xpk: f.locals32(N) };
  const fs = f.vlocals(N);
  const acc = f.vlocals(N);
  const [p01, p23, s4, m4, dv] = f.vlocals(5);
  const nib = (r: number): Field => ({ pos: 48 * r + IQ1_NIB.pos, bits: 4 });
  const scales = new FieldReader(f, sp, 4 * IQ1_GROUP, [0, 1, 2, 3].map(nib));
  const body = (n: number, pn: Panel): Op[] => {
    const ks = Array.from({ length: n }, (_, k) => k);
    const b: Iq1Body = { ...b0, n, ks };
    return [
      ...blockPointers({ w: wp, we, x: xb, xs: unused!, bsum: bpb }, { x: c.x, xs: c.xs, bsum: c.bsum, nb: c.nb }, c.q, c.t, pn, { weights: QB, x: 512, bsum: 32 }),
      set(xsb, i32.add(get(c.xs), i32.shl(i32.add(i32.mul(get(c.t), get(c.nb)), get(pn.b0)), i32.const(5)))), // 8 scales per block
      ...ks.map((k) => initAcc(pn, acc[k]!, outAddr(c, k))),
      forPtr(wp, we, QB,
        ...ks.map((k) => set(fs[k]!, zero())),
        set(sp, i32.add(get(wp), i32.const(8))),
        set(se, i32.add(get(wp), i32.const(QB))),
        forPtr(sp, se, 4 * IQ1_GROUP,
          ...ks.flatMap((k) => b.v.map((vr) => set(vr[k]!, zero()))),
          set(ge, i32.add(get(sp), i32.const(4 * IQ1_GROUP))),
          ...(split[n] ?? [[0, 1, 2, 3]]).map((rows) => seq(set(gp, get(sp)), iq1GroupLoop(b, gp, ge, xb, rows))),
          inc(xb, 64),
          ...scales.loads(),
          set(p01, v128.load64Lane(scales.get(nib(1), 3), v128.load64Zero(scales.get(nib(0), 3), IQ1S_SCALES), 1, IQ1S_SCALES)),
          set(p23, v128.load64Lane(scales.get(nib(3), 3), v128.load64Zero(scales.get(nib(2), 3), IQ1S_SCALES), 1, IQ1S_SCALES)),
          set(s4, i8x16.shuffle(get(p01), get(p23), EVEN32)), // [8·(2s+1)] over the rows
          set(m4, i8x16.shuffle(get(p01), get(p23), ODD32)), // [±(2s+1)]
          ...ks.map((k) => seq(
            set(dv, i32x4.add(i32x4.mul(hsum4(f, i32x4.add, b.v[0]![k]!, b.v[1]![k]!, b.v[2]![k]!, b.v[3]![k]!), get(s4)),
              i32x4.mul(get(m4), v128.load32Splat(tokenOff(c, bpb, k, 32))))),
            set(fs[k]!, f32x4.add(get(fs[k]!), f32x4.mul(f32x4.convertI32x4S(get(dv)), v128.load32Splat(tokenOff(c, xsb, k, 32))))))),
          inc(bpb, 4),
          inc(xsb, 4)),
        set(dv, f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.const(1 / 8))),
        ...ks.map((k) => set(acc[k]!, f32x4.add(get(acc[k]!), f32x4.mul(get(fs[k]!), get(dv)))))),
      ...ks.map((k) => v128.store(outAddr(c, k), get(acc[k]!))),
    ];
  };
  f.body = seq(
    set(c.xrow, mulC(get(c.nb), 512)),
    tokenGroupLoop(f, c.T, c.tile, c.start, c.end, c.q, c.t, sizes, (n, pn) => body(n, pn!), { w: c.w, nb: c.nb, pb: c.pb, quadBlockBytes: QB, outP: c.outP }));
  return f;
}

/**
 * IQ1_M (56 bytes: qs[32] low index bits, qh[16] nibbles of 3 high bits and a delta sign per
 * group of 8, scales u16[4]: 3-bit scales per 16 values, the f16 d in their top nibbles). Quad-block
 * 224 bytes (= 4 × 56): 4 × d, then per sub-block 3 bytes of scales (per half: rows 0–1, then 2–3,
 * 3 bits each) and 4 groups of 6 bytes (the 4 rows' delta signs in bits 44…47). Per 16 values and
 * row: (2s+1)·(8·Σ grid·x + Σ_groups ±Σx_group); each group's Σx comes from the activations in the
 * kernel (one horizontal sum per group and token, shared by the 4 rows) times the rows' ±1 from a
 * 16-entry table. i32 bound per row and sub-block: 2 · 15 · (8 · 16 + 16) · 32767 = 1.4e8.
 */
function emitIq1M(split: RowSplit, sizes: readonly number[], name = 'mm_iq1_m'): Func {
  const c = common(name);
  const { f } = c;
  const [wp, we, sp, se, gp, ge, xb, xsb, unused] = f.locals32(9);
  const QB = 224;
  const SB = 3 + 4 * IQ1_GROUP;
  const N = Math.max(...sizes);
  const b0: Omit<Iq1Body, 'n' | 'ks'> = { c, v: Array.from({ length: 4 }, () => f.vlocals(N)), xv: f.vlocals(N), xpk: f.locals32(N) };
  const cr = f.vlocals(N);
  const fs = f.vlocals(N);
  const acc = f.vlocals(N);
  const dl = f.vlocals(N);
  const [sx, sg, s4, dv] = f.vlocals(4);
  const sc = (h: number, pair: number): Field => ({ pos: 12 * h + 6 * pair, bits: 6 });
  const scales = new FieldReader(f, sp, SB, [sc(0, 0), sc(0, 1), sc(1, 0), sc(1, 1)]);
  const body = (n: number, pn: Panel): Op[] => {
    const ks = Array.from({ length: n }, (_, k) => k);
    const b: Iq1Body = { ...b0, n, ks };
    // the delta step of a group: Σx of the group in every lane, times the rows' ±1
    const delta = (fr: FieldReader): Op[] => [
      set(sg, v128.load(fr.get(IQ1_NIB, 4), IQ1M_SIGNS)),
      ...ks.flatMap((k) => [
        set(sx, i32x4.extaddPairwiseI16x8S(get(b.xv[k]!))),
        set(sx, i32x4.add(get(sx), i8x16.shuffle(get(sx), get(sx), [4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11]))),
        set(sx, i32x4.add(get(sx), i8x16.shuffle(get(sx), get(sx), [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]))),
        set(dl[k]!, i32x4.add(get(dl[k]!), i32x4.mul(get(sx), get(sg)))),
      ]),
    ];
    const half = (h: number): Op[] => [
      ...ks.flatMap((k) => [...b.v.map((vr) => set(vr[k]!, zero())), set(dl[k]!, zero())]),
      set(ge, i32.add(get(sp), i32.const(3 + 2 * IQ1_GROUP * (h + 1)))),
      ...(split[n] ?? [[0, 1, 2, 3, -1]]).map((rows) => seq(set(gp, i32.add(get(sp), i32.const(3 + 2 * IQ1_GROUP * h))), iq1GroupLoop(b, gp, ge, xb, rows, delta))),
      inc(xb, 32),
      set(s4, v128.load64Lane(scales.get(sc(h, 1), 3), v128.load64Zero(scales.get(sc(h, 0), 3), IQ1M_SCALES), 1, IQ1M_SCALES)),
      ...ks.map((k) => set(cr[k]!, i32x4.add(get(cr[k]!), i32x4.mul(get(s4),
        i32x4.add(i32x4.shl(hsum4(f, i32x4.add, b.v[0]![k]!, b.v[1]![k]!, b.v[2]![k]!, b.v[3]![k]!), 3), get(dl[k]!)))))),
    ];
    return [
      ...blockPointers({ w: wp, we, x: xb, xs: unused! }, { x: c.x, xs: c.xs, nb: c.nb }, c.q, c.t, pn, { weights: QB, x: 512, bsum: 0 }),
      set(xsb, i32.add(get(c.xs), i32.shl(i32.add(i32.mul(get(c.t), get(c.nb)), get(pn.b0)), i32.const(5)))), // 8 scales per block
      ...ks.map((k) => initAcc(pn, acc[k]!, outAddr(c, k))),
      forPtr(wp, we, QB,
        ...ks.map((k) => set(fs[k]!, zero())),
        set(sp, i32.add(get(wp), i32.const(8))),
        set(se, i32.add(get(wp), i32.const(QB))),
        forPtr(sp, se, SB,
          ...ks.map((k) => set(cr[k]!, zero())),
          ...scales.loads(),
          ...half(0),
          ...half(1),
          ...ks.map((k) => set(fs[k]!, f32x4.add(get(fs[k]!), f32x4.mul(f32x4.convertI32x4S(get(cr[k]!)), v128.load32Splat(tokenOff(c, xsb, k, 32)))))),
          inc(xsb, 4)),
        set(dv, f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.const(1 / 8))),
        ...ks.map((k) => set(acc[k]!, f32x4.add(get(acc[k]!), f32x4.mul(get(fs[k]!), get(dv)))))),
      ...ks.map((k) => v128.store(outAddr(c, k), get(acc[k]!))),
    ];
  };
  f.body = seq(
    set(c.xrow, mulC(get(c.nb), 512)),
    tokenGroupLoop(f, c.T, c.tile, c.start, c.end, c.q, c.t, sizes, (n, pn) => body(n, pn!), { w: c.w, nb: c.nb, pb: c.pb, quadBlockBytes: QB, outP: c.outP }));
  return f;
}

function packIq1S(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 50;
  const o16 = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
  for (let b = 0; b < nb; b++) {
    const o = b * 200;
    const p0 = b * 50;
    const p1 = p0 + rowBytes;
    const p2 = p1 + rowBytes;
    const p3 = p2 + rowBytes;
    for (let r = 0; r < 4; r++) {
      out[o + 2 * r] = rows[p0 + r * rowBytes]!;
      out[o + 2 * r + 1] = rows[p0 + r * rowBytes + 1]!;
    }
    for (let ib = 0; ib < 8; ib++) {
      const h = 34 + 2 * ib;
      const qh0 = rows[p0 + h]! | (rows[p0 + h + 1]! << 8);
      const qh1 = rows[p1 + h]! | (rows[p1 + h + 1]! << 8);
      const qh2 = rows[p2 + h]! | (rows[p2 + h + 1]! << 8);
      const qh3 = rows[p3 + h]! | (rows[p3 + h + 1]! << 8);
      // group l (48 bits, 3 lanes of 16): row r's 11-bit index at bit 11r, row l's scale nibble at 44
      for (let l = 0, g = (o + 8 + 24 * ib) >> 1; l < 4; l++, g += 3) {
        const q = 2 + 4 * ib + l;
        const sh = 3 * l;
        const i0 = rows[p0 + q]! | (((qh0 >> sh) & 7) << 8);
        const i1 = rows[p1 + q]! | (((qh1 >> sh) & 7) << 8);
        const i2 = rows[p2 + q]! | (((qh2 >> sh) & 7) << 8);
        const i3 = rows[p3 + q]! | (((qh3 >> sh) & 7) << 8);
        const nib = (l === 0 ? qh0 : l === 1 ? qh1 : l === 2 ? qh2 : qh3) >> 12;
        const lo = i0 | (i1 << 11) | (i2 << 22);
        o16[g] = lo;
        o16[g + 1] = lo >>> 16;
        o16[g + 2] = (i2 >>> 10) | (i3 << 1) | (nib << 12);
      }
    }
  }
}

/** IQ1_M scale words of the 4 rows of a block: row r's u16 k at 4r + k. */
const iq1mScales = new Uint16Array(16);

function packIq1M(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 56;
  const dv = new DataView(rows.buffer, rows.byteOffset, rows.byteLength);
  const s = iq1mScales;
  for (let b = 0; b < nb; b++) {
    const o = b * 224;
    const p0 = b * 56;
    for (let r = 0; r < 4; r++) {
      const p = p0 + r * rowBytes;
      for (let k = 0; k < 4; k++) s[4 * r + k] = rows[p + 48 + 2 * k]! | (rows[p + 49 + 2 * k]! << 8);
      const d = (s[4 * r]! >> 12) | ((s[4 * r + 1]! >> 8) & 0x00f0) | ((s[4 * r + 2]! >> 4) & 0x0f00) | (s[4 * r + 3]! & 0xf000);
      out[o + 2 * r] = d & 255;
      out[o + 2 * r + 1] = d >> 8;
    }
    const p1 = p0 + rowBytes;
    const p2 = p1 + rowBytes;
    const p3 = p2 + rowBytes;
    for (let ib = 0; ib < 8; ib++) {
      const sb = o + 8 + 27 * ib;
      // header: half h's 3-bit scale of row r at bit 12h + 3r (24 bits)
      const w = ib >> 1;
      const sh = 6 * (ib & 1);
      let hdr = 0;
      for (let r = 0; r < 4; r++) {
        const v = s[4 * r + w]! >> sh;
        hdr |= ((v & 7) << (3 * r)) | (((v >> 3) & 7) << (12 + 3 * r));
      }
      out[sb] = hdr;
      out[sb + 1] = hdr >>> 8;
      out[sb + 2] = hdr >>> 16;
      // group j = k & 3 (48 bits at byte 3 + 6j): row r's 11-bit index at bit 11r, its delta-sign bit
      // at 44 + r; a sub-block's 4 qs bytes and 2 qh bytes of a row are read as one word each
      const q0 = dv.getUint32(p0 + 4 * ib, true);
      const q1 = dv.getUint32(p1 + 4 * ib, true);
      const q2 = dv.getUint32(p2 + 4 * ib, true);
      const q3 = dv.getUint32(p3 + 4 * ib, true);
      const e0 = dv.getUint16(p0 + 32 + 2 * ib, true);
      const e1 = dv.getUint16(p1 + 32 + 2 * ib, true);
      const e2 = dv.getUint16(p2 + 32 + 2 * ib, true);
      const e3 = dv.getUint16(p3 + 32 + 2 * ib, true);
      for (let j = 0; j < 4; j++) {
        const n0 = (e0 >> (4 * j)) & 15;
        const n1 = (e1 >> (4 * j)) & 15;
        const n2 = (e2 >> (4 * j)) & 15;
        const n3 = (e3 >> (4 * j)) & 15;
        const i0 = ((q0 >>> (8 * j)) & 255) | ((n0 & 7) << 8);
        const i1 = ((q1 >>> (8 * j)) & 255) | ((n1 & 7) << 8);
        const i2 = ((q2 >>> (8 * j)) & 255) | ((n2 & 7) << 8);
        const i3 = ((q3 >>> (8 * j)) & 255) | ((n3 & 7) << 8);
        const lo = i0 | (i1 << 11) | (i2 << 22);
        const hi = (i2 >>> 10) | (i3 << 1) | ((n0 >> 3) << 12) | ((n1 >> 3) << 13) | ((n2 >> 3) << 14) | ((n3 >> 3) << 15);
        const g = sb + 3 + 6 * j;
        out[g] = lo;
        out[g + 1] = lo >>> 8;
        out[g + 2] = lo >>> 16;
        out[g + 3] = lo >>> 24;
        out[g + 4] = hi;
        out[g + 5] = hi >>> 8;
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// prefill kernels (decoded.ts): every weight decoded once per token tile as an int16 with its
// row's integer factors folded in, so that a sub-block's i32 sum is exactly the one the kernels
// above compute (IQ3: Σ (2n+1)·grid·sign·x; IQ1_S: 8(2s+1)·Σ grid·x ± (2s+1)·Σx; IQ1_M the same per
// 16 values, summed over the sub-block), then the same f32 steps: per sub-block
// fs += conv(sum) · xs, per block acc += fs · (d · factor).

const ROWS = [0, 1, 2, 3];
/** 2v + 1 of the `bits`-bit field v at bit `at` of w: a scale's odd multiplier. */
const oddAt = (w: Op, at: number, bits: number): Op => i32.or(i32.shl(i32.and(i32.shrU(w, i32.const(at)), i32.const((1 << bits) - 1)), i32.const(1)), i32.const(1));
/** The f32 steps the four share (see above); the block extras hold d · factor as f32x4. */
const iqSteps = {
  xBlock: 32, bsumLen: 0, G: 32, groupExtra: 0, blockExtra: 16, accs: 1,
  groupEnd: (_f: Func, k: DTok, sum: Op): Op[] => [set(k.F[0]!, f32x4.add(get(k.F[0]!), f32x4.mul(f32x4.convertI32x4S(sum), v128.load32Splat(get(k.xs)))))],
  blockEnd: (_f: Func, k: DTok, bx: Local): Op => f32x4.mul(get(k.F[0]!), v128.load(get(bx))),
} as const;
const storeD = (f: Func, wp: Local, bx: Local, factor: number): Op => v128.store(get(bx), f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.const(factor)));

/** IQ3: per group and row the two grid entries times the signs (emitIq3's wv), times 2n + 1 (≤ 31 · 31 = 961). */
function iq3Decoded(s: Iq3Spec): DecodedSpec {
  const QB = iq3QuadBytes(s);
  const SB = iq3SubBytes(s);
  return {
    ...iqSteps, name: `mmp_${s.type}`, QB,
    decode(f, wp, dp, _gx, bx) {
      const [op, sp, se, gp, ge, u] = f.locals32(6) as [Local, Local, Local, Local, Local, Local];
      const sc = f.vlocals(4);
      const g = f.vlocals(4);
      const fr = new FieldReader(f, gp, s.gBytes, ROWS.flatMap((r) => [s.a(r), s.b(r), s.s(r)]));
      return [
        storeD(f, wp, bx, s.dFactor),
        set(op, get(dp)),
        set(sp, i32.add(get(wp), i32.const(8))),
        set(se, i32.add(get(wp), i32.const(QB))),
        forPtr(sp, se, SB,
          set(u, i32.load16U(get(sp))),
          ...ROWS.map((r) => set(sc[r]!, i16x8.splat(oddAt(get(u), 4 * r, 4)))),
          set(gp, i32.add(get(sp), i32.const(IQ3_SB_HEADER))),
          set(ge, i32.add(get(sp), i32.const(SB))),
          forPtr(gp, ge, s.gBytes,
            ...fr.loads(),
            ...ROWS.map((r) => set(g[r]!, i16x8.mul(i16x8.mul(
              v128.load64Lane(fr.get(s.b(r), 3), v128.load64Zero(fr.get(s.a(r), 3), s.grid), 1, s.grid),
              v128.load(fr.get(s.s(r), 4), SIGNS16)), get(sc[r]!)))),
            ...transposeStore(f, g, op, 0),
            inc(op, 64))),
      ];
    },
  };
}

/** IQ1_S: per group and row grid · 8(2s+1) ± (2s+1) (|w| ≤ 135), the sub-block's Σx term folded in. */
const IQ1S_DECODED: DecodedSpec = {
  ...iqSteps, name: 'mmp_iq1_s', QB: 200,
  decode(f, wp, dp, _gx, bx) {
    const [op, sp, se, gp, ge, n, s2] = f.locals32(7) as [Local, Local, Local, Local, Local, Local, Local];
    const a = f.vlocals(4);
    const b = f.vlocals(4);
    const g = f.vlocals(4);
    const nib = (r: number): Field => ({ pos: 48 * r + IQ1_NIB.pos, bits: 4 });
    const scales = new FieldReader(f, sp, 4 * IQ1_GROUP, ROWS.map(nib));
    const fr = new FieldReader(f, gp, IQ1_GROUP, ROWS.map(iq1Idx));
    return [
      storeD(f, wp, bx, 1 / 8),
      set(op, get(dp)),
      set(sp, i32.add(get(wp), i32.const(8))),
      set(se, i32.add(get(wp), i32.const(200))),
      forPtr(sp, se, 4 * IQ1_GROUP,
        ...scales.loads(),
        ...ROWS.flatMap((r) => [
          set(n, scales.get(nib(r), 0)),
          set(s2, oddAt(get(n), 0, 3)),
          set(a[r]!, i16x8.splat(i32.shl(get(s2), i32.const(3)))),
          set(b[r]!, i16x8.splat(select(i32.sub(i32.const(0), get(s2)), get(s2), i32.and(get(n), i32.const(8))))),
        ]),
        set(gp, get(sp)),
        set(ge, i32.add(get(sp), i32.const(4 * IQ1_GROUP))),
        forPtr(gp, ge, IQ1_GROUP,
          ...fr.loads(),
          ...ROWS.map((r) => set(g[r]!, i16x8.add(i16x8.mul(v128.load8x8S(fr.get(iq1Idx(r), 3), GRID_IQ1), get(a[r]!)), get(b[r]!)))),
          ...transposeStore(f, g, op, 0),
          inc(op, 64))),
    ];
  },
};

/** IQ1_M: per group and row (2s+1)·(8·grid ± 1) with the half's 3-bit scale and the group's delta sign (|w| ≤ 135). */
const IQ1M_DECODED: DecodedSpec = {
  ...iqSteps, name: 'mmp_iq1_m', QB: 224,
  decode(f, wp, dp, _gx, bx) {
    const SB = 3 + 4 * IQ1_GROUP;
    const [op, sp, se, gp, ge, u, n] = f.locals32(7) as [Local, Local, Local, Local, Local, Local, Local];
    const sc = f.locals32(4);
    const a = f.vlocals(4);
    const g = f.vlocals(4);
    const fr = new FieldReader(f, gp, IQ1_GROUP, [...ROWS.map(iq1Idx), IQ1_NIB]);
    const half = (h: number): Op[] => [
      ...ROWS.flatMap((r) => [set(sc[r]!, oddAt(get(u), 12 * h + 3 * r, 3)), set(a[r]!, i16x8.splat(i32.shl(get(sc[r]!), i32.const(3))))]),
      set(gp, i32.add(get(sp), i32.const(3 + 2 * IQ1_GROUP * h))),
      set(ge, i32.add(get(gp), i32.const(2 * IQ1_GROUP))),
      forPtr(gp, ge, IQ1_GROUP,
        ...fr.loads(),
        set(n, fr.get(IQ1_NIB, 0)),
        ...ROWS.map((r) => set(g[r]!, i16x8.add(i16x8.mul(v128.load8x8S(fr.get(iq1Idx(r), 3), GRID_IQ1), get(a[r]!)),
          i16x8.splat(select(i32.sub(i32.const(0), get(sc[r]!)), get(sc[r]!), i32.and(get(n), i32.const(1 << r))))))),
        ...transposeStore(f, g, op, 0),
        inc(op, 64)),
    ];
    return [
      storeD(f, wp, bx, 1 / 8),
      set(op, get(dp)),
      set(sp, i32.add(get(wp), i32.const(8))),
      set(se, i32.add(get(wp), i32.const(224))),
      forPtr(sp, se, SB, set(u, i32.load(get(sp))), ...half(0), ...half(1)),
    ];
  },
};

// ---------------------------------------------------------------------------------------------
// the formats

/*
 * All four take one activation scale per 32 values (xBlock 32): every kernel ends a sub-block with
 * a vector step that converts to f32 anyway (IQ3 must: see emitIq3), so the finer scale costs a
 * broadcast load and a multiply per sub-block and token; with 256-wide blocks one case of the
 * conformance test (IQ1_S, a near-cancelling dot product) was at 1.3e-3 from the int16 rounding
 * alone, ≈ 4e-5 with 32.
 */
const TOKEN_GROUPS = [4, 2, 1];
const IQ3_SPLIT: RowSplit = { 4: [[0], [1], [2], [3]], 2: [[0, 1], [2, 3]], 1: [[0, 1, 2, 3]] };
const IQ1S_SPLIT: RowSplit = { 4: [[0, 1], [2, 3]], 2: [[0, 1, 2, 3]], 1: [[0, 1, 2, 3]] };
const IQ1M_SPLIT: RowSplit = { 4: [[0, 1], [2, 3], [-1]], 2: [[0, 1, 2, 3], [-1]], 1: [[0, 1, 2, 3, -1]] };

function iq3Format(s: Iq3Spec): BlockFormat {
  return {
    type: s.type,
    blockInputs: 256,
    quadBlockBytes: iq3QuadBytes(s),
    xBlock: 32,
    bsumLen: 0,
    pack: (rows, rowBytes, out) => packIq3(s, rows, rowBytes, out),
    emit: () => emitIq3(s, IQ3_SPLIT, TOKEN_GROUPS),
    prefill: iq3Decoded(s),
  };
}

export const IQ3_IQ1_FORMATS: readonly BlockFormat[] = [
  // the family's tables are shared; one format lists them (the table test rejects overlaps)
  { ...iq3Format(IQ3XXS), tables: TABLES },
  iq3Format(IQ3S),
  { type: 'iq1_s', blockInputs: 256, quadBlockBytes: 200, xBlock: 32, bsumLen: 32, pack: packIq1S, emit: () => emitIq1S(IQ1S_SPLIT, TOKEN_GROUPS), prefill: IQ1S_DECODED },
  { type: 'iq1_m', blockInputs: 256, quadBlockBytes: 224, xBlock: 32, bsumLen: 0, pack: packIq1M, emit: () => emitIq1M(IQ1M_SPLIT, TOKEN_GROUPS), prefill: IQ1M_DECODED },
];
