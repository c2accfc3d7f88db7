/**
 * IQ3_XXS, IQ3_S, IQ1_S, IQ1_M: packed layouts and SIMD128 kernels (see ../block-format.ts).
 */
import { TABLE_REGIONS, type BlockFormat } from '../block-format.js';
import { Func, ValType, type Local, type Op, seq, get, set, forPtr, i32, f32, v128, i8x16, i16x8, i32x4, f32x4 } from '../asm.js';
import { I32, V, zero, inc, hsum4, f16x4, initAcc, blockPointers, quadLoop } from '../kernel-parts.js';
import { iqGrid, KSIGNS_IQ2XS } from '../../../tensor/iq-tables.js';

/**
 * SIMD opcodes asm.ts does not have (kept here rather than in the shared encoder): 0xfd, then the
 * opcode as unsigned LEB128.
 */
const simd = (code: number): number[] => (code < 0x80 ? [0xfd, code] : [0xfd, (code & 0x7f) | 0x80, code >> 7]);
/** v128.load64_lane: lane `l` of v from memory. */
const load64Lane = (addr: Op, v: Op, l: number, offset = 0): Op => {
  const off: number[] = [];
  let o = offset;
  do { off.push((o & 0x7f) | (o > 0x7f ? 0x80 : 0)); o >>>= 7; } while (o);
  return [...addr, ...v, ...simd(0x57), 3, ...off, l];
};
/** i16x8.mul (wrapping). */
const i16x8mul = (a: Op, b: Op): Op => [...a, ...b, ...simd(0x95)];

// ---------------------------------------------------------------------------------------------
// lookup tables

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

/** iq3s_grid as int16 (512 entries × 4 values, 8 bytes each). */
const GRID_IQ3S = table(i16Bytes(iqGrid('iq3s')));
/** iq3xxs_grid / 2 as int16 (every level is even: 4 … 62 → 2 … 31). */
const GRID_IQ3XXS = table(i16Bytes(Array.from(iqGrid('iq3xxs'), (v) => v / 2)));
/** Per sign byte s: 8 int8 ±1 (bit j set → lane j negative), read with load8x8_s. */
const SIGNS8 = table(new Uint8Array(Int8Array.from({ length: 256 * 8 }, (_, i) => ((i >> 3) >> (i & 7)) & 1 ? -1 : 1).buffer));
/** iq1s_grid as int8 (2048 entries × 8 values in {−1, 0, 1}), read with load8x8_s. */
const GRID_IQ1 = table(new Uint8Array(Int8Array.from(iqGrid('iq1s')).buffer));
/** IQ1_S, per nibble n = scale s | delta-sign bit << 3: i32 [8·(2s+1), ±(2s+1)] (minus when the bit is set). */
const IQ1S_SCALES = table(i32Bytes(Array.from({ length: 32 }, (_, i) => {
  const n = i >> 1;
  const S = 2 * (n & 7) + 1;
  return i & 1 ? (n & 8 ? -S : S) : 8 * S;
})));
/** IQ1_M, per nibble of 4 rows' delta-sign bits: i32x4 of ±1 (minus where the row's bit is set). */
const IQ1M_SIGNS = table(i32Bytes(Array.from({ length: 64 }, (_, i) => ((i >> 2) >> (i & 3)) & 1 ? -1 : 1)));
/** IQ1_M, per 6 bits a | b << 3 (two rows' 3-bit scales): i32 [2a+1, 2b+1]. */
const IQ1M_SCALES = table(i32Bytes(Array.from({ length: 128 }, (_, i) => 2 * (((i >> 1) >> (3 * (i & 1))) & 7) + 1)));
/** 2n + 1 for a 4-bit scale n, as i32 (read with load32_splat). */
const ODD4 = table(i32Bytes(Array.from({ length: 16 }, (_, n) => 2 * n + 1)));

// ---------------------------------------------------------------------------------------------
// bit fields shared by the packers and the kernels

/** ORs the n-bit value v into `out` at bit `pos` (LSB first; n ≤ 24). */
function putBits(out: Uint8Array, pos: number, v: number, n: number): void {
  const b = pos >> 3;
  const w = v << (pos & 7);
  out[b] |= w & 255;
  if ((pos & 7) + n > 8) out[b + 1] |= (w >>> 8) & 255;
  if ((pos & 7) + n > 16) out[b + 2] |= (w >>> 16) & 255;
  if ((pos & 7) + n > 24) out[b + 3] |= (w >>> 24) & 255;
}

/** A bit field of a packed step: `bits` bits at bit `pos` from the step's first byte. */
interface Field {
  readonly pos: number;
  readonly bits: number;
}

/**
 * Reads bit fields of the bytes at ptr + base … ptr + base + bytes − 1 through i32 windows: each
 * field is read as (field << k) (a byte offset into a table of 2^k-byte entries) with a shift and
 * an and. Fields that fit one 32-bit window share its load. Windows never reach outside the step's bytes.
 */
class FieldReader {
  private readonly windows = new Map<number, Local>();
  private readonly order: number[] = [];
  constructor(
    private readonly f: Func,
    private readonly ptr: Local,
    private readonly base: number,
    private readonly bytes: number,
    fields: readonly Field[],
    private readonly dedicated = false,
  ) {
    if (dedicated) return;
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
    return this.order.map((b) => set(this.windows.get(b)!, i32.load(get(this.ptr), this.base + b)));
  }
  /** field << k. */
  get(fd: Field, k: number): Op {
    if (this.dedicated) {
      const b = Math.max(0, Math.min((fd.pos - k) >> 3, this.bytes - 4));
      const sh = fd.pos - 8 * b - k;
      const L = i32.load(get(this.ptr), this.base + b);
      const shifted = sh > 0 ? i32.shrU(L, i32.const(sh)) : sh < 0 ? i32.shl(L, i32.const(-sh)) : L;
      return i32.and(shifted, i32.const(((1 << fd.bits) - 1) << k));
    }
    let w = -1;
    for (const b of this.order) if (fd.pos >= 8 * b && fd.pos + fd.bits <= 8 * b + 32) w = b;
    const W = get(this.windows.get(w)!);
    const sh = fd.pos - 8 * w - k;
    const mask = ((1 << fd.bits) - 1) << k;
    const shifted = sh > 0 ? i32.shrU(W, i32.const(sh)) : sh < 0 ? i32.shl(W, i32.const(-sh)) : W;
    return fd.pos + fd.bits - 8 * w === 32 && sh >= 0 && k === 0 ? shifted : i32.and(shifted, i32.const(mask));
  }
}

// ---------------------------------------------------------------------------------------------
// IQ3: 4-value grid entries, two per group of 8 values, signs per group, a 4-bit scale per 32

/**
 * Packed IQ3 quad-block: 4 × f16 d, then 8 sub-blocks (32 values) of `sbBytes` each: a header of
 * `sbHeader` bytes, then 4 groups (8 values) of `gBytes` each holding the 4 rows' fields.
 */
interface Iq3Spec {
  readonly type: 'iq3_s' | 'iq3_xxs';
  readonly storedBytes: number;
  readonly sbHeader: number;
  readonly gBytes: number;
  readonly idxBits: 8 | 9;
  readonly grid: number;
  /** Field positions of row r in a group: grid entries A, B (values 0–3, 4–7) and the sign byte. */
  readonly a: (r: number) => Field;
  readonly b: (r: number) => Field;
  readonly s: (r: number) => Field;
  /** Row r's 4-bit scale field, from the sub-block's first byte. */
  readonly scale: (r: number) => Field;
  /** Float factor on d·Σ (2n+1)·Σ grid·sign·x. */
  readonly dFactor: number;
  /** Row `r` of stored block at `src[p…]`, sub-block ib: [grid index A, B, sign byte] per group l, and the 4-bit scale. */
  readonly read: (src: Uint8Array, p: number, ib: number) => { groups: [number, number, number][]; scale: number };
}

function iq3QuadBytes(s: Iq3Spec): number {
  return 8 + 8 * (s.sbHeader + 4 * s.gBytes);
}

function packIq3(s: Iq3Spec, rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const QB = iq3QuadBytes(s);
  const SB = s.sbHeader + 4 * s.gBytes;
  const nb = rowBytes / s.storedBytes;
  for (let b = 0; b < nb; b++) {
    const o = b * QB;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * s.storedBytes;
      out[o + 2 * r] = rows[p]!;
      out[o + 2 * r + 1] = rows[p + 1]!;
      for (let ib = 0; ib < 8; ib++) {
        const sb = o + 8 + ib * SB;
        const { groups, scale } = s.read(rows, p, ib);
        const sf = s.scale(r);
        putBits(out, 8 * sb + sf.pos, scale, sf.bits);
        groups.forEach(([A, B, S], l) => {
          const g = 8 * (sb + s.sbHeader + l * s.gBytes);
          putBits(out, g + s.a(r).pos, A, s.idxBits);
          putBits(out, g + s.b(r).pos, B, s.idxBits);
          putBits(out, g + s.s(r).pos, S, s.s(r).bits);
        });
      }
    }
  }
}

/**
 * mm_iq3_*(w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, tid). Per group of 8 values
 * and row: the two grid entries (int16, 8 bytes each) into one vector, times the ±1 signs
 * (int8 table, sign-extended by load8x8_s), dot with 8 int16 activations. Per sub-block and row
 * the i32 sums are multiplied by 2n+1; i32 bounds: see the formats.
 */
interface Iq3Opts { rowSets: number[][]; dedicated?: boolean; unroll?: number; lane?: boolean }
function emitIq3(s: Iq3Spec, opts: Iq3Opts): Func {
  const f = new Func(`mm_${s.type}`, new Array<ValType>(13).fill(I32));
  const [w, x, xs, , out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as Local[];
  const [wp, we, xp, xsp, sp, se, gp, ge, x0] = f.locals32(9);
  const cr = f.vlocals(4);
  const v = f.vlocals(4);
  const [acc, xv, wv, bv] = f.vlocals(4);
  const QB = iq3QuadBytes(s);
  const SB = s.sbHeader + 4 * s.gBytes;
  const scaleReader = new FieldReader(f, sp, 0, s.sbHeader || SB, [0, 1, 2, 3].map(s.scale));
  const groupLoop = (rows: number[]): Op => {
    const U = opts.unroll ?? 1;
    const fr = new FieldReader(f, gp, 0, U * s.gBytes, Array.from({ length: U }, (_, u) => rows.flatMap((r) => [s.a(r), s.b(r), s.s(r)].map((fd) => ({ pos: fd.pos + 8 * s.gBytes * u, bits: fd.bits })))).flat(), opts.dedicated);
    const sh = (fd: Field, u: number): Field => ({ pos: fd.pos + 8 * s.gBytes * u, bits: fd.bits });
    return seq(
      set(gp, i32.add(get(sp), i32.const(s.sbHeader))),
      set(xp, get(x0)),
      forPtr(gp, ge, U * s.gBytes,
        ...fr.loads(),
        ...Array.from({ length: U }, (_, u) => [
          set(xv, v128.load(get(xp), 16 * u)),
          ...rows.flatMap((r) => [
            opts.lane
              ? set(wv, load64Lane(fr.get(sh(s.b(r), u), 3), v128.load64Zero(fr.get(sh(s.a(r), u), 3), s.grid), 1, s.grid))
              : seq(
                set(wv, v128.load64Zero(fr.get(sh(s.a(r), u), 3), s.grid)),
                set(bv, v128.load64Zero(fr.get(sh(s.b(r), u), 3), s.grid)),
                set(wv, i8x16.shuffle(get(wv), get(bv), [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23]))),
            set(v[r]!, i32x4.add(get(v[r]!), i32x4.dotI16x8S(i16x8mul(get(wv), v128.load8x8S(fr.get(sh(s.s(r), u), 3), SIGNS8)), get(xv)))),
          ]),
        ]).flat(),
        inc(xp, 16 * U)),
    );
  };
  f.body = quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: xsp }, { x, xs, nb }, q, t, pn!, { weights: QB, x: 512, bsum: 0 }),
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, QB,
      ...cr.map((l) => set(l, zero())),
      set(sp, i32.add(get(wp), i32.const(8))),
      set(se, i32.add(get(wp), i32.const(QB))),
      forPtr(sp, se, SB,
        ...v.map((l) => set(l, zero())),
        set(x0, get(xp)),
        set(ge, i32.add(get(sp), i32.const(SB))),
        ...opts.rowSets.map(groupLoop),
        ...scaleReader.loads(),
        ...cr.map((l, r) => set(l, i32x4.add(get(l), i32x4.mul(get(v[r]!), v128.load32Splat(scaleReader.get(s.scale(r), 2), ODD4))))),
      ),
      set(acc, f32x4.add(get(acc), f32x4.mul(
        f32x4.convertI32x4S(hsum4(f, i32x4.add, cr[0]!, cr[1]!, cr[2]!, cr[3]!)),
        f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.splat(f32.mul(f32.load(get(xsp)), f32.const(s.dFactor))))))),
      inc(xsp, 4)),
    v128.store(outAddr, get(acc)),
  ], { w, nb, pb, quadBlockBytes: QB, outP });
  return f;
}

const u32At = (src: Uint8Array, p: number): number => (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;

/**
 * IQ3_S (110 bytes: d, qs[64] low index bits, qh[8] ninth bits, signs[32], scales[4] nibbles).
 * Quad-block 440 bytes (= 4 × 110): 4 × d; per sub-block 2 bytes of the 4 rows' scale nibbles,
 * then per group 13 bytes: the 4 rows' two 9-bit grid indices (72 bits), then their 4 sign bytes.
 * i32 bound per lane: 8 sub-blocks · 8 products · 15 · 31 · 32767 = 9.8e8.
 */
const IQ3S: Iq3Spec = {
  type: 'iq3_s',
  storedBytes: 110,
  sbHeader: 2,
  gBytes: 13,
  idxBits: 9,
  grid: GRID_IQ3S,
  a: (r) => ({ pos: 18 * r, bits: 9 }),
  b: (r) => ({ pos: 18 * r + 9, bits: 9 }),
  s: (r) => ({ pos: 72 + 8 * r, bits: 8 }),
  scale: (r) => ({ pos: 4 * r, bits: 4 }),
  dFactor: 1,
  read: (src, p, ib) => ({
    scale: (src[p + 106 + (ib >> 1)]! >> (4 * (ib & 1))) & 15,
    groups: [0, 1, 2, 3].map((l) => {
      const idx = (k: number) => src[p + 2 + k]! | (((src[p + 66 + (k >> 3)]! >> (k & 7)) & 1) << 8);
      return [idx(8 * ib + 2 * l), idx(8 * ib + 2 * l + 1), src[p + 74 + 4 * ib + l]!];
    }),
  }),
};

/**
 * IQ3_XXS (98 bytes: d, qs[64] grid indices, u32[8] of 4 seven-bit sign codes and a 4-bit scale).
 * Quad-block 408 bytes (4 × 98 + 16, +4.1 %): 4 × d; per sub-block 2 bytes of scale nibbles, then
 * per group 12 bytes: the 4 rows' two 8-bit indices and their sign bytes (the 7-bit codes
 * expanded by KSIGNS, so IQ3_S's sign table serves). The grid table holds grid/2 (levels are
 * even), so the i32 bound per lane is 8 · 8 · 31 · 31 · 32767 = 2.015e9 < 2^31.
 */
const IQ3XXS: Iq3Spec = {
  type: 'iq3_xxs',
  storedBytes: 98,
  sbHeader: 2,
  gBytes: 12,
  idxBits: 8,
  grid: GRID_IQ3XXS,
  a: (r) => ({ pos: 16 * r, bits: 8 }),
  b: (r) => ({ pos: 16 * r + 8, bits: 8 }),
  s: (r) => ({ pos: 64 + 8 * r, bits: 8 }),
  scale: (r) => ({ pos: 4 * r, bits: 4 }),
  dFactor: 0.5,
  read: (src, p, ib) => {
    const aux = u32At(src, p + 66 + 4 * ib);
    return {
      scale: aux >>> 28,
      groups: [0, 1, 2, 3].map((l) => [src[p + 2 + 8 * ib + 2 * l]!, src[p + 2 + 8 * ib + 2 * l + 1]!, KSIGNS_IQ2XS[(aux >>> (7 * l)) & 127]!]),
    };
  },
};

const IQ3_OPTS: Iq3Opts = { rowSets: [[0, 1, 2, 3]], lane: true };
function iq3Format(s: Iq3Spec, withTables: boolean): BlockFormat {
  return {
    type: s.type,
    blockInputs: 256,
    quadBlockBytes: iq3QuadBytes(s),
    xBlock: 256,
    bsumLen: 0,
    pack: (rows, rowBytes, out) => packIq3(s, rows, rowBytes, out),
    emit: () => emitIq3(s, IQ3_OPTS),
    // the family's tables are shared: one format lists them (the table test rejects overlaps)
    ...(withTables ? { tables: TABLES } : {}),
  };
}

const IQ1S_FORMAT: BlockFormat = {
  type: 'iq1_s', blockInputs: 256, quadBlockBytes: 200, xBlock: 32, bsumLen: 32, pack: packIq1S, emit: emitIq1S,
};
const IQ1M_FORMAT: BlockFormat = {
  type: 'iq1_m', blockInputs: 256, quadBlockBytes: 224, xBlock: 32, bsumLen: 0, pack: packIq1M, emit: emitIq1M,
};

export const IQ3_IQ1_FORMATS: readonly BlockFormat[] = [iq3Format(IQ3XXS, true), iq3Format(IQ3S, false), IQ1S_FORMAT, IQ1M_FORMAT];

// ---------------------------------------------------------------------------------------------
// IQ1: 8-value grid entries in {−1, 0, 1} plus a ±1/8 delta, 3-bit scales

/**
 * Packed IQ1 group (8 values of 4 rows): 6 bytes, the rows' 11-bit grid indices at bits 11r and 4
 * more bits at 44…47 (IQ1_S: row g's scale nibble in group g of a sub-block; IQ1_M: the 4 rows'
 * delta signs).
 */
const iq1Idx = (r: number): Field => ({ pos: 11 * r, bits: 11 });
const IQ1_NIB: Field = { pos: 44, bits: 4 };
const EVEN32 = [0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27];
const ODD32 = EVEN32.map((b) => b + 4);

/** v_r += grid(row r's index) · x for the group at gp, x at xp (one int16 vector). */
function iq1GroupDot(fr: FieldReader, v: readonly Local[], xv: Local): Op[] {
  return v.map((l, r) => set(l, i32x4.add(get(l), i32x4.dotI16x8S(v128.load8x8S(fr.get(iq1Idx(r), 3), GRID_IQ1), get(xv)))));
}

/**
 * IQ1_S (50 bytes: d, qs[32] low index bits, qh u16[8]: 3 high bits per group, 3-bit scale, delta
 * sign). Quad-block 200 bytes (= 4 × 50): 4 × d, then per sub-block 4 groups of 6 bytes (group g
 * also carries row g's nibble scale | sign << 3). Per sub-block the 4 rows' sums Σ grid·x are
 * summed horizontally and then, as one vector over the rows, Σ += (2s+1)·(8·Σ grid·x ± Σx) with Σx
 * from the 32-value block sums; the result is scaled by d/8. i32 bound per row:
 * 8 sub-blocks · 15 · (8 · 32 · 32767 + 32 · 32767) = 1.1e9.
 */
function emitIq1S(): Func {
  const f = new Func('mm_iq1_s', new Array<ValType>(13).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as Local[];
  const [wp, we, xp, xsp, bp, sp, se, gp, ge, unused] = f.locals32(10);
  const v = f.vlocals(4);
  const [acc, fs, xv, p01, p23] = f.vlocals(5);
  const QB = 200;
  const fr = new FieldReader(f, gp, 0, 6, [0, 1, 2, 3].map(iq1Idx));
  const nib = (r: number): Field => ({ pos: 48 * r + IQ1_NIB.pos, bits: 4 });
  const tail = new FieldReader(f, sp, 0, 24, [0, 1, 2, 3].map(nib));
  f.body = quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: unused!, bsum: bp }, { x, xs, bsum, nb }, q, t, pn!, { weights: QB, x: 512, bsum: 32 }),
    set(xsp, i32.add(get(xs), i32.shl(i32.add(i32.mul(get(t), get(nb)), get(pn!.b0)), i32.const(5)))), // 8 scales per block
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, QB,
      set(fs, zero()),
      set(sp, i32.add(get(wp), i32.const(8))),
      set(se, i32.add(get(wp), i32.const(QB))),
      forPtr(sp, se, 24,
        ...v.map((l) => set(l, zero())),
        set(gp, get(sp)),
        set(ge, i32.add(get(sp), i32.const(24))),
        forPtr(gp, ge, 6, ...fr.loads(), set(xv, v128.load(get(xp))), ...iq1GroupDot(fr, v, xv), inc(xp, 16)),
        ...tail.loads(),
        set(p01, load64Lane(tail.get(nib(1), 3), v128.load64Zero(tail.get(nib(0), 3), IQ1S_SCALES), 1, IQ1S_SCALES)),
        set(p23, load64Lane(tail.get(nib(3), 3), v128.load64Zero(tail.get(nib(2), 3), IQ1S_SCALES), 1, IQ1S_SCALES)),
        // [8S_r] and [±S_r] over the rows are the even and odd i32 lanes of p01, p23
        set(fs, f32x4.add(get(fs), f32x4.mul(f32x4.convertI32x4S(i32x4.add(
          i32x4.mul(hsum4(f, i32x4.add, v[0]!, v[1]!, v[2]!, v[3]!), i8x16.shuffle(get(p01), get(p23), EVEN32)),
          i32x4.mul(i8x16.shuffle(get(p01), get(p23), ODD32), v128.load32Splat(get(bp))))),
        v128.load32Splat(get(xsp))))),
        inc(bp, 4),
        inc(xsp, 4)),
      set(acc, f32x4.add(get(acc), f32x4.mul(get(fs), f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.const(1 / 8)))))),
    v128.store(outAddr, get(acc)),
  ], { w, nb, pb, quadBlockBytes: QB, outP });
  return f;
}

function packIq1S(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 50;
  for (let b = 0; b < nb; b++) {
    const o = b * 200;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * 50;
      out[o + 2 * r] = rows[p]!;
      out[o + 2 * r + 1] = rows[p + 1]!;
      for (let ib = 0; ib < 8; ib++) {
        const qh = rows[p + 34 + 2 * ib]! | (rows[p + 35 + 2 * ib]! << 8);
        const sb = 8 * (o + 8 + 24 * ib);
        putBits(out, sb + 48 * r + IQ1_NIB.pos, qh >> 12, 4);
        for (let l = 0; l < 4; l++) putBits(out, sb + 48 * l + iq1Idx(r).pos, rows[p + 2 + 4 * ib + l]! | (((qh >> (3 * l)) & 7) << 8), 11);
      }
    }
  }
}

/**
 * IQ1_M (56 bytes: qs[32] low index bits, qh[16] nibbles of 3 high bits and a delta sign per
 * group, scales u16[4]: 3-bit scales per 16 values, the f16 d in their top nibbles). Quad-block 224
 * bytes (= 4 × 56): 4 × d, then per sub-block 3 bytes of scales (per half, rows 0–1 then 2–3, 3 bits
 * each) and 4 groups of 6 bytes (delta signs of the 4 rows in bits 44…47). Per 16 values and row:
 * (2s+1)·(8·Σ grid·x + Σ_groups ±Σx_group); the groups' Σx come from the activations in the kernel
 * (shared by the 4 rows), times ±1 per row from a 16-entry table. i32 bound per row:
 * 16 halves · 15 · (8 · 16 · 32767 + 16 · 32767) = 1.1e9.
 */
function emitIq1M(): Func {
  const f = new Func('mm_iq1_m', new Array<ValType>(13).fill(I32));
  const [w, x, xs, , out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as Local[];
  const [wp, we, xp, xsp, sp, se, gp, ge, unused] = f.locals32(9);
  const v = f.vlocals(4);
  const [acc, cr, fs, xv, sx, dl] = f.vlocals(6);
  const QB = 224;
  const SB = 27;
  const fr = new FieldReader(f, gp, 0, 6, [...[0, 1, 2, 3].map(iq1Idx), IQ1_NIB]);
  const sc = (h: number, pair: number): Field => ({ pos: 12 * h + 6 * pair, bits: 6 });
  const scales = new FieldReader(f, sp, 0, 3 + 24, [sc(0, 0), sc(0, 1), sc(1, 0), sc(1, 1)]);
  const half = (h: number): Op[] => [
    ...v.map((l) => set(l, zero())),
    set(dl, zero()),
    set(gp, i32.add(get(sp), i32.const(3 + 12 * h))),
    set(ge, i32.add(get(gp), i32.const(12))),
    forPtr(gp, ge, 6,
      ...fr.loads(),
      set(xv, v128.load(get(xp))),
      ...iq1GroupDot(fr, v, xv),
      // Σx of the group in every lane, times the rows' ±1
      set(sx, i32x4.extaddPairwiseI16x8S(get(xv))),
      set(sx, i32x4.add(get(sx), i8x16.shuffle(get(sx), get(sx), [4, 5, 6, 7, 0, 1, 2, 3, 12, 13, 14, 15, 8, 9, 10, 11]))),
      set(sx, i32x4.add(get(sx), i8x16.shuffle(get(sx), get(sx), [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7]))),
      set(dl, i32x4.add(get(dl), i32x4.mul(get(sx), v128.load(fr.get(IQ1_NIB, 4), IQ1M_SIGNS)))),
      inc(xp, 16)),
    set(cr, i32x4.add(get(cr), i32x4.mul(
      i32x4.add(i32x4.shl(hsum4(f, i32x4.add, v[0]!, v[1]!, v[2]!, v[3]!), 3), get(dl)),
      load64Lane(scales.get(sc(h, 1), 3), v128.load64Zero(scales.get(sc(h, 0), 3), IQ1M_SCALES), 1, IQ1M_SCALES)))),
  ];
  f.body = quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: unused! }, { x, xs, nb }, q, t, pn!, { weights: QB, x: 512, bsum: 0 }),
    set(xsp, i32.add(get(xs), i32.shl(i32.add(i32.mul(get(t), get(nb)), get(pn!.b0)), i32.const(5)))), // 8 scales per block
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, QB,
      set(fs, zero()),
      set(sp, i32.add(get(wp), i32.const(8))),
      set(se, i32.add(get(wp), i32.const(QB))),
      forPtr(sp, se, SB,
        set(cr, zero()),
        ...scales.loads(), ...half(0), ...half(1),
        set(fs, f32x4.add(get(fs), f32x4.mul(f32x4.convertI32x4S(get(cr)), v128.load32Splat(get(xsp))))),
        inc(xsp, 4)),
      set(acc, f32x4.add(get(acc), f32x4.mul(get(fs), f32x4.mul(f16x4(f, v128.load16x4U(get(wp))), f32x4.const(1 / 8)))))),
    v128.store(outAddr, get(acc)),
  ], { w, nb, pb, quadBlockBytes: QB, outP });
  return f;
}

function packIq1M(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 56;
  const u16 = (p: number) => rows[p]! | (rows[p + 1]! << 8);
  for (let b = 0; b < nb; b++) {
    const o = b * 224;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * 56;
      const s = [0, 1, 2, 3].map((k) => u16(p + 48 + 2 * k));
      const d = (s[0]! >> 12) | ((s[1]! >> 8) & 0x00f0) | ((s[2]! >> 4) & 0x0f00) | (s[3]! & 0xf000);
      out[o + 2 * r] = d & 255;
      out[o + 2 * r + 1] = d >> 8;
      for (let k = 0; k < 32; k++) {
        const sb = 8 * (o + 8 + 27 * (k >> 2));
        const h = (k >> 1) & 1;
        if ((k & 1) === 0) putBits(out, sb + 12 * h + 3 * r, (s[k >> 3]! >> (3 * ((k >> 1) & 3))) & 7, 3);
        const nib = (rows[p + 32 + (k >> 1)]! >> (4 * (k & 1))) & 15;
        const g = sb + 24 + 48 * (k & 3);
        putBits(out, g + iq1Idx(r).pos, rows[p + k]! | ((nib & 7) << 8), 11);
        putBits(out, g + IQ1_NIB.pos + r, nib >> 3, 1);
      }
    }
  }
}

/** Experiment hook (temporary): a kernel variant under another name. */
export function __variant(type: string, opts: unknown, name: string): Func {
  const spec = type === 'iq3_s' ? IQ3S : IQ3XXS;
  const fn = emitIq3(spec, opts as Iq3Opts);
  (fn as { name: string }).name = name;
  return fn;
}
export const __TABLES = TABLES;
