/** A few seconds of test/fuzz-gguf.ts in every run (fixed seed, so a failure reproduces); `npm run fuzz` runs it longer. */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { fuzzGguf } from './fuzz-gguf.js';
import { FIXTURES } from './shared.js';

it('mutated fixtures fail only with typed errors, and never hang', FIXTURES, () => {
  const report = fuzzGguf({ seconds: 4, seed: 20240611 });
  assert.deepEqual(report.failures, []);
  assert.ok(report.iterations > 50, `only ${report.iterations} cases ran`);
  assert.ok(Object.keys(report.rejected).includes('FormatError'), JSON.stringify(report.rejected));
});
