/**
 * Q2_K, Q3_K, Q5_K: packed layouts and SIMD128 kernels (see ../block-format.ts).
 *
 * All three use a **row-pair layout**: a quad's 4 rows sit in the 4 i32 lanes of every dot
 * product. Each 16-bit lane L = 2r + e of a weight vector holds row r's code for input 2p + e of
 * an input pair p, and `i32x4.dot_i16x8_s` with the pair's two int16 activations broadcast
 * (`v128.load32_splat`, one load) leaves row r's Σ over the pair in lane r. Consequences:
 * - every lane of a vector belongs to the same sub-block of its row, so a sub-block's scale (and
 *   min) is one i32x4 multiply per 64 (Q2_K, Q3_K) or 128 (Q5_K) weights, against a sum whose
 *   lanes are already the 4 rows: no splat of a scale per sub-block and row (Q4_K's layout would
 *   need one per 16 weights here) and no horizontal sums at all;
 * - the codes are packed in fields of 16-bit lanes so that each pair vector comes out with one or
 *   two ops (Q2_K: 4 crumbs per byte lane, 1.5 ops per vector; Q3_K: 5 + 2 + 1 split 3-bit fields
 *   per 24 bits, 1.9; Q5_K: 3 5-bit fields per 16-bit lane and a 16th pair from the lanes' spare
 *   bits, 2.3);
 * - a decoded pair vector serves 4 tokens (or 2, or 1) of a batched decode or prefill.
 * The floor is one dot and one add per 8 weights and token; decoding, the sub-block tails and the
 * broadcasts come on top. TurboFan issues a basic block's loads first, so a sub-block's pairs are
 * cut into blocks of a few pairs (KOpts) or the broadcasts wait in registers and spill.
 *
 * Activations are int16 (quant_x) with one f32 scale per 256 inputs,
 * clamped to ±32767; the min / offset terms use bsum_x (Σ of 16 or 32 int16 activations). The i32
 * bounds are stated per kernel and tested at their worst cases (test/wasm-kquants.test.ts).
 *
 * Measured (2 vCPU Zen 4 shared with other jobs, Node 20; 2048 → 10240 matmul in one process,
 * formats alternating call by call, median over 21–25 rounds of the ratio to mm_q4_k in G weights/s;
 * CPU time, as wall time swung 2× with the machine's load):
 *
 * | T, threads | Q2_K        | Q3_K        | Q5_K        |
 * |------------|-------------|-------------|-------------|
 * | 1, 1       | 0.89–0.94   | 0.94        | 0.95–1.02   |
 * | 1, 2       | 0.93        | 0.93        | 0.95        |
 * | 16, 1      | 1.24        | 1.13        | 1.12        |
 * | 16, 2      | 1.13        | 1.09        | 1.16        |
 *
 * (Q4_K there: 17.8 G weights/s = 10 GB/s per thread at T = 1.) In runs where Q4_K itself was
 * 20 % slower, presumably with the core's other hyperthread busy, the T = 1 ratios fell to
 * 0.75–0.89. Per 64 weights, one token, the Q2_K loop is ~60 x64 instructions of which 34 vector
 * ALU ops, Q4_K's ≈ 42 with the same 34: the ALU work is equal, the broadcasts (one per 8
 * weights), the per-16 scale tails and V8's reloads of address registers are not, and they cost
 * where issue slots are shared.
 */
import {
  Func, ValType, type Local, type Op, seq, get, set, forPtr, if_,
  i32, v128, i16x8, i32x4, f32x4,
} from '../asm.js';
import type { BlockFormat } from '../block-format.js';
import { I32, V, zero, inc, mulC, f16x4, initAcc, blockPointers, tokenGroupLoop, type Panel } from '../kernel-parts.js';
import { scalesMinsK4 } from '../layout.js';
import { laneBytes, type DecodedSpec, type DTok } from '../decoded.js';

// ---------------------------------------------------------------------------------------------
// shared kernel frame

/** One token's pointers and accumulator inside the kernel. */
interface Tok {
  /** int16 activations of the current sub-block (advanced by the superblock body). */
  readonly xp: Local;
  /** f32 activation scale of the current superblock (xBlock 256) or activation block (advanced by the superblock body). */
  readonly xsp: Local;
  /** i32 block sums of the current sub-block (advanced by the superblock body). */
  readonly bp: Local;
  /** f32x4 sums of the quad's 4 rows. */
  readonly acc: Local;
}

interface Frame {
  readonly f: Func;
  /** The quad-superblock being read. */
  readonly wp: Local;
}

/**
 * Kernel variants (for measurement): input pairs per basic block for 1, 2 and 4 tokens, and the
 * most tokens that share one decoded weight vector. TurboFan issues the loads of a basic block
 * first, so a block with many pairs keeps all their broadcast activations waiting in registers
 * (and spills them); a branch on a never-zero local (`own`) ends a block without a loop's
 * bookkeeping.
 */
export interface KOpts {
  readonly p1: number;
  readonly p2: number;
  readonly p4: number;
  readonly maxTokens: 1 | 2 | 4;
  /** Most tokens for which pairs take their masked form (see pairBlocks). */
  readonly masked: number;
  /** Advance the activation pointers block by block (see pairBlocks). */
  readonly stepX?: boolean;
}

/**
 * mm_TYPE(w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, tid) over 256-input superblocks
 * of `QB` packed bytes per quad: column panels × token tiles × quads × groups of 4, 2, 1 tokens.
 * `superblock(frame, toks)` emits one superblock for a group: it must advance each token's xp by
 * 512 and bp by one superblock's sums and add the superblock's sums to acc; this frame advances
 * wp, and xsp when xBlock is 256 (the body does for smaller activation blocks).
 */
function frame(type: string, QB: number, bsumLen: 16 | 32, xBlock: 32 | 256, maxTokens: number, consts: (f: Func) => Op[], superblock: (fr: Frame, toks: readonly Tok[]) => Op[]): Func {
  const f = new Func(`mm_${type}`, new Array<ValType>(13).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [q, t, wp, we] = f.locals32(4);
  const toks: Tok[] = [0, 1, 2, 3].map(() => ({ xp: f.local(I32), xsp: f.local(I32), bp: f.local(I32), acc: f.local(V) }));
  const bsumBytes = (256 / bsumLen) * 4;
  const xsBytes = (256 / xBlock) * 4;
  const outAddr = (k: number) => i32.add(get(out), mulC(i32.add(i32.mul(i32.add(get(t), i32.const(k)), get(outP)), mulC(get(q), 4)), 4));
  const body = (n: number, pn: Panel): Op[] => {
    const tk = toks.slice(0, n);
    const t0 = toks[0]!;
    return [
      ...blockPointers({ w: wp, we, x: t0.xp, xs: t0.xsp, bsum: t0.bp }, { x, xs, bsum, nb }, q, t, pn, { weights: QB, x: 512, bsum: bsumBytes }),
      ...(xBlock < 256 ? [set(t0.xsp, i32.add(get(xs), mulC(i32.add(i32.mul(get(t), get(nb)), get(pn.b0)), xsBytes)))] : []),
      ...tk.slice(1).flatMap((k, i) => [
        set(k.xp, i32.add(get(t0.xp), mulC(get(nb), 512 * (i + 1)))),
        set(k.xsp, i32.add(get(t0.xsp), mulC(get(nb), xsBytes * (i + 1)))),
        set(k.bp, i32.add(get(t0.bp), mulC(get(nb), bsumBytes * (i + 1)))),
      ]),
      ...tk.map((k, i) => initAcc(pn, k.acc, outAddr(i))),
      forPtr(wp, we, QB,
        ...superblock({ f, wp }, tk),
        ...(xBlock === 256 ? tk.map((k) => inc(k.xsp, 4)) : [])),
      ...tk.map((k, i) => v128.store(outAddr(i), get(k.acc))),
    ];
  };
  f.body = seq(...consts(f), tokenGroupLoop(f, T, tile, start, end, q, t, ([4, 2, 1] as const).filter((n) => n <= maxTokens), (n, pn) => body(n, pn!), { w, nb, pb, quadBlockBytes: QB, outP }));
  return f;
}

/** The f32 activation scale of a token's current superblock (or activation block), in every lane. */
const xScale = (k: Tok): Op => v128.load32Splat(get(k.xsp));

/**
 * One input pair of a sub-block: its code vector `vec`, computed from vector locals that are
 * loaded by `srcs` (each loaded once per basic block), its activation pair at byte `off` of each
 * token's xp, and ops to run after it (`post`, e.g. gathering spare bits). `masked`, where given,
 * is the code vector times 2^shift from fewer ops (a mask without the shift).
 */
interface PairItem {
  readonly srcs: readonly (readonly [Local, Op])[];
  readonly vec: Op;
  readonly off: number;
  readonly post?: readonly Op[];
  readonly masked?: { readonly vec: Op; readonly shift: number };
}

/**
 * A sub-block's pairs in basic blocks of `per` pairs (`own` after the first): each block loads its
 * sources, then per pair decodes the vector once and adds its dot product with each token's
 * broadcast activation pair to that token's sum (the first pair sets the sums). With `useMasked`,
 * pairs that have a masked form go into sums of their own per shift, shifted back (exactly: they
 * are multiples of 2^shift) and added at the end: one op less per such pair, two more per shift
 * and token, so a gain for one token.
 */
function pairBlocks(f: Func, nz: Local, items: readonly PairItem[], per: number, toks: readonly Tok[], sums: readonly Local[], wv: Local, useMasked = false, stepX = false): Op[] {
  const shifts = useMasked ? [...new Set(items.flatMap((it) => (it.masked ? [it.masked.shift] : [])))] : [];
  const extra = new Map(shifts.map((sh) => [sh, f.vlocals(toks.length)] as const));
  const started = new Set<Local[] | readonly Local[]>();
  const blocks: Op[][] = [];
  // with stepX, each block's activation offsets are relative to its first pair's, and the xps
  // move from block to block (fewer distinct offsets: V8 keeps one address register per offset)
  let at = 0;
  for (let i0 = 0; i0 < items.length; i0 += per) {
    const chunk = items.slice(i0, i0 + per);
    const base = stepX ? Math.min(...chunk.map((it) => it.off)) : 0;
    const move = base - at;
    at = base;
    const loads = new Map<Local, Op>();
    for (const it of chunk) for (const [l, op] of it.srcs) if (!loads.has(l)) loads.set(l, op);
    blocks.push([
      ...(move ? toks.map((k) => inc(k.xp, move)) : []),
      ...[...loads].map(([l, op]) => set(l, op)),
      ...chunk.flatMap((it) => {
        const m = useMasked && it.masked;
        const dst = m ? extra.get(m.shift)! : sums;
        const first = !started.has(dst);
        started.add(dst);
        return [
          set(wv, m ? m.vec : it.vec),
          ...toks.map((k, i) => {
            const d = i32x4.dotI16x8S(get(wv), v128.load32Splat(get(k.xp), it.off - base));
            return set(dst[i]!, first ? d : i32x4.add(get(dst[i]!), d));
          }),
          ...(it.post ?? []),
        ];
      }),
    ]);
  }
  return [
    ...blocks.map((b, i) => (i ? if_(get(nz), b) : seq(b))),
    ...(at ? toks.map((k) => inc(k.xp, -at)) : []),
    ...[...extra].flatMap(([sh, ls]) => toks.map((_, i) => set(sums[i]!, i32x4.add(get(sums[i]!), i32x4.shrS(get(ls[i]!), sh))))),
  ];
}

const perBlock = (o: KOpts, n: number): number => (n === 1 ? o.p1 : n === 2 ? o.p2 : o.p4);

// ---------------------------------------------------------------------------------------------
// Q2_K

/**
 * Quad-block (336 bytes = 4 × 84, ggml's size): d[4] f16, dmin[4] f16, then ggml's scale bytes
 * (low nibble scale, high nibble min) as [sub-block][row] (64), then per sub-block s of 16 inputs
 * 16 bytes of crumb lanes: byte L of the first 8 holds in bits 2k, 2k + 1 row r's code of input
 * 16s + 2k + e (L = 2r + e, pairs k = 0..3), the second 8 bytes pairs 4..7 alike.
 */
export const Q2K_QUAD_BYTES = 336;

function packQ2K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = new DataView(tmp.buffer, tmp.byteOffset, tmp.byteLength);
  const o16 = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
  const nsb = rowBytes / 84;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q2K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 84;
      o16[(o >> 1) + r] = dv.getUint16(s + 80, true);
      o16[(o >> 1) + 4 + r] = dv.getUint16(s + 82, true);
      for (let g = 0; g < 16; g++) out[o + 16 + 4 * g + r] = tmp[s + g]!;
      // sub-block g's 16 codes are bits 2t (t = (g >> 1) & 3) of qs[32·(g >> 3) + 16·(g & 1) + m]:
      // 4 at a time in the bytes of a 32-bit word; code m = 2(4h + k) + e of half h goes into bits
      // 2k of byte e of the half's 16-bit lane of row r. The 4 words of a 16-byte run serve 4 sub-blocks.
      for (let n = 0; n < 2; n++) {
        for (let hf = 0; hf < 2; hf++) {
          const q = s + 16 + 32 * n + 16 * hf;
          const w0 = dv.getUint32(q, true);
          const w1 = dv.getUint32(q + 4, true);
          const w2 = dv.getUint32(q + 8, true);
          const w3 = dv.getUint32(q + 12, true);
          for (let t = 0; t < 4; t++) {
            const sh = 2 * t;
            const g = 8 * n + 2 * t + hf;
            const at = ((o + 80 + 16 * g) >> 1) + r;
            const x0 = (w0 >>> sh) & 0x03030303; // half 0, k = 0, 1 (bytes: k0e0 k0e1 k1e0 k1e1)
            const x1 = (w1 >>> sh) & 0x03030303; // half 0, k = 2, 3
            const x2 = (w2 >>> sh) & 0x03030303;
            const x3 = (w3 >>> sh) & 0x03030303;
            o16[at] = ((x0 | (x0 >>> 14)) & 0x0f0f) | (((x1 | (x1 >>> 14)) & 0x0f0f) << 4);
            o16[at + 4] = ((x2 | (x2 >>> 14)) & 0x0f0f) | (((x3 | (x3 >>> 14)) & 0x0f0f) << 4);
          }
        }
      }
    }
  }
}

/**
 * Row value = d·sc·q − dmin·m per 16-input sub-block, so per superblock
 * Σ w·x = xs·(d·Σ_s sc_s·Σ q·xq − dmin·Σ_s m_s·bsum_s), both sums exact in i32 lanes (one lane
 * per row): |Σ_s sc_s·Σ q·xq| ≤ 16·15·16·3·32767 = 3.8e8 and Σ_s m_s·|bsum_s| ≤ 16·15·16·32767 =
 * 1.3e8. Per sub-block: two 8-byte zero-extending loads give the 8 pair vectors (and / shift+and
 * / shift, 12 ops), 8 dot products per token, then sum·sc and m·bsum as i32x4 multiplies (sc, m
 * from 4 bytes). The masked forms of crumbs 1 and 2 (KOpts.masked) save 4 ops per sub-block but
 * need 2 more sums and 2 more constants, and spilled: 0.85× for one token, so they are off.
 */
export function mmQ2K(opts: KOpts = Q2K_OPTS): Func {
  let m3!: Local;
  let m15!: Local;
  let m12!: Local;
  let m48!: Local;
  return frame('q2_k', Q2K_QUAD_BYTES, 16, 256, opts.maxTokens, (f) => {
    [m3, m15, m12, m48] = f.vlocals(4) as [Local, Local, Local, Local];
    return [set(m3, i16x8.const(3)), set(m15, i32x4.const(15)), ...(opts.masked ? [set(m12, i16x8.const(12)), set(m48, i16x8.const(48))] : [])];
  }, ({ f, wp }, toks) => {
    const [qp, qe, smp] = f.locals32(3);
    const [b0, b1, sm, wv, dm] = f.vlocals(5);
    const sums = f.vlocals(toks.length);
    const tot = f.vlocals(toks.length);
    const msum = f.vlocals(toks.length);
    // pair 4h + k: crumb k of byte plane h (8 bytes, zero-extended to 16-bit lanes)
    const items: PairItem[] = [b0, b1].flatMap((bv, h) => {
      const src = [[bv, v128.load8x8U(get(qp), 8 * h)]] as const;
      const crumbs = [v128.and(get(bv), get(m3)), v128.and(i16x8.shrU(get(bv), 2), get(m3)), v128.and(i16x8.shrU(get(bv), 4), get(m3)), i16x8.shrU(get(bv), 6)];
      return crumbs.map((vec, k) => ({
        srcs: src, vec, off: 4 * (4 * h + k),
        ...(k === 1 ? { masked: { vec: v128.and(get(bv), get(m12)), shift: 2 } } : k === 2 ? { masked: { vec: v128.and(get(bv), get(m48)), shift: 4 } } : {}),
      }));
    });
    return [
      ...toks.flatMap((_, i) => [set(tot[i]!, zero()), set(msum[i]!, zero())]),
      set(qp, i32.add(get(wp), i32.const(80))),
      set(qe, i32.add(get(wp), i32.const(Q2K_QUAD_BYTES))),
      set(smp, i32.add(get(wp), i32.const(16))),
      forPtr(qp, qe, 16,
        ...pairBlocks(f, qe, items, perBlock(opts, toks.length), toks, sums, wv, toks.length <= opts.masked, opts.stepX),
        // [sc | m << 4] of the 4 rows as i32 lanes (8 bytes read, the first 4 used)
        set(sm, i32x4.extendLowI16x8U(v128.load8x8U(get(smp)))),
        ...toks.flatMap((k, i) => [
          set(tot[i]!, i32x4.add(get(tot[i]!), i32x4.mul(get(sums[i]!), v128.and(get(sm), get(m15))))),
          set(msum[i]!, i32x4.add(get(msum[i]!), i32x4.mul(i32x4.shrU(get(sm), 4), v128.load32Splat(get(k.bp))))),
          inc(k.xp, 32),
          inc(k.bp, 4),
        ]),
        inc(smp, 4)),
      set(sm, f16x4(f, v128.load16x4U(get(wp)))),
      set(dm, f16x4(f, v128.load16x4U(get(wp), 8))),
      ...toks.map((k, i) => set(k.acc, f32x4.add(get(k.acc), f32x4.mul(xScale(k), f32x4.sub(
        f32x4.mul(f32x4.convertI32x4S(get(tot[i]!)), get(sm)),
        f32x4.mul(f32x4.convertI32x4S(get(msum[i]!)), get(dm))))))),
    ];
  });
}

// ---------------------------------------------------------------------------------------------
// Q3_K

/**
 * Quad-block (456 bytes, +3.6 % on 4 × 110): d[4] f16, the 6-bit scales minus 32 as i8
 * [sub-block][row] (64), then per sub-block s of 16 inputs 24 bytes: A (16 bytes, 16-bit lanes)
 * and B (8 bytes, one per lane), lane L = 2r + e holding row r's 3-bit codes q3 = q + 4·h (0..7)
 * of inputs 16s + 2p + e: pairs 0..4 in A's bits 3p..3p+2, pair 5 in B's bits 0-2, pair 6 in B's
 * bits 5-7, pair 7's bit 0 in A's bit 15 and its bits 1-2 in B's bits 3-4.
 */
export const Q3K_QUAD_BYTES = 456;
/** Inputs per activation scale for Q3_K (see mmQ3K). */
export const Q3K_X_BLOCK: 32 | 256 = 256;

/**
 * From a word of 4 3-bit codes (bytes: pair k e = 0, e = 1, pair k + 1 e = 0, e = 1): the two pairs
 * as 6-bit fields k | (k + 1) << 3 of lane e = 0 at bit 0 and lane e = 1 at bit 16.
 */
const pairs3 = (c: number): number => {
  const y = (c & 0x0707) | ((c >>> 13) & 0x3838);
  return (y & 0x3f) | ((y & 0x3f00) << 8);
};

function packQ3K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = new DataView(tmp.buffer, tmp.byteOffset, tmp.byteLength);
  const o16 = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
  const o32 = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
  const nsb = rowBytes / 110;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q3K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 110;
      o16[(o >> 1) + r] = dv.getUint16(s + 108, true);
      const sc = s + 96;
      for (let g = 0; g < 4; g++) {
        const h = tmp[sc + 8 + g]!;
        const lo = tmp[sc + g]!;
        const hi = tmp[sc + 4 + g]!;
        out[o + 8 + 4 * g + r] = (((lo & 15) | ((h & 3) << 4)) - 32) & 255;
        out[o + 8 + 4 * (g + 4) + r] = (((hi & 15) | (((h >> 2) & 3) << 4)) - 32) & 255;
        out[o + 8 + 4 * (g + 8) + r] = (((lo >> 4) | (((h >> 4) & 3) << 4)) - 32) & 255;
        out[o + 8 + 4 * (g + 12) + r] = (((hi >> 4) | ((h >> 6) << 4)) - 32) & 255;
      }
      // sub-block g's 16 3-bit codes: bits 2(t & 3) (t = g >> 1) of qs[32·(g >> 3) + 16·(g & 1) + m]
      // and bit t of hmask[16·(g & 1) + m] on top, 4 at a time in the bytes of a word; the 4 words
      // of a 16-byte run (and of hmask's) serve 4 sub-blocks. Lanes L = 2r, 2r + 1 side by side.
      for (let hf = 0; hf < 2; hf++) {
        const m = s + 16 * hf;
        const h0 = dv.getUint32(m, true);
        const h1 = dv.getUint32(m + 4, true);
        const h2 = dv.getUint32(m + 8, true);
        const h3 = dv.getUint32(m + 12, true);
        for (let n = 0; n < 2; n++) {
          const q = s + 32 + 32 * n + 16 * hf;
          const w0 = dv.getUint32(q, true);
          const w1 = dv.getUint32(q + 4, true);
          const w2 = dv.getUint32(q + 8, true);
          const w3 = dv.getUint32(q + 12, true);
          for (let tq = 0; tq < 4; tq++) {
            const t = 4 * n + tq;
            const sh = 2 * tq;
            const c0 = ((w0 >>> sh) & 0x03030303) | (((h0 >>> t) & 0x01010101) << 2);
            const c1 = ((w1 >>> sh) & 0x03030303) | (((h1 >>> t) & 0x01010101) << 2);
            const c2 = ((w2 >>> sh) & 0x03030303) | (((h2 >>> t) & 0x01010101) << 2);
            const c3 = ((w3 >>> sh) & 0x03030303) | (((h3 >>> t) & 0x01010101) << 2);
            const at = o + 72 + 24 * (2 * t + hf);
            // A: pairs 0-4 at bits 0, 3, 6, 9, 12 and bit 0 of pair 7 at 15 (lanes e = 0, 1 at bits 0, 16)
            o32[(at >> 2) + r] = pairs3(c0) | (pairs3(c1) << 6) | (((c2 & 7) | ((c2 & 0x700) << 8)) << 12) | ((((c3 >>> 16) & 1) | ((c3 >>> 8) & 0x10000)) << 15);
            // B (bytes L = 2r, 2r + 1): pair 5, bits 1-2 of pair 7 at 3, pair 6 at 5
            o16[((at + 16) >> 1) + r] = ((c2 >>> 16) & 0x0707) | ((((c3 >>> 16) & 0x0606) >>> 1) << 3) | ((c3 & 0x0707) << 5);
          }
        }
      }
    }
  }
}

/**
 * Row value = d·(sc − 32)·(q3 − 4) with q3 = q + 4h, so per activation block of 32 inputs (two
 * sub-blocks) Σ w·x = xs·d·Σ_s (sc_s − 32)·(Σ q3·xq − 4·bsum_s). Per row (one i32 lane) and
 * sub-block |Σ q3·xq − 4·bsum| = |Σ (q3 − 4)·xq| ≤ 16·4·32767 = 2.1e6 (and Σ q3·xq ≤ 16·7·32767),
 * times |sc − 32| ≤ 32: 6.7e7, two of them summed in i32 then converted to f32 (with xBlock 256,
 * all 16: ≤ 1.07e9, also < 2^31). Per sub-block: a 16-byte and an 8-byte (zero-extending) load
 * give the 8 pair vectors with 15 and / shift / or.
 *
 * Activation blocks of 256 (one scale, like the other K-quants). Blocks of 32 are supported and
 * halve the typical error (~1e-4 → ~4e-5 of ‖y‖), but cost a convert, a multiply and an f32 add
 * per 32 inputs and token, ≈ 5 % at T = 1; against ‖|W|·|x|‖, the bound int16 rounding obeys
 * (Q3_K's symmetric codes make single rows cancel), 256 stays ≤ 1.8e-5 on the conformance test.
 */
export function mmQ3K(opts: KOpts = Q3K_OPTS, xBlock: 32 | 256 = Q3K_X_BLOCK): Func {
  let m7!: Local;
  let m6!: Local;
  return frame('q3_k', Q3K_QUAD_BYTES, 16, xBlock, opts.maxTokens, (f) => {
    m7 = f.local(V);
    m6 = f.local(V);
    return [set(m7, i16x8.const(7)), set(m6, i16x8.const(6))];
  }, ({ f, wp }, toks) => {
    const [qp, qe, scp] = f.locals32(3);
    const [a, bb, wv, d] = f.vlocals(4);
    const sums = f.vlocals(toks.length);
    const isum = f.vlocals(toks.length);
    const fsum = f.vlocals(toks.length);
    const spb = xBlock === 32 ? 2 : 1; // sub-blocks per loop step (one activation scale)
    /** Sub-block h of the step: its 8 pairs, then (Σ q3·xq − 4·bsum)·(sc − 32) into isum. */
    const sub = (h: number): Op[] => {
      const A = [a, v128.load(get(qp), 24 * h)] as const;
      const B = [bb, v128.load8x8U(get(qp), 24 * h + 16)] as const;
      const field = (k: number): Op => v128.and(k ? i16x8.shrU(get(a), 3 * k) : get(a), get(m7));
      const items: PairItem[] = [
        ...[0, 1, 2, 3, 4].map((k) => ({ srcs: [A], vec: field(k), off: 32 * h + 4 * k })),
        { srcs: [B], vec: v128.and(get(bb), get(m7)), off: 32 * h + 20 },
        { srcs: [B], vec: i16x8.shrU(get(bb), 5), off: 32 * h + 24 },
        { srcs: [A, B], vec: v128.or(i16x8.shrU(get(a), 15), v128.and(i16x8.shrU(get(bb), 2), get(m6))), off: 32 * h + 28 },
      ];
      return [
        ...pairBlocks(f, qe, items, perBlock(opts, toks.length), toks, sums, wv, toks.length <= opts.masked, opts.stepX),
        ...toks.map((k, i) => {
          const t = i32x4.mul(i32x4.sub(get(sums[i]!), i32x4.shl(v128.load32Splat(get(k.bp), 4 * h), 2)), i32x4.extendLowI16x8S(v128.load8x8S(get(scp), 4 * h)));
          return set(isum[i]!, h || xBlock === 256 ? i32x4.add(get(isum[i]!), t) : t);
        }),
      ];
    };
    return [
      ...toks.map((_, i) => set(xBlock === 256 ? isum[i]! : fsum[i]!, zero())),
      set(qp, i32.add(get(wp), i32.const(72))),
      set(qe, i32.add(get(wp), i32.const(Q3K_QUAD_BYTES))),
      set(scp, i32.add(get(wp), i32.const(8))),
      forPtr(qp, qe, 24 * spb,
        ...Array.from({ length: spb }, (_, h) => (h ? if_(get(qe), sub(h)) : seq(sub(h)))),
        ...toks.flatMap((k, i) => [
          ...(xBlock === 256 ? [] : [set(fsum[i]!, f32x4.add(get(fsum[i]!), f32x4.mul(f32x4.convertI32x4S(get(isum[i]!)), xScale(k)))), inc(k.xsp, 4)]),
          inc(k.xp, 32 * spb),
          inc(k.bp, 4 * spb),
        ]),
        inc(scp, 4 * spb)),
      set(d, f16x4(f, v128.load16x4U(get(wp)))),
      ...toks.map((k, i) => set(k.acc, f32x4.add(get(k.acc), xBlock === 256
        ? f32x4.mul(f32x4.mul(xScale(k), get(d)), f32x4.convertI32x4S(get(isum[i]!)))
        : f32x4.mul(get(d), get(fsum[i]!))))),
    ];
  });
}

// ---------------------------------------------------------------------------------------------
// Q5_K

/**
 * Quad-block (720 bytes, +2.3 % on 4 × 176): d[4] f16, dmin[4] f16, per sub-block j the 6-bit
 * scales then mins of the 4 rows as bytes (8 × 8), then per sub-block j of 32 inputs 5 words of 16
 * bytes: in word w, 16-bit lane 2r + e holds row r's 5-bit codes of input pairs 3w, 3w + 1, 3w + 2
 * (inputs 32j + 2p + e) in bits 0-4, 6-10, 11-15, and in bit 5 bit 4 − w of pair 15's code (the
 * spare bit in the middle: the first field needs only an and, the last only a shift).
 */
export const Q5K_QUAD_BYTES = 720;

/**
 * The 5 words of lanes L = 2r, 2r + 1 of a sub-block from its 8 words of 4 codes (bytes: inputs
 * 4m..4m+3): pair k = inputs 2k (bit 0), 2k + 1 (bit 16); word w holds pairs 3w, 3w + 1, 3w + 2 at
 * bits 0, 6, 11 and bit 4 − w of pair 15 at bit 5.
 */
function putFive(o32: Uint32Array, at: number, x0: number, x1: number, x2: number, x3: number, x4: number, x5: number, x6: number, x7: number): void {
  const p15 = ((x7 >>> 16) & 0x1f) | ((x7 >>> 8) & 0x1f0000);
  o32[at] = (x0 & 0x1f) | ((x0 & 0x1f00) << 8) | (((p15 >>> 4) & 0x10001) << 5)
    | ((((x0 >>> 16) & 0x1f) | ((x0 >>> 8) & 0x1f0000)) << 6) | (((x1 & 0x1f) | ((x1 & 0x1f00) << 8)) << 11);
  o32[at + 4] = ((x1 >>> 16) & 0x1f) | ((x1 >>> 8) & 0x1f0000) | (((p15 >>> 3) & 0x10001) << 5)
    | (((x2 & 0x1f) | ((x2 & 0x1f00) << 8)) << 6) | ((((x2 >>> 16) & 0x1f) | ((x2 >>> 8) & 0x1f0000)) << 11);
  o32[at + 8] = (x3 & 0x1f) | ((x3 & 0x1f00) << 8) | (((p15 >>> 2) & 0x10001) << 5)
    | ((((x3 >>> 16) & 0x1f) | ((x3 >>> 8) & 0x1f0000)) << 6) | (((x4 & 0x1f) | ((x4 & 0x1f00) << 8)) << 11);
  o32[at + 12] = ((x4 >>> 16) & 0x1f) | ((x4 >>> 8) & 0x1f0000) | (((p15 >>> 1) & 0x10001) << 5)
    | (((x5 & 0x1f) | ((x5 & 0x1f00) << 8)) << 6) | ((((x5 >>> 16) & 0x1f) | ((x5 >>> 8) & 0x1f0000)) << 11);
  o32[at + 16] = (x6 & 0x1f) | ((x6 & 0x1f00) << 8) | ((p15 & 0x10001) << 5)
    | ((((x6 >>> 16) & 0x1f) | ((x6 >>> 8) & 0x1f0000)) << 6) | (((x7 & 0x1f) | ((x7 & 0x1f00) << 8)) << 11);
}

/** One row's 6-bit scales and mins (scalesMinsK4). */
const kSc = new Uint8Array(8);
const kM = new Uint8Array(8);

function packQ5K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = new DataView(tmp.buffer, tmp.byteOffset, tmp.byteLength);
  const o16 = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
  const o32 = new Uint32Array(out.buffer, out.byteOffset, out.byteLength >>> 2);
  const nsb = rowBytes / 176;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q5K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 176;
      o16[(o >> 1) + r] = dv.getUint16(s, true);
      o16[(o >> 1) + 4 + r] = dv.getUint16(s + 2, true);
      scalesMinsK4(tmp, s + 4, kSc, kM, 0);
      for (let j = 0; j < 8; j++) {
        out[o + 16 + 8 * j + r] = kSc[j]!;
        out[o + 16 + 8 * j + 4 + r] = kM[j]!;
      }
      const h0 = dv.getUint32(s + 16, true);
      const h1 = dv.getUint32(s + 20, true);
      const h2 = dv.getUint32(s + 24, true);
      const h3 = dv.getUint32(s + 28, true);
      const h4 = dv.getUint32(s + 32, true);
      const h5 = dv.getUint32(s + 36, true);
      const h6 = dv.getUint32(s + 40, true);
      const h7 = dv.getUint32(s + 44, true);
      // code l of sub-block j: nibble (j & 1) of qs[32·(j >> 1) + l], bit j of qh[l] as bit 4; 4 at a
      // time in the bytes of a word (one qs word serves both sub-blocks 2c, 2c + 1 of its run)
      for (let c = 0; c < 4; c++) {
        const q = s + 48 + 32 * c;
        const w0 = dv.getUint32(q, true);
        const w1 = dv.getUint32(q + 4, true);
        const w2 = dv.getUint32(q + 8, true);
        const w3 = dv.getUint32(q + 12, true);
        const w4 = dv.getUint32(q + 16, true);
        const w5 = dv.getUint32(q + 20, true);
        const w6 = dv.getUint32(q + 24, true);
        const w7 = dv.getUint32(q + 28, true);
        const a = 2 * c;
        const at = ((o + 80 + 160 * c) >> 2) + r;
        putFive(o32, at,
          (w0 & 0x0f0f0f0f) | (((h0 >>> a) & 0x01010101) << 4), (w1 & 0x0f0f0f0f) | (((h1 >>> a) & 0x01010101) << 4),
          (w2 & 0x0f0f0f0f) | (((h2 >>> a) & 0x01010101) << 4), (w3 & 0x0f0f0f0f) | (((h3 >>> a) & 0x01010101) << 4),
          (w4 & 0x0f0f0f0f) | (((h4 >>> a) & 0x01010101) << 4), (w5 & 0x0f0f0f0f) | (((h5 >>> a) & 0x01010101) << 4),
          (w6 & 0x0f0f0f0f) | (((h6 >>> a) & 0x01010101) << 4), (w7 & 0x0f0f0f0f) | (((h7 >>> a) & 0x01010101) << 4));
        const e = a + 1;
        putFive(o32, at + 20,
          ((w0 >>> 4) & 0x0f0f0f0f) | (((h0 >>> e) & 0x01010101) << 4), ((w1 >>> 4) & 0x0f0f0f0f) | (((h1 >>> e) & 0x01010101) << 4),
          ((w2 >>> 4) & 0x0f0f0f0f) | (((h2 >>> e) & 0x01010101) << 4), ((w3 >>> 4) & 0x0f0f0f0f) | (((h3 >>> e) & 0x01010101) << 4),
          ((w4 >>> 4) & 0x0f0f0f0f) | (((h4 >>> e) & 0x01010101) << 4), ((w5 >>> 4) & 0x0f0f0f0f) | (((h5 >>> e) & 0x01010101) << 4),
          ((w6 >>> 4) & 0x0f0f0f0f) | (((h6 >>> e) & 0x01010101) << 4), ((w7 >>> 4) & 0x0f0f0f0f) | (((h7 >>> e) & 0x01010101) << 4));
      }
    }
  }
}

/**
 * Row value = d·sc·q − dmin·m per 32-input sub-block (q 0..31). Per row (one i32 lane) and
 * sub-block Σ q·xq ≤ 32·31·32767 = 3.25e7, times sc ≤ 63: 2.05e9 < 2^31, so each sub-block's
 * sc·Σ q·xq is converted to f32 (exact to 2^-24 relative) and summed there; Σ_j m_j·bsum_j ≤
 * 8·63·32·32767 = 5.3e8 stays in i32. Per sub-block: 5 words, each one 16-byte load giving 3 pair
 * vectors (and / shift+and / shift) and its spare bit for the 16th (and, shift, or). For one
 * token the middle field is taken as (word & 31 << 6) = 64·q into a sum of its own, shifted back
 * once per sub-block (|Σ| ≤ 5·2·1984·32767 = 6.5e8): 4 ops fewer per 128 weights, 1.06×.
 */
export function mmQ5K(opts: KOpts = Q5K_OPTS): Func {
  let m31!: Local;
  let m32!: Local;
  let m31x64!: Local;
  return frame('q5_k', Q5K_QUAD_BYTES, 32, 256, opts.maxTokens, (f) => {
    [m31, m32, m31x64] = f.vlocals(3) as [Local, Local, Local];
    return [set(m31, i16x8.const(31)), set(m32, i16x8.const(32)), ...(opts.masked ? [set(m31x64, i16x8.const(31 << 6))] : [])];
  }, ({ f, wp }, toks) => {
    const [qp, qe, smp] = f.locals32(3);
    const [sp, wv, sm, d] = f.vlocals(4);
    const words = f.vlocals(5); // one local per word: a basic block may hold pairs of two words
    const sums = f.vlocals(toks.length);
    const totf = f.vlocals(toks.length);
    const msum = f.vlocals(toks.length);
    // word w: pairs 3w..3w+2 from bits 0-4, 6-10, 11-15; its bit 5 is gathered into sp (pair 15's code at bits 5..9)
    const items: PairItem[] = words.flatMap((a, w) => {
      const src = [[a, v128.load(get(qp), 16 * w)]] as const;
      const vecs = [v128.and(get(a), get(m31)), v128.and(i16x8.shrU(get(a), 6), get(m31)), i16x8.shrU(get(a), 11)];
      return vecs.map((vec, fi) => ({
        srcs: src, vec, off: 4 * (3 * w + fi),
        ...(fi === 1 ? { masked: { vec: v128.and(get(a), get(m31x64)), shift: 6 } } : {}),
        ...(fi === 0 ? { post: [set(sp, w ? v128.or(i16x8.shl(get(sp), 1), v128.and(get(a), get(m32))) : v128.and(get(a), get(m32)))] } : {}),
      }));
    });
    items.push({ srcs: [], vec: i16x8.shrU(get(sp), 5), off: 60 });
    return [
      ...toks.flatMap((_, i) => [set(totf[i]!, zero()), set(msum[i]!, zero())]),
      set(qp, i32.add(get(wp), i32.const(80))),
      set(qe, i32.add(get(wp), i32.const(Q5K_QUAD_BYTES))),
      set(smp, i32.add(get(wp), i32.const(16))),
      forPtr(qp, qe, 80,
        ...pairBlocks(f, qe, items, perBlock(opts, toks.length), toks, sums, wv, toks.length <= opts.masked, opts.stepX),
        set(sm, v128.load8x8U(get(smp))),
        ...toks.flatMap((k, i) => [
          set(totf[i]!, f32x4.add(get(totf[i]!), f32x4.convertI32x4S(i32x4.mul(get(sums[i]!), i32x4.extendLowI16x8U(get(sm)))))),
          set(msum[i]!, i32x4.add(get(msum[i]!), i32x4.mul(i32x4.extendHighI16x8U(get(sm)), v128.load32Splat(get(k.bp))))),
          inc(k.xp, 64),
          inc(k.bp, 4),
        ]),
        inc(smp, 8)),
      set(d, f16x4(f, v128.load16x4U(get(wp)))),
      set(sm, f16x4(f, v128.load16x4U(get(wp), 8))),
      ...toks.map((k, i) => set(k.acc, f32x4.add(get(k.acc), f32x4.mul(xScale(k), f32x4.sub(
        f32x4.mul(get(totf[i]!), get(d)),
        f32x4.mul(f32x4.convertI32x4S(get(msum[i]!)), get(sm))))))),
    ];
  });
}

// ---------------------------------------------------------------------------------------------

/**
 * The variants in use, each chosen by A/B runs (1 thread, T = 1 and 16, CPU time): pairs per
 * basic block mattered only where a block's broadcasts spilled (8 pairs for 2 tokens: 0.73×
 * against 4; Q5_K's 5 words for one token: 0.9× against 1); groups of 4 tokens against pairs:
 * 1.09× (Q2_K), 1.06× (Q3_K), 1.01× (Q5_K) at T = 16; activation pointers moved block by block
 * (stepX): Q5_K 1.05× at T = 1, Q3_K 1.01×, Q2_K 1.00×; one token in blocks of 4 pairs rather
 * than 8 (Q2_K, Q3_K): equal when the core was to ourselves, 1.05–1.06× when it was shared.
 */
export const Q2K_OPTS: KOpts = { p1: 4, p2: 4, p4: 2, maxTokens: 4, masked: 0, stepX: true };
export const Q3K_OPTS: KOpts = { p1: 4, p2: 4, p4: 2, maxTokens: 4, masked: 0, stepX: true };
export const Q5K_OPTS: KOpts = { p1: 3, p2: 3, p4: 2, maxTokens: 4, masked: 1, stepX: true };

// ---------------------------------------------------------------------------------------------
// prefill kernels (decoded.ts). The packed layouts are rows in lanes already: decoding takes each
// pair vector out as the kernels above do and folds in the row's sub-block scale (Q3_K
// (sc − 32)·(q3 − 4) ≤ 128, Q5_K sc·q ≤ 1953 as int16), so a sub-block's i32 sum is theirs times
// that scale, exactly; the min terms (m·bsum) and every f32 step are theirs. Q2_K has none: its
// own kernel decodes with 1.5 ops per pair vector, and the prefill kernel's per-16 min term made it
// no faster (T = 64, 2048 → 10240: 1.06× on one thread, 0.88× on two).

/** acc += xs · (conv(tot) · d − conv(msum) · dmin) (Q4_K; Q5_K with tot already f32): mmQ2K's block end; d, dmin as f32 block extras. */
export const minBlockEnd = (_f: Func, k: DTok, bx: Local, totIsFloat = false): Op => f32x4.mul(v128.load32Splat(get(k.xs)), f32x4.sub(
  f32x4.mul(totIsFloat ? get(k.F[0]!) : f32x4.convertI32x4S(get(k.F[0]!)), v128.load(get(bx))),
  f32x4.mul(f32x4.convertI32x4S(get(k.F[1]!)), v128.load(get(bx), 16))));
/** msum += m · bsum, the group's mins (i32x4) at gx. */
export const minTerm = (k: DTok, gx: Local): Op => set(k.F[1]!, i32x4.add(get(k.F[1]!), i32x4.mul(v128.load(get(gx)), v128.load32Splat(get(k.bsum)))));
const storeDmin = (f: Func, wp: Local, bx: Local): Op[] => [
  v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp)))),
  v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp), 8)), 16),
];

const Q3K_DECODED: DecodedSpec = {
  name: 'mmp_q3_k', QB: Q3K_QUAD_BYTES, G: 32, xBlock: 256, bsumLen: 0, groupExtra: 0, blockExtra: 16, accs: 1,
  decode(f, wp, dp, _gx, bx) {
    const [op, scp, qp, qe] = f.locals32(4) as [Local, Local, Local, Local];
    const [a, bb, sc, m7, m6, k4] = f.vlocals(6) as [Local, Local, Local, Local, Local, Local];
    const fields: Op[] = [
      ...[0, 1, 2, 3, 4].map((k) => v128.and(k ? i16x8.shrU(get(a), 3 * k) : get(a), get(m7))),
      v128.and(get(bb), get(m7)),
      i16x8.shrU(get(bb), 5),
      v128.or(i16x8.shrU(get(a), 15), v128.and(i16x8.shrU(get(bb), 2), get(m6))),
    ];
    return [
      v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp)))),
      set(m7, i16x8.const(7)), set(m6, i16x8.const(6)), set(k4, i16x8.const(4)),
      set(op, get(dp)),
      set(scp, i32.add(get(wp), i32.const(8))),
      set(qp, i32.add(get(wp), i32.const(72))),
      set(qe, i32.add(get(wp), i32.const(Q3K_QUAD_BYTES))),
      forPtr(qp, qe, 24,
        set(sc, laneBytes(get(scp), 0, true)),
        set(a, v128.load(get(qp))),
        set(bb, v128.load8x8U(get(qp), 16)),
        ...fields.map((v, p) => v128.store(get(op), i16x8.mul(i16x8.sub(v, get(k4)), get(sc)), 16 * p)),
        inc(op, 128),
        inc(scp, 4)),
    ];
  },
  groupEnd: (_f, k, sum) => [set(k.F[0]!, i32x4.add(get(k.F[0]!), sum))],
  blockEnd: (_f, k, bx) => f32x4.mul(f32x4.mul(v128.load32Splat(get(k.xs)), v128.load(get(bx))), f32x4.convertI32x4S(get(k.F[0]!))),
};

const Q5K_DECODED: DecodedSpec = {
  name: 'mmp_q5_k', QB: Q5K_QUAD_BYTES, G: 32, xBlock: 256, bsumLen: 32, groupExtra: 16, blockExtra: 32, accs: 2,
  decode(f, wp, dp, gx, bx) {
    const [op, gp, smp, qp, qe] = f.locals32(5) as [Local, Local, Local, Local, Local];
    const [a, sp, sc, m31, m32] = f.vlocals(5) as [Local, Local, Local, Local, Local];
    return [
      ...storeDmin(f, wp, bx),
      set(m31, i16x8.const(31)), set(m32, i16x8.const(32)),
      set(op, get(dp)),
      set(gp, get(gx)),
      set(smp, i32.add(get(wp), i32.const(16))),
      set(qp, i32.add(get(wp), i32.const(80))),
      set(qe, i32.add(get(wp), i32.const(Q5K_QUAD_BYTES))),
      forPtr(qp, qe, 80,
        set(sc, laneBytes(get(smp), 0, false)),
        v128.store(get(gp), i32x4.extendHighI16x8U(v128.load8x8U(get(smp)))),
        ...[0, 1, 2, 3, 4].flatMap((w) => [
          set(a, v128.load(get(qp), 16 * w)),
          v128.store(get(op), i16x8.mul(v128.and(get(a), get(m31)), get(sc)), 16 * (3 * w)),
          v128.store(get(op), i16x8.mul(v128.and(i16x8.shrU(get(a), 6), get(m31)), get(sc)), 16 * (3 * w + 1)),
          v128.store(get(op), i16x8.mul(i16x8.shrU(get(a), 11), get(sc)), 16 * (3 * w + 2)),
          set(sp, w ? v128.or(i16x8.shl(get(sp), 1), v128.and(get(a), get(m32))) : v128.and(get(a), get(m32))),
        ]),
        v128.store(get(op), i16x8.mul(i16x8.shrU(get(sp), 5), get(sc)), 16 * 15),
        inc(op, 256),
        inc(gp, 16),
        inc(smp, 8)),
    ];
  },
  groupEnd: (_f, k, sum, gx) => [set(k.F[0]!, f32x4.add(get(k.F[0]!), f32x4.convertI32x4S(sum))), minTerm(k, gx)],
  blockEnd: (f, k, bx) => minBlockEnd(f, k, bx, true),
};

export const KQUANT_FORMATS: readonly BlockFormat[] = [
  { type: 'q2_k', blockInputs: 256, quadBlockBytes: Q2K_QUAD_BYTES, xBlock: 256, bsumLen: 16, pack: packQ2K, emit: () => mmQ2K() },
  { type: 'q3_k', blockInputs: 256, quadBlockBytes: Q3K_QUAD_BYTES, xBlock: Q3K_X_BLOCK, bsumLen: 16, pack: packQ3K, emit: () => mmQ3K(), ...(Q3K_X_BLOCK === 256 ? { prefill: Q3K_DECODED } : {}) },
  { type: 'q5_k', blockInputs: 256, quadBlockBytes: Q5K_QUAD_BYTES, xBlock: 256, bsumLen: 32, pack: packQ5K, emit: () => mmQ5K(), prefill: Q5K_DECODED },
];
