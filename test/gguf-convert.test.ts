/**
 * `convert`: ckpt-0 → GGUF. An f32 conversion is lossless (same logits as the checkpoint); a
 * quantised one computes exactly what its own dequantised tensors compute; shards, the temporary
 * name, abort, metadata and the embedded tokenizer.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jsKernels } from '../src/backend/js/kernels.js';
import { runCli } from './cli-harness.js';
import { parseSize } from '../src/cli/commands/convert.js';
import { AbortError } from '../src/errors.js';
import { openGguf, type GgufModel } from '../src/formats/gguf-split.js';
import { convertToGguf, outMajorRows, typeForRow } from '../src/convert/to-gguf.js';
import { GrokModel } from '../src/model/grok.js';
import { openModelFiles, type ModelFiles } from '../src/model/load.js';
import { configFromGguf, grokWeightsFromGguf } from '../src/model/weights-gguf.js';
import type { GrokWeights } from '../src/model/weights.js';
import { dequantizeGgml, ggmlRowBytes } from '../src/tensor/ggml.js';
import { quantizeGgml } from '../src/tensor/ggml-quantize.js';
import { MemoryLinear, type LinearWeight } from '../src/tensor/linear.js';
import { parseModelProto, PieceType } from '../src/tokenizer/sentencepiece-model.js';
import { BUNDLED_TOKENIZER_PATH, Tokenizer } from '../src/tokenizer/sentencepiece.js';
import { tokenizerFromGguf } from '../src/tokenizer/from-gguf.js';
import { FIXTURES, maxAbsDiff, readJson, shared } from './shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-convert-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Expected {
  prompt_ids: number[];
  logits: number[][];
}

function logitsOf(weights: GrokWeights, tokens: number[]): Float32Array {
  const model = new GrokModel(weights, jsKernels);
  return model.forward([{ tokens, cache: model.newCache() }], { allLogits: true })[0]!;
}

function load(p: string): { file: GgufModel; weights: GrokWeights } {
  const file = openGguf(p);
  return { file, weights: grokWeightsFromGguf(file.store, configFromGguf(file.metadata, file.path, file.store)) };
}

/** The same model with every matrix replaced by its dequantised float32 rows (what "the file read back" holds). */
function dequantised(w: GrokWeights): GrokWeights {
  const dense = (l: LinearWeight): LinearWeight => {
    const rows = new Float32Array(l.inDim * l.outDim);
    outMajorRows(l, 0, l.outDim, rows, l.bytes());
    return new MemoryLinear(`${l.name} (f32)`, l.inDim, l.outDim, { kind: 'dense', dtype: 'f32', order: 'out-major' }, new Uint8Array(rows.buffer));
  };
  return {
    ...w,
    embedding: dense(w.embedding),
    layers: w.layers.map((l) => ({
      ...l,
      wq: dense(l.wq),
      wk: dense(l.wk),
      wv: dense(l.wv),
      wo: dense(l.wo),
      router: dense(l.router),
      experts: l.experts.map((e) => ({ gate: dense(e.gate), up: dense(e.up), down: dense(e.down) })),
    })),
  };
}

describe('convert ckpt-0 → GGUF (tiny fixture)', FIXTURES, () => {
  const expected = readJson<Expected>('fixtures', 'tiny', 'expected.json');
  let ckpt: ModelFiles;
  let ckptLogits: Float32Array;
  before(() => {
    ckpt = openModelFiles(shared('fixtures', 'tiny', 'ckpt-0'));
    ckptLogits = logitsOf(ckpt.weights, expected.prompt_ids);
  });
  after(() => ckpt.close());

  it('f32 is lossless: the same logits as the checkpoint, and the same config', () => {
    const out = path.join(tmp, 'tiny-f32.gguf');
    const r = convertToGguf(ckpt.weights, ckpt.store, out, { type: 'f32' });
    assert.deepEqual(r.files, [out]);
    assert.equal(fs.statSync(out).size, r.bytes);
    assert.deepEqual(r.fallbacks, []);
    assert.equal(r.tokenizer, 'placeholder');
    const { file, weights } = load(out);
    try {
      const logits = logitsOf(weights, expected.prompt_ids);
      assert.ok(maxAbsDiff(logits, ckptLogits) < 1e-5, `vs checkpoint ${maxAbsDiff(logits, ckptLogits)}`);
      assert.ok(maxAbsDiff(logits, expected.logits.flat()) < 1e-4);
      const c = weights.config;
      for (const k of ['vocabSize', 'embSize', 'numQHeads', 'numKvHeads', 'keySize', 'numLayers', 'numExperts', 'numSelectedExperts', 'ffnSize', 'sequenceLen', 'padToken', 'eosToken', 'bosToken'] as const) {
        assert.equal(c[k], ckpt.config[k], k);
      }
      for (const k of ['embeddingMultiplierScale', 'outputMultiplierScale', 'attnOutputMultiplier', 'attnLogitSoftcap', 'rmsNormEps', 'ropeBase'] as const) {
        assert.equal(c[k], Math.fround(ckpt.config[k]), k);
      }
      // the exact int8 × bf16 products, transposed: token_embd as stored, attn_q as Wᵀ
      const q = file.store.tensors.get('blk.0.attn_q.weight')!;
      assert.deepEqual([...q.shape], [ckpt.config.numQHeads * ckpt.config.keySize, ckpt.config.embSize]);
    } finally {
      file.close();
    }
  });

  for (const type of ['q8_0', 'q4_k'] as const) {
    it(`${type}: the logits of the file equal those of its own tensors read back`, () => {
      const out = path.join(tmp, `tiny-${type}.gguf`);
      const r = convertToGguf(ckpt.weights, ckpt.store, out, { type });
      const { file, weights } = load(out);
      try {
        // ffn_down rows (F = 256 values) fit the type; D = 48 rows fall back to f16
        const down = file.store.tensors.get('blk.3.ffn_down_exps.weight')!;
        assert.equal(down.dtype, type);
        assert.equal(file.store.tensors.get('blk.3.attn_q.weight')!.dtype, typeForRow(type, 48));
        assert.equal(r.fallbacks.length, 12 * 6 + 1);

        // the bytes are ggml's reference quantisation of the checkpoint's exact weights
        const e = ckpt.weights.layers[3]!.experts[5]!.down;
        const rows = new Float32Array(e.inDim * e.outDim);
        outMajorRows(e, 0, e.outDim, rows, e.bytes(), e.scaleBytes());
        const packed = new Uint8Array(ggmlRowBytes(type, e.inDim) * e.outDim);
        quantizeGgml(type, rows, 0, packed, 0, rows.length);
        const stored = weights.layers[3]!.experts[5]!.down.bytes();
        assert.deepEqual(stored, packed);

        const logits = logitsOf(weights, expected.prompt_ids);
        const readBack = logitsOf(dequantised(weights), expected.prompt_ids);
        assert.ok(maxAbsDiff(logits, readBack) < 1e-5, `vs read-back ${maxAbsDiff(logits, readBack)}`);
        assert.ok(maxAbsDiff(logits, ckptLogits) < 0.5, 'quantisation error stays plausible');
        const back = new Float32Array(rows.length);
        dequantizeGgml(type, stored, 0, back, 0, rows.length);
        assert.ok(maxAbsDiff(back, rows) < (type === 'q8_0' ? 0.02 : 0.2) * Math.max(...rows.map(Math.abs)));
      } finally {
        file.close();
      }
    });
  }

  it('--split-max-size writes a gguf-split set with the same tensors', () => {
    const single = path.join(tmp, 'tiny-q8_0.gguf');
    if (!fs.existsSync(single)) convertToGguf(ckpt.weights, ckpt.store, single, { type: 'q8_0' });
    const r = convertToGguf(ckpt.weights, ckpt.store, path.join(tmp, 'split.gguf'), { type: 'q8_0', splitMaxBytes: 2_000_000 });
    assert.ok(r.files.length >= 3, `${r.files.length} shards`);
    assert.match(r.files[0]!, /split-00001-of-0000\d\.gguf$/);
    const set = openGguf(r.files[0]!);
    const one = openGguf(single);
    try {
      assert.equal(set.split, 'gguf-split');
      assert.equal(set.files[0]!.metadata.string('general.architecture'), 'grok');
      for (const [i, h] of set.files.entries()) {
        assert.equal(h.metadata.integer('split.no'), i);
        assert.equal(h.metadata.integer('split.count'), r.files.length);
        assert.equal(h.metadata.integer('split.tensors.count'), 146);
        if (i > 0) assert.equal(h.metadata.size, 3);
        assert.ok(h.source.size <= 2_000_000 + h.dataOffset || h.tensors.length === 1);
      }
      assert.equal(set.store.tensors.size, one.store.tensors.size);
      for (const [name, t] of one.store.tensors) {
        const s = set.store.tensors.get(name)!;
        assert.deepEqual(s.source.read(s.offset, s.byteLength), t.source.read(t.offset, t.byteLength), name);
      }
    } finally {
      set.close();
      one.close();
    }
  });

  it('an aborted run leaves neither the output nor its temporary file', () => {
    const controller = new AbortController();
    const out = path.join(tmp, 'aborted.gguf');
    let calls = 0;
    assert.throws(
      () =>
        convertToGguf(ckpt.weights, ckpt.store, out, {
          type: 'q8_0',
          signal: controller.signal,
          onProgress: () => {
            // the temporary file exists while writing, the final name does not
            if (++calls === 3) {
              assert.ok(fs.existsSync(`${out}.tmp-${process.pid}`));
              assert.ok(!fs.existsSync(out));
              controller.abort(new AbortError('test abort'));
            }
          },
        }),
      AbortError,
    );
    assert.deepEqual(fs.readdirSync(tmp).filter((f) => f.startsWith('aborted')), []);
  });
});

describe('convert: GGUF → GGUF', FIXTURES, () => {
  it('re-quantising an i-quant file to f32 keeps its logits and its tokenizer', () => {
    const src = load(shared('fixtures', 'gguf', 'mini-iq3_xxs.gguf'));
    const out = path.join(tmp, 'requant.gguf');
    try {
      const r = convertToGguf(src.weights, src.file.store, out, { type: 'f32', sourceMetadata: src.file.metadata });
      assert.equal(r.tokenizer, 'copied');
    } finally {
      src.file.close();
    }
    const expected = readJson<Expected>('fixtures', 'gguf', 'mini-iq3_xxs.gguf.expected.json');
    const { file, weights } = load(out);
    try {
      assert.ok(maxAbsDiff(logitsOf(weights, expected.prompt_ids), expected.logits.flat()) < 1e-4);
      assert.deepEqual(file.metadata.stringArray('tokenizer.ggml.tokens')!.slice(0, 5), ['[PAD]', '[BOS]', '[EOS]', '[UNK]', '\u2581t4']);
      assert.equal(file.metadata.integer('tokenizer.ggml.unknown_token_id'), 3);
    } finally {
      file.close();
    }
  });
});

describe('convert: the demo model with the real tokenizer', FIXTURES, () => {
  it('embeds the tokenizer (same ids as tokenizer.model) and the model continues the demo samples', () => {
    const ckpt = openModelFiles(shared('demo', 'fortune', 'ckpt-0'));
    const out = path.join(tmp, 'fortune-f32.gguf');
    try {
      const tokenizer = parseModelProto(new Uint8Array(fs.readFileSync(BUNDLED_TOKENIZER_PATH)));
      assert.equal(convertToGguf(ckpt.weights, ckpt.store, out, { type: 'f32', tokenizer }).tokenizer, 'embedded');
    } finally {
      ckpt.close();
    }
    const { file, weights } = load(out);
    try {
      const fromGguf = tokenizerFromGguf(file.metadata);
      const reference = Tokenizer.fromFile();
      const cases = fs.readFileSync(shared('fixtures', 'tokenizer', 'cases.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { text: string; ids: number[] });
      for (const c of cases) {
        assert.deepEqual(fromGguf.encode(c.text), c.ids, c.text);
        assert.deepEqual(fromGguf.encode(c.text), reference.encode(c.text), c.text);
        assert.equal(fromGguf.decode(c.ids), reference.decode(c.ids), c.text);
      }
      const sample = readJson<{ samples: { prompt: string; prompt_ids: number[]; greedy: { ids: number[] } }[] }>('demo', 'fortune', 'samples.json').samples[0]!;
      assert.deepEqual(fromGguf.encode(sample.prompt), sample.prompt_ids);
      const model = new GrokModel(weights, jsKernels);
      const cache = model.newCache();
      let logits = model.forward([{ tokens: sample.prompt_ids, cache }])[0]!;
      const ids: number[] = [];
      for (let i = 0; i < 12; i++) {
        let best = 0;
        for (let v = 1; v < logits.length; v++) if (logits[v]! > logits[best]!) best = v;
        ids.push(best);
        logits = model.forward([{ tokens: [best], cache }])[0]!;
      }
      assert.deepEqual(ids, sample.greedy.ids.slice(0, 12));
    } finally {
      file.close();
    }
  });
});

describe('convert: the embedded tokenizer as llama.cpp reads it', FIXTURES, () => {
  it('types the whitespace and digit user-defined pieces NORMAL, keeps the markers, and still encodes like tokenizer.model', () => {
    const tokenizer = parseModelProto(new Uint8Array(fs.readFileSync(BUNDLED_TOKENIZER_PATH)));
    const userDefined = [...tokenizer.types.keys()].filter((id) => tokenizer.types[id] === PieceType.USER_DEFINED);
    assert.equal(userDefined.length, 65);
    const ckpt = openModelFiles(shared('demo', 'fortune', 'ckpt-0'));
    const out = path.join(tmp, 'fortune-q8_0-vocab.gguf');
    try {
      convertToGguf(ckpt.weights, ckpt.store, out, { type: 'q8_0', tokenizer });
    } finally {
      ckpt.close();
    }
    const file = openGguf(out);
    try {
      const types = file.metadata.numberArray('tokenizer.ggml.token_type')!;
      assert.equal(types.length, tokenizer.types.length);
      const changed = [...tokenizer.types.keys()].filter((id) => types[id] !== tokenizer.types[id]);
      // ids 4-46: runs of 1-10 newlines, the digits, runs of 1-8 tabs, runs of 2-16 spaces
      assert.deepEqual(changed, Array.from({ length: 43 }, (_, i) => 4 + i));
      for (const id of changed) assert.equal(types[id], PieceType.NORMAL, tokenizer.pieces[id]);
      assert.deepEqual([47, 48, 68].map((id) => [tokenizer.pieces[id], types[id]]), [['<|separator|>', PieceType.USER_DEFINED], ['<|mask|>', PieceType.USER_DEFINED], ['<|control20|>', PieceType.USER_DEFINED]]);
      // texts whose ids llama.cpp got wrong while the whitespace pieces were USER_DEFINED, and markers
      const fromGguf = tokenizerFromGguf(file.metadata);
      const reference = Tokenizer.fromFile();
      const texts = ['  two  spaces', 'tabs\tand\nnewlines', 'code:\n\tif (x) {\n\t\treturn 1;\n\t}', 'year 2024: 3.14', 'a\n\nb', '\n'.repeat(12) + 'x', 'a<|mask|>b <|separator|>'];
      for (const text of texts) assert.deepEqual(fromGguf.encode(text), reference.encode(text), JSON.stringify(text));
      assert.deepEqual(fromGguf.encode('  two  spaces'), [325, 867, 325, 39602]);
    } finally {
      file.close();
    }
  });
});

describe('grok-ts convert (CLI)', FIXTURES, () => {
  const run = runCli;

  it('converts, refuses to overwrite without --force, and rejects bad flags', async () => {
    const ckpt = shared('fixtures', 'tiny', 'ckpt-0');
    const out = path.join(tmp, 'cli.gguf');
    const first = await run(['convert', ckpt, out, '--type', 'q4_0']);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /wrote .*cli\.gguf: .* q4_0; 73 matrices in f16/);
    assert.equal(first.err, '', 'no progress output when stderr is not a terminal');
    const again = await run(['convert', ckpt, out, '--type', 'q4_0']);
    assert.equal(again.code, 2);
    assert.match(again.err, /already exists; pass --force/);
    assert.equal((await run(['convert', ckpt, out, '--type', 'q4_0', '--force'])).code, 0);
    const bad = await run(['convert', ckpt, out, '--type', 'q3_k']);
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--type must be one of f32, f16, bf16, q8_0, q4_0, q4_k, q6_k/);
    assert.equal(parseSize('50G'), 50e9);
    assert.equal(parseSize('1.5M'), 1.5e6);
    assert.throws(() => parseSize('lots'), /--split-max-size must be a size/);
  });
});
