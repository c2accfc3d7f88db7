/**
 * Expert streaming under a memory budget (backend/wasm/expert-cache.ts, model/residency.ts): tiny
 * budgets on the fixtures force evictions inside every batch, and the logits must stay
 * bit-identical to the resident wasm path (same packed bytes, same kernels); budgets below the
 * minimum and files that change under a running model fail with typed errors.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { test } from 'node:test';
import { FileAccessError, GrokError, MemoryBudgetError, UsageError } from '../src/errors.js';
import { loadModel, type LanguageModel, type LoadOptions } from '../src/language-model.js';
import { parseByteSize } from '../src/model/residency.js';
import { ExpertCache, type ExpertLoader } from '../src/backend/wasm/expert-cache.js';
import type { Shard } from '../src/backend/wasm/runtime.js';
import type { LinearWeight } from '../src/tensor/linear.js';
import { FIXTURES, fixtureTest, shared } from './shared.js';

const PROMPT = [1, 17, 300, 42, 9, 511, 77, 3, 250, 128, 64, 900];

function bitIdentical(a: Float32Array[], b: Float32Array[]): boolean {
  return a.length === b.length && a.every((r, i) => r.length === b[i]!.length && r.every((v, j) => Object.is(v, b[i]![j])));
}

async function withModel<T>(file: string, opts: LoadOptions, fn: (lm: LanguageModel) => Promise<T> | T): Promise<T> {
  const lm = await loadModel(file, { backend: 'wasm', threads: 2, ...opts });
  try {
    return await fn(lm);
  } finally {
    await lm.close();
  }
}

test('parseByteSize: plain bytes and K/M/G/T sizes (powers of 1024), typed errors otherwise', () => {
  assert.equal(parseByteSize('16G'), 16 * 2 ** 30);
  assert.equal(parseByteSize('512m'), 512 * 2 ** 20);
  assert.equal(parseByteSize('1.5GiB'), 1.5 * 2 ** 30);
  assert.equal(parseByteSize('4096'), 4096);
  assert.equal(parseByteSize(3e6), 3e6);
  for (const bad of ['', 'lots', '-1G', '0', '16X']) assert.throws(() => parseByteSize(bad), UsageError, bad);
  assert.throws(() => parseByteSize(-5), UsageError);
});

for (const fixture of ['mini-q8_0.gguf', 'mini-q4_k_m.gguf', 'mini-q2_k.gguf', 'mini-iq2_xs.gguf']) {
  fixtureTest(`${fixture}: logits under tiny budgets (forced evictions, every policy, readers or not) are bit-identical to resident`, async () => {
    const file = shared('fixtures', 'gguf', fixture);
    const { base, memory, ids } = await withModel(file, { lazyExperts: false }, async (lm) => ({
      base: lm.logits(PROMPT, true),
      memory: lm.memory,
      ids: (await lm.generate(PROMPT.slice(0, 4), { maxTokens: 8, temperature: 0 })).ids,
    }));
    assert.equal(memory.mode, 'resident');
    assert.ok(memory.minimumBytes < memory.totalBytes);
    const runs: LoadOptions[] = [
      { memoryBudget: memory.minimumBytes, expertReaders: 0 },
      { memoryBudget: memory.minimumBytes, expertReaders: 2, evictionPolicy: 'lfu', expertDirectReads: false },
      { memoryBudget: memory.minimumBytes, expertReaders: 3, expertDirectReads: true },
      { memoryBudget: memory.minimumBytes + memory.expertBytes, expertReaders: 1, evictionPolicy: 'decay', predictExperts: true },
      { memoryBudget: memory.totalBytes - 1, evictionPolicy: 'lru' },
    ];
    for (const opts of runs) {
      await withModel(file, opts, async (lm) => {
        const got = lm.logits(PROMPT, true);
        assert.ok(bitIdentical(got, base), `logits differ with ${JSON.stringify(opts)}`);
        const m = lm.memory;
        assert.equal(m.mode, 'stream');
        assert.ok(m.residentBytes <= Number(opts.memoryBudget), `resident ${m.residentBytes} > budget ${opts.memoryBudget}`);
        assert.ok(m.cache!.misses > 0 && m.cache!.loads > 0);
        if (opts.memoryBudget === memory.minimumBytes) assert.ok(m.cache!.evictions > 0, 'a minimum budget must evict');
        const gen = await lm.generate(PROMPT.slice(0, 4), { maxTokens: 8, temperature: 0 });
        assert.deepEqual(gen.ids, ids);
        assert.ok(lm.memory.cache!.hits + lm.memory.cache!.misses > m.cache!.hits + m.cache!.misses);
      });
    }
  });
}

test('reuseFirst: the first layers reuse slots the batch does not use before taking fresh memory; later ones grow the cache to capacity', () => {
  const groups = Array.from({ length: 12 }, () => [{ byteLength: 1 } as LinearWeight]);
  const layouts = groups.map(() => ({ plans: [], offsets: [0], bytes: 64 }));
  const loader: ExpertLoader = { start: () => 1, done: () => true, wait: () => {}, close: async () => {} };
  const slots = (reuseFirst: number) => {
    let allocated = 0;
    const cache = new ExpertCache(groups, layouts, 6, () => ({ shard: undefined as unknown as Shard, ptr: 64 * allocated++ }), loader, { reuseFirst });
    const sizes: number[] = [];
    // 5 layers of 2 experts (groups 2l, 2l + 1), then layer 0 again
    for (const gs of [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9], [0, 1]]) {
      for (const g of cache.begin(gs)) cache.done(g);
      cache.end();
      sizes.push(cache.slots.length);
    }
    return { sizes, evictions: cache.stats.evictions, hits: cache.stats.hits };
  };
  // without: every miss takes fresh memory until the 6 slots are used
  assert.deepEqual(slots(0), { sizes: [2, 4, 6, 6, 6, 6], evictions: 6, hits: 0 });
  // for the first 3 layers, layer l's experts go into layer l − 1's slots; then the cache grows
  assert.deepEqual(slots(3), { sizes: [2, 2, 2, 4, 6, 6], evictions: 6, hits: 0 });
  // where every expert has its own slot (a lazy start), the first pass reuses slots of the same
  // size only, and the background fill reads the evicted experts back: the model ends up resident
  const sized = groups.map((_, g) => ({ plans: [], offsets: [0], bytes: g === 2 ? 128 : 64 }));
  const own = new ExpertCache(groups, sized, 12, () => ({ shard: undefined as unknown as Shard, ptr: 0 }), loader, { reuseFirst: 3 });
  // the fill waits for the first forward pass (3 layers here)
  assert.equal(own.fill(4), true);
  assert.equal(own.slots.length, 0);
  for (const gs of [[0, 1], [2, 3], [4, 5]]) {
    for (const g of own.begin(gs)) own.done(g);
    own.end();
  }
  // group 2 (128 bytes) fits no 64-byte slot and took fresh memory; 3, 4 and 5 took layer 0's and 1's
  assert.deepEqual(own.slots.map((s) => s.bytes), [64, 64, 128]);
  assert.equal(own.stats.evictions, 3);
  while (own.fill(4));
  assert.equal(own.slots.length, 12);
  assert.deepEqual(own.slots.map((s) => s.group).sort((a, b) => a - b), groups.map((_, g) => g));
  assert.equal(own.residentBytes, sized.reduce((n, l) => n + l.bytes, 0));
  assert.ok(own.slots.every((s) => s.bytes === sized[s.group]!.bytes), 'every expert in a slot of its own size');
});

fixtureTest('ckpt-0 (int8 with scales: loads on the main thread) streams bit-identically', async () => {
  const dir = shared('fixtures', 'tiny');
  const { base, memory } = await withModel(dir, {}, (lm) => ({ base: lm.logits(PROMPT.map((t) => t % 100), true), memory: lm.memory }));
  await withModel(dir, { memoryBudget: memory.minimumBytes }, (lm) => {
    assert.ok(bitIdentical(lm.logits(PROMPT.map((t) => t % 100), true), base));
    assert.ok(lm.memory.cache!.evictions > 0);
  });
});

fixtureTest('a budget below non-expert weights + top-K experts is a MemoryBudgetError stating the minimum; one holding everything changes nothing', async () => {
  const file = shared('fixtures', 'gguf', 'mini-q8_0.gguf');
  const memory = await withModel(file, {}, (lm) => lm.memory);
  await assert.rejects(loadModel(file, { backend: 'wasm', threads: 1, memoryBudget: memory.minimumBytes - 1 }), (err: unknown) => {
    assert.ok(err instanceof MemoryBudgetError);
    assert.equal(err.minimumBytes, memory.minimumBytes);
    assert.match(err.message, new RegExp(`minimum of ${memory.minimumBytes} bytes`));
    return true;
  });
  await withModel(file, { memoryBudget: memory.totalBytes, lazyExperts: false }, (lm) => {
    assert.equal(lm.memory.mode, 'resident');
    assert.equal(lm.memory.cache, undefined);
  });
  await assert.rejects(loadModel(file, { backend: 'wasm', memoryBudget: 'much' }), UsageError);
});

for (const readers of [0, 2]) {
  test(`a file that changes under a running model fails the request that needed it with a typed error; the model goes on (readers ${readers})`, FIXTURES, async () => {
    const src = shared('fixtures', 'gguf', 'mini-q8_0.gguf');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'grok-stream-'));
    const file = path.join(dir, 'model.gguf');
    fs.copyFileSync(src, file);
    try {
      const { base, memory } = await withModel(src, {}, (lm) => ({ base: lm.logits(PROMPT, true), memory: lm.memory }));
      await withModel(file, { memoryBudget: memory.minimumBytes, expertReaders: readers }, async (lm) => {
        assert.ok(bitIdentical(lm.logits(PROMPT, true), base));
        const original = fs.readFileSync(file);
        const st = fs.statSync(file);
        fs.truncateSync(file, Math.floor(original.length / 2));
        assert.throws(() => lm.logits(PROMPT, true), (err: unknown) => {
          assert.ok(err instanceof FileAccessError || err instanceof GrokError, String(err));
          assert.match((err as Error).message, /model\.gguf/);
          return true;
        });
        // through the scheduler (generate): the request fails with the typed error, nothing else does
        await assert.rejects(lm.generate(PROMPT.slice(0, 5), { maxTokens: 4, temperature: 0 }), (err: unknown) => err instanceof GrokError);
        // the same bytes back in place (same inode, size and mtime): the next requests run
        fs.writeFileSync(file, original);
        fs.utimesSync(file, st.atimeMs / 1000, st.mtimeMs / 1000);
        assert.ok(bitIdentical(lm.logits(PROMPT, true), base));
        assert.equal((await lm.generate(PROMPT.slice(0, 5), { maxTokens: 4, temperature: 0 })).usage.completionTokens, 4);
        // removed: typed again
        fs.rmSync(file);
        assert.throws(() => lm.logits(PROMPT, true), FileAccessError);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
}

fixtureTest('CLI: --memory-budget streams with the same greedy ids, --verbose reports hits and disk reads, inspect states the minimum, too small a budget exits with it', async () => {
  const { runCli } = await import('./cli-harness.js');
  const file = shared('fixtures', 'gguf', 'mini-q8_0.gguf');
  const args = ['generate', '-m', file, '--ids', '1,2,3', '-n', '12', '-t', '0', '--json', '--threads', '2'];
  const resident = await runCli(args);
  assert.equal(resident.code, 0, resident.err);
  const streamed = await runCli([...args, '--memory-budget', '1.6M', '--eviction-policy', 'lfu', '--verbose']);
  assert.equal(streamed.code, 0, streamed.err);
  assert.deepEqual(JSON.parse(streamed.out).ids, JSON.parse(resident.out).ids);
  assert.match(streamed.err, /memory budget .* resident, 2 of 8 experts cached; expert hits \d+\/\d+ .* read .* from disk/);
  const inspect = await runCli(['inspect', file, '--json']);
  const minimum = JSON.parse(inspect.out).residency.minimumBytes as number;
  assert.ok(minimum > 0);
  const small = await runCli([...args, '--memory-budget', '1M']);
  assert.equal(small.code, 2);
  assert.match(small.err, /below this model's minimum of \d+ bytes/);
  const bad = await runCli([...args, '--eviction-policy', 'random']);
  assert.equal(bad.code, 2);
});

fixtureTest('lazy start: only non-expert weights are packed before the first token, the rest fills in the background, logits bit-identical', async () => {
  const file = shared('fixtures', 'gguf', 'mini-q8_0.gguf');
  const { base, memory } = await withModel(file, { lazyExperts: false }, (lm) => ({ base: lm.logits(PROMPT, true), memory: lm.memory }));
  assert.equal(memory.cache, undefined);
  // the background fill waits for the first forward pass, so no expert has a slot before it
  await withModel(file, {}, async (lm) => {
    assert.equal(lm.memory.cache!.slotsUsed, 0);
    const m = lm.memory;
    assert.equal(m.mode, 'resident');
    assert.ok(m.residentBytes < memory.residentBytes, `lazy start packed ${m.residentBytes} of ${memory.residentBytes} bytes before the first token`);
    assert.ok(bitIdentical(lm.logits(PROMPT, true), base));
    await lm.whenResident();
    assert.equal(lm.memory.residentBytes, memory.residentBytes);
    // the first pass may have reused slots (reuseFirst); the fill has read those experts back, so
    // now every expert is resident and a forward pass misses none
    const misses = lm.memory.cache!.misses;
    assert.ok(bitIdentical(lm.logits(PROMPT, true), base));
    assert.equal(lm.memory.cache!.misses, misses);
  });
});

fixtureTest('memory reports: the server health form under a budget, and the js backend (lazy reads, same minimum rule)', async () => {
  const file = shared('fixtures', 'gguf', 'mini-q8_0.gguf');
  const memory = await withModel(file, { lazyExperts: false }, (lm) => lm.memory);
  await withModel(file, { memoryBudget: memory.minimumBytes + memory.expertBytes }, (lm) => {
    lm.logits(PROMPT.slice(0, 3));
    const h = lm.memoryHealth();
    assert.equal(h['mode'], 'stream');
    assert.equal(h['budget_bytes'], memory.minimumBytes + memory.expertBytes);
    assert.equal(h['expert_slots'], 3);
    assert.ok(Number(h['expert_slots_used']) >= 1 && Number(h['expert_slots_used']) <= 3);
    assert.ok(Number(h['resident_bytes']) <= Number(h['budget_bytes']));
    assert.ok(Number(h['hit_rate']) >= 0 && Number(h['hit_rate']) <= 1);
    assert.ok(Number(h['disk_read_bytes']) > 0);
  });
  const js = await loadModel(file, { backend: 'js', memoryBudget: '100M' });
  try {
    assert.equal(js.memory.mode, 'resident');
    assert.equal(js.memory.cache, undefined);
  } finally {
    await js.close();
  }
  await assert.rejects(loadModel(file, { backend: 'js', memoryBudget: 1000 }), MemoryBudgetError);
});

fixtureTest('default eviction policy: LFU while the cache holds less than one token of experts (LRU would cycle), LRU from there on; an explicit one is kept', async () => {
  const file = shared('fixtures', 'gguf', 'mini-q8_0.gguf');
  const m = await withModel(file, { lazyExperts: false }, (lm) => lm.memory);
  const perToken = await withModel(file, { memoryBudget: m.minimumBytes }, (lm) => {
    const c = lm.config;
    assert.equal(lm.memory.slots, c.numSelectedExperts);
    assert.equal(lm.memory.cache!.policy, 'lfu');
    return c.numLayers * c.numSelectedExperts;
  });
  assert.ok(m.experts > perToken, 'the fixture must have room for a token of experts and more');
  await withModel(file, { memoryBudget: m.totalBytes - 1 }, (lm) => {
    assert.ok(lm.memory.slots >= perToken);
    assert.equal(lm.memory.cache!.policy, 'lru');
  });
  await withModel(file, { memoryBudget: m.minimumBytes, evictionPolicy: 'decay' }, (lm) => assert.equal(lm.memory.cache!.policy, 'decay'));
});
