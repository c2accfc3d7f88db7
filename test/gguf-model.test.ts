/**
 * Every fixture GGUF (14 quantisation types, a gguf-split shard set, a raw byte split, an f32
 * conversion of ../tiny) through the same model code as ckpt-0: logits within 1e-4 of the float64
 * oracle on each file's own dequantised weights, and the 16 greedy ids identical.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import { describe, it } from 'node:test';
import { jsKernels } from '../src/backend/js/kernels.js';
import { UnsupportedError } from '../src/errors.js';
import { openGguf } from '../src/formats/gguf-split.js';
import { GrokModel } from '../src/model/grok.js';
import { configFromGguf, grokWeightsFromGguf } from '../src/model/weights-gguf.js';
import { FIXTURES, maxAbsDiff, readJson, shared, SHARED } from './shared.js';

interface Expected {
  prompt_ids: number[];
  logits: number[][];
  greedy_ids: number[];
  tensor_types?: Record<string, string>;
  tensor_ne?: Record<string, number[]>;
  config?: Record<string, number>;
  file?: { split?: string; parts?: { name: string }[] };
  pad_case?: { prompt_ids: number[]; logits: number[][] };
}

const TOLERANCE = 1e-4;

/** Each expected.json and the file to open for it (the first shard / part of a split set). */
function cases(): { name: string; open: string; expected: Expected }[] {
  const dir = shared('fixtures', 'gguf');
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.expected.json'))
    .sort()
    .map((f) => {
      const expected = readJson<Expected>('fixtures', 'gguf', f);
      const first = expected.file?.parts?.[0]?.name ?? f.replace(/\.expected\.json$/, '');
      return { name: f.replace(/\.expected\.json$/, ''), open: `${dir}/${first}`, expected };
    });
}

function loadModel(p: string) {
  const file = openGguf(p);
  const config = configFromGguf(file.metadata, file.path, file.store);
  return { file, config, model: new GrokModel(grokWeightsFromGguf(file.store, config), jsKernels) };
}

function argmax(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

describe('GGUF fixtures: logits and greedy ids', FIXTURES, () => {
  const all = cases();
  it('finds the 17 fixture sets', () => assert.equal(all.length, 17));

  for (const { name, open, expected } of all) {
    it(`${name}`, () => {
      const { file, config, model } = loadModel(open);
      try {
        // tiny-f32.gguf's expected file is ../tiny's, whose config sits beside it
        const cfg = expected.config ?? readJson<Record<string, number>>('fixtures', 'tiny', 'config.json');
        assert.equal(config.vocabSize, cfg['vocab_size']);
        assert.equal(config.embSize, cfg['emb_size']);
        assert.equal(config.numLayers, cfg['num_layers']);
        assert.equal(config.ffnSize, cfg['ffn_size']);
        assert.equal(config.attnOutputMultiplier, Math.fround(cfg['attn_output_multiplier']!));
        if (expected.tensor_types) {
          const types = Object.fromEntries([...file.store.tensors.values()].map((t) => [t.name, t.dtype.toUpperCase()]));
          assert.deepEqual(types, expected.tensor_types);
          for (const [n, ne] of Object.entries(expected.tensor_ne!)) assert.deepEqual([...file.store.tensors.get(n)!.shape].reverse(), ne, n);
        }

        const V = config.vocabSize;
        const cache = model.newCache();
        const [logits] = model.forward([{ tokens: expected.prompt_ids, cache }], { allLogits: true });
        assert.equal(logits!.length, expected.prompt_ids.length * V);
        const diff = maxAbsDiff(logits!, expected.logits.flat());
        assert.ok(diff < TOLERANCE, `max |Δlogit| ${diff}`);

        // greedy decode through the KV cache; the oracle recomputed each step from scratch
        const ids: number[] = [];
        let next = argmax(logits!.subarray((expected.prompt_ids.length - 1) * V));
        for (let step = 0; step < expected.greedy_ids.length; step++) {
          ids.push(next);
          if (step + 1 < expected.greedy_ids.length) next = argmax(model.forward([{ tokens: [next], cache }])[0]!);
        }
        assert.deepEqual(ids, expected.greedy_ids);

        if (expected.pad_case) {
          const [pad] = model.forward([{ tokens: expected.pad_case.prompt_ids, cache: model.newCache() }], { allLogits: true });
          const padDiff = maxAbsDiff(pad!, expected.pad_case.logits.flat());
          assert.ok(padDiff < TOLERANCE, `pad case: max |Δlogit| ${padDiff}`);
        }
      } finally {
        file.close();
      }
    });
  }

  it('any shard or raw part name opens the whole set', () => {
    for (const p of ['mini-q4_k_m-shard-00003-of-00003.gguf', 'mini-q8_0-raw.gguf.part2of3']) {
      const m = openGguf(`${SHARED}/fixtures/gguf/${p}`);
      try {
        assert.equal(m.store.tensors.size, 26, p);
      } finally {
        m.close();
      }
    }
  });

  it('an unsupported tensor type is a typed error naming the tensor and the type', () => {
    const m = openGguf(shared('fixtures', 'gguf', 'mini-q8_0.gguf'));
    try {
      const t = m.store.tensors.get('blk.0.attn_q.weight')!;
      const store = { ...m.store, tensors: new Map([...m.store.tensors, [t.name, { ...t, dtype: 'tq2_0' }]]) };
      const config = configFromGguf(m.metadata, m.path, m.store);
      assert.throws(
        () => grokWeightsFromGguf(store, config),
        (e: unknown) => e instanceof UnsupportedError && /blk\.0\.attn_q\.weight/.test(e.message) && /tq2_0/.test(e.message),
      );
    } finally {
      m.close();
    }
  });
});
