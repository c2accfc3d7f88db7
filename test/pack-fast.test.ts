/**
 * The repackers (layout.ts, formats/) against the plain byte-loop versions they replaced
 * (pack-reference.ts): byte-identical output for random bytes of every type, for full units and
 * for a last unit with missing (zero) rows, and packQuads through a misaligned destination (the
 * unit then goes through a scratch buffer). Random bytes reach every code and bit pattern, which
 * the packers only move; f16 scales are copied as bits, so NaN patterns do no harm.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { packQuads, packUnit, partBytes, planFor, type PackPlan } from '../src/backend/wasm/layout.js';
import { BLOCK_FORMATS } from '../src/backend/wasm/formats/index.js';
import { ggmlRowBytes } from '../src/tensor/ggml.js';
import { MemoryLinear } from '../src/tensor/linear.js';
import * as ref from './pack-reference.js';
import { rng } from './shared.js';

type Packer = (rows: Uint8Array, rowBytes: number, out: Uint8Array) => void;

/** The reference of each layout.ts plan kind, by a name for the tests. */
const LAYOUT_CASES: readonly { name: string; type: string; opts?: { relaxedQ4_0: boolean }; ref: Packer }[] = [
  { name: 'q8_0', type: 'q8_0', ref: ref.packQ8_0 },
  { name: 'q4_0', type: 'q4_0', ref: ref.packQ4_0 },
  { name: 'q4_0 ggml nibbles', type: 'q4_0', opts: { relaxedQ4_0: true }, ref: (t, n, o) => ref.packBlocks(t, n, o, 18, 2, 72) },
  { name: 'q4_k', type: 'q4_k', ref: ref.packQ4K },
  { name: 'f32', type: 'f32', ref: ref.interleaveChunks },
  { name: 'f16', type: 'f16', ref: ref.interleaveChunks },
  { name: 'bf16', type: 'bf16', ref: ref.interleaveChunks },
];

function planOf(type: string, inDim: number, opts?: { relaxedQ4_0: boolean }): PackPlan {
  const w = new MemoryLinear(type, inDim, 8, { kind: 'ggml', type }, new Uint8Array(ggmlRowBytes(type, inDim) * 8));
  const plan = planFor(w, 256, opts);
  assert.ok(plan, `a plan for ${type}`);
  return plan;
}

/** One unit's rows: random, the last `missing` rows zero (as packQuads passes a last partial unit). */
function unitRows(r: () => number, rows: number, rowBytes: number, missing: number): Uint8Array {
  const a = new Uint8Array(rows * rowBytes);
  for (let i = 0; i < (rows - missing) * rowBytes; i++) a[i] = Math.floor(r() * 256);
  return a;
}

function compare(plan: PackPlan, fast: Packer, slow: Packer, seed: number): void {
  const r = rng(seed);
  const rowBytes = ggmlRowBytes(plan.block?.type ?? plan.kind, plan.inDim);
  const rows = 4 * plan.unitQuads;
  for (const missing of [0, 1, 3]) {
    const src = unitRows(r, rows, rowBytes, missing);
    const want = new Uint8Array(plan.unitQuads * plan.quadBytes);
    const got = new Uint8Array(want.length);
    slow(src, rowBytes, want);
    fast(src.slice(), rowBytes, got);
    assert.deepEqual(got, want, `${plan.block?.type ?? plan.kind}, ${plan.inDim} inputs, ${missing} rows missing`);
  }
}

describe('fast packers match the reference byte for byte', () => {
  for (const c of LAYOUT_CASES) {
    test(c.name, () => {
      for (const inDim of [256, 768, 2048]) {
        const plan = planOf(c.type, inDim, c.opts);
        compare(plan, (t, n, o) => packUnit(plan, t, n, o), c.ref, inDim);
      }
    });
  }
  test('every block format has a reference', () => {
    assert.deepEqual(BLOCK_FORMATS.map((f) => f.type).filter((t) => !ref.REFERENCE_BLOCK_PACK[t]), []);
  });
  for (const f of BLOCK_FORMATS) {
    test(f.type, () => {
      for (const inDim of [256, 768, 2048]) {
        const plan = planOf(f.type, inDim);
        compare(plan, (t, n, o) => packUnit(plan, t, n, o), ref.REFERENCE_BLOCK_PACK[f.type]!, inDim + 1);
      }
    });
  }
});

describe('packQuads', () => {
  for (const type of ['q8_0', 'q4_k', 'q6_k', 'q5_0', 'iq1_m']) {
    test(`${type}: a destination at an address ≡ 2 (mod 4) gets the same bytes`, () => {
      const I = 768;
      const O = 21; // a partial last unit
      const r = rng(7);
      const raw = unitRows(r, O, ggmlRowBytes(type, I), 0);
      const w = new MemoryLinear(type, I, O, { kind: 'ggml', type }, raw);
      for (const panel of [256, 1024]) {
        const plan = planFor(w, panel)!;
        const n = partBytes(plan, plan.quads);
        const aligned = new Uint8Array(n);
        packQuads(plan, w, 0, plan.quads, aligned);
        const odd = new Uint8Array(n + 2).subarray(2);
        packQuads(plan, w, 0, plan.quads, odd);
        assert.deepEqual(odd, aligned);
      }
    });
  }
  // Expert reader threads pack pieces of one matrix into its slot, each where packing it whole puts it.
  for (const type of ['q8_0', 'q4_0', 'q4_k', 'q6_k', 'q2_k', 'iq2_xxs', 'iq4_xs', 'f16']) {
    test(`${type}: pieces packed in place (whole) over dirty memory give the bytes of packing it at once`, () => {
      const I = 768;
      const O = 45; // a partial last unit
      const raw = unitRows(rng(11), O, ggmlRowBytes(type, I), 0);
      const w = new MemoryLinear(type, I, O, { kind: 'ggml', type }, raw);
      for (const panel of [256, 1024]) {
        const plan = planFor(w, panel)!;
        const units = plan.quads / plan.unitQuads;
        const want = new Uint8Array(partBytes(plan, plan.quads));
        packQuads(plan, w, 0, plan.quads, want);
        for (const cuts of [[0, units], [0, 1, units], [0, 2, 3, units - 1, units]]) {
          const got = new Uint8Array(want.length).fill(0xa5);
          for (let i = cuts.length - 2; i >= 0; i--) packQuads(plan, w, cuts[i]! * plan.unitQuads, cuts[i + 1]! * plan.unitQuads, got, true);
          assert.deepEqual(got, want, `panel ${panel}, cuts ${cuts.join(' ')}`);
        }
      }
    });
  }
  test('whole is refused for in-major weights', () => {
    const w = new MemoryLinear('w', 32, 8, { kind: 'dense', dtype: 'f32', order: 'in-major' }, new Uint8Array(32 * 8 * 4));
    const plan = planFor(w)!;
    assert.throws(() => packQuads(plan, w, 0, plan.quads, new Uint8Array(partBytes(plan, plan.quads)), true), RangeError);
  });
});
