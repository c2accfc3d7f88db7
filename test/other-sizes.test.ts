/**
 * Sizes of the architecture that are not in ../shared: one KV head, 13 layers (string order 0, 1,
 * 10, 11, 12, 2, …), widths that are not powers of two. The checkpoint is written here in the
 * official layout; the expected logits were computed by an independent float64 numpy transcription
 * of docs/REFERENCE.md §2 run on the same files (a pad id inside the prompt included).
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, test } from 'node:test';
import { ensureSyntheticCheckpoint } from '../bench/synthetic.js';
import { jsKernels } from '../src/backend/js/kernels.js';
import { makeConfig } from '../src/config.js';
import { GrokModel } from '../src/model/grok.js';
import { openModelFiles } from '../src/model/load.js';
import { maxAbsDiff } from './shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-sizes-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const CONFIG = makeConfig({ vocabSize: 512, embSize: 40, numQHeads: 5, numKvHeads: 1, keySize: 8, numLayers: 13, sequenceLen: 64, wideningFactor: 2 });
const IDS = [5, 6, 7, 8, 0, 9, 300];
/** Columns 0, 37, 74, … of each position's logits, from the numpy oracle. */
const EXPECTED = [
  [0.0352121, 0.0220419, -0.174004, -0.016875, 0.0217073, -0.0167968, -0.1746284, 0.1622684, 0.082932, 0.0260612, 0.0458598, -0.0169896, 0.0023673, 0.0497865],
  [0.0064159, -0.0059072, 0.2568291, -0.000613, -0.1950048, -0.0096459, 0.0120735, 0.0912004, 0.0507033, 0.1597631, -0.0410792, 0.0371652, -0.0570761, 0.0335306],
  [0.1494689, 0.0543216, 0.1950266, -0.0214642, -0.1982742, -0.0715054, -0.0932463, 0.0622576, 0.1608812, 0.0890677, 0.0586263, -0.0273107, -0.0972975, 0.0188495],
  [0.0097489, -0.043439, 0.1468541, -0.0636918, -0.1931133, -0.0978443, -0.0564319, 0.1370699, 0.0050361, 0.2026934, 0.052546, -0.080446, 0.0780422, 0.1773088],
  [0.2466669, -0.0611301, 0.0301224, -0.0818043, -0.2098056, -0.0091757, 0.0829903, 0.0548784, 0.0270418, 0.1702511, 0.073082, 0.0133902, 0.0086193, 0.0806553],
  [-0.0737937, -0.0307289, -0.0012583, -0.0912046, -0.1931194, -0.0880261, -0.025931, 0.0810741, -0.1016608, 0.1966586, -0.016439, 0.0980724, -0.0314972, 0.1519686],
  [-0.1403733, -0.0181403, -0.054074, 0.0199296, -0.1936348, -0.051541, -0.0997536, 0.0804643, 0.0367865, 0.1722343, 0.121061, 0.0894177, -0.0919812, 0.0166028],
];

test('1 KV head, 13 layers, emb 40, ffn 56: logits match an independent float64 oracle', () => {
  const dir = ensureSyntheticCheckpoint(path.join(tmp, 'a'), CONFIG, 3);
  const files = openModelFiles(dir);
  try {
    assert.equal(files.config.ffnSize, 56);
    const model = new GrokModel(files.weights, jsKernels);
    const [flat] = model.forward([{ tokens: IDS, cache: model.newCache() }], { allLogits: true });
    EXPECTED.forEach((want, r) => {
      const got = want.map((_, j) => flat![r * 512 + j * 37]!);
      assert.ok(maxAbsDiff(got, want) < 1e-6, `position ${r}: ${maxAbsDiff(got, want)}`);
    });
    // incremental decode from a cache equals the full pass (the pad at position 4 stays masked)
    const cache = model.newCache(1);
    model.forward([{ tokens: IDS.slice(0, 3), cache }]);
    for (let p = 3; p < IDS.length; p++) {
      const [step] = model.forward([{ tokens: [IDS[p]!], cache }]);
      assert.ok(maxAbsDiff(step!, flat!.subarray(p * 512, (p + 1) * 512)) < 1e-5);
    }
  } finally {
    files.close();
  }
});

test('a config.json that disagrees with the tensors names the tensor, the expected and the found shape', () => {
  const dir = ensureSyntheticCheckpoint(path.join(tmp, 'b'), CONFIG, 3);
  const original = fs.readFileSync(path.join(dir, 'config.json'), 'utf8');
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')), num_kv_heads: 5 }));
  assert.throws(() => openModelFiles(dir), /multi_head_attention\/key\/w: expected shape \[40, 40\], found \[40, 8\]/);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ emb_size: 40, num_q_heads: 6, num_kv_heads: 4, bogus: 1 }));
  assert.throws(() => openModelFiles(dir), /unknown field "bogus"/);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ emb_size: 40, num_q_heads: 6, num_kv_heads: 4 }));
  assert.throws(() => openModelFiles(dir), /numQHeads 6 is not a multiple of numKvHeads 4/);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(original), num_layers: 12 }));
  assert.throws(() => openModelFiles(dir), /decoder_layer_12: expected no layer 12: the config says num_layers 12, found the checkpoint has more layers/);
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...JSON.parse(original), num_layers: 14 }));
  assert.throws(() => openModelFiles(dir), /decoder_layer_13\/moe\/linear\/w: expected a tensor of that name, found none/);
  fs.writeFileSync(path.join(dir, 'config.json'), '{ not json');
  assert.throws(() => openModelFiles(dir), /config\.json: expected a readable JSON file/);
});
