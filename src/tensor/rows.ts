/**
 * Rows of out-major weights (one row per output: the embedding, GGUF matrices) decoded to f32.
 * The embedding lookup reads single rows this way, so a backend that packed and released the
 * weight does not make the model pull the whole table back into memory.
 */
import type { LinearFormat, LinearWeight } from './linear.js';
import { UnsupportedError } from '../errors.js';
import { bf16ToF32, f16Table65536 } from './dtype.js';
import { dequantizeGgml, ggmlRowBytes } from './ggml.js';

/** Bytes of one row of `inDim` values in an out-major format. */
export function outMajorRowSize(format: LinearFormat, inDim: number, name: string): number {
  if (format.kind === 'dense' && format.order === 'out-major') return inDim * (format.dtype === 'f32' ? 4 : 2);
  if (format.kind === 'ggml') return ggmlRowBytes(format.type, inDim);
  throw new UnsupportedError(format.kind, `${name}: rows of a ${format.kind}${format.kind === 'dense' ? ` ${format.order}` : ''} weight are not contiguous`);
}

/** Decodes one row (`inDim` values at `bytes[offset]`) into out[0..inDim). */
export function decodeOutMajorRow(format: LinearFormat, bytes: Uint8Array, offset: number, inDim: number, out: Float32Array): void {
  if (format.kind === 'ggml') return dequantizeGgml(format.type, bytes, offset, out, 0, inDim);
  if (format.kind !== 'dense' || format.order !== 'out-major') throw new UnsupportedError(format.kind, 'not an out-major row format');
  const dv = new DataView(bytes.buffer, bytes.byteOffset + offset, inDim * (format.dtype === 'f32' ? 4 : 2));
  if (format.dtype === 'f32') for (let i = 0; i < inDim; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (format.dtype === 'bf16') for (let i = 0; i < inDim; i++) out[i] = bf16ToF32(dv.getUint16(2 * i, true));
  else {
    const h = f16Table65536();
    for (let i = 0; i < inDim; i++) out[i] = h[dv.getUint16(2 * i, true)]!;
  }
}

/** Row `row` of an out-major weight as f32, reading only that row's bytes. */
export function readOutMajorRow(w: LinearWeight, row: number, out: Float32Array): void {
  decodeOutMajorRow(w.format, w.rowBytes(row, 1), 0, w.inDim, out);
}
