/** Scalar conversions between the storage dtypes and f32. Exact (no rounding on the way up). */

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** bfloat16 bits → f32: the top 16 bits of an IEEE single. */
export function bf16ToF32(bits: number): number {
  u32[0] = (bits & 0xffff) << 16;
  return f32[0]!;
}

/** f32 → bfloat16 bits, round to nearest even (NaN stays NaN). */
export function f32ToBf16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  if ((b & 0x7fffffff) > 0x7f800000) return ((b >>> 16) | 0x40) & 0xffff;
  return ((b + 0x7fff + ((b >>> 16) & 1)) >>> 16) & 0xffff;
}

/** IEEE half bits → f32. */
export function f16ToF32(h: number): number {
  const s = h & 0x8000 ? -1 : 1;
  const e = (h >>> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return s * m * 2 ** -24;
  if (e === 31) return m ? NaN : s * Infinity;
  return s * (1 + m / 1024) * 2 ** (e - 15);
}

/** f32 → IEEE half bits, round to nearest even, overflow to ±Inf. */
export function f32ToF16(x: number): number {
  f32[0] = x;
  const b = u32[0]!;
  const sign = (b >>> 16) & 0x8000;
  const exp = (b >>> 23) & 0xff;
  let mant = b & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    const half = 1 << (shift - 1);
    let r = mant >>> shift;
    const rem = mant & ((1 << shift) - 1);
    if (rem > half || (rem === half && r & 1)) r++;
    return sign | r;
  }
  let r = mant >>> 13;
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && r & 1)) {
    r++;
    if (r === 0x400) {
      r = 0;
      e++;
      if (e >= 31) return sign | 0x7c00;
    }
  }
  return sign | (e << 10) | r;
}

/** A lookup table of all 65536 f16 values, built on first use (dequantisation hot path). */
let f16Table: Float32Array | undefined;
export function f16Table65536(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let i = 0; i < 65536; i++) f16Table[i] = f16ToF32(i);
  }
  return f16Table;
}

/** Little-endian u16 array view over bytes (copies when unaligned). */
export function u16View(bytes: Uint8Array): Uint16Array {
  if (bytes.byteOffset % 2 === 0) return new Uint16Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 1);
  return new Uint16Array(copyBytes(bytes).buffer, 0, bytes.byteLength >>> 1);
}

/** Little-endian f32 array view over bytes (copies when unaligned). */
export function f32View(bytes: Uint8Array): Float32Array {
  if (bytes.byteOffset % 4 === 0) return new Float32Array(bytes.buffer, bytes.byteOffset, bytes.byteLength >>> 2);
  return new Float32Array(copyBytes(bytes).buffer, 0, bytes.byteLength >>> 2);
}

/** bf16 bytes → f32 array. */
export function bf16BytesToF32(bytes: Uint8Array): Float32Array {
  const u = u16View(bytes);
  const out = new Float32Array(u.length);
  const o32 = new Uint32Array(out.buffer);
  for (let i = 0; i < u.length; i++) o32[i] = u[i]! << 16;
  return out;
}

/** f16 bytes → f32 array. */
export function f16BytesToF32(bytes: Uint8Array): Float32Array {
  const u = u16View(bytes);
  const t = f16Table65536();
  const out = new Float32Array(u.length);
  for (let i = 0; i < u.length; i++) out[i] = t[u[i]!]!;
  return out;
}

/** A fresh, aligned copy. (Buffer#slice is a view, not a copy, so it must not be used for this.) */
export function copyBytes(bytes: Uint8Array): Uint8Array {
  const out = new Uint8Array(bytes.byteLength);
  out.set(bytes);
  return out;
}
