/**
 * The SentencePiece tokenizer against the library's own outputs.
 *
 * - ../shared/fixtures/tokenizer/cases.jsonl: the acceptance cases (ids, pieces, decoded text).
 * - test/data/tokenizer-corpus.jsonl: 578 more cases made with python3-sentencepiece 0.1.97
 *   (Debian) on the official tokenizer.model: 320 seeded random texts mixing 30 Unicode blocks
 *   (controls, combining marks, CJK, Hangul, emoji, astral planes, private use, U+FEFF, ▁), words,
 *   user-defined symbols, space/tab/newline/CR runs and digits; 8 documents (paragraphs written
 *   for this test in Japanese, Russian, Chinese, Korean, Arabic, Hindi, Greek, Hebrew and English,
 *   and TypeScript from this project); and 250 random id lists for decode, heavy in byte pieces
 *   so that invalid UTF-8 occurs. Each row holds what the library's `encode` / `decode` returned.
 * - test/data/tokenizer-custom-vocab.json: small vocabularies that reach what Grok-1's does not
 *   (UNUSED pieces, equal scores, no byte fallback, remove_extra_whitespaces, suffix mode),
 *   written as ModelProto bytes by `modelBytes` below and run through the same library.
 * The library itself is not needed to run these tests.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test } from 'node:test';
import { runCli } from './cli-harness.js';
import { FormatError, UnsupportedError, UsageError } from '../src/errors.js';
import { parseModelProto, TokenizerModelError } from '../src/tokenizer/sentencepiece-model.js';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.js';
import { FIXTURES, PROJECT_ROOT, rng, shared } from './shared.js';

const tok = Tokenizer.fromFile();
const BYTE = (b: number): number => 69 + b; // <0x00> is id 69 in Grok-1's vocabulary

function jsonl<T>(file: string): T[] {
  return fs.readFileSync(file, 'utf8').split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as T);
}

/** Pushes ids one at a time; returns the deltas (flush last). */
function stream(t: Tokenizer, ids: readonly number[]): string[] {
  const d = t.decoder();
  return [...ids.map((id) => d.push(id)), d.flush()];
}

test('the bundled tokenizer.model is the official file, with its notice', FIXTURES, () => {
  assert.deepEqual(fs.readFileSync(BUNDLED_TOKENIZER_PATH), fs.readFileSync(shared('grok1', 'tokenizer.model')));
  const notice = fs.readFileSync(path.join(PROJECT_ROOT, 'NOTICE'), 'utf8');
  assert.match(notice, /xai-org\/grok-1/);
  assert.match(notice, /Apache License, Version 2\.0/);
});

test('vocabulary and special ids as the library reports them', () => {
  assert.equal(tok.vocabSize, 131072);
  assert.deepEqual([tok.bosId, tok.eosId, tok.padId, tok.unkId], [1, 2, 0, 3]);
  assert.equal(tok.idToPiece(130089), '\u2581');
  assert.equal(tok.idToPiece(BYTE(0xff)), '<0xFF>');
  assert.equal(tok.idToPiece(130379), '\ufeff'); // a BOM piece survives UTF-8 decoding of the model
  assert.equal(tok.pieceToId('[BOS]'), 1);
  assert.equal(tok.pieceToId('\u2581Hello'), 11770);
  assert.equal(tok.pieceToId('not a piece at all'), 3);
  assert.throws(() => tok.idToPiece(131072), UsageError);
  assert.deepEqual(tok.encode('Hello', { addBos: true, addEos: true }), [1, 11770, 2]);
});

test('cases.jsonl: ids, pieces and decoded text exactly as the library', FIXTURES, () => {
  const cases = jsonl<{ text: string; ids: number[]; pieces: string[]; decoded: string }>(shared('fixtures', 'tokenizer', 'cases.jsonl'));
  assert.ok(cases.length >= 36);
  for (const c of cases) {
    assert.deepEqual(tok.encode(c.text), c.ids, JSON.stringify(c.text));
    assert.deepEqual(tok.encodeAsPieces(c.text), c.pieces, JSON.stringify(c.text));
    assert.equal(tok.decode(c.ids), c.decoded, JSON.stringify(c.text));
    assert.equal(stream(tok, c.ids).join(''), c.decoded);
  }
});

test('corpus: 578 texts, documents and id lists exactly as the library', () => {
  type Row = { kind: 'random' | 'document'; text: string; ids: number[]; decoded?: string } | { kind: 'decode'; ids: number[]; decoded: string };
  const rows = jsonl<Row>(path.join(PROJECT_ROOT, 'test', 'data', 'tokenizer-corpus.jsonl'));
  assert.equal(rows.length, 578);
  // A fresh tokenizer too: the shared one has cached words from earlier tests.
  for (const t of [tok, Tokenizer.fromFile()]) {
    for (const r of rows) {
      if (r.kind !== 'decode') assert.deepEqual(t.encode(r.text), r.ids, JSON.stringify(r.text));
      const decoded = r.kind === 'decode' ? r.decoded : (r.decoded ?? r.text);
      assert.equal(t.decode(r.ids), decoded, JSON.stringify(r.ids));
      const deltas = stream(t, r.ids);
      assert.equal(deltas.join(''), decoded);
    }
  }
});

test('lone surrogates in a JS string encode as U+FFFD (what TextEncoder writes) and never throw', () => {
  assert.deepEqual(tok.encode('a\ud800b'), tok.encode('a\ufffdb'));
  assert.deepEqual(tok.encode('a\ufffdb'), [327, 130308, 130110]); // the library's ids for "a\ufffdb"
  assert.deepEqual(tok.encode('\udc00'), [45914]);
  assert.deepEqual(tok.encode('x\udc00\ud800y'), tok.encode('x\ufffd\ufffdy'));
  assert.deepEqual(tok.encode('\ud83d\ude00'), tok.encode('😀'));
});

test('decode: the leading-space rule, control and unknown ids, byte pieces (library outputs)', () => {
  const cases: [number[], string][] = [
    [[1, 327], 'a'],
    [[130089, 327], ' a'],
    [[130089, 130089, 327], '  a'],
    [[2, 325, 327], '  a'],
    [[BYTE(0x00), 327], '\u0000 a'],
    [[BYTE(0x20), 327], '  a'],
    [[327, 1, 327], 'a a'],
    [[3, 327], '[UNK] a'],
    [[3, 3], '[UNK][UNK]'],
    [[BYTE(0xe4), BYTE(0xbd), BYTE(0xa0)], '你'],
    [[BYTE(0xe4), BYTE(0xbd), 327], '\ufffd\ufffd a'],
    [[BYTE(0xed), BYTE(0xa0), BYTE(0x80)], '\ufffd\ufffd\ufffd'],
    [[BYTE(0xe0), BYTE(0x80), BYTE(0x80)], '\ufffd\ufffd\ufffd'],
    [[BYTE(0xf4), BYTE(0x90), BYTE(0x80), BYTE(0x80)], '\ufffd\ufffd\ufffd\ufffd'],
    [[BYTE(0xc0), BYTE(0xaf)], '\ufffd\ufffd'],
    [[BYTE(0xf0), BYTE(0x9f), BYTE(0x98), BYTE(0x80)], '😀'],
    [[BYTE(0xf0), BYTE(0x9f), BYTE(0x98), 130089], '\ufffd\ufffd\ufffd '],
    [[BYTE(0xff), BYTE(0x41)], '\ufffdA'],
    [[], ''],
  ];
  for (const [ids, text] of cases) {
    assert.equal(tok.decode(ids), text, JSON.stringify(ids));
    assert.equal(stream(tok, ids).join(''), text, JSON.stringify(ids));
  }
  assert.throws(() => tok.decode([5, 131072]), (e: unknown) => e instanceof UsageError && /131072/.test(e.message));
  assert.throws(() => tok.decode([-1]), UsageError);
  assert.throws(() => tok.decoder().push(1.5), UsageError);
});

test('streaming decode: a character is emitted once complete, an invalid byte as soon as it is certain', () => {
  const d = tok.decoder();
  assert.equal(d.push(BYTE(0xe4)), '');
  assert.equal(d.push(BYTE(0xbd)), '');
  assert.equal(d.push(BYTE(0xa0)), '你');
  assert.equal(d.push(BYTE(0xe4)), '');
  assert.equal(d.push(BYTE(0x41)), '\ufffdA'); // 0x41 cannot continue a sequence
  assert.equal(d.push(BYTE(0xed)), '');
  assert.equal(d.push(BYTE(0xa0)), '\ufffd\ufffd'); // ED A0 starts a surrogate: invalid whatever follows
  assert.equal(d.push(BYTE(0xf0)), '');
  assert.equal(d.push(11770), '\ufffd Hello'); // a non-byte piece ends the byte run
  assert.equal(d.flush(), '');
  const e = tok.decoder();
  assert.equal(e.push(130089), ''); // the dummy-prefix space of the first piece is dropped
  assert.equal(e.push(BYTE(0xf0)) + e.push(BYTE(0x9f)) + e.push(BYTE(0x98)), '');
  assert.equal(e.flush(), '\ufffd\ufffd\ufffd');
});

test('streaming decode: random id sequences, deltas never split a character and join to decode()', () => {
  const r = rng(4);
  const interesting = [1, 2, 3, 130089, 325, 327, 11770, 4, 24, BYTE(0x20), BYTE(0x41)];
  const leads = [0xc3, 0xe4, 0xed, 0xe0, 0xf0, 0xf4, 0xf5, 0xc0, 0x80, 0xbf, 0xa0, 0x98, 0x9f, 0xbd];
  for (let n = 0; n < 3000; n++) {
    const ids: number[] = [];
    const len = Math.floor(r() * 12);
    for (let i = 0; i < len; i++) {
      const x = r();
      if (x < 0.5) ids.push(BYTE(leads[Math.floor(r() * leads.length)]!));
      else if (x < 0.6) ids.push(BYTE(Math.floor(r() * 256)));
      else if (x < 0.85) ids.push(interesting[Math.floor(r() * interesting.length)]!);
      else ids.push(Math.floor(r() * tok.vocabSize));
    }
    const deltas = stream(tok, ids);
    for (const delta of deltas) assert.ok((delta as unknown as { isWellFormed(): boolean }).isWellFormed(), JSON.stringify(ids));
    assert.equal(deltas.join(''), tok.decode(ids), JSON.stringify(ids));
  }
});

/** Minimal protobuf writer for ModelProto test files (the fields parseModelProto reads). */
function varint(n: number): number[] {
  const out: number[] = [];
  let v = BigInt.asUintN(64, BigInt(n));
  do {
    const b = Number(v & 0x7fn);
    v >>= 7n;
    out.push(v > 0n ? b | 0x80 : b);
  } while (v > 0n);
  return out;
}
function field(num: number, wire: 0 | 2 | 5, payload: number | number[]): number[] {
  const tag = varint((num << 3) | wire);
  if (wire === 0) return [...tag, ...varint(payload as number)];
  const bytes = payload as number[];
  return wire === 2 ? [...tag, ...varint(bytes.length), ...bytes] : [...tag, ...bytes];
}
const utf8 = (s: string): number[] => [...Buffer.from(s, 'utf8')];
const f32 = (x: number): number[] => [...new Uint8Array(Float32Array.of(x).buffer)];

function modelBytes(
  vocab: [string, number, number][],
  flags: { addDummyPrefix?: boolean; removeExtraWhitespaces?: boolean; treatWhitespaceAsSuffix?: boolean; byteFallback?: boolean; modelType?: number; charsmap?: number[] } = {},
): Uint8Array {
  const pieces = vocab.flatMap(([p, score, type]) => field(1, 2, [...field(1, 2, utf8(p)), ...field(2, 5, f32(score)), ...field(3, 0, type)]));
  const trainer = [
    ...field(3, 0, flags.modelType ?? 2),
    ...field(4, 0, vocab.length),
    ...field(24, 0, flags.treatWhitespaceAsSuffix ? 1 : 0),
    ...field(35, 0, flags.byteFallback ? 1 : 0),
  ];
  const normalizer = [
    ...field(1, 2, utf8('identity')),
    ...(flags.charsmap ? field(2, 2, flags.charsmap) : []),
    ...field(3, 0, flags.addDummyPrefix === false ? 0 : 1),
    ...field(4, 0, flags.removeExtraWhitespaces ? 1 : 0),
  ];
  return Uint8Array.from([...pieces, ...field(2, 2, trainer), ...field(3, 2, normalizer)]);
}

test('small vocabularies: UNUSED pieces, equal scores, unknown runs, whitespace options (library outputs)', () => {
  type Model = {
    vocab: string;
    flags: { addDummyPrefix: boolean; removeExtraWhitespaces: boolean; treatWhitespaceAsSuffix: boolean };
    encode: [string, number[], string[]][];
    decode: [number[], string][];
    special: [number, number, number, number];
  };
  const data = JSON.parse(fs.readFileSync(path.join(PROJECT_ROOT, 'test', 'data', 'tokenizer-custom-vocab.json'), 'utf8')) as {
    vocabs: Record<string, [string, number, number][]>;
    models: Record<string, Model>;
  };
  assert.equal(Object.keys(data.models).length, 5);
  for (const [name, m] of Object.entries(data.models)) {
    const t = Tokenizer.fromBytes(modelBytes(data.vocabs[m.vocab]!, m.flags), name);
    assert.deepEqual([t.bosId, t.eosId, t.padId, t.unkId], m.special, name);
    for (const [text, ids, pieces] of m.encode) {
      assert.deepEqual(t.encode(text), ids, `${name}: ${JSON.stringify(text)}`);
      assert.deepEqual(t.encodeAsPieces(text), pieces, `${name}: ${JSON.stringify(text)}`);
    }
    for (const [ids, text] of m.decode) assert.equal(t.decode(ids), text, `${name}: ${JSON.stringify(ids)}`);
  }
});

test('fromVocab with the model as plain arrays (the GGUF route) encodes exactly as tokenizer.model', FIXTURES, () => {
  const model = parseModelProto(fs.readFileSync(BUNDLED_TOKENIZER_PATH));
  const fromArrays = Tokenizer.fromVocab({ pieces: model.pieces, scores: model.scores, types: model.types, bosId: 1, eosId: 2, padId: 0, unkSurface: '[UNK]' });
  const cases = jsonl<{ text: string; ids: number[] }>(shared('fixtures', 'tokenizer', 'cases.jsonl'));
  for (const c of cases) assert.deepEqual(fromArrays.encode(c.text), c.ids, JSON.stringify(c.text));
  assert.deepEqual([fromArrays.bosId, fromArrays.eosId, fromArrays.padId, fromArrays.unkId], [1, 2, 0, 3]);
  assert.equal(fromArrays.decode([3, 327]), '[UNK] a');
  const defaults = Tokenizer.fromVocab({ pieces: model.pieces, scores: model.scores, types: model.types });
  assert.equal(defaults.decode([3]), ' \u2047 '); // the library's default unknown surface
  assert.equal(defaults.bosId, -1); // no "<s>" piece; GGUF callers pass the ids they store
  assert.throws(() => defaults.encode('x', { addBos: true }), UsageError);
});

test('fromVocab rejects inconsistent vocabularies naming the entry', () => {
  const base: [string, number, number][] = [['<unk>', 0, 2], ['a', 0, 1], ['b', 0, 1]];
  const pieces = base.map((p) => p[0]);
  const fieldOf = (f: () => unknown): string => {
    try {
      f();
    } catch (e) {
      assert.ok(e instanceof TokenizerModelError, String(e));
      return e.field;
    }
    assert.fail('expected a TokenizerModelError');
  };
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces, scores: [0, 0] })), 'scores');
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces, types: [2, 1, 9] })), 'types[2]');
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces: ['<unk>', 'a', 'a'], types: [2, 1, 1] })), 'pieces[2]');
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces: ['a', 'b'] })), 'pieces'); // no UNKNOWN piece
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces: ['<unk>', ''], types: [2, 1] })), 'pieces[1]');
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces: ['<unk>', '<0x00>'], types: [2, 6] })), 'pieces'); // 255 bytes missing
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces: ['<unk>', '<0xzz>'], types: [2, 6] })), 'pieces[1].piece');
  assert.equal(fieldOf(() => Tokenizer.fromVocab({ pieces, types: [2, 1, 1], bosId: 7 })), 'bosId');
  const t = Tokenizer.fromVocab({ pieces: ['<unk>', 'a', 'b', 'ab'], scores: [0, 0, 0, -1], types: [2, 1, 1, 1], addDummyPrefix: false });
  assert.deepEqual(t.encode('abba'), [3, 2, 1]);
});

test('a corrupt or truncated tokenizer.model gives a typed error naming the field', () => {
  const good = fs.readFileSync(BUNDLED_TOKENIZER_PATH);
  const fieldOf = (bytes: Uint8Array): string => {
    try {
      Tokenizer.fromBytes(bytes, 'bad.model');
    } catch (e) {
      assert.ok(e instanceof TokenizerModelError, String(e));
      assert.match(e.message, /^bad\.model/);
      return e.field;
    }
    assert.fail('expected a TokenizerModelError');
  };
  const cuts = [0, 1, 2, 3, 100, 1000, 123457, 1_000_001, good.length >> 1, good.length - 1, good.length - 10, good.length - 100];
  for (const cut of cuts) assert.ok(fieldOf(good.subarray(0, cut)).length > 0, `cut at ${cut}`);
  assert.equal(fieldOf(new Uint8Array(0)), 'pieces');
  // The trainer_spec follows the 131072 pieces; a file cut right there is valid protobuf, and
  // must not load with default settings.
  const pieceEnds = (() => {
    let p = 0;
    while (good[p] === 0x0a) {
      let len = 0;
      let shift = 0;
      let q = p + 1;
      for (;;) {
        const b = good[q++]!;
        len |= (b & 0x7f) << shift;
        shift += 7;
        if (b < 0x80) break;
      }
      p = q + len;
    }
    return p;
  })();
  assert.ok(pieceEnds > 2_000_000 && pieceEnds < good.length);
  assert.equal(fieldOf(good.subarray(0, pieceEnds)), 'trainer_spec');
  assert.equal(fieldOf(good.subarray(0, pieceEnds - 3)), 'pieces[131071]');
  assert.match(fieldOf(good.subarray(0, good.length - 3)), /^normalizer_spec/);

  const piece = (payload: number[]): Uint8Array =>
    Uint8Array.from([...field(1, 2, payload), ...good.subarray(pieceEnds)]);
  assert.equal(fieldOf(piece([...field(1, 2, [0xc3, 0x28])])), 'pieces[0].piece'); // invalid UTF-8
  assert.equal(fieldOf(piece([...field(1, 2, utf8('a')), ...field(2, 0, 5)])), 'pieces[0].score'); // wrong wire type
  assert.equal(fieldOf(piece([...field(1, 2, utf8('a')), ...field(3, 0, 9)])), 'pieces[0].type');
  assert.equal(fieldOf(piece([...field(2, 5, f32(1))])), 'pieces[0].piece'); // no piece
  // A hostile length: 2^32 bytes claimed, 3 present. Nothing is allocated for it.
  assert.equal(fieldOf(Uint8Array.from([0x0a, 0x80, 0x80, 0x80, 0x80, 0x10, 1, 2, 3])), 'pieces[0]');
  assert.equal(fieldOf(Uint8Array.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01])), 'pieces[0]');
  assert.equal(fieldOf(Uint8Array.from([0x0b, 0x00])), 'pieces[0]'); // a group where a message belongs
  // Semantic checks the library makes at load.
  const vocab: [string, number, number][] = [['<unk>', 0, 2], ['a', 0, 1]];
  assert.equal(fieldOf(modelBytes([...vocab, ['a', 0, 1]])), 'pieces[2]');
  assert.equal(fieldOf(modelBytes([...vocab, ['<0x00>', 0, 6]])), 'pieces[2].type'); // byte piece without byte_fallback
  assert.equal(fieldOf(modelBytes([...vocab, ['<0x00>', 0, 6]], { byteFallback: true })), 'pieces');
  assert.equal(fieldOf(modelBytes([...vocab, ['<unk2>', 0, 2]])), 'pieces[2].type');
  assert.throws(() => Tokenizer.fromBytes(modelBytes(vocab, { modelType: 1 })), (e: unknown) => e instanceof UnsupportedError && /UNIGRAM/.test(e.message));
  assert.throws(() => Tokenizer.fromBytes(modelBytes(vocab, { charsmap: [1, 2, 3, 4, 5] })), (e: unknown) => e instanceof UnsupportedError && /precompiled_charsmap/.test(e.message));

  // Random damage: a load either succeeds or fails with a typed error, and returns promptly.
  const r = rng(9);
  for (let i = 0; i < 6; i++) {
    const bad = Uint8Array.from(good);
    for (let k = 0; k < 10; k++) bad[Math.floor(r() * bad.length)] = Math.floor(r() * 256);
    try {
      Tokenizer.fromBytes(bad);
    } catch (e) {
      assert.ok(e instanceof FormatError || e instanceof UnsupportedError, String(e));
    }
  }
  assert.throws(() => Tokenizer.fromFile('/nonexistent/tokenizer.model'), (e: unknown) => e instanceof FormatError && /readable/.test(e.message));
});

/** Words drawn from several scripts, seeded: almost no word repeats, so caching cannot help. */
function unrepeatedText(chars: number, seed: number, separator = ' '): string {
  const r = rng(seed);
  const ranges: [number, number][] = [[0x61, 0x7a], [0x430, 0x44f], [0x4e00, 0x9fa5], [0xac00, 0xd7a3], [0x3b1, 0x3c9]];
  const out: string[] = [];
  let n = 0;
  while (n < chars) {
    const [a, b] = ranges[Math.floor(r() * ranges.length)]!;
    let w = '';
    for (let i = 2 + Math.floor(r() * 8); i > 0; i--) w += String.fromCodePoint(a + Math.floor(r() * (b - a + 1)));
    out.push(w);
    n += w.length + separator.length;
  }
  return out.join(separator);
}

test('long inputs: 300 KB without a space, 1 MB of text, no recursion limits', () => {
  const run = 'a'.repeat(300_000);
  const ids = tok.encode(run);
  assert.equal(tok.decode(ids), run);
  assert.ok(ids.length < 300_000 / 8);
  const text = unrepeatedText(1_000_000, 5, ' ');
  assert.equal(tok.decode(tok.encode(text)), text);
});

const cli = runCli;

test('cli: tokenize and detokenize', FIXTURES, async () => {
  const text = 'Hello world! The answer is 42.';
  const ids = [11770, 1135, 130166, 422, 3033, 391, 130089, 18, 16, 130109];
  assert.deepEqual(await cli(['tokenize', text]), { code: 0, out: `${ids.join(',')}\n`, err: '' });
  assert.equal((await cli(['tokenize', '--json', '--bos', text])).out, `${JSON.stringify([1, ...ids])}\n`);
  assert.equal((await cli(['tokenize', '-'], 'line\n')).out, '1585,4\n'); // stdin exactly, newline included
  assert.equal((await cli(['tokenize', '--pieces', 'a\tb'])).out, '327\t"▁a"\n24\t"\\t"\n130110\t"b"\n');
  assert.equal((await cli(['tokenize', '--tokenizer', shared('grok1', 'tokenizer.model'), 'Hello'])).out, '11770\n');
  assert.deepEqual(await cli(['detokenize', ids.join(',')]), { code: 0, out: text, err: '' });
  assert.equal((await cli(['detokenize', '-'], `[${ids.join(', ')}]\n`)).out, text);
  assert.equal((await cli(['detokenize', '11770', '1135'])).out, 'Hello world');
  const bad = await cli(['detokenize', '5,x']);
  assert.equal(bad.code, 2);
  assert.match(bad.err, /"x" is not a token id/);
  assert.equal((await cli(['detokenize', '131072'])).code, 2);
  assert.equal((await cli(['tokenize'])).code, 2);
  assert.equal((await cli(['tokenize', '--tokenizer', '/nonexistent.model', 'x'])).code, 66);
  const corrupt = await cli(['tokenize', '--tokenizer', path.join(PROJECT_ROOT, 'package.json'), 'x']);
  assert.equal(corrupt.code, 65);
  assert.match(corrupt.err, /package\.json/);
});
