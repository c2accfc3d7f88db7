/** Flags every model-running command shares, and the one way they turn into a loaded model. */
import { UsageError } from '../errors.js';
import { loadModel, type BackendName, type LanguageModel } from '../language-model.js';
import { num, str, type CommandContext, type OptionSpec } from './command.js';
import { formatBytes, ProgressBar } from './progress.js';

export const MODEL_OPTIONS: OptionSpec = {
  model: { type: 'string', short: 'm' },
  backend: { type: 'string' },
  threads: { type: 'string' },
  tokenizer: { type: 'string' },
  'memory-budget': { type: 'string' },
  'eviction-policy': { type: 'string' },
};

export const MODEL_HELP = `Model:
  -m, --model PATH       ckpt-0 directory (or its parent), .gguf file (first shard of a split set,
                         or a .part1ofN raw split), or a safetensors directory (convert --to
                         safetensors); default: the built-in demo model
      --backend NAME     auto (default: wasm where it runs), wasm, or js (the exact reference backend)
      --threads N        worker threads for the wasm backend (default: all cores)
      --tokenizer PATH   tokenizer.model to use (default: the GGUF's own, else the bundled official one)
      --memory-budget SIZE  resident weight bytes at most, e.g. 16G or 512M (K/M/G/T = powers of
                         1024): non-expert weights stay resident, experts are read from the file
                         into a cache of the rest as the router picks them (default: all resident;
                         \`grok-ts inspect\` prints the minimum)
      --eviction-policy P   which cached expert a load replaces: lru, lfu or decay (default:
                         lru when the cache holds a token's experts, else lfu)`;

export async function openModel(ctx: CommandContext): Promise<LanguageModel> {
  const backend = str(ctx, 'backend') ?? 'auto';
  if (!['auto', 'wasm', 'js'].includes(backend)) throw new UsageError(`--backend must be auto, wasm or js, got "${backend}"`, 'backend');
  const threads = num(ctx, 'threads', { integer: true, min: 1, max: 256 });
  const modelPath = str(ctx, 'model');
  if (/^https?:\/\//i.test(modelPath ?? '')) throw new UsageError(`--model ${modelPath} is a server URL; the CLI runs local models (a directory or a .gguf). Use the server directly, or loadModel(url) from the library`, 'model');
  const tokenizer = str(ctx, 'tokenizer');
  const memoryBudget = str(ctx, 'memory-budget');
  const policy = str(ctx, 'eviction-policy');
  if (policy !== undefined && !['lru', 'lfu', 'decay'].includes(policy)) throw new UsageError(`--eviction-policy must be lru, lfu or decay, got "${policy}"`, 'eviction-policy');
  const bar = new ProgressBar(ctx.stderr, 'loading');
  const lm = await loadModel(modelPath, {
    backend: backend as BackendName,
    ...(threads !== undefined ? { threads } : {}),
    ...(tokenizer !== undefined ? { tokenizer } : {}),
    ...(memoryBudget !== undefined ? { memoryBudget } : {}),
    ...(policy !== undefined ? { evictionPolicy: policy as 'lru' | 'lfu' | 'decay' } : {}),
    onProgress: (p) => bar.update(p.loadedBytes, p.totalBytes),
  });
  bar.done();
  if (lm.memory.mode === 'stream' && ctx.stderr.isTTY) ctx.stderr.write(`(${memoryLine(lm)})\n`);
  if (lm.slowTensors.length) {
    const formats = [...new Set(lm.slowTensors.map((t) => t.format))].join(', ');
    ctx.stderr.write(`warning: ${lm.slowTensors.length} weight matrices (${formats}) have no ${lm.backend} kernel and run in the slow js fallback\n`);
  }
  if (lm.isDemo && ctx.stderr.isTTY) {
    ctx.stderr.write('(built-in demo model: 9.5M parameters trained on fortune cookies; pass --model for real weights)\n');
  }
  return lm;
}

export const GENERATION_OPTIONS: OptionSpec = {
  'max-tokens': { type: 'string', short: 'n' },
  temperature: { type: 'string', short: 't' },
  'top-p': { type: 'string' },
  'top-k': { type: 'string' },
  'min-p': { type: 'string' },
  'repetition-penalty': { type: 'string' },
  'presence-penalty': { type: 'string' },
  'frequency-penalty': { type: 'string' },
  'penalty-window': { type: 'string' },
  stop: { type: 'string', multiple: true },
  seed: { type: 'string' },
  'ignore-eos': { type: 'boolean' },
  'stop-at-eos': { type: 'boolean' },
  'add-bos': { type: 'boolean' },
};

export const GENERATION_HELP = `Sampling:
  -n, --max-tokens N           tokens to generate (default 128)
  -t, --temperature T          0 = greedy (argmax); default 0.8
      --top-p P                nucleus mass, the reference's semantics (default 1 = off)
      --top-k K                keep the K most likely tokens (default 0 = off)
      --min-p P                drop tokens below P × the top probability (default 0 = off)
      --repetition-penalty R   divide seen tokens' positive logits by R (default 1 = off)
      --presence-penalty X     subtract X from seen tokens' logits (default 0)
      --frequency-penalty X    subtract X per occurrence (default 0)
      --penalty-window N       how many recent tokens the penalties see (default 64)
      --stop TEXT              stop when TEXT appears (repeatable; not printed)
      --seed N                 PRNG seed: same seed, prompt and options → same text
      --ignore-eos             keep generating after the end-of-sequence token (default with --ids,
                               as the official runner does)
      --stop-at-eos            stop at the end-of-sequence token (default with a text prompt)
      --add-bos                prepend BOS to the prompt (the reference does not)`;

/** Flags → GenerateOptions (each number range-checked, naming its flag). */
export function generationOptions(
  ctx: CommandContext,
  defaults: { temperature: number; ignoreEos?: boolean },
): import('../generate/sequence.js').GenerateOptions {
  if (ctx.values['ignore-eos'] === true && ctx.values['stop-at-eos'] === true) {
    throw new UsageError('--ignore-eos and --stop-at-eos contradict each other', 'ignore-eos');
  }
  const opt = <T>(v: T | undefined, key: string): Record<string, T> => (v === undefined ? {} : { [key]: v });
  const stop = ctx.values.stop;
  return {
    maxTokens: num(ctx, 'max-tokens', { integer: true, min: 0 }) ?? 128,
    temperature: num(ctx, 'temperature', { min: 0, max: 100, describe: 'a number from 0 (greedy) to 100' }) ?? defaults.temperature,
    ...opt(num(ctx, 'top-p', { min: 0, max: 1 }), 'topP'),
    ...opt(num(ctx, 'top-k', { integer: true, min: 0 }), 'topK'),
    ...opt(num(ctx, 'min-p', { min: 0, max: 1 }), 'minP'),
    ...opt(num(ctx, 'repetition-penalty', { min: 0 }), 'repetitionPenalty'),
    ...opt(num(ctx, 'presence-penalty', { min: -2, max: 2 }), 'presencePenalty'),
    ...opt(num(ctx, 'frequency-penalty', { min: -2, max: 2 }), 'frequencyPenalty'),
    ...opt(num(ctx, 'penalty-window', { integer: true, min: 0 }), 'penaltyWindow'),
    ...opt(num(ctx, 'seed', { integer: true, min: 0, max: Number.MAX_SAFE_INTEGER }), 'seed'),
    ...(Array.isArray(stop) ? { stop } : {}),
    ignoreEos: ctx.values['ignore-eos'] === true || (ctx.values['stop-at-eos'] !== true && (defaults.ignoreEos ?? false)),
    addBos: ctx.values['add-bos'] === true,
  };
}

/** One line on what is resident and, under a budget, how the expert cache fares (--verbose, and at load under a budget). */
export function memoryLine(lm: LanguageModel, tokens?: number): string {
  const m = lm.memory;
  const head = m.mode === 'stream'
    ? `memory budget ${formatBytes(m.budgetBytes!)}: ${formatBytes(m.residentBytes)} resident, ${m.slots} of ${m.experts} experts cached`
    : `all weights resident: ${formatBytes(m.residentBytes)}`;
  const c = m.cache;
  if (!c) return head;
  const uses = c.hits + c.misses;
  const perToken = tokens ? `, ${formatBytes(c.bytesRead / tokens)}/token` : '';
  return `${head}; expert hits ${c.hits}/${uses} (${(100 * c.hitRate).toFixed(1)} %), read ${formatBytes(c.bytesRead)} from disk${perToken}, waited ${(c.waitMs / 1000).toFixed(1)} s`;
}
