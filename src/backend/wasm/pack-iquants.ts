/**
 * Repack kernels of the i-quants (see pack-kernels.ts, which registers them): byte for byte the
 * formats' JavaScript packers (formats/iq2.ts, iq3-iq1.ts), which cap expert loads at 1.3–3 GB/s.
 * Most of these layouts only move stored fields to the 4 rows' side by side: transposes of 16- or
 * 32-bit words done with shuffles; where a packer re-derives a field (IQ2_XXS' sign bytes) or
 * re-packs bit fields (IQ1's 11-bit indices) it is done on whole vectors of entries.
 */
import { Func, type Local, type Op, seq, get, set, i32, v128, i8x16, i16x8, i32x4 } from './asm.js';
import { unitBlocks, shuffle, lo, hi, BYTES_4X4 } from './pack-kernels.js';

/** 4 row vectors → their 32-bit words transposed (out[w] lane r = word w of row r), via t (4 temporaries). */
function transpose32(v: readonly Local[], t: readonly Local[], out: readonly Local[]): Op {
  return seq(
    set(t[0]!, shuffle(v[0]!, v[1]!, lo(4))),
    set(t[1]!, shuffle(v[0]!, v[1]!, hi(4))),
    set(t[2]!, shuffle(v[2]!, v[3]!, lo(4))),
    set(t[3]!, shuffle(v[2]!, v[3]!, hi(4))),
    set(out[0]!, shuffle(t[0]!, t[2]!, lo(8))),
    set(out[1]!, shuffle(t[0]!, t[2]!, hi(8))),
    set(out[2]!, shuffle(t[1]!, t[3]!, lo(8))),
    set(out[3]!, shuffle(t[1]!, t[3]!, hi(8))),
  );
}

const f16Heads = (row: (k: number) => Op, out: Local): Op => seq(...[0, 1, 2, 3].map((r) => i32.store16(get(out), i32.load16U(row(r)), 2 * r)));

/**
 * IQ2_XXS (66 bytes: d, per sub-block a word of 4 grid indices and a word of 4 seven-bit sign
 * codes with the scale on top) → 280: the index words of the 4 rows transposed by bytes beside
 * their sign bytes (signBytes).
 */
export function packIq2Xxs(): Func {
  return unitBlocks('pack_iq2_xxs', 4, 66, 280, (f, row, out) => {
    const v = f.vlocals(4);
    const t = f.vlocals(4);
    const w = f.vlocals(4);
    const [signs, sc, codes] = f.vlocals(3);
    /** Entry l of a sub-block: the 4 rows' index byte l (from g), then their sign byte l. */
    const entry = (l: number): number[] => [0, 1, 2, 3].map((r) => 4 * r + l);
    const entries = (g: Local, a: Local, ib: number): Op => seq(
      set(signs, signBytes(a, codes)),
      v128.store(get(out), shuffle(g, signs, [...entry(0), ...entry(0).map((x) => x + 16), ...entry(1), ...entry(1).map((x) => x + 16)]), 24 + 32 * ib),
      v128.store(get(out), shuffle(g, signs, [...entry(2), ...entry(2).map((x) => x + 16), ...entry(3), ...entry(3).map((x) => x + 16)]), 24 + 32 * ib + 16),
    );
    return seq(
      f16Heads(row, out),
      set(sc, v128.zero()),
      ...[0, 1, 2, 3].map((j) => seq(
        // sub-blocks 2j, 2j + 1 of the 4 rows: w = [indices 2j, codes 2j, indices 2j+1, codes 2j+1], lanes = rows
        ...v.map((x, r) => set(x, v128.load(row(r), 2 + 16 * j))),
        transpose32(v, t, w),
        entries(w[0]!, w[1]!, 2 * j),
        entries(w[2]!, w[3]!, 2 * j + 1),
        // the scale nibbles of the pair, low: the even sub-block, into byte j of each row's lane
        set(sc, v128.or(get(sc), i32x4.shl(v128.or(i32x4.shrU(get(w[1]!), 28), mask32(i32x4.shrU(get(w[3]!), 24), 0xf0)), 8 * j))),
      )),
      v128.store(get(out), shuffle(sc, sc, BYTES_4X4), 8),
    );
  });
}

const mask32 = (x: Op, m: number): Op => v128.and(x, i32x4.const(m));

/**
 * Per lane a word of 4 seven-bit sign codes (bits 7l..7l+6) → byte l: KSIGNS_IQ2XS of code l, the
 * code with its parity bit on top (popcnt), so no table is needed; `codes` is scratch.
 */
function signBytes(a: Local, codes: Local): Op {
  const spread = v128.or(
    v128.or(mask32(get(a), 0x7f), mask32(i32x4.shl(get(a), 1), 0x7f00)),
    v128.or(mask32(i32x4.shl(get(a), 2), 0x7f0000), mask32(i32x4.shl(get(a), 3), 0x7f000000)),
  );
  return seq(set(codes, spread), v128.or(get(codes), i16x8.shl(v128.and(i8x16.popcnt(get(codes)), i8x16.const(1)), 7)));
}

/**
 * The 4 rows' 8 u16 at `at`, 16-bit interleaved by row pairs (via v): out[0] = rows 0, 1's u16
 * 0–3, out[1] rows 2, 3's, out[2], out[3] their u16 4–7; a 32-bit interleave of out[0] and out[1]
 * (or out[2] and out[3]) then gives per u16 the 4 rows side by side.
 */
function codePairs(row: (k: number) => Op, at: number, v: readonly Local[], out: readonly Local[]): Op {
  return seq(
    ...v.map((x, r) => set(x, v128.load(row(r), at))),
    set(out[0]!, shuffle(v[0]!, v[1]!, lo(2))),
    set(out[1]!, shuffle(v[2]!, v[3]!, lo(2))),
    set(out[2]!, shuffle(v[0]!, v[1]!, hi(2))),
    set(out[3]!, shuffle(v[2]!, v[3]!, hi(2))),
  );
}

/** Rows' 8 scale bytes at `at` (load64) → [byte][row] at out + to (32 bytes), with a, b as temporaries. */
function scaleBytes(f: Func, row: (k: number) => Op, out: Local, at: number, to: number): Op {
  const s = f.vlocals(4);
  const [a, b] = f.vlocals(2);
  return seq(
    ...s.map((x, r) => set(x, v128.load64Zero(row(r), at))),
    set(a, shuffle(s[0]!, s[1]!, lo(1))),
    set(b, shuffle(s[2]!, s[3]!, lo(1))),
    v128.store(get(out), shuffle(a, b, lo(2)), to),
    v128.store(get(out), shuffle(a, b, hi(2)), to + 16),
  );
}

/** IQ2_XS (74 bytes: d, 32 u16 codes, 8 scale bytes) → 296: the 4 rows' u16 codes side by side per entry, scale bytes [pair][row]. */
export function packIq2Xs(): Func {
  return unitBlocks('pack_iq2_xs', 4, 74, 296, (f, row, out) => {
    const v = f.vlocals(4);
    const [aLo, aHi, bLo, bHi] = f.vlocals(4) as [Local, Local, Local, Local];
    return seq(
      f16Heads(row, out),
      scaleBytes(f, row, out, 66, 8),
      ...[0, 1, 2, 3].map((c) => seq(
        codePairs(row, 2 + 16 * c, v, [aLo, bLo, aHi, bHi]),
        v128.store(get(out), shuffle(aLo, bLo, lo(4)), 40 + 64 * c),
        v128.store(get(out), shuffle(aLo, bLo, hi(4)), 40 + 64 * c + 16),
        v128.store(get(out), shuffle(aHi, bHi, lo(4)), 40 + 64 * c + 32),
        v128.store(get(out), shuffle(aHi, bHi, hi(4)), 40 + 64 * c + 48),
      )),
    );
  });
}

/** A vector of 8 u16 constants. */
const u16s = (l: readonly number[]): Op => v128.const(l.flatMap((n) => [n & 0xff, n >> 8]));

/** Byte pattern of a shuffle taking 16-bit lanes l (≥ 8: from the second vector). */
const lanes16 = (l: readonly number[]): number[] => l.flatMap((x) => [2 * x, 2 * x + 1]);

/**
 * IQ1 groups (formats/iq3-iq1.ts): per group of 8 values 48 bits, the 4 rows' 11-bit grid indices
 * at bits 11r, then 4 bits on top. On vectors of 8 groups (lanes) the 3 16-bit words of each group
 * are w0 = i0 | i1 << 11, w1 = i1 >> 5 | i2 << 6, w2 = i2 >> 10 | i3 << 1 | top; `bytes(from)` is
 * then 16 bytes of the groups' 48-byte run (from `from`, past 48: don't care), two shuffles.
 */
function iq1Groups(f: Func): { words: (i: readonly Local[], top: Op) => Op; bytes: (from: readonly number[]) => Op } {
  const [w0, w1, w2, t] = f.vlocals(4) as [Local, Local, Local, Local];
  const w = [w0, w1, w2];
  const src = (p: number): { word: number; byte: number } => ({ word: (p % 6) >> 1, byte: 2 * Math.floor(p / 6) + (p & 1) });
  return {
    words: (i, top) => seq(
      set(w[0]!, v128.or(get(i[0]!), i16x8.shl(get(i[1]!), 11))),
      set(w[1]!, v128.or(i16x8.shrU(get(i[1]!), 5), i16x8.shl(get(i[2]!), 6))),
      set(w[2]!, v128.or(v128.or(i16x8.shrU(get(i[2]!), 10), i16x8.shl(get(i[3]!), 1)), top)),
    ),
    bytes: (from) => {
      const at = from.map((p) => src(Math.min(p, 47)));
      return seq(
        set(t, shuffle(w[0]!, w[1]!, at.map((s) => (s.word === 1 ? 16 + s.byte : s.word === 0 ? s.byte : 0)))),
        shuffle(t, w[2]!, at.map((s, k) => (s.word === 2 ? 16 + s.byte : k))),
      );
    },
  };
}

const run16 = (from: number): number[] => Array.from({ length: 16 }, (_, k) => from + k);

/**
 * IQ1_S (50 bytes: d, qs[32] low index bytes, qh u16[8]: 4 × 3 high index bits, scale and delta
 * sign on top) → 200: per pair of sub-blocks 8 groups at once, each row's high bits brought to
 * bits 8–10 by a multiply per lane (a shift per lane), group l's top nibble from row l's qh.
 */
export function packIq1S(): Func {
  return unitBlocks('pack_iq1_s', 4, 50, 200, (f, row, out) => {
    const i = f.vlocals(4);
    const q = f.vlocals(4);
    const [x, y] = f.vlocals(2);
    const g = iq1Groups(f);
    return seq(
      f16Heads(row, out),
      ...[0, 1, 2, 3].map((c) => seq(
        // lanes 4h + l: group l of sub-block 2c + h; q[r] its qh, i[r] its index
        ...[0, 1, 2, 3].map((r) => seq(
          set(x, v128.load32Zero(row(r), 34 + 4 * c)),
          set(q[r]!, shuffle(x, x, lanes16([0, 0, 0, 0, 1, 1, 1, 1]))),
          set(i[r]!, v128.or(v128.load8x8U(row(r), 2 + 8 * c), i16x8.shrU(v128.and(
            i16x8.mul(get(q[r]!), u16s([512, 64, 8, 1, 512, 64, 8, 1])), i16x8.const(0xe00)), 1))),
        )),
        set(x, shuffle(q[0]!, q[1]!, lanes16([0, 9, 2, 11, 4, 13, 6, 15]))),
        set(y, shuffle(q[2]!, q[3]!, lanes16([0, 9, 2, 11, 4, 13, 6, 15]))),
        g.words(i, v128.and(shuffle(x, y, lanes16([0, 1, 10, 11, 4, 5, 14, 15])), i16x8.const(0xf000))),
        ...[0, 16, 32].map((p) => v128.store(get(out), g.bytes(run16(p)), 8 + 48 * c + p)),
      )),
    );
  });
}

/**
 * IQ1_M (56 bytes: qs[32] low index bytes, qh[16]: per group a nibble of 3 high index bits and a
 * delta sign, scales u16[4]: 3-bit scales with d's nibbles on top) → 224: d reassembled from the
 * 4 top nibbles; per sub-block a 24-bit header of the rows' two 3-bit scales (scalar), then its 4
 * groups as IQ1_S's, each qh nibble brought to bits 8–11 by a per-lane multiply (the sign bit at 11
 * moved to bit 12 + r of the top).
 */
export function packIq1M(): Func {
  return unitBlocks('pack_iq1_m', 4, 56, 224, (f, row, out) => {
    const i = f.vlocals(4);
    const m = f.vlocals(4);
    const [x, zero] = f.vlocals(2);
    const [a, b, hdr, v] = f.locals32(4);
    const g = iq1Groups(f);
    const and = (x: Op, n: number): Op => i32.and(x, i32.const(n));
    const shr = (x: Op, n: number): Op => i32.shrU(x, i32.const(n));
    const or = (...x: Op[]): Op => x.reduce((p, q) => i32.or(p, q));
    /** Header of sub-block ib: row r's scales (6 bits of its u16 ib >> 1) at bits 3r and 12 + 3r. */
    const header = (ib: number): Op => seq(
      set(hdr, i32.const(0)),
      ...[0, 1, 2, 3].map((r) => seq(
        set(v, shr(i32.load16U(row(r), 48 + 2 * (ib >> 1)), 6 * (ib & 1))),
        set(hdr, or(get(hdr), i32.shl(and(get(v), 7), i32.const(3 * r)), i32.shl(and(get(v), 56), i32.const(9 + 3 * r)))),
      )),
      i32.store16(get(out), get(hdr), 8 + 27 * ib),
      i32.store8(get(out), shr(get(hdr), 16), 8 + 27 * ib + 2),
    );
    return seq(
      set(zero, v128.zero()),
      ...[0, 1, 2, 3].map((r) => seq(
        set(a, i32.load(row(r), 48)),
        set(b, i32.load(row(r), 52)),
        i32.store16(get(out), or(and(shr(get(a), 12), 0xf), and(shr(get(a), 24), 0xf0), and(shr(get(b), 4), 0xf00), and(shr(get(b), 16), 0xf000)), 2 * r),
      )),
      ...Array.from({ length: 8 }, (_, ib) => header(ib)),
      ...[0, 1, 2, 3].map((c) => seq(
        // lanes 4h + j: group j of sub-block 2c + h; m[r] its qh nibble at bits 8–11, i[r] its index
        ...[0, 1, 2, 3].map((r) => seq(
          set(x, v128.load32Zero(row(r), 32 + 4 * c)),
          set(m[r]!, i16x8.mul(shuffle(x, zero, [0, 16, 0, 16, 1, 16, 1, 16, 2, 16, 2, 16, 3, 16, 3, 16]), u16s([256, 16, 256, 16, 256, 16, 256, 16]))),
          set(i[r]!, v128.or(v128.load8x8U(row(r), 8 * c), v128.and(get(m[r]!), i16x8.const(0x700)))),
        )),
        g.words(i, [0, 1, 2, 3].map((r) => i16x8.shl(v128.and(get(m[r]!), i16x8.const(0x800)), 1 + r)).reduce((p, q) => v128.or(p, q))),
        // sub-block 2c's 24 group bytes after its header, 2c + 1's after the next header
        v128.store(get(out), g.bytes(run16(0)), 8 + 54 * c + 3),
        set(x, g.bytes([...run16(16).slice(0, 8), ...run16(40).slice(0, 8)])),
        v128.store64Lane(get(out), get(x), 0, 8 + 54 * c + 19),
        v128.store(get(out), g.bytes(run16(24)), 8 + 54 * c + 30),
        v128.store64Lane(get(out), get(x), 1, 8 + 54 * c + 46),
      )),
    );
  });
}

/**
 * IQ3_XXS (98 bytes: d, qs[64] grid indices, per sub-block a word of 4 seven-bit sign codes with the
 * scale on top) → 408: per group the 4 rows' index pairs (IQ2_XS's 16-bit transpose) beside their
 * sign bytes (signBytes of the 4 rows' transposed words); the header's scale nibbles in scalar code.
 */
export function packIq3Xxs(): Func {
  return unitBlocks('pack_iq3_xxs', 4, 98, 408, (f, row, out) => {
    const v = f.vlocals(4);
    const t = f.vlocals(4);
    const aux = f.vlocals(4);
    const pairs = f.vlocals(4);
    const [s, lo01, lo23, codes] = f.vlocals(4);
    const top = (r: number, ib: number): Op => i32.load8U(row(r), 66 + 4 * ib + 3);
    /** Sub-block ib: its pairs of groups 0–1 (g01) and 2–3 (g23), 12 bytes a group after the 2-byte header. */
    const sub = (ib: number, g01: Local, g23: Local): Op => {
      const sb = 8 + 50 * ib;
      const signsOf = (l: number): number[] => [0, 1, 2, 3].map((r) => 16 + 4 * r + l);
      return seq(
        set(s, signBytes(aux[ib & 3]!, codes)),
        v128.store(get(out), shuffle(g01, s, [...run16(0).slice(0, 8), ...signsOf(0), 8, 9, 10, 11]), sb + 2),
        set(codes, shuffle(g01, s, [12, 13, 14, 15, ...signsOf(1), ...run16(0).slice(0, 8)])),
        v128.store(get(out), shuffle(codes, g23, [...run16(0).slice(0, 8), ...run16(16).slice(0, 8)]), sb + 18),
        v128.store(get(out), shuffle(g23, s, [...signsOf(2), ...run16(8).slice(0, 8), ...signsOf(3)]), sb + 34),
        i32.store16(get(out), i32.or(
          i32.or(i32.shrU(top(0, ib), i32.const(4)), i32.and(top(1, ib), i32.const(0xf0))),
          i32.shl(i32.or(i32.shrU(top(2, ib), i32.const(4)), i32.and(top(3, ib), i32.const(0xf0))), i32.const(8))), sb),
      );
    };
    return seq(
      f16Heads(row, out),
      ...[0, 1, 2, 3].map((j) => seq(
        ...(j % 2 ? [] : [...v.map((x, r) => set(x, v128.load(row(r), 66 + 8 * j))), transpose32(v, t, aux)]),
        // indices of sub-blocks 2j, 2j + 1: 16-bit interleave of row pairs, then 32-bit of those
        codePairs(row, 2 + 16 * j, v, pairs),
        ...[0, 1].map((h) => seq(
          set(lo01, shuffle(pairs[2 * h]!, pairs[2 * h + 1]!, lo(4))),
          set(lo23, shuffle(pairs[2 * h]!, pairs[2 * h + 1]!, hi(4))),
          sub(2 * j + h, lo01, lo23),
        )),
      )),
    );
  });
}
