/**
 * Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS: packed layouts and SIMD128 kernels (see ../block-format.ts).
 *
 * ## Rows in lanes, activation pairs broadcast
 *
 * These types scale every 32 inputs of every row (IQ4_XS with an integer sub-scale per 32), so
 * Q4_0/Q4_K's nibble lanes, whose 16-bit lanes hold 8 inputs of one row, would end every 32-block
 * of every row in a horizontal sum. Their codes are arranged as Q8_0's pairs instead: in each
 * 8-lane value vector that reaches `i32x4.dot_i16x8_s`, lanes 2j and 2j + 1 hold row j's values of
 * one input pair (2p, 2p + 1), and that pair's two int16 activations are broadcast
 * (`v128.load32_splat`, a pure load). One dot product adds the 4 rows' partial sums into 4 lanes,
 * so a block ends in a convert and a few multiplies per token, with no shuffles.
 *
 * ## Codes, per 16-byte raw vector (8 lanes of 16 bits)
 *
 * - 4-bit (Q4_1): nibble k of a lane is input pair 4v + k (raw vector v). One token takes them out
 *   with masks only: `raw & 0x000f` (×1), `raw & 0x00f0` (×16), `raw & 0x0f00` (×256),
 *   `raw >> 12` (×1), dotted into accumulators of those scales, A + (B >> 4) + (C >> 8) per block
 *   (exact: B and C are multiples of their scale): 4 instructions per 32 values against 7 for
 *   and / shift+and / shift+and / shift. Token pairs use the latter (one accumulator per token:
 *   with 3 each, two tokens' accumulators, masks and 8 broadcasts spilled; 18 % faster at T = 16).
 * - 5-bit (Q5_0, Q5_1): three 5-bit fields per lane at bits 0-4, 5-9, 11-15 (pairs 3u, 3u + 1,
 *   3u + 2 of raw vector u): `raw & 0x001f` (×1), `raw & 0x03e0` (×32), `raw >> 11` (×1), one
 *   instruction per 8 values like a nibble. Five raw vectors hold pairs 0-14; bit 10 of raw vector
 *   u is bit u of pair 15's value, gathered in the step loop by c = avgr_u(c, raw & 0x0400)
 *   (= (c + bit + 1) >> 1, exact as c + bit is even), which leaves c = 32·value: a lane of B.
 *   So the 5th bits cost 2 instructions per 24 values and no bytes: 80 bytes of codes per
 *   quad-block, as ggml's qs + qh. (The suggested nibble lanes + a high-bit vector cost a shift,
 *   an and and an or per 8 values on top of the nibble.)
 * - IQ4 (IQ4_NL, IQ4_XS): 4-bit indices, two per byte; low and high nibbles (an and; a shift and
 *   an and) are looked up with `i8x16.swizzle` in a 16-byte table of kvalue + 127 (0..240,
 *   unsigned), then even and odd bytes become 16-bit lanes (`& 0x00ff`, `>> 8`); 127·Σx comes back
 *   out from the block sums (bsum_x). V8 lowers swizzle to paddusb + pshufb (it cannot know the
 *   indices are in range); where the runtime has a working `i8x16.relaxed_swizzle` (Node ≥ 22, or
 *   20 with --experimental-wasm-relaxed-simd; probed below) that is used instead: one pshufb, and
 *   for indices 0..15 its result is fully specified, so it is exact either way.
 *
 * ## Loop structure
 *
 * Token pairs where a call has several (each extracted vector serves both tokens), a last odd
 * token alone. One loop step per 16-byte raw vector: TurboFan issues a loop body's loads first
 * (README.md), so a step holds one raw vector and 3-4 (6-8 for a token pair) broadcasts; two raw
 * vectors per step spilled and ran 12 % slower, a whole 5-vector Q5 block 30 %. Constants
 * (masks, the table) are hoisted into locals. f16 scales: kernel-parts' f16x4At (no subnormal f32
 * anywhere: its × 2^112 only where no scale of the four is subnormal, since a subnormal operand
 * costs x64 a microcode assist; folding a 2^112 into the accumulator made products subnormal and
 * ran 3× slower).
 *
 * i32 bounds per lane (one row), per 32-input (sub-)block, activations |x| ≤ 32767 (quant_x's
 * clamp), before the conversion to f32: Q4_1 C ≤ 4 dots · 2 products · 3840 · 32767 = 1.0e9
 * (token pairs, one accumulator: 16 · 2 · 15 · 32767 = 1.6e7); Q5 B ≤ 6 · 2 · 992 · 32767 = 3.9e8
 * (pairs: 16 · 2 · 31 · 32767 = 3.3e7); IQ4 ≤ 16 · 2 · 240 · 32767 = 2.5e8, minus 127·Σx ≤ 1.3e8.
 * IQ4_XS multiplies by its sub-scale in f32 (in i32 that product could reach 1.3e8 · 32 = 4.3e9).
 * test/wasm-legacy.test.ts runs every type at these bounds (all codes extreme, all x = ±max).
 *
 * Packed quad-blocks (4 rows), against 4 stored blocks:
 *
 * | type   | quad-block                                                        | bytes | stored    |
 * |--------|-------------------------------------------------------------------|-------|-----------|
 * | q4_1   | d[4], m[4] f16, 4 × 16 bytes of nibble pairs                       | 80    | 4 · 20    |
 * | q5_0   | d[4] f16, 5 × 16 bytes of 5-bit fields                             | 88    | 4 · 22    |
 * | q5_1   | d[4], m[4] f16, 5 × 16 bytes of 5-bit fields                       | 96    | 4 · 24    |
 * | iq4_nl | d[4] f16, 4 × 16 bytes of index pairs                              | 72    | 4 · 18    |
 * | iq4_xs | d[4] f16, (ls − 32)[8 sub-blocks][4 rows] i8, 8 × 64 bytes of index pairs | 552 | 4 · 136 + 8 (+1.5 %) |
 *
 * Measured (2 vCPU Zen 4, Node 20, shared and noisy machine: ratios to mm_q4_k in the same process,
 * alternating, best of 15-31 rounds; weights per second, so the formats' sizes do not enter):
 *
 * | 2048 → 10240 matvec | T = 1, 1 thread | T = 16, 1 thread | T = 1, 2 threads |
 * |---------------------|-----------------|------------------|------------------|
 * | q4_1                | 0.97            | 1.08             | 0.87–0.98        |
 * | q5_0                | 0.99            | 1.10             | 0.91–1.00        |
 * | q5_1                | 0.89–0.94       | 1.04             | 0.83–0.95        |
 * | iq4_nl              | 0.74            | 0.90             | 0.68–0.76        |
 * | iq4_xs              | 0.75            | 0.88             | 0.73–0.79        |
 *
 * (Q4_K: 20 G weights/s on one thread, 34 on two.) IQ4 pays for the lookup: 2 swizzles (2 vector
 * instructions each) and 4 widenings per 32 values, where Q4_1 has 4 masks. With relaxed_swizzle
 * (Node 20 + flag, L2-resident A/B) IQ4_NL goes 0.68 → 0.81 and IQ4_XS 0.73 → 0.85 at T = 1,
 * 0.92 → 0.99 and 0.94 → 1.10 at T = 16.
 *
 * `createWasmKernels({ relaxed: false })` does not turn relaxed_swizzle off: with indices 0..15 it
 * is as exact and deterministic as swizzle (the option is about the Q4_0 kernel's relaxed dot).
 */
import {
  Func, ValType, type Local, type Op, seq, get, set, forPtr, i32, f32, v128, i8x16, i16x8, i32x4, f32x4, encodeModule,
} from '../asm.js';
import { I32, V, zero, mulC, inc, f16x4At, initAcc, blockPointers, pairedQuadLoop, type Panel } from '../kernel-parts.js';
import type { BlockFormat } from '../block-format.js';
import type { DecodedSpec } from '../decoded.js';
import { KVALUES_IQ4NL } from '../../../tensor/iq-tables.js';


let relaxedSwizzle: boolean | undefined;
/**
 * Does this runtime validate `i8x16.relaxed_swizzle` and look up indices 0..15 correctly? Probed
 * once (a 1-page module); the IQ4 kernels use it then, and `i8x16.swizzle` otherwise.
 */
export function relaxedSwizzleAvailable(): boolean {
  if (relaxedSwizzle !== undefined) return relaxedSwizzle;
  relaxedSwizzle = false;
  const f = new Func('probe', [I32, I32, I32]);
  const [a, b, o] = f.params as [Local, Local, Local];
  f.body = v128.store(get(o), i8x16.relaxedSwizzle(v128.load(get(a)), v128.load(get(b))));
  try {
    const bytes = encodeModule([f], { minPages: 1, maxPages: 1 }) as Uint8Array<ArrayBuffer>;
    if (!WebAssembly.validate(bytes)) return false;
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const probe = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem } }).exports['probe'] as (a: number, b: number, o: number) => void;
    const u8 = new Uint8Array(mem.buffer);
    const table = IQ4_TABLE;
    const idx = [15, 0, 7, 8, 3, 12, 1, 14, 2, 13, 4, 11, 5, 10, 6, 9];
    u8.set(table, 0);
    u8.set(idx, 16);
    probe(0, 16, 32);
    relaxedSwizzle = idx.every((v, i) => u8[32 + i] === table[v]);
  } catch {
    relaxedSwizzle = false;
  }
  return relaxedSwizzle;
}

// ---------------------------------------------------------------------------------------------
// shared pieces

/** The kernel's parameters (block-format.ts) as locals. */
function kernelParams(f: Func) {
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  return { w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end };
}

/** A 16-bit value vector of a raw vector: its op, and the accumulator (scale) it adds to. */
interface Lane {
  readonly vec: (raw: Local) => Op;
  readonly acc: number;
}

/**
 * How a 32-input (sub-)block's codes are laid out and taken out: `steps` raw vectors of 16 bytes,
 * each yielding the value vectors `lanes` (lane i: input pair (xStep/4)·step + i) into
 * accumulators of scale 2^accShift[a].
 */
interface CodeSpec {
  readonly steps: number;
  /** Activation bytes per step (4 per input pair). */
  readonly xStep: number;
  readonly accShift: readonly number[];
  readonly lanes: readonly Lane[];
  /** Hoisted constants. */
  readonly setup: Op[];
  /** Per (sub-)block, before the steps (shared by the tokens). */
  readonly init?: Op[];
  /** Other lanes for token pairs (fewer accumulators: two tokens' worth must stay in registers). */
  readonly pair?: { readonly accShift: readonly number[]; readonly lanes: readonly Lane[] };
  /** Per step, after the raw load, before the lanes (shared temporaries). */
  readonly prep?: (raw: Local) => Op[];
  /** Per step, after the lanes. */
  readonly stepExtra?: (raw: Local) => Op[];
  /** After the steps: extra dot products of token k (x then points at the block's pair steps·xStep/4). */
  readonly after?: (k: number, x: Local, ints: readonly Local[], pair: boolean) => Op[];
}

/** Accumulators combined: A + (B >> sB) + (C >> sC) (exact: each is a multiple of its scale). */
function combine(accs: readonly Local[], shifts: readonly number[]): Op {
  let s = get(accs[0]!);
  for (let a = 1; a < shifts.length; a++) s = i32x4.add(s, i32x4.shrS(get(accs[a]!), shifts[a]!));
  return s;
}

/** What a format plugs into blockKernel besides its codes. */
interface Scales {
  /** Hoisted constants. */
  readonly setup: Op[];
  /** Sub-blocks of 32 inputs per block (1, or 8 for IQ4_XS) and the byte offset of their codes. */
  readonly subs: number;
  readonly dataOff: number;
  /** Per block, shared by the tokens, at quad-block wp. */
  readonly blockStart: (wp: Local) => Op[];
  /** Per sub-block, shared (IQ4_XS: its sub-scales). */
  readonly subStart?: Op[];
  /** Token k's sums `isum` (i32x4, one lane per row) of a sub-block, with its Σx at bsum. */
  readonly subEnd: (k: number, isum: Op, bsum: Local, xs: Local, acc: Local) => Op[];
  /** Per block and token, after the sub-blocks. */
  readonly blockEnd?: (k: number, xs: Local, acc: Local) => Op[];
}

/**
 * The kernel of a 32-input-block format: token pairs × quads, one block per loop step, inside it
 * one step per raw vector (a loop: TurboFan issues a body's loads first, README.md). `build`
 * allocates the format's locals on the Func.
 */
function blockKernel(type: string, QB: number, build: (f: Func) => { code: CodeSpec; sc: Scales }): Func {
  const f = new Func(`mm_${type}`, new Array<ValType>(13).fill(I32));
  const P = kernelParams(f);
  const { code, sc } = build(f);
  const [q, t, wp, we, sp, se, rp, re] = f.locals32(8);
  const raw = f.local(V);
  const tmp = f.local(V);
  const toks = [0, 1].map(() => ({ x: f.local(I32), xs: f.local(I32), bsum: f.local(I32), acc: f.local(V), ints: f.vlocals(Math.max(code.accShift.length, code.pair?.accShift.length ?? 0)) }));
  const outAddr = (k: number) => i32.add(get(P.out), mulC(i32.add(i32.mul(i32.add(get(t), i32.const(k)), get(P.outP)), mulC(get(q), 4)), 4));
  const subBytes = 16 * code.steps;
  const sub = (tk: typeof toks): Op[] => {
    const { lanes, accShift } = tk.length > 1 && code.pair ? code.pair : code;
    return [
      ...tk.flatMap((o) => o.ints.slice(0, accShift.length).map((l) => set(l, zero()))),
      ...(code.init ?? []),
      ...(sc.subStart ?? []),
      set(rp, get(sp)),
      set(re, i32.add(get(sp), i32.const(subBytes))),
      forPtr(rp, re, 16,
        set(raw, v128.load(get(rp))),
        ...(code.prep ? code.prep(raw) : []),
        ...lanes.flatMap((ln, i) => [
          set(tmp, ln.vec(raw)),
          ...tk.map((o) => set(o.ints[ln.acc]!, i32x4.add(get(o.ints[ln.acc]!), i32x4.dotI16x8S(get(tmp), v128.load32Splat(get(o.x), 4 * i))))),
        ]),
        ...(code.stepExtra ? code.stepExtra(raw) : []),
        ...tk.map((o) => inc(o.x, code.xStep))),
      ...tk.flatMap((o, k) => (code.after ? code.after(k, o.x, o.ints, tk.length > 1) : [])),
      ...tk.flatMap((o, k) => sc.subEnd(k, combine(o.ints, accShift), o.bsum, o.xs, o.acc)),
      ...tk.flatMap((o) => [inc(o.x, 64 - code.steps * code.xStep), inc(o.bsum, 4)]),
    ];
  };
  const body = (pair: boolean, pn?: Panel): Op[] => {
    const tk = pair ? toks : [toks[0]!];
    const t0 = toks[0]!;
    return [
      ...blockPointers({ w: wp, we, x: t0.x, xs: t0.xs, bsum: t0.bsum }, { x: P.x, xs: P.xs, bsum: P.bsum, nb: P.nb }, q, t, pn!, { weights: QB, x: 64 * sc.subs, bsum: 4 * sc.subs }),
      ...(pair ? [
        set(toks[1]!.x, i32.add(get(t0.x), mulC(get(P.nb), 64 * sc.subs))),
        set(toks[1]!.xs, i32.add(get(t0.xs), mulC(get(P.nb), 4))), // one activation scale per block (32 or 256 inputs)
        set(toks[1]!.bsum, i32.add(get(t0.bsum), mulC(get(P.nb), 4 * sc.subs))),
      ] : []),
      ...tk.map((o, k) => initAcc(pn, o.acc, outAddr(k))),
      forPtr(wp, we, QB,
        ...sc.blockStart(wp),
        set(sp, i32.add(get(wp), i32.const(sc.dataOff))),
        ...(sc.subs === 1 ? sub(tk) : [
          set(se, i32.add(get(wp), i32.const(sc.dataOff + sc.subs * subBytes))),
          forPtr(sp, se, subBytes, ...sub(tk)),
        ]),
        ...tk.flatMap((o, k) => (sc.blockEnd ? sc.blockEnd(k, o.xs, o.acc) : [])),
        ...tk.map((o) => inc(o.xs, 4))),
      ...tk.map((o, k) => v128.store(outAddr(k), get(o.acc))),
    ];
  };
  f.body = seq(...code.setup, ...sc.setup, pairedQuadLoop(f, P.T, P.tile, P.start, P.end, q, t, body, { w: P.w, nb: P.nb, pb: P.pb, quadBlockBytes: QB, outP: P.outP }));
  return f;
}

// ---------------------------------------------------------------------------------------------
// packing helpers: value (row j, input i) of a stored block → lane positions. Lanes 2j and 2j + 1
// (inputs 2p and 2p + 1 of row j) are side by side, so they are built and stored as one 32-bit
// word (every quad-block and its code area start 4-aligned); the stored bytes are read through a
// DataView (blocks of 18, 20, 22 bytes sit at any alignment).

/**
 * Row j's two lanes (e = 0 at bit 0, e = 1 at bit 16) of 4 values each: the bytes of w0 and w1
 * (ggml's qs[8u..8u+7], value pair k at bytes 2k, 2k + 1) as pair k at bit 0 and 16.
 */
const pairLo = (w: number): number => (w & 0xff) | ((w & 0xff00) << 8);
const pairHi = (w: number): number => ((w >>> 16) & 0xff) | ((w >>> 8) & 0xff0000);

/**
 * 4-bit codes (Q4_1) of row j, from ggml's qs[16] at q (value i < 16: low nibble of qs[i], 16 + i:
 * its high nibble): raw vector u, lane 2j + e, nibble k = input 8u + 2k + e (pair 4u + k). Raw
 * vectors 0, 1 take low nibbles, 2, 3 the high nibbles of the same bytes. o32: word of lanes 0, 1.
 */
function packNibblePairs(dv: DataView, q: number, o32: Uint32Array, at: number, j: number): void {
  for (let u = 0; u < 2; u++) {
    const w0 = dv.getUint32(q + 8 * u, true);
    const w1 = dv.getUint32(q + 8 * u + 4, true);
    const k0 = pairLo(w0);
    const k1 = pairHi(w0);
    const k2 = pairLo(w1);
    const k3 = pairHi(w1);
    const l = at + 4 * u + j;
    o32[l] = (k0 & 0xf000f) | ((k1 & 0xf000f) << 4) | ((k2 & 0xf000f) << 8) | ((k3 & 0xf000f) << 12);
    o32[l + 8] = ((k0 >>> 4) & 0xf000f) | (k1 & 0xf000f0) | ((k2 & 0xf000f0) << 4) | ((k3 & 0xf000f0) << 8);
  }
}

/**
 * IQ4 indices of row j (ggml's qs[16] at q, as for Q4_1): raw vector u, byte 2l + c of lane
 * l = 2j + e: low nibble = input 8u + 2c + e (pair 4u + c), high nibble = input 8u + 4 + 2c + e
 * (pair 4u + 2 + c).
 */
function packIndexPairs(dv: DataView, q: number, o32: Uint32Array, at: number, j: number): void {
  for (let u = 0; u < 2; u++) {
    const w0 = dv.getUint32(q + 8 * u, true);
    const w1 = dv.getUint32(q + 8 * u + 4, true);
    const k0 = pairLo(w0);
    const k1 = pairHi(w0);
    const k2 = pairLo(w1);
    const k3 = pairHi(w1);
    const l = at + 4 * u + j;
    o32[l] = (k0 & 0xf000f) | ((k2 & 0xf000f) << 4) | ((k1 & 0xf000f) << 8) | ((k3 & 0xf000f) << 12);
    o32[l + 8] = ((k0 >>> 4) & 0xf000f) | (k2 & 0xf000f0) | ((k1 & 0xf000f0) << 4) | ((k3 & 0xf000f0) << 8);
  }
}

/** Pair k (inputs 2k, 2k + 1) of a word of 4 codes (bytes: inputs 4m..4m+3), k even (lo) or odd (hi): e = 0 at bit 0, e = 1 at bit 16. */
const five2Lo = (x: number): number => (x & 0x1f) | ((x & 0x1f00) << 8);
const five2Hi = (x: number): number => ((x >>> 16) & 0x1f) | ((x >>> 8) & 0x1f0000);

/**
 * Row j's 5-bit codes (ggml's qs[16] at p, value i < 16 the low nibble of qs[i], 16 + i its high
 * nibble, with bit i of qh, a u32 at h, on top) → raw vectors u (0..4), word of lanes 2j, 2j + 1
 * at `at + 4u + j`: lane 2j + e: bits 0-4 = input 6u + e (pair 3u); 5-9 = input 6u + 2 + e; 11-15 =
 * input 6u + 4 + e; bit 10 = bit u of input 30 + e (pair 15). Four codes a word: the 4 qh bits
 * spread to bit 0 of 4 bytes by a multiply (x · 0x204081 puts bit k at bit 8k, with no carries).
 */
function packFiveRow(dv: DataView, p: number, h: number, o32: Uint32Array, at: number, j: number): void {
  const qh = dv.getUint32(h, true);
  const q0 = dv.getUint32(p, true);
  const q1 = dv.getUint32(p + 4, true);
  const q2 = dv.getUint32(p + 8, true);
  const q3 = dv.getUint32(p + 12, true);
  const x0 = (q0 & 0x0f0f0f0f) | ((Math.imul(qh & 15, 0x204081) & 0x01010101) << 4);
  const x1 = (q1 & 0x0f0f0f0f) | ((Math.imul((qh >>> 4) & 15, 0x204081) & 0x01010101) << 4);
  const x2 = (q2 & 0x0f0f0f0f) | ((Math.imul((qh >>> 8) & 15, 0x204081) & 0x01010101) << 4);
  const x3 = (q3 & 0x0f0f0f0f) | ((Math.imul((qh >>> 12) & 15, 0x204081) & 0x01010101) << 4);
  const x4 = ((q0 >>> 4) & 0x0f0f0f0f) | ((Math.imul((qh >>> 16) & 15, 0x204081) & 0x01010101) << 4);
  const x5 = ((q1 >>> 4) & 0x0f0f0f0f) | ((Math.imul((qh >>> 20) & 15, 0x204081) & 0x01010101) << 4);
  const x6 = ((q2 >>> 4) & 0x0f0f0f0f) | ((Math.imul((qh >>> 24) & 15, 0x204081) & 0x01010101) << 4);
  const x7 = ((q3 >>> 4) & 0x0f0f0f0f) | ((Math.imul(qh >>> 28, 0x204081) & 0x01010101) << 4);
  const last = five2Hi(x7);
  const w = at + j;
  o32[w] = five2Lo(x0) | (five2Hi(x0) << 5) | ((last & 0x10001) << 10) | (five2Lo(x1) << 11);
  o32[w + 4] = five2Hi(x1) | (five2Lo(x2) << 5) | (((last >>> 1) & 0x10001) << 10) | (five2Hi(x2) << 11);
  o32[w + 8] = five2Lo(x3) | (five2Hi(x3) << 5) | (((last >>> 2) & 0x10001) << 10) | (five2Lo(x4) << 11);
  o32[w + 12] = five2Hi(x4) | (five2Lo(x5) << 5) | (((last >>> 3) & 0x10001) << 10) | (five2Hi(x5) << 11);
  o32[w + 16] = five2Lo(x6) | (five2Hi(x6) << 5) | (((last >>> 4) & 0x10001) << 10) | (five2Lo(x7) << 11);
}

/** Two bytes (an f16 scale) of a stored block at s → 16-bit lane k. */
function packHead(dv: DataView, s: number, o16: Uint16Array, k: number): void {
  o16[k] = dv.getUint16(s, true);
}

const u16Of = (out: Uint8Array): Uint16Array => new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
const u32Of = (out: Uint8Array): Uint32Array => new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
const viewOf = (rows: Uint8Array): DataView => new DataView(rows.buffer, rows.byteOffset, rows.byteLength);

// ---------------------------------------------------------------------------------------------
// codes

/** 4-bit nibble pairs (Q4_1): one token by masks (A ×1, B ×16, C ×256), token pairs by shifts (A). */
function nibbleCode(f: Func): CodeSpec {
  const [m0, m1, m2] = f.vlocals(3);
  return {
    steps: 4,
    xStep: 16,
    accShift: [0, 4, 8],
    setup: [set(m0, i16x8.const(0x000f)), set(m1, i16x8.const(0x00f0)), set(m2, i16x8.const(0x0f00))],
    lanes: [
      { vec: (r) => v128.and(get(r), get(m0)), acc: 0 },
      { vec: (r) => v128.and(get(r), get(m1)), acc: 1 },
      { vec: (r) => v128.and(get(r), get(m2)), acc: 2 },
      { vec: (r) => i16x8.shrU(get(r), 12), acc: 0 },
    ],
    pair: {
      accShift: [0],
      lanes: [
        { vec: (r) => v128.and(get(r), get(m0)), acc: 0 },
        { vec: (r) => v128.and(i16x8.shrU(get(r), 4), get(m0)), acc: 0 },
        { vec: (r) => v128.and(i16x8.shrU(get(r), 8), get(m0)), acc: 0 },
        { vec: (r) => i16x8.shrU(get(r), 12), acc: 0 },
      ],
    },
  };
}

/**
 * 5-bit fields (Q5_0, Q5_1): one token A ×1 (bits 0-4, 11-15), B ×32 (bits 5-9 and pair 15, c =
 * 32·value); token pairs all in A (bits 5-9 by shift and mask, pair 15 as c >> 5).
 */
function fiveCode(f: Func): CodeSpec {
  const [m0, m1, m10, c] = f.vlocals(4);
  const dotC = (x: Local, acc: Local): Op => set(acc, i32x4.add(get(acc), i32x4.dotI16x8S(get(c), v128.load32Splat(get(x)))));
  return {
    steps: 5,
    xStep: 12,
    accShift: [0, 5],
    setup: [set(m0, i16x8.const(0x001f)), set(m1, i16x8.const(0x03e0)), set(m10, i16x8.const(0x0400))],
    init: [set(c, zero())],
    lanes: [
      { vec: (r) => v128.and(get(r), get(m0)), acc: 0 },
      { vec: (r) => v128.and(get(r), get(m1)), acc: 1 },
      { vec: (r) => i16x8.shrU(get(r), 11), acc: 0 },
    ],
    pair: {
      accShift: [0],
      lanes: [
        { vec: (r) => v128.and(get(r), get(m0)), acc: 0 },
        { vec: (r) => v128.and(i16x8.shrU(get(r), 5), get(m0)), acc: 0 },
        { vec: (r) => i16x8.shrU(get(r), 11), acc: 0 },
      ],
    },
    // bit u of pair 15's value is bit 10 of raw vector u: c = (c + bit + 1) >> 1 leaves it at bit 5 + u
    stepExtra: (r) => [set(c, i16x8.avgrU(get(c), v128.and(get(r), get(m10))))],
    after: (k, x, ints, pair) => (pair
      ? [...(k === 0 ? [set(c, i16x8.shrU(get(c), 5))] : []), dotC(x, ints[0]!)]
      : [dotC(x, ints[1]!)]),
  };
}

/** kvalue + 127 (0..240; entry 0 is 0): the IQ4 lookup table, unsigned so bytes widen with a mask or a shift. */
const IQ4_TABLE = Array.from(KVALUES_IQ4NL, (v) => v + 127);
const IQ4_BIAS = 127;

/** IQ4 indices (IQ4_NL, IQ4_XS): nibbles looked up in the table, even and odd bytes widened; one accumulator. */
function iq4Code(f: Func): CodeSpec {
  const [tbl, m0f, mff, lo, hi] = f.vlocals(5);
  const swizzle = relaxedSwizzleAvailable() ? i8x16.relaxedSwizzle : i8x16.swizzle;
  return {
    steps: 4,
    xStep: 16,
    accShift: [0],
    setup: [set(tbl, v128.const(IQ4_TABLE)), set(m0f, i16x8.const(0x0f0f)), set(mff, i16x8.const(0x00ff))],
    prep: (r) => [
      set(lo, swizzle(get(tbl), v128.and(get(r), get(m0f)))),
      set(hi, swizzle(get(tbl), v128.and(i16x8.shrU(get(r), 4), get(m0f)))),
    ],
    lanes: [
      { vec: () => v128.and(get(lo), get(mff)), acc: 0 },
      { vec: () => i16x8.shrU(get(lo), 8), acc: 0 },
      { vec: () => v128.and(get(hi), get(mff)), acc: 0 },
      { vec: () => i16x8.shrU(get(hi), 8), acc: 0 },
    ],
  };
}

// ---------------------------------------------------------------------------------------------
// scales

/** d·q + m (Q4_1, Q5_1): acc += (conv(Σq·xq)·d + m·Σxq)·xs; d[4] then m[4] (f16) at the block's start. */
function minScales(f: Func): Scales {
  const [dv, mv] = f.vlocals(2);
  return {
    setup: [],
    subs: 1,
    dataOff: 16,
    blockStart: (wp) => [set(dv, f16x4At(f, get(wp), 0)), set(mv, f16x4At(f, get(wp), 8))],
    subEnd: (_k, isum, bsum, xs, acc) => [set(acc, f32x4.add(get(acc), f32x4.mul(
      f32x4.add(f32x4.mul(f32x4.convertI32x4S(isum), get(dv)), f32x4.mul(get(mv), f32x4.splat(f32.convertI32S(i32.load(get(bsum)))))),
      f32x4.splat(f32.load(get(xs))))))],
  };
}

/** d·(q − bias) (Q5_0: 16, IQ4_NL: 127): acc += conv(Σq·xq − bias·Σxq)·d·xs; d[4] (f16) at the block's start. */
function offsetScales(f: Func, bias: number): Scales {
  const dv = f.local(V);
  return {
    setup: [],
    subs: 1,
    dataOff: 8,
    blockStart: (wp) => [set(dv, f16x4At(f, get(wp), 0))],
    subEnd: (_k, isum, bsum, xs, acc) => [set(acc, f32x4.add(get(acc), f32x4.mul(
      f32x4.convertI32x4S(i32x4.sub(isum, i32x4.splat(i32.mul(i32.load(get(bsum)), i32.const(bias))))),
      f32x4.mul(get(dv), f32x4.splat(f32.load(get(xs)))))))],
  };
}

/**
 * IQ4_XS: per 32-input sub-block fs += conv(Σw'·xq − 127·Σxq)·(ls − 32) in f32 (in i32 the product
 * could reach 32·127·32767·32 = 4.3e9), per super-block acc += fs·d·xs (one activation scale per 256).
 */
function iq4xsScales(f: Func): Scales {
  const [dv, lsf] = f.vlocals(2);
  const fs = f.vlocals(2);
  const lsp = f.local(I32);
  return {
    setup: [],
    subs: 8,
    dataOff: IQ4XS_DATA,
    blockStart: (wp) => [set(dv, f16x4At(f, get(wp), 0)), set(lsp, i32.add(get(wp), i32.const(8))), ...fs.map((l) => set(l, zero()))],
    subStart: [
      set(lsf, f32x4.convertI32x4S(i32x4.extendLowI16x8S(i16x8.extendLowI8x16S(v128.load32Zero(get(lsp)))))),
      inc(lsp, 4),
    ],
    subEnd: (k, isum, bsum) => [set(fs[k]!, f32x4.add(get(fs[k]!), f32x4.mul(
      f32x4.convertI32x4S(i32x4.sub(isum, i32x4.splat(i32.mul(i32.load(get(bsum)), i32.const(IQ4_BIAS))))), get(lsf))))],
    blockEnd: (k, xs, acc) => [set(acc, f32x4.add(get(acc), f32x4.mul(get(fs[k]!), f32x4.mul(get(dv), f32x4.splat(f32.load(get(xs)))))))],
  };
}

// ---------------------------------------------------------------------------------------------
// the formats

/** A 32-input format: quad-block = `heads` 2-byte fields × 4 rows, then `codeBytes` of codes. */
function format32(type: string, heads: number, codeBytes: number, pack: BlockFormat['pack'], build: (f: Func) => { code: CodeSpec; sc: Scales }): BlockFormat {
  const QB = 8 * heads + codeBytes;
  return { type, blockInputs: 32, quadBlockBytes: QB, xBlock: 32, bsumLen: 32, pack, emit: () => blockKernel(type, QB, build) };
}

/** block_q4_1 { d, m: f16; qs[16] } (20 bytes) → 80: d[4], m[4], nibble pairs. */
function packQ4_1(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(rows);
  const o16 = u16Of(out);
  const o32 = u32Of(out);
  for (let p = 0, o = 0; p < rowBytes; p += 20, o += 80) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(dv, s, o16, (o >> 1) + r);
      packHead(dv, s + 2, o16, (o >> 1) + 4 + r);
      packNibblePairs(dv, s + 4, o32, (o + 16) >> 2, r);
    }
  }
}

/** block_q5_0 { d: f16; qh: u32; qs[16] } (22 bytes) → 88: d[4], 5-bit fields. */
function packQ5_0(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(rows);
  const o16 = u16Of(out);
  const o32 = u32Of(out);
  for (let p = 0, o = 0; p < rowBytes; p += 22, o += 88) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(dv, s, o16, (o >> 1) + r);
      packFiveRow(dv, s + 6, s + 2, o32, (o + 8) >> 2, r);
    }
  }
}

/** block_q5_1 { d, m: f16; qh: u32; qs[16] } (24 bytes) → 96: d[4], m[4], 5-bit fields. */
function packQ5_1(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(rows);
  const o16 = u16Of(out);
  const o32 = u32Of(out);
  for (let p = 0, o = 0; p < rowBytes; p += 24, o += 96) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(dv, s, o16, (o >> 1) + r);
      packHead(dv, s + 2, o16, (o >> 1) + 4 + r);
      packFiveRow(dv, s + 8, s + 4, o32, (o + 16) >> 2, r);
    }
  }
}

/** block_iq4_nl { d: f16; qs[16] } (18 bytes) → 72: d[4], index pairs. */
function packIQ4_NL(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(rows);
  const o16 = u16Of(out);
  const o32 = u32Of(out);
  for (let p = 0, o = 0; p < rowBytes; p += 18, o += 72) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(dv, s, o16, (o >> 1) + r);
      packIndexPairs(dv, s + 2, o32, (o + 8) >> 2, r);
    }
  }
}

/** IQ4_XS quad-superblock: d[4] (f16), (ls − 32)[sub 8][row 4] i8, then per sub-block 64 bytes of index pairs. */
const IQ4XS_DATA = 40;
const IQ4XS_QB = IQ4XS_DATA + 8 * 64;

function packIQ4_XS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(rows);
  const o16 = u16Of(out);
  const o32 = u32Of(out);
  const nb = rowBytes / 136;
  for (let b = 0; b < nb; b++) {
    const o = b * IQ4XS_QB;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 136;
      packHead(dv, s, o16, (o >> 1) + r);
      const sh = rows[s + 2]! | (rows[s + 3]! << 8);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((rows[s + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
        out[o + 8 + 4 * ib + r] = (ls - 32) & 255;
        packIndexPairs(dv, s + 8 + 16 * ib, o32, (o + IQ4XS_DATA + 64 * ib) >> 2, r);
      }
    }
  }
}
/**
 * IQ4_XS's prefill kernel (decoded.ts): the index pairs looked up as in iq4Code, less the 127
 * bias, are already pair vectors in rows-in-lanes order (kvalue as int16), so Σ kvalue·x per
 * sub-block is iq4xsScales' isum − 127·bsum; its f32 steps are theirs: fs += conv(sum) · (ls − 32)
 * per sub-block (the f32 sub-scales stored as group extras), acc += fs · (d · xs) per block.
 */
const IQ4XS_DECODED: DecodedSpec = {
  name: 'mmp_iq4_xs', QB: IQ4XS_QB, G: 32, xBlock: 256, bsumLen: 0, groupExtra: 16, blockExtra: 16, accs: 1,
  decode(f, wp, dp, gx, bx) {
    const [tbl, m0f, mff, bias, raw, lo, hi] = f.vlocals(7) as [Local, Local, Local, Local, Local, Local, Local];
    const [op, rp, re, lsp, gp] = f.locals32(5) as [Local, Local, Local, Local, Local];
    const swizzle = relaxedSwizzleAvailable() ? i8x16.relaxedSwizzle : i8x16.swizzle;
    return [
      v128.store(get(bx), f16x4At(f, get(wp), 0)),
      set(tbl, v128.const(IQ4_TABLE)), set(m0f, i16x8.const(0x0f0f)), set(mff, i16x8.const(0x00ff)), set(bias, i16x8.const(IQ4_BIAS)),
      set(op, get(dp)),
      set(gp, get(gx)),
      set(lsp, i32.add(get(wp), i32.const(8))),
      set(rp, i32.add(get(wp), i32.const(IQ4XS_DATA))),
      set(re, i32.add(get(wp), i32.const(IQ4XS_QB))),
      forPtr(rp, re, 64,
        v128.store(get(gp), f32x4.convertI32x4S(i32x4.extendLowI16x8S(i16x8.extendLowI8x16S(v128.load32Zero(get(lsp)))))),
        inc(lsp, 4),
        inc(gp, 16),
        ...[0, 1, 2, 3].flatMap((u) => [
          set(raw, v128.load(get(rp), 16 * u)),
          set(lo, swizzle(get(tbl), v128.and(get(raw), get(m0f)))),
          set(hi, swizzle(get(tbl), v128.and(i16x8.shrU(get(raw), 4), get(m0f)))),
          v128.store(get(op), i16x8.sub(v128.and(get(lo), get(mff)), get(bias)), 64 * u),
          v128.store(get(op), i16x8.sub(i16x8.shrU(get(lo), 8), get(bias)), 64 * u + 16),
          v128.store(get(op), i16x8.sub(v128.and(get(hi), get(mff)), get(bias)), 64 * u + 32),
          v128.store(get(op), i16x8.sub(i16x8.shrU(get(hi), 8), get(bias)), 64 * u + 48),
        ]),
        inc(op, 256)),
    ];
  },
  groupEnd: (_f, k, sum, gx) => [set(k.F[0]!, f32x4.add(get(k.F[0]!), f32x4.mul(f32x4.convertI32x4S(sum), v128.load(get(gx)))))],
  blockEnd: (_f, k, bx) => f32x4.mul(get(k.F[0]!), f32x4.mul(v128.load(get(bx)), f32x4.splat(f32.load(get(k.xs))))),
};

const iq4xs: BlockFormat = {
  type: 'iq4_xs',
  blockInputs: 256,
  quadBlockBytes: IQ4XS_QB,
  xBlock: 256,
  bsumLen: 32,
  pack: packIQ4_XS,
  emit: () => blockKernel('iq4_xs', IQ4XS_QB, (f) => ({ code: iq4Code(f), sc: iq4xsScales(f) })),
  prefill: IQ4XS_DECODED,
};

export const LEGACY_FORMATS: readonly BlockFormat[] = [
  format32('q4_1', 2, 64, packQ4_1, (f) => ({ code: nibbleCode(f), sc: minScales(f) })),
  format32('q5_0', 1, 80, packQ5_0, (f) => ({ code: fiveCode(f), sc: offsetScales(f, 16) })),
  format32('q5_1', 2, 80, packQ5_1, (f) => ({ code: fiveCode(f), sc: minScales(f) })),
  format32('iq4_nl', 1, 64, packIQ4_NL, (f) => ({ code: iq4Code(f), sc: offsetScales(f, IQ4_BIAS) })),
  iq4xs,
];
