/** `grok-ts generate`: stream a continuation to the terminal, or print JSON. */
import { ContextLengthError, UsageError } from '../../errors.js';
import { num, parseIds, str, type Command } from '../command.js';
import { CONSTRAINT_HELP, CONSTRAINT_OPTIONS, constraintOptions } from '../constraint-options.js';
import { GENERATION_HELP, GENERATION_OPTIONS, generationOptions, memoryLine, MODEL_HELP, MODEL_OPTIONS, openModel } from '../model-options.js';
import { readAll } from '../stdin.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'continue a prompt (streams text; --json for ids, finish reason and usage)',
  help: `Usage: grok-ts generate (--prompt TEXT | --ids 5,6,7) [options]

Streams the continuation of the prompt to standard output as it is produced. With no --model,
runs the built-in demo model.

  -p, --prompt TEXT     the prompt ("-" reads standard input)
      --ids LIST        comma-separated prompt token ids instead of text (then EOS does not stop
                        generation unless --stop-at-eos, as in the official runner)
      --no-echo         print only the continuation, not the prompt before it
      --json            print {"text", "ids", "finish_reason", "usage", "seed"} at the end instead of streaming
      --logprobs N      with --json: log-probabilities of each token and N alternatives (0-20)
      --truncate left   keep the end of a prompt longer than the context (default: error)
  -v, --verbose         a progress line on standard error about once a second: tokens, memory,
                        expert cache hits and bytes read from disk

${GENERATION_HELP}

${CONSTRAINT_HELP}

${MODEL_HELP}
`,
  options: {
    ...MODEL_OPTIONS,
    ...GENERATION_OPTIONS,
    ...CONSTRAINT_OPTIONS,
    prompt: { type: 'string', short: 'p' },
    ids: { type: 'string' },
    json: { type: 'boolean' },
    'no-echo': { type: 'boolean' },
    logprobs: { type: 'string' },
    truncate: { type: 'string' },
    verbose: { type: 'boolean', short: 'v' },
  },
  async run(ctx) {
    const rawPrompt = str(ctx, 'prompt');
    const rawIds = str(ctx, 'ids');
    if ((rawPrompt === undefined) === (rawIds === undefined)) throw new UsageError('give exactly one of --prompt or --ids', 'prompt');
    const prompt: string | number[] = rawIds !== undefined ? parseIds(rawIds) : rawPrompt === '-' ? await readAll(ctx.stdin) : rawPrompt!;
    const truncate = str(ctx, 'truncate');
    if (truncate !== undefined && truncate !== 'left' && truncate !== 'error') throw new UsageError('--truncate must be left or error', 'truncate');
    const logprobs = num(ctx, 'logprobs', { integer: true, min: 0, max: 20, describe: 'an integer from 0 to 20' });
    const json = ctx.values.json === true;
    if (logprobs !== undefined && !json) throw new UsageError('--logprobs needs --json: the log-probabilities are part of the JSON output', 'logprobs');
    const options = {
      // Token ids in, token ids out: the official runner's semantics, which do not stop at EOS.
      ...generationOptions(ctx, { temperature: 0.8, ignoreEos: rawIds !== undefined }),
      ...(truncate ? { truncate: truncate as 'left' | 'error' } : {}),
      ...(logprobs !== undefined ? { logprobs } : {}),
      ...constraintOptions(ctx),
      signal: ctx.signal,
    };
    const lm = await openModel(ctx);
    try {
      let stream;
      try {
        stream = lm.stream(prompt, options);
      } catch (err) {
        // The library's message names its own option (truncate: "left"); here it is a flag.
        if (err instanceof ContextLengthError) {
          throw new ContextLengthError(err.promptTokens, err.contextLength, 'leave room for at least one generated token: shorten the prompt, or pass --truncate left to keep its end');
        }
        throw err;
      }
      let wrote = false;
      // Like llama.cpp, show the text prompt the continuation belongs to (the output continues it exactly).
      if (!json && typeof prompt === 'string' && ctx.values['no-echo'] !== true) {
        ctx.stdout.write(prompt);
        wrote = prompt !== '';
      }
      const verbose = ctx.values.verbose === true;
      let tokens = 0;
      let lastLine = performance.now();
      try {
        for await (const chunk of stream) {
          tokens++;
          if (verbose && performance.now() - lastLine >= 1000) {
            lastLine = performance.now();
            ctx.stderr.write(`[${tokens} chunks; ${memoryLine(lm, tokens)}]\n`);
          }
          if (!json && chunk.text) {
            ctx.stdout.write(chunk.text);
            wrote = true;
          }
        }
      } finally {
        if (!json && wrote) ctx.stdout.write('\n');
      }
      const r = await stream.result;
      if (verbose) ctx.stderr.write(`[done: ${r.usage.completionTokens} tokens; ${memoryLine(lm, Math.max(1, r.usage.completionTokens))}]\n`);
      if (r.stopReason === 'context_length') {
        ctx.stderr.write(`(stopped after ${r.usage.completionTokens} of ${options.maxTokens} tokens: the model's context holds ${lm.config.sequenceLen} tokens, prompt included)\n`);
      }
      if (json) {
        const out = {
          text: r.text,
          ids: r.ids,
          finish_reason: r.finishReason,
          stop_reason: r.stopReason,
          usage: { prompt_tokens: r.usage.promptTokens, completion_tokens: r.usage.completionTokens, total_tokens: r.usage.totalTokens },
          seed: r.seed,
          ...(r.logprobs ? { logprobs: r.logprobs } : {}),
        };
        ctx.stdout.write(JSON.stringify(out) + '\n');
      } else if (ctx.stderr.isTTY) {
        const t = r.timings;
        ctx.stderr.write(`[${r.usage.promptTokens} prompt tokens at ${t.prefillTokensPerSec.toFixed(1)} tok/s, ${r.usage.completionTokens} generated at ${t.decodeTokensPerSec.toFixed(1)} tok/s, ${lm.backend} backend, finish: ${r.stopReason}]\n`);
      }
      return 0;
    } finally {
      await lm.close();
    }
  },
};
