/**
 * Packed weight layouts of the wasm backend and the repacking into them. Every layout groups the
 * output rows in *quads* of 4 (the last quad zero-padded) and interleaves the 4 rows block by block,
 * so one matrix-vector pass reads one sequential stream and each activation load serves 4 rows.
 * Quantised formats keep their stored precision and (almost) their size:
 *
 * | plan  | quad unit                                  | bytes per 4 rows          | vs stored |
 * |-------|--------------------------------------------|---------------------------|-----------|
 * | i8g   | per 16 inputs: 4 rows × 16 int8; + f32 scale per (row, group) | 64 per 16 inputs | +16·G/in |
 * | f32/bf16/f16 | per 16 bytes of each row: 4 × 16 bytes (rows padded to 16 values) | 64 per chunk | same |
 * | q8_0  | quads in pairs (8 rows); per 32 inputs: 8 × f16 d, then per input pair the 8 rows' 2 int8 | 272 per 8 rows | same |
 * | q4_0  | per 32 inputs: 4 × f16 d, 4 rows × 16 bytes of nibble lanes (ggml's nibble bytes for the relaxed kernel) | 72 | same |
 * | q4_k  | per 256: 4 d, 4 dmin (f16), 6-bit scales/mins unpacked to bytes ([r][8] and [j][4]), per row per sub-block 16 bytes of nibble lanes (packNibbleLanes) | 592 | +2.8 % |
 * | block | every other ggml type (Q6_K, Q4_1, Q5_*, Q2_K, Q3_K, Q5_K, i-quants): plan kind 'block', laid out by its file in formats/ (block-format.ts) | | ≤ +6 % |
 *
 * The official int8 checkpoint is input-major ([in, out]), so i8g is a transpose: rows become the
 * outputs. Groups (scale rows) are padded to a multiple of 16 inputs each.
 *
 * **Column panels.** Every layout but in-major dense is further cut into panels of `panel` inputs
 * (1024 by default; for i8g within each group): a packed part holds panel 0 of every quad, then
 * panel 1 of every quad, and so on, each quad's panel in the layout above. A matvec then streams one panel of
 * the thread's quads against 2 KB of int16 activations, which stay in L1; with whole rows, a
 * quad's 26 KB (Q8_0 at 6144 inputs) streaming past 12 KB of activations evicted them from a
 * 32 KB L1 every quad, costing ≈ 30 % of single-thread speed at Grok's widths.
 */
import type { LinearWeight } from '../../tensor/linear.js';
import { bf16BytesToF32 } from '../../tensor/dtype.js';
import { ggmlRowBytes } from '../../tensor/ggml.js';
import type { BlockFormat } from './block-format.js';
import { blockFormat } from './formats/index.js';

export const Q8_0_QUAD_BYTES = 136;
export const Q4_0_QUAD_BYTES = 72;
export const Q4K_QUAD_BYTES = 592;

export type PlanKind = 'i8g' | 'f32' | 'bf16' | 'f16' | 'q8_0' | 'q4_0' | 'q4_k' | 'block';

/** How one weight is packed and how activations are staged for it. */
export interface PackPlan {
  readonly kind: PlanKind;
  readonly inDim: number;
  readonly outDim: number;
  /** Quads, a multiple of unitQuads (the last ones zero-padded). */
  readonly quads: number;
  /**
   * Quads per kernel unit, interleaved block by block: 2 for q8_0 (one weight stream serves 8
   * rows: with each quad its own stream, two streams per core read DRAM at half the speed), else 1.
   * Threads and memory shards split weights at unit boundaries.
   */
  readonly unitQuads: 1 | 2;
  /** Packed weight bytes per quad (all inputs), plus for i8g the f32 scales per quad. */
  readonly quadBytes: number;
  readonly scaleQuadBytes: number;
  /** x is staged as [T][segs·segStride] floats: segs runs of segLen inputs, each zero-padded to segStride. */
  readonly segs: number;
  readonly segLen: number;
  readonly segStride: number;
  /** int16 quantisation block of x (one f32 scale each; the last of each segment may be shorter); 0 = x stays f32. */
  readonly xBlock: number;
  /** Length of the runs summed by bsum_x (0 = none). */
  readonly bsumLen: number;
  /**
   * Inputs per column panel (a multiple of 256, so of every block); ≥ segStride when the weight is
   * one panel (always for in-major dense). Out-major: panel p of a quad is bytes
   * [p·panel·inBytes, …) of its quad layout, with inBytes = quadBytes / segStride; i8g: per group.
   */
  readonly panel: number;
  /** q4_0 only: keep ggml's nibble bytes (for the relaxed-SIMD kernel) instead of nibble lanes. */
  readonly ggmlNibbles?: boolean;
  /** kind 'block': the block format (formats/) that packs and runs it. */
  readonly block?: BlockFormat;
}

/** Inputs per column panel unless told otherwise (see the header). */
export const DEFAULT_PANEL = 1024;

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;

/** The packing plan for a weight, or undefined when the wasm backend has no kernel for its format. */
export function planFor(w: LinearWeight, panelInputs = DEFAULT_PANEL, opts: { relaxedQ4_0?: boolean } = {}): PackPlan | undefined {
  const f = w.format;
  const I = w.inDim;
  const O = w.outDim;
  const quads = Math.ceil(O / 4);
  if (!(panelInputs >= 256 && panelInputs % 256 === 0)) throw new RangeError(`panel inputs must be a positive multiple of 256, got ${panelInputs}`);
  const base = { inDim: I, outDim: O, quads, unitQuads: 1 as const, scaleQuadBytes: 0, segs: 1, segLen: I, bsumLen: 0, panel: panelInputs };
  const whole = { panel: Number.MAX_SAFE_INTEGER };
  if (f.kind === 'int8-grouped') {
    const G = f.groups;
    if (!(G >= 1) || I % G !== 0) return undefined;
    const L = I / G;
    const Lp = roundUp(L, 16);
    // Activation blocks of 256 within each group (the last one of a group may be shorter): the
    // per-block flush then costs ~3 % of the dot products. Groups under 1024 wide (test-sized
    // models only) take blocks of 16: finer scales, and such calls are overhead-bound anyway.
    return { ...base, kind: 'i8g', quadBytes: G * Lp * 4, scaleQuadBytes: G * 16, segs: G, segLen: L, segStride: Lp, xBlock: Lp >= 1024 ? 256 : 16 };
  }
  if (f.kind === 'dense') {
    const Lp = roundUp(I, 16);
    const eb = f.dtype === 'f32' ? 4 : 2;
    return { ...base, ...(f.order === 'in-major' ? whole : {}), kind: f.dtype, quadBytes: Lp * eb * 4, segStride: Lp, xBlock: 0 };
  }
  if (f.kind === 'ggml') {
    const blocks = (n: number) => (I % n === 0 ? I / n : -1);
    switch (f.type) {
      case 'q8_0':
        if (blocks(32) < 0) return undefined;
        return { ...base, kind: 'q8_0', quads: 2 * Math.ceil(O / 8), unitQuads: 2, quadBytes: blocks(32) * Q8_0_QUAD_BYTES, segStride: I, xBlock: 32 };
      case 'q4_0':
        if (blocks(32) < 0) return undefined;
        return { ...base, kind: 'q4_0', quadBytes: blocks(32) * Q4_0_QUAD_BYTES, segStride: I, xBlock: 32, bsumLen: 32, ggmlNibbles: opts.relaxedQ4_0 };
      case 'q4_k':
        if (blocks(256) < 0) return undefined;
        return { ...base, kind: 'q4_k', quadBytes: blocks(256) * Q4K_QUAD_BYTES, segStride: I, xBlock: 256, bsumLen: 32 };
      case 'f32':
      case 'f16':
      case 'bf16': {
        const Lp = roundUp(I, 16);
        return { ...base, kind: f.type, quadBytes: Lp * (f.type === 'f32' ? 4 : 2) * 4, segStride: Lp, xBlock: 0 };
      }
      default: {
        const bf = blockFormat(f.type);
        if (!bf || blocks(bf.blockInputs) < 0) return undefined;
        return { ...base, kind: 'block', block: bf, quadBytes: blocks(bf.blockInputs) * bf.quadBlockBytes, segStride: I, xBlock: bf.xBlock, bsumLen: bf.bsumLen };
      }
    }
  }
  return undefined;
}

/** Panels of a plan's weight. */
export function panelCount(plan: PackPlan): number {
  return Math.ceil(plan.segStride / plan.panel);
}

/** Bytes of one quad's part of panel p. */
export function panelQuadBytes(plan: PackPlan, p: number): number {
  const inBytes = plan.quadBytes / plan.segStride;
  return Math.min(plan.panel, plan.segStride - p * plan.panel) * inBytes;
}

/** Bytes a run of `quads` quads occupies (weights, then i8g scales). */
export function partBytes(plan: PackPlan, quads: number): number {
  return quads * (plan.quadBytes + plan.scaleQuadBytes);
}

/** Bytes of stored rows read per step while packing an out-major weight. */
const PACK_CHUNK_BYTES = 16 << 20;

/**
 * Packs quads q0..q1-1 of `w` into `dst` (zeroed memory of partBytes(plan, q1 - q0) bytes):
 * weights first (panel-major when the plan has several panels), then (i8g) the scales.
 */
export function packQuads(plan: PackPlan, w: LinearWeight, q0: number, q1: number, dst: Uint8Array): void {
  const f = w.format;
  if (plan.kind === 'i8g') return packI8g(plan, w.bytes(), w.scaleBytes(), q0, q1, dst);
  if (f.kind === 'dense' && f.order === 'in-major') return packDenseInMajor(plan, w.bytes(), q0, q1, dst);
  const U = plan.unitQuads;
  const unitRows = 4 * U;
  const unitBytes = U * plan.quadBytes;
  const rowBytes = ggmlRowBytes(plan.block?.type ?? plan.kind, plan.inDim); // a stored out-major row: ggml's sizes serve the dense kinds too
  const tmp = new Uint8Array(unitRows * rowBytes);
  const panels = panelCount(plan);
  const unitBuf = panels > 1 ? new Uint8Array(unitBytes) : undefined;
  const fullPanel = U * panelQuadBytes(plan, 0);
  // Out-major rows are read a chunk at a time (from the cached bytes, or from disk when none are
  // held), so packing a large table (the embedding) never holds a second full copy of it.
  const chunkUnits = Math.max(1, Math.floor(PACK_CHUNK_BYTES / (unitRows * rowBytes)));
  const u0 = q0 / U;
  const u1 = q1 / U;
  let src: Uint8Array = new Uint8Array(0);
  let srcU = u0;
  for (let u = u0; u < u1; u++) {
    if (u === u0 || u - srcU >= chunkUnits) {
      srcU = u;
      const first = unitRows * u;
      src = w.rowBytes(first, Math.min(plan.outDim, unitRows * Math.min(u1, u + chunkUnits)) - first);
    }
    const rows = Math.min(unitRows, plan.outDim - unitRows * u);
    tmp.fill(0);
    tmp.set(src.subarray(unitRows * (u - srcU) * rowBytes, (unitRows * (u - srcU) + rows) * rowBytes));
    const out = unitBuf ?? dst.subarray((u - u0) * unitBytes, (u - u0 + 1) * unitBytes);
    if (unitBuf) unitBuf.fill(0);
    switch (plan.kind) {
      case 'f32':
      case 'bf16':
      case 'f16':
        interleaveChunks(tmp, rowBytes, out);
        break;
      case 'q8_0':
        packQ8_0(tmp, rowBytes, out);
        break;
      case 'q4_0':
        if (plan.ggmlNibbles) packBlocks(tmp, rowBytes, out, 18, 2, Q4_0_QUAD_BYTES);
        else packQ4_0(tmp, rowBytes, out);
        break;
      case 'q4_k':
        packQ4K(tmp, rowBytes, out);
        break;
      case 'block':
        plan.block!.pack(tmp, rowBytes, out);
        break;
    }
    if (unitBuf) {
      // panel p of unit u sits at p·(units·fullPanel) + u·(its panel's bytes)
      for (let p = 0; p < panels; p++) {
        const n = U * panelQuadBytes(plan, p);
        dst.set(unitBuf.subarray(p * fullPanel, p * fullPanel + n), p * (u1 - u0) * fullPanel + (u - u0) * n);
      }
    }
  }
}

/** 4 rows of `rowBytes` (row r at tmp[r·rowBytes]) → per 16-byte chunk, the 4 rows' chunks (a row's last chunk zero-padded). */
function interleaveChunks(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  // in 16-bit units (f16/bf16/f32 rows are even): 8 per chunk; padding stays zero
  const t16 = u16View(tmp);
  const o16 = u16View(out);
  const rowH = rowBytes >> 1;
  for (let r = 0; r < 4; r++) {
    const base = r * rowH;
    for (let c = 0; c * 8 < rowH; c++) {
      const n = Math.min(8, rowH - c * 8);
      const o = c * 32 + r * 8;
      const i = base + c * 8;
      for (let k = 0; k < n; k++) o16[o + k] = t16[i + k]!;
    }
  }
}

/**
 * Q8_0 blocks (f16 d, 32 int8) of 8 rows: octet-block = 8 scales, then for each input pair p the
 * 8 rows' values 2p, 2p+1 (rows 0–3 are the unit's first quad, 4–7 its second).
 */
function packQ8_0(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  // in 16-bit units (a scale, or an input pair): blocks are 17 of them, octet-blocks 136
  const t16 = u16View(tmp);
  const o16 = u16View(out);
  const rowH = rowBytes >> 1;
  const nb = rowBytes / 34;
  for (let b = 0; b < nb; b++) {
    const o = b * Q8_0_QUAD_BYTES;
    for (let r = 0; r < 8; r++) {
      const s = r * rowH + b * 17;
      o16[o + r] = t16[s]!;
      for (let p = 0; p < 16; p++) o16[o + 8 + 8 * p + r] = t16[s + 1 + p]!;
    }
  }
}

/** A Uint16Array over the same bytes (offset and length even: every packed unit and row here is). */
export function u16View(a: Uint8Array): Uint16Array {
  return new Uint16Array(a.buffer, a.byteOffset, a.byteLength >>> 1);
}

/** Q4_0 blocks (f16 d, 16 bytes: value l low nibble, 16 + l high): quad-block = 4 scales, then per row 16 bytes of nibble lanes. */
function packQ4_0(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 18;
  for (let b = 0; b < nb; b++) {
    const o = b * Q4_0_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 18;
      out[o + 2 * r] = tmp[s]!;
      out[o + 2 * r + 1] = tmp[s + 1]!;
      // values i, 8 + i from the low nibbles of qs[i], qs[8 + i]; 16 + i, 24 + i from their high nibbles
      for (let i = 0; i < 8; i++) {
        const a = tmp[s + 2 + i]!;
        const c = tmp[s + 10 + i]!;
        out[o + 8 + 16 * r + 2 * i] = (a & 15) | ((c & 15) << 4);
        out[o + 8 + 16 * r + 2 * i + 1] = (a >> 4) | (c & 0xf0);
      }
    }
  }
}

/** ggml blocks with a 2-byte f16 scale first: quad-block = 4 scales, then the 4 rows' remaining bytes. */
function packBlocks(tmp: Uint8Array, rowBytes: number, out: Uint8Array, blockBytes: number, headBytes: number, quadBlockBytes: number): void {
  // in 16-bit units: block, head and quad-block sizes are all even
  const t16 = u16View(tmp);
  const o16 = u16View(out);
  const rowH = rowBytes >> 1;
  const blockH = blockBytes >> 1;
  const headH = headBytes >> 1;
  const bodyH = blockH - headH;
  const nb = rowBytes / blockBytes;
  for (let b = 0; b < nb; b++) {
    const o = b * (quadBlockBytes >> 1);
    for (let r = 0; r < 4; r++) {
      const s = r * rowH + b * blockH;
      for (let k = 0; k < headH; k++) o16[o + r * headH + k] = t16[s + k]!;
      const ob = o + 4 * headH + r * bodyH;
      for (let k = 0; k < bodyH; k++) o16[ob + k] = t16[s + headH + k]!;
    }
  }
}

/** ggml get_scale_min_k4: the 6-bit scale and min of sub-block j from the 12 packed bytes at q[p]. */
export function scaleMinK4(j: number, q: Uint8Array, p: number): [number, number] {
  if (j < 4) return [q[p + j]! & 63, q[p + j + 4]! & 63];
  return [(q[p + j + 4]! & 0xf) | ((q[p + j - 4]! >> 6) << 4), (q[p + j + 4]! >> 4) | ((q[p + j]! >> 6) << 4)];
}

function packQ4K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nsb = rowBytes / 144;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q4K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 144;
      out[o + 2 * r] = tmp[s]!; // d
      out[o + 2 * r + 1] = tmp[s + 1]!;
      out[o + 8 + 2 * r] = tmp[s + 2]!; // dmin
      out[o + 8 + 2 * r + 1] = tmp[s + 3]!;
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMinK4(j, tmp, s + 4);
        out[o + 16 + 8 * r + j] = sc;
        out[o + 48 + 4 * j + r] = m;
      }
      // ggml: qs[32c + l] holds value 64c + l (low nibble) and 64c + 32 + l (high nibble), so
      // sub-block j's values are the (j & 1 ? high : low) nibbles of qs[32·(j >> 1) + 0..31]
      for (let j = 0; j < 8; j++) packNibbleLanes(tmp, s + 16 + 32 * (j >> 1), 4 * (j & 1), out, o + 80 + 128 * r + 16 * j);
    }
  }
}

/**
 * 32 4-bit values (the nibbles at `shift` of src[from..from+31]) as 16 bytes in which nibble k of
 * 16-bit lane i holds value 8k + i: a lane's 4 nibbles then come out with an and, or a shift and
 * an and, as 8 16-bit lanes in natural order for `dot_i16x8_s` (no byte unpacking).
 */
export function packNibbleLanes(src: Uint8Array, from: number, shift: number, out: Uint8Array, at: number): void {
  for (let i = 0; i < 8; i++) {
    const v = (t: number) => (src[from + t]! >> shift) & 15;
    out[at + 2 * i] = v(i) | (v(8 + i) << 4);
    out[at + 2 * i + 1] = v(16 + i) | (v(24 + i) << 4);
  }
}

/**
 * The official layout: int8 [in, out] input-major + bf16 scales [G, out] → quads of output rows,
 * group by group and panel by panel (a group's panels of `plan.panel` inputs; the last may be shorter).
 */
function packI8g(plan: PackPlan, src: Uint8Array, scaleBytes: Uint8Array, q0: number, q1: number, dst: Uint8Array): void {
  const O = plan.outDim;
  const G = plan.segs;
  const L = plan.segLen;
  const Lp = plan.segStride;
  const chunks = Lp / 16;
  const pc = Math.min(plan.panel, Lp) / 16; // chunks per column panel
  const nq = q1 - q0;
  const aligned = O % 4 === 0 && src.byteOffset % 4 === 0;
  const src32 = aligned ? new Uint32Array(src.buffer, src.byteOffset, src.byteLength >>> 2) : undefined;
  const O4 = O >>> 2;
  const dst32 = dst.byteOffset % 4 === 0 ? new Uint32Array(dst.buffer, dst.byteOffset, dst.byteLength >>> 2) : undefined;
  for (let g = 0; g < G; g++) {
    for (let c = 0; c < chunks; c++) {
      const kn = Math.min(16, L - 16 * c); // real inputs in this chunk
      const k0 = g * L + 16 * c;
      // panel (g, c0): every quad's chunks c0..c0+npc-1, at nq·64·(g·chunks + c0)
      const c0 = c - (c % pc);
      const npc = Math.min(pc, chunks - c0);
      for (let q = q0; q < q1; q++) {
        const o = (nq * (g * chunks + c0) + (q - q0) * npc + (c - c0)) * 64;
        if (dst32 && src32 && kn === 16 && 4 * q + 3 < O) {
          // 4 × 4 byte transposes: 4 inputs' words (4 rows' bytes each) → 4 rows' words
          const o32 = o >>> 2;
          for (let w = 0; w < 4; w++) {
            const i = (k0 + 4 * w) * O4 + q;
            const a = src32[i]!;
            const b = src32[i + O4]!;
            const c2 = src32[i + 2 * O4]!;
            const d = src32[i + 3 * O4]!;
            const t0 = (a & 0x00ff00ff) | ((b & 0x00ff00ff) << 8); // a0 b0 a2 b2
            const t1 = ((a >>> 8) & 0x00ff00ff) | (b & 0xff00ff00); // a1 b1 a3 b3
            const t2 = (c2 & 0x00ff00ff) | ((d & 0x00ff00ff) << 8);
            const t3 = ((c2 >>> 8) & 0x00ff00ff) | (d & 0xff00ff00);
            dst32[o32 + w] = (t0 & 0xffff) | (t2 << 16);
            dst32[o32 + 4 + w] = (t1 & 0xffff) | (t3 << 16);
            dst32[o32 + 8 + w] = (t0 >>> 16) | (t2 & 0xffff0000);
            dst32[o32 + 12 + w] = (t1 >>> 16) | (t3 & 0xffff0000);
          }
        } else if (src32 && 4 * q + 3 < O) {
          for (let b = 0; b < kn; b++) {
            const v = src32[(k0 + b) * O4 + q]!;
            dst[o + b] = v & 255;
            dst[o + 16 + b] = (v >>> 8) & 255;
            dst[o + 32 + b] = (v >>> 16) & 255;
            dst[o + 48 + b] = v >>> 24;
          }
        } else {
          for (let r = 0; r < 4 && 4 * q + r < O; r++) {
            for (let b = 0; b < kn; b++) dst[o + 16 * r + b] = src[(k0 + b) * O + 4 * q + r]!;
          }
        }
      }
    }
  }
  const scales = bf16BytesToF32(scaleBytes); // [G, O]
  const sc = new Float32Array(dst.buffer, dst.byteOffset + (q1 - q0) * plan.quadBytes, (q1 - q0) * G * 4);
  for (let q = q0; q < q1; q++) {
    for (let g = 0; g < G; g++) {
      for (let r = 0; r < 4 && 4 * q + r < O; r++) sc[((q - q0) * G + g) * 4 + r] = scales[g * O + 4 * q + r]!;
    }
  }
}

/** Input-major dense [in, out] → out-major quads (small tensors such as the router). */
function packDenseInMajor(plan: PackPlan, src: Uint8Array, q0: number, q1: number, dst: Uint8Array): void {
  const I = plan.inDim;
  const O = plan.outDim;
  const eb = plan.kind === 'f32' ? 4 : 2;
  const per = 16 / eb; // elements per 16-byte chunk
  for (let q = q0; q < q1; q++) {
    for (let r = 0; r < 4 && 4 * q + r < O; r++) {
      const o = 4 * q + r;
      for (let k = 0; k < I; k++) {
        const d = (q - q0) * plan.quadBytes + Math.floor(k / per) * 64 + r * 16 + (k % per) * eb;
        const s = (k * O + o) * eb;
        for (let b = 0; b < eb; b++) dst[d + b] = src[s + b]!;
      }
    }
  }
}
