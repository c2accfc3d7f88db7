/** The final-hidden-state path of the forward pass and LanguageModel.embed, on the bundled demo model. */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { jsKernels } from '../src/backend/js/kernels.js';
import { UsageError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';

let lm: LanguageModel;
before(async () => {
  lm = await loadModel(undefined, { backend: 'js' });
});
after(async () => {
  await lm.close();
});

test('hidden states: every position, and the logits are exactly their tied projection × the output multiplier', () => {
  const { model, config } = lm;
  const D = config.embSize;
  const V = config.vocabSize;
  const ids = lm.encodePrompt('The meaning of life is');
  const T = ids.length;
  const [states] = model.forward([{ tokens: ids, cache: model.newCache() }], { hidden: true });
  assert.equal(states!.length, T * D);
  const [logits] = model.forward([{ tokens: ids, cache: model.newCache() }], { allLogits: true });
  const projected = new Float32Array(T * V);
  jsKernels.matmul(projected, states!, T, lm.files.weights.output ?? lm.files.weights.embedding);
  for (let i = 0; i < T * V; i++) projected[i]! *= config.outputMultiplierScale;
  assert.deepEqual(projected, logits);
  // in a batch, each sequence's states are its own run's
  const other = ids.slice(1, 4);
  const [alone] = model.forward([{ tokens: other, cache: model.newCache() }], { hidden: true });
  const [a, b] = model.forward([{ tokens: ids, cache: model.newCache() }, { tokens: other, cache: model.newCache() }], { hidden: true });
  assert.deepEqual(a, states);
  assert.deepEqual(b, alone);
});

test('embed: the mean of the per-position states, L2-normalised; deterministic; text and its ids agree', async () => {
  const D = lm.config.embSize;
  const text = 'Once upon a time';
  const ids = lm.encodePrompt(text);
  const [states] = lm.model.forward([{ tokens: ids, cache: lm.model.newCache() }], { hidden: true });
  const mean = Array.from({ length: D }, (_, i) => {
    let s = 0;
    for (let t = 0; t < ids.length; t++) s += states![t * D + i]!;
    return s / ids.length;
  });
  const norm = Math.hypot(...mean);
  const want = mean.map((m) => m / norm);

  const e = await lm.embed(text);
  assert.equal(e.length, D);
  e.forEach((x, i) => assert.ok(Math.abs(x - want[i]!) < 1e-7, `component ${i}: ${x} vs ${want[i]}`));
  let sq = 0;
  for (const x of e) sq += x * x;
  assert.ok(Math.abs(Math.sqrt(sq) - 1) < 1e-6, `norm ${Math.sqrt(sq)}`);
  assert.deepEqual(await lm.embed(text), e, 'deterministic');
  assert.deepEqual(await lm.embed(ids), e, 'ids give the same vector as their text');
  const withBos = await lm.embed(text, { addBos: true });
  assert.notDeepEqual(withBos, e);
  const otherText = await lm.embed('A completely different sentence about ships');
  let cos = 0;
  for (let i = 0; i < D; i++) cos += otherText[i]! * e[i]!;
  assert.ok(cos < 0.9999, `different texts give different vectors (cosine ${cos})`);
});

test('embed: empty input and out-of-vocabulary ids are usage errors', async () => {
  await assert.rejects(lm.embed(''), UsageError);
  await assert.rejects(lm.embed([]), UsageError);
  await assert.rejects(lm.embed([lm.config.vocabSize]), UsageError);
});
