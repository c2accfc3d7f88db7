/**
 * Wasm repacks of Q5_K, Q3_K and Q2_K into their row-pair layouts (formats/kquants.ts), for the
 * expert readers and for weights packed at start (pack-kernels.ts registers and runs them).
 *
 * All three layouts put row r's codes of input pair p (inputs 2p, 2p + 1) side by side in lanes
 * 2r, 2r + 1 of a vector, so 16 bytes per row go through one 4 × 8 transpose of 16-bit words
 * (rowPairs): its output vectors hold the bytes of two pairs for all 4 rows. The 2-bit, 4-bit and
 * high-bit planes are cut with 16-bit shifts and byte masks (exact: a shift of at most 7 never
 * moves a wanted bit across a byte). Q5_K and Q3_K fields span 16-bit lanes, so their pairs are
 * widened to 16 bits first; Q2_K's crumbs stay bytes.
 *
 * Q5_K and Q3_K assemble each sub-block's codes row by row and transpose them, though transposing
 * the stored runs once for all the sub-blocks they serve takes fewer ops: those transposed runs
 * (up to 16 vectors) stay live across sub-blocks and spill, and the per-sub-block transposes ran
 * faster (Q5_K 6.9 → 8.0 GB/s and Q3_K 4.7 → 5.4 on one machine, 8.0 → 8.6–9.0 and 5.5 → 5.85 on
 * another). Q2_K's cheap sub-blocks gain from the shared transposes: 4 vectors per 16-byte run of
 * qs, live for its 4 sub-blocks.
 */
import { type Func, get, set, seq, v128, i8x16, i16x8, i32, type Local, type Op } from './asm.js';
import { Q2K_QUAD_BYTES, Q3K_QUAD_BYTES, Q5K_QUAD_BYTES } from './formats/kquants.js';
import {
  BYTES_4X4, hi, k4Heads, lo, maskBytes, or, shift16, shuffle, transpose4, unitBlocks,
} from './pack-kernels.js';

/** A part of 16 code bytes: 16 bytes from `at` of a row's block, shifted by `shift` bits in 16-bit lanes (right when negative), masked with `mask` in every byte (unless absent). */
type Part = readonly [at: number, shift: number, mask?: number];

/**
 * 16 code bytes of each row (its parts or'ed), transposed as pairs of bytes into out[0..3]: byte
 * 2r + e of half h of out[i] is row r's code 2(2i + h) + e (v, t: 4 scratch vectors each).
 */
function rowPairs(row: (k: number) => Op, v: readonly Local[], t: readonly Local[], parts: readonly Part[], out: readonly Local[]): Op {
  return seq(
    ...v.map((x, r) => set(x, or(...parts.map(([at, shift, mask]) => {
      const b = shift16(v128.load(row(r), at), shift);
      return mask === undefined ? b : maskBytes(b, mask);
    })))),
    transpose4(v, t, 2, (k, x) => set(out[k]!, x)),
  );
}

/** The 16-bit pair vectors P_2i, P_2i+1 (lane 2r + e: row r's code of input 2p + e) of code bytes c[i]. */
function widen(c: readonly Local[], p: readonly Local[]): Op {
  return seq(...c.flatMap((x, i) => [set(p[2 * i]!, i16x8.extendLowI8x16U(get(x))), set(p[2 * i + 1]!, i16x8.extendHighI8x16U(get(x)))]));
}

/**
 * Q5_K (formats/kquants.ts packQ5K): the heads as Q4_K's (k4Heads), each row's scale and min
 * bytes then transposed to [sub-block][row]; a sub-block's 5-bit codes (its nibbles with bit j of
 * qh on top) widened to pair vectors and merged 3 to a 16-bit lane with pair 15's bit 4 − w at bit 5.
 */
export function packQ5K(): Func {
  return unitBlocks('q5_k', 4, Q5K_QUAD_BYTES, (f, row, out) => {
    const sm = f.vlocals(4);
    const t = f.vlocals(4);
    const v = f.vlocals(4);
    const c = f.vlocals(8);
    const p = f.vlocals(16);
    const subBlock = (j: number): Op => seq(
      ...[0, 1].map((h) => rowPairs(row, v, t, [[48 + 32 * (j >> 1) + 16 * h, -4 * (j & 1), 0x0f], [16 + 16 * h, 4 - j, 0x10]], c.slice(4 * h))),
      widen(c, p),
      ...[0, 1, 2, 3, 4].map((w) => v128.store(get(out), or(
        get(p[3 * w]!), i16x8.shl(get(p[3 * w + 1]!), 6), i16x8.shl(get(p[3 * w + 2]!), 11),
        v128.and(i16x8.shl(get(p[15]!), w + 1), i16x8.const(0x20)),
      ), 80 + 80 * j + 16 * w)),
    );
    const pick = (j: number): number[] => [0, 4, 8, 12, 16, 20, 24, 28].map((x) => x + j);
    return seq(
      k4Heads(f, row, out, sm),
      // bytes 16 + 8j..: sub-block j's scales of rows 0..3, then its mins
      ...[0, 1, 2, 3].map((i) => v128.store(get(out), shuffle(sm[i >> 1]!, sm[2 + (i >> 1)]!, [...pick(2 * (i & 1)), ...pick(2 * (i & 1) + 1)]), 16 + 16 * i)),
      ...Array.from({ length: 8 }, (_, j) => subBlock(j)),
    );
  });
}

/**
 * Q3_K (formats/kquants.ts packQ3K): a sub-block's 3-bit codes (crumb with its hmask bit on top)
 * widened to pair vectors, 5 and a bit merged into A's 16-bit lanes and the rest into bytes (B,
 * narrowed). The scales are Q4_K's word transpose of the 12 scale bytes, 6-bit values assembled
 * for all rows at once, then a 4 × 4 byte transpose per 4 sub-blocks.
 */
export function packQ3K(): Func {
  return unitBlocks('q3_k', 4, Q3K_QUAD_BYTES, (f, row, out) => {
    const v = f.vlocals(4);
    const t = f.vlocals(4);
    const [lo4, hi4, hb, s] = f.vlocals(4) as [Local, Local, Local, Local];
    const c = f.vlocals(4);
    const p = f.vlocals(8);
    /** Sub-block g (t = g >> 1): code m is crumb t & 3 of qs[32·(t >> 2) + 16·(g & 1) + m], bit t of hmask[16·(g & 1) + m] as bit 2. */
    const subBlock = (g: number): Op => {
      const tb = g >> 1;
      const at = 72 + 24 * g;
      return seq(
        rowPairs(row, v, t, [[32 + 32 * (tb >> 2) + 16 * (g & 1), -2 * (tb & 3), 3], [16 * (g & 1), 2 - tb, 4]], c),
        widen(c, p),
        // A: pairs 0..4 at bits 3k, pair 7's bit 0 at 15; B: pair 5, pair 7's bits 1-2 at 3, pair 6 at 5
        v128.store(get(out), or(get(p[0]!), ...[1, 2, 3, 4].map((k) => i16x8.shl(get(p[k]!), 3 * k)), i16x8.shl(get(p[7]!), 15)), at),
        set(s, or(get(p[5]!), v128.and(i16x8.shl(get(p[7]!), 2), i16x8.const(0x18)), i16x8.shl(get(p[6]!), 5))),
        v128.store64Lane(get(out), i8x16.narrowI16x8U(get(s), get(s)), 0, at + 16),
      );
    };
    // scale 4k + g (g < 4) of a row: nibble k >> 1 of byte g (k even) or 4 + g (k odd), bits 2k of byte 8 + g on top
    const scale = (k: number): Op => v128.or(
      maskBytes(shift16(get(k & 1 ? hi4 : lo4), -4 * (k >> 1)), 15),
      maskBytes(shift16(get(hb), 4 - 2 * k), 0x30),
    );
    return seq(
      ...[0, 1, 2, 3].map((r) => i32.store16(get(out), i32.load16U(row(r), 108), 2 * r)),
      // words per row of scale bytes 0..3, 4..7, 8..11 (the 16 bytes from 92: the last 4 of qs first)
      ...v.map((x, r) => set(x, v128.load(row(r), 92))),
      transpose4(v, t, 4, (k, x) => (k ? set([lo4, hi4, hb][k - 1]!, x) : seq())),
      ...[0, 1, 2, 3].map((k) => seq(
        set(s, i8x16.sub(scale(k), i8x16.const(32))),
        v128.store(get(out), shuffle(s, s, BYTES_4X4), 8 + 16 * k),
      )),
      ...Array.from({ length: 16 }, (_, g) => subBlock(g)),
    );
  });
}

/**
 * Q2_K (formats/kquants.ts packQ2K): each 16-byte qs run transposed once for its 4 sub-blocks;
 * a sub-block's crumb lanes stay bytes: pairs k and k + 2 share a byte (bits 0, 4) per 16-bit
 * pair vector, and a 64-bit interleave of two such puts pairs k + 1, k + 3 beside them for one
 * shift and or. The scale bytes are a 4 × 16 byte transpose.
 */
export function packQ2K(): Func {
  return unitBlocks('q2_k', 4, Q2K_QUAD_BYTES, (f, row, out) => {
    const [v, t, qs] = [f.vlocals(4), f.vlocals(4), f.vlocals(4)];
    const [v0, v1] = f.vlocals(2) as [Local, Local];
    /** Sub-block g (its half of qs run g >> 3 in qs): code m is crumb (g >> 1) & 3. */
    const subBlock = (g: number): Op => {
      const sh = 2 * ((g >> 1) & 3);
      // [pairs 2i, 2i + 2 at bits 0, 4 | pairs 2i + 1, 2i + 3 likewise]
      const pairs = (i: number): Op => v128.or(
        maskBytes(shift16(get(qs[i]!), -sh), 0x03),
        maskBytes(shift16(get(qs[i + 1]!), 4 - sh), 0x30),
      );
      return seq(
        set(v0, pairs(0)),
        set(v1, pairs(2)),
        v128.store(get(out), v128.or(shuffle(v0, v1, lo(8)), i16x8.shl(shuffle(v0, v1, hi(8)), 2)), 80 + 16 * g),
      );
    };
    return seq(
      ...[0, 1, 2, 3].flatMap((r) => [0, 1].map((k) => i32.store16(get(out), i32.load16U(row(r), 80 + 2 * k), 8 * k + 2 * r))),
      ...v.map((x, r) => set(x, v128.load(row(r)))),
      // scales [sub-block][row]
      transpose4(v, t, 1, (j, x) => v128.store(get(out), x, 16 + 16 * j)),
      // by 16-byte runs: the sub-blocks g with g >> 3 = n, g & 1 = h
      ...[0, 1].flatMap((n) => [0, 1].map((h) => seq(rowPairs(row, v, t, [[16 + 32 * n + 16 * h, 0]], qs), ...[0, 1, 2, 3].map((tq) => subBlock(8 * n + 2 * tq + h))))),
    );
  });
}
