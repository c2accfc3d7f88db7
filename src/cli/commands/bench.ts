/** `grok-ts bench`: the benchmarks of `npm run bench`, from the command line. */
import { str, type Command } from '../command.js';

export const benchCommand: Command = {
  name: 'bench',
  summary: 'measure memory bandwidth, decode/prefill speed, memory use, tokenizer and server throughput',
  help: `Usage: grok-ts bench [SECTION …] [--cache DIR]

Runs every benchmark in one process run, so ratios compare like with like on a noisy machine, and
writes the results with the machine they ran on under bench/results/. Sections: memory, tokenizer,
kernels, model-int8, model-q8_0, server (default: all). The bench model (a 4 GB Grok-architecture
checkpoint, and its Q8_0 GGUF) is generated on first use and cached. Where llama.cpp's llama-bench
is on PATH, it runs on the same GGUF and the ratio is printed.

  --cache DIR    where generated checkpoints are kept (default: bench/cache in the package)
`,
  options: { cache: { type: 'string' } },
  allowPositionals: true,
  async run(ctx) {
    const { runBenchmarks } = await import('../../../bench/run.js');
    const cacheDir = str(ctx, 'cache');
    await runBenchmarks({
      ...(ctx.positionals.length ? { only: ctx.positionals } : {}),
      ...(cacheDir ? { cacheDir } : {}),
      log: (l) => ctx.stdout.write(l + '\n'),
    });
    return 0;
  },
};
