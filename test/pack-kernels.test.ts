/**
 * The wasm Q8_0 repack of the expert readers (backend/wasm/pack-kernels.ts) against layout.ts's
 * packQuads, the packing the resident path uses: the same bytes for every shape (several panels,
 * one panel, rows not a multiple of 8) and however the units are split into calls.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { packQuads, partBytes, planFor } from '../src/backend/wasm/layout.js';
import { packKernels } from '../src/backend/wasm/pack-kernels.js';
import type { LinearWeight } from '../src/tensor/linear.js';

function q8Weight(inDim: number, outDim: number, seed: number): { w: LinearWeight; raw: Uint8Array; rowSize: number } {
  const rowSize = (inDim / 32) * 34;
  const raw = new Uint8Array(rowSize * outDim);
  let x = seed >>> 0;
  for (let i = 0; i < raw.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    raw[i] = x >>> 24;
  }
  const w: LinearWeight = {
    name: `q8_0 ${inDim}x${outDim}`, inDim, outDim, format: { kind: 'ggml', type: 'q8_0' }, byteLength: raw.length,
    bytes: () => raw, rowBytes: (first, count) => raw.subarray(first * rowSize, (first + count) * rowSize),
    scaleBytes: () => { throw new Error('no scales'); }, release: () => {},
  };
  return { w, raw, rowSize };
}

for (const [inDim, outDim, panel, split] of [
  [2048, 64, 1024, 3],
  [3072, 40, 1024, 2], // 3 full panels, 40 rows (5 units)
  [1280, 44, 1024, 1], // a short last panel (256 inputs) and 44 rows: the last unit half zeros
  [96, 12, 256, 2], // one panel wider than the row
  [64, 8, 256, 1],
] as const) {
  test(`pack_q8_0 ${inDim} inputs × ${outDim} rows, panels of ${panel}, in ${split} calls: the bytes of packQuads`, () => {
    const { w, raw, rowSize } = q8Weight(inDim, outDim, inDim * 31 + outDim);
    const plan = planFor(w, panel)!;
    assert.equal(plan.kind, 'q8_0');
    const want = new Uint8Array(partBytes(plan, plan.quads));
    packQuads(plan, w, 0, plan.quads, want);

    const units = plan.quads / 2;
    const stage = 65536;
    const dst = stage + units * 8 * rowSize + 64;
    const memory = new WebAssembly.Memory({ initial: Math.ceil((dst + want.length + 64) / 65536) + 1, maximum: 65536, shared: true });
    const u8 = new Uint8Array(memory.buffer);
    u8.fill(0xa5); // packing must write every byte of the part: nothing may rely on zeroed memory
    u8.fill(0, stage, stage + units * 8 * rowSize); // rows past the end are zeros, as the reader stages them
    u8.set(raw, stage);
    const k = packKernels(memory);
    const per = Math.ceil(units / split);
    for (let u = 0; u < units; u += per) {
      const n = Math.min(per, units - u);
      k.pack_q8_0(stage + u * 8 * rowSize, rowSize, inDim / 32, n, u, units, Math.min(plan.panel, plan.segStride) / 32, dst);
    }
    assert.deepEqual(u8.subarray(dst, dst + want.length), want);
    assert.equal(u8[dst + want.length], 0xa5, 'nothing written past the part');
  });
}
