/**
 * Prefill kernels of the block formats: each quad's weights are decoded once per column panel and
 * token tile into int16 (a per-thread scratch in the staging area), then every token of the tile
 * runs plain int16 dot products against them.
 *
 * Why: the formats' own kernels (formats/*.ts) decode a quad-block (grid lookups, sign vectors,
 * scale unpacking, bit fields) for every group of at most 4 tokens, so a 64-token expert call
 * decoded each weight 16 times, and the decoding is most of those kernels' work. Decoded once per
 * tile (96 tokens at 1024-input panels), it costs a few per cent of the dot products.
 *
 * The decoded layout is "rows in lanes" (as the K-quants' packed one): per input pair p of a
 * block, one 16-byte vector whose 16-bit lane 2r + e holds row r's weight of input 2p + e, so
 * `i32x4.dot_i16x8_s` with the pair's two activations broadcast (`v128.load32_splat`) leaves row
 * r's sum in lane r: no horizontal sums. Each decoded weight has the format's integer sub-scale
 * (and integer offsets, e.g. IQ1's delta) folded in, so every group's i32 sum is the very integer
 * the format's own kernel computes (integer sums are exact in any order; each format's file states
 * the bound that keeps them within i32), and each format then applies the same f32 operations, in
 * the same order, as its own kernel: results are bit for bit those of the per-token kernels
 * (test/wasm-prefill.test.ts).
 *
 * Scratch block (DB bytes): 128 pair vectors (2048 bytes) of a 256-input block, then per group of
 * G inputs `groupExtra` bytes (e.g. IQ4_XS's f32 sub-scales), then `blockExtra` bytes (e.g. the 4
 * rows' d as f32). A thread's scratch holds one quad's panel: pb · DB bytes.
 *
 * mmp_TYPE(w, x, xs, bsum, out, T, nb, outP, tile, pb, scr, start, end, tid): the block kernel's
 * arguments (block-format.ts) plus scr, the scratch base (thread tid uses scr + tid·pb·DB).
 */
import { Func, ValType, type Local, type Op, seq, get, set, forPtr, forLoop, if_, i32, v128, i8x16, i16x8, i32x4, f32x4 } from './asm.js';
import { I32, zero, inc, mulC, shuf32, panelLoop, tokenTiles, tokenGroups, type Panel } from './kernel-parts.js';

/** Bytes of the 128 decoded pair vectors of one 256-input block. */
export const PAIR_BYTES = 2048;

/** One token's state in the dot loop. */
export interface DTok {
  /** int16 activations of the current group. */
  readonly x: Local;
  /** f32 activation scale of the current block (xBlock 256) or group (xBlock 32). */
  readonly xs: Local;
  /** i32 activation sums of the current group (bsumLen > 0). */
  readonly bsum: Local;
  /** The format's per-block accumulators (zeroed at each block). */
  readonly F: readonly Local[];
}

export interface DecodedSpec {
  /** The kernel's name (mmp_TYPE). */
  readonly name: string;
  /** Packed bytes of one quad-block (256 inputs). */
  readonly QB: number;
  /** Inputs per group: the i32 sums of a group go through groupEnd. */
  readonly G: 16 | 32 | 256;
  /** Inputs per activation scale (the format's xBlock); with 32, G must be 32. */
  readonly xBlock: 32 | 256;
  /** Inputs per activation block sum read by groupEnd (0: none); the frame advances bsum by a group's share. */
  readonly bsumLen: 0 | 16 | 32;
  readonly groupExtra: number;
  readonly blockExtra: number;
  /** Accumulators per token. */
  readonly accs: number;
  /** Most tokens per pass over the decoded quad (default 4; fewer where the accumulators would spill). */
  readonly maxTokens?: 1 | 2 | 4;
  /** Constants hoisted out of the loops. */
  readonly setup?: (f: Func) => Op[];
  /** Decodes the quad-block at wp: pair vectors to dp (pair p at 16p), group extras at gx, block extras at bx. */
  decode(f: Func, wp: Local, dp: Local, gx: Local, bx: Local): Op[];
  /** Token k's i32 group sum `s` (lanes: the 4 rows) into its accumulators; gx: the group's extras. */
  groupEnd(f: Func, tok: DTok, s: Op, gx: Local): Op[];
  /** The f32x4 a block adds to token k's outputs; bx: the block's extras. */
  blockEnd(f: Func, tok: DTok, bx: Local): Op;
}

export const decodedBlockBytes = (s: DecodedSpec): number => PAIR_BYTES + (256 / s.G) * s.groupExtra + s.blockExtra;

/**
 * 4 rows' values of 4 input pairs (row r: vector rows[r], pair p in its i32 lane p) → the pairs'
 * rows-in-lanes vectors (pair p: row r in i32 lane r), stored at dp + off + 16p. A 4 × 4 transpose
 * of 32-bit lanes.
 */
export function transposeStore(f: Func, rows: readonly Local[], dp: Local, off: number): Op[] {
  const [t0, t1, t2, t3] = f.vlocals(4) as [Local, Local, Local, Local];
  const [r0, r1, r2, r3] = rows as [Local, Local, Local, Local];
  return [
    set(t0, shuf32(get(r0), get(r1), [0, 4, 1, 5])),
    set(t1, shuf32(get(r0), get(r1), [2, 6, 3, 7])),
    set(t2, shuf32(get(r2), get(r3), [0, 4, 1, 5])),
    set(t3, shuf32(get(r2), get(r3), [2, 6, 3, 7])),
    v128.store(get(dp), shuf32(get(t0), get(t2), [0, 1, 4, 5]), off),
    v128.store(get(dp), shuf32(get(t0), get(t2), [2, 3, 6, 7]), off + 16),
    v128.store(get(dp), shuf32(get(t1), get(t3), [0, 1, 4, 5]), off + 32),
    v128.store(get(dp), shuf32(get(t1), get(t3), [2, 3, 6, 7]), off + 48),
  ];
}

/**
 * i16x8 [b0, b0, b1, b1, b2, b2, b3, b3] of the 4 bytes at addr + offset (the 4 rows' byte in a
 * rows-in-lanes vector's lanes), zero- or sign-extended.
 */
export function laneBytes(addr: Op, offset: number, signed: boolean): Op {
  const v = v128.load32Zero(addr, offset);
  return signed
    ? i16x8.extendLowI8x16S(i8x16.shuffle(v, v, [0, 0, 1, 1, 2, 2, 3, 3, 0, 0, 1, 1, 2, 2, 3, 3]))
    : i8x16.shuffle(v, v128.zero(), [0, 16, 0, 16, 1, 16, 1, 16, 2, 16, 2, 16, 3, 16, 3, 16]);
}

/** Token groups of the dot loop, and input pairs per basic block for each (TurboFan issues a block's loads first: more pairs spill). */
const SIZES = [4, 2, 1] as const;
const PAIRS_PER_BLOCK: Record<number, number> = { 4: 2, 2: 4, 1: 4 };

export function emitDecodedKernel(S: DecodedSpec): Func {
  const f = new Func(S.name, new Array<ValType>(14).fill(I32));
  const [w, x, xs, bsum, out, T, nb, outP, tile, pb, scr, start, end, tid] = f.params as Local[] as [Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local, Local];
  const [own, q, t, t0, t1, wp, we, dp, de, gx, bx, gp, ge] = f.locals32(13);
  const sizes = SIZES.filter((n) => n <= (S.maxTokens ?? 4));
  const N = sizes[0]!;
  const toks: DTok[] = Array.from({ length: N }, () => ({ x: f.local(I32), xs: f.local(I32), bsum: f.local(I32), F: f.vlocals(S.accs) }));
  const sums = f.vlocals(N);
  const wv = f.local(ValType.v128);
  const DB = decodedBlockBytes(S);
  const groups = 256 / S.G;
  const xsPerBlock = 256 / S.xBlock; // activation scales per block
  const bsPerBlock = S.bsumLen ? 256 / S.bsumLen : 0;
  const outAddr = (k: number) => i32.add(get(out), mulC(i32.add(i32.mul(i32.add(get(t), i32.const(k)), get(outP)), mulC(get(q), 4)), 4));

  /** Decodes quad q's blocks of panel pn into the thread's scratch. */
  const decodeQuad = (pn: Panel): Op[] => [
    set(wp, i32.add(get(pn.pw), i32.mul(get(q), mulC(get(pn.pnb), S.QB)))),
    set(we, i32.add(get(wp), mulC(get(pn.pnb), S.QB))),
    set(dp, get(own)),
    forPtr(wp, we, S.QB,
      set(gx, i32.add(get(dp), i32.const(PAIR_BYTES))),
      set(bx, i32.add(get(dp), i32.const(PAIR_BYTES + groups * S.groupExtra))),
      ...S.decode(f, wp, dp, gx, bx),
      inc(dp, DB)),
  ];

  /** Tokens t..t+n-1 against the decoded quad. */
  const dots = (n: number, pn: Panel): Op[] => {
    const tk = toks.slice(0, n);
    const per = PAIRS_PER_BLOCK[n]!;
    const pairBlocks: Op[] = [];
    for (let p0 = 0; p0 < S.G / 2; p0 += per) {
      const ops: Op[] = [];
      for (let p = p0; p < Math.min(p0 + per, S.G / 2); p++) {
        ops.push(set(wv, v128.load(get(gp), 16 * p)));
        tk.forEach((k, i) => {
          const d = i32x4.dotI16x8S(get(wv), v128.load32Splat(get(k.x), 4 * p));
          ops.push(set(sums[i]!, p ? i32x4.add(get(sums[i]!), d) : d));
        });
      }
      // a branch on a never-zero local ends the basic block (see kquants.ts' pairBlocks)
      pairBlocks.push(p0 ? if_(get(own), ops) : seq(ops));
    }
    return [
      ...tk.flatMap((k, i) => {
        const block0 = i32.add(i32.mul(i32.add(get(t), i32.const(i)), get(nb)), get(pn.b0));
        return [
          set(k.x, i32.add(get(x), mulC(block0, 512))),
          set(k.xs, i32.add(get(xs), mulC(block0, 4 * xsPerBlock))),
          ...(S.bsumLen ? [set(k.bsum, i32.add(get(bsum), mulC(block0, 4 * bsPerBlock)))] : []),
          if_(get(pn.first), [v128.store(outAddr(i), zero())]),
        ];
      }),
      set(dp, get(own)),
      forPtr(dp, de, DB,
        ...tk.flatMap((k) => k.F.map((l) => set(l, zero()))),
        set(gp, get(dp)),
        set(gx, i32.add(get(dp), i32.const(PAIR_BYTES))),
        set(ge, get(gx)),
        forPtr(gp, ge, 8 * S.G,
          ...pairBlocks,
          ...tk.flatMap((k, i) => [
            ...S.groupEnd(f, k, get(sums[i]!), gx),
            inc(k.x, 2 * S.G),
            ...(S.xBlock === 32 ? [inc(k.xs, 4)] : []),
            ...(S.bsumLen ? [inc(k.bsum, (4 * S.G) / S.bsumLen)] : []),
          ]),
          ...(S.groupExtra ? [inc(gx, S.groupExtra)] : [])),
        set(bx, i32.add(get(dp), i32.const(PAIR_BYTES + groups * S.groupExtra))),
        ...tk.flatMap((k, i) => [
          v128.store(outAddr(i), f32x4.add(v128.load(outAddr(i)), S.blockEnd(f, k, bx))),
          ...(S.xBlock === 256 ? [inc(k.xs, 4)] : []),
        ])),
    ];
  };

  f.body = seq(
    ...(S.setup ? S.setup(f) : []),
    set(own, i32.add(get(scr), i32.mul(get(tid), mulC(get(pb), DB)))),
    panelLoop(f, { w, nb, pb, quadBlockBytes: S.QB, outP }, (pn) => seq(
      set(de, i32.add(get(own), mulC(get(pn.pnb), DB))),
      tokenTiles(T, tile, t0, t1,
        forLoop(q, get(start), get(end), 1,
          ...decodeQuad(pn),
          set(t, get(t0)),
          tokenGroups(t, t1, sizes, (n) => dots(n, pn)))),
    )),
  );
  return f;
}
