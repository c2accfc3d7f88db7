/**
 * Exit codes come from the error's type, never from its message (src/cli/main.ts exitCodeFor):
 * the mapping for every typed error, and real runs that end in a few of them.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { exitCodeFor } from '../src/cli/main.js';
import {
  AbortError, ConfigError, ContextLengthError, FileAccessError, FormatError, GrokError, UnsupportedError, UsageError, WeightError,
} from '../src/errors.js';
import { openCheckpoint } from '../src/formats/xai-checkpoint.js';
import { ListenError } from '../src/server/errors.js';
import { TokenizerModelError } from '../src/tokenizer/sentencepiece-model.js';
import { runCli } from './cli-harness.js';

describe('exitCodeFor', () => {
  it('maps each error type to its documented code (README: 2, 65, 66, 69, 130; else 1)', () => {
    const cases: [unknown, number][] = [
      [new UsageError('bad flag', 'x'), 2],
      [new FormatError({ file: 'f', expected: 'GGUF magic' }), 65],
      [new TokenizerModelError({ file: 'f', field: 'pieces', expected: 'an UNKNOWN piece' }), 65],
      [new WeightError({ tensor: 't', expected: 'shape [2]', found: '[3]' }), 65],
      [new ConfigError(['numLayers must be positive']), 65],
      [new ContextLengthError(200, 128), 65],
      [new FileAccessError({ file: 'f', expected: 'a readable file', found: 'a directory' }), 66],
      [new UnsupportedError('iq4_nl', 'not implemented'), 69],
      [new AbortError('interrupted'), 130],
      [new ListenError('127.0.0.1', 80, 'EACCES', 'cannot listen'), 1],
      [new GrokError('other', 'some failure'), 1],
      [new Error('boom'), 1],
      ['not an error', 1],
    ];
    for (const [err, code] of cases) assert.equal(exitCodeFor(err), code, String((err as Error).name ?? err));
  });

  it('ignores message text: a FormatError that mentions a missing file is still bad data (65)', () => {
    const err = new FormatError({ file: 'x.json', expected: 'a readable file', found: 'ENOENT: no such file or directory' });
    assert.equal(exitCodeFor(err), 65);
    assert.equal(exitCodeFor(new Error('ENOENT: no such file or directory, open x')), 1);
  });

  it('a checkpoint directory that cannot be listed is a FileAccessError (66)', () => {
    assert.throws(() => openCheckpoint('/nonexistent/grok/ckpt-0'), (err: unknown) => err instanceof FileAccessError && exitCodeFor(err) === 66);
  });
});

describe('grok-ts exit codes, end to end', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-exit-'));
  after(() => fs.rmSync(dir, { recursive: true, force: true }));
  const garbage = path.join(dir, 'garbage.gguf');
  fs.writeFileSync(garbage, 'garbage, not a GGUF');
  const empty = path.join(dir, 'empty');
  fs.mkdirSync(empty);
  // A tokenizer.model whose trainer_spec says UNIGRAM: one <unk> piece, model_type 1, identity normaliser.
  const unigram = path.join(dir, 'unigram.model');
  const piece = [0x0a, 5, ...Buffer.from('<unk>'), 0x18, 2];
  const normalizer = [0x0a, 8, ...Buffer.from('identity')];
  fs.writeFileSync(unigram, Buffer.from([0x0a, piece.length, ...piece, 0x12, 2, 0x18, 1, 0x1a, normalizer.length, ...normalizer]));

  it('66: a model path that is not there, a tokenizer that is a directory', async () => {
    const missing = await runCli(['inspect', path.join(dir, 'nothing-here')]);
    assert.equal(missing.code, 66, missing.err);
    assert.match(missing.err, /nothing-here/);
    const notFile = await runCli(['tokenize', '--tokenizer', dir, 'hi']);
    assert.equal(notFile.code, 66, notFile.err);
    assert.match(notFile.err, /found a directory/);
  });

  it('65: a file that is not a GGUF, a directory without tensor files, a tokenizer that is not a ModelProto', async () => {
    const bad = await runCli(['inspect', garbage]);
    assert.equal(bad.code, 65, bad.err);
    assert.match(bad.err, /magic "GGUF"/);
    const noTensors = await runCli(['inspect', empty]);
    assert.equal(noTensors.code, 65, noTensors.err);
    const tok = await runCli(['convert', empty, path.join(dir, 'out.gguf'), '--tokenizer', garbage]);
    assert.equal(tok.code, 65, tok.err);
  });

  it('69: a tokenizer of a model type this build does not implement', async () => {
    const r = await runCli(['tokenize', '--tokenizer', unigram, 'hi']);
    assert.equal(r.code, 69, r.err);
    assert.match(r.err, /UNIGRAM; only BPE models are supported/);
  });

  it('2: bad usage', async () => {
    assert.equal((await runCli(['inspect'])).code, 2);
    assert.equal((await runCli(['convert', empty, path.join(dir, 'out.gguf'), '--type', 'q3_z'])).code, 2);
  });
});
