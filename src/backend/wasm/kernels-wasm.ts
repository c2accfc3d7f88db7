/**
 * The SIMD128 kernels, emitted as one wasm module (asm.ts) that every thread instantiates once per
 * memory shard. Packed weight layouts are described in layout.ts; README.md explains the choices.
 *
 * Conventions: every pointer and number argument is i32 (floats travel as their bit patterns, so
 * the worker pool can pass arguments through an Int32Array); a kernel that the pool splits across
 * threads takes `start, end, tid` last and handles units start..end-1 (quads of 4 output rows,
 * blocks, attention (token, head) pairs, ...).
 *
 * Activations for the integer kernels are int16 with one f32 scale per block (quant_x): relative
 * error ≈ 1/65534 of the block's largest value, far below the int8 weights' own rounding.
 */
import {
  Func, ValType, type Local, type Op, seq, get, set, forLoop, forPtr, block, loop, br, brIf, if_, select,
  i32, f32, v128, i8x16, i16x8, i32x4, f32x4, encodeModule,
} from './asm.js';
import { Q4K_QUAD_BYTES } from './layout.js';
import {
  I32, V, F32, zero, shuf32, f32arg, inc, mulC, highNibbles, hsum4, hred, f16x4, f16x4At, initAcc, blockPointers, quadLoop, pairedQuadLoop,
  dotNibbleLanes, type Panel, type BlockBytes,
} from './kernel-parts.js';
import { kernelName, prefillKernelName, type BlockFormat } from './block-format.js';
import { emitDecodedKernel, transposeStore, type DecodedSpec } from './decoded.js';
import { minBlockEnd, minTerm } from './formats/kquants.js';
import { BLOCK_FORMATS } from './formats/index.js';


/** The block formats with a prefill kernel (decoded.ts). */
const PREFILL_FORMATS = BLOCK_FORMATS.filter((b) => b.prefill);

const BASE_KERNELS = [
  'quant_x', 'bsum_x', 'mm_i8g', 'mm_f32', 'mm_bf16', 'mm_f16', 'mm_q8_0', 'mm_q4_0', 'mm_q4_k',
  'rmsnorm', 'rope', 'gelu_mul', 'attention', 'read_sum', 'quant_x8', 'mm_q4_0r',
] as const;
/** The names of the exported kernels, in the order the pool addresses them: the base ones, then one per block format. */
export const KERNEL_NAMES: readonly string[] = [...BASE_KERNELS, ...BLOCK_FORMATS.map(kernelName), ...PREFILL_FORMATS.map(prefillKernelName), 'mmp_q4_k'];
/** Kernels that use relaxed SIMD: present in the module only when the runtime validates relaxed SIMD. */
export const RELAXED_KERNELS: readonly KernelName[] = ['mm_q4_0r'];
export type KernelName = (typeof BASE_KERNELS)[number] | `mm_${string}` | `mmp_${string}`;

export interface ModuleOptions {
  /** Emit mm_q4_0r, the Q4_0 kernel on `i16x8.relaxed_dot_i8x16_i7x16_s` (only where the runtime validates it). */
  readonly relaxed: boolean;
  readonly maxPages: number;
}

/** e^x for f32x4 (Cephes expf: range reduction by ln 2, degree-6 polynomial; ≈ 1 ulp on [-87, 88]). */
function exp4(f: Func, x: Op): Op {
  const xv = f.local(V);
  const n = f.local(V);
  const z = f.local(V);
  const m = f32x4.mul;
  const a = f32x4.add;
  const c = f32x4.const;
  return seq(
    set(xv, f32x4.min(f32x4.max(x, c(-87.3)), c(88.3))),
    set(n, f32x4.nearest(m(get(xv), c(Math.LOG2E)))),
    set(xv, a(f32x4.sub(get(xv), m(get(n), c(0.693359375))), m(get(n), c(2.12194440e-4)))),
    set(z, m(get(xv), get(xv))),
    m(
      a(a(m(a(m(a(m(a(m(a(m(a(m(c(1.9875691500e-4), get(xv)), c(1.3981999507e-3)), get(xv)), c(8.3334519073e-3)), get(xv)),
        c(4.1665795894e-2)), get(xv)), c(1.6666665459e-1)), get(xv)), c(5.0000001201e-1)), get(z)), get(xv)), c(1)),
      i32x4.shl(i32x4.add(i32x4.truncSatF32x4S(get(n)), i32x4.const(127)), 23),
    ),
  );
}

// ---------------------------------------------------------------------------------------------
// activations

/**
 * quant_x(src f32, dst i16, scales f32, B, Lp, start, end, tid): rows of Lp floats (a multiple of
 * 16), each cut into blocks of B (a multiple of 16; the last block of a row may be shorter), one
 * unit per block; → int16 with scale max|x|/32767 per block. Values are clamped to ±32767 so the
 * integer kernels' overflow bounds hold.
 */
function quantX(): Func {
  const f = new Func('quant_x', new Array<ValType>(8).fill(I32));
  const [src, dst, scales, B, Lp, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local];
  const [blk, p, e, q, nbr, row, off] = f.locals32(7);
  const m = f.local(V);
  const inv = f.local(V);
  const mx = f.local(F32);
  const scaled = (o: number) => i32x4.truncSatF32x4S(f32x4.nearest(f32x4.mul(v128.load(get(p), o), get(inv))));
  f.body = seq(
    set(nbr, i32.divU(i32.add(get(Lp), i32.sub(get(B), i32.const(1))), get(B))), // blocks per row
    forLoop(blk, get(start), get(end), 1,
      set(row, i32.divU(get(blk), get(nbr))),
      set(off, i32.add(i32.mul(get(row), get(Lp)), i32.mul(i32.sub(get(blk), i32.mul(get(row), get(nbr))), get(B)))), // element offset
      set(p, i32.add(get(src), mulC(get(off), 4))),
      set(q, i32.add(get(dst), mulC(get(off), 2))),
      set(e, i32.add(get(src), mulC(i32.add(get(off), get(B)), 4))),
      if_(i32.gtU(get(e), i32.add(get(src), mulC(i32.mul(i32.add(get(row), i32.const(1)), get(Lp)), 4))),
        [set(e, i32.add(get(src), mulC(i32.mul(i32.add(get(row), i32.const(1)), get(Lp)), 4)))]),
      set(m, zero()),
      forPtr(p, e, 16, set(m, f32x4.max(get(m), f32x4.abs(v128.load(get(p)))))),
      set(mx, hred(f, get(m), f32x4.max, f32.max)),
      f32.store(i32.add(get(scales), mulC(get(blk), 4)), f32.mul(get(mx), f32.const(1 / 32767))),
      set(inv, f32x4.splat(select(f32.div(f32.const(32767), get(mx)), f32.const(0), f32.gt(get(mx), f32.const(1e-30))))),
      set(p, i32.add(get(src), mulC(get(off), 4))),
      forPtr(p, e, 32,
        v128.store(get(q), i16x8.maxS(i16x8.narrowI32x4S(scaled(0), scaled(16)), i16x8.const(-32767))),
        inc(q, 16))),
  );
  return f;
}

/** bsum_x(src i16, dst i32, len, start, end, tid): dst[g] = Σ of the g-th run of `len` (16 or 32) int16 values. */
function bsumX(): Func {
  const f = new Func('bsum_x', [I32, I32, I32, I32, I32, I32]);
  const [src, dst, len, start, end] = f.params as [Local, Local, Local, Local, Local];
  const [g, p, e] = f.locals32(3);
  const s = f.local(V);
  f.body = forLoop(g, get(start), get(end), 1,
    set(p, i32.add(get(src), i32.mul(i32.mul(get(g), get(len)), i32.const(2)))),
    set(e, i32.add(get(p), i32.mul(get(len), i32.const(2)))),
    set(s, zero()),
    forPtr(p, e, 16, set(s, i32x4.add(get(s), i32x4.extaddPairwiseI16x8S(v128.load(get(p)))))),
    set(s, i32x4.add(get(s), shuf32(get(s), get(s), [2, 3, 0, 1]))),
    i32.store(i32.add(get(dst), i32.mul(get(g), i32.const(4))), i32.add(i32x4.extractLane(get(s), 0), i32x4.extractLane(get(s), 1))),
  );
  return f;
}

/**
 * mm_i8g(w, sc, x, xs, out, T, G, Lp, B, outP, tile, pc, start, end, tid): the official int8 layout.
 * Per group g, per column panel of pc 16-wide chunks (the last of a group may be shorter), every
 * quad's chunks: 4 rows × 16 int8 (64 bytes) each; sc f32 [quad][G][4].
 * x: int16 [T][G·Lp], xs: f32 [T][G·⌈Lp/B⌉] (a group's last block may be short). Tokens go in pairs where they can: each sign-extended
 * weight vector then serves two tokens (prefill, batched decode); a last odd token runs alone.
 */
function mmI8g(): Func {
  const f = new Func('mm_i8g', new Array<ValType>(15).fill(I32));
  const [w, sc, x, xs, out, T, G, Lp, B, outP, tile, pc, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, xp, xp2, xsp, sp, g, ge, be, q, t, rowB, blkB, wstep, chunks, c0, npc, pw, first] = f.locals32(18);
  const iA = f.vlocals(4);
  const iB = f.vlocals(4);
  const fA = f.vlocals(4);
  const fB = f.vlocals(4);
  const [accA, accB, xl, xh, yl, lo, hi, sx] = f.vlocals(8);
  const outAddr = (tt: Op) => i32.add(get(out), mulC(i32.add(i32.mul(tt, get(outP)), mulC(get(q), 4)), 4));
  /** One token: a 16-input chunk per step, its two halves' dot products summed before accumulating. */
  const singleSteps = forPtr(wp, be, 64,
    set(xl, v128.load(get(xp))),
    set(xh, v128.load(get(xp), 16)),
    inc(xp, 32),
    ...iA.flatMap((l, r) => [
      // load8x8_s is one pmovsxbw from memory: cheaper than a load plus two extends
      set(lo, v128.load8x8S(get(wp), 16 * r)),
      set(hi, v128.load8x8S(get(wp), 16 * r + 8)),
      set(l, i32x4.add(get(l), i32x4.add(i32x4.dotI16x8S(get(lo), get(xl)), i32x4.dotI16x8S(get(hi), get(xh))))),
    ]));
  /**
   * Tokens t, t+1: one step per 8 inputs (half a chunk: the weight pointer steps 8 then 56 bytes;
   * blocks hold whole chunks, so every block starts at wstep = 8), with 8 accumulators, 2
   * activation vectors and 1 weight vector. TurboFan issues a loop body's loads first: with a
   * whole chunk per step its 8 weight vectors waited in registers next to the accumulators and
   * spilled (≈ 15 % slower at T ≥ 4). One token is better off with whole chunks.
   */
  const pairSteps = block(loop(
    brIf(1, i32.geU(get(wp), get(be))),
    set(xl, v128.load(get(xp))),
    set(yl, v128.load(get(xp2))),
    ...iA.flatMap((l, r) => [
      set(lo, v128.load8x8S(get(wp), 16 * r)),
      set(l, i32x4.add(get(l), i32x4.dotI16x8S(get(lo), get(xl)))),
      set(iB[r]!, i32x4.add(get(iB[r]!), i32x4.dotI16x8S(get(lo), get(yl)))),
    ]),
    inc(xp, 16),
    inc(xp2, 16),
    inc(wp, get(wstep)),
    set(wstep, i32.sub(i32.const(64), get(wstep))),
    br(0)));
  /** One token (pair = false) or tokens t, t+1 (pair = true) against quad q, in panel (g, c0). */
  const body = (pair: boolean): Op[] => [
    set(wstep, i32.const(8)),
    set(wp, i32.add(get(pw), i32.mul(get(q), mulC(get(npc), 64)))),
    set(ge, i32.add(get(wp), mulC(get(npc), 64))),
    set(xp, i32.add(i32.add(get(x), i32.mul(get(t), get(rowB))), mulC(i32.add(i32.mul(get(g), get(Lp)), mulC(get(c0), 16)), 2))),
    set(xp2, i32.add(get(xp), get(rowB))),
    // a panel starts at a multiple of 256 inputs within its group, so at a block boundary
    set(xsp, i32.add(i32.add(get(xs), i32.mul(get(t), get(blkB))),
      mulC(i32.add(i32.mul(get(g), i32.divU(i32.add(get(Lp), i32.sub(get(B), i32.const(1))), get(B))), i32.divU(mulC(get(c0), 16), get(B))), 4))),
    set(sp, i32.add(get(sc), i32.add(i32.mul(get(q), mulC(get(G), 16)), mulC(get(g), 16)))),
    if_(get(first), [set(accA, zero())], [set(accA, v128.load(outAddr(get(t))))]),
    ...(pair ? [if_(get(first), [set(accB, zero())], [set(accB, v128.load(outAddr(i32.add(get(t), i32.const(1)))))])] : []),
    ...fA.map((l) => set(l, zero())),
    ...(pair ? fB.map((l) => set(l, zero())) : []),
    block(loop(
      brIf(1, i32.geU(get(wp), get(ge))),
      ...iA.map((l) => set(l, zero())),
      ...(pair ? iB.map((l) => set(l, zero())) : []),
      set(be, i32.add(get(wp), mulC(get(B), 4))),
      if_(i32.gtU(get(be), get(ge)), [set(be, get(ge))]), // a group's last block may be short
      pair ? pairSteps : singleSteps,
      set(sx, f32x4.splat(f32.load(get(xsp)))),
      ...fA.map((l, r) => set(l, f32x4.add(get(l), f32x4.mul(f32x4.convertI32x4S(get(iA[r]!)), get(sx))))),
      ...(pair ? [
        set(sx, f32x4.splat(f32.load(i32.add(get(xsp), get(blkB))))),
        ...fB.map((l, r) => set(l, f32x4.add(get(l), f32x4.mul(f32x4.convertI32x4S(get(iB[r]!)), get(sx))))),
      ] : []),
      inc(xsp, 4),
      br(0))),
    v128.store(outAddr(get(t)), f32x4.add(get(accA), f32x4.mul(hsum4(f, f32x4.add, fA[0]!, fA[1]!, fA[2]!, fA[3]!), v128.load(get(sp))))),
    ...(pair ? [v128.store(outAddr(i32.add(get(t), i32.const(1))), f32x4.add(get(accB), f32x4.mul(hsum4(f, f32x4.add, fB[0]!, fB[1]!, fB[2]!, fB[3]!), v128.load(get(sp)))))] : []),
  ];
  // panels: groups outermost, then runs of pc chunks within the group; panel (g, c0) of every
  // quad sits at w + nq·64·(g·chunks + c0) (layout.ts)
  f.body = seq(
    set(rowB, mulC(i32.mul(get(G), get(Lp)), 2)),
    set(blkB, mulC(i32.mul(get(G), i32.divU(i32.add(get(Lp), i32.sub(get(B), i32.const(1))), get(B))), 4)),
    set(chunks, i32.shrU(get(Lp), i32.const(4))),
    forLoop(g, i32.const(0), get(G), 1,
      set(c0, i32.const(0)),
      block(loop(
        brIf(1, i32.geU(get(c0), get(chunks))),
        set(npc, i32.sub(get(chunks), get(c0))),
        if_(i32.gtU(get(npc), get(pc)), [set(npc, get(pc))]),
        set(pw, i32.add(get(w), i32.mul(mulC(i32.shrU(get(outP), i32.const(2)), 64), i32.add(i32.mul(get(g), get(chunks)), get(c0))))),
        set(first, i32.eqz(i32.or(get(g), get(c0)))),
        pairedQuadLoop(f, T, tile, start, end, q, t, body),
        inc(c0, get(pc)),
        br(0)))),
  );
  return f;
}

/**
 * mm_dense(dtype)(w, x, out, T, Lp, outP, tile, pb, start, end, tid): out-major dense rows, quad = 4 rows × 16 bytes per chunk
 * (the panel block), pb chunks per panel; x f32 [T][Lp].
 * Tokens go in pairs as in mm_i8g: each weight vector (converted once for bf16/f16) serves two
 * tokens, with 8 f32x4 accumulators, two activation vectors and one weight vector live.
 */
function mmDense(dtype: 'f32' | 'bf16' | 'f16'): Func {
  const f = new Func(`mm_${dtype}`, new Array<ValType>(11).fill(I32));
  const [w, x, out, T, Lp, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, xp, xp2, xe, q, t, nb] = f.locals32(7);
  const a = f.vlocals(4);
  const b = f.vlocals(4);
  const [xa, xb, wr] = f.vlocals(3);
  const elemBytes = dtype === 'f32' ? 4 : 2;
  const outAddr = (tt: Op) => i32.add(get(out), mulC(i32.add(i32.mul(tt, get(outP)), mulC(get(q), 4)), 4));
  // the h-th 4 values of 16 bytes of one row as f32x4 (f32: the vector itself; 16-bit types: h = 0 or 1)
  const widen = (raw: Op, h: number): Op => {
    if (dtype === 'f32') return raw;
    const u = h ? i32x4.extendHighI16x8U(raw) : i32x4.extendLowI16x8U(raw);
    return dtype === 'bf16' ? i32x4.shl(u, 16) : f16x4(f, u);
  };
  const step = (pair: boolean, h: number): Op[] => [
    set(xa, v128.load(get(xp), 16 * h)),
    ...(pair ? [set(xb, v128.load(get(xp2), 16 * h))] : []),
    ...a.flatMap((l, r) => [
      set(wr, widen(v128.load(get(wp), 16 * r), h)),
      set(l, f32x4.add(get(l), f32x4.mul(get(wr), get(xa)))),
      ...(pair ? [set(b[r]!, f32x4.add(get(b[r]!), f32x4.mul(get(wr), get(xb))))] : []),
    ]),
  ];
  const xStep = dtype === 'f32' ? 16 : 32; // activation bytes per chunk
  // a panel's sums are added to the previous panels' (stored in out)
  const store = (pn: Panel, addr: Op, sums: Op): Op => {
    const v = f.local(V);
    return seq(set(v, sums), if_(get(pn.first), [v128.store(addr, get(v))], [v128.store(addr, f32x4.add(v128.load(addr), get(v)))]));
  };
  const body = (pair: boolean, pn?: Panel): Op[] => [
    set(wp, i32.add(get(pn!.pw), i32.mul(get(q), mulC(get(pn!.pnb), 64)))),
    set(xp, i32.add(i32.add(get(x), i32.mul(get(t), mulC(get(Lp), 4))), mulC(get(pn!.b0), xStep))),
    set(xe, i32.add(get(xp), mulC(get(pn!.pnb), xStep))),
    set(xp2, i32.add(get(xp), mulC(get(Lp), 4))),
    ...a.map((l) => set(l, zero())),
    ...(pair ? b.map((l) => set(l, zero())) : []),
    forPtr(xp, xe, xStep,
      ...step(pair, 0),
      ...(dtype === 'f32' ? [] : step(pair, 1)),
      ...(pair ? [inc(xp2, xStep)] : []),
      inc(wp, 64)),
    store(pn!, outAddr(get(t)), hsum4(f, f32x4.add, a[0]!, a[1]!, a[2]!, a[3]!)),
    ...(pair ? [store(pn!, outAddr(i32.add(get(t), i32.const(1))), hsum4(f, f32x4.add, b[0]!, b[1]!, b[2]!, b[3]!))] : []),
  ];
  f.body = seq(
    set(nb, i32.shrU(mulC(get(Lp), elemBytes), i32.const(4))), // 16-byte chunks per row
    pairedQuadLoop(f, T, tile, start, end, q, t, body, { w, nb, pb, quadBlockBytes: 64, outP }),
  );
  return f;
}

/**
 * mm_q8_0(w, x, xs, out, T, nb, outP, tile, pb, start, end, tid): units of 8 rows (two quads).
 * Packed octet-block (272 bytes): 8 × f16 d, then per input pair p (16 of them) the 8 rows' 2
 * int8 values (layout.ts). `dot_i16x8_s` of 8 such bytes (sign-extended) with the pair's two
 * activations splatted (one `load32_splat`) gives 4 rows' sums in the 4 lanes: no horizontal sum
 * per block, and a block's tail is a convert, two multiplies and an add per token and quad. (With
 * whole-row layouts, per-block horizontal sums and scales cost a third of a prefill: Q8_0 scales
 * every 32 inputs.) Each splatted pair serves 8 rows; tokens go in pairs where they can, so each
 * sign-extended weight vector serves two.
 *
 * Inner steps are short (2 input pairs for one token, 1 for two): TurboFan issues a loop body's
 * loads first, so longer bodies keep loaded vectors waiting in registers and spill.
 */
function mmQ8_0(): Func {
  const f = new Func('mm_q8_0', new Array<ValType>(12).fill(I32));
  const [w, x, xs, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [u, t, wp, we, hw, he, xb, xsb] = f.locals32(8);
  const xp = f.locals32(2);
  const acc = [f.vlocals(2), f.vlocals(2)]; // [token][quad]
  const part = [f.vlocals(2), f.vlocals(2)];
  const [wA, wB, sx, dA, dB, xsv] = f.vlocals(6);
  const outAddr = (tt: Op, h: number) => i32.add(get(out), mulC(i32.add(i32.mul(tt, get(outP)), i32.add(mulC(get(u), 8), i32.const(4 * h))), 4));

  /** Tokens t..t+n-1 (n = 1 or 2) against unit u. */
  const octet = (pn: Panel, n: number): Op[] => {
    const ks = Array.from({ length: n }, (_, k) => k);
    const tk = (k: number) => i32.add(get(t), i32.const(k));
    const pairs = n === 1 ? 2 : 1;
    return [
      ...blockPointers({ w: wp, we, x: xb, xs: xsb }, { x, xs, nb }, u, t, pn, { weights: 272, x: 64, bsum: 0 }),
      ...ks.flatMap((k) => [initAcc(pn, acc[k]![0]!, outAddr(tk(k), 0)), initAcc(pn, acc[k]![1]!, outAddr(tk(k), 1))]),
      forPtr(wp, we, 272,
        ...ks.flatMap((k) => [set(part[k]![0]!, zero()), set(part[k]![1]!, zero())]),
        ...ks.map((k) => set(xp[k]!, k ? i32.add(get(xb), mulC(get(nb), 64 * k)) : get(xb))),
        set(hw, i32.add(get(wp), i32.const(16))),
        set(he, i32.add(get(hw), i32.const(256))),
        forPtr(hw, he, 16 * pairs,
          ...Array.from({ length: pairs }, (_, p) => [
            set(wA, v128.load8x8S(get(hw), 16 * p)),
            set(wB, v128.load8x8S(get(hw), 16 * p + 8)),
            ...ks.flatMap((k) => [
              set(sx, v128.load32Splat(get(xp[k]!), 4 * p)),
              set(part[k]![0]!, i32x4.add(get(part[k]![0]!), i32x4.dotI16x8S(get(wA), get(sx)))),
              set(part[k]![1]!, i32x4.add(get(part[k]![1]!), i32x4.dotI16x8S(get(wB), get(sx)))),
            ]),
          ]).flat(),
          ...ks.map((k) => inc(xp[k]!, 4 * pairs))),
        set(dA, f16x4At(f, get(wp))),
        set(dB, f16x4At(f, get(wp), 8)),
        ...ks.flatMap((k) => [
          set(xsv, v128.load32Splat(k ? i32.add(get(xsb), mulC(get(nb), 4 * k)) : get(xsb))),
          set(acc[k]![0]!, f32x4.add(get(acc[k]![0]!), f32x4.mul(f32x4.convertI32x4S(get(part[k]![0]!)), f32x4.mul(get(dA), get(xsv))))),
          set(acc[k]![1]!, f32x4.add(get(acc[k]![1]!), f32x4.mul(f32x4.convertI32x4S(get(part[k]![1]!)), f32x4.mul(get(dB), get(xsv))))),
        ]),
        inc(xb, 64),
        inc(xsb, 4)),
      ...ks.flatMap((k) => [v128.store(outAddr(tk(k), 0), get(acc[k]![0]!)), v128.store(outAddr(tk(k), 1), get(acc[k]![1]!))]),
    ];
  };

  // units u take the place of quads in the token-pair loop
  f.body = pairedQuadLoop(f, T, tile, start, end, u, t, (pair, pn) => octet(pn!, pair ? 2 : 1), { w, nb, pb, quadBlockBytes: 136, outP });
  return f;
}


/** Q4_0 (both kernels): a 72-byte quad-block, 32 int16 activations and one block sum per block. */
const Q4_0_BYTES: BlockBytes = { weights: 72, x: 64, bsum: 4 };

/**
 * mm_q4_0(w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, tid). Packed quad-block (72 bytes):
 * 4 × f16 d, then 4 rows × 16 bytes of nibbles (ggml order: low nibbles are values 0..15, high
 * 16..31). Σ (q-8)·x = Σ q·x − 8·Σx, with Σx per 32 from bsum_x.
 */
function mmQ4_0(): Func {
  const f = new Func('mm_q4_0', new Array<ValType>(13).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, xp, xsp, bp, we] = f.locals32(5);
  const ir = f.vlocals(4);
  const xv = f.vlocals(4);
  const [acc, raw, mask] = f.vlocals(3);
  f.body = seq(set(mask, i16x8.const(0x000f)), quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: xsp, bsum: bp }, { x, xs, bsum, nb }, q, t, pn!, Q4_0_BYTES),
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, 72,
      ...xv.map((l, i) => set(l, v128.load(get(xp), 16 * i))),
      ...ir.flatMap((l, r) => [
        set(raw, v128.load(get(wp), 8 + 16 * r)),
        set(l, dotNibbleLanes(raw, mask, xv)),
      ]),
      set(acc, f32x4.add(get(acc), f32x4.mul(
        f32x4.convertI32x4S(i32x4.sub(hsum4(f, i32x4.add, ir[0]!, ir[1]!, ir[2]!, ir[3]!), i32x4.splat(i32.shl(i32.load(get(bp)), i32.const(3))))),
        f32x4.mul(f16x4At(f, get(wp)), f32x4.splat(f32.load(get(xsp))))))),
      inc(xp, 64),
      inc(xsp, 4),
      inc(bp, 4)),
    v128.store(outAddr, get(acc)),
  ], { w, nb, pb, quadBlockBytes: 72, outP }));
  return f;
}

/**
 * mm_q4_k(w, x, xs, bsum, out, T, nsb, outP, tile, pb, start, end, tid). Packed quad-superblock (592 bytes,
 * layout.ts): d[4] f16, dmin[4] f16, sc[r][8] u8, m[j][4] u8, then 4 rows × 8 sub-blocks × 16 bytes of nibble lanes.
 * x int16 with one scale per 256, bsum per 32. Row value = d·sc·q − dmin·m, so
 * Σ w·x = xs·(d·Σ_j sc_j·Σ q·xq − dmin·Σ_j m_j·bsum_j); both inner sums fit i32 (see README).
 */
function mmQ4K(): Func {
  const f = new Func('mm_q4_k', new Array<ValType>(13).fill(I32));
  const [w, x, xs, bsum, out, T, nsb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, xp, xsp, bp, we, qp, qe, scp] = f.locals32(8);
  const cr = f.vlocals(4);
  const X = f.vlocals(4);
  const [acc, raw, msum, mask] = f.vlocals(4);
  const QB = Q4K_QUAD_BYTES;
  // One loop step per 32-value sub-block: its 4 activation vectors, then per row one 16-byte load
  // whose 16-bit lanes hold 4 nibbles each (layout.ts, packNibbleLanes): and / shift+and / shift
  // give the sub-block's values as 4 vectors of 8 lanes in natural order, so no byte unpacking
  // (the earlier byte layout's 4 extends per 32 values were ≈ 30 % of the kernel). Only 4
  // activation vectors are live (8 made V8 spill), and the steps are a loop (TurboFan issues a
  // loop body's loads first, and an unrolled super-block spilled).
  const step: Op[] = [
    ...X.map((l, k) => set(l, v128.load(get(xp), 16 * k))),
    ...cr.map((l, r) => [
      set(raw, v128.load(get(qp), 128 * r)),
      set(l, i32x4.add(get(l), i32x4.mul(dotNibbleLanes(raw, mask, X), i32x4.splat(i32.load8U(get(scp), 8 * r))))),
    ]).flat(),
  ];
  const body: Op[] = [
    set(qp, i32.add(get(wp), i32.const(80))),
    set(scp, i32.add(get(wp), i32.const(16))),
    set(qe, i32.add(get(wp), i32.const(80 + 128))),
    forPtr(qp, qe, 16, ...step, inc(xp, 64), inc(scp, 1)),
  ];
  for (let j = 0; j < 8; j++) {
    body.push(set(msum, i32x4.add(get(msum), i32x4.mul(
      i32x4.extendLowI16x8U(v128.load8x8U(get(wp), 48 + 4 * j)), i32x4.splat(i32.load(get(bp), 4 * j))))));
  }
  f.body = seq(set(mask, i16x8.const(0x000f)), quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: xsp, bsum: bp }, { x, xs, bsum, nb: nsb }, q, t, pn!, { weights: QB, x: 512, bsum: 32 }),
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, QB,
      ...cr.map((l) => set(l, zero())),
      set(msum, zero()),
      ...body,
      set(acc, f32x4.add(get(acc), f32x4.mul(f32x4.splat(f32.load(get(xsp))), f32x4.sub(
        f32x4.mul(f32x4.convertI32x4S(hsum4(f, i32x4.add, cr[0]!, cr[1]!, cr[2]!, cr[3]!)), f16x4(f, v128.load16x4U(get(wp)))),
        f32x4.mul(f32x4.convertI32x4S(get(msum)), f16x4(f, v128.load16x4U(get(wp), 8))))))),
      inc(xsp, 4),
      inc(bp, 32)),
    v128.store(outAddr, get(acc)),
  ], { w, nb: nsb, pb, quadBlockBytes: QB, outP }));
  return f;
}

/**
 * Q4_K's prefill kernel (decoded.ts): per sub-block and row the 4 nibble groups (dotNibbleLanes'
 * vectors) times the row's scale (≤ 15 · 63 = 945), transposed into pair vectors. The i32 sums
 * add up to mmQ4K's hsum of Σ_j sc_j·Σ q·xq exactly; the mins term and the f32 step are its own.
 */
export const Q4K_DECODED: DecodedSpec = {
  name: 'mmp_q4_k', QB: Q4K_QUAD_BYTES, G: 32, xBlock: 256, bsumLen: 32, groupExtra: 16, blockExtra: 32, accs: 2,
  decode(f, wp, dp, gx, bx) {
    const [op, gp, qp, qe, scp, mp] = f.locals32(6) as [Local, Local, Local, Local, Local, Local];
    const raw = f.vlocals(4);
    const sc = f.vlocals(4);
    const g = f.vlocals(4);
    const mask = f.local(V);
    const nib = (v: Local, k: number): Op => (k === 3 ? i16x8.shrU(get(v), 12) : v128.and(k ? i16x8.shrU(get(v), 4 * k) : get(v), get(mask)));
    return [
      v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp)))),
      v128.store(get(bx), f16x4(f, v128.load16x4U(get(wp), 8)), 16),
      set(mask, i16x8.const(0x000f)),
      set(op, get(dp)),
      set(gp, get(gx)),
      set(scp, i32.add(get(wp), i32.const(16))),
      set(mp, i32.add(get(wp), i32.const(48))),
      set(qp, i32.add(get(wp), i32.const(80))),
      set(qe, i32.add(get(wp), i32.const(80 + 128))),
      forPtr(qp, qe, 16,
        v128.store(get(gp), i32x4.extendLowI16x8U(v128.load8x8U(get(mp)))),
        ...[0, 1, 2, 3].flatMap((r) => [set(raw[r]!, v128.load(get(qp), 128 * r)), set(sc[r]!, i16x8.splat(i32.load8U(get(scp), 8 * r)))]),
        ...[0, 1, 2, 3].flatMap((k) => [
          ...[0, 1, 2, 3].map((r) => set(g[r]!, i16x8.mul(nib(raw[r]!, k), get(sc[r]!)))),
          ...transposeStore(f, g, op, 64 * k),
        ]),
        inc(op, 256),
        inc(gp, 16),
        inc(scp, 1),
        inc(mp, 4)),
    ];
  },
  groupEnd: (_f, k, sum, gx) => [set(k.F[0]!, i32x4.add(get(k.F[0]!), sum)), minTerm(k, gx)],
  blockEnd: (f, k, bx) => minBlockEnd(f, k, bx),
};

// ---------------------------------------------------------------------------------------------
// the other hot ops; rows are staged padded (D, n, half, d multiples of 4 or 16) by the caller

/** rmsnorm(x, out, scale, Dp, D, eps, start, end, tid) over rows start..end-1 of stride Dp; the mean divides by the true D. */
function rmsnorm(): Func {
  const f = new Func('rmsnorm', new Array<ValType>(9).fill(I32));
  const [x, out, scale, Dp, D, eps, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local];
  const [t, p, e, o, s] = f.locals32(5);
  const ss = f.local(V);
  const inv = f.local(V);
  f.body = forLoop(t, get(start), get(end), 1,
    set(p, i32.add(get(x), i32.mul(get(t), mulC(get(Dp), 4)))),
    set(e, i32.add(get(p), mulC(get(Dp), 4))),
    set(ss, zero()),
    forPtr(p, e, 16, set(ss, f32x4.add(get(ss), f32x4.mul(v128.load(get(p)), v128.load(get(p)))))),
    set(inv, f32x4.splat(f32.div(f32.const(1), f32.sqrt(f32.add(
      f32.div(hred(f, get(ss), f32x4.add, f32.add), f32.convertI32S(get(D))), f32arg(eps)))))),
    set(p, i32.sub(get(p), mulC(get(Dp), 4))),
    set(o, i32.add(get(out), i32.mul(get(t), mulC(get(Dp), 4)))),
    set(s, get(scale)),
    forPtr(p, e, 16,
      v128.store(get(o), f32x4.mul(f32x4.mul(v128.load(get(p)), get(inv)), v128.load(get(s)))),
      inc(o, 16),
      inc(s, 16)),
  );
  return f;
}

/** rope(x, cs, heads, halfP, start, end, tid): rows t in start..end-1 of x [T][heads][2·halfP]; cs [T][cos halfP, sin halfP]. */
function rope(): Func {
  const f = new Func('rope', new Array<ValType>(7).fill(I32));
  const [x, cs, heads, halfP, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local];
  const [t, h, p, c, e, hb] = f.locals32(6);
  const [a, b, cv, sv] = f.vlocals(4);
  f.body = forLoop(t, get(start), get(end), 1,
    forLoop(h, i32.const(0), get(heads), 1,
      set(hb, mulC(get(halfP), 4)),
      set(p, i32.add(get(x), i32.mul(i32.add(i32.mul(get(t), get(heads)), get(h)), mulC(get(hb), 2)))),
      set(e, i32.add(get(p), get(hb))),
      set(c, i32.add(get(cs), i32.mul(get(t), mulC(get(hb), 2)))),
      forPtr(p, e, 16,
        set(a, v128.load(get(p))),
        set(b, v128.load(i32.add(get(p), get(hb)))),
        set(cv, v128.load(get(c))),
        set(sv, v128.load(i32.add(get(c), get(hb)))),
        v128.store(get(p), f32x4.sub(f32x4.mul(get(a), get(cv)), f32x4.mul(get(b), get(sv)))),
        v128.store(i32.add(get(p), get(hb)), f32x4.add(f32x4.mul(get(b), get(cv)), f32x4.mul(get(a), get(sv)))),
        inc(c, 16))));
  return f;
}

/** gelu_mul(g, u, start, end, tid) over vectors start..end-1: g = g·sigmoid(2·√(2/π)(g + 0.044715g³))·u (= gelu_tanh·u, no cancellation). */
function geluMul(): Func {
  const f = new Func('gelu_mul', new Array<ValType>(5).fill(I32));
  const [gp, up, start, end] = f.params as Local[] as [Local, Local, Local, Local];
  const [i, p] = f.locals32(2);
  const g = f.local(V);
  const c = f32x4.const;
  const k = 2 * Math.sqrt(2 / Math.PI);
  f.body = forLoop(i, get(start), get(end), 1,
    set(p, mulC(get(i), 16)),
    set(g, v128.load(i32.add(get(gp), get(p)))),
    v128.store(i32.add(get(gp), get(p)), f32x4.mul(
      f32x4.div(get(g), f32x4.add(c(1), exp4(f, f32x4.mul(c(-k), f32x4.add(get(g), f32x4.mul(c(0.044715), f32x4.mul(get(g), f32x4.mul(get(g), get(g))))))))),
      v128.load(i32.add(get(up), get(p))))));
  return f;
}

/**
 * attention(q, k, v, valid, out, scores, T, pos0, H, Hkv, dP, scale, softcap, S, start, end, tid):
 * units u = t·H + h. q/out [T][H][dP], k/v [S][Hkv][dP] (dP a multiple of 16), valid [S] bytes,
 * scores: per thread roundUp(S,4) floats at scores + tid·4·roundUp(S,4)... Scale, cap, mask,
 * softmax, as the js oracle; a query with no visible key averages all S values (the reference).
 */
function attention(): Func {
  const f = new Func('attention', new Array<ValType>(17).fill(I32));
  const [qb, kb, vb, valid, out, scores, , pos0, H, Hkv, dP, scale, softcap, S, start, end, tid] = f.params as Local[] as Local[];
  const [u, t, h, kvh, nk, j, qp, kp, sp, rowB, se, c, op, nkeys, sc] = f.locals32(15);
  const [a0, a1, a2, a3, s, m, vmax, cnt, pj, vsum] = f.vlocals(10);
  const sum = f.local(F32);
  const mx = f.local(F32);
  const negInf = f32x4.const(-Infinity);
  const capped = (x: Op): Op => {
    // cap·tanh(x/cap) = cap·(1 − 2/(e^{2x/cap} + 1))
    return f32x4.mul(f32x4.splat(f32arg(softcap)), f32x4.sub(f32x4.const(1), f32x4.div(f32x4.const(2),
      f32x4.add(exp4(f, f32x4.mul(x, f32x4.splat(f32.div(f32.const(2), f32arg(softcap))))), f32x4.const(1)))));
  };
  const accChunk = [a0, a1, a2, a3];
  f.body = seq(
    set(rowB, mulC(i32.mul(get(Hkv), get(dP)), 4)),
    set(sc, i32.add(get(scores), i32.mul(get(tid), mulC(i32.and(i32.add(get(S!), i32.const(3)), i32.const(-4)), 4)))),
    forLoop(u, get(start), get(end), 1,
      set(t, i32.divU(get(u), get(H))),
      set(h, i32.sub(get(u), i32.mul(get(t), get(H)))),
      set(kvh, i32.divU(get(h), i32.divU(get(H), get(Hkv)))),
      set(nk, i32.add(i32.add(get(pos0), get(t)), i32.const(1))),
      set(qp, i32.add(get(qb), mulC(i32.mul(get(u), get(dP)), 4))),
      // pass 1: raw dots
      forLoop(j, i32.const(0), get(nk), 1,
        set(kp, i32.add(i32.add(get(kb), i32.mul(get(j), get(rowB))), mulC(i32.mul(get(kvh), get(dP)), 4))),
        set(sp, get(qp)),
        set(se, i32.add(get(qp), mulC(get(dP), 4))),
        ...accChunk.map((l) => set(l, zero())),
        forPtr(sp, se, 64,
          ...accChunk.map((l, i) => set(l, f32x4.add(get(l), f32x4.mul(v128.load(get(sp), 16 * i), v128.load(get(kp), 16 * i))))),
          inc(kp, 64)),
        set(a0, f32x4.add(f32x4.add(get(a0), get(a1)), f32x4.add(get(a2), get(a3)))),
        f32.store(i32.add(get(sc), mulC(get(j), 4)), hred(f, get(a0), f32x4.add, f32.add))),
      // pass 2: scale, cap, mask (4 keys at a time), max and count
      set(vmax, negInf),
      set(cnt, zero()),
      forLoop(j, i32.const(0), get(nk), 4,
        set(sp, i32.add(get(sc), mulC(get(j), 4))),
        set(s, f32x4.mul(v128.load(get(sp)), f32x4.splat(f32arg(scale)))),
        if_(f32.gt(f32arg(softcap), f32.const(0)), [set(s, capped(get(s)))]),
        // lane l visible iff valid[j+l] != 0 and j+l < nk
        set(m, v128.and(
          v128.not(i32x4.eq(i32x4.extendLowI16x8U(i16x8.extendLowI8x16U(v128.load32Zero(i32.add(get(valid), get(j))))), zero())),
          i32x4.ltS(i32x4.add(i32x4.splat(get(j)), i32x4.consts([0, 1, 2, 3])), i32x4.splat(get(nk))))),
        set(s, v128.bitselect(get(s), negInf, get(m))),
        v128.store(get(sp), get(s)),
        set(vmax, f32x4.max(get(vmax), get(s))),
        set(cnt, i32x4.sub(get(cnt), get(m)))),
      set(cnt, i32x4.add(get(cnt), shuf32(get(cnt), get(cnt), [2, 3, 0, 1]))),
      set(nkeys, get(nk)),
      if_(i32.eqz(i32.add(i32x4.extractLane(get(cnt), 0), i32x4.extractLane(get(cnt), 1))), [
        // no visible key: uniform weights over all S slots (the js oracle / reference behaviour)
        set(nkeys, get(S!)),
        forLoop(j, i32.const(0), get(S!), 1, f32.store(i32.add(get(sc), mulC(get(j), 4)), f32.const(1))),
        set(sum, f32.convertI32S(get(S!))),
      ], [
        set(mx, hred(f, get(vmax), f32x4.max, f32.max)),
        set(vsum, zero()),
        forLoop(j, i32.const(0), get(nk), 4,
          set(sp, i32.add(get(sc), mulC(get(j), 4))),
          set(s, v128.load(get(sp))),
          set(pj, v128.and(exp4(f, f32x4.sub(get(s), f32x4.splat(get(mx)))), f32x4.gt(get(s), negInf))),
          v128.store(get(sp), get(pj)),
          set(vsum, f32x4.add(get(vsum), get(pj)))),
        set(sum, hred(f, get(vsum), f32x4.add, f32.add)),
      ]),
      // pass 3: out = Σ p_j v_j / sum, 16 lanes of d at a time
      set(op, i32.add(get(out), mulC(i32.mul(get(u), get(dP)), 4))),
      forLoop(c, i32.const(0), get(dP), 16,
        ...accChunk.map((l) => set(l, zero())),
        set(kp, i32.add(i32.add(get(vb), mulC(i32.mul(get(kvh), get(dP)), 4)), mulC(get(c), 4))),
        forLoop(j, i32.const(0), get(nkeys), 1,
          set(pj, f32x4.splat(f32.load(i32.add(get(sc), mulC(get(j), 4))))),
          ...accChunk.map((l, i) => set(l, f32x4.add(get(l), f32x4.mul(get(pj), v128.load(get(kp), 16 * i))))),
          inc(kp, get(rowB))),
        set(pj, f32x4.splat(f32.div(f32.const(1), get(sum)))),
        ...accChunk.map((l, i) => v128.store(i32.add(get(op), mulC(get(c), 4)), f32x4.mul(get(l), get(pj)), 16 * i))),
    ),
  );
  return f;
}

/**
 * read_sum(base, unitBytes, sink, start, end, tid): XORs every v128 of units start..end-1 (unitBytes
 * each, a multiple of 64) into sink[tid]: the memory read bandwidth probe of the benchmarks.
 */
function readSum(): Func {
  const f = new Func('read_sum', new Array<ValType>(6).fill(I32));
  const [base, unitBytes, sink, start, end, tid] = f.params as Local[] as [Local, Local, Local, Local, Local, Local];
  const [p, e] = f.locals32(2);
  const a = f.vlocals(4);
  f.body = seq(
    ...a.map((l) => set(l, zero())),
    set(p, i32.add(get(base), i32.mul(get(start), get(unitBytes)))),
    set(e, i32.add(get(base), i32.mul(get(end), get(unitBytes)))),
    forPtr(p, e, 64, ...a.map((l, i) => set(l, v128.xor(get(l), v128.load(get(p), 16 * i))))),
    v128.store(i32.add(get(sink), mulC(get(tid), 16)), v128.xor(v128.xor(get(a[0]!), get(a[1]!)), v128.xor(get(a[2]!), get(a[3]!)))),
  );
  return f;
}

/**
 * quant_x8(src f32, dst, scales f32, bsum i32, start, end, tid): blocks of 32 floats → 15-bit
 * integers q = round(x·16383/max|x|), stored as two signed-int8 planes per block, hi = q >> 7 in
 * [-128, 127] then lo = q & 127 in [0, 127] (q = 128·hi + lo), 64 bytes per block; bsum = Σq.
 * For the relaxed i8 dot product, whose 7-bit operand is then the weights' nibbles (see mm_q4_0r).
 */
function quantX8(): Func {
  const f = new Func('quant_x8', new Array<ValType>(7).fill(I32));
  const [src, dst, scales, bsum, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local];
  const [blk, p, q] = f.locals32(3);
  const [m, inv, v0, v1, s] = f.vlocals(5);
  const mx = f.local(F32);
  const q15 = (off: number) => i32x4.truncSatF32x4S(f32x4.nearest(f32x4.mul(v128.load(get(p), off), get(inv))));
  const lo7 = (v: Local) => v128.and(get(v), i16x8.const(127));
  f.body = forLoop(blk, get(start), get(end), 1,
    set(p, i32.add(get(src), mulC(get(blk), 128))),
    set(q, i32.add(get(dst), mulC(get(blk), 64))),
    set(m, zero()),
    ...[0, 1, 2, 3, 4, 5, 6, 7].map((i) => set(m, f32x4.max(get(m), f32x4.abs(v128.load(get(p), 16 * i))))),
    set(mx, hred(f, get(m), f32x4.max, f32.max)),
    f32.store(i32.add(get(scales), mulC(get(blk), 4)), f32.mul(get(mx), f32.const(1 / 16383))),
    set(inv, f32x4.splat(select(f32.div(f32.const(16383), get(mx)), f32.const(0), f32.gt(get(mx), f32.const(1e-30))))),
    set(s, zero()),
    ...[0, 1].flatMap((h) => [
      // 16 values: two i16x8 vectors v0, v1, clamped to ±16383
      set(v0, i16x8.maxS(i16x8.narrowI32x4S(q15(64 * h), q15(64 * h + 16)), i16x8.const(-16383))),
      set(v1, i16x8.maxS(i16x8.narrowI32x4S(q15(64 * h + 32), q15(64 * h + 48)), i16x8.const(-16383))),
      set(s, i32x4.add(get(s), i32x4.add(i32x4.extaddPairwiseI16x8S(get(v0)), i32x4.extaddPairwiseI16x8S(get(v1))))),
      v128.store(get(q), i8x16.narrowI16x8S(i16x8.shrS(get(v0), 7), i16x8.shrS(get(v1), 7)), 16 * h),
      v128.store(get(q), i8x16.narrowI16x8S(lo7(v0), lo7(v1)), 32 + 16 * h),
    ]),
    set(s, i32x4.add(get(s), shuf32(get(s), get(s), [2, 3, 0, 1]))),
    i32.store(i32.add(get(bsum), mulC(get(blk), 4)), i32.add(i32x4.extractLane(get(s), 0), i32x4.extractLane(get(s), 1))),
  );
  return f;
}

/**
 * mm_q4_0r: mm_q4_0 with the relaxed i8 dot product `i16x8.relaxed_dot_i8x16_i7x16_s`. Its second
 * operand is the 7-bit one, and x86 lowers the instruction to pmaddubsw, which reads that operand
 * as UNSIGNED bytes: a negative value there would be misread as v + 256. So the weights' nibbles
 * (0..15, the same under either reading) take that slot and the activations, as signed int8 planes
 * from quant_x8, the first: Σ q·x = 128·Σ q·hi + Σ q·lo. Pair sums stay within ±3840 and two of
 * them within ±7680, so the i16 intermediates never saturate. (The i32x4 `..._add_s` form is not
 * used: V8 11.3, Node 20's, returns twice the dot product and drops the accumulator.)
 * Same packed layout and arguments as mm_q4_0, with x and bsum from quant_x8.
 */
function mmQ4_0r(): Func {
  const f = new Func('mm_q4_0r', new Array<ValType>(13).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [wp, xp, xsp, bp, we] = f.locals32(5);
  const ir = f.vlocals(4);
  const [xh0, xh1, xl0, xl1] = f.vlocals(4);
  const [acc, lo, hi, raw, mask] = f.vlocals(5);
  const rdot = i16x8.relaxedDotI8x16I7x16S;
  const plane = (a: Local, b: Local): Op => i32x4.extaddPairwiseI16x8S(i16x8.add(rdot(get(a), get(lo)), rdot(get(b), get(hi))));
  f.body = seq(set(mask, i8x16.const(0x0f)), quadLoop(f, T, tile, outP, out, start, end, ({ q, t, outAddr }, pn) => [
    ...blockPointers({ w: wp, we, x: xp, xs: xsp, bsum: bp }, { x, xs, bsum, nb }, q, t, pn!, Q4_0_BYTES),
    initAcc(pn, acc, outAddr),
    forPtr(wp, we, 72,
      set(xh0, v128.load(get(xp))),
      set(xh1, v128.load(get(xp), 16)),
      set(xl0, v128.load(get(xp), 32)),
      set(xl1, v128.load(get(xp), 48)),
      ...ir.flatMap((l, r) => [
        set(raw, v128.load(get(wp), 8 + 16 * r)),
        set(lo, v128.and(get(raw), get(mask))),
        set(hi, highNibbles(get(raw), mask)),
        set(l, i32x4.add(i32x4.shl(plane(xh0, xh1), 7), plane(xl0, xl1))),
      ]),
      set(acc, f32x4.add(get(acc), f32x4.mul(
        f32x4.convertI32x4S(i32x4.sub(hsum4(f, i32x4.add, ir[0]!, ir[1]!, ir[2]!, ir[3]!), i32x4.splat(i32.shl(i32.load(get(bp)), i32.const(3))))),
        f32x4.mul(f16x4At(f, get(wp)), f32x4.splat(f32.load(get(xsp))))))),
      inc(xp, 64),
      inc(xsp, 4),
      inc(bp, 4)),
    v128.store(outAddr, get(acc)),
  ], { w, nb, pb, quadBlockBytes: 72, outP }));
  return f;
}

/**
 * Does this runtime have a *working* relaxed i8 dot product? Validation alone is not enough (see
 * mm_q4_0r), so a probe runs `i16x8.relaxed_dot_i8x16_i7x16_s` on signed first operands and 7-bit
 * second operands and checks the exact sums. Node 20 validates relaxed SIMD only with
 * --experimental-wasm-relaxed-simd.
 */
export function relaxedSimdAvailable(): boolean {
  const f = new Func('probe', [I32, I32, I32]);
  const [a, b, o] = f.params as [Local, Local, Local];
  f.body = v128.store(get(o), i16x8.relaxedDotI8x16I7x16S(v128.load(get(a)), v128.load(get(b))));
  try {
    const bytes = encodeModule([f], { minPages: 1, maxPages: 1 }) as Uint8Array<ArrayBuffer>;
    if (!WebAssembly.validate(bytes)) return false;
    const mem = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const probe = new WebAssembly.Instance(new WebAssembly.Module(bytes), { env: { mem } }).exports['probe'] as (a: number, b: number, o: number) => void;
    const i8 = new Int8Array(mem.buffer);
    const av = [-128, 127, -1, 5, -77, 0, 100, -3, 64, -64, 1, -1, 127, -128, 9, -9];
    const bv = [127, 127, 1, 15, 0, 3, 126, 9, 15, 15, 0, 127, 2, 1, 100, 101];
    i8.set(av, 0);
    i8.set(bv, 16);
    probe(0, 16, 32);
    const got = new Int16Array(mem.buffer, 32, 8);
    return av.every((_, i) => i % 2 !== 0 || got[i / 2] === av[i]! * bv[i]! + av[i + 1]! * bv[i + 1]!);
  } catch {
    return false;
  }
}

/** A block format's kernel, checked to carry the name the pool addresses it by. */
function emitChecked(b: BlockFormat): Func {
  const fn = b.emit();
  if (fn.name !== kernelName(b)) throw new Error(`block format ${b.type}: kernel named ${fn.name}, expected ${kernelName(b)}`);
  return fn;
}

export function buildKernelModule(opts: ModuleOptions): Uint8Array {
  const funcs: Record<(typeof BASE_KERNELS)[number], () => Func> = {
    quant_x: quantX,
    bsum_x: bsumX,
    mm_i8g: mmI8g,
    mm_f32: () => mmDense('f32'),
    mm_bf16: () => mmDense('bf16'),
    mm_f16: () => mmDense('f16'),
    mm_q8_0: mmQ8_0,
    mm_q4_0: mmQ4_0,
    mm_q4_k: mmQ4K,
    rmsnorm,
    rope,
    gelu_mul: geluMul,
    attention,
    read_sum: readSum,
    quant_x8: quantX8,
    mm_q4_0r: mmQ4_0r,
  };
  const names = BASE_KERNELS.filter((n) => opts.relaxed || !RELAXED_KERNELS.includes(n));
  const prefill = PREFILL_FORMATS.map((b) => {
    const fn = emitDecodedKernel(b.prefill!);
    if (fn.name !== prefillKernelName(b)) throw new Error(`block format ${b.type}: prefill kernel named ${fn.name}, expected ${prefillKernelName(b)}`);
    return fn;
  });
  return encodeModule([...names.map((n) => funcs[n]()), ...BLOCK_FORMATS.map(emitChecked), ...prefill, emitDecodedKernel(Q4K_DECODED)], { minPages: 1, maxPages: opts.maxPages });
}
