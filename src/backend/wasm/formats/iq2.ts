/** IQ2_XXS, IQ2_XS, IQ2_S: packed layouts and SIMD128 kernels (see ../block-format.ts). */
import type { BlockFormat } from '../block-format.js';

export const IQ2_FORMATS: readonly BlockFormat[] = [];
