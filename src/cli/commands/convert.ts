/** `grok-ts convert`: a checkpoint → a GGUF that llama.cpp (and grok-ts) loads, or safetensors that vLLM and SGLang load. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BUNDLED_TOKENIZER_PATH, convertToGgufAsync, convertToSafetensors, DEFAULT_SHARD_BYTES, HF_NAMINGS, isQuantizeType, openModelFiles, QUANTIZE_TYPES,
  readTokenizerModel, UsageError, type HfNaming, type QuantizeType,
} from '../../index.js';
import { str, type Command } from '../command.js';
import { formatBytes, ProgressBar } from '../progress.js';

/** `50G`, `1.5T`, `800M`, `4096` → bytes (decimal units, as llama-gguf-split reads them). */
export function parseSize(raw: string, flag = 'split-max-size'): number {
  const m = /^(\d+(?:\.\d+)?)\s*([KMGT]?)B?$/i.exec(raw.trim());
  const unit = { '': 1, K: 1e3, M: 1e6, G: 1e9, T: 1e12 }[(m?.[2] ?? '').toUpperCase() as '' | 'K' | 'M' | 'G' | 'T'];
  const bytes = m ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes <= 0) throw new UsageError(`--${flag} must be a size such as 50G or 800M, got "${raw}"`, flag);
  return bytes;
}

/** Off a terminal (a log, a pipe), convert prints a progress line this often. */
const PROGRESS_LINE_MS = 5000;

/**
 * Checks before any work that OUT can be written: not a directory, in a directory that exists and
 * is writable. Otherwise a conversion of hundreds of GB would fail only at its end.
 */
function checkOutput(out: string): void {
  const stat = (p: string) => {
    try {
      return fs.statSync(p);
    } catch {
      return undefined;
    }
  };
  if (stat(out)?.isDirectory()) throw new UsageError(`the output ${out} is a directory; give a file name, e.g. ${path.join(out, 'model.gguf')}`, 'OUT');
  const dir = path.dirname(path.resolve(out));
  const d = stat(dir);
  if (!d) throw new UsageError(`the output's directory ${dir} does not exist`, 'OUT');
  if (!d.isDirectory()) throw new UsageError(`the output's directory ${dir} is not a directory`, 'OUT');
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`cannot write to the output's directory ${dir} (permission denied)`, 'OUT');
  }
}

/** Checks before any work that OUT can be a directory of output files: one, or a new one in an existing writable directory. */
function checkOutputDir(out: string): void {
  const st = fs.statSync(out, { throwIfNoEntry: false });
  if (st && !st.isDirectory()) throw new UsageError(`the output ${out} is a file; --to safetensors writes a directory`, 'OUT');
  const dir = st ? path.resolve(out) : path.dirname(path.resolve(out));
  const d = fs.statSync(dir, { throwIfNoEntry: false });
  if (!d || !d.isDirectory()) throw new UsageError(`the output's parent directory ${dir} does not exist`, 'OUT');
  try {
    fs.accessSync(dir, fs.constants.W_OK);
  } catch {
    throw new UsageError(`cannot write to ${dir} (permission denied)`, 'OUT');
  }
}

export const convertCommand: Command = {
  name: 'convert',
  summary: 'convert a ckpt-0 checkpoint to GGUF (f32, f16, bf16, q8_0, q4_0, q4_k, q6_k) or to safetensors for vLLM/SGLang',
  help: `Usage: grok-ts convert CKPT_DIR OUT.gguf [--type TYPE] [--split-max-size SIZE]
       grok-ts convert CKPT_OR_GGUF OUT_DIR --to safetensors [--type bf16|f32] [--names sglang|hpcai]

Writes the checkpoint as a GGUF of llama.cpp's "grok" architecture, with the multipliers and the
tokenizer in its metadata. The input may also be a GGUF (re-quantised; its tokenizer is kept). Tensors are streamed one at a time, so memory stays near the size of
one expert matrix. The output is written under a temporary name and renamed when complete;
Ctrl-C stops the conversion and removes it. Off a terminal, progress is a line every 5 seconds.

  --type TYPE            f32, f16, bf16, q8_0, q4_0, q4_k or q6_k (default q8_0). Norms and
                         routers stay f32. Matrices whose rows do not fit the type's blocks fall
                         back to q8_0 (k-quants) or f16, as llama-quantize does.
  --split-max-size SIZE  write gguf-split shards of at most SIZE each (e.g. 50G), named
                         OUT-00001-of-0000N.gguf; load the set from the first shard
  --tokenizer FILE       the tokenizer.model to embed (default: the bundled Grok-1 tokenizer).
                         A model whose vocabulary size differs gets a placeholder vocabulary.
  --name NAME            general.name (default: the checkpoint folder's name)
  --force                overwrite existing output files

  --to safetensors       write OUT_DIR in the Hugging Face layout vLLM and SGLang load: sharded
                         model-NNNNN-of-NNNNN.safetensors (--split-max-size, default 5G) with
                         model.safetensors.index.json, config.json, generation_config.json and
                         the tokenizer files. --type bf16 (default) or f32 (lossless from ckpt-0).
  --names SCHEME         sglang (default: SGLang, and vLLM through its Grok-2 loader path) or
                         hpcai (the hpcai-tech/grok-1 names vLLM's Grok-1 path loads)
`,
  options: {
    type: { type: 'string' },
    'split-max-size': { type: 'string' },
    tokenizer: { type: 'string' },
    name: { type: 'string' },
    force: { type: 'boolean' },
    to: { type: 'string' },
    names: { type: 'string' },
  },
  allowPositionals: true,
  async run(ctx) {
    if (ctx.positionals.length !== 2) throw new UsageError('give a checkpoint directory and an output file: grok-ts convert CKPT_DIR OUT.gguf');
    const [input, out] = ctx.positionals as [string, string];
    const to = str(ctx, 'to') ?? 'gguf';
    if (to !== 'gguf' && to !== 'safetensors') throw new UsageError(`--to must be gguf or safetensors, got "${to}"`, 'to');
    if (to === 'safetensors') return runSafetensors(ctx, input, out);
    if (str(ctx, 'names') !== undefined) throw new UsageError('--names applies to --to safetensors', 'names');
    const type = str(ctx, 'type') ?? 'q8_0';
    if (!isQuantizeType(type)) throw new UsageError(`--type must be one of ${QUANTIZE_TYPES.join(', ')}, got "${type}"`, 'type');
    const splitRaw = str(ctx, 'split-max-size');
    const splitMaxBytes = splitRaw === undefined ? undefined : parseSize(splitRaw);
    const tokenizerPath = str(ctx, 'tokenizer') ?? BUNDLED_TOKENIZER_PATH;
    if (str(ctx, 'tokenizer') !== undefined && !fs.existsSync(tokenizerPath)) throw new UsageError(`--tokenizer: no file at ${tokenizerPath}`, 'tokenizer');
    const tokenizer = fs.existsSync(tokenizerPath) ? readTokenizerModel(tokenizerPath) : undefined;
    checkOutput(out);

    const files = openModelFiles(input);
    const bar = new ProgressBar(ctx.stderr, `convert ${type}`, { lineEveryMs: PROGRESS_LINE_MS });
    try {
      const name = str(ctx, 'name') ?? path.basename(path.resolve(files.path, files.path.endsWith('ckpt-0') ? '..' : '.'));
      const result = await convertToGgufAsync(files.weights, files.store, out, {
        type: type as QuantizeType,
        name,
        ...(splitMaxBytes ? { splitMaxBytes } : {}),
        ...(tokenizer ? { tokenizer } : {}),
        ...(files.ggufMetadata ? { sourceMetadata: files.ggufMetadata } : {}),
        signal: ctx.signal,
        onProgress: (done, total) => bar.update(done, total),
        beforeWrite: (targets) => {
          const existing = targets.filter((f) => fs.existsSync(f));
          if (existing.length && ctx.values.force !== true) {
            throw new UsageError(`${existing.join(', ')} already exists; pass --force to overwrite`, 'force');
          }
        },
      });
      const fallback = result.fallbacks.length
        ? `; ${result.fallbacks.length} matrices in ${[...new Set(result.fallbacks.map((f) => f.type))].join('/')} (rows do not fit ${type} blocks)`
        : '';
      ctx.stdout.write(
        `wrote ${result.files.join(', ')}: ${formatBytes(result.bytes)}, ${type}${fallback}; tokenizer ${result.tokenizer === 'placeholder' ? `placeholder (the model's vocabulary is not the tokenizer's)` : result.tokenizer}\n`,
      );
      return 0;
    } finally {
      bar.done();
      files.close();
    }
  },
};

/** `convert … --to safetensors`. */
async function runSafetensors(ctx: Parameters<Command['run']>[0], input: string, out: string): Promise<number> {
  const type = str(ctx, 'type') ?? 'bf16';
  if (type !== 'bf16' && type !== 'f32') throw new UsageError(`--type for safetensors must be bf16 or f32, got "${type}"`, 'type');
  const naming = str(ctx, 'names') ?? 'sglang';
  if (!(HF_NAMINGS as readonly string[]).includes(naming)) throw new UsageError(`--names must be one of ${HF_NAMINGS.join(', ')}, got "${naming}"`, 'names');
  const splitRaw = str(ctx, 'split-max-size');
  const splitMaxBytes = splitRaw === undefined ? DEFAULT_SHARD_BYTES : parseSize(splitRaw);
  const tokenizerPath = str(ctx, 'tokenizer') ?? BUNDLED_TOKENIZER_PATH;
  if (str(ctx, 'tokenizer') !== undefined && !fs.existsSync(tokenizerPath)) throw new UsageError(`--tokenizer: no file at ${tokenizerPath}`, 'tokenizer');
  const tokenizer = fs.existsSync(tokenizerPath) ? readTokenizerModel(tokenizerPath) : undefined;
  checkOutputDir(out);
  const files = openModelFiles(input);
  const bar = new ProgressBar(ctx.stderr, `convert safetensors ${type}`, { lineEveryMs: PROGRESS_LINE_MS });
  try {
    const result = await convertToSafetensors(files.weights, files.store, out, {
      dtype: type,
      naming: naming as HfNaming,
      splitMaxBytes,
      ...(tokenizer ? { tokenizerFile: tokenizerPath, tokenizerVocabSize: tokenizer.pieces.length } : {}),
      signal: ctx.signal,
      onProgress: (done, total) => bar.update(done, total),
      beforeWrite: (targets) => {
        const existing = targets.filter((f) => fs.existsSync(f));
        if (existing.length && ctx.values.force !== true) throw new UsageError(`${existing.join(', ')} already exists; pass --force to overwrite`, 'force');
      },
    });
    bar.done();
    const shards = result.files.filter((f) => f.endsWith('.safetensors')).length;
    ctx.stdout.write(
      `wrote ${out}: ${shards} safetensors file${shards === 1 ? '' : 's'}, ${formatBytes(result.bytes)}, ${type}, ${naming} names; tokenizer ${result.tokenizer === 'copied' ? 'copied' : `absent (the model's vocabulary is not the tokenizer's)`}\n`,
    );
    for (const w of result.warnings) ctx.stderr.write(`warning: ${w}\n`);
    return 0;
  } finally {
    bar.done();
    files.close();
  }
}
