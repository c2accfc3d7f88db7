/** `grok-ts bench`: the benchmarks of `npm run bench`, from the command line. */
import { str, type Command } from '../command.js';

export const benchCommand: Command = {
  name: 'bench',
  summary: 'measure memory bandwidth, decode/prefill speed, memory use, tokenizer, constrained-decoding and server throughput',
  help: `Usage: grok-ts bench [SECTION …] [--cache DIR]

Runs every benchmark in one process run, so ratios compare like with like on a noisy machine, and
writes the results with the machine they ran on under bench/results/. Sections: memory, tokenizer,
constrain (token-mask time per step for JSON schemas, GBNF and regex constraints against a decode
step), kernels, model-int8, model-q8_0, formats, server (default: all of these), and true-width (only when
named: one Grok-1 layer at its real width in every format, 5–9 GB per file, about half an hour) and
streaming (only when named: a ≈ 30 GB Q8_0 file larger than RAM, decoded under memory budgets of
4, 8 and 16 GiB beside llama.cpp; the file is deleted afterwards unless --keep).
The bench model (a 4 GB Grok-architecture checkpoint, its Q8_0 GGUF and, for "formats", one GGUF
per llama.cpp quantisation mix, 1.2–3.6 GB each) is generated on first use and cached. Where
llama.cpp is at hand (llama-bench on PATH, or node-llama-cpp named by GROK_TS_NODE_LLAMA_CPP), it
runs on the same files and thread counts and the ratios are printed.

  GROK_TS_BENCH_MIXES=Q4_K_M,IQ3_S   limit formats / true-width to these mixes

  --cache DIR    where generated checkpoints are kept (default: bench/cache in the package)
  --keep         streaming: keep its large file for the next run
`,
  options: { cache: { type: 'string' }, keep: { type: 'boolean' } },
  allowPositionals: true,
  async run(ctx) {
    const { runBenchmarks } = await import('../../../bench/run.js');
    const cacheDir = str(ctx, 'cache');
    if (ctx.values.keep === true) process.env['GROK_TS_BENCH_KEEP'] = '1';
    await runBenchmarks({
      ...(ctx.positionals.length ? { only: ctx.positionals } : {}),
      ...(cacheDir ? { cacheDir } : {}),
      log: (l) => ctx.stdout.write(l + '\n'),
    });
    return 0;
  },
};
