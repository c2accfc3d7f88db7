/**
 * Repacking in wasm, for the expert reader threads (expert-reader-worker.ts) and for weights packed
 * at start (index.ts): stored rows are read straight into a staging area of the memory shard and
 * one call repacks them into place. In JavaScript the Q8_0 repack ran at ≈ 0.85 GB/s per core,
 * Q4_K's and Q6_K's at ≈ 1 GB/s: no faster than the disk they followed (0.87 GB/s here) and far
 * slower than the page cache (≈ 5 GB/s), so an expert load cost up to twice its read; these SIMD
 * kernels run at 3.5–33 GB/s on one core. This file holds Q8_0, Q4_K, Q6_K, the loop and helpers
 * every kernel shares, and the table of kernels; pack-kquants.ts the other K-quants, and
 * pack-iquants.ts the i-quants: every type llama.cpp's mixes give Grok-1's experts.
 *
 * The output is byte for byte layout.ts's packQuads for the same plan (tested against it).
 */
import { Func, ValType, encodeModule, get, set, seq, select, forLoop, i32, v128, i8x16, i16x8, i32x4, type Local, type Op } from './asm.js';
import { Q4K_QUAD_BYTES, Q8_0_QUAD_BYTES, type PackPlan } from './layout.js';
import { Q6K_FORMAT } from './formats/q6k.js';
import { ggmlRowBytes, ggmlType } from '../../tensor/ggml.js';
import { packQ2K, packQ3K, packQ5K } from './pack-kquants.js';
import { packIq2Xxs, packIq2Xs, packIq1S, packIq1M, packIq3Xxs, packIq3S, packIq4Xs, packIq2S } from './pack-iquants.js';

const I32 = ValType.i32;

/** Q8_0 octet-block bytes (2 quads × 136): 8 f16 scales, then 16 pairs × 8 rows × 2 int8. */
const OCTET = 2 * Q8_0_QUAD_BYTES;

// byte-lane patterns of the 8 × 8 transpose of 16-bit values (unpack lo/hi at 16, 32, 64 bits)
export const lo = (w: number): number[] => Array.from({ length: 16 }, (_, i) => Math.floor(i / w) % 2 * 16 + Math.floor(i / (2 * w)) * w + (i % w));
export const hi = (w: number): number[] => lo(w).map((x) => x + 8);

/**
 * The loop every repack kernel shares, as a function pack_TYPE(src, rowBytes, nb, n, u0, units, bpp, dst)
 * of a ggml type: the n units (`rows` stored rows each, row r of unit i at src + (rows·i + r)·rowBytes,
 * nb blocks of the type's stored bytes per row) numbered u0.. of a weight of `units` units, into dst laid out in
 * column panels of bpp blocks (layout.ts: panel p of unit u at p·units·bpp·packed + u·(blocks in
 * panel p)·packed). `block(row, out)` packs one block of a unit: row(k) is the address of row k's
 * block, `out` where its `packed` bytes go.
 */
export function unitBlocks(
  type: string, rows: number, packed: number,
  block: (f: Func, row: (k: number) => Op, out: Local) => Op,
): Func {
  const stored = ggmlType(type).typeSize;
  const f = new Func(`pack_${type}`, [I32, I32, I32, I32, I32, I32, I32, I32]);
  const [src, rowBytes, nb, n, u0, units, bpp, dst] = f.params as [Local, Local, Local, Local, Local, Local, Local, Local];
  const [i, b, p, rowBase, s, out, panelStride] = f.locals32(7);
  const rowOff = f.locals32(rows);
  const body = block(f, (k) => i32.add(get(s), get(rowOff[k]!)), out);
  f.body = seq(
    ...rowOff.map((x, k) => set(x, i32.mul(get(rowBytes), i32.const(k)))),
    set(panelStride, i32.mul(i32.mul(get(units), get(bpp)), i32.const(packed))),
    forLoop(i, i32.const(0), get(n), 1,
      set(rowBase, i32.add(get(src), i32.mul(i32.mul(get(i), i32.const(rows)), get(rowBytes)))),
      forLoop(b, i32.const(0), get(nb), 1,
        set(p, i32.divU(get(b), get(bpp))),
        // panel p, unit u0 + i (its part of the panel holds min(bpp, nb − p·bpp) blocks), block b − p·bpp
        set(out, i32.add(get(dst), i32.add(
          i32.mul(get(p), get(panelStride)),
          i32.mul(i32.const(packed), i32.add(
            i32.mul(i32.add(get(u0), get(i)), minU(i32.sub(get(nb), i32.mul(get(p), get(bpp))), get(bpp), f)),
            i32.sub(get(b), i32.mul(get(p), get(bpp))),
          )),
        ))),
        set(s, i32.add(get(rowBase), i32.mul(get(b), i32.const(stored)))),
        body,
      ),
    ),
  );
  return f;
}

export const shuffle = (x: Local, y: Local, l: readonly number[]): Op => i8x16.shuffle(get(x), get(y), l);

/** Q8_0: 8 rows' scales, then an 8 × 8 transpose of 16-bit values (input pairs) per half block. */
function packQ8_0(): Func {
  return unitBlocks('q8_0', 8, OCTET, (f, row, out) => {
    const r = f.vlocals(8);
    const a = f.vlocals(8);
    const c = f.vlocals(8);
    /** Rows 0..7's 16-bit values v..v+7 (byte offset `at` in each block) → pairs v..v+7 of the octet-block. */
    const transpose = (at: number, firstPair: number): Op =>
      seq(
        ...r.map((x, k) => set(x, v128.load(row(k), at))),
        // 16-bit interleave of row pairs, then 32-bit of those, then 64-bit: column k of the 8 × 8
        ...[0, 2, 4, 6].flatMap((k) => [set(a[k]!, shuffle(r[k]!, r[k + 1]!, lo(2))), set(a[k + 1]!, shuffle(r[k]!, r[k + 1]!, hi(2)))]),
        set(c[0]!, shuffle(a[0]!, a[2]!, lo(4))),
        set(c[1]!, shuffle(a[0]!, a[2]!, hi(4))),
        set(c[2]!, shuffle(a[1]!, a[3]!, lo(4))),
        set(c[3]!, shuffle(a[1]!, a[3]!, hi(4))),
        set(c[4]!, shuffle(a[4]!, a[6]!, lo(4))),
        set(c[5]!, shuffle(a[4]!, a[6]!, hi(4))),
        set(c[6]!, shuffle(a[5]!, a[7]!, lo(4))),
        set(c[7]!, shuffle(a[5]!, a[7]!, hi(4))),
        ...[0, 1, 2, 3].flatMap((k) => [
          v128.store(get(out), shuffle(c[k]!, c[k + 4]!, lo(8)), 16 + 16 * (firstPair + 2 * k)),
          v128.store(get(out), shuffle(c[k]!, c[k + 4]!, hi(8)), 16 + 16 * (firstPair + 2 * k + 1)),
        ]),
      );
    return seq(
      ...Array.from({ length: 8 }, (_, k) => i32.store16(get(out), i32.load16U(row(k)), 2 * k)),
      transpose(2, 0),
      transpose(18, 8),
    );
  });
}

/** 4 × 4 transpose of the bytes of 4 words (word r, byte j → byte 4j + r). */
export const BYTES_4X4 = [0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15];

/**
 * Q4_K (layout.ts packQ4K): the 4 rows' 16-byte block heads (d, dmin, 12 bytes of 6-bit scales
 * and mins) transposed to words [row] of d|dmin, then of each 4 bytes of scales, so that
 * get_scale_min_k4 runs on all 4 rows at once; the nibbles of each 32-byte qs run become two
 * 16-byte nibble-lane vectors (packNibbleLanes) with a byte interleave and a shift.
 */
function packQ4K(): Func {
  return unitBlocks('q4_k', 4, Q4K_QUAD_BYTES, (f, row, out) => {
    const [a, b, x, y] = f.vlocals(4);
    const sm = f.vlocals(4);
    const hiNibbles = i8x16.const(0xf0);
    /** qs[at..at+31] of row k → sub-block 2c's nibble lanes at `to`, 2c + 1's at to + 16. */
    const qsRun = (k: number, at: number, to: number): Op =>
      seq(
        set(a, v128.load(row(k), at)),
        set(b, v128.load(row(k), at + 16)),
        // byte 2i: values i, 8 + i (bytes i, 8 + i of the first half); byte 2i + 1: 16 + i, 24 + i
        set(x, shuffle(a, b, lo(1))),
        set(y, shuffle(a, b, hi(1))),
        v128.store(get(out), v128.bitselect(i16x8.shl(get(y), 4), get(x), hiNibbles), to),
        v128.store(get(out), v128.bitselect(get(y), i16x8.shrU(get(x), 4), hiNibbles), to + 16),
      );
    return seq(
      k4Heads(f, row, out, sm),
      v128.store(get(out), shuffle(sm[0]!, sm[1]!, lo(4)), 16),
      v128.store(get(out), shuffle(sm[0]!, sm[1]!, hi(4)), 32),
      v128.store(get(out), shuffle(sm[2]!, sm[2]!, BYTES_4X4), 48),
      v128.store(get(out), shuffle(sm[3]!, sm[3]!, BYTES_4X4), 64),
      ...[0, 1, 2, 3].flatMap((k) => [0, 1, 2, 3].map((run) => qsRun(k, 16 + 32 * run, 80 + 128 * k + 32 * run))),
    );
  });
}

/** The bitwise or of vectors. */
export const or = (...v: Op[]): Op => v.reduce((x, y) => v128.or(x, y));

/** `v`'s bytes masked with n in every byte. */
export const maskBytes = (v: Op, n: number): Op => v128.and(v, i8x16.const(n));

/** v shifted left by n bits in each 16-bit lane (right by −n). */
export const shift16 = (v: Op, n: number): Op => (n > 0 ? i16x8.shl(v, n) : n < 0 ? i16x8.shrU(v, -n) : v);

/**
 * The transpose of 4 rows' items of w bytes (row vectors v; t: 4 scratch vectors), by an
 * interleave of row pairs at w bytes, then of those at 2w: `use(k, x)` gets result k, which holds
 * items (4/w)·k.. each as 4w bytes, of rows 0..3 in turn (for w = 4, word k of every row).
 */
export function transpose4(v: readonly Local[], t: readonly Local[], w: number, use: (k: number, x: Op) => Op): Op {
  return seq(
    set(t[0]!, shuffle(v[0]!, v[1]!, lo(w))),
    set(t[1]!, shuffle(v[0]!, v[1]!, hi(w))),
    set(t[2]!, shuffle(v[2]!, v[3]!, lo(w))),
    set(t[3]!, shuffle(v[2]!, v[3]!, hi(w))),
    ...[0, 1, 2, 3].map((k) => use(k, shuffle(t[k >> 1]!, t[2 + (k >> 1)]!, (k & 1 ? hi : lo)(2 * w)))),
  );
}

/**
 * The 16-byte block heads of Q4_K and Q5_K for 4 rows (d, dmin, 12 bytes of 6-bit scales and
 * mins): d[4] then dmin[4] stored at out, and into sm (lane r: row r's 4 bytes) scales 0..3,
 * 4..7, mins 0..3, 4..7, the words transposed first so that get_scale_min_k4 runs on all rows at once.
 */
export function k4Heads(f: Func, row: (k: number) => Op, out: Local, sm: readonly Local[]): Op {
  const h = f.vlocals(4);
  const t = f.vlocals(4);
  const [dd, a, b, c] = f.vlocals(4) as [Local, Local, Local, Local];
  return seq(
    ...h.map((v, k) => set(v, v128.load(row(k)))),
    // words per row: dd = d | dmin << 16; scales bytes 0..3 (a), 4..7 (b), 8..11 (c)
    transpose4(h, t, 4, (k, x) => set([dd, a, b, c][k]!, x)),
    v128.store(get(out), shuffle(dd, dd, [0, 1, 4, 5, 8, 9, 12, 13, 2, 3, 6, 7, 10, 11, 14, 15])),
    // scales 0..3 = a & 63, 4..7 = c & 15 | (a >> 6) << 4; mins the same from b and c >> 4
    set(sm[0]!, maskBytes(get(a), 63)),
    set(sm[1]!, v128.or(maskBytes(get(c), 15), maskBytes(i32x4.shrU(get(a), 2), 0x30))),
    set(sm[2]!, maskBytes(get(b), 63)),
    set(sm[3]!, v128.or(maskBytes(i32x4.shrU(get(c), 4), 15), maskBytes(i32x4.shrU(get(b), 2), 0x30))),
  );
}

/**
 * Q6_K (formats/q6k.ts, "6-bit lanes"): per sub-block of 16 values, each row's 16 6-bit codes as
 * bytes (its ql nibbles with its 2 qh bits on top, with byte masks after 16-bit shifts), widened
 * to 16-bit lanes (codes i and 8 + i) and merged into the A, B, C vectors; the rows' int8 scales
 * are a 4 × 16 byte transpose.
 */
function packQ6K(): Func {
  return unitBlocks('q6_k', 4, Q6K_FORMAT.quadBlockBytes, (f, row, out) => {
    const s = f.vlocals(4);
    const t = f.vlocals(4);
    const [ql, qh] = f.vlocals(2);
    const k = f.vlocals(4);
    const lo16 = (v: Local): Op => i16x8.extendLowI8x16U(get(v));
    const hi16 = (v: Local): Op => i16x8.extendHighI8x16U(get(v));
    /**
     * Sub-block j's codes of row r into k[r]: value 16j + l' is nibble q >> 1 of ql[64n + 32·(q & 1) + l]
     * with bits 2q of qh[32n + l] on top (n = j >> 3, q = (j >> 1) & 3, l = 16·(j & 1) + l').
     */
    const codes = (r: number, j: number): Op => {
      const n = j >> 3;
      const q = (j >> 1) & 3;
      const h = j & 1;
      return seq(
        set(ql, v128.load(row(r), 64 * n + 32 * (q & 1) + 16 * h)),
        set(qh, v128.load(row(r), 128 + 32 * n + 16 * h)),
        set(k[r]!, v128.or(maskBytes(shift16(get(ql), -4 * (q >> 1)), 0x0f), maskBytes(shift16(get(qh), 4 - 2 * q), 0x30))),
      );
    };
    // A lane i = r0 c_i | r0 c_8+i << 6 | (r2 c_i & 15) << 12, B the same of r1 with r2 c_8+i, C of r3 with r2's top bits
    const subBlock = (j: number): Op =>
      seq(
        ...[0, 1, 2, 3].map((r) => codes(r, j)),
        v128.store(get(out), or(lo16(k[0]!), i16x8.shl(hi16(k[0]!), 6), i16x8.shl(lo16(k[2]!), 12)), 72 + 48 * j),
        v128.store(get(out), or(lo16(k[1]!), i16x8.shl(hi16(k[1]!), 6), i16x8.shl(hi16(k[2]!), 12)), 72 + 48 * j + 16),
        v128.store(get(out), or(
          lo16(k[3]!), i16x8.shl(hi16(k[3]!), 6),
          i16x8.shl(v128.and(lo16(k[2]!), i16x8.const(0x30)), 8), i16x8.shl(v128.and(hi16(k[2]!), i16x8.const(0x30)), 10),
        ), 72 + 48 * j + 32),
      );
    return seq(
      ...[0, 1, 2, 3].map((r) => i32.store16(get(out), i32.load16U(row(r), 208), 2 * r)),
      // scales [row][16] → [sub-block][row]: byte interleave of row pairs, then 16-bit of those
      ...s.map((v, r) => set(v, v128.load(row(r), 192))),
      // [byte][row]
      transpose4(s, t, 1, (j, x) => v128.store(get(out), x, 8 + 16 * j)),
      ...Array.from({ length: 16 }, (_, j) => subBlock(j)),
    );
  });
}

/** min(a, b) for unsigned i32 operands (each evaluated once). */
function minU(a: Op, b: Op, f: Func): Op {
  const x = f.local(I32);
  const y = f.local(I32);
  return seq(set(x, a), set(y, b), select(get(x), get(y), i32.ltU(get(x), get(y))));
}

let bytes: Uint8Array | undefined;

/** The packing module (imports the shard's memory as env.mem). */
export function packModuleBytes(): Uint8Array {
  bytes ??= encodeModule(
    [
      packQ8_0(), packQ4K(), packQ6K(), packQ5K(), packQ3K(), packQ2K(),
      packIq2Xxs(), packIq2Xs(), packIq1S(), packIq1M(), packIq3Xxs(), packIq3S(), packIq4Xs(), packIq2S(),
    ],
    { minPages: 1, maxPages: 65536 },
  );
  return bytes;
}

/** pack_TYPE(src, rowBytes, nb, n, u0, units, bpp, dst): see unitBlocks. */
type PackKernel = (src: number, rowBytes: number, nb: number, n: number, u0: number, units: number, bpp: number, dst: number) => void;

export interface PackKernels {
  readonly pack_q8_0: PackKernel;
  readonly pack_q4_k: PackKernel;
  readonly pack_q6_k: PackKernel;
  readonly pack_q5_k: PackKernel;
  readonly pack_q3_k: PackKernel;
  readonly pack_q2_k: PackKernel;
  readonly pack_iq2_xxs: PackKernel;
  readonly pack_iq2_xs: PackKernel;
  readonly pack_iq1_s: PackKernel;
  readonly pack_iq1_m: PackKernel;
  readonly pack_iq3_xxs: PackKernel;
  readonly pack_iq3_s: PackKernel;
  readonly pack_iq4_xs: PackKernel;
  readonly pack_iq2_s: PackKernel;
}

let module: WebAssembly.Module | undefined;

/** The packing kernels over one shard's memory. */
export function packKernels(memory: WebAssembly.Memory): PackKernels {
  module ??= new WebAssembly.Module(packModuleBytes() as Uint8Array<ArrayBuffer>);
  return new WebAssembly.Instance(module, { env: { mem: memory } }).exports as unknown as PackKernels;
}

/** The ggml types a kernel here packs (pack_TYPE; a unit is the plan's 4·unitQuads rows: 8 for Q8_0, else 4). */
const KERNEL_TYPES: ReadonlySet<string> = new Set(['q8_0', 'q4_k', 'q6_k', 'q5_k', 'q3_k', 'q2_k', 'iq2_xxs', 'iq2_xs', 'iq1_s', 'iq1_m', 'iq3_xxs', 'iq3_s', 'iq4_xs', 'iq2_s']);

/** The ggml type of a plan's weight when a kernel here packs it (block formats by their type). */
function kernelType(plan: PackPlan): string | undefined {
  const type = plan.block?.type ?? plan.kind;
  return KERNEL_TYPES.has(type) ? type : undefined;
}

/** Units of the plan's weight (stored as ggml `type`) whose stored rows `stageBytes` hold. */
export function unitsThatFit(plan: PackPlan, type: string, stageBytes: number): number {
  return Math.floor(stageBytes / (4 * plan.unitQuads * ggmlRowBytes(type, plan.inDim)));
}

/** Units of a plan's weight that `stageBytes` of stored rows hold: 0 when no kernel here packs it (or not even one unit fits). */
export function unitsPerStage(plan: PackPlan, stageBytes: number): number {
  const type = kernelType(plan);
  return type ? unitsThatFit(plan, type, stageBytes) : 0;
}

/**
 * Packs quads q0..q1-1 of a weight (plan; unitsPerStage ≥ 1) into `dst` of `memory` the way
 * packQuads would, as many units at a time as `stageBytes` of stored rows hold:
 * `stage(firstRow, rows, bytes)` puts the stored rows firstRow.. (`rows` of them, `bytes`)
 * somewhere in `memory` and returns where, with room after them for the zeros that stand for rows
 * past the weight's end (up to a unit's rows); one call repacks each batch.
 */
export function packStaged(
  k: PackKernels, memory: WebAssembly.Memory, stageBytes: number,
  plan: PackPlan, q0: number, q1: number, dst: number, stage: (firstRow: number, rows: number, bytes: number) => number,
  /** Only units [from, to) of the part (of (q1 − q0) / unitQuads), written where the whole part's packing puts them. */
  from = 0, to = (q1 - q0) / plan.unitQuads,
): void {
  const type = kernelType(plan);
  const perCall = unitsPerStage(plan, stageBytes);
  if (!type || perCall < 1) throw new RangeError(`${plan.block?.type ?? plan.kind}: no wasm repack, or a staging area of ${stageBytes} bytes cannot hold one unit`);
  const inputs = ggmlType(type).blockSize;
  const nb = plan.inDim / inputs;
  const rowBytes = ggmlRowBytes(type, plan.inDim);
  const unitRows = 4 * plan.unitQuads;
  const units = (q1 - q0) / plan.unitQuads;
  const bpp = Math.min(plan.panel, plan.segStride) / inputs;
  for (let u = from; u < to; u += perCall) {
    const n = Math.min(perCall, to - u);
    const first = 4 * q0 + unitRows * u;
    const rows = Math.max(0, Math.min(plan.outDim - first, unitRows * n));
    const src = stage(first, rows, rows * rowBytes);
    if (rows < unitRows * n) new Uint8Array(memory.buffer, src + rows * rowBytes, (unitRows * n - rows) * rowBytes).fill(0);
    k[`pack_${type}` as keyof PackKernels](src, rowBytes, nb, n, u, units, bpp, dst);
  }
}
