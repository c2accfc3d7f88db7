/** Q2_K, Q3_K, Q5_K: packed layouts and SIMD128 kernels (see ../block-format.ts). */
import type { BlockFormat } from '../block-format.js';

export const KQUANT_FORMATS: readonly BlockFormat[] = [];
