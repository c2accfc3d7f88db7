/**
 * Mutation fuzzing of the GGUF path: fixture files with bytes flipped, fields overwritten with
 * boundary values, cut short, or with bytes inserted and removed, are parsed, turned into a config,
 * weights and a tokenizer, and a row of every tensor is dequantised. Every failure must be a typed
 * GrokError; anything else (TypeError, RangeError, a hang) is a bug, reported with the seed that
 * reproduces it.
 *
 * `npm run fuzz` runs it for minutes: node dist/test/fuzz-gguf.js --run [--seconds 300] [--seed N];
 * test/gguf-fuzz.test.ts runs it for a few seconds in CI.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { GrokError } from '../src/errors.js';
import { openGgufSource } from '../src/formats/gguf-split.js';
import { MemorySource } from '../src/formats/tensor-file.js';
import { configFromGguf, grokWeightsFromGguf } from '../src/model/weights-gguf.js';
import { dequantizeGgml, ggmlRowBytes } from '../src/tensor/ggml.js';
import { tokenizerFromGguf } from '../src/tokenizer/from-gguf.js';
import { rng, shared } from './shared.js';

const BOUNDARY_U64 = [0n, 1n, 2n, 31n, 32n, 255n, 256n, 0x7fffffffn, 0xffffffffn, 2n ** 32n, 2n ** 53n, 2n ** 62n, 2n ** 63n, 2n ** 64n - 1n];
/** The header (metadata and tensor infos) is where parsing happens; mutate mostly there. */
const HEADER_SPAN = 32 * 1024;
/** Slower than this for one case counts as a hang. */
const CASE_LIMIT_MS = 5000;

export interface FuzzFailure {
  readonly seed: number;
  readonly iteration: number;
  readonly fixture: string;
  readonly mutation: string;
  readonly error: string;
}

export interface FuzzReport {
  readonly iterations: number;
  /** Cases that parsed completely (the mutation hit something harmless). */
  readonly parsed: number;
  /** Cases rejected with a typed error, by error class. */
  readonly rejected: Readonly<Record<string, number>>;
  readonly failures: readonly FuzzFailure[];
}

function mutate(bytes: Uint8Array, r: () => number): { bytes: Uint8Array; mutation: string } {
  const span = Math.min(bytes.length, HEADER_SPAN);
  const pick = (n: number) => Math.floor(r() * n);
  switch (pick(5)) {
    case 0: {
      const out = bytes.slice();
      const n = 1 + pick(8);
      const at: number[] = [];
      for (let i = 0; i < n; i++) {
        const p = pick(span);
        out[p] = pick(256);
        at.push(p);
      }
      return { bytes: out, mutation: `bytes set at ${at.join(',')}` };
    }
    case 1: {
      const out = bytes.slice();
      const p = pick(span - 8);
      const v = BOUNDARY_U64[pick(BOUNDARY_U64.length)]!;
      new DataView(out.buffer).setBigUint64(p, v, true);
      return { bytes: out, mutation: `u64 ${v} at ${p}` };
    }
    case 2: {
      const out = bytes.slice();
      const p = pick(span - 4);
      const v = [0, 1, 2, 3, 4, 5, 8, 9, 12, 13, 29, 30, 31, 64, 255, 0xffffffff][pick(16)]!;
      new DataView(out.buffer).setUint32(p, v, true);
      return { bytes: out, mutation: `u32 ${v} at ${p}` };
    }
    case 3: {
      const cut = r() < 0.7 ? pick(span) : pick(bytes.length);
      return { bytes: bytes.slice(0, cut), mutation: `cut at ${cut}` };
    }
    default: {
      const p = pick(span);
      const n = 1 + pick(16);
      if (r() < 0.5) {
        const out = new Uint8Array(bytes.length + n);
        out.set(bytes.subarray(0, p));
        for (let i = 0; i < n; i++) out[p + i] = pick(256);
        out.set(bytes.subarray(p), p + n);
        return { bytes: out, mutation: `${n} bytes inserted at ${p}` };
      }
      const out = new Uint8Array(Math.max(0, bytes.length - n));
      out.set(bytes.subarray(0, p));
      out.set(bytes.subarray(Math.min(bytes.length, p + n)), p);
      return { bytes: out, mutation: `${n} bytes removed at ${p}` };
    }
  }
}

/** Everything a user's load does with a file, on bytes in memory. */
function exercise(name: string, bytes: Uint8Array): void {
  const model = openGgufSource(new MemorySource(name, bytes));
  try {
    try {
      tokenizerFromGguf(model.metadata);
    } catch (err) {
      if (!(err instanceof GrokError)) throw err;
    }
    for (const t of model.store.tensors.values()) {
      const rowLength = t.shape[t.shape.length - 1] ?? 1;
      if (rowLength === 0 || rowLength > 1 << 20 || t.byteLength === 0) continue;
      try {
        const rowBytes = ggmlRowBytes(t.dtype, rowLength);
        dequantizeGgml(t.dtype, t.source.read(t.offset, rowBytes), 0, new Float32Array(rowLength), 0, rowLength);
      } catch (err) {
        if (!(err instanceof GrokError)) throw err;
      }
    }
    const config = configFromGguf(model.metadata, name, model.store);
    grokWeightsFromGguf(model.store, config);
  } finally {
    model.close();
  }
}

export function fuzzGguf(opts: { seconds: number; seed: number; fixtures?: readonly string[] }): FuzzReport {
  const dir = shared('fixtures', 'gguf');
  const names = opts.fixtures ?? fs.readdirSync(dir).filter((f) => f.endsWith('.gguf') && !f.includes('shard')).sort();
  const files = names.map((f) => ({ name: f, bytes: new Uint8Array(fs.readFileSync(path.join(dir, f))) }));
  const deadline = performance.now() + opts.seconds * 1000;
  const rejected: Record<string, number> = {};
  const failures: FuzzFailure[] = [];
  let iterations = 0;
  let parsed = 0;
  while (performance.now() < deadline) {
    const seed = (opts.seed + iterations * 0x9e3779b1) >>> 0;
    const r = rng(seed);
    const file = files[Math.floor(r() * files.length)]!;
    const { bytes, mutation } = mutate(file.bytes, r);
    const t0 = performance.now();
    try {
      exercise(file.name, bytes);
      parsed++;
    } catch (err) {
      if (err instanceof GrokError) rejected[err.name] = (rejected[err.name] ?? 0) + 1;
      else failures.push({ seed, iteration: iterations, fixture: file.name, mutation, error: (err as Error)?.stack ?? String(err) });
    }
    const ms = performance.now() - t0;
    if (ms > CASE_LIMIT_MS) failures.push({ seed, iteration: iterations, fixture: file.name, mutation, error: `took ${ms.toFixed(0)} ms` });
    iterations++;
  }
  return { iterations, parsed, rejected, failures };
}

if (process.argv.includes('--run')) {
  const arg = (flag: string, fallback: number) => {
    const i = process.argv.indexOf(flag);
    return i >= 0 ? Number(process.argv[i + 1]) : fallback;
  };
  const report = fuzzGguf({ seconds: arg('--seconds', 300), seed: arg('--seed', Date.now() % 2 ** 31) });
  console.log(JSON.stringify({ ...report, failures: report.failures.slice(0, 20) }, null, 1));
  process.exitCode = report.failures.length ? 1 : 0;
}
