/**
 * llama.cpp through node-llama-cpp's prebuilt CPU binaries, measured with the protocol of
 * bench/model.ts: decode = median of single-token steps (logits and the greedy pick in C++) after
 * an 8-token prompt; prefill = one P-token batch into an emptied sequence (best of two runs: the
 * first may still fault pages in). node-llama-cpp is not a dependency of grok-ts: this runs only
 * when $GROK_TS_NODE_LLAMA_CPP names an installed copy (see bench/llama-cpp.ts).
 *
 * Run as a child process: `node dist/bench/llama-cpp-node.js PACKAGE_DIR MODEL.gguf THREADS STEPS P`;
 * prints one JSON line.
 */
import * as path from 'node:path';
import { pathToFileURL } from 'node:url';

/** The parts of node-llama-cpp's API this uses (v3). */
interface Evaluated {
  readonly next: { readonly token?: number };
}
type EvalItem = number | [number, { generateNext: { token: boolean; options: { temperature: number } } }];
interface Sequence {
  controlledEvaluate(items: EvalItem[]): Promise<Evaluated[]>;
  clearHistory(): Promise<void>;
}
interface NodeLlamaCpp {
  getLlama(o: { gpu: false; build: 'never'; maxThreads: number; logLevel: string }): Promise<{
    loadModel(o: { modelPath: string; gpuLayers: number; useMmap: boolean }): Promise<{
      readonly tokens: unknown;
      createContext(o: { contextSize: number; batchSize: number; threads: { ideal: number; min: number }; sequences: number }): Promise<{
        getSequence(): Sequence;
        dispose(): Promise<void>;
      }>;
      dispose(): Promise<void>;
    }>;
    dispose(): Promise<void>;
  }>;
}

export interface NodeLlamaCppResult {
  readonly decodeTokS: number;
  readonly prefillTokS: number;
  /** CPU time over wall time while decoding: confirms the thread count (≈ threads on a quiet machine). */
  readonly decodeCpuPerWall: number;
}

async function main(): Promise<void> {
  const [dir, modelPath, threadsArg, stepsArg, pArg] = process.argv.slice(2);
  const threads = Number(threadsArg);
  const steps = Number(stepsArg);
  const P = Number(pArg);
  const lib = (await import(pathToFileURL(path.join(dir!, 'dist', 'index.js')).href)) as NodeLlamaCpp;
  const llama = await lib.getLlama({ gpu: false, build: 'never', maxThreads: 0, logLevel: 'error' });
  const model = await llama.loadModel({ modelPath: modelPath!, gpuLayers: 0, useMmap: true });
  const ctx = await model.createContext({ contextSize: 1024, batchSize: 512, threads: { ideal: threads, min: threads }, sequences: 1 });
  const seq = ctx.getSequence();
  const next = { generateNext: { token: true, options: { temperature: 0 } } };
  const ids = (n: number, from: number) => Array.from({ length: n }, (_, i) => 3 + (((i + from) * 7919) % (131072 - 3)));
  const withNext = (t: number[]): EvalItem[] => t.map((x, i) => (i === t.length - 1 ? [x, next] : x));
  const cpu = () => {
    const u = process.cpuUsage();
    return (u.user + u.system) / 1e6;
  };

  let r = await seq.controlledEvaluate(withNext(ids(8, 0)));
  let tok = r[r.length - 1]!.next.token!;
  const times: number[] = [];
  const c0 = cpu();
  const w0 = performance.now();
  for (let s = 0; s < steps; s++) {
    const t = performance.now();
    r = await seq.controlledEvaluate([[tok, next]]);
    times.push((performance.now() - t) / 1e3);
    tok = r[0]!.next.token!;
  }
  const decodeCpuPerWall = (cpu() - c0) / ((performance.now() - w0) / 1e3);
  times.sort((a, b) => a - b);

  let prefill = 0;
  for (let rep = 0; rep < 2; rep++) {
    await seq.clearHistory();
    const t = performance.now();
    await seq.controlledEvaluate(withNext(ids(P, 100)));
    prefill = Math.max(prefill, P / ((performance.now() - t) / 1e3));
  }
  const out: NodeLlamaCppResult = { decodeTokS: 1 / times[times.length >> 1]!, prefillTokS: prefill, decodeCpuPerWall };
  console.log(JSON.stringify(out));
  await ctx.dispose();
  await model.dispose();
  await llama.dispose();
}

await main();
