/**
 * The wasm repacks of the expert readers (backend/wasm/pack-kernels.ts) against layout.ts's
 * packQuads, the packing the resident path uses: the same bytes for every shape (several panels,
 * one panel, rows not a multiple of a unit's) and however the units are split into calls.
 */
import * as assert from 'node:assert/strict';
import { test } from 'node:test';
import { packQuads, partBytes, planFor } from '../src/backend/wasm/layout.js';
import { packKernels, packStaged, unitsPerStage } from '../src/backend/wasm/pack-kernels.js';
import { ggmlRowBytes, ggmlType } from '../src/tensor/ggml.js';
import type { LinearWeight } from '../src/tensor/linear.js';

function randomWeight(type: string, inDim: number, outDim: number, seed: number): { w: LinearWeight; raw: Uint8Array; rowSize: number } {
  const rowSize = ggmlRowBytes(type, inDim);
  const raw = new Uint8Array(rowSize * outDim);
  let x = seed >>> 0;
  for (let i = 0; i < raw.length; i++) {
    x = (Math.imul(x, 1664525) + 1013904223) >>> 0;
    raw[i] = x >>> 24;
  }
  const w: LinearWeight = {
    name: `${type} ${inDim}x${outDim}`, inDim, outDim, format: { kind: 'ggml', type }, byteLength: raw.length,
    bytes: () => raw, rowBytes: (first, count) => raw.subarray(first * rowSize, (first + count) * rowSize),
    scaleBytes: () => { throw new Error('no scales'); }, release: () => {},
  };
  return { w, raw, rowSize };
}

/** A shared memory of 0xa5 bytes (packing must write every byte of the part: nothing may rely on zeroed memory) with room for `bytes` after `at`. */
function dirtyMemory(at: number, bytes: number): WebAssembly.Memory {
  const memory = new WebAssembly.Memory({ initial: Math.ceil((at + bytes + 64) / 65536) + 1, maximum: 65536, shared: true });
  new Uint8Array(memory.buffer).fill(0xa5);
  return memory;
}

for (const [type, inDim, outDim, panel, split] of [
  ['q8_0', 2048, 64, 1024, 3],
  ['q8_0', 3072, 40, 1024, 2], // 3 full panels, 40 rows (5 units)
  ['q8_0', 1280, 44, 1024, 1], // a short last panel (256 inputs) and 44 rows: the last unit half zeros
  ['q8_0', 96, 12, 256, 2], // one panel wider than the row
  ['q8_0', 64, 8, 256, 1],
  ['q4_k', 2048, 64, 1024, 3],
  ['q4_k', 3072, 40, 1024, 4], // 3 full panels
  ['q4_k', 1280, 42, 1024, 2], // a short last panel and 42 rows: the last unit half zeros
  ['q4_k', 768, 13, 256, 3], // panels of one block, a last unit of 1 row
  ['q4_k', 256, 4, 256, 1],
  // the other K-quants and the i-quants on the shapes that matter for 4-row units
  ...(['q6_k', 'q5_k', 'q3_k', 'q2_k', 'iq2_xxs', 'iq2_xs', 'iq1_s', 'iq1_m', 'iq3_xxs', 'iq3_s', 'iq4_xs', 'iq2_s'] as const).flatMap((type) => [
    [type, 2048, 64, 1024, 3],
    [type, 3072, 40, 1024, 4], // 3 full panels
    [type, 1280, 42, 1024, 2], // a short last panel and 42 rows: the last unit half zeros
    [type, 768, 13, 256, 3], // panels of one block, a last unit of 1 row
    [type, 256, 4, 256, 1],
  ] as const),
] as const) {
  test(`pack_${type} ${inDim} inputs × ${outDim} rows, panels of ${panel}, in ${split} calls: the bytes of packQuads`, () => {
    const { w, raw, rowSize } = randomWeight(type, inDim, outDim, inDim * 31 + outDim);
    const plan = planFor(w, panel)!;
    assert.equal(plan.block?.type ?? plan.kind, type);
    const want = new Uint8Array(partBytes(plan, plan.quads));
    packQuads(plan, w, 0, plan.quads, want);

    const units = plan.quads / plan.unitQuads;
    const unitRows = 4 * plan.unitQuads;
    const stage = 65536;
    const dst = stage + units * unitRows * rowSize + 64;
    const memory = dirtyMemory(dst, want.length);
    const u8 = new Uint8Array(memory.buffer);
    u8.fill(0, stage, stage + units * unitRows * rowSize); // rows past the end are zeros, as the reader stages them
    u8.set(raw, stage);
    const pack = packKernels(memory)[`pack_${type}`];
    const inputs = ggmlType(type).blockSize;
    const per = Math.ceil(units / split);
    for (let u = 0; u < units; u += per) {
      const n = Math.min(per, units - u);
      pack(stage + u * unitRows * rowSize, rowSize, plan.inDim / inputs, n, u, units, Math.min(plan.panel, plan.segStride) / inputs, dst);
    }
    assert.deepEqual(u8.subarray(dst, dst + want.length), want);
    assert.equal(u8[dst + want.length], 0xa5, 'nothing written past the part');
  });

  test(`packStaged ${type} ${inDim} × ${outDim}, panels of ${panel}: pieces of a whole matrix and a part of it, as packQuads places them`, () => {
    const { w, rowSize } = randomWeight(type, inDim, outDim, inDim * 7 + outDim);
    const plan = planFor(w, panel)!;
    const units = plan.quads / plan.unitQuads;
    const unitRows = 4 * plan.unitQuads;
    // a staging area of 2 units: batches of 2, the last one short when the units are odd
    const stageBytes = 2 * unitRows * rowSize;
    assert.equal(unitsPerStage(plan, stageBytes), 2);
    const stage = 65536;
    const dst = stage + stageBytes + 64;
    const whole = new Uint8Array(partBytes(plan, plan.quads));
    const memory = dirtyMemory(dst, whole.length);
    const k = packKernels(memory);
    const staged = (first: number, rows: number, bytes: number): number => {
      assert.ok(bytes <= stageBytes);
      new Uint8Array(memory.buffer).set(w.rowBytes(first, rows), stage);
      return stage;
    };
    // the whole matrix in pieces of units [u, u + split), each where packing all of it puts them
    packQuads(plan, w, 0, plan.quads, whole);
    for (let u = 0; u < units; u += split) packStaged(k, memory, stageBytes, plan, 0, plan.quads, dst, staged, u, Math.min(units, u + split));
    assert.deepEqual(new Uint8Array(memory.buffer, dst, whole.length), whole);
    // a part of the matrix (its last units) on its own, as a memory shard holds one
    const q0 = plan.unitQuads * Math.floor(units / 2);
    const part = new Uint8Array(partBytes(plan, plan.quads - q0));
    packQuads(plan, w, q0, plan.quads, part);
    packStaged(k, memory, stageBytes, plan, q0, plan.quads, dst, staged);
    assert.deepEqual(new Uint8Array(memory.buffer, dst, part.length), part);
  });
}
