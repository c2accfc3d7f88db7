/**
 * A/B of two builds of grok-ts on the bench model, in one process with their steps interleaved, so
 * that a shared machine's swings (other tenants, bandwidth drifting minute to minute) fall on both
 * alike: after-vs-before changes of a few per cent are invisible in back-to-back runs of model.ts
 * on a busy VM.
 *
 * Each build loads the model with the wasm backend (both packed copies are resident: ≈ 2× the
 * weights in RAM). Decode: single-token steps alternating between the builds (the first of each
 * pair alternates too), reported as each build's median tok/s and the median of the per-pair
 * ratios B/A. Prefill: one P-token prompt per build per round, alternating.
 *
 * `node dist/bench/ab-model.js <root A> <root B> <model path> [threads] [decode steps] [prefill tokens] [prefill rounds]`
 * where a root is a directory holding a built grok-ts (its dist/src/language-model.js).
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

interface Lm {
  readonly model: {
    newCache(n?: number): unknown;
    forward(seqs: { tokens: number[]; cache: unknown }[]): Float32Array[];
  };
  readonly config: { readonly vocabSize: number };
  /** absent in builds from before the lazy start */
  whenResident?(): Promise<void>;
  close(): Promise<void>;
}

const median = (a: readonly number[]) => {
  const s = [...a].sort((x, y) => x - y);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function load(root: string, modelPath: string, threads: number): Promise<Lm> {
  const mod = (await import(pathToFileURL(path.join(root, 'dist', 'src', 'language-model.js')).href)) as {
    loadModel(p: string, o: object): Promise<Lm>;
  };
  const lm = await mod.loadModel(modelPath, { backend: 'wasm', threads });
  await lm.whenResident?.(); // decode figures are the resident ones, not a background fill's
  return lm;
}

export async function abModel(roots: readonly [string, string], modelPath: string, threads: number, steps: number, P: number, rounds: number): Promise<Record<string, number>> {
  const lms = [await load(roots[0], modelPath, threads), await load(roots[1], modelPath, threads)] as const;
  try {
    const V = lms[0].config.vocabSize;
    const rng = (i: number) => 3 + ((i * 7919) % (V - 3));
    const prompt = Array.from({ length: 8 }, (_, i) => rng(i));
    const caches = lms.map((lm) => lm.model.newCache(prompt.length + steps + 8));
    lms.forEach((lm, i) => lm.model.forward([{ tokens: prompt, cache: caches[i] }]));
    const times: [number[], number[]] = [[], []];
    const ratios: number[] = [];
    const toks = [prompt[7]!, prompt[7]!];
    for (let s = 0; s < steps; s++) {
      const t: number[] = [0, 0];
      for (const i of s % 2 ? [1, 0] : [0, 1]) {
        const t0 = performance.now();
        const [logits] = lms[i]!.model.forward([{ tokens: [toks[i]!], cache: caches[i] }]);
        t[i] = (performance.now() - t0) / 1e3;
        toks[i] = 3 + (Math.abs(Math.floor(logits![0]! * 1e6)) % 1000);
        times[i]!.push(t[i]!);
      }
      ratios.push(t[0]! / t[1]!); // B's speed over A's
    }
    const prefill: [number[], number[]] = [[], []];
    const pre = Array.from({ length: P }, (_, i) => rng(i + 100));
    for (let r = 0; r < rounds; r++) {
      for (const i of r % 2 ? [1, 0] : [0, 1]) {
        const t0 = performance.now();
        lms[i]!.model.forward([{ tokens: pre, cache: lms[i]!.model.newCache(P) }]);
        prefill[i]!.push(P / ((performance.now() - t0) / 1e3));
      }
    }
    return {
      threads,
      decode_tok_s_a: 1 / median(times[0]),
      decode_tok_s_b: 1 / median(times[1]),
      decode_speedup_b_over_a: median(ratios),
      decode_speedup_min: Math.min(...ratios),
      decode_speedup_max: Math.max(...ratios),
      prefill_tok_s_a: median(prefill[0]),
      prefill_tok_s_b: median(prefill[1]),
      prefill_speedup_b_over_a: median(prefill[1].map((b, r) => b / prefill[0][r]!)),
      prefill_a_min: Math.min(...prefill[0]),
      prefill_a_max: Math.max(...prefill[0]),
      prefill_b_min: Math.min(...prefill[1]),
      prefill_b_max: Math.max(...prefill[1]),
    };
  } finally {
    for (const lm of lms) await lm.close();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [a, b, modelPath, threads = '1', steps = '24', P = '512', rounds = '3'] = process.argv.slice(2);
  if (!a || !b || !modelPath) {
    console.error('usage: node dist/bench/ab-model.js <root A> <root B> <model path> [threads] [decode steps] [prefill tokens] [prefill rounds]');
    process.exit(2);
  }
  const r = await abModel([path.resolve(a), path.resolve(b)], modelPath, Number(threads), Number(steps), Number(P), Number(rounds));
  console.log(JSON.stringify(r));
}
