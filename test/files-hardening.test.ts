/**
 * Paths that are not the regular files they should be, and compressed files that expand without
 * bound: each fails at once with a typed error naming the file, never hangs, never reads until
 * memory is gone. Built from the bundled demo (no fixtures needed): its 50 gzip leaves, a GGUF
 * converted from it (single, gguf-split shards, raw parts), and real FIFOs and /dev/zero links.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { FileAccessError, FormatError, WeightError } from '../src/errors.js';
import { arrayLeafFraming } from '../src/formats/xai-checkpoint-writer.js';
import { openCheckpoint, tensorFileName } from '../src/formats/xai-checkpoint.js';
import { convertToGguf } from '../src/convert/to-gguf.js';
import { DEMO_MODEL_DIR, openModelFiles } from '../src/model/load.js';
import { runCli } from './cli-harness.js';
import { PROJECT_ROOT } from './shared.js';
import { loadChatTemplateFile } from '../src/server/chat-template-file.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-ts-files-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

const DEMO_CKPT = path.join(DEMO_MODEL_DIR, 'ckpt-0');
let count = 0;

/** A copy of the demo: links to its 50 .gz leaves and a copy of its config.json. */
function demoCopy(): { dir: string; ckpt: string; leaf: (i: number) => string } {
  const dir = path.join(tmp, `demo-${++count}`);
  const ckpt = path.join(dir, 'ckpt-0');
  fs.mkdirSync(ckpt, { recursive: true });
  for (const f of fs.readdirSync(DEMO_CKPT)) fs.symlinkSync(path.join(DEMO_CKPT, f), path.join(ckpt, f));
  fs.copyFileSync(path.join(DEMO_MODEL_DIR, 'config.json'), path.join(dir, 'config.json'));
  return { dir, ckpt, leaf: (i) => path.join(ckpt, tensorFileName(i)) };
}

function replace(p: string, make: (p: string) => void): void {
  fs.rmSync(p, { recursive: true, force: true });
  make(p);
}
const fifo = (p: string) => {
  const r = spawnSync('mkfifo', [p]);
  assert.equal(r.status, 0, `mkfifo: ${r.stderr}`);
};
const devZero = (p: string) => fs.symlinkSync('/dev/zero', p);

/**
 * Opens a model path in a child process (a FIFO would block this one for good) and reports the
 * error's class, file and message; the child must finish well within the timeout.
 */
function openInChild(p: string): { name: string; file?: string; message: string } {
  const load = path.join(PROJECT_ROOT, 'dist', 'src', 'model', 'load.js');
  const code = `
    const { openModelFiles } = await import(${JSON.stringify(load)});
    try { openModelFiles(${JSON.stringify(p)}).close(); console.log(JSON.stringify({ name: 'ok', message: '' })); }
    catch (e) { console.log(JSON.stringify({ name: e.name, file: e.file, message: e.message })); }`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 20_000 });
  assert.equal(r.signal, null, `opening ${p} did not finish (killed by ${r.signal}); stderr: ${r.stderr}`);
  return JSON.parse(r.stdout.trim().split('\n').pop()!) as { name: string; file?: string; message: string };
}

function expectRefused(p: string, file: string, found: RegExp): void {
  const e = openInChild(p);
  assert.equal(e.name, 'FileAccessError', e.message);
  assert.equal(e.file, file);
  assert.match(e.message, found);
}

// A GGUF of the demo: one file, a gguf-split set, and the single file cut into three raw parts.
let gguf: { single: string; shards: string[]; parts: string[] };
before(() => {
  const files = openModelFiles(DEMO_MODEL_DIR);
  try {
    const single = path.join(tmp, 'demo.gguf');
    convertToGguf(files.weights, files.store, single, { type: 'q8_0' });
    const shards = [...convertToGguf(files.weights, files.store, path.join(tmp, 'split.gguf'), { type: 'q8_0', splitMaxBytes: 8_000_000 }).files];
    assert.ok(shards.length >= 2);
    const bytes = fs.readFileSync(single);
    const cut = [0, Math.floor(bytes.length / 3), Math.floor((2 * bytes.length) / 3), bytes.length];
    const parts = [1, 2, 3].map((i) => path.join(tmp, `raw.gguf.part${i}of3`));
    parts.forEach((p, i) => fs.writeFileSync(p, bytes.subarray(cut[i]!, cut[i + 1]!)));
    gguf = { single, shards, parts };
  } finally {
    files.close();
  }
});

/** A directory of links to the files of a GGUF set, one of them replaced. */
function ggufCopy(files: readonly string[], index: number, make: (p: string) => void): string[] {
  const dir = path.join(tmp, `gguf-${++count}`);
  fs.mkdirSync(dir);
  return files.map((f, i) => {
    const p = path.join(dir, path.basename(f));
    if (i === index) make(p);
    else fs.symlinkSync(f, p);
    return p;
  });
}

describe('only regular files are opened', () => {
  it('a FIFO or /dev/zero as config.json fails at once, naming config.json', () => {
    for (const make of [fifo, devZero]) {
      const d = demoCopy();
      const cfg = path.join(d.dir, 'config.json');
      replace(cfg, make);
      expectRefused(d.dir, cfg, make === fifo ? /a FIFO/ : /a character device/);
    }
  });

  it('a FIFO or /dev/zero as a tensor file or a .gz leaf fails at once, naming it', () => {
    for (const make of [fifo, devZero]) {
      const d = demoCopy();
      replace(`${d.leaf(3)}.gz`, make);
      expectRefused(d.dir, `${d.leaf(3)}.gz`, make === fifo ? /a FIFO/ : /a character device/);
      const e = demoCopy();
      make(e.leaf(7)); // a plain tensor file takes precedence over its .gz
      expectRefused(e.dir, e.leaf(7), make === fifo ? /a FIFO/ : /a character device/);
    }
  });

  it('a FIFO as a GGUF file, a gguf-split shard, a raw part or the model path fails at once, naming it', () => {
    const shards = ggufCopy(gguf.shards, 1, fifo);
    expectRefused(shards[0]!, shards[1]!, /shard 2 of .*a FIFO/);
    const parts = ggufCopy(gguf.parts, 2, fifo);
    expectRefused(parts[0]!, parts[2]!, /part 3 of 3 .*a FIFO/);
    const named = path.join(tmp, 'fifo.gguf');
    fifo(named);
    expectRefused(named, named, /a FIFO/);
    const bare = path.join(tmp, 'fifo-model');
    fifo(bare);
    expectRefused(bare, bare, /a FIFO/);
  });

  it('a --tokenizer that is a FIFO fails at once, naming it', () => {
    const t = path.join(tmp, 'tokenizer-fifo.model');
    fifo(t);
    const r = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'bin', 'grok-ts.js'), 'tokenize', '--tokenizer', t, 'hello'], { encoding: 'utf8', timeout: 20_000 });
    assert.equal(r.signal, null, 'tokenize did not finish');
    assert.equal(r.status, 66);
    assert.match(r.stderr, /tokenizer-fifo\.model: expected a readable tokenizer\.model file, found a FIFO/);
  });
});

describe('the --chat-template file of the server', () => {
  it('a FIFO or /dev/zero as the template fails at once with a typed error naming it', () => {
    for (const make of [fifo, devZero]) {
      const t = path.join(tmp, make === fifo ? 'template-fifo.json' : 'template-zero.json');
      make(t);
      assert.throws(() => loadChatTemplateFile(t), (e: unknown) => e instanceof FormatError && e.message.includes(t) && (make === fifo ? /a FIFO/ : /a character device/).test(e.message));
    }
  });
});

describe('a directory where a file should be: a typed error and exit 66, no stack', () => {
  const expectDir = async (model: string, file: string) => {
    const r = await runCli(['inspect', model]);
    assert.equal(r.code, 66, r.err);
    assert.equal(r.err.trim().split('\n').length, 1, r.err);
    assert.ok(r.err.includes(`${file}: expected`) && r.err.includes('found a directory'), r.err);
    assert.doesNotMatch(r.err, /internal error|EISDIR|\n\s+at /);
  };

  it('a tensor file, a .gz leaf, a gguf-split shard, a raw part, a .gguf path', async () => {
    const d = demoCopy();
    fs.mkdirSync(d.leaf(5)); // a plain tensor file takes precedence over its .gz
    await expectDir(d.dir, d.leaf(5));
    const g = demoCopy();
    replace(`${g.leaf(9)}.gz`, (p) => fs.mkdirSync(p));
    await expectDir(g.dir, `${g.leaf(9)}.gz`);
    const shards = ggufCopy(gguf.shards, 1, (p) => fs.mkdirSync(p));
    await expectDir(shards[0]!, shards[1]!);
    const parts = ggufCopy(gguf.parts, 1, (p) => fs.mkdirSync(p));
    await expectDir(parts[0]!, parts[1]!);
    const dirGguf = path.join(tmp, 'a-directory.gguf');
    fs.mkdirSync(dirGguf);
    await expectDir(dirGguf, dirGguf);
    assert.throws(() => openModelFiles(dirGguf), (e: unknown) => e instanceof FileAccessError && e instanceof FormatError);
  });
});

describe('gzip leaves: bounded by the config before they are decompressed', () => {
  /** 64 MiB of zeros, gzipped once (65 KB) and repeated as gzip members. */
  const zeros = gzipSync(Buffer.alloc(64 << 20), { level: 9 });

  /**
   * A valid single-array pickle of shape [8, 64, F] f32 (a moe/linear/w whose F is far larger than
   * the config's 176), as a gzip of ~1 MB expanding to just under 1 GiB: head, zeros, tail.
   */
  function bomb(): Buffer {
    const payload = 1023 * 2 ** 20; // just under the old 1 GiB per-file cap
    const { head, tail } = arrayLeafFraming({ dtype: 'f32', shape: [8, 64, payload / (8 * 64 * 4)] });
    const members = [gzipSync(head)];
    for (let left = payload; left > 0; left -= 64 << 20) members.push(left >= 64 << 20 ? zeros : gzipSync(Buffer.alloc(left)));
    members.push(gzipSync(tail));
    return Buffer.concat(members);
  }

  it('three 1 MB leaves expanding to ~1 GiB each: refused at the first, fast, without the gigabytes', () => {
    const d = demoCopy();
    const b = bomb();
    assert.ok(b.length < 2_000_000, `${b.length} bytes`);
    for (const i of [2, 14, 26]) replace(`${d.leaf(i)}.gz`, (p) => fs.writeFileSync(p, b)); // moe/linear/w of layers 0, 1, 2
    const rss0 = process.resourceUsage().maxRSS;
    const t0 = performance.now();
    assert.throws(
      () => openModelFiles(d.dir),
      (e: unknown) => {
        assert.ok(e instanceof FormatError, String(e));
        assert.equal(e.file, `${d.leaf(2)}.gz`);
        assert.match(e.message, /transformer\/decoder_layer_0\/moe\/linear\/w of shape \[8, 64, 176\]/);
        return true;
      },
    );
    const ms = performance.now() - t0;
    const grewMb = (process.resourceUsage().maxRSS - rss0) / 1024;
    assert.ok(ms < 5000, `took ${ms} ms`);
    assert.ok(grewMb < 200, `peak memory grew by ${grewMb} MB`);
  });

  it('a small file that inflates past its cap is stopped there', () => {
    const d = demoCopy();
    // 130 KB expanding to 128 MiB where a 360 KB moe/linear/w belongs; the last member (the tail) declares a few bytes
    const { head, tail } = arrayLeafFraming({ dtype: 'f32', shape: [8, 64, (128 << 20) / (8 * 64 * 4)] });
    replace(`${d.leaf(2)}.gz`, (p) => fs.writeFileSync(p, Buffer.concat([gzipSync(head), zeros, zeros, gzipSync(tail)])));
    assert.throws(() => openModelFiles(d.dir), (e: unknown) => e instanceof FormatError && e.file === `${d.leaf(2)}.gz` && /at most 786432 bytes \(the most a transformer\/decoder_layer_0\/moe\/linear\/w of shape \[8, 64, 176\] can take\), found more \(decompression stopped there\)/.test(e.message));
  });

  it('a leaf whose gzip trailer declares more than its shape allows is refused before inflating', () => {
    const d = demoCopy();
    const { head, tail } = arrayLeafFraming({ dtype: 'f32', shape: [64, 1 << 16] }); // 16 MiB where a [64] norm belongs
    replace(`${d.leaf(1)}.gz`, (p) => fs.writeFileSync(p, gzipSync(Buffer.concat([head, Buffer.alloc(64 << 18), tail]))));
    assert.throws(() => openModelFiles(d.dir), (e: unknown) => e instanceof FormatError && /a trailer declaring 16777\d+ bytes/.test(e.message) && e.file === `${d.leaf(1)}.gz`);
  });

  it('a leaf of the right size but the wrong shape fails before the next leaf is decompressed', () => {
    const d = demoCopy();
    // layer 0's moe/linear/w [8, 64, 176] where its moe/linear_1/w [8, 176, 64] belongs: same bytes
    replace(`${d.leaf(3)}.gz`, (p) => fs.symlinkSync(path.join(DEMO_CKPT, `${tensorFileName(2)}.gz`), p));
    assert.throws(
      () => openModelFiles(d.dir),
      (e: unknown) => e instanceof WeightError && e.tensor === 'transformer/decoder_layer_0/moe/linear_1/w' && /expected shape \[8, 176, 64\] \(from the config\), found \[8, 64, 176\]/.test(e.message),
    );
  });

  it('all leaves together expand within a budget', () => {
    assert.throws(() => openCheckpoint(DEMO_MODEL_DIR, { maxExpandedBytes: 10_000_000 }), (e: unknown) => e instanceof FormatError && /of the 10000000 bytes all compressed tensor files may expand to/.test(e.message));
    openCheckpoint(DEMO_MODEL_DIR, { maxExpandedBytes: 40_000_000 }).close(); // the demo is 34.8 MB expanded
  });
});
