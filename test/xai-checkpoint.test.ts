import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { configFromJson, type GrokConfig } from '../src/config.js';
import { FormatError, WeightError } from '../src/errors.js';
import { checkpointLayerOrder, openCheckpoint, tensorFileName, type CheckpointStore } from '../src/formats/xai-checkpoint.js';
import { grokWeightsFromCheckpoint } from '../src/model/weights-ckpt.js';
import { bf16BytesToF32, f32View } from '../src/tensor/dtype.js';
import type { TensorInfo } from '../src/tensor/tensor.js';
import { FIXTURES, readJson, shared } from './shared.js';

const TINY = () => shared('fixtures', 'tiny');
const DEMO = () => shared('demo', 'fortune');

function read(t: TensorInfo): Uint8Array {
  return t.source.read(t.offset, t.byteLength);
}

/** The shapes docs/REFERENCE.md §4 gives each leaf, for a config. */
function expectedShapes(c: GrokConfig): Map<string, { shape: number[]; scales?: number[] }> {
  const { vocabSize: V, embSize: D, numExperts: E, ffnSize: F } = c;
  const q = c.numQHeads * c.keySize;
  const kv = c.numKvHeads * c.keySize;
  const m = new Map<string, { shape: number[]; scales?: number[] }>();
  m.set('language_model/in_out_embed/embeddings', { shape: [V, D] });
  m.set('language_model/rms_norm/scale', { shape: [D] });
  for (let l = 0; l < c.numLayers; l++) {
    const p = `transformer/decoder_layer_${l}`;
    m.set(`${p}/moe/linear/w`, { shape: [E, D, F], scales: [E, 1, F] });
    m.set(`${p}/moe/linear_1/w`, { shape: [E, F, D], scales: [E, 8, D] });
    m.set(`${p}/moe/linear_v/w`, { shape: [E, D, F], scales: [E, 1, F] });
    m.set(`${p}/multi_head_attention/key/w`, { shape: [D, kv], scales: [1, kv] });
    m.set(`${p}/multi_head_attention/linear/w`, { shape: [q, D], scales: [8, D] });
    m.set(`${p}/multi_head_attention/query/w`, { shape: [D, q], scales: [1, q] });
    m.set(`${p}/multi_head_attention/value/w`, { shape: [D, kv], scales: [1, kv] });
    for (const n of ['rms_norm', 'rms_norm_1', 'rms_norm_2', 'rms_norm_3']) m.set(`${p}/${n}/scale`, { shape: [D] });
    m.set(`${p}/router/w`, { shape: [D, E] });
  }
  return m;
}

function checkAgainstConfig(store: CheckpointStore, c: GrokConfig): void {
  const want = expectedShapes(c);
  assert.equal(store.tensors.size, want.size);
  for (const [name, w] of want) {
    const t = store.tensors.get(name);
    assert.ok(t, `missing ${name}`);
    assert.deepEqual(t.shape, w.shape, name);
    if (w.scales) {
      assert.equal(t.dtype, 'i8', name);
      assert.equal(t.byteLength, w.shape.reduce((a, b) => a * b), name);
      assert.equal(t.scales?.dtype, 'bf16', name);
      assert.deepEqual(t.scales.shape, w.scales, name);
      assert.equal(t.scales.byteLength, w.scales.reduce((a, b) => a * b) * 2, name);
    } else {
      assert.equal(t.dtype, 'f32', name);
      assert.equal(t.scales, undefined, name);
      assert.equal(t.byteLength, w.shape.reduce((a, b) => a * b) * 4, name);
    }
  }
}

/** File descriptors this process holds (Linux). */
function openFds(): number {
  return fs.readdirSync('/proc/self/fd').length;
}

describe('openCheckpoint: fixtures', () => {
  it('orders layers as strings: 0, 1, 10, 11, 2, …', () => {
    assert.deepEqual(checkpointLayerOrder(12), [0, 1, 10, 11, 2, 3, 4, 5, 6, 7, 8, 9]);
    assert.deepEqual(checkpointLayerOrder(64).slice(0, 13), [0, 1, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 2]);
    assert.equal(tensorFileName(769), 'tensor00769_000');
  });

  it('tiny: every file holds the leaf expected.json names, with the config shapes', FIXTURES, () => {
    const store = openCheckpoint(TINY());
    try {
      assert.equal(store.format, 'ckpt-0');
      assert.equal(store.path, path.join(TINY(), 'ckpt-0'));
      assert.equal(store.numLayers, 12);
      const files = readJson<{ tensor_files: string[] }>('fixtures', 'tiny', 'expected.json').tensor_files;
      assert.deepEqual([...store.tensors.keys()], files);
      [...store.tensors.values()].forEach((t, i) => assert.equal(path.basename(t.source.name), tensorFileName(i)));
      checkAgainstConfig(store, configFromJson(readJson('fixtures', 'tiny', 'config.json')));
    } finally {
      store.close();
    }
  });

  it('tiny: payload bytes are the ones numpy reads', FIXTURES, () => {
    const store = openCheckpoint(path.join(TINY(), 'ckpt-0')); // the ckpt-0 directory itself works too
    try {
      const emb = store.tensors.get('language_model/in_out_embed/embeddings')!;
      const e = f32View(read(emb));
      assert.deepEqual([...e.subarray(0, 4)], [0.006955197546631098, -0.009794741868972778, -0.015734903514385223, -0.029249705374240875]);
      assert.deepEqual([...e.subarray(e.length - 2)], [-0.003367905505001545, 2.692757561817416e-6]);
      const norm = f32View(read(store.tensors.get('language_model/rms_norm/scale')!));
      assert.deepEqual([...norm.subarray(0, 3)], [1.101205825805664, 0.9954904913902283, 1.2330470085144043]);
      const down = store.tensors.get('transformer/decoder_layer_0/moe/linear_1/w')!; // file 3
      const w = new Int8Array(read(down).buffer);
      assert.deepEqual([...w.subarray(0, 6)], [86, -45, -39, 45, 24, 74]);
      assert.deepEqual([...w.subarray(w.length - 3)], [3, 4, -7]);
      const s = bf16BytesToF32(read(down.scales!));
      assert.deepEqual([...s.subarray(0, 4)], [0.000865936279296875, 0.00135040283203125, 0.0013427734375, 0.0009918212890625]);
      assert.equal(s[s.length - 1], 0.00124359130859375);
      const router = f32View(read(store.tensors.get('transformer/decoder_layer_0/router/w')!));
      assert.deepEqual([...router.subarray(0, 3)], [0.12894102931022644, 0.08951924741268158, 0.24433039128780365]);
    } finally {
      store.close();
    }
  });

  it('tiny: model weights build from the store', FIXTURES, () => {
    const store = openCheckpoint(TINY());
    try {
      const config = configFromJson(readJson('fixtures', 'tiny', 'config.json'));
      const weights = grokWeightsFromCheckpoint(store, config);
      assert.equal(weights.layers.length, 12);
      assert.equal(weights.finalNorm[0], 1.101205825805664);
    } finally {
      store.close();
    }
  });

  it('demo: shapes, values, and the 33 MB embedding left unread at open', FIXTURES, () => {
    const t0 = performance.now();
    const store = openCheckpoint(DEMO());
    const openMs = performance.now() - t0;
    try {
      checkAgainstConfig(store, configFromJson(readJson('demo', 'fortune', 'config.json')));
      const opened = store.bytesRead();
      const total = [...store.tensors.values()].reduce((n, t) => n + fs.statSync(t.source.name).size, 0);
      // headers only: one 4 KiB page per array header, 50 files
      assert.ok(opened < 50 * 3 * 4096, `read ${opened} bytes at open`);
      assert.ok(opened < total / 50, `read ${opened} of ${total} bytes at open`);
      assert.ok(openMs < 2000, `open took ${openMs} ms`);

      const emb = store.tensors.get('language_model/in_out_embed/embeddings')!;
      assert.equal(emb.offset, 150);
      const row0 = f32View(emb.source.read(emb.offset, 16));
      assert.deepEqual([...row0], [-0.08416713029146194, 0.3485437333583832, -0.0290946327149868, -0.12417576462030411]);
      const last = f32View(emb.source.read(emb.offset + emb.byteLength - 8, 8));
      assert.deepEqual([...last], [-0.34963488578796387, 0.20615147054195404]);
      assert.equal(store.bytesRead(), opened + 24);

      const down = store.tensors.get('transformer/decoder_layer_0/moe/linear_1/w')!;
      assert.deepEqual([...new Int8Array(read(down).buffer).subarray(0, 6)], [-39, -21, -20, 46, -66, -1]);
      assert.deepEqual([...bf16BytesToF32(read(down.scales!)).subarray(0, 2)], [0.001434326171875, 0.00177001953125]);
      const router = f32View(read(store.tensors.get('transformer/decoder_layer_0/router/w')!));
      assert.deepEqual([...router.subarray(0, 3)], [-0.1823195368051529, 0.0030787826981395483, 0.0020307668019086123]);
    } finally {
      store.close();
    }
  });

  it('keeps no file open after open, a bounded few while reading, none after close', FIXTURES, () => {
    const base = openFds();
    const store = openCheckpoint(TINY());
    assert.equal(openFds(), base);
    for (const t of store.tensors.values()) {
      read(t);
      if (t.scales) read(t.scales);
    }
    const reading = openFds() - base;
    assert.ok(reading >= 1 && reading <= 16, `${reading} files open after reading 146`);
    store.close();
    assert.equal(openFds(), base);
    const emb = store.tensors.get('language_model/in_out_embed/embeddings')!;
    assert.throws(() => read(emb), (e: unknown) => e instanceof FormatError && /closed/.test(e.message));
  });
});

// ---------------------------------------------------------------------------------------------
// broken directories, built from links to the tiny fixture plus a few edited files

describe('openCheckpoint: broken checkpoints', FIXTURES, () => {
  let root: string;
  let count = 0;
  const tinyFile = (i: number) => path.join(TINY(), 'ckpt-0', tensorFileName(i));

  before(() => {
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-ckpt-'));
  });
  after(() => {
    fs.rmSync(root, { recursive: true, force: true });
  });

  /**
   * A checkpoint dir `<tmp>/<n>/ckpt-0` of links to the 146 tiny files. `edits[i]`: undefined
   * drops file i, a number links file i to tiny's file of that index, bytes replace it.
   */
  function makeCheckpoint(edits: Record<number, undefined | number | Uint8Array> = {}, files = 146): string {
    const dir = path.join(root, String(++count));
    const ckpt = path.join(dir, 'ckpt-0');
    fs.mkdirSync(ckpt, { recursive: true });
    for (let i = 0; i < files; i++) {
      const target = path.join(ckpt, tensorFileName(i));
      if (!(i in edits)) fs.symlinkSync(tinyFile(i), target);
      else {
        const e = edits[i];
        if (typeof e === 'number') fs.symlinkSync(tinyFile(e), target);
        else if (e instanceof Uint8Array) fs.writeFileSync(target, e);
      }
    }
    return dir;
  }

  function expectFormatError(dir: string, file: string, words: string[]): void {
    const fds = openFds();
    assert.throws(
      () => openCheckpoint(dir),
      (e: unknown) => {
        assert.ok(e instanceof FormatError, `expected FormatError, got ${String(e)}`);
        assert.equal(e.file, file);
        for (const w of words) assert.ok(e.message.includes(w), `"${w}" not in: ${e.message}`);
        return true;
      },
    );
    assert.equal(openFds(), fds, 'a failed open left files open');
  }

  function expectWeightError(dir: string, index: number, tensor: string, words: string[]): void {
    assert.throws(
      () => openCheckpoint(dir),
      (e: unknown) => {
        assert.ok(e instanceof WeightError, `expected WeightError, got ${String(e)}`);
        assert.equal(e.tensor, tensor);
        assert.ok(e.message.includes(tensorFileName(index)), e.message);
        for (const w of words) assert.ok(e.message.includes(w), `"${w}" not in: ${e.message}`);
        return true;
      },
    );
  }

  const tinyBytes = (i: number) => new Uint8Array(fs.readFileSync(tinyFile(i)));

  it('ignores unrelated files beside the tensors', () => {
    const dir = makeCheckpoint();
    for (const extra of ['README.md', 'tensor00000_001', 'tensor0001_000', 'tensor00146_000.tmp', '.DS_Store']) {
      fs.writeFileSync(path.join(dir, 'ckpt-0', extra), 'x');
    }
    const store = openCheckpoint(dir);
    assert.equal(store.tensors.size, 146);
    store.close();
  });

  it('names a file missing from the numbering', () => {
    const dir = makeCheckpoint({ 5: undefined });
    expectFormatError(dir, path.join(dir, 'ckpt-0', 'tensor00005_000'), ['missing', 'contiguous']);
  });

  it('refuses a file count that is not 2 + 12·L', () => {
    const dir = makeCheckpoint({}, 145);
    expectFormatError(dir, path.join(dir, 'ckpt-0'), ['2 + 12·L', 'found 145 files']);
    const two = makeCheckpoint({}, 2);
    expectFormatError(two, path.join(two, 'ckpt-0'), ['found 2 files']);
  });

  it('refuses a leaf whose content does not fit its slot, naming file and parameter', () => {
    // a norm vector where layer 0's attention key matrix belongs
    expectWeightError(makeCheckpoint({ 5: 9 }), 5, 'transformer/decoder_layer_0/multi_head_attention/key/w', ['rank 2', 'f32 [48]']);
    // a quantised matrix where a norm belongs
    expectWeightError(makeCheckpoint({ 9: 5 }), 9, 'transformer/decoder_layer_0/rms_norm/scale', ['a float array', 'i8 [48, 16] with bf16 scales [1, 16]']);
    // the right kind but the wrong width: the demo's 64-wide final norm in a 48-wide model
    const demoNorm = new Uint8Array(fs.readFileSync(path.join(DEMO(), 'ckpt-0', 'tensor00001_000')));
    expectWeightError(makeCheckpoint({ 1: demoNorm }), 1, 'language_model/rms_norm/scale', ['dimension 0 = 48', 'f32 [64]']);
  });

  it('refuses a pickle that reaches for os.system, naming the file and the global', () => {
    const evil = Uint8Array.from([0x80, 4, 0x8c, 2, ...Buffer.from('os'), 0x8c, 6, ...Buffer.from('system'), 0x93, 0x8c, 2, ...Buffer.from('id'), 0x85, 0x52, 0x2e]);
    const dir = makeCheckpoint({ 7: evil });
    expectFormatError(dir, path.join(dir, 'ckpt-0', 'tensor00007_000'), ['os.system', 'at byte 14']);
  });

  it('refuses an unknown dtype string in a real file', () => {
    const b = tinyBytes(1);
    const at = Buffer.from(b).indexOf(Buffer.from([0x8c, 2, 0x66, 0x34])); // SHORT_BINUNICODE 'f4'
    assert.ok(at > 0);
    b.set([0x63, 0x38], at + 2); // 'c8': complex64, same length
    const dir = makeCheckpoint({ 1: b });
    expectFormatError(dir, path.join(dir, 'ckpt-0', 'tensor00001_000'), ["dtype 'c8'"]);
  });

  it('refuses truncated files and trailing bytes', () => {
    const whole = tinyBytes(2);
    for (const cut of [0, 30, 199, 50_000, whole.length - 1]) {
      const dir = makeCheckpoint({ 2: whole.subarray(0, cut) });
      expectFormatError(dir, path.join(dir, 'ckpt-0', 'tensor00002_000'), ['end of file']);
    }
    const longer = new Uint8Array(whole.length + 3);
    longer.set(whole);
    const dir = makeCheckpoint({ 2: longer });
    expectFormatError(dir, path.join(dir, 'ckpt-0', 'tensor00002_000'), ['3 more bytes']);
  });

  it('refuses empty directories, directories without ckpt-0, and missing paths', () => {
    const empty = path.join(root, 'empty');
    fs.mkdirSync(empty);
    expectFormatError(empty, empty, ['an empty directory']);
    const other = path.join(root, 'other');
    fs.mkdirSync(other);
    fs.writeFileSync(path.join(other, 'config.json'), '{}');
    expectFormatError(other, other, ['no tensor files and no ckpt-0/']);
    const hollow = path.join(root, 'hollow');
    fs.mkdirSync(path.join(hollow, 'ckpt-0'), { recursive: true });
    expectFormatError(hollow, path.join(hollow, 'ckpt-0'), ['ckpt-0/ holds no tensor files']);
    const nowhere = path.join(root, 'does-not-exist');
    expectFormatError(nowhere, nowhere, ['ENOENT']);
    const file = path.join(other, 'config.json');
    expectFormatError(file, file, ['ENOTDIR']);
  });
});
