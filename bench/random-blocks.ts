/**
 * Random rows of any ggml block type with finite scales: valid data of that type for speed tests
 * and kernel conformance (every code pattern occurs), where the project has no quantiser for the
 * type. Random bytes make a valid block of every type except in its f16 scale fields, which are set
 * here; `scale` multiplies them all, so the values scale linearly with it. Also the cosine by which
 * the benchmarks and the tests compare two backends' logits on such weights.
 */
import { f32ToF16 } from '../src/tensor/dtype.js';
import { dequantizeGgml, ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';

/** Byte offsets of the f16 scale fields in one block of each type (ggml's structs). */
const F16_FIELDS: Record<string, readonly number[]> = {
  q8_0: [0], q4_0: [0], q4_1: [0, 2], q5_0: [0], q5_1: [0, 2],
  q2_k: [80, 82], q3_k: [108], q4_k: [0, 2], q5_k: [0, 2], q6_k: [208],
  iq4_nl: [0], iq4_xs: [0], iq3_xxs: [0], iq3_s: [0], iq2_xxs: [0], iq2_xs: [0], iq2_s: [0], iq1_s: [0],
  iq1_m: [], // its f16 scale is the top nibbles of the four u16 scale words at 48..55
};

/** Types randomBlockRows can make. */
export const RANDOM_BLOCK_TYPES: readonly string[] = Object.keys(F16_FIELDS);

/**
 * Fills `out` (whole blocks of `type`) with random codes from `next` (uniform in [0, 1)) and f16
 * scales of `scale` × (0.5…1.5) (a second scale field, such as a K-quant's dmin, at half that).
 */
export function randomBlocks(type: string, out: Uint8Array, next: () => number, scale: number): void {
  const fields = F16_FIELDS[type];
  if (!fields) throw new Error(`no random-block recipe for ggml type ${type}`);
  const blockBytes = ggmlType(type).typeSize;
  for (let i = 0; i < out.length; i += 4) {
    const w = Math.floor(next() * 4294967296);
    for (let k = 0; k < 4 && i + k < out.length; k++) out[i + k] = (w >>> (8 * k)) & 255;
  }
  const setU16 = (at: number, v: number) => {
    out[at] = v & 255;
    out[at + 1] = v >> 8;
  };
  for (let b = 0; b < out.length; b += blockBytes) {
    fields.forEach((o, k) => setU16(b + o, f32ToF16(scale * (0.5 + next()) * (k ? 0.5 : 1))));
    if (type === 'iq1_m') {
      const d = f32ToF16(scale * (0.5 + next()));
      for (let k = 0; k < 4; k++) {
        const at = b + 48 + 2 * k;
        setU16(at, ((out[at]! | (out[at + 1]! << 8)) & 0x0fff) | (((d >> (4 * k)) & 15) << 12));
      }
    }
  }
}

/** The scale for randomBlocks that gives `type`'s values about the root mean square `rms`. */
export function scaleForRms(type: string, rms: number): number {
  const n = 4096;
  const row = new Uint8Array(ggmlRowBytes(type, n));
  let s = 12345;
  const next = () => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return s / 4294967296;
  };
  randomBlocks(type, row, next, 1);
  const v = new Float32Array(n);
  dequantizeGgml(type, row, 0, v, 0, n);
  let ss = 0;
  for (const x of v) ss += x * x;
  return rms / Math.sqrt(ss / n);
}

/** cos∠(a, b), in f64: how the benchmarks and tests compare logits of two backends. */
export function cosine(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let ab = 0;
  let aa = 0;
  let bb = 0;
  for (let i = 0; i < a.length; i++) {
    ab += a[i]! * b[i]!;
    aa += a[i]! * a[i]!;
    bb += b[i]! * b[i]!;
  }
  return ab / Math.sqrt(aa * bb);
}
