/** The KV cache's write API (append, markKeys, commit) and the model's reused scratch buffers. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { makeConfig } from '../src/config.js';
import { KvCache } from '../src/model/kv-cache.js';
import { ForwardScratch } from '../src/model/scratch.js';

const config = makeConfig({ embSize: 16, numQHeads: 2, numKvHeads: 1, keySize: 8, numLayers: 2, ffnSize: 32, vocabSize: 64, sequenceLen: 10 });
const row = config.numKvHeads * config.keySize; // 8

test('KvCache: append writes whole K/V rows at their slots per layer, commit advances the length, growth keeps them', () => {
  const cache = new KvCache(config, 2);
  cache.reserve(2);
  const k = Float32Array.from({ length: 2 * row }, (_, i) => i + 1);
  const v = Float32Array.from({ length: 2 * row }, (_, i) => -(i + 1));
  cache.append(1, 0, k, v);
  cache.markKeys(0, [1, 0]);
  assert.equal(cache.length, 0, 'append alone does not advance the length');
  cache.commit(2);
  assert.equal(cache.length, 2);
  assert.deepEqual([...cache.k[1]!.subarray(0, 2 * row)], [...k]);
  assert.deepEqual([...cache.v[1]!.subarray(0, 2 * row)], [...v]);
  assert.ok(cache.k[0]!.every((x) => x === 0), 'layer 0 untouched');
  assert.deepEqual([...cache.keyValid.subarray(0, 2)], [1, 0]);

  cache.reserve(3); // grows from 2 to 5 slots, keeping what was written
  assert.ok(cache.capacity >= 5);
  cache.append(1, 2, k.subarray(0, row), v.subarray(0, row));
  cache.markKeys(2, [1]);
  cache.commit(1);
  assert.equal(cache.length, 3);
  assert.deepEqual([...cache.k[1]!.subarray(0, 2 * row)], [...k]);
  assert.deepEqual([...cache.k[1]!.subarray(2 * row, 3 * row)], [...k.subarray(0, row)]);
  assert.deepEqual([...cache.keyValid.subarray(0, 3)], [1, 0, 1]);
});

test('KvCache: writes outside the reserved slots, partial rows, bad layers and over-commits are RangeErrors', () => {
  const cache = new KvCache(config, 2);
  const one = new Float32Array(row);
  assert.throws(() => cache.append(0, 2, one, one), RangeError); // beyond capacity 2
  assert.throws(() => cache.append(0, 1, one, one), RangeError); // leaves a gap after length 0
  assert.throws(() => cache.append(2, 0, one, one), RangeError); // layer out of range
  assert.throws(() => cache.append(0, 0, new Float32Array(row + 1), new Float32Array(row + 1)), RangeError);
  assert.throws(() => cache.append(0, 0, one, new Float32Array(2 * row)), RangeError);
  assert.throws(() => cache.markKeys(1, [1, 1]), RangeError);
  assert.throws(() => cache.commit(3), RangeError);
  cache.append(0, 0, one, one);
  cache.commit(1);
  assert.equal(cache.length, 1);
});

test('ForwardScratch: views sized to the shape, same arrays reused for smaller calls, reallocated only to grow', () => {
  const s = new ForwardScratch(config);
  const big = s.buffers(5, 5);
  assert.equal(big.h.length, 5 * 16);
  assert.equal(big.q.length, 5 * 16);
  assert.equal(big.k.length, 5 * row);
  assert.equal(big.g.length, 5 * 32);
  assert.equal(big.experts.length, 5 * config.numSelectedExperts);
  assert.equal(big.logits!.length, 5 * 64);
  assert.equal(s.buffers(5, 5), big, 'the same shape returns the same views');
  const small = s.buffers(1, 1);
  assert.equal(small.h.length, 16);
  assert.equal(small.h.buffer, big.h.buffer, 'a smaller call uses the front of the same arrays');
  assert.equal(small.logits!.buffer, big.logits!.buffer);
  const hidden = s.buffers(1, 1, true);
  assert.equal(hidden.logits, undefined);
  const bigger = s.buffers(7, 2);
  assert.notEqual(bigger.h.buffer, big.h.buffer);
  assert.equal(bigger.h.length, 7 * 16);
  const held = s.byteLength;
  assert.ok(held > 0);
  s.release();
  assert.equal(s.byteLength, 0);
});
