/** `grok-ts generate` with --json-schema, --grammar and --regex on the demo model; bad files and flags named. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { runCli } from './cli-harness.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'cli-constrain-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('--json-schema FILE: the text is JSON valid under the schema (with --json: finish reason and the rest)', async () => {
  const file = path.join(tmp, 'schema.json');
  fs.writeFileSync(file, JSON.stringify({ type: 'object', properties: { ok: { type: 'boolean' } }, required: ['ok'], additionalProperties: false }));
  const r = await runCli(['generate', '--prompt', 'Answer:', '--json-schema', file, '--seed', '3', '--max-tokens', '30', '--json']);
  assert.equal(r.code, 0, r.err);
  const out = JSON.parse(r.out) as { text: string; finish_reason: string; stop_reason: string };
  assert.equal(typeof (JSON.parse(out.text) as { ok: unknown }).ok, 'boolean');
  assert.equal(out.finish_reason, 'stop');
});

test('--regex and --grammar constrain the streamed text', async () => {
  const r = await runCli(['generate', '--prompt', 'Answer:', '--regex', ' (yes|no)\\.', '--seed', '1', '--no-echo']);
  assert.equal(r.code, 0, r.err);
  assert.match(r.out, /^ (yes|no)\.\n$/);
  const g = path.join(tmp, 'g.gbnf');
  fs.writeFileSync(g, 'root ::= " " [0-9] [0-9] "!"\n');
  const r2 = await runCli(['generate', '--prompt', 'Answer:', '--grammar', g, '--seed', '1', '--no-echo']);
  assert.equal(r2.code, 0, r2.err);
  assert.match(r2.out, /^ [0-9]{2}!\n$/);
});

test('bad constraint input: missing file 66, bad schema or grammar 65 naming the problem, two at once 2', async () => {
  assert.equal((await runCli(['generate', '--prompt', 'x', '--json-schema', path.join(tmp, 'none.json')])).code, 66);
  const bad = path.join(tmp, 'bad.json');
  fs.writeFileSync(bad, '{"type": ');
  const b = await runCli(['generate', '--prompt', 'x', '--json-schema', bad]);
  assert.equal(b.code, 65);
  assert.match(b.err, /bad\.json/);
  const g = path.join(tmp, 'bad.gbnf');
  fs.writeFileSync(g, 'root ::= missing\n');
  const gb = await runCli(['generate', '--prompt', 'x', '--grammar', g]);
  assert.equal(gb.code, 65, gb.err);
  assert.match(gb.err, /missing/);
  const two = await runCli(['generate', '--prompt', 'x', '--regex', 'a', '--grammar', g]);
  assert.equal(two.code, 2);
  assert.match(two.err, /at most one/);
});
