/**
 * Reading a token mask: the bitset fillMask writes (bit i of word i >> 5 set = token i allowed),
 * for samplers, walks and benchmarks that pick among the allowed tokens.
 */

function popcount(x: number): number {
  x -= (x >>> 1) & 0x55555555;
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return (((x + (x >>> 4)) & 0x0f0f0f0f) * 0x01010101) >>> 24;
}

/** How many tokens the mask allows. */
export function countAllowed(mask: Uint32Array): number {
  let n = 0;
  for (let w = 0; w < mask.length; w++) if (mask[w]) n += popcount(mask[w]!);
  return n;
}

/** The id of the r-th allowed token (0-based); -1 when the mask allows r or fewer. */
export function nthAllowed(mask: Uint32Array, r: number): number {
  for (let w = 0; w < mask.length; w++) {
    const c = mask[w] ? popcount(mask[w]!) : 0;
    if (r < c) {
      let bits = mask[w]!;
      for (;;) {
        const bit = bits & -bits;
        if (r-- === 0) return w * 32 + (31 - Math.clz32(bit));
        bits ^= bit;
      }
    }
    r -= c;
  }
  return -1;
}
