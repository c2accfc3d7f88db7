/** Q4_1, Q5_0, Q5_1, IQ4_NL, IQ4_XS: packed layouts and SIMD128 kernels (see ../block-format.ts). */
import type { BlockFormat } from '../block-format.js';

export const LEGACY_FORMATS: readonly BlockFormat[] = [];
