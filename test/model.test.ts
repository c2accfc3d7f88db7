/** The forward pass against the independent float64 oracle's outputs in ../shared. */
import assert from 'node:assert/strict';

import { jsKernels } from '../src/backend/js/kernels.js';
import { argmax } from '../src/generate/sampler.js';
import { GrokModel } from '../src/model/grok.js';
import { openModelFiles } from '../src/model/load.js';
import { fixtureTest as test, maxAbsDiff, readJson, shared } from './shared.js';

interface Expected {
  prompt_ids: number[];
  positions: 'all' | 'last';
  logits: number[][];
  greedy_ids: number[];
  pad_case?: { prompt_ids: number[]; logits: number[][] };
}

const TOL = 1e-4;

function rows(flat: Float32Array, V: number): Float32Array[] {
  return Array.from({ length: flat.length / V }, (_, r) => flat.subarray(r * V, (r + 1) * V));
}

function open(dir: string) {
  const files = openModelFiles(dir);
  return { files, model: new GrokModel(files.weights, jsKernels) };
}

/** Greedy continuation with the KV cache: prefill once, then one token per step. */
export function greedyCached(model: GrokModel, prompt: number[], steps: number): number[] {
  const cache = model.newCache();
  const out: number[] = [];
  let input = prompt;
  for (let s = 0; s < steps; s++) {
    const [logits] = model.forward([{ tokens: input, cache }]);
    const id = argmax(logits!);
    out.push(id);
    input = [id];
  }
  return out;
}

test('tiny: logits at every position within 1e-4 of the oracle, pad case too, greedy ids identical', () => {
  const exp = readJson<Expected>('fixtures', 'tiny', 'expected.json');
  const { files, model } = open(shared('fixtures', 'tiny'));
  const V = model.config.vocabSize;
  try {
    const [all] = model.forward([{ tokens: exp.prompt_ids, cache: model.newCache() }], { allLogits: true });
    const got = rows(all!, V);
    const want = exp.positions === 'all' ? exp.logits : exp.logits.slice(-1);
    const mine = exp.positions === 'all' ? got : got.slice(-1);
    want.forEach((row, r) => assert.ok(maxAbsDiff(mine[r]!, row) < TOL, `position ${r}: ${maxAbsDiff(mine[r]!, row)}`));

    const pad = exp.pad_case!;
    const [padAll] = model.forward([{ tokens: pad.prompt_ids, cache: model.newCache() }], { allLogits: true });
    const padRows = rows(padAll!, V).slice(-pad.logits.length);
    pad.logits.forEach((row, r) => assert.ok(maxAbsDiff(padRows[r]!, row) < TOL, `pad case row ${r}: ${maxAbsDiff(padRows[r]!, row)}`));

    assert.deepEqual(greedyCached(model, exp.prompt_ids, exp.greedy_ids.length), exp.greedy_ids);
  } finally {
    files.close();
  }
});

test('KV cache: prefill + one-token decode equals the full-sequence forward at every step', () => {
  const exp = readJson<Expected>('fixtures', 'tiny', 'expected.json');
  const { files, model } = open(shared('fixtures', 'tiny'));
  const V = model.config.vocabSize;
  try {
    const seq = [...exp.prompt_ids, ...exp.greedy_ids.slice(0, 6)];
    const [full] = model.forward([{ tokens: seq, cache: model.newCache() }], { allLogits: true });
    const fullRows = rows(full!, V);
    const cache = model.newCache(2); // small initial capacity: exercises growth
    const [pre] = model.forward([{ tokens: seq.slice(0, 5), cache }], { allLogits: true });
    rows(pre!, V).forEach((r, i) => assert.ok(maxAbsDiff(r, fullRows[i]!) < 1e-5));
    for (let p = 5; p < seq.length; p++) {
      const [step] = model.forward([{ tokens: [seq[p]!], cache }]);
      assert.ok(maxAbsDiff(step!, fullRows[p]!) < 1e-5, `position ${p}: ${maxAbsDiff(step!, fullRows[p]!)}`);
    }
    assert.equal(cache.length, seq.length);
  } finally {
    files.close();
  }
});

test('batching: two sequences in one forward call give the same logits as run alone', () => {
  const exp = readJson<Expected>('fixtures', 'tiny', 'expected.json');
  const { files, model } = open(shared('fixtures', 'tiny'));
  try {
    const a = exp.prompt_ids;
    const b = exp.greedy_ids.slice(0, 7);
    const [aloneA] = model.forward([{ tokens: a, cache: model.newCache() }]);
    const [aloneB] = model.forward([{ tokens: b, cache: model.newCache() }]);
    const [batchA, batchB] = model.forward([
      { tokens: a, cache: model.newCache() },
      { tokens: b, cache: model.newCache() },
    ]);
    assert.ok(maxAbsDiff(batchA!, aloneA!) < 1e-6);
    assert.ok(maxAbsDiff(batchB!, aloneB!) < 1e-6);
  } finally {
    files.close();
  }
});

test('fortune demo (official layout): greedy continuations of samples.json reproduced exactly', () => {
  const samples = readJson<{ samples: { prompt_ids: number[]; greedy: { ids: number[] } }[] }>('demo', 'fortune', 'samples.json');
  const { files, model } = open(shared('demo', 'fortune'));
  try {
    for (const s of samples.samples) assert.deepEqual(greedyCached(model, s.prompt_ids, s.greedy.ids.length), s.greedy.ids);
  } finally {
    files.close();
  }
});

test('bundled demo: the gzip form is byte-identical to the official files and reproduces samples.json', async () => {
  const fs = await import('node:fs');
  const path = await import('node:path');
  const { gunzipSync } = await import('node:zlib');
  const { DEMO_MODEL_DIR } = await import('../src/model/load.js');
  const official = shared('demo', 'fortune', 'ckpt-0');
  const names = fs.readdirSync(official).sort();
  assert.equal(names.length, 50);
  for (const n of names) {
    const bundled = gunzipSync(fs.readFileSync(path.join(DEMO_MODEL_DIR, 'ckpt-0', `${n}.gz`)));
    assert.ok(bundled.equals(fs.readFileSync(path.join(official, n))), `${n} differs from the official file`);
  }
  const samples = readJson<{ samples: { prompt_ids: number[]; greedy: { ids: number[] } }[] }>('demo', 'fortune', 'samples.json');
  const { files, model } = open(DEMO_MODEL_DIR);
  try {
    for (const s of samples.samples) assert.deepEqual(greedyCached(model, s.prompt_ids, s.greedy.ids.length), s.greedy.ids);
  } finally {
    files.close();
  }
});

test('scratch reuse: calls of every shape after a longer one give the logits of a fresh model, bit for bit', () => {
  const exp = readJson<Expected>('fixtures', 'tiny', 'expected.json');
  const { files, model } = open(shared('fixtures', 'tiny'));
  const fresh = new GrokModel(files.weights, jsKernels);
  try {
    const seq = [...exp.prompt_ids, ...exp.greedy_ids];
    model.forward([{ tokens: seq, cache: model.newCache() }], { allLogits: true }); // leaves the largest buffers behind
    const shapes: number[][][] = [[seq.slice(0, 3)], [seq.slice(1, 2)], [seq.slice(0, 4), seq.slice(2, 3)], [seq.slice(0, 5)]];
    for (const shape of shapes) {
      for (const allLogits of [false, true]) {
        const got = model.forward(shape.map((tokens) => ({ tokens, cache: model.newCache() })), { allLogits });
        const want = new GrokModel(files.weights, jsKernels).forward(shape.map((tokens) => ({ tokens, cache: fresh.newCache() })), { allLogits });
        got.forEach((g, i) => assert.deepEqual(g, want[i], `shape ${shape.map((t) => t.length)} allLogits ${allLogits}`));
      }
    }
  } finally {
    files.close();
  }
});
