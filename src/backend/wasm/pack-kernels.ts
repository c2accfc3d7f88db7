/**
 * Repacking in wasm, for the expert reader threads (expert-reader-worker.ts): a reader reads stored
 * rows straight into a staging area of the slot's memory shard and one call repacks them into the
 * slot. In JavaScript the Q8_0 repack ran at ≈ 0.85 GB/s per core, slower than the disk it followed
 * (0.87 GB/s here) and far slower than the page cache (≈ 5 GB/s), so an expert load cost twice its
 * read; the SIMD transpose below runs at memory speed.
 *
 * The output is byte for byte layout.ts's packQuads for the same plan (tested against it).
 */
import { Func, ValType, encodeModule, get, set, seq, select, forLoop, i32, v128, i8x16, type Local, type Op } from './asm.js';
import { Q8_0_QUAD_BYTES, type PackPlan } from './layout.js';

const I32 = ValType.i32;
const V = ValType.v128;

/** Q8_0 octet-block bytes (2 quads × 136): 8 f16 scales, then 16 pairs × 8 rows × 2 int8. */
const OCTET = 2 * Q8_0_QUAD_BYTES;
const BLOCK = 34;

// byte-lane patterns of the 8 × 8 transpose of 16-bit values (unpack lo/hi at 16, 32, 64 bits)
const lo = (w: number): number[] => Array.from({ length: 16 }, (_, i) => Math.floor(i / w) % 2 * 16 + Math.floor(i / (2 * w)) * w + (i % w));
const hi = (w: number): number[] => lo(w).map((x) => x + 8);

/**
 * pack_q8_0(src, rowBytes, nb, n, u0, units, bpp, dst): the n units (8 stored rows each, row r of
 * unit i at src + (8i + r)·rowBytes, nb blocks of 34 bytes per row) numbered u0.. of a weight of
 * `units` units, into dst laid out in column panels of bpp blocks (layout.ts: panel p of unit u at
 * p·units·bpp·272 + u·(blocks in panel p)·272).
 */
function packQ8_0(): Func {
  const f = new Func('pack_q8_0', [I32, I32, I32, I32, I32, I32, I32, I32]);
  const [src, rowBytes, nb, n, u0, units, bpp, dst] = f.params as [Local, Local, Local, Local, Local, Local, Local, Local];
  const i = f.local(I32);
  const b = f.local(I32);
  const p = f.local(I32);
  const rowBase = f.local(I32);
  const s = f.local(I32);
  const out = f.local(I32);
  const panelStride = f.local(I32);
  const rowOff = Array.from({ length: 8 }, () => f.local(I32));
  const r = Array.from({ length: 8 }, () => f.local(V));
  const a = Array.from({ length: 8 }, () => f.local(V));
  const c = Array.from({ length: 8 }, () => f.local(V));
  const row = (k: number): Op => i32.add(get(s), get(rowOff[k]!));
  const shuffle = (x: Local, y: Local, l: number[]): Op => i8x16.shuffle(get(x), get(y), l);

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

  f.body = seq(
    ...rowOff.map((x, k) => set(x, i32.mul(get(rowBytes), i32.const(k)))),
    set(panelStride, i32.mul(i32.mul(get(units), get(bpp)), i32.const(OCTET))),
    forLoop(i, i32.const(0), get(n), 1,
      set(rowBase, i32.add(get(src), i32.mul(i32.mul(get(i), i32.const(8)), get(rowBytes)))),
      forLoop(b, i32.const(0), get(nb), 1,
        set(p, i32.divU(get(b), get(bpp))),
        // panel p, unit u0 + i (its part of the panel holds min(bpp, nb − p·bpp) blocks), block b − p·bpp
        set(out, i32.add(get(dst), i32.add(
          i32.mul(get(p), get(panelStride)),
          i32.mul(i32.const(OCTET), i32.add(
            i32.mul(i32.add(get(u0), get(i)), minU(i32.sub(get(nb), i32.mul(get(p), get(bpp))), get(bpp), f)),
            i32.sub(get(b), i32.mul(get(p), get(bpp))),
          )),
        ))),
        set(s, i32.add(get(rowBase), i32.mul(get(b), i32.const(BLOCK)))),
        ...Array.from({ length: 8 }, (_, k) => i32.store16(get(out), i32.load16U(row(k)), 2 * k)),
        transpose(2, 0),
        transpose(18, 8),
      ),
    ),
  );
  return f;
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
  bytes ??= encodeModule([packQ8_0()], { minPages: 1, maxPages: 65536 });
  return bytes;
}

export interface PackKernels {
  /** See packQ8_0 above. */
  readonly pack_q8_0: (src: number, rowBytes: number, nb: number, n: number, u0: number, units: number, bpp: number, dst: number) => void;
}

let module: WebAssembly.Module | undefined;

/** The packing kernels over one shard's memory. */
export function packKernels(memory: WebAssembly.Memory): PackKernels {
  module ??= new WebAssembly.Module(packModuleBytes() as Uint8Array<ArrayBuffer>);
  return new WebAssembly.Instance(module, { env: { mem: memory } }).exports as unknown as PackKernels;
}

/** 8-row units of a Q8_0 weight with `inDim` inputs that `stageBytes` of stored rows hold. */
export function q8_0UnitsPerStage(inDim: number, stageBytes: number): number {
  return Math.floor(stageBytes / (8 * (inDim / 32) * 34));
}

/**
 * Packs quads q0..q1-1 of a Q8_0 weight (plan) into `dst` of `memory` the way packQuads would, as
 * many 8-row units at a time as `stageBytes` of stored rows hold: `stage(firstRow, bytes)` puts
 * the stored rows firstRow.. (`bytes` of them) somewhere in `memory` and returns where, with room
 * after them for the zeros that stand for rows past the weight's end (up to 8 rows); one call
 * repacks each batch.
 */
export function packQ8_0Staged(
  k: PackKernels, memory: WebAssembly.Memory, stageBytes: number,
  plan: PackPlan, q0: number, q1: number, dst: number, stage: (firstRow: number, bytes: number) => number,
  /** Only units [from, to) of the part (of (q1 − q0) / 2), written where the whole part's packing puts them. */
  from = 0, to = (q1 - q0) / 2,
): void {
  const rowBytes = (plan.inDim / 32) * 34;
  const units = (q1 - q0) / 2;
  const perCall = q8_0UnitsPerStage(plan.inDim, stageBytes);
  if (perCall < 1) throw new RangeError(`a staging area of ${stageBytes} bytes cannot hold 8 rows of ${rowBytes} bytes`);
  const bpp = Math.min(plan.panel, plan.segStride) / 32;
  for (let u = from; u < to; u += perCall) {
    const n = Math.min(perCall, to - u);
    const first = 4 * q0 + 8 * u;
    const rows = Math.max(0, Math.min(plan.outDim - first, 8 * n));
    const src = stage(first, rows * rowBytes);
    if (rows < 8 * n) new Uint8Array(memory.buffer, src + rows * rowBytes, (8 * n - rows) * rowBytes).fill(0);
    k.pack_q8_0(src, rowBytes, plan.inDim / 32, n, u, units, bpp, dst);
  }
}
