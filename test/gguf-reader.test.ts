/** The GGUF reader on hand-built files and on the fixtures' split conventions. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { readGgufHeader, type GgufArray } from '../src/formats/gguf.js';
import { describeGguf, openGguf, rawPartPaths, shardPaths } from '../src/formats/gguf-split.js';
import { ConcatSource, FileSource, MemorySource } from '../src/formats/tensor-file.js';
import { dequantizeGgml } from '../src/tensor/ggml.js';
import { GgufBytes, sampleGguf, T } from './gguf-builder.js';
import { FIXTURES, shared } from './shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-reader-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('GGUF reader: a hand-built file', () => {
  const g = sampleGguf();
  const h = readGgufHeader(new MemorySource('sample.gguf', g.bytes()));

  it('reads the header and every metadata type', () => {
    assert.equal(h.version, 3);
    assert.equal(h.alignment, 32);
    assert.equal(h.dataOffset, g.at.get('data'));
    assert.equal(h.metadata.string('general.architecture'), 'grok');
    assert.equal(h.metadata.number('test.scalar'), 1.5);
    assert.deepEqual(h.metadata.stringArray('test.strings'), ['x', '', '\u2581t\ufeff']);
    assert.equal(h.metadata.entry('test.u64')!.value, 2n ** 60n);
    assert.throws(() => h.metadata.number('test.u64'), /below 2\^53/);
    const nested = h.metadata.array('test.nested')!;
    assert.equal(nested.itemType, 'array');
    const [a, b] = nested.items as readonly GgufArray[];
    assert.deepEqual(Array.from(a!.items as Uint16Array), [1, 65535]);
    assert.deepEqual(Array.from(b!.items as BigInt64Array), [-5n]);
    assert.equal(h.metadata.entry('general.architecture')!.offset, g.at.get('kv0.value'));
  });

  it('keeps a leading U+FEFF in strings (vocabulary pieces start with it)', () => {
    const bom = new GgufBytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(0).u64(1).str('k').u32(T.string).str('\ufeff\u200b');
    assert.equal(readGgufHeader(new MemorySource('bom.gguf', bom.bytes())).metadata.string('k'), '\ufeff\u200b');
  });

  it('reads tensor infos with absolute data offsets and sizes', () => {
    assert.deepEqual(h.tensors.map((t) => [t.name, t.type.name, t.ne, t.offset, t.byteLength]), [
      ['a', 'f32', [4, 2], g.at.get('data'), 32],
      ['b', 'q8_0', [32, 1], g.at.get('data')! + 32, 34],
    ]);
    const out = new Float32Array(32);
    dequantizeGgml('q8_0', h.source.read(h.tensors[1]!.offset, 34), 0, out, 0, 32);
    assert.deepEqual(Array.from(out), Array.from({ length: 32 }, (_, i) => i - 16));
  });

  it('reads version 2 files and a custom alignment', () => {
    const v2 = sampleGguf().bytes();
    v2[4] = 2;
    assert.equal(readGgufHeader(new MemorySource('v2.gguf', v2)).version, 2);
    const a = new GgufBytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(1).u64(1);
    a.str('general.alignment').u32(T.u32).u32(64);
    a.str('t').u32(1).u64(8).u32(0).u64(0).pad(64).mark('data');
    a.raw(new Uint8Array(32));
    const h64 = readGgufHeader(new MemorySource('a64.gguf', a.bytes()));
    assert.equal(h64.alignment, 64);
    assert.equal(h64.dataOffset, a.at.get('data'));
    assert.equal(h64.dataOffset % 64, 0);
  });

  it('reads a raw split whose header straddles the cuts, without joining it on disk', () => {
    const bytes = g.bytes();
    const cuts = [0, 7, 61, 150, bytes.length];
    const names: string[] = [];
    for (let i = 0; i + 1 < cuts.length; i++) {
      const name = path.join(tmp, `sample.gguf.part${i + 1}of${cuts.length - 1}`);
      fs.writeFileSync(name, bytes.subarray(cuts[i], cuts[i + 1]));
      names.push(name);
    }
    assert.deepEqual(rawPartPaths(names[2]!), names);
    const m = openGguf(names[1]!);
    try {
      assert.equal(m.split, 'raw');
      const t = m.store.tensors.get('a')!;
      assert.deepEqual(t.shape, [2, 4]);
      assert.deepEqual(Array.from(new Float32Array(t.source.read(t.offset, t.byteLength).buffer)), [0.5, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5]);
      assert.equal(m.metadata.string('general.architecture'), 'grok');
    } finally {
      m.close();
    }
  });
});

describe('GGUF reader: the fixtures\' split sets hold exactly the single file\'s tensors', FIXTURES, () => {
  const compare = (setPath: string, singlePath: string) => {
    const set = openGguf(setPath);
    const single = openGguf(singlePath);
    try {
      assert.deepEqual([...set.store.tensors.keys()].sort(), [...single.store.tensors.keys()].sort());
      for (const [name, t] of single.store.tensors) {
        const s = set.store.tensors.get(name)!;
        assert.equal(s.dtype, t.dtype, name);
        assert.deepEqual(s.shape, t.shape, name);
        assert.deepEqual(s.source.read(s.offset, s.byteLength), t.source.read(t.offset, t.byteLength), name);
      }
      for (const e of single.metadata.all()) assert.deepEqual(set.metadata.entry(e.key)?.value, e.value, e.key);
    } finally {
      set.close();
      single.close();
    }
  };

  it('gguf-split shards', () => {
    const first = shared('fixtures', 'gguf', 'mini-q4_k_m-shard-00001-of-00003.gguf');
    assert.deepEqual(shardPaths(first)!.map((p) => path.basename(p)), [1, 2, 3].map((i) => `mini-q4_k_m-shard-0000${i}-of-00003.gguf`));
    compare(first, shared('fixtures', 'gguf', 'mini-q4_k_m.gguf'));
  });

  it('raw byte parts', () => {
    compare(shared('fixtures', 'gguf', 'mini-q8_0-raw.gguf.part1of3'), shared('fixtures', 'gguf', 'mini-q8_0.gguf'));
  });

  it('ConcatSource reads across part boundaries', () => {
    const parts = [1, 2, 3].map((i) => new FileSource(shared('fixtures', 'gguf', `mini-q8_0-raw.gguf.part${i}of3`)));
    const joined = new ConcatSource(parts);
    const single = new FileSource(shared('fixtures', 'gguf', 'mini-q8_0.gguf'));
    try {
      assert.equal(joined.size, single.size);
      const cut = parts[0]!.size;
      assert.deepEqual(joined.read(cut - 5, 10), single.read(cut - 5, 10));
    } finally {
      joined.close();
      single.close();
    }
  });

  it('describeGguf lists files, metadata and tensors', () => {
    const d = describeGguf(shared('fixtures', 'gguf', 'mini-q4_k_m-shard-00001-of-00003.gguf'));
    assert.equal(d.split, 'gguf-split');
    assert.equal(d.files.length, 3);
    assert.equal(d.tensors.length, 26);
    assert.deepEqual(Object.keys(d.types).sort(), ['f32', 'q4_k', 'q6_k']);
    assert.equal(d.tensorBytes, d.tensors.reduce((a, t) => a + t.bytes, 0));
    const tokens = d.metadata.find((e) => e.key === 'tokenizer.ggml.tokens')!;
    assert.equal(tokens.type, 'array<string>');
    assert.match(tokens.value, /^\["\[PAD\]", "\[BOS\]".*… 1024 items\]$/);
  });
});
