/** Shared checks of the wasm kernel tests: errors against the js oracle, activations, greedy decoding. */
import assert from 'node:assert/strict';
import { GrokModel } from '../src/model/grok.js';
import type { Kernels } from '../src/backend/kernels.js';
import { jsKernels } from '../src/backend/js/kernels.js';
import { openGguf } from '../src/formats/gguf-split.js';
import { openModelFiles } from '../src/model/load.js';
import { configFromGguf, grokWeightsFromGguf } from '../src/model/weights-gguf.js';
import type { GrokWeights } from '../src/model/weights.js';
import { readJson, shared } from './shared.js';

/** ‖a − b‖ / ‖b‖, asserting every value of a is finite. */
export function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]!), `non-finite output at ${i}: ${a[i]}`);
    num += (a[i]! - b[i]!) ** 2;
    den += b[i]! ** 2;
  }
  return Math.sqrt(num / Math.max(den, 1e-30));
}

/** Roughly normal values with a few large outliers, like transformer activations. */
export function activations(r: () => number, n: number): Float32Array {
  const x = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const g = (r() + r() + r() + r() - 2) * 1.7;
    x[i] = r() < 0.02 ? g * 20 : g;
  }
  return x;
}

import { cosine } from '../bench/random-blocks.js';
export { cosine };

export function argmaxOf(v: Float32Array): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** Greedy ids after the prompt, decoding with the KV cache. */
export function greedy(model: GrokModel, prompt: readonly number[], steps: number): number[] {
  const cache = model.newCache();
  const ids: number[] = [];
  let input = prompt;
  for (let s = 0; s < steps; s++) {
    const [logits] = model.forward([{ tokens: input, cache }]);
    ids.push(argmaxOf(logits!));
    input = [ids[ids.length - 1]!];
  }
  return ids;
}

/** A model to run on both backends: its weights, a prompt and, where the fixture records them, the exact greedy ids. */
export interface E2eCase {
  readonly name: string;
  open(): { weights: GrokWeights; close(): void };
  readonly prompt: readonly number[];
  /** The exact path's greedy ids where the fixture records them. */
  readonly greedy?: readonly number[];
}

/** A GGUF fixture of ../shared/fixtures/gguf with its expected prompt and greedy ids. */
export function ggufCase(file: string): E2eCase {
  const exp = readJson<{ prompt_ids: number[]; greedy_ids: number[] }>('fixtures', 'gguf', `${file}.expected.json`);
  return {
    name: file,
    open: () => {
      const g = openGguf(shared('fixtures', 'gguf', file));
      return { weights: grokWeightsFromGguf(g.store, configFromGguf(g.metadata, g.path, g.store)), close: () => g.close() };
    },
    prompt: exp.prompt_ids,
    greedy: exp.greedy_ids,
  };
}

/** An official-layout checkpoint under ../shared. */
export function ckptCase(name: string, dir: string[], prompt: readonly number[], greedyIds?: readonly number[]): E2eCase {
  return {
    name,
    open: () => {
      const f = openModelFiles(shared(...dir));
      return { weights: f.weights, close: () => f.close() };
    },
    prompt,
    ...(greedyIds ? { greedy: greedyIds } : {}),
  };
}

/**
 * The model on `k` against the js oracle on the same weights: logits within cosine 0.9999 at every
 * prompt position, and greedy ids identical to the fixture's (or to the oracle's where it has none).
 */
export function checkEndToEnd(k: Kernels, weights: GrokWeights, c: E2eCase): void {
  const ref = new GrokModel(weights, jsKernels);
  const fast = new GrokModel(weights, k);
  const V = ref.config.vocabSize;
  const [want] = ref.forward([{ tokens: c.prompt, cache: ref.newCache() }], { allLogits: true });
  const [got] = fast.forward([{ tokens: c.prompt, cache: fast.newCache() }], { allLogits: true });
  for (let t = 0; t < c.prompt.length; t++) {
    const cos = cosine(got!.subarray(t * V, (t + 1) * V), want!.subarray(t * V, (t + 1) * V));
    assert.ok(cos >= 0.9999, `position ${t}: cosine ${cos}`);
  }
  const steps = c.greedy?.length ?? 12;
  assert.deepEqual(greedy(fast, c.prompt, steps), c.greedy ?? greedy(ref, c.prompt, steps));
}
