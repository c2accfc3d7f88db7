/**
 * The command line under conditions users meet: a pipe closed early, Ctrl-C in a long conversion,
 * a chat that outgrows the context, mistyped flags, and failures nobody planned for. Real
 * processes and real signals where that is what matters; the bundled demo, so no fixtures.
 */
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Writable } from 'node:stream';
import { after, describe, it } from 'node:test';
import { ensureSyntheticCheckpoint } from '../bench/synthetic.js';
import { COMMANDS } from '../src/cli/commands/index.js';
import { ProgressBar } from '../src/cli/progress.js';
import { makeConfig } from '../src/config.js';
import { runCli } from './cli-harness.js';
import { PROJECT_ROOT } from './shared.js';

const BIN = path.join(PROJECT_ROOT, 'bin', 'grok-ts.js');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-cli-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** No stack trace, no "internal error": what a user must never see. */
function assertNoStack(stderr: string): void {
  assert.doesNotMatch(stderr, /\n\s+at |internal error|Error: |EPIPE|node:internal/, stderr);
}

/** Runs grok-ts, reads standard output until `enough` bytes arrived, then closes it (as `head -c` does). */
function closeEarly(args: string[], enough: number): Promise<{ code: number | null; signal: string | null; got: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let got = '';
    let stderr = '';
    child.stdout.on('data', (b: Buffer) => {
      got += b.toString();
      if (got.length >= enough) child.stdout.destroy();
    });
    child.stdout.on('error', () => {});
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, got, stderr });
    });
  });
}

describe('a closed standard output ends the command quietly', () => {
  it('generate | head -c 5: exit 0, nothing on stderr', async () => {
    const r = await closeEarly(['generate', '--prompt', 'The meaning of life is', '-n', '120', '--ignore-eos', '--temperature', '0', '--backend', 'js'], 5);
    assert.equal(r.signal, null);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
    assert.ok(r.got.startsWith('The m'));
  });

  it('eval | head: exit 0, nothing on stderr', async () => {
    const r = await closeEarly(['eval', '--ids', '5,6,7,8', '--positions', 'all', '--backend', 'js'], 10);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stderr, '');
  });
});

describe('convert: Ctrl-C, progress off a terminal, outputs checked first', () => {
  it('SIGINT stops a conversion within a second or two, removes the temporary file and exits 130', { timeout: 120_000 }, async () => {
    // ~50 MB of int8 experts to q4_k: several seconds of work
    const config = makeConfig({ vocabSize: 8192, embSize: 512, numQHeads: 8, numKvHeads: 2, keySize: 64, numLayers: 2, numExperts: 8, wideningFactor: 4, sequenceLen: 256 });
    const ckpt = ensureSyntheticCheckpoint(path.join(tmp, 'synthetic'), config, 7);
    const outDir = path.join(tmp, 'out');
    fs.mkdirSync(outDir);
    const out = path.join(outDir, 'model.gguf');
    const child = spawn(process.execPath, [BIN, 'convert', ckpt, out, '--type', 'q4_k'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    let stdout = '';
    child.stderr.on('data', (b: Buffer) => (stderr += b.toString()));
    child.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    const exited = new Promise<{ code: number | null; at: number }>((resolve) => child.on('close', (code) => resolve({ code, at: performance.now() })));
    // wait until the conversion is writing (its temporary file exists), then a little more
    const started = performance.now();
    while (!fs.readdirSync(outDir).some((f) => f.includes('.tmp-'))) {
      assert.ok(performance.now() - started < 60_000, `no temporary file appeared; stderr: ${stderr}`);
      await new Promise((r) => setTimeout(r, 20));
    }
    await new Promise((r) => setTimeout(r, 300));
    assert.ok(fs.readdirSync(outDir).some((f) => f.includes('.tmp-')), 'the conversion ended before the signal: make the input larger');
    const sent = performance.now();
    child.kill('SIGINT');
    const { code, at } = await exited;
    const ms = at - sent;
    assert.equal(code, 130, `stdout: ${stdout} stderr: ${stderr}`);
    assert.ok(ms < 2000, `stopped ${Math.round(ms)} ms after SIGINT`);
    assert.deepEqual(fs.readdirSync(outDir), [], 'neither the output nor its temporary file is left');
    assert.match(stderr, /^grok-ts convert: interrupted\n$/m);
    assertNoStack(stderr);
  });

  it('off a terminal, progress is a plain line every few seconds', async () => {
    let text = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, done) {
        text += chunk.toString();
        done();
      },
    });
    const bar = new ProgressBar(sink, 'convert q8_0', { lineEveryMs: 20 });
    bar.update(1e6, 4e6);
    assert.equal(text, '', 'not before the interval');
    await new Promise((r) => setTimeout(r, 30));
    bar.update(2e6, 4e6);
    bar.update(2.1e6, 4e6);
    assert.match(text, /^convert q8_0: 50% 2\.00 MB\/4\.00 MB [\d.]+ [KMG]?B\/s ETA [\d:]+\n$/);
    assert.doesNotMatch(text, /\r|\x1b/);
  });

  it('a missing output directory or a directory as the output is refused before converting', async () => {
    const demo = path.join(PROJECT_ROOT, 'assets', 'demo-fortune');
    const missing = await runCli(['convert', demo, path.join(tmp, 'no-such-dir', 'x.gguf')]);
    assert.equal(missing.code, 2, missing.err);
    assert.match(missing.err, /^grok-ts convert: the output's directory .*no-such-dir does not exist\n$/);
    const dir = await runCli(['convert', demo, tmp]);
    assert.equal(dir.code, 2, dir.err);
    assert.match(dir.err, /is a directory; give a file name/);
  });
});

describe('context: chat keeps going, generate says why it stopped and names its own flag', () => {
  it('chat on the demo runs five turns past its 128-token context, saying once that old turns are dropped', { timeout: 120_000 }, async () => {
    const turns = ['Tell me a fortune.', 'Another one?', 'And a third?', 'One more, please.', 'The last one.'];
    const r = await runCli(['chat', '--backend', 'js', '--seed', '3', '-n', '40', '--system', 'Fortunes only.'], turns.join('\n') + '\n');
    assert.equal(r.code, 0, r.err);
    assert.doesNotMatch(r.out, /prompt has \d+ tokens|truncate/);
    const notes = r.out.match(/the oldest turns are dropped/g) ?? [];
    assert.equal(notes.length, 1, r.out);
    assert.match(r.out, /the system message stays/);
    assert.equal((r.out.match(/^> /gm) ?? []).length, turns.length + 1, r.out);
  });

  it('generate: a prompt over the context names --truncate left; -n past the context says why it stopped', { timeout: 120_000 }, async () => {
    const ids = Array.from({ length: 138 }, (_, i) => 300 + i).join(',');
    const long = await runCli(['generate', '--ids', ids, '--backend', 'js']);
    assert.equal(long.code, 65);
    assert.match(long.err, /prompt has 138 tokens but the model's context is 128 tokens; .*--truncate left/);
    assert.doesNotMatch(long.err, /truncate: /);
    const r = await runCli(['generate', '--prompt', 'Never', '-n', '200', '--ignore-eos', '--temperature', '0', '--backend', 'js']);
    assert.equal(r.code, 0, r.err);
    assert.match(r.err, /stopped after 12\d of 200 tokens: the model.s context holds 128 tokens/);
  });
});

describe('mistakes get one line', () => {
  it('help CMD prints the command\'s help', async () => {
    const r = await runCli(['help', 'generate']);
    assert.equal(r.code, 0);
    assert.match(r.out, /^Usage: grok-ts generate /);
    assert.equal((await runCli(['help', 'frobnicate'])).code, 2);
  });

  it('an unknown flag: a suggestion and a pointer to --help, not the whole help', async () => {
    const r = await runCli(['generate', '--tempreature', '1']);
    assert.equal(r.code, 2);
    assert.equal(r.err, 'grok-ts generate: unknown option --tempreature (did you mean --temperature?); `grok-ts generate --help` lists the options\n');
    const far = await runCli(['eval', '--bogus']);
    assert.equal(far.err, 'grok-ts eval: unknown option --bogus; `grok-ts eval --help` lists the options\n');
    const cmd = await runCli(['genrate']);
    assert.match(cmd.err, /unknown command "genrate" \(did you mean "generate"\?\)/);
    const positional = await runCli(['generate', 'hello']);
    assert.match(positional.err, /did you mean --prompt "hello"\?/);
    for (const x of [r, far, cmd, positional]) assert.equal(x.err.split('\n').length, 2, x.err);
  });

  it('--temperature -1, a missing value, a value on a boolean, --logprobs without --json', async () => {
    const neg = await runCli(['generate', '--prompt', 'x', '--temperature', '-1']);
    assert.equal(neg.code, 2);
    assert.equal(neg.err, 'grok-ts generate: --temperature must be a number from 0 (greedy) to 100, got "-1"\n');
    const missing = await runCli(['generate', '--prompt']);
    assert.match(missing.err, /^grok-ts generate: --prompt needs a value;/);
    const followed = await runCli(['generate', '--prompt', '--json']);
    assert.match(followed.err, /--prompt needs a value, but is followed by the option --json/);
    const boolean = await runCli(['generate', '--prompt', 'x', '--json=yes']);
    assert.match(boolean.err, /--json takes no value/);
    const lp = await runCli(['generate', '--prompt', 'x', '--logprobs', '3']);
    assert.equal(lp.code, 2);
    assert.match(lp.err, /--logprobs needs --json/);
  });

  it('an error nobody planned for is one line, not a stack trace', async () => {
    const boom = (err: Error) => ({ name: 'explode', summary: '', help: 'Usage: grok-ts explode', options: {}, run: async () => { throw err; } });
    COMMANDS.push(boom(new TypeError('x.y is not a function')), { ...boom(Object.assign(new Error('ENOSPC: no space left on device, write'), { code: 'ENOSPC', syscall: 'write' })), name: 'fill' });
    try {
      const bug = await runCli(['explode']);
      assert.equal(bug.code, 1);
      assert.equal(bug.err, 'grok-ts explode: internal error: TypeError: x.y is not a function (a bug in grok-ts; GROK_TS_DEBUG=1 prints the stack trace)\n');
      const full = await runCli(['fill']);
      assert.equal(full.code, 1);
      assert.equal(full.err, 'grok-ts fill: ENOSPC: no space left on device, write\n');
    } finally {
      COMMANDS.splice(COMMANDS.length - 2, 2);
    }
  });

  it('an error escaping every handler in the executable is one line too', () => {
    const code = `import { installFatalHandler } from ${JSON.stringify(path.join(PROJECT_ROOT, 'dist', 'src', 'cli', 'main.js'))}; installFatalHandler(); setTimeout(() => { throw new RangeError('late'); });`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, GROK_TS_DEBUG: '' } });
    assert.equal(r.status, 1);
    assert.equal(r.stderr, 'grok-ts: internal error: RangeError: late (a bug in grok-ts; GROK_TS_DEBUG=1 prints the stack trace)\n');
  });
});

describe('a fresh clone without the fixtures', () => {
  const runFile = (shared: string) => {
    const env: NodeJS.ProcessEnv = { ...process.env, GROK_TS_SHARED: shared };
    delete env.NODE_TEST_CONTEXT; // run as a test run of its own, not as a child of this one
    return spawnSync(process.execPath, ['--test', path.join(PROJECT_ROOT, 'dist', 'test', 'sampler.test.js')], { encoding: 'utf8', env, timeout: 120_000 });
  };

  it('skips the tests that read them, saying how to point at them, and runs the rest', () => {
    const r = runFile('');
    assert.equal(r.status, 0, r.stdout);
    assert.match(r.stdout, /# SKIP fixtures turned off/);
    assert.match(r.stdout, /^# skipped 1$/m);
    assert.match(r.stdout, /^# fail 0$/m);
    assert.match(r.stdout, /^# pass [1-9]\d*$/m);
  });

  it('fails them when GROK_TS_SHARED names a directory that is not there', () => {
    const r = runFile(path.join(tmp, 'not-the-fixtures'));
    assert.equal(r.status, 1);
    assert.match(r.stdout, /fixture missing: .*not-the-fixtures.*GROK_TS_SHARED/);
  });
});
