/**
 * The repackers as they were before the fast rewrite (byte loops, per-value helpers): slow but
 * plainly readable, kept as the reference the fast packers are tested against (pack-fast.test.ts).
 * Each takes 4 stored rows (row r at rows[r·rowBytes]) and fills `out` (zeroed) like
 * BlockFormat.pack; q8_0 takes 8 rows.
 */
import { KSIGNS_IQ2XS } from '../src/tensor/iq-tables.js';

const Q8_0_QUAD_BYTES = 136;
const Q4_0_QUAD_BYTES = 72;
const Q4K_QUAD_BYTES = 592;

// ---------------------------------------------------------------------------------------------
// layout.ts
/** 4 rows of `rowBytes` (row r at tmp[r·rowBytes]) → per 16-byte chunk, the 4 rows' chunks (a row's last chunk zero-padded). */
export function interleaveChunks(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
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
export function packQ8_0(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
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
export function packQ4_0(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
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
export function packBlocks(tmp: Uint8Array, rowBytes: number, out: Uint8Array, blockBytes: number, headBytes: number, quadBlockBytes: number): void {
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

export function packQ4K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
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

// ---------------------------------------------------------------------------------------------
// q6k.ts
/** The unsigned 6-bit code of value v (0..255) of a stored Q6_K block at `at`. */
function code(src: Uint8Array, at: number, v: number): number {
  const n = v >> 7;
  const l = v & 31;
  const quarter = (v >> 5) & 3;
  const ql = src[at + 64 * n + l + 32 * (quarter & 1)]!;
  const qh = src[at + 128 + 32 * n + l]!;
  return ((quarter >> 1 ? ql >> 4 : ql & 15) | (((qh >> (2 * quarter)) & 3) << 4));
}

export function packQ6K(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 210;
  const o16 = new Uint16Array(out.buffer, out.byteOffset, out.byteLength >>> 1);
  for (let b = 0; b < nb; b++) {
    const o = b * 840;
    const at = (r: number) => r * rowBytes + b * 210;
    for (let r = 0; r < 4; r++) {
      out[o + 2 * r] = rows[at(r) + 208]!; // d
      out[o + 2 * r + 1] = rows[at(r) + 209]!;
      for (let j = 0; j < 16; j++) out[o + 8 + 4 * j + r] = rows[at(r) + 192 + j]!;
    }
    for (let j = 0; j < 16; j++) {
      const h = (o + 72 + 48 * j) >>> 1; // in u16 units
      for (let i = 0; i < 8; i++) {
        const c = (r: number, g: number) => code(rows, at(r), 16 * j + 8 * g + i);
        o16[h + i] = c(0, 0) | (c(0, 1) << 6) | ((c(2, 0) & 15) << 12);
        o16[h + 8 + i] = c(1, 0) | (c(1, 1) << 6) | ((c(2, 1) & 15) << 12);
        o16[h + 16 + i] = c(3, 0) | (c(3, 1) << 6) | ((c(2, 0) >> 4) << 12) | ((c(2, 1) >> 4) << 14);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// kquants.ts
const Q2K_QUAD_BYTES = 336;
function packQ2K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nsb = rowBytes / 84;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q2K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 84;
      out[o + 2 * r] = tmp[s + 80]!;
      out[o + 2 * r + 1] = tmp[s + 81]!;
      out[o + 8 + 2 * r] = tmp[s + 82]!;
      out[o + 8 + 2 * r + 1] = tmp[s + 83]!;
      for (let g = 0; g < 16; g++) out[o + 16 + 4 * g + r] = tmp[s + g]!;
      const code = (i: number) => (tmp[s + 16 + 32 * (i >> 7) + (i & 31)]! >> (2 * ((i >> 5) & 3))) & 3;
      for (let g = 0; g < 16; g++) {
        for (let e = 0; e < 2; e++) {
          for (let h = 0; h < 2; h++) {
            let byte = 0;
            for (let k = 0; k < 4; k++) byte |= code(16 * g + 2 * (4 * h + k) + e) << (2 * k);
            out[o + 80 + 16 * g + 8 * h + 2 * r + e] = byte;
          }
        }
      }
    }
  }
}
const Q3K_QUAD_BYTES = 456;
function packQ3K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nsb = rowBytes / 110;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q3K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 110;
      out[o + 2 * r] = tmp[s + 108]!;
      out[o + 2 * r + 1] = tmp[s + 109]!;
      const sc = s + 96;
      for (let g = 0; g < 16; g++) {
        const low = g < 8 ? tmp[sc + g]! & 15 : tmp[sc + g - 8]! >> 4;
        const high = (tmp[sc + 8 + (g & 3)]! >> (2 * (g >> 2))) & 3;
        out[o + 8 + 4 * g + r] = ((low | (high << 4)) - 32) & 255;
      }
      const q3 = (i: number) => {
        const l = i & 31;
        const q2 = (tmp[s + 32 + 32 * (i >> 7) + l]! >> (2 * ((i >> 5) & 3))) & 3;
        return q2 | (((tmp[s + l]! >> (i >> 5)) & 1) << 2);
      };
      for (let g = 0; g < 16; g++) {
        for (let e = 0; e < 2; e++) {
          const p = (k: number) => q3(16 * g + 2 * k + e);
          const L = 2 * r + e;
          const a = p(0) | (p(1) << 3) | (p(2) << 6) | (p(3) << 9) | (p(4) << 12) | ((p(7) & 1) << 15);
          const at = o + 72 + 24 * g;
          out[at + 2 * L] = a & 255;
          out[at + 2 * L + 1] = a >> 8;
          out[at + 16 + L] = p(5) | ((p(7) >> 1) << 3) | (p(6) << 5);
        }
      }
    }
  }
}
const Q5K_QUAD_BYTES = 720;
function packQ5K(tmp: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nsb = rowBytes / 176;
  for (let b = 0; b < nsb; b++) {
    const o = b * Q5K_QUAD_BYTES;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 176;
      out[o + 2 * r] = tmp[s]!;
      out[o + 2 * r + 1] = tmp[s + 1]!;
      out[o + 8 + 2 * r] = tmp[s + 2]!;
      out[o + 8 + 2 * r + 1] = tmp[s + 3]!;
      for (let j = 0; j < 8; j++) {
        const [sc, m] = scaleMinK4(j, tmp, s + 4);
        out[o + 16 + 8 * j + r] = sc;
        out[o + 16 + 8 * j + 4 + r] = m;
      }
      for (let j = 0; j < 8; j++) {
        const code = (l: number) => ((tmp[s + 48 + 32 * (j >> 1) + l]! >> (4 * (j & 1))) & 15) | (((tmp[s + 16 + l]! >> j) & 1) << 4);
        for (let e = 0; e < 2; e++) {
          const p = (k: number) => code(2 * k + e);
          const L = 2 * r + e;
          for (let w = 0; w < 5; w++) {
            const lane = p(3 * w) | (((p(15) >> (4 - w)) & 1) << 5) | (p(3 * w + 1) << 6) | (p(3 * w + 2) << 11);
            const at = o + 80 + 80 * j + 16 * w + 2 * L;
            out[at] = lane & 255;
            out[at + 1] = lane >> 8;
          }
        }
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// legacy.ts
// packing helpers: value (row r, input i) of a stored block → lane positions

/** A 4-row block's values: v[32·r + i] for row r (0..3), input i (0..31). */
type Vals = Uint8Array;

/** 4-bit codes: raw vector u, lane 2j + e, nibble k = row j, input 8u + 2k + e (pair 4u + k). */
function packNibblePairs(v: Vals, out: Uint8Array, at: number): void {
  for (let l = 0; l < 8; l++) {
    const s = 32 * (l >> 1) + (l & 1);
    for (let u = 0; u < 4; u++) {
      const i = s + 8 * u;
      const o = at + 16 * u + 2 * l;
      out[o] = v[i]! | (v[i + 2]! << 4);
      out[o + 1] = v[i + 4]! | (v[i + 6]! << 4);
    }
  }
}

/**
 * 5-bit codes: raw vector u (0..4), lane 2j + e: bits 0-4 = row j, input 6u + e (pair 3u); 5-9 =
 * input 6u + 2 + e; 11-15 = input 6u + 4 + e; bit 10 = bit u of input 30 + e (pair 15).
 */
function packFivePairs(v: Vals, out: Uint8Array, at: number): void {
  for (let l = 0; l < 8; l++) {
    const s = 32 * (l >> 1) + (l & 1);
    const last = v[s + 30]!;
    for (let u = 0; u < 5; u++) {
      const i = s + 6 * u;
      const word = v[i]! | (v[i + 2]! << 5) | (((last >> u) & 1) << 10) | (v[i + 4]! << 11);
      const o = at + 16 * u + 2 * l;
      out[o] = word & 255;
      out[o + 1] = word >> 8;
    }
  }
}

/**
 * IQ4 indices: raw vector u, byte 2l + c of lane l = 2j + e: low nibble = row j, input 8u + 2c + e
 * (pair 4u + c), high nibble = input 8u + 4 + 2c + e (pair 4u + 2 + c).
 */
function packIndexPairs(v: Vals, out: Uint8Array, at: number): void {
  for (let l = 0; l < 8; l++) {
    const s = 32 * (l >> 1) + (l & 1);
    for (let u = 0; u < 4; u++) {
      const i = s + 8 * u;
      const o = at + 16 * u + 2 * l;
      out[o] = v[i]! | (v[i + 4]! << 4);
      out[o + 1] = v[i + 2]! | (v[i + 6]! << 4);
    }
  }
}

/** ggml's 4-bit qs[16] at p → v[o..o+31]: value i < 16 is the low nibble of qs[i], 16 + i its high nibble. */
function nibbles(src: Uint8Array, p: number, v: Vals, o: number): void {
  for (let i = 0; i < 16; i++) {
    const q = src[p + i]!;
    v[o + i] = q & 15;
    v[o + 16 + i] = q >> 4;
  }
}

/** nibbles, plus ggml's qh (u32 little-endian at h) as the 5th bit of each value. */
function fiveBits(src: Uint8Array, p: number, h: number, v: Vals, o: number): void {
  nibbles(src, p, v, o);
  const qh = (src[h]! | (src[h + 1]! << 8) | (src[h + 2]! << 16) | (src[h + 3]! << 24)) >>> 0;
  for (let i = 0; i < 32; i++) v[o + i]! |= ((qh >>> i) & 1) << 4;
}

/** One 2-byte field (an f16 scale) of a stored block → out[o]. */
function packHead(rows: Uint8Array, s: number, out: Uint8Array, o: number): void {
  out[o] = rows[s]!;
  out[o + 1] = rows[s + 1]!;
}

// ---------------------------------------------------------------------------------------------
// codes


/** block_q4_1 { d, m: f16; qs[16] } (20 bytes) → 80: d[4], m[4], nibble pairs. */
function packQ4_1(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const v = new Uint8Array(128);
  for (let p = 0, o = 0; p < rowBytes; p += 20, o += 80) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(rows, s, out, o + 2 * r);
      packHead(rows, s + 2, out, o + 8 + 2 * r);
      nibbles(rows, s + 4, v, 32 * r);
    }
    packNibblePairs(v, out, o + 16);
  }
}

/** block_q5_0 { d: f16; qh: u32; qs[16] } (22 bytes) → 88: d[4], 5-bit fields. */
function packQ5_0(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const v = new Uint8Array(128);
  for (let p = 0, o = 0; p < rowBytes; p += 22, o += 88) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(rows, s, out, o + 2 * r);
      fiveBits(rows, s + 6, s + 2, v, 32 * r);
    }
    packFivePairs(v, out, o + 8);
  }
}

/** block_q5_1 { d, m: f16; qh: u32; qs[16] } (24 bytes) → 96: d[4], m[4], 5-bit fields. */
function packQ5_1(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const v = new Uint8Array(128);
  for (let p = 0, o = 0; p < rowBytes; p += 24, o += 96) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(rows, s, out, o + 2 * r);
      packHead(rows, s + 2, out, o + 8 + 2 * r);
      fiveBits(rows, s + 8, s + 4, v, 32 * r);
    }
    packFivePairs(v, out, o + 16);
  }
}

/** block_iq4_nl { d: f16; qs[16] } (18 bytes) → 72: d[4], index pairs. */
function packIQ4_NL(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const v = new Uint8Array(128);
  for (let p = 0, o = 0; p < rowBytes; p += 18, o += 72) {
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + p;
      packHead(rows, s, out, o + 2 * r);
      nibbles(rows, s + 2, v, 32 * r);
    }
    packIndexPairs(v, out, o + 8);
  }
}

/** IQ4_XS quad-superblock: d[4] (f16), (ls − 32)[sub 8][row 4] i8, then per sub-block 64 bytes of index pairs. */
const IQ4XS_DATA = 40;
const IQ4XS_QB = IQ4XS_DATA + 8 * 64;

function packIQ4_XS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 136;
  const v = new Uint8Array(128);
  for (let b = 0; b < nb; b++) {
    const o = b * IQ4XS_QB;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 136;
      packHead(rows, s, out, o + 2 * r);
      const sh = rows[s + 2]! | (rows[s + 3]! << 8);
      for (let ib = 0; ib < 8; ib++) {
        const ls = ((rows[s + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
        out[o + 8 + 4 * ib + r] = (ls - 32) & 255;
      }
    }
    for (let ib = 0; ib < 8; ib++) {
      for (let r = 0; r < 4; r++) nibbles(rows, r * rowBytes + b * 136 + 8 + 16 * ib, v, 32 * r);
      packIndexPairs(v, out, o + IQ4XS_DATA + 64 * ib);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// iq2.ts
const u32 = (a: Uint8Array, p: number): number => (a[p]! | (a[p + 1]! << 8) | (a[p + 2]! << 16) | (a[p + 3]! << 24)) >>> 0;
const XXS_QB = 280;
function packXXS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 66;
  for (let b = 0; b < nb; b++) {
    const o = b * XXS_QB;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 66;
      out[o + 2 * r] = rows[s]!;
      out[o + 2 * r + 1] = rows[s + 1]!;
      for (let ib = 0; ib < 8; ib++) {
        const q = s + 2 + 8 * ib;
        const aux1 = u32(rows, q + 4);
        out[o + 8 + 4 * (ib >> 1) + r]! |= (aux1 >>> 28) << (4 * (ib & 1));
        for (let l = 0; l < 4; l++) {
          const k = 4 * ib + l;
          out[o + 24 + 8 * k + r] = rows[q + l]!;
          out[o + 24 + 8 * k + 4 + r] = KSIGNS_IQ2XS[(aux1 >>> (7 * l)) & 127]!;
        }
      }
    }
  }
}
const XS_QB = 296;
function packXS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 74;
  for (let b = 0; b < nb; b++) {
    const o = b * XS_QB;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 74;
      out[o + 2 * r] = rows[s]!;
      out[o + 2 * r + 1] = rows[s + 1]!;
      for (let j = 0; j < 8; j++) out[o + 8 + 4 * j + r] = rows[s + 66 + j]!;
      for (let k = 0; k < 32; k++) {
        out[o + 40 + 8 * k + 2 * r] = rows[s + 2 + 2 * k]!;
        out[o + 40 + 8 * k + 2 * r + 1] = rows[s + 3 + 2 * k]!;
      }
    }
  }
}
const S_QB = 328;
function packS(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 82;
  for (let b = 0; b < nb; b++) {
    const o = b * S_QB;
    for (let r = 0; r < 4; r++) {
      const s = r * rowBytes + b * 82;
      out[o + 2 * r] = rows[s]!;
      out[o + 2 * r + 1] = rows[s + 1]!;
      for (let j = 0; j < 8; j++) out[o + 8 + 4 * j + r] = rows[s + 74 + j]!;
      for (let k = 0; k < 32; k++) {
        const p = o + 40 + 9 * k;
        out[p + r] = rows[s + 2 + k]!;
        out[p + 4 + r] = rows[s + 34 + k]!;
        out[p + 8]! |= ((rows[s + 66 + (k >> 2)]! >> (2 * (k & 3))) & 3) << (2 * r);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// iq3-iq1.ts
// bit fields shared by the packers and the kernels

/** ORs the n-bit value v into `out` at bit `pos` (LSB first; n ≤ 24; `out` starts zeroed). */
function putBits(out: Uint8Array, pos: number, v: number, n: number): void {
  const b = pos >> 3;
  const w = v << (pos & 7);
  out[b] |= w & 255;
  if ((pos & 7) + n > 8) out[b + 1] |= (w >>> 8) & 255;
  if ((pos & 7) + n > 16) out[b + 2] |= (w >>> 16) & 255;
  if ((pos & 7) + n > 24) out[b + 3] |= (w >>> 24) & 255;
}

/** A bit field of a packed step: `bits` bits at bit `pos` from the step's first byte. */
interface Field {
  readonly pos: number;
  readonly bits: number;
}
interface Iq3Spec {
  readonly storedBytes: number;
  readonly gBytes: number;
  readonly idxBits: 8 | 9;
  readonly a: (r: number) => Field;
  readonly b: (r: number) => Field;
  readonly s: (r: number) => Field;
  readonly read: (src: Uint8Array, p: number, ib: number, o: Int32Array) => void;
}
const bit = (v: number, j: number): number => (v >> j) & 1;
const IQ3_SB_HEADER = 2;
const iq3SubBytes = (s: Iq3Spec): number => IQ3_SB_HEADER + 4 * s.gBytes;
const iq3QuadBytes = (s: Iq3Spec): number => 8 + 8 * iq3SubBytes(s);

function packIq3(s: Iq3Spec, rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const QB = iq3QuadBytes(s);
  const SB = iq3SubBytes(s);
  const nb = rowBytes / s.storedBytes;
  const f = new Int32Array(13);
  const pos = [0, 1, 2, 3].map((r) => [s.a(r).pos, s.b(r).pos, s.s(r).pos] as const);
  for (let b = 0; b < nb; b++) {
    const o = b * QB;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * s.storedBytes;
      const [pa, pb, ps] = pos[r]!;
      out[o + 2 * r] = rows[p]!;
      out[o + 2 * r + 1] = rows[p + 1]!;
      for (let ib = 0; ib < 8; ib++) {
        const sb = o + 8 + ib * SB;
        s.read(rows, p, ib, f);
        putBits(out, 8 * sb + 4 * r, f[0]!, 4);
        for (let l = 0; l < 4; l++) {
          const g = 8 * (sb + IQ3_SB_HEADER + l * s.gBytes);
          putBits(out, g + pa, f[1 + 3 * l]!, s.idxBits);
          putBits(out, g + pb, f[2 + 3 * l]!, s.idxBits);
          putBits(out, g + ps, f[3 + 3 * l]!, 8);
        }
      }
    }
  }
}

const u32At = (src: Uint8Array, p: number): number => (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;
const IQ3S: Iq3Spec = {
  storedBytes: 110,
  gBytes: 13,
  idxBits: 9,
  a: (r) => ({ pos: 18 * r, bits: 9 }),
  b: (r) => ({ pos: 18 * r + 9, bits: 9 }),
  s: (r) => ({ pos: 72 + 8 * r, bits: 8 }),
  read: (src, p, ib, o) => {
    o[0] = (src[p + 106 + (ib >> 1)]! >> (4 * (ib & 1))) & 15;
    const qh = src[p + 66 + ib]!;
    for (let j = 0; j < 8; j++) o[1 + 3 * (j >> 1) + (j & 1)] = src[p + 2 + 8 * ib + j]! | (bit(qh, j) << 8);
    for (let l = 0; l < 4; l++) o[3 + 3 * l] = src[p + 74 + 4 * ib + l]!;
  },
};

/**
 * IQ3_XXS (98 bytes: d, qs[64] grid indices, u32[8] of 4 seven-bit sign codes and a 4-bit scale).
 * Quad-block 408 bytes (4 × 98 + 16, +4.1 %): per group 12 bytes, the 4 rows' two 8-bit indices,
 * then their sign bytes (the 7-bit codes expanded by KSIGNS, so IQ3_S's sign table serves and the
 * group stride is whole bytes). The grid table holds grid/2 (every level is even): i32 bound of a
 * row's sum over a sub-block, times its scale: 32 · 31 · 31 · 32767 = 1.0e9.
 */
const IQ3XXS: Iq3Spec = {
  storedBytes: 98,
  gBytes: 12,
  idxBits: 8,
  a: (r) => ({ pos: 16 * r, bits: 8 }),
  b: (r) => ({ pos: 16 * r + 8, bits: 8 }),
  s: (r) => ({ pos: 64 + 8 * r, bits: 8 }),
  read: (src, p, ib, o) => {
    const aux = u32At(src, p + 66 + 4 * ib);
    o[0] = aux >>> 28;
    for (let l = 0; l < 4; l++) {
      o[1 + 3 * l] = src[p + 2 + 8 * ib + 2 * l]!;
      o[2 + 3 * l] = src[p + 3 + 8 * ib + 2 * l]!;
      o[3 + 3 * l] = KSIGNS_IQ2XS[(aux >>> (7 * l)) & 127]!;
    }
  },
};
const iq1Idx = (r: number): Field => ({ pos: 11 * r, bits: 11 });
const IQ1_NIB: Field = { pos: 44, bits: 4 };
function packIq1S(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 50;
  for (let b = 0; b < nb; b++) {
    const o = b * 200;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * 50;
      out[o + 2 * r] = rows[p]!;
      out[o + 2 * r + 1] = rows[p + 1]!;
      for (let ib = 0; ib < 8; ib++) {
        const qh = rows[p + 34 + 2 * ib]! | (rows[p + 35 + 2 * ib]! << 8);
        const sb = 8 * (o + 8 + 24 * ib);
        putBits(out, sb + 48 * r + IQ1_NIB.pos, qh >> 12, 4);
        for (let l = 0; l < 4; l++) putBits(out, sb + 48 * l + iq1Idx(r).pos, rows[p + 2 + 4 * ib + l]! | (((qh >> (3 * l)) & 7) << 8), 11);
      }
    }
  }
}

function packIq1M(rows: Uint8Array, rowBytes: number, out: Uint8Array): void {
  const nb = rowBytes / 56;
  const u16 = (p: number) => rows[p]! | (rows[p + 1]! << 8);
  for (let b = 0; b < nb; b++) {
    const o = b * 224;
    for (let r = 0; r < 4; r++) {
      const p = r * rowBytes + b * 56;
      const s = [0, 1, 2, 3].map((k) => u16(p + 48 + 2 * k));
      const d = (s[0]! >> 12) | ((s[1]! >> 8) & 0x00f0) | ((s[2]! >> 4) & 0x0f00) | (s[3]! & 0xf000);
      out[o + 2 * r] = d & 255;
      out[o + 2 * r + 1] = d >> 8;
      for (let k = 0; k < 32; k++) {
        const sb = 8 * (o + 8 + 27 * (k >> 2));
        const h = (k >> 1) & 1;
        if ((k & 1) === 0) putBits(out, sb + 12 * h + 3 * r, (s[k >> 3]! >> (3 * ((k >> 1) & 3))) & 7, 3);
        const nib = (rows[p + 32 + (k >> 1)]! >> (4 * (k & 1))) & 15;
        const g = sb + 24 + 48 * (k & 3);
        putBits(out, g + iq1Idx(r).pos, rows[p + k]! | ((nib & 7) << 8), 11);
        putBits(out, g + IQ1_NIB.pos + r, nib >> 3, 1);
      }
    }
  }
}

/** The reference packer of each block format (BlockFormat.pack's signature), by ggml type. */
export const REFERENCE_BLOCK_PACK: Readonly<Record<string, (rows: Uint8Array, rowBytes: number, out: Uint8Array) => void>> = {
  q6_k: packQ6K,
  q2_k: packQ2K,
  q3_k: packQ3K,
  q5_k: packQ5K,
  q4_1: packQ4_1,
  q5_0: packQ5_0,
  q5_1: packQ5_1,
  iq4_nl: packIQ4_NL,
  iq4_xs: packIQ4_XS,
  iq2_xxs: packXXS,
  iq2_xs: packXS,
  iq2_s: packS,
  iq3_s: (rows, rowBytes, out) => packIq3(IQ3S, rows, rowBytes, out),
  iq3_xxs: (rows, rowBytes, out) => packIq3(IQ3XXS, rows, rowBytes, out),
  iq1_s: packIq1S,
  iq1_m: packIq1M,
};
