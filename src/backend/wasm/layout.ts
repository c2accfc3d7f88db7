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
 *
 * `whole` (out-major weights only): `dst` is instead the packed part of *all* the weight's quads
 * (partBytes(plan, plan.quads), not necessarily zeroed), and quads q0..q1-1 go where packing all
 * of them puts them, so that several threads can each pack a piece of one matrix in place.
 */
export function packQuads(plan: PackPlan, w: LinearWeight, q0: number, q1: number, dst: Uint8Array, whole = false): void {
  const f = w.format;
  const inMajor = plan.kind === 'i8g' || (f.kind === 'dense' && f.order === 'in-major');
  if (whole && inMajor) throw new RangeError(`${w.name}: only out-major weights are packed a piece at a time in place`);
  if (plan.kind === 'i8g') return packI8g(plan, w.bytes(), w.scaleBytes(), q0, q1, dst);
  if (f.kind === 'dense' && f.order === 'in-major') return packDenseInMajor(plan, w.bytes(), q0, q1, dst);
  const U = plan.unitQuads;
  const unitRows = 4 * U;
  const unitBytes = U * plan.quadBytes;
  const rowBytes = ggmlRowBytes(plan.block?.type ?? plan.kind, plan.inDim); // a stored out-major row: ggml's sizes serve the dense kinds too
  const tmp = new Uint8Array(unitRows * rowBytes);
  const panels = panelCount(plan);
  // The packers store 32-bit words into a 4-aligned unit, and read rows as 16-bit units from a
  // 4-aligned start: a unit goes through unitBuf when it has panels to scatter or dst is not aligned.
  const unitBuf = panels > 1 || dst.byteOffset % 4 !== 0 ? new Uint8Array(unitBytes) : undefined;
  const fullPanel = U * panelQuadBytes(plan, 0);
  // Out-major rows are read a chunk at a time (from the cached bytes, or from disk when none are
  // held), so packing a large table (the embedding) never holds a second full copy of it.
  const chunkUnits = Math.max(1, Math.floor(PACK_CHUNK_BYTES / (unitRows * rowBytes)));
  const u0 = q0 / U;
  const u1 = q1 / U;
  // where unit u goes: unit u - at of a part of `units` units
  const at = whole ? 0 : u0;
  const units = whole ? plan.quads / U : u1 - u0;
  let src: Uint8Array = new Uint8Array(0);
  let srcU = u0;
  for (let u = u0; u < u1; u++) {
    if (u === u0 || u - srcU >= chunkUnits) {
      srcU = u;
      const first = unitRows * u;
      src = w.rowBytes(first, Math.min(plan.outDim, unitRows * Math.min(u1, u + chunkUnits)) - first);
    }
    const rows = Math.min(unitRows, plan.outDim - unitRows * u);
    const from = unitRows * (u - srcU) * rowBytes;
    let unitRowsBytes: Uint8Array;
    if (rows === unitRows && (src.byteOffset + from) % 4 === 0) {
      unitRowsBytes = src.subarray(from, from + unitRows * rowBytes);
    } else {
      // a last unit with missing rows (zero), or rows at an odd address
      tmp.fill(0);
      tmp.set(src.subarray(from, from + rows * rowBytes));
      unitRowsBytes = tmp;
    }
    const out = unitBuf ?? dst.subarray((u - at) * unitBytes, (u - at + 1) * unitBytes);
    if (unitBuf || whole) out.fill(0);
    packUnit(plan, unitRowsBytes, rowBytes, out);
    if (unitBuf) {
      // panel p of unit u sits at p·(units·fullPanel) + u·(its panel's bytes)
      for (let p = 0; p < panels; p++) {
        const n = U * panelQuadBytes(plan, p);
        dst.set(unitBuf.subarray(p * fullPanel, p * fullPanel + n), p * units * fullPanel + (u - at) * n);
      }
    }
  }
}

/**
 * One unit of an out-major plan: its 4 · unitQuads stored rows (row r at rows[r·rowBytes], missing
 * rows zero) → its packed bytes in `out` (zeroed, unitQuads · quadBytes, 4-aligned), one panel.
 */
export function packUnit(plan: PackPlan, rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  switch (plan.kind) {
    case 'f32':
    case 'bf16':
    case 'f16':
      interleaveChunks(rows, rowBytes, out);
      break;
    case 'q8_0':
      packQ8_0(rows, rowBytes, out);
      break;
    case 'q4_0':
      if (plan.ggmlNibbles) packBlocks(rows, rowBytes, out, 18, 2, Q4_0_QUAD_BYTES);
      else packQ4_0(rows, rowBytes, out);
      break;
    case 'q4_k':
      packQ4K(rows, rowBytes, out);
      break;
    case 'block':
      plan.block!.pack(rows, rowBytes, out);
      break;
    default:
      throw new Error(`packUnit: plan kind ${plan.kind} is not packed by units`);
  }
}

/** 4 rows of `rowBytes` (row r at tmp[r·rowBytes]) → per 16-byte chunk, the 4 rows' chunks (a row's last chunk zero-padded). */
function interleaveChunks(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  // in 16-bit units (f16/bf16/f32 rows are even): 8 per chunk; padding stays zero
  const t16 = u16View(tmp);
  const o16 = u16View(out);
  const rowH = rowBytes >> 1;
  const full = rowH >> 3;
  for (let r = 0; r < 4; r++) {
    const base = r * rowH;
    for (let c = 0, o = r * 8, i = base; c < full; c++, o += 32, i += 8) {
      o16[o] = t16[i]!;
      o16[o + 1] = t16[i + 1]!;
      o16[o + 2] = t16[i + 2]!;
      o16[o + 3] = t16[i + 3]!;
      o16[o + 4] = t16[i + 4]!;
      o16[o + 5] = t16[i + 5]!;
      o16[o + 6] = t16[i + 6]!;
      o16[o + 7] = t16[i + 7]!;
    }
    for (let k = 0, o = full * 32 + r * 8, i = base + full * 8; k < rowH - full * 8; k++) o16[o + k] = t16[i + k]!;
  }
}

/**
 * Q8_0 blocks (f16 d, 32 int8) of 8 rows: octet-block = 8 scales, then for each input pair p the
 * 8 rows' values 2p, 2p+1 (rows 0–3 are the unit's first quad, 4–7 its second).
 */
function packQ8_0(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  // rows in 16-bit units (a scale, or an input pair; blocks are 17 of them), written as 32-bit
  // words of two rows' units (octet-blocks are 68 words; `out` is 4-aligned, see packQuads)
  const t16 = u16View(tmp);
  const o32 = u32View(out);
  const rowH = rowBytes >> 1;
  const nb = rowBytes / 34;
  for (let b = 0; b < nb; b++) {
    const o = b * 68;
    for (let r = 0; r < 8; r += 2) {
      const s = r * rowH + b * 17;
      const t = s + rowH;
      const h = o + (r >> 1);
      o32[h] = t16[s]! | (t16[t]! << 16);
      for (let p = 1, k = h + 4; p <= 16; p++, k += 4) o32[k] = t16[s + p]! | (t16[t + p]! << 16);
    }
  }
}

/** A Uint16Array over the same bytes (offset and length even: every packed unit and row here is). */
export function u16View(a: Uint8Array): Uint16Array {
  return new Uint16Array(a.buffer, a.byteOffset, a.byteLength >>> 1);
}

/** A Uint32Array over the same bytes (offset a multiple of 4; a trailing partial word is left out). */
export function u32View(a: Uint8Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.byteLength >>> 2);
}

/** Bytes 0, 1 (pairLo) or 2, 3 (pairHi) of a word as 16-bit lanes: byte 0 (2) at bit 0, byte 1 (3) at bit 16. */
const pairLo = (w: number): number => (w & 0xff) | ((w & 0xff00) << 8);
const pairHi = (w: number): number => ((w >>> 16) & 0xff) | ((w >>> 8) & 0xff0000);

/** A DataView over a byte array (stored blocks sit at any alignment). */
const viewOf = (a: Uint8Array): DataView => new DataView(a.buffer, a.byteOffset, a.byteLength);

/** Q4_0 blocks (f16 d, 16 bytes: value l low nibble, 16 + l high): quad-block = 4 scales, then per row 16 bytes of nibble lanes. */
function packQ4_0(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(tmp);
  const o16 = u16View(out);
  const o32 = u32View(out);
  const nb = rowBytes / 18;
  for (let b = 0; b < nb; b++) {
    const o = b * Q4_0_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 18;
      o16[(o >> 1) + r] = dv.getUint16(s, true);
      // lane i: values i, 8 + i from the low nibbles of qs[i], qs[8 + i]; 16 + i, 24 + i from their
      // high nibbles; lanes i, i + 1 as one word
      const h = (o + 8 + 16 * r) >> 2;
      for (let k = 0; k < 2; k++) {
        const a = dv.getUint32(s + 2 + 4 * k, true);
        const c = dv.getUint32(s + 10 + 4 * k, true);
        const a0 = pairLo(a);
        const c0 = pairLo(c);
        const a1 = pairHi(a);
        const c1 = pairHi(c);
        o32[h + 2 * k] = (a0 & 0xf000f) | ((c0 & 0xf000f) << 4) | ((a0 & 0xf000f0) << 4) | ((c0 & 0xf000f0) << 8);
        o32[h + 2 * k + 1] = (a1 & 0xf000f) | ((c1 & 0xf000f) << 4) | ((a1 & 0xf000f0) << 4) | ((c1 & 0xf000f0) << 8);
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

/**
 * ggml get_scale_min_k4 for all 8 sub-blocks: the 6-bit scales and mins from the 12 packed bytes
 * at q[p] into sc[at..at+7] and m[at..at+7].
 */
export function scalesMinsK4(q: Uint8Array, p: number, sc: Uint8Array, m: Uint8Array, at: number): void {
  for (let j = 0; j < 4; j++) {
    const a = q[p + j]!;
    const b = q[p + j + 4]!;
    const c = q[p + j + 8]!;
    sc[at + j] = a & 63;
    m[at + j] = b & 63;
    sc[at + 4 + j] = (c & 15) | ((a >> 6) << 4);
    m[at + 4 + j] = (c >> 4) | ((b >> 6) << 4);
  }
}

/** One row's 6-bit scales and mins (scalesMinsK4). */
const kSc = new Uint8Array(8);
const kM = new Uint8Array(8);

function packQ4K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const dv = viewOf(tmp);
  const o16 = u16View(out);
  const o32 = u32View(out);
  const nsb = rowBytes / 144;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q4K_QUAD_BYTES;
    const oh = o >> 1;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 144;
      o16[oh + r] = dv.getUint16(s, true); // d
      o16[oh + 4 + r] = dv.getUint16(s + 2, true); // dmin
      scalesMinsK4(tmp, s + 4, kSc, kM, 0);
      for (let j = 0; j < 8; j++) {
        out[o + 16 + 8 * r + j] = kSc[j]!;
        out[o + 48 + 4 * j + r] = kM[j]!;
      }
      // ggml: qs[32c + l] holds value 64c + l (low nibble) and 64c + 32 + l (high nibble), so
      // sub-block j's values are the (j & 1 ? high : low) nibbles of qs[32·(j >> 1) + 0..31];
      // nibble lanes as packNibbleLanes, both sub-blocks of a qs run at once, lanes i, i + 1 as one word
      for (let c = 0; c < 4; c++) {
        const from = s + 16 + 32 * c;
        const lo = ((o + 80 + 128 * r) >> 2) + 8 * c;
        for (let k = 0; k < 2; k++) {
          const w0 = dv.getUint32(from + 4 * k, true);
          const w1 = dv.getUint32(from + 8 + 4 * k, true);
          const w2 = dv.getUint32(from + 16 + 4 * k, true);
          const w3 = dv.getUint32(from + 24 + 4 * k, true);
          for (let half = 0; half < 2; half++) {
            const a = half ? pairHi(w0) : pairLo(w0);
            const b8 = half ? pairHi(w1) : pairLo(w1);
            const c16 = half ? pairHi(w2) : pairLo(w2);
            const d = half ? pairHi(w3) : pairLo(w3);
            const i = lo + 2 * k + half;
            o32[i] = (a & 0xf000f) | ((b8 & 0xf000f) << 4) | ((c16 & 0xf000f) << 8) | ((d & 0xf000f) << 12);
            o32[i + 4] = ((a >>> 4) & 0xf000f) | (b8 & 0xf000f0) | ((c16 & 0xf000f0) << 4) | ((d & 0xf000f0) << 8);
          }
        }
      }
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
