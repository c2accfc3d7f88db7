/**
 * GGML tensor types: block sizes, byte sizes and bit-exact dequantisation (the oracle every fast
 * kernel is tested against). Names are ggml's, lower case (`q8_0`, `q4_k`, …).
 *
 * "Bit-exact" means: the same float32 values as ggml's dequantize_row_* and gguf-py's quants.py,
 * which compute every intermediate (d·scale, d·scale·q, …) in float32. Each multi-step formula
 * below rounds its intermediates with Math.fround in the same order; a one-step product is rounded
 * by the Float32Array store itself.
 *
 * Block layouts (QK_K = 256 values per super-block) follow ggml-common.h's block_* structs.
 */
import { UnsupportedError } from '../errors.js';
import { f16Table65536 } from './dtype.js';
import { IQ1S_DELTA, iqGrid, KSIGNS_IQ2XS, KVALUES_IQ4NL } from './iq-tables.js';

export interface GgmlTypeInfo {
  readonly name: string;
  /** ggml_type enum value as stored in GGUF tensor infos. */
  readonly id: number;
  /** Values per block. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly typeSize: number;
  /** Whether dequantizeGgml implements this type (others can be listed and sized, not used). */
  readonly dequantizable: boolean;
}

const QK_K = 256;

function t(name: string, id: number, blockSize: number, typeSize: number, dequantizable = true): GgmlTypeInfo {
  return Object.freeze({ name, id, blockSize, typeSize, dequantizable });
}

/** Every ggml type a GGUF file may name (ggml.h's ggml_type), with its block geometry. */
export const GGML_TYPES: readonly GgmlTypeInfo[] = Object.freeze([
  t('f32', 0, 1, 4),
  t('f16', 1, 1, 2),
  t('q4_0', 2, 32, 18),
  t('q4_1', 3, 32, 20),
  t('q5_0', 6, 32, 22),
  t('q5_1', 7, 32, 24),
  t('q8_0', 8, 32, 34),
  t('q8_1', 9, 32, 36, false),
  t('q2_k', 10, QK_K, 84),
  t('q3_k', 11, QK_K, 110),
  t('q4_k', 12, QK_K, 144),
  t('q5_k', 13, QK_K, 176),
  t('q6_k', 14, QK_K, 210),
  t('q8_k', 15, QK_K, 292, false),
  t('iq2_xxs', 16, QK_K, 66),
  t('iq2_xs', 17, QK_K, 74),
  t('iq3_xxs', 18, QK_K, 98),
  t('iq1_s', 19, QK_K, 50),
  t('iq4_nl', 20, 32, 18),
  t('iq3_s', 21, QK_K, 110),
  t('iq2_s', 22, QK_K, 82),
  t('iq4_xs', 23, QK_K, 136),
  t('i8', 24, 1, 1, false),
  t('i16', 25, 1, 2, false),
  t('i32', 26, 1, 4, false),
  t('i64', 27, 1, 8, false),
  t('f64', 28, 1, 8, false),
  t('iq1_m', 29, QK_K, 56),
  t('bf16', 30, 1, 2),
  t('tq1_0', 34, QK_K, 54, false),
  t('tq2_0', 35, QK_K, 66, false),
  t('mxfp4', 39, 32, 17, false),
  t('nvfp4', 40, 64, 36, false),
  t('q1_0', 41, 128, 18, false),
]);

const BY_NAME = new Map(GGML_TYPES.map((x) => [x.name, x]));
const BY_ID = new Map(GGML_TYPES.map((x) => [x.id, x]));

/** The type with this GGUF id or name, or undefined (readers turn that into a FormatError with an offset). */
export function findGgmlType(type: string | number): GgmlTypeInfo | undefined {
  return typeof type === 'number' ? BY_ID.get(type) : BY_NAME.get(type);
}

/** Looks a type up by name or GGUF id; unknown → UnsupportedError naming it (and the tensor, when given). */
export function ggmlType(type: string | number, tensor?: string): GgmlTypeInfo {
  const found = findGgmlType(type);
  if (!found) throw new UnsupportedError(String(type), `${tensor ? `tensor ${tensor}: ` : ''}ggml type ${type} is not supported`);
  return found;
}

/** Like ggmlType, but also requires a dequantisation (a type the model can compute with). */
export function requireDequantizable(type: string | number, tensor?: string): GgmlTypeInfo {
  const info = ggmlType(type, tensor);
  if (!info.dequantizable) {
    throw new UnsupportedError(info.name, `${tensor ? `tensor ${tensor}: ` : ''}ggml type ${info.name} (id ${info.id}) is not supported for computation`);
  }
  return info;
}

/** Bytes of a row of n values (n must be a multiple of the block size). */
export function ggmlRowBytes(type: string, n: number): number {
  const info = ggmlType(type);
  if (!Number.isSafeInteger(n) || n < 0 || n % info.blockSize !== 0) {
    throw new UnsupportedError(info.name, `a row of ${n} values is not a whole number of ${info.name} blocks of ${info.blockSize}`);
  }
  return (n / info.blockSize) * info.typeSize;
}

type BlockDecoder = (src: Uint8Array, p: number, out: Float32Array, o: number, blocks: number) => void;

const fr = Math.fround;

/** out[o + j] = ±round_f32(db · grid[g + j]) for j < n, negative where bit j of `signs` is set (the i-quants' sign masks). */
function signedGrid(out: Float32Array, o: number, db: number, grid: Int8Array, g: number, signs: number, n: number): void {
  for (let j = 0; j < n; j++) out[o + j] = fr(db * grid[g + j]!) * (signs & (1 << j) ? -1 : 1);
}
let H: Float32Array; // f16 bits → f32, built on first use

function f16At(src: Uint8Array, p: number): number {
  return H[src[p]! | (src[p + 1]! << 8)]!;
}

function u16At(src: Uint8Array, p: number): number {
  return src[p]! | (src[p + 1]! << 8);
}

function u32At(src: Uint8Array, p: number): number {
  return (src[p]! | (src[p + 1]! << 8) | (src[p + 2]! << 16) | (src[p + 3]! << 24)) >>> 0;
}

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

const DECODERS: Record<string, BlockDecoder> = {
  f32(src, p, out, o, n) {
    for (let i = 0; i < n; i++, p += 4) {
      u32Scratch[0] = u32At(src, p);
      out[o + i] = f32Scratch[0]!;
    }
  },
  f16(src, p, out, o, n) {
    for (let i = 0; i < n; i++, p += 2) out[o + i] = f16At(src, p);
  },
  bf16(src, p, out, o, n) {
    for (let i = 0; i < n; i++, p += 2) {
      u32Scratch[0] = u16At(src, p) << 16;
      out[o + i] = f32Scratch[0]!;
    }
  },

  // block_q4_0 { d: f16; qs[16] }: value j = d·((qs[j] & 15) − 8), value j+16 = d·((qs[j] >> 4) − 8)
  q4_0(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 18, o += 32) {
      const d = f16At(src, p);
      for (let j = 0; j < 16; j++) {
        const q = src[p + 2 + j]!;
        out[o + j] = d * ((q & 15) - 8);
        out[o + j + 16] = d * ((q >> 4) - 8);
      }
    }
  },
  // block_q4_1 { d, m: f16; qs[16] }: d·q + m
  q4_1(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 20, o += 32) {
      const d = f16At(src, p);
      const m = f16At(src, p + 2);
      for (let j = 0; j < 16; j++) {
        const q = src[p + 4 + j]!;
        out[o + j] = fr(d * (q & 15)) + m;
        out[o + j + 16] = fr(d * (q >> 4)) + m;
      }
    }
  },
  // block_q5_0 { d: f16; qh: u32 (5th bits); qs[16] }: d·(q − 16)
  q5_0(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 22, o += 32) {
      const d = f16At(src, p);
      const qh = u32At(src, p + 2);
      for (let j = 0; j < 16; j++) {
        const q = src[p + 6 + j]!;
        out[o + j] = d * (((q & 15) | (((qh >>> j) & 1) << 4)) - 16);
        out[o + j + 16] = d * (((q >> 4) | (((qh >>> (j + 16)) & 1) << 4)) - 16);
      }
    }
  },
  // block_q5_1 { d, m: f16; qh: u32; qs[16] }: d·q + m
  q5_1(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 24, o += 32) {
      const d = f16At(src, p);
      const m = f16At(src, p + 2);
      const qh = u32At(src, p + 4);
      for (let j = 0; j < 16; j++) {
        const q = src[p + 8 + j]!;
        out[o + j] = fr(d * ((q & 15) | (((qh >>> j) & 1) << 4))) + m;
        out[o + j + 16] = fr(d * ((q >> 4) | (((qh >>> (j + 16)) & 1) << 4))) + m;
      }
    }
  },
  // block_q8_0 { d: f16; qs: i8[32] }
  q8_0(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 34, o += 32) {
      const d = f16At(src, p);
      for (let j = 0; j < 32; j++) out[o + j] = d * ((src[p + 2 + j]! << 24) >> 24);
    }
  },

  // block_q2_K { scales[16] (low nibble scale, high nibble min); qs[64]; d, dmin: f16 }
  // value i: half h = i>>7, shift s = (i>>5)&3, l = i&31 → (qs[32h + l] >> 2s) & 3; group i>>4
  q2_k(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 84, o += QK_K) {
      const d = f16At(src, p + 80);
      const dmin = f16At(src, p + 82);
      for (let g = 0; g < 16; g++) {
        const sc = src[p + g]!;
        const dl = fr(d * (sc & 15));
        const ml = fr(dmin * (sc >> 4));
        for (let k = 0; k < 16; k++) {
          const i = 16 * g + k;
          const q = (src[p + 16 + 32 * (i >> 7) + (i & 31)]! >> (2 * ((i >> 5) & 3))) & 3;
          out[o + i] = fr(dl * q) - ml;
        }
      }
    }
  },
  // block_q3_K { hmask[32]; qs[64]; scales[12] (16 six-bit scales, offset 32); d: f16 }
  // low 2 bits as Q2_K; the high bit is bit (i>>5) of hmask[i&31], and a CLEAR bit subtracts 4
  q3_k(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 110, o += QK_K) {
      const d = f16At(src, p + 108);
      const s = p + 96;
      for (let g = 0; g < 16; g++) {
        const low = g < 8 ? src[s + g]! & 15 : src[s + g - 8]! >> 4;
        const high = (src[s + 8 + (g & 3)]! >> (2 * (g >> 2))) & 3;
        const dl = fr(d * ((low | (high << 4)) - 32));
        for (let k = 0; k < 16; k++) {
          const i = 16 * g + k;
          const l = i & 31;
          const q2 = (src[p + 32 + 32 * (i >> 7) + l]! >> (2 * ((i >> 5) & 3))) & 3;
          const hbit = (src[p + l]! >> (i >> 5)) & 1;
          out[o + i] = dl * (q2 - (hbit ? 0 : 4));
        }
      }
    }
  },
  // block_q4_K { d, dmin: f16; scales[12] (8 six-bit scale/min pairs); qs[128] }
  q4_k(src, p, out, o, nb) {
    const sm = new Uint8Array(2);
    for (let b = 0; b < nb; b++, p += 144, o += QK_K) {
      const d = f16At(src, p);
      const dmin = f16At(src, p + 2);
      for (let j = 0; j < 8; j++) {
        scaleMinK4(j, src, p + 4, sm);
        const d1 = fr(d * sm[0]!);
        const m1 = fr(dmin * sm[1]!);
        const q = p + 16 + 32 * (j >> 1);
        const shift = 4 * (j & 1);
        for (let l = 0; l < 32; l++) out[o + 32 * j + l] = fr(d1 * ((src[q + l]! >> shift) & 15)) - m1;
      }
    }
  },
  // block_q5_K { d, dmin: f16; scales[12]; qh[32] (bit j = 5th bit of sub-block j); qs[128] }
  q5_k(src, p, out, o, nb) {
    const sm = new Uint8Array(2);
    for (let b = 0; b < nb; b++, p += 176, o += QK_K) {
      const d = f16At(src, p);
      const dmin = f16At(src, p + 2);
      for (let j = 0; j < 8; j++) {
        scaleMinK4(j, src, p + 4, sm);
        const d1 = fr(d * sm[0]!);
        const m1 = fr(dmin * sm[1]!);
        const q = p + 48 + 32 * (j >> 1);
        const shift = 4 * (j & 1);
        for (let l = 0; l < 32; l++) {
          const v = ((src[q + l]! >> shift) & 15) | (((src[p + 16 + l]! >> j) & 1) << 4);
          out[o + 32 * j + l] = fr(d1 * v) - m1;
        }
      }
    }
  },
  // block_q6_K { ql[128]; qh[64]; scales: i8[16]; d: f16 }
  // value i: c = i>>7, l = i&63 → low nibble of ql[64c + l] (shift 4·((i>>6)&1)), two high bits
  // (qh[32c + (i&31)] >> 2·((i>>5)&3)) & 3; minus 32; scale group i>>4
  q6_k(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 210, o += QK_K) {
      const d = f16At(src, p + 208);
      for (let g = 0; g < 16; g++) {
        const dl = fr(d * ((src[p + 192 + g]! << 24) >> 24));
        for (let k = 0; k < 16; k++) {
          const i = 16 * g + k;
          const c = i >> 7;
          const lo = (src[p + 64 * c + (i & 63)]! >> (4 * ((i >> 6) & 1))) & 15;
          const hi = (src[p + 128 + 32 * c + (i & 31)]! >> (2 * ((i >> 5) & 3))) & 3;
          out[o + i] = dl * ((lo | (hi << 4)) - 32);
        }
      }
    }
  },

  // block_iq2_xxs { d: f16; qs: u16[32] } read as 8 pairs of u32 per 32 values: the first holds 4
  // grid indices (bytes), the second 4 seven-bit sign codes and a 4-bit scale in its top bits
  iq2_xxs(src, p, out, o, nb) {
    const grid = iqGrid('iq2xxs');
    for (let b = 0; b < nb; b++, p += 66) {
      const d = f16At(src, p);
      for (let ib = 0; ib < 8; ib++, o += 32) {
        const q = p + 2 + 8 * ib;
        const aux1 = u32At(src, q + 4);
        const db = fr(fr(d * (0.5 + (aux1 >>> 28))) * 0.25);
        for (let l = 0; l < 4; l++) {
          const signs = KSIGNS_IQ2XS[(aux1 >>> (7 * l)) & 127]!;
          const g = 8 * src[q + l]!;
          signedGrid(out, o + 8 * l, db, grid, g, signs, 8);
        }
      }
    }
  },
  // block_iq2_xs { d: f16; qs: u16[32] (9-bit grid index | 7-bit sign code << 9); scales[8] (nibbles per 16 values) }
  iq2_xs(src, p, out, o, nb) {
    const grid = iqGrid('iq2xs');
    for (let b = 0; b < nb; b++, p += 74) {
      const d = f16At(src, p);
      for (let k = 0; k < 32; k++, o += 8) {
        const s = (src[p + 66 + (k >> 2)]! >> (4 * ((k >> 1) & 1))) & 15;
        const db = fr(fr(d * (0.5 + s)) * 0.25);
        const code = u16At(src, p + 2 + 2 * k);
        const signs = KSIGNS_IQ2XS[code >> 9]!;
        const g = 8 * (code & 511);
        signedGrid(out, o, db, grid, g, signs, 8);
      }
    }
  },
  // block_iq2_s { d: f16; qs[32] (low 8 index bits); signs[32]; qh[8] (2 high bits each); scales[8] }
  iq2_s(src, p, out, o, nb) {
    const grid = iqGrid('iq2s');
    for (let b = 0; b < nb; b++, p += 82) {
      const d = f16At(src, p);
      for (let k = 0; k < 32; k++, o += 8) {
        const s = (src[p + 74 + (k >> 2)]! >> (4 * ((k >> 1) & 1))) & 15;
        const db = fr(fr(d * (0.5 + s)) * 0.25);
        const idx = src[p + 2 + k]! | (((src[p + 66 + (k >> 2)]! >> (2 * (k & 3))) & 3) << 8);
        const signs = src[p + 34 + k]!;
        const g = 8 * idx;
        signedGrid(out, o, db, grid, g, signs, 8);
      }
    }
  },
  // block_iq3_xxs { d: f16; qs[64] (grid indices, 4 values each); scales_and_signs: u32[8] }
  iq3_xxs(src, p, out, o, nb) {
    const grid = iqGrid('iq3xxs');
    for (let b = 0; b < nb; b++, p += 98) {
      const d = f16At(src, p);
      for (let ib = 0; ib < 8; ib++) {
        const aux = u32At(src, p + 66 + 4 * ib);
        const db = fr(fr(d * (0.5 + (aux >>> 28))) * 0.5);
        for (let l = 0; l < 4; l++, o += 8) {
          const signs = KSIGNS_IQ2XS[(aux >>> (7 * l)) & 127]!;
          const g1 = 4 * src[p + 2 + 8 * ib + 2 * l]!;
          const g2 = 4 * src[p + 2 + 8 * ib + 2 * l + 1]!;
          signedGrid(out, o, db, grid, g1, signs, 4);
          signedGrid(out, o + 4, db, grid, g2, signs >> 4, 4);
        }
      }
    }
  },
  // block_iq3_s { d: f16; qs[64]; qh[8] (9th index bits); signs[32]; scales[4] (nibbles per 32 values) }
  iq3_s(src, p, out, o, nb) {
    const grid = iqGrid('iq3s');
    for (let b = 0; b < nb; b++, p += 110) {
      const d = f16At(src, p);
      for (let ib = 0; ib < 8; ib++) {
        const db = fr(d * (1 + 2 * ((src[p + 106 + (ib >> 1)]! >> (4 * (ib & 1))) & 15)));
        for (let l = 0; l < 8; l++, o += 4) {
          const k = 8 * ib + l; // grid entry (4 values)
          const idx = src[p + 2 + k]! | (((src[p + 66 + (k >> 3)]! >> (k & 7)) & 1) << 8);
          const signs = src[p + 74 + (k >> 1)]! >> (4 * (k & 1));
          const g = 4 * idx;
          signedGrid(out, o, db, grid, g, signs, 4);
        }
      }
    }
  },
  // block_iq1_s { d: f16; qs[32]; qh: u16[8] (3 index bits ×4, 3-bit scale, delta sign) }
  iq1_s(src, p, out, o, nb) {
    const grid = iqGrid('iq1s');
    for (let b = 0; b < nb; b++, p += 50) {
      const d = f16At(src, p);
      for (let ib = 0; ib < 8; ib++) {
        const qh = u16At(src, p + 34 + 2 * ib);
        const dl = fr(d * (2 * ((qh >> 12) & 7) + 1));
        const delta = qh & 0x8000 ? -IQ1S_DELTA : IQ1S_DELTA;
        for (let l = 0; l < 4; l++, o += 8) {
          const g = 8 * (src[p + 2 + 4 * ib + l]! | (((qh >> (3 * l)) & 7) << 8));
          for (let j = 0; j < 8; j++) out[o + j] = dl * (grid[g + j]! + delta);
        }
      }
    }
  },
  // block_iq1_m { qs[32]; qh[16] (nibbles: 3 index bits + delta sign); scales: u16[4] (3-bit scales,
  // and the f16 super-block scale spread over their top nibbles) }
  iq1_m(src, p, out, o, nb) {
    const grid = iqGrid('iq1s');
    for (let b = 0; b < nb; b++, p += 56) {
      const s0 = u16At(src, p + 48);
      const s1 = u16At(src, p + 50);
      const s2 = u16At(src, p + 52);
      const s3 = u16At(src, p + 54);
      const d = H[(s0 >> 12) | ((s1 >> 8) & 0x00f0) | ((s2 >> 4) & 0x0f00) | (s3 & 0xf000)]!;
      for (let k = 0; k < 32; k++, o += 8) {
        const sword = u16At(src, p + 48 + 2 * (k >> 3));
        const dl = fr(d * (2 * ((sword >> (3 * ((k >> 1) & 3))) & 7) + 1));
        const nib = (src[p + 32 + (k >> 1)]! >> (4 * (k & 1))) & 15;
        const delta = nib & 8 ? -IQ1S_DELTA : IQ1S_DELTA;
        const g = 8 * (src[p + k]! | ((nib & 7) << 8));
        for (let j = 0; j < 8; j++) out[o + j] = dl * (grid[g + j]! + delta);
      }
    }
  },
  // block_iq4_nl { d: f16; qs[16] } with the non-linear levels
  iq4_nl(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 18, o += 32) {
      const d = f16At(src, p);
      for (let j = 0; j < 16; j++) {
        const q = src[p + 2 + j]!;
        out[o + j] = d * KVALUES_IQ4NL[q & 15]!;
        out[o + j + 16] = d * KVALUES_IQ4NL[q >> 4]!;
      }
    }
  },
  // block_iq4_xs { d: f16; scales_h: u16; scales_l[4]; qs[128] }: six-bit scales (offset 32) per 32 values
  iq4_xs(src, p, out, o, nb) {
    for (let b = 0; b < nb; b++, p += 136) {
      const d = f16At(src, p);
      const sh = u16At(src, p + 2);
      for (let ib = 0; ib < 8; ib++, o += 32) {
        const ls = ((src[p + 4 + (ib >> 1)]! >> (4 * (ib & 1))) & 15) | (((sh >> (2 * ib)) & 3) << 4);
        const dl = fr(d * (ls - 32));
        const q = p + 8 + 16 * ib;
        for (let j = 0; j < 16; j++) {
          out[o + j] = dl * KVALUES_IQ4NL[src[q + j]! & 15]!;
          out[o + j + 16] = dl * KVALUES_IQ4NL[src[q + j]! >> 4]!;
        }
      }
    }
  },
};

/** get_scale_min_k4: the j-th six-bit (scale, min) pair of a Q4_K/Q5_K scales[12] array at q. */
function scaleMinK4(j: number, src: Uint8Array, q: number, out: Uint8Array): void {
  if (j < 4) {
    out[0] = src[q + j]! & 63;
    out[1] = src[q + j + 4]! & 63;
  } else {
    out[0] = (src[q + j + 4]! & 15) | ((src[q + j - 4]! >> 6) << 4);
    out[1] = (src[q + j + 4]! >> 4) | ((src[q + j]! >> 6) << 4);
  }
}

/** Dequantises n values (a whole number of blocks) starting at src[srcOffset] into out[outOffset…]. */
export function dequantizeGgml(type: string, src: Uint8Array, srcOffset: number, out: Float32Array, outOffset: number, n: number): void {
  const info = requireDequantizable(type);
  const decode = DECODERS[info.name]!;
  if (n % info.blockSize !== 0) {
    throw new UnsupportedError(info.name, `cannot dequantise ${n} values: not a whole number of ${info.name} blocks of ${info.blockSize}`);
  }
  const blocks = n / info.blockSize;
  if (srcOffset < 0 || srcOffset + blocks * info.typeSize > src.length || outOffset < 0 || outOffset + n > out.length) {
    throw new RangeError(`dequantizeGgml(${info.name}): ${n} values at byte ${srcOffset} / index ${outOffset} exceed the buffers`);
  }
  H ??= f16Table65536();
  decode(src, srcOffset, out, outOffset, blocks);
}
