/**
 * Bad GGUF files: each must fail with a typed error that names the file, the field and its byte
 * offset, quickly and without allocating what a hostile count or length asks for.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, describe, it } from 'node:test';
import { FormatError, GrokError, UnsupportedError } from '../src/errors.js';
import { readGgufHeader } from '../src/formats/gguf.js';
import { openGguf } from '../src/formats/gguf-split.js';
import { MemorySource } from '../src/formats/tensor-file.js';
import { GgufBytes, sampleGguf, T } from './gguf-builder.js';
import { FIXTURES, shared } from './shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gguf-bad-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function parse(bytes: Uint8Array, name = 'bad.gguf') {
  return readGgufHeader(new MemorySource(name, bytes));
}

/** Asserts a FormatError for `name` at `offset` whose message matches `field`. */
function rejects(fn: () => unknown, offset: number | undefined, field: RegExp, name = 'bad.gguf'): FormatError {
  let caught: unknown;
  try {
    fn();
  } catch (err) {
    caught = err;
  }
  assert.ok(caught instanceof FormatError, `expected a FormatError, got ${String(caught)}`);
  assert.equal(caught.file, name);
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  assert.match(caught.message, field);
  return caught;
}

/** The sample with a u64/u32 field at `at` overwritten. */
function patched(field: string, write: (g: DataView, at: number) => void): Uint8Array {
  const g = sampleGguf();
  const bytes = g.bytes();
  write(new DataView(bytes.buffer), g.at.get(field)!);
  return bytes;
}

describe('GGUF bad files', () => {
  const g = sampleGguf();
  const good = g.bytes();

  it('truncation at every byte of the header and inside the data fails with an offset', () => {
    for (let cut = 0; cut < good.length; cut++) {
      let err: unknown;
      try {
        parse(good.subarray(0, cut));
      } catch (e) {
        err = e;
      }
      assert.ok(err instanceof FormatError, `cut at ${cut}: ${String(err)}`);
      assert.equal(err.file, 'bad.gguf');
      assert.ok(err.offset !== undefined && err.offset <= cut, `cut at ${cut}: offset ${err.offset}`);
    }
  });

  it('truncation at each section boundary of a real file names the field', FIXTURES, () => {
    const bytes = new Uint8Array(fs.readFileSync(shared('fixtures', 'gguf', 'mini-q8_0.gguf')));
    const h = parse(bytes, 'mini.gguf');
    const boundaries = [4, 8, 16, 24, ...[...h.metadata.all()].map((e) => e.offset), ...h.tensors.map((t) => t.infoOffset), h.dataOffset, h.tensors[5]!.offset + 1, bytes.length - 1];
    for (const cut of boundaries) {
      const e = rejects(() => parse(bytes.subarray(0, cut), 'mini.gguf'), undefined, /expected/, 'mini.gguf');
      assert.ok(/(bytes|tensor|metadata|magic|version|count|data section)/.test(e.message), e.message);
    }
  });

  it('a wrong magic, version 1, a big-endian file and an unknown version', () => {
    rejects(() => parse(new TextEncoder().encode('GGML' + '\0'.repeat(40))), 0, /magic/);
    const v = (n: number) => patched('version', (d, at) => d.setUint32(at, n, true));
    assert.throws(() => parse(v(1)), (e: unknown) => e instanceof UnsupportedError && /version 1/.test(e.message));
    assert.throws(() => parse(v(0x03000000)), (e: unknown) => e instanceof UnsupportedError && /big-endian/.test(e.message));
    rejects(() => parse(v(7)), 4, /version 2 or 3/);
  });

  it('absurd counts and lengths fail fast without allocating', () => {
    const before = process.memoryUsage().rss;
    const t0 = performance.now();
    rejects(() => parse(patched('kv_count', (d, at) => d.setBigUint64(at, 1n << 62n, true))), g.at.get('kv_count'), /metadata count|below 2\^53/);
    rejects(() => parse(patched('tensor_count', (d, at) => d.setBigUint64(at, 1n << 40n, true))), g.at.get('tensor_count'), /tensor count/);
    rejects(() => parse(patched('kv2.count', (d, at) => d.setBigUint64(at, 1n << 62n, true))), g.at.get('kv2.count'), /test\.strings array count/);
    rejects(() => parse(patched('kv2.count', (d, at) => d.setBigUint64(at, 1n << 40n, true))), g.at.get('kv2.count'), /test\.strings: an array count that fits the file/);
    rejects(() => parse(patched('kv0.value', (d, at) => d.setBigUint64(at, 1n << 33n, true))), g.at.get('kv0.value'), /general\.architecture: a string of 8589934592 bytes/);
    rejects(() => parse(patched('kv0', (d, at) => d.setBigUint64(at, 1n << 62n, true))), g.at.get('kv0'), /metadata key #0 length/);
    assert.ok(performance.now() - t0 < 1000);
    assert.ok(process.memoryUsage().rss - before < 256 * 1024 * 1024);
  });

  it('an unknown value type, and arrays nested too deep', () => {
    rejects(() => parse(patched('kv1', (d, at) => d.setUint32(at + 8 + 'test.scalar'.length, 99, true))), g.at.get('kv1')! + 8 + 11, /value type id/);
    const deep = new GgufBytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(0).u64(1).str('deep').u32(T.array);
    for (let i = 0; i < 100; i++) deep.u32(T.array).u64(1);
    deep.u32(T.u8).u64(0);
    rejects(() => parse(deep.bytes()), undefined, /nested at most 8 deep/);
  });

  it('tensor infos: unknown type, too many dimensions, overflowing and misaligned sizes and offsets', () => {
    rejects(() => parse(patched('ti0.type', (d, at) => d.setUint32(at, 200, true))), g.at.get('ti0.type'), /tensor a: a known ggml type id.*found type 200/);
    rejects(() => parse(patched('ti0.ndims', (d, at) => d.setUint32(at, 9, true))), g.at.get('ti0.ndims'), /tensor a: at most 4 dimensions/);
    rejects(() => parse(patched('ti0.ne', (d, at) => d.setBigUint64(at, 1n << 52n, true))), undefined, /tensor a: an element count below 2\^53/);
    rejects(() => parse(patched('ti0.ne', (d, at) => d.setBigUint64(at, 1n << 40n, true))), g.at.get('ti0.offset'), /tensor a: .* inside the file/);
    rejects(() => parse(patched('ti0.offset', (d, at) => d.setBigUint64(at, 1024n, true))), g.at.get('ti0.offset'), /tensor a: 32 bytes of f32 data at data offset 1024/);
    rejects(() => parse(patched('ti0.offset', (d, at) => d.setBigUint64(at, 3n, true))), g.at.get('ti0.offset'), /tensor a: a data offset aligned to 32/);
    rejects(() => parse(patched('ti0.offset', (d, at) => d.setBigUint64(at, 1n << 63n, true))), g.at.get('ti0.offset'), /tensor a data offset below 2\^53/);
    const q8 = patched('ti0.type', (d, at) => d.setUint32(at, 8, true)); // q8_0 rows of 4 values
    rejects(() => parse(q8), g.at.get('ti0.ndims'), /multiple of the q8_0 block size 32/);
  });

  it('duplicate tensor names and keys', () => {
    const bytes = sampleGguf().bytes();
    bytes[g.at.get('ti1')! + 8] = 'a'.charCodeAt(0); // tensor "b" renamed "a"
    rejects(() => parse(bytes), g.at.get('ti1'), /a tensor name not seen before.*second "a"/);
    const dup = new GgufBytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(0).u64(2);
    dup.str('k').u32(T.u8).u8(1).mark('second').str('k').u32(T.u8).u8(2);
    rejects(() => parse(dup.bytes()), dup.at.get('second'), /a key not seen before/);
  });

  it('general.alignment must be a u32 power of two', () => {
    const a = (type: number, value: number) => {
      const b = new GgufBytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(0).u64(1).str('general.alignment').u32(type).mark('v');
      if (type === T.u32) b.u32(value);
      else b.u16(value);
      return b;
    };
    rejects(() => parse(a(T.u32, 48).bytes()), a(T.u32, 48).at.get('v'), /power of two/);
    rejects(() => parse(a(T.u32, 0).bytes()), undefined, /power of two/);
    rejects(() => parse(a(T.u16, 64).bytes()), a(T.u16, 64).at.get('v'), /general\.alignment: a u32/);
  });

  it('a missing shard or raw part names the missing file', FIXTURES, () => {
    const dir = shared('fixtures', 'gguf');
    for (const f of ['mini-q4_k_m-shard-00001-of-00003.gguf', 'mini-q4_k_m-shard-00003-of-00003.gguf', 'mini-q8_0-raw.gguf.part1of3', 'mini-q8_0-raw.gguf.part3of3']) {
      fs.copyFileSync(path.join(dir, f), path.join(tmp, f));
    }
    const missingShard = path.join(tmp, 'mini-q4_k_m-shard-00002-of-00003.gguf');
    rejects(() => openGguf(path.join(tmp, 'mini-q4_k_m-shard-00001-of-00003.gguf')), undefined, /shard 2 of 3.*no such file/, missingShard);
    const missingPart = path.join(tmp, 'mini-q8_0-raw.gguf.part2of3');
    rejects(() => openGguf(path.join(tmp, 'mini-q8_0-raw.gguf.part3of3')), undefined, /part 2 of 3/, missingPart);
  });

  it('shards out of order, or a shard set that lost its names', FIXTURES, () => {
    const dir = shared('fixtures', 'gguf');
    const sub = fs.mkdtempSync(path.join(tmp, 'swap-'));
    const name = (i: number) => path.join(sub, `m-0000${i}-of-00003.gguf`);
    fs.copyFileSync(path.join(dir, 'mini-q4_k_m-shard-00001-of-00003.gguf'), name(1));
    fs.copyFileSync(path.join(dir, 'mini-q4_k_m-shard-00003-of-00003.gguf'), name(2));
    fs.copyFileSync(path.join(dir, 'mini-q4_k_m-shard-00002-of-00003.gguf'), name(3));
    rejects(() => openGguf(name(1)), undefined, /split\.no = 1 and split\.count = 3/, name(2));
    const renamed = path.join(sub, 'renamed.gguf');
    fs.copyFileSync(name(1), renamed);
    rejects(() => openGguf(renamed), undefined, /NAME-00001-of-00003\.gguf/, renamed);
  });

  it('absurd split counts and part names', () => {
    const sub = fs.mkdtempSync(path.join(tmp, 'count-'));
    const b = new GgufBytes().raw([0x47, 0x47, 0x55, 0x46]).u32(3).u64(0).u64(1).str('split.count').u32(T.u64).mark('v').u64(2n ** 40n);
    const name = path.join(sub, 'm-00001-of-00002.gguf');
    fs.writeFileSync(name, b.bytes());
    rejects(() => openGguf(name), b.at.get('v'), /split\.count at most 65535/, name);
    for (const bad of ['x.gguf.part0of0', 'x.gguf.part3of2', 'x.gguf.part1of99999999']) {
      const p = path.join(sub, bad);
      rejects(() => openGguf(p), undefined, /NAME\.partNofM with 1 ≤ N ≤ M/, p);
    }
  });

  it('every failure on a damaged fixture is a GrokError', FIXTURES, () => {
    const bytes = new Uint8Array(fs.readFileSync(shared('fixtures', 'gguf', 'mini-q4_0.gguf')));
    for (let at = 0; at < 4096; at += 7) {
      const copy = bytes.slice(0, 8192);
      copy[at] = copy[at]! ^ 0xff;
      try {
        parse(copy, 'flip.gguf');
      } catch (err) {
        assert.ok(err instanceof GrokError, `byte ${at}: ${String(err)}`);
      }
    }
  });
});
