/**
 * The pieces every matmul kernel is built from (kernels-wasm.ts and the block formats in formats/):
 * vector helpers, the token-tile × quad loops, column panels and per-block pointer setup. Kept apart
 * from the kernels so that a format can live in a file of its own.
 */
import {
  Func, ValType, type Local, type Op, seq, get, set, forLoop, block, loop, br, brIf, if_, ifV128,
  i32, f32, v128, i8x16, i16x8, i32x4, f32x4,
} from "./asm.js";

export const I32 = ValType.i32;
export const V = ValType.v128;
export const F32 = ValType.f32;

// ---------------------------------------------------------------------------------------------
// small building blocks

export const zero = v128.zero;
export const lanes32 = (...l: number[]): number[] => l.flatMap((k) => [4 * k, 4 * k + 1, 4 * k + 2, 4 * k + 3]);
export const shuf32 = (a: Op, b: Op, l: number[]): Op => i8x16.shuffle(a, b, lanes32(...l));
export const f32arg = (l: Local): Op => f32.reinterpretI32(get(l));
export const inc = (l: Local, n: number | Op): Op => set(l, i32.add(get(l), typeof n === 'number' ? i32.const(n) : n));
export const mulC = (a: Op, n: number): Op => i32.mul(a, i32.const(n));

/**
 * The high nibbles of 16 bytes: a 16-bit shift plus the mask (V8 lowers i8x16.shr_u to five x64
 * instructions, this to two). `mask` holds 0x0f in every byte, hoisted out of the loops in a local
 * (a v128.const inside a loop is re-materialised on every iteration).
 */
export const highNibbles = (v: Op, mask: Local): Op => v128.and(i16x8.shrU(v, 4), get(mask));

/** [Σa, Σb, Σc, Σd] of four vectors (f32 or i32 lanes, by `add`). */
export function hsum4(f: Func, add: (a: Op, b: Op) => Op, a: Local, b: Local, c: Local, d: Local): Op {
  const ab = f.local(V);
  const cd = f.local(V);
  return seq(
    set(ab, add(shuf32(get(a), get(b), [0, 4, 1, 5]), shuf32(get(a), get(b), [2, 6, 3, 7]))),
    set(cd, add(shuf32(get(c), get(d), [0, 4, 1, 5]), shuf32(get(c), get(d), [2, 6, 3, 7]))),
    add(shuf32(get(ab), get(cd), [0, 1, 4, 5]), shuf32(get(ab), get(cd), [2, 3, 6, 7])),
  );
}

/** Horizontal reduction of one f32x4 to a scalar. */
export function hred(f: Func, v: Op, op: (a: Op, b: Op) => Op, scalarOp: (a: Op, b: Op) => Op): Op {
  const t = f.local(V);
  return seq(
    set(t, v),
    set(t, op(get(t), shuf32(get(t), get(t), [2, 3, 0, 1]))),
    scalarOp(f32x4.extractLane(get(t), 0), f32x4.extractLane(get(t), 1)),
  );
}

/**
 * Four f16 bit patterns (the low 16 bits of i32 lanes; the rest is ignored) → f32x4, exact for
 * normal and subnormal values, and without a subnormal f32 anywhere: normals by moving the bits
 * and adding the exponent bias as integers, subnormals (|h| < 0x400, value m·2^-24) as the
 * integer m converted and scaled, the two merged with a lane mask. The shorter form (bits shifted into place, then × 2^112) fed the
 * multiply a subnormal f32 for every subnormal f16, and x64 takes a microcode assist per such
 * lane: K-quant scales of small weights (d below 6.1e-5) are often subnormal in real files, and
 * with them every kernel ran 1.4–2.6× slower (Q8_0 2.6×, Q4_K 1.4×, measured). f16x4At takes the
 * shorter form where no lane is subnormal.
 */
export function f16x4(f: Func, u: Op): Op {
  const t = f.local(V);
  const m = f.local(V);
  return seq(
    set(t, u),
    set(m, v128.and(get(t), i32x4.const(0x7fff))),
    v128.or(
      v128.bitselect(
        f32x4.mul(f32x4.convertI32x4S(get(m)), f32x4.const(2 ** -24)),
        i32x4.add(i32x4.shl(get(m), 13), i32x4.const(0x38000000)),
        i32x4.ltS(get(m), i32x4.const(0x400)),
      ),
      i32x4.shl(v128.and(get(t), i32x4.const(0x8000)), 16),
    ),
  );
}

/**
 * The four f16 at addr + offset → f32x4, the same values f16x4 gives. Unless one of the four is
 * zero or subnormal, each is loaded sign-extended and shifted so its exponent and mantissa sit in
 * f32 place (the and clears the copies of the sign the shift left above it), and × 2^112 moves the
 * exponent bias: 3 operations after the check, against f16x4's 10. A subnormal f16 would feed that
 * multiply a subnormal f32, the microcode assist f16x4 avoids, so such lanes (and zeros, which
 * share the test) take f16x4. Worth it where a scale comes every 32 inputs (paired runs, one
 * thread: Q8_0 +5 %, Q4_1 and Q5_1 +13 %, Q5_0 and IQ4_NL +9 %, Q4_0 +2 %); with one per 256
 * (K- and i-quants) it gained nothing, so those keep f16x4.
 */
export function f16x4At(f: Func, addr: Op, offset = 0): Op {
  const t = f.local(V);
  return seq(
    set(t, v128.load16x4S(addr, offset)),
    ifV128(v128.anyTrue(i32x4.ltS(v128.and(get(t), i32x4.const(0x7fff)), i32x4.const(0x400))),
      f16x4(f, get(t)),
      f32x4.mul(v128.and(i32x4.shl(get(t), 13), i32x4.const(0x8fffffff | 0)), f32x4.const(2 ** 112))),
  );
}

// ---------------------------------------------------------------------------------------------
// matrix products: every kernel loops token tiles × quads q of 4 output rows (start..end) × the
// tile's tokens, and stores a quad's 4 results with one v128.store at out[t·outP + 4q].

export interface QuadLoop {
  q: Local;
  t: Local;
  /** Address of out[t·outP + 4q]. */
  outAddr: Op;
}

/** The column panels of a packed weight (layout.ts): `pb` blocks of `quadBlockBytes` per quad each, the last may be shorter. */
export interface PanelSpec {
  /** Weight base and blocks per full row (kernel parameters). */
  readonly w: Local;
  readonly nb: Local;
  /** Blocks per panel (kernel parameter). */
  readonly pb: Local;
  /** Packed bytes of one block of one quad. */
  readonly quadBlockBytes: number;
  /** Quads in the part (out row stride / 4), to step from one panel to the next. */
  readonly outP: Local;
}

/** Per panel: its weight base, its block count, its first block, and whether it is the first panel. */
export interface Panel {
  readonly pw: Local;
  readonly pnb: Local;
  readonly b0: Local;
  readonly first: Local;
}

/**
 * for each column panel: body(panel). A quad's accumulators start from zero in the first panel and
 * from its stored partial sums in the others (`initAcc`), so blocks are summed in the same order
 * as with whole rows.
 */
export function panelLoop(f: Func, spec: PanelSpec, body: (p: Panel) => Op): Op {
  const pn: Panel = { pw: f.local(I32), pnb: f.local(I32), b0: f.local(I32), first: f.local(I32) };
  return seq(
    set(pn.pw, get(spec.w)),
    set(pn.b0, i32.const(0)),
    block(loop(
      brIf(1, i32.geU(get(pn.b0), get(spec.nb))),
      set(pn.first, i32.eqz(get(pn.b0))),
      set(pn.pnb, i32.sub(get(spec.nb), get(pn.b0))),
      if_(i32.gtU(get(pn.pnb), get(spec.pb)), [set(pn.pnb, get(spec.pb))]),
      body(pn),
      inc(pn.pw, i32.mul(mulC(get(spec.pb), spec.quadBlockBytes), i32.shrU(get(spec.outP), i32.const(2)))),
      inc(pn.b0, get(spec.pb)),
      br(0))),
  );
}

/** acc = 0 in a quad's first panel, else the partial sums stored at `addr`. */
export const initAcc = (pn: Panel | undefined, acc: Local, addr: Op): Op =>
  pn ? if_(get(pn.first), [set(acc, zero())], [set(acc, v128.load(addr))]) : set(acc, zero());

/** Bytes per block of a block-quantised kernel: of one unit's packed weights, of a token's int16 activations, of its block sums (0: none). */
export interface BlockBytes {
  readonly weights: number;
  readonly x: number;
  readonly bsum: number;
}

/**
 * The per-(unit, token) pointers of the block-quantised kernels in panel pn: unit q's weights (to
 * `we`), and token t's activations, their per-block scales (f32) and block sums from the panel's
 * first block. nb: blocks per full row.
 */
export function blockPointers(
  dst: { w: Local; we: Local; x: Local; xs: Local; bsum?: Local },
  src: { x: Local; xs: Local; bsum?: Local; nb: Local },
  q: Local, t: Local, pn: Panel, bytes: BlockBytes,
): Op[] {
  const block0 = i32.add(i32.mul(get(t), get(src.nb)), get(pn.b0)); // token t's first block in this panel
  return [
    set(dst.w, i32.add(get(pn.pw), i32.mul(get(q), mulC(get(pn.pnb), bytes.weights)))),
    set(dst.we, i32.add(get(dst.w), mulC(get(pn.pnb), bytes.weights))),
    set(dst.x, i32.add(get(src.x), mulC(block0, bytes.x))),
    set(dst.xs, i32.add(get(src.xs), mulC(block0, 4))),
    ...(dst.bsum && src.bsum ? [set(dst.bsum, i32.add(get(src.bsum), mulC(block0, bytes.bsum)))] : []),
  ];
}

/**
 * for t0 in 0..T step tile: for q in start..end: for t in t0..min(t0 + tile, T): body. Tokens are
 * tiled so that a tile's activations stay in L2 while every quad of the thread's range streams past
 * them (with quads outermost, prefill re-read all T tokens' activations from L3 for every quad).
 * With `panel`, all of it runs once per column panel.
 */
export function quadLoop(f: Func, T: Local, tile: Local, outP: Local, out: Local, start: Local, end: Local, body: (l: QuadLoop, pn?: Panel) => Op[], panel?: PanelSpec): Op {
  const q = f.local(I32);
  const t = f.local(I32);
  const outAddr = i32.add(get(out), mulC(i32.add(i32.mul(get(t), get(outP)), mulC(get(q), 4)), 4));
  return tokenGroupLoop(f, T, tile, start, end, q, t, [1], (_, pn) => body({ q, t, outAddr }, pn), panel);
}

/**
 * quadLoop for kernels whose body takes n tokens at once (each decoded weight vector then serves
 * all n): within each token tile, each quad's tokens go through `body(n)` for the largest n of
 * `sizes` (descending, ending with 1) that still fits. The largest size loops; each smaller one
 * runs at most once after it. With `panel`, all of it runs once per column panel (and `pn` is set).
 */
export function tokenGroupLoop<N extends number>(f: Func, T: Local, tile: Local, start: Local, end: Local, q: Local, t: Local, sizes: readonly N[], body: (n: N, pn?: Panel) => Op[], panel?: PanelSpec): Op {
  const t0 = f.local(I32);
  const t1 = f.local(I32);
  const tiles = (pn?: Panel) => tokenTiles(T, tile, t0, t1,
    forLoop(q, get(start), get(end), 1, set(t, get(t0)), tokenGroups(t, t1, sizes, (n) => body(n, pn))));
  return panel ? panelLoop(f, panel, tiles) : tiles();
}

/** `inner` once per token tile [t0, t1) of at most `tile` tokens of 0..T-1. */
export function tokenTiles(T: Local, tile: Local, t0: Local, t1: Local, inner: Op): Op {
  return seq(
    set(t0, i32.const(0)),
    block(loop(
      brIf(1, i32.geU(get(t0), get(T))),
      set(t1, i32.add(get(t0), get(tile))),
      if_(i32.gtU(get(t1), get(T)), [set(t1, get(T))]),
      inner,
      set(t0, get(t1)),
      br(0))),
  );
}

/**
 * Tokens t..t1-1 through `body(n)` (which reads t) for the largest n of `sizes` (descending,
 * ending with 1) that still fits, advancing t by n: the largest size loops, each smaller one runs
 * at most once after it.
 */
export function tokenGroups<N extends number>(t: Local, t1: Local, sizes: readonly N[], body: (n: N) => Op[]): Op {
  return seq(sizes.map((n) => (n < sizes[0]!
    ? if_(i32.geU(get(t1), i32.add(get(t), i32.const(n))), [...body(n), inc(t, n)])
    : block(loop(
      brIf(1, i32.gtU(i32.add(get(t), i32.const(n)), get(t1))),
      ...body(n),
      inc(t, n),
      br(0))))));
}

/** tokenGroupLoop in pairs: tokens t, t+1 through `body(true)` together, a last odd token through `body(false)`. */
export function pairedQuadLoop(f: Func, T: Local, tile: Local, start: Local, end: Local, q: Local, t: Local, body: (pair: boolean, pn?: Panel) => Op[], panel?: PanelSpec): Op {
  return tokenGroupLoop(f, T, tile, start, end, q, t, [2, 1], (n, pn) => body(n === 2, pn), panel);
}


/**
 * Σ over 32 values of nibble · x, for 16 bytes of nibble lanes (layout.ts: nibble k of 16-bit lane
 * i is value 8k + i) against 4 vectors of 8 int16 activations in natural order. An and, a shift
 * and an and, or a shift, give each group of 8 values as 16-bit lanes: no byte unpacking (4
 * extends per 32 values in the byte layout, ≈ 30 % of the 4-bit kernels). `mask` holds 0x000f
 * in every 16-bit lane.
 */
export function dotNibbleLanes(raw: Local, mask: Local, x: readonly Local[]): Op {
  const nib = (k: number): Op => (k === 3 ? i16x8.shrU(get(raw), 12) : k ? v128.and(i16x8.shrU(get(raw), 4 * k), get(mask)) : v128.and(get(raw), get(mask)));
  return i32x4.add(
    i32x4.add(i32x4.dotI16x8S(nib(0), get(x[0]!)), i32x4.dotI16x8S(nib(1), get(x[1]!))),
    i32x4.add(i32x4.dotI16x8S(nib(2), get(x[2]!)), i32x4.dotI16x8S(nib(3), get(x[3]!))));
}
