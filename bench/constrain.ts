/**
 * Constrained-decoding overhead: the time to fill the token mask per decode step, with the real
 * 131072-token Grok-1 vocabulary, for JSON schemas, json-object, a GBNF grammar and a regex.
 * Each constraint runs seeded random walks (uniform among allowed tokens, re-drawing tokens that
 * would end the output early, closing within a 96-token budget) twice: "cold" is the first pass, which builds the per-state token indexes a
 * new constraint needs; "warm" repeats the same walks with them cached, as every later request
 * with the same schema runs (compiled constraints are cached per vocabulary).
 *
 * The mask time is set against a decode step of the bench model: the newest recorded
 * model/format decode rate under bench/results (or GROK_TS_BENCH_DECODE_MS), since measuring
 * decode needs the 4 GB bench checkpoint. Goal: warm p95 ≤ 5 % of a decode step.
 *
 * Run alone: `grok-ts bench constrain` or `node dist/bench/constrain.js`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileConstraint, vocabularyFromTokenizer, type CompiledConstraint, type ConstraintSpec } from '../src/constrain/index.js';
import { countAllowed, nthAllowed } from '../src/constrain/token-mask.js';
import { Tokenizer } from '../src/tokenizer/index.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const ROOT = path.resolve(here, '..', '..');
const GBNF_DIR = path.join(ROOT, 'test', 'data', 'gbnf');

const PERSON = {
  type: 'object',
  properties: {
    name: { type: 'string', maxLength: 40 },
    age: { type: 'integer', minimum: 0, maximum: 150 },
    email: { type: 'string', format: 'email' },
    born: { type: 'string', format: 'date' },
    tags: { type: 'array', items: { type: 'string', maxLength: 12 }, maxItems: 4 },
  },
  required: ['name', 'age'],
};
const ORDER = {
  $defs: {
    line: { type: 'object', properties: { sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{4}$' }, qty: { type: 'integer', minimum: 1 }, price: { type: 'number', minimum: 0 } }, required: ['sku', 'qty', 'price'] },
  },
  type: 'object',
  properties: { id: { type: 'string', format: 'uuid' }, at: { type: 'string', format: 'date-time' }, lines: { type: 'array', items: { $ref: '#/$defs/line' }, minItems: 1 }, note: { type: ['string', 'null'] } },
  required: ['id', 'at', 'lines'],
};
const TREE = {
  $defs: { node: { type: 'object', properties: { label: { type: 'string' }, children: { type: 'array', items: { $ref: '#/$defs/node' } } }, required: ['label'] } },
  $ref: '#/$defs/node',
};

function cases(): [string, ConstraintSpec][] {
  const gbnf = (f: string) => fs.readFileSync(path.join(GBNF_DIR, f), 'utf8');
  return [
    ['schema-person', { kind: 'json-schema', schema: PERSON }],
    ['schema-order', { kind: 'json-schema', schema: ORDER }],
    ['schema-tree', { kind: 'json-schema', schema: TREE }],
    ['json-object', { kind: 'json-object' }],
    ['gbnf-json', { kind: 'grammar', gbnf: gbnf('json.gbnf') }],
    ['gbnf-c', { kind: 'grammar', gbnf: gbnf('c.gbnf') }],
    ['regex', { kind: 'regex', pattern: '[A-Z][a-z]{1,12}( [A-Z][a-z]{1,12}){0,4}, born (19|20)\\d\\d in [A-Z][a-z]+\\.' }],
  ];
}

function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/** A uniformly drawn allowed token; -1 when none is. */
function pick(mask: Uint32Array, random: () => number): number {
  return nthAllowed(mask, Math.floor(random() * countAllowed(mask)));
}

/** Mask times (ms) of every step of `walks` seeded walks. */
function walkTimes(compiled: CompiledConstraint, walks: number, maxTokens: number): number[] {
  const times: number[] = [];
  const mask = new Uint32Array(compiled.maskWords);
  const eos = compiled.vocab.eosId;
  for (let w = 0; w < walks; w++) {
    const random = rng(101 + w);
    let m = compiled.matcher();
    for (let step = 0; step < maxTokens; step++) {
      const t0 = performance.now();
      m.fillMask(mask, maxTokens - step);
      times.push(performance.now() - t0);
      // Walks that end at once measure little: until the last 16 tokens, re-draw (a few times)
      // a token that would end the output.
      let id = -1;
      let next = m;
      for (let tries = 0; tries < 8; tries++) {
        id = pick(mask, random);
        if (id < 0 || id === eos) continue;
        next = m.clone();
        next.accept(id);
        if (next.canContinue() || step >= maxTokens - 16) break;
      }
      if (id < 0 || id === eos) break;
      m = next;
      if (!m.canContinue()) break;
    }
  }
  return times;
}

function stats(xs: number[]): { mean: number; p95: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { mean: s.reduce((a, b) => a + b, 0) / Math.max(1, s.length), p95: s[Math.min(s.length - 1, Math.floor(s.length * 0.95))] ?? 0, max: s[s.length - 1] ?? 0 };
}

/** The newest decode rate on record: [ms per step, where it came from]. */
export function referenceDecodeMs(): [number, string] {
  const env = Number(process.env.GROK_TS_BENCH_DECODE_MS);
  if (env > 0) return [env, 'GROK_TS_BENCH_DECODE_MS'];
  const dir = path.join(ROOT, 'bench', 'results');
  const files = fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.json')).sort().reverse() : [];
  for (const f of files) {
    try {
      const r = JSON.parse(fs.readFileSync(path.join(dir, f), 'utf8')) as { results?: Record<string, number> };
      // The fastest recorded Q8_0 decode (the tightest 5 % budget), model section first.
      const rates = Object.entries(r.results ?? {}).filter(([k]) => /^(model\.q8_0|formats\.Q8_0)\.decode_tok_s_t\d+$/.test(k));
      if (rates.length) {
        const [key, rate] = rates.reduce((a, b) => (b[1] > a[1] ? b : a));
        return [1000 / rate, `${key} = ${rate.toFixed(1)} tok/s in bench/results/${f}`];
      }
    } catch {
      // an unreadable result file is skipped
    }
  }
  return [1000 / 30, 'no recorded decode rate: assumed 30 tok/s, the fast end of the bench model here'];
}

export async function benchConstrain(log: (l: string) => void): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  let t0 = performance.now();
  const tok = Tokenizer.fromFile();
  const vocab = vocabularyFromTokenizer(tok);
  out.vocabulary_ms = performance.now() - t0;
  log(`vocabulary: ${vocab.size} tokens, token trie of ${vocab.trie.nodes} nodes, built in ${out.vocabulary_ms.toFixed(0)} ms (once per tokenizer)`);
  const [decodeMs, source] = referenceDecodeMs();
  out.decode_step_ms = decodeMs;
  log(`decode step: ${decodeMs.toFixed(1)} ms (${source}); 5 % of it: ${(decodeMs * 0.05).toFixed(2)} ms`);
  const WALKS = 6;
  const MAX_TOKENS = 96;
  let worstWarmP95 = 0;
  for (const [name, spec] of cases()) {
    t0 = performance.now();
    const compiled = compileConstraint(spec, vocab);
    const compileMs = performance.now() - t0;
    const cold = stats(walkTimes(compiled, WALKS, MAX_TOKENS));
    const warmTimes = walkTimes(compiled, WALKS, MAX_TOKENS);
    const warm = stats(warmTimes);
    const s = compiled.stats();
    out[`${name}.compile_ms`] = compileMs;
    out[`${name}.cold_mask_ms_mean`] = cold.mean;
    out[`${name}.cold_mask_ms_p95`] = cold.p95;
    out[`${name}.warm_mask_ms_mean`] = warm.mean;
    out[`${name}.warm_mask_ms_p95`] = warm.p95;
    out[`${name}.warm_mask_pct_of_decode_mean`] = (100 * warm.mean) / decodeMs;
    out[`${name}.warm_mask_pct_of_decode_p95`] = (100 * warm.p95) / decodeMs;
    worstWarmP95 = Math.max(worstWarmP95, warm.p95);
    log(
      `${name.padEnd(14)} compile ${compileMs.toFixed(0).padStart(5)} ms, ${String(s.states).padStart(5)} states (${s.indexed} indexed) | ` +
        `cold mask mean ${cold.mean.toFixed(2)} ms p95 ${cold.p95.toFixed(2)} ms | warm mean ${warm.mean.toFixed(3)} ms p95 ${warm.p95.toFixed(3)} ms max ${warm.max.toFixed(2)} ms ` +
        `= ${((100 * warm.mean) / decodeMs).toFixed(2)} % / ${((100 * warm.p95) / decodeMs).toFixed(2)} % of a decode step (${warmTimes.length} steps)`,
    );
  }
  out.worst_warm_p95_pct_of_decode = (100 * worstWarmP95) / decodeMs;
  log(`worst warm p95: ${out.worst_warm_p95_pct_of_decode.toFixed(2)} % of a decode step (goal ≤ 5 %)`);
  return out;
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  await benchConstrain((l) => process.stdout.write(l + '\n'));
}
