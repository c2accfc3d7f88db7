/** Locates ../shared (the fixtures beside the project). Tests that need it fail loudly when it is missing. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The project root (tests run from dist/test/). */
export const PROJECT_ROOT = path.resolve(here, '..', '..');
export const SHARED = process.env.GROK_TS_SHARED ?? path.resolve(PROJECT_ROOT, '..', 'shared');

/** Absolute path of a file under ../shared; throws (failing the test) when it is absent. */
export function shared(...parts: string[]): string {
  const p = path.join(SHARED, ...parts);
  if (!fs.existsSync(p)) {
    throw new Error(`fixture missing: ${p} (tests read ../shared beside the project; set GROK_TS_SHARED to point elsewhere)`);
  }
  return p;
}

export function readJson<T = unknown>(...parts: string[]): T {
  return JSON.parse(fs.readFileSync(shared(...parts), 'utf8')) as T;
}

/** Largest absolute difference between two equally long vectors. */
export function maxAbsDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  if (a.length !== b.length) throw new Error(`length mismatch: ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

/** A seeded PRNG for test data (mulberry32): failures reproduce. */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
