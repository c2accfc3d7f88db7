/**
 * Locates the shared fixtures (README "Tests"): `../shared` beside the project, or the directory
 * GROK_TS_SHARED names. Without them (a fresh clone), the tests that read them are skipped with a
 * note saying how to point at them, and every other test runs. GROK_TS_SHARED naming a directory
 * that is not there fails those tests instead: it was asked for. GROK_TS_SHARED= (empty) skips them.
 * Under CI (CI=true) missing fixtures fail the tests too: CI always has them beside the clone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { test as nodeTest, type TestContext, type TestOptions } from 'node:test';

type TestFn = (t: TestContext) => void | Promise<void>;
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
/** The project root (tests run from dist/test/). */
export const PROJECT_ROOT = path.resolve(here, '..', '..');
const explicit = process.env.GROK_TS_SHARED;
export const SHARED = explicit || path.resolve(PROJECT_ROOT, '..', 'shared');

/** Whether fixture tests run: the directory is there, or GROK_TS_SHARED asked for it (then a missing one fails them). */
export const HAVE_FIXTURES = explicit === '' ? false : explicit !== undefined || fs.existsSync(SHARED) || process.env.CI === 'true';

const SKIP_REASON = explicit === ''
  ? 'fixtures turned off (GROK_TS_SHARED is empty)'
  : `fixtures not found at ${SHARED}: set GROK_TS_SHARED to their directory (README "Tests")`;

/** Options for a test or suite that reads the fixtures: skipped, saying why, when they are not there. */
export const FIXTURES: TestOptions = HAVE_FIXTURES ? {} : { skip: SKIP_REASON };

/** `test` for files whose every test reads the fixtures. */
export function fixtureTest(name: string, optionsOrFn: TestOptions | TestFn, fn?: TestFn): void {
  if (typeof optionsOrFn === 'function') void nodeTest(name, FIXTURES, optionsOrFn);
  else void nodeTest(name, { ...optionsOrFn, ...FIXTURES }, fn);
}

/** Absolute path of a file under the fixtures; throws (failing the test) when it is absent. */
export function shared(...parts: string[]): string {
  const p = path.join(SHARED, ...parts);
  if (!fs.existsSync(p)) {
    throw new Error(`fixture missing: ${p} (tests read ../shared beside the project, or GROK_TS_SHARED; see README "Tests")`);
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
