/**
 * Repack kernels of the i-quants (see pack-kernels.ts, which registers them): byte for byte the
 * formats' JavaScript packers (formats/iq2.ts, iq3-iq1.ts), which cap expert loads at 1.3–3 GB/s.
 * Most of these layouts only move stored fields to the 4 rows' side by side: transposes of 16- or
 * 32-bit words done with shuffles; where a packer re-derives a field (IQ2_XXS' sign bytes) or
 * re-packs bit fields (IQ1's 11-bit indices) it is done on whole vectors of entries.
 */
import { Func, type Local, type Op, seq, get, set, i32, v128, i8x16, i16x8, i32x4 } from './asm.js';
import { unitBlocks, shuffle, lo, hi, transpose4, BYTES_4X4 } from './pack-kernels.js';

/**
 * 4 row vectors transposed by w-byte units (transpose4) into out, via t (4 temporaries). w = 4:
 * out[k] lane r = word k of row r; w = 1: out[k] = bytes 4k..4k+3 of the rows, each byte as the 4
 * rows' side by side.
 */
function transpose(w: 1 | 4, v: readonly Local[], t: readonly Local[], out: readonly Local[]): Op {
  return transpose4(v, t, w, (k, x) => set(out[k]!, x));
}

/** 4 sets of 4 vector locals (a vector per row, or per word of a transpose). */
const vectors4 = (f: Func): Local[][] => Array.from({ length: 4 }, () => f.vlocals(4));

const f16Heads = (row: (k: number) => Op, out: Local): Op => seq(...[0, 1, 2, 3].map((r) => i32.store16(get(out), i32.load16U(row(r)), 2 * r)));

/**
 * IQ2_XXS (66 bytes: d, per sub-block a word of 4 grid indices and a word of 4 seven-bit sign
 * codes with the scale on top) → 280: the index words of the 4 rows transposed by bytes beside
 * their sign bytes (signBytes).
 */
export function packIq2Xxs(): Func {
  return unitBlocks('iq2_xxs', 4, 280, (f, row, out) => {
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
        transpose(4, v, t, w),
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
  return unitBlocks('iq2_xs', 4, 296, (f, row, out) => {
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
 * are w0 = i0 | i1 << 11, w1 = i1 >> 5 | i2 << 6, w2 = i2 >> 10 | i3 << 1 | top, interleaved
 * (16-, then 32-bit unpacks) into 8 bytes a group, 2 groups a vector; `bytes(from)` is then 16 bytes
 * of the groups' 48-byte run (from `from`, past 48: don't care), one shuffle of 2 such vectors.
 * (Gathering straight from w0, w1, w2, two general shuffles per output vector, ran 20 % slower.)
 */
function iq1Groups(f: Func): { words: (i: readonly Local[], top: Op) => Op; bytes: (from: readonly number[]) => Op } {
  const [w0, w1, w2, t] = f.vlocals(4) as [Local, Local, Local, Local];
  const [a0, a1, b0, b1] = f.vlocals(4) as [Local, Local, Local, Local];
  const g = f.vlocals(4);
  return {
    words: (i, top) => seq(
      set(w0, v128.or(get(i[0]!), i16x8.shl(get(i[1]!), 11))),
      set(w1, v128.or(i16x8.shrU(get(i[1]!), 5), i16x8.shl(get(i[2]!), 6))),
      set(w2, v128.or(v128.or(i16x8.shrU(get(i[2]!), 10), i16x8.shl(get(i[3]!), 1)), top)),
      set(a0, shuffle(w0, w1, lo(2))),
      set(a1, shuffle(w0, w1, hi(2))),
      set(b0, shuffle(w2, w2, lo(2))),
      set(b1, shuffle(w2, w2, hi(2))),
      set(g[0]!, shuffle(a0, b0, lo(4))),
      set(g[1]!, shuffle(a0, b0, hi(4))),
      set(g[2]!, shuffle(a1, b1, lo(4))),
      set(g[3]!, shuffle(a1, b1, hi(4))),
    ),
    bytes: (from) => gather(t, from.map((p) => Math.min(p, 47)).map((p) => [g[Math.floor(p / 12)]!, 8 * (Math.floor(p / 6) & 1) + (p % 6)] as const)),
  };
}

/** 16 bytes picked from vectors ([vector, byte] per lane): one shuffle per source after the first, t scratch. */
function gather(t: Local, picks: readonly (readonly [Local, number])[]): Op {
  const [a, b = a, ...rest] = [...new Set(picks.map(([v]) => v))] as [Local, ...Local[]];
  const first = shuffle(a, b, picks.map(([v, x]) => (v === a ? x : v === b ? 16 + x : 0)));
  if (rest.length === 0) return first;
  const last = rest.pop()!;
  return seq(
    set(t, first),
    ...rest.map((c) => set(t, shuffle(t, c, picks.map(([v, x], k) => (v === c ? 16 + x : k))))),
    shuffle(t, last, picks.map(([v, x], k) => (v === last ? 16 + x : k))),
  );
}

const run16 = (from: number): number[] => Array.from({ length: 16 }, (_, k) => from + k);

/**
 * IQ1_S (50 bytes: d, qs[32] low index bytes, qh u16[8]: 4 × 3 high index bits, scale and delta
 * sign on top) → 200: per pair of sub-blocks 8 groups at once, each row's high bits brought to
 * bits 8–10 by a multiply per lane (a shift per lane), group l's top nibble from row l's qh.
 */
export function packIq1S(): Func {
  return unitBlocks('iq1_s', 4, 200, (f, row, out) => {
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
 * 4 top nibbles; per sub-block a 24-bit header of the rows' two 3-bit scales, then its 4
 * groups as IQ1_S's, each qh nibble brought to bits 8–11 by a per-lane multiply (the sign bit at 11
 * moved to bit 12 + r of the top).
 */
export function packIq1M(): Func {
  return unitBlocks('iq1_m', 4, 224, (f, row, out) => {
    const i = f.vlocals(4);
    const m = f.vlocals(4);
    const [x, zero, lo3, hi3] = f.vlocals(4) as [Local, Local, Local, Local];
    const [a, b] = f.locals32(2) as [Local, Local];
    const g = iq1Groups(f);
    const and = (x: Op, n: number): Op => i32.and(x, i32.const(n));
    const shr = (x: Op, n: number): Op => i32.shrU(x, i32.const(n));
    const or = (...x: Op[]): Op => x.reduce((p, q) => i32.or(p, q));
    /**
     * The 8 sub-blocks' 24-bit headers as u16 lanes (lane ib): row r's 3-bit scales (6 bits of its
     * u16 ib >> 1, brought down by a per-lane multiply) at bits 3r of lo (bits 0–11) and of hi (12–23).
     */
    const headers = seq(
      set(lo3, v128.zero()),
      set(hi3, v128.zero()),
      ...[0, 1, 2, 3].map((r) => seq(
        set(x, v128.load64Zero(row(r), 48)),
        set(x, i16x8.shrU(i16x8.mul(shuffle(x, x, lanes16([0, 0, 1, 1, 2, 2, 3, 3])), u16s([1024, 16, 1024, 16, 1024, 16, 1024, 16])), 10)),
        set(lo3, v128.or(get(lo3), i16x8.shl(v128.and(get(x), i16x8.const(7)), 3 * r))),
        set(hi3, v128.or(get(hi3), i16x8.shl(i16x8.shrU(get(x), 3), 3 * r))),
      )),
      set(x, v128.or(get(lo3), i16x8.shl(get(hi3), 12))),
      set(hi3, i16x8.shrU(get(hi3), 4)),
      ...Array.from({ length: 8 }, (_, ib) => seq(
        i32.store16(get(out), i16x8.extractLaneS(get(x), ib), 8 + 27 * ib),
        i32.store8(get(out), i16x8.extractLaneS(get(hi3), ib), 8 + 27 * ib + 2),
      )),
    );
    return seq(
      set(zero, v128.zero()),
      ...[0, 1, 2, 3].map((r) => seq(
        set(a, i32.load(row(r), 48)),
        set(b, i32.load(row(r), 52)),
        i32.store16(get(out), or(and(shr(get(a), 12), 0xf), and(shr(get(a), 24), 0xf0), and(shr(get(b), 4), 0xf00), and(shr(get(b), 16), 0xf000)), 2 * r),
      )),
      headers,
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
  return unitBlocks('iq3_xxs', 4, 408, (f, row, out) => {
    const [v, t, aux, pairs] = vectors4(f);
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
        ...(j % 2 ? [] : [...v.map((x, r) => set(x, v128.load(row(r), 66 + 8 * j))), transpose(4, v, t, aux)]),
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

/**
 * IQ3_S (110 bytes: d, qs[64] low index bits, qh[8] ninth bits, signs[32], scales[4] nibbles) →
 * 440: per sub-block and row the 4 groups' 18-bit index pairs as i32 lanes (a sub-block's 8 index
 * bytes widened, each ninth bit placed by a per-lane multiply), merged into the groups' 72-bit runs
 * as 3 words per lane (lo, mid, last byte) and gathered with the transposed sign bytes; the
 * header's scale nibbles in scalar code.
 */
export function packIq3S(): Func {
  return unitBlocks('iq3_s', 4, 440, (f, row, out) => {
    const [v, tt, sg, pair] = vectors4(f);
    const [x, lo_, mid, last, t] = f.vlocals(5) as [Local, Local, Local, Local, Local];
    const [ev, od] = f.locals32(2) as [Local, Local];
    const sc = (r: number, j: number): Op => i32.load8U(row(r), 106 + j);
    /** Row r's index pairs a | b << 9 of sub-block ib's groups (lane l) into pair[r]. */
    const pairs = (r: number, ib: number): Op => seq(
      // u16 lane m: index byte m of the sub-block (a, b of group m >> 1) with bit m of qh[ib] at bit 8
      set(x, v128.or(i16x8.extendLowI8x16U(v128.load64Zero(row(r), 2 + 8 * ib)), v128.and(
        i16x8.mul(i16x8.splat(i32.load8U(row(r), 66 + ib)), u16s([256, 128, 64, 32, 16, 8, 4, 2])), i16x8.const(0x100)))),
      set(pair[r]!, v128.bitselect(get(x), i32x4.shrU(get(x), 7), i32x4.const(0x1ff))),
    );
    /** Packed byte p of a sub-block's 4 groups (13 bytes each: lo, mid, last, the rows' sign bytes). */
    const pick = (ib: number, p: number): readonly [Local, number] => {
      const l = Math.floor(p / 13);
      const o = p % 13;
      return o < 4 ? [lo_, 4 * l + o] : o < 8 ? [mid, 4 * l + o - 4] : o === 8 ? [last, 4 * l] : [sg[ib & 3]!, 4 * (o - 9) + l];
    };
    const header = (ib: number): Op => i32.store16(get(out), ib & 1
      ? i32.or(i32.and(i32.shrU(get(ev), i32.const(4)), i32.const(0x0f0f)), i32.and(get(od), i32.const(0xf0f0)))
      : i32.or(i32.and(get(ev), i32.const(0x0f0f)), i32.shl(i32.and(get(od), i32.const(0x0f0f)), i32.const(4))), 8 + 54 * ib);
    const sub = (ib: number): Op => seq(
      ...(ib % 4 ? [] : [...v.map((y, r) => set(y, v128.load(row(r), 74 + 4 * ib))), transpose(4, v, tt, sg)]),
      // rows 0, 2 (ev) and 1, 3 (od) of the pair's scale bytes: nibble ib & 1 of each is the header's
      ...(ib % 2 ? [] : [
        set(ev, i32.or(sc(0, ib >> 1), i32.shl(sc(2, ib >> 1), i32.const(8)))),
        set(od, i32.or(sc(1, ib >> 1), i32.shl(sc(3, ib >> 1), i32.const(8)))),
      ]),
      header(ib),
      ...[0, 1, 2, 3].map((r) => pairs(r, ib)),
      // row r's pair at bit 18r of the group's 72 bits: lo = bits 0–31, mid = 32–63, last = 64–71
      set(lo_, v128.or(get(pair[0]!), i32x4.shl(get(pair[1]!), 18))),
      set(mid, v128.or(v128.or(i32x4.shrU(get(pair[1]!), 14), i32x4.shl(get(pair[2]!), 4)), i32x4.shl(get(pair[3]!), 22))),
      set(last, i32x4.shrU(get(pair[3]!), 10)),
      ...[0, 16, 32, 36].map((at) => v128.store(get(out), gather(t, run16(at).map((p) => pick(ib, p))), 8 + 54 * ib + 2 + at)),
    );
    return seq(f16Heads(row, out), ...Array.from({ length: 8 }, (_, ib) => sub(ib)));
  });
}

/**
 * IQ4_XS (136 bytes: d, scales_h u16, scales_l[4], qs[128]) → 552 (formats/legacy.ts): per row
 * the 8 six-bit scales as u16 lanes (nibble and 2-bit parts each brought in place by a per-lane
 * multiply), less 32, byte-transposed to [sub-block][row]; per sub-block and row its 16 index
 * bytes paired by a shuffle so that one nibble swap per u16 lane yields the low-nibble and the
 * high-nibble words' bytes at once (packIndexPairs), then a 4-row byte transpose.
 */
export function packIq4Xs(): Func {
  return unitBlocks('iq4_xs', 4, 552, (f, row, out) => {
    const [s, sw, half] = vectors4(f);
    const [x, zero] = f.vlocals(2) as [Local, Local];
    const scales = (r: number): Op => seq(
      set(x, v128.load32Zero(row(r), 4)),
      set(s[r]!, i16x8.sub(v128.or(
        v128.and(i16x8.shrU(i16x8.mul(shuffle(x, zero, [0, 16, 0, 16, 1, 16, 1, 16, 2, 16, 2, 16, 3, 16, 3, 16]), u16s([16, 1, 16, 1, 16, 1, 16, 1])), 4), i16x8.const(15)),
        v128.and(i16x8.shrU(i16x8.mul(i16x8.splat(i32.load16U(row(r), 2)), u16s([1 << 14, 1 << 12, 1 << 10, 1 << 8, 1 << 6, 1 << 4, 1 << 2, 1])), 10), i16x8.const(0x30)),
      ), i16x8.const(32))),
    );
    // per u16 lane 4u + c: byte 8u + [0, 2, 1, 3][c] of the sub-block's qs, and the byte 4 after it
    const pairing = [0, 1, 2, 3, 4, 5, 6, 7].flatMap((k) => {
      const b = 8 * (k >> 2) + [0, 2, 1, 3][k & 3]!;
      return [b, b + 4];
    });
    const nibbles = (r: number): Op => seq(
      set(x, shuffle(sw[r]!, sw[r]!, pairing)),
      // lane a | b << 8 → a_lo | b_lo << 4 (low-nibble word byte), a_hi | b_hi << 4 (high-nibble word byte)
      set(sw[r]!, v128.bitselect(get(x), v128.bitselect(i16x8.shrU(get(x), 4), i16x8.shl(get(x), 4), i16x8.const(0x00f0)), i16x8.const(0xf00f))),
    );
    const bytesOf = (a: Local, b: Local, odd: number): Op => shuffle(a, b, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30].map((k) => k + odd));
    return seq(
      f16Heads(row, out),
      set(zero, v128.zero()),
      ...[0, 1, 2, 3].map(scales),
      set(half[0]!, shuffle(s[0]!, s[1]!, [0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30])),
      set(half[1]!, shuffle(s[2]!, s[3]!, [0, 16, 2, 18, 4, 20, 6, 22, 8, 24, 10, 26, 12, 28, 14, 30])),
      v128.store(get(out), shuffle(half[0]!, half[1]!, lo(2)), 8),
      v128.store(get(out), shuffle(half[0]!, half[1]!, hi(2)), 24),
      ...Array.from({ length: 8 }, (_, ib) => seq(
        ...[0, 1, 2, 3].map((r) => seq(set(sw[r]!, v128.load(row(r), 8 + 16 * ib)), nibbles(r))),
        // rows 0, 1 (half 0, 1: u = 0, 1) and rows 2, 3 (half 2, 3)
        set(half[0]!, shuffle(sw[0]!, sw[1]!, [...run16(0).slice(0, 8), ...run16(16).slice(0, 8)])),
        set(half[1]!, shuffle(sw[0]!, sw[1]!, [...run16(8).slice(0, 8), ...run16(24).slice(0, 8)])),
        set(half[2]!, shuffle(sw[2]!, sw[3]!, [...run16(0).slice(0, 8), ...run16(16).slice(0, 8)])),
        set(half[3]!, shuffle(sw[2]!, sw[3]!, [...run16(8).slice(0, 8), ...run16(24).slice(0, 8)])),
        ...[0, 1].flatMap((u) => [0, 1].map((hiNib) => v128.store(get(out), bytesOf(half[u]!, half[2 + u]!, hiNib), 40 + 64 * ib + 32 * hiNib + 16 * u))),
      )),
    );
  });
}

/**
 * IQ2_S (82 bytes: d, qs[32] low index bytes, signs[32], qh[8] of 4 × 2 high bits, scales[8]) →
 * 328: per 16 entries the rows' index and sign bytes byte-transposed and paired into 8-byte
 * entries, the high-bits byte of each entry (row r's 2 bits at 2r) from per-lane multiplies, and
 * the 9-byte entries gathered by shuffles.
 */
export function packIq2S(): Func {
  return unitBlocks('iq2_s', 4, 328, (f, row, out) => {
    const [v, t, qt, st] = vectors4(f);
    const e = f.vlocals(8);
    const [x, zero, h0, h1, h, g] = f.vlocals(6) as [Local, Local, Local, Local, Local, Local];
    /** Entries 8m..8m+7 (m = 0, 1) of a half: their high-bits bytes as u16 lanes, from x (row r's 4 qh bytes at 4r). */
    const high = (m: number): Op => [0, 1, 2, 3].map((r) => v128.and(i16x8.shrU(i16x8.mul(
      shuffle(x, zero, [0, 16, 0, 16, 0, 16, 0, 16, 1, 16, 1, 16, 1, 16, 1, 16].map((b) => (b < 16 ? b + 4 * r + 2 * m : b))),
      u16s([256, 64, 16, 4, 256, 64, 16, 4])), 8 - 2 * r), i16x8.const(3 << (2 * r)))).reduce((p, q) => v128.or(p, q));
    return seq(
      f16Heads(row, out),
      scaleBytes(f, row, out, 74, 8),
      set(zero, v128.zero()),
      ...[0, 1].map((half) => seq(
        ...v.map((y, r) => set(y, v128.load(row(r), 2 + 16 * half))),
        transpose(1, v, t, qt),
        ...v.map((y, r) => set(y, v128.load(row(r), 34 + 16 * half))),
        transpose(1, v, t, st),
        // entries 2n, 2n + 1 of the half: their 4 index bytes, 4 sign bytes each
        ...[0, 1, 2, 3].flatMap((n) => [set(e[2 * n]!, shuffle(qt[n]!, st[n]!, lo(4))), set(e[2 * n + 1]!, shuffle(qt[n]!, st[n]!, hi(4)))]),
        // qh bytes 4·half..4·half+3 of the 4 rows (row r's at bytes 4r..4r+3)
        ...[0, 1, 2, 3].map((r) => set(v[r]!, v128.load32Zero(row(r), 66 + 4 * half))),
        set(x, shuffle(v[0]!, v[1]!, [0, 1, 2, 3, 16, 17, 18, 19, 0, 0, 0, 0, 0, 0, 0, 0])),
        set(g, shuffle(v[2]!, v[3]!, [0, 1, 2, 3, 16, 17, 18, 19, 0, 0, 0, 0, 0, 0, 0, 0])),
        set(x, shuffle(x, g, [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23])),
        set(h0, high(0)),
        set(h1, high(1)),
        set(h, shuffle(h0, h1, [0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30])),
        ...Array.from({ length: 9 }, (_, k) => v128.store(get(out), gather(g, run16(16 * k).map((p) => {
          const n = Math.floor(p / 9);
          return p % 9 === 8 ? [h, n] as const : [e[n >> 1]!, 8 * (n & 1) + (p % 9)] as const;
        })), 40 + 144 * half + 16 * k)),
      )),
    );
  });
}
