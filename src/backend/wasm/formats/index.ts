/**
 * The block formats with a native wasm kernel (block-format.ts), one file per family. The older
 * formats (Q8_0, Q4_0, Q4_K, Q6_K, int8-grouped, dense) predate this list and live in
 * kernels-wasm.ts / layout.ts.
 */
import type { BlockFormat } from '../block-format.js';
import { LEGACY_FORMATS } from './legacy.js';
import { KQUANT_FORMATS } from './kquants.js';
import { IQ2_FORMATS } from './iq2.js';
import { IQ3_IQ1_FORMATS } from './iq3-iq1.js';
import { Q6K_FORMAT } from './q6k.js';

export const BLOCK_FORMATS: readonly BlockFormat[] = [Q6K_FORMAT, ...LEGACY_FORMATS, ...KQUANT_FORMATS, ...IQ2_FORMATS, ...IQ3_IQ1_FORMATS];

/** The block format for a ggml type, if it has a wasm kernel. */
export function blockFormat(type: string): BlockFormat | undefined {
  return BLOCK_FORMATS.find((f) => f.type === type);
}
