/** The `grok-ts` command line, end to end: in-process for speed, and as real processes where it matters. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli } from './cli-harness.js';
import { FIXTURES, maxAbsDiff, PROJECT_ROOT, readJson, shared } from './shared.js';

const run = runCli;

const BIN = path.join(PROJECT_ROOT, 'bin', 'grok-ts.js');

test('eval: logits of every position within 1e-4 of the oracle on the tiny checkpoint', FIXTURES, async () => {
  const exp = readJson<{ prompt_ids: number[]; logits: number[][] }>('fixtures', 'tiny', 'expected.json');
  const r = await run(['eval', '--model', shared('fixtures', 'tiny'), '--ids', exp.prompt_ids.join(','), '--positions', 'all', '--backend', 'js']);
  assert.equal(r.code, 0, r.err);
  const got = JSON.parse(r.out) as { logits: number[][] };
  assert.equal(got.logits.length, exp.logits.length);
  got.logits.forEach((row, i) => assert.ok(maxAbsDiff(row, exp.logits[i]!) < 1e-4));
  const last = await run(['eval', '--model', shared('fixtures', 'tiny'), '--ids', exp.prompt_ids.join(','), '--backend', 'js']);
  assert.equal((JSON.parse(last.out) as { logits: number[][] }).logits.length, 1);
});

test('generate --ids --temperature 0 --json: the greedy ids of the oracle', FIXTURES, async () => {
  const exp = readJson<{ prompt_ids: number[]; greedy_ids: number[] }>('fixtures', 'tiny', 'expected.json');
  const r = await run(['generate', '--model', shared('fixtures', 'tiny'), '--ids', exp.prompt_ids.join(','), '--max-tokens', String(exp.greedy_ids.length), '--temperature', '0', '--json', '--backend', 'js']);
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { ids: number[]; finish_reason: string; usage: { completion_tokens: number } };
  assert.deepEqual(out.ids, exp.greedy_ids);
  assert.equal(out.finish_reason, 'length');
  assert.equal(out.usage.completion_tokens, exp.greedy_ids.length);
});

test('generate with no --model runs the bundled demo and reproduces samples.json', FIXTURES, async () => {
  const s = readJson<{ samples: { prompt: string; greedy: { ids: number[] } }[] }>('demo', 'fortune', 'samples.json').samples[3]!;
  const r = await run(['generate', '--prompt', s.prompt, '--temperature', '0', '--max-tokens', '40', '--ignore-eos', '--json', '--backend', 'js']);
  assert.equal(r.code, 0, r.err);
  assert.deepEqual((JSON.parse(r.out) as { ids: number[] }).ids, s.greedy.ids);
});

test('inspect: config, parameter count, tensors with dtype, shape and bytes', FIXTURES, async () => {
  const r = await run(['inspect', shared('fixtures', 'tiny')]);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /parameters: 3,668,784/);
  assert.match(r.out, /transformer\/decoder_layer_10\/moe\/linear\/w\s+i8\+bf16 scales \[8, 1, 256\]\s+\[8, 48, 256\]/);
  const j = JSON.parse((await run(['inspect', '--json', shared('fixtures', 'tiny')])).out) as { tensors: unknown[]; weightBytes: number };
  assert.equal(j.tensors.length, 146);
  assert.ok(j.weightBytes > 4e6);
});

test('errors: usage → 2, missing file → 66, corrupt input → 65, each with a one-line message', FIXTURES, async () => {
  assert.equal((await run([])).code, 2);
  assert.equal((await run(['frobnicate'])).code, 2);
  assert.equal((await run(['generate', '--bogus'])).code, 2);
  assert.equal((await run(['generate', '--prompt', 'x', '--temperature', 'hot'])).code, 2);
  assert.equal((await run(['generate', '--prompt', 'x', '--ids', '1'])).code, 2);
  assert.equal((await run(['eval', '--ids', '1,-2'])).code, 2);
  const missing = await run(['eval', '--model', '/nonexistent/grok', '--ids', '1']);
  assert.equal(missing.code, 66);
  assert.match(missing.err, /\/nonexistent\/grok/);
  const bad = await run(['eval', '--model', shared('fixtures', 'tiny'), '--ids', '5000', '--backend', 'js']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /5000 is outside the vocabulary/);
});

test('--help for every command, and the command list', async () => {
  const top = await run(['--help']);
  assert.equal(top.code, 0);
  for (const name of ['generate', 'chat', 'eval', 'inspect']) {
    assert.match(top.out, new RegExp(`^  ${name} `, 'm'));
    const h = await run([name, '--help']);
    assert.equal(h.code, 0);
    assert.match(h.out, /^Usage: grok-ts /);
  }
});

test('the same seed gives the same text in separate processes; another seed differs', () => {
  const gen = (seed: string) => {
    const r = spawnSync(process.execPath, [BIN, 'generate', '--prompt', 'A computer', '--seed', seed, '--temperature', '1', '--max-tokens', '12', '--ignore-eos', '--backend', 'js'], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    return r.stdout;
  };
  const a = gen('21');
  assert.ok(a.trim().length > 0);
  assert.equal(gen('21'), a);
  assert.notEqual(gen('22'), a);
});

test('the README\'s library example runs as written', () => {
  const readme = fs.readFileSync(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const example = /### From code\s+```ts\n([\s\S]*?)```/.exec(readme)?.[1];
  assert.ok(example, 'README has a "From code" TypeScript example');
  // Inside the package directory, `import … from 'grok-ts'` resolves to this package itself.
  const file = path.join(PROJECT_ROOT, 'dist', 'readme-example.mjs');
  fs.writeFileSync(file, example);
  try {
    const r = spawnSync(process.execPath, [file], { encoding: 'utf8', timeout: 60_000 });
    assert.equal(r.status, 0, r.stderr);
    assert.match(r.stdout, /\w+/);
    assert.match(r.stdout, /(stop|length) \{/);
  } finally {
    fs.rmSync(file, { force: true });
  }
});
