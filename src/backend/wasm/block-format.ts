/**
 * A block-quantised ggml type the wasm backend runs natively: its packed layout (how 4 stored rows
 * become quad-blocks), how its activations are staged, and the kernel that multiplies them. Each
 * format lives in a file of its own under formats/; formats/index.ts lists them, and layout.ts,
 * kernels-wasm.ts and index.ts take plan, packing, kernel and dispatch from that list.
 *
 * Every such kernel has one signature:
 *   mm_TYPE(w, x, xs, bsum, out, T, nb, outP, tile, pb, start, end, tid)
 * w: the part's packed weights (panel-major, see layout.ts), x: int16 activations [T][in],
 * xs: f32 scales [T][in / xBlock], bsum: i32 sums [T][in / bsumLen] of the int16 activations (when
 * bsumLen > 0), out: f32 [T][outP], nb: blocks (of blockInputs) per full row, pb: blocks per column
 * panel, units start..end-1 are quads of 4 output rows. kernel-parts.ts has the loops.
 */
import type { Func } from './asm.js';
import type { DecodedSpec } from './decoded.js';

export interface BlockFormat {
  /** The ggml type (as ggml.ts names it). */
  readonly type: string;
  /** Inputs per stored block (32 or 256): rows must be a multiple of it. */
  readonly blockInputs: number;
  /** Packed bytes of one block of one quad (4 rows). */
  readonly quadBlockBytes: number;
  /** Inputs per activation scale (quant_x block): a multiple of 16 dividing blockInputs. */
  readonly xBlock: number;
  /** Length of the runs of int16 activations summed into `bsum` for the kernel (0: none). */
  readonly bsumLen: 0 | 16 | 32;
  /**
   * 4 stored rows (row r at rows[r·rowBytes], ggml's block bytes; missing rows zero) → their quad
   * blocks in `out` (zeroed, nb·quadBlockBytes bytes, block b at b·quadBlockBytes).
   */
  pack(rows: Uint8Array, rowBytes: number, out: Uint8Array): void;
  /** The kernel, named `mm_${type}`. */
  emit(): Func;
  /**
   * Lookup tables (grids, signs, value maps) the kernel reads at fixed addresses: written into every
   * memory shard when it is created, inside the first page, which nothing else uses. Each family
   * keeps to its region of TABLE_REGIONS.
   */
  readonly tables?: readonly { readonly at: number; readonly bytes: Uint8Array }[];
  /**
   * The prefill kernel (decoded.ts, named `mmp_${type}`): each quad decoded once per token tile,
   * bit for bit the results of `emit`'s kernel. Used for calls with many tokens.
   */
  readonly prefill?: DecodedSpec;
}

/** Where each family of formats/ may put its tables: [start, end) byte addresses in the first page of every shard. */
export const TABLE_REGIONS = {
  legacy: [1024, 2048],
  iq2: [2048, 24576],
  'iq3-iq1': [24576, 61440],
} as const;

export const kernelName = (f: BlockFormat): `mm_${string}` => `mm_${f.type}`;
export const prefillKernelName = (f: BlockFormat): `mmp_${string}` => `mmp_${f.type}`;
