/**
 * Request validation for llama-server's native endpoints (`/completion`, `/tokenize`,
 * `/detokenize`) and the OpenAI-shaped `/v1/embeddings`, so that a client written for llama-server
 * works unchanged. Native fields map onto the same sampler the OpenAI routes use; a field left out
 * takes llama-server's default (GET /props lists them). Fields llama-server has that change
 * nothing at their neutral value (mirostat 0, typical_p 1, ...) are accepted at that value and
 * refused by name otherwise; hints with no meaning here (cache_prompt, id_slot, n_keep, samplers)
 * are accepted; anything else is refused as on the OpenAI routes.
 */
import { UsageError } from '../errors.js';
import type { SamplingOptions } from '../generate/sampler.js';
import { Fields, isObject, mistyped, requireObject, unsupported } from './openai-schema.js';

/** llama-server's defaults for /completion, reported by /props. */
export const LLAMA_DEFAULTS = {
  temperature: 0.8,
  top_k: 40,
  top_p: 0.95,
  min_p: 0.05,
  repeat_penalty: 1.0,
  repeat_last_n: 64,
  presence_penalty: 0,
  frequency_penalty: 0,
  n_predict: -1,
  seed: -1,
} as const;

/** Most stop strings on /completion (llama-server sets none; a bound keeps the matcher cheap). */
export const MAX_NATIVE_STOP = 16;

export interface NativeCompletionParams {
  /** Text, or token ids (a mixed array of text and ids is joined into ids by the route). */
  readonly prompt: string | (string | number)[];
  /** undefined: until EOS or the context is full (n_predict -1). */
  readonly maxTokens: number | undefined;
  readonly stream: boolean;
  readonly stop: string[];
  readonly sampling: SamplingOptions;
  readonly ignoreEos: boolean;
  /** Include the generated token ids (`tokens`) in the response. */
  readonly returnTokens: boolean;
  /** Include timings in every stream chunk, not just the last. */
  readonly timingsPerToken: boolean;
}

/** Fields that change nothing at the value given here; any other value is refused by name. */
const NEUTRAL: Readonly<Record<string, number>> = {
  typical_p: 1,
  dynatemp_range: 0,
  mirostat: 0,
  dry_multiplier: 0,
  xtc_probability: 0,
  n_probs: 0,
};
/** Tuning fields of the features above: meaningless while those are off, so any value is accepted. */
const NEUTRAL_COMPANIONS = ['dynatemp_exponent', 'mirostat_tau', 'mirostat_eta', 'dry_base', 'dry_allowed_length', 'dry_penalty_last_n', 'dry_sequence_breakers', 'xtc_threshold', 'min_keep', 'post_sampling_probs'];
/** Hints about llama-server's slots and prompt cache; this server has neither to steer. */
const HINTS = ['cache_prompt', 'id_slot', 'n_keep', 'n_indent', 'samplers', 'model', 'return_progress'];

const NATIVE_FIELDS = [
  'prompt',
  'n_predict',
  'stream',
  'stop',
  'temperature',
  'top_k',
  'top_p',
  'min_p',
  'repeat_penalty',
  'repeat_last_n',
  'presence_penalty',
  'frequency_penalty',
  'seed',
  'ignore_eos',
  'logit_bias',
  'return_tokens',
  'timings_per_token',
  ...Object.keys(NEUTRAL),
  ...NEUTRAL_COMPANIONS,
  ...HINTS,
];

function parseNativePrompt(v: unknown): string | (string | number)[] {
  if (v === undefined) throw new UsageError('you must provide a prompt', 'prompt');
  if (typeof v === 'string') return v;
  const expected = 'a string, or an array of token ids and strings';
  if (!Array.isArray(v) || v.length === 0) throw mistyped('prompt', `${expected} (not empty)`, v);
  if (!v.every((x) => typeof x === 'string' || typeof x === 'number')) {
    if (v.every((x) => typeof x === 'string' || Array.isArray(x))) throw unsupported('prompt', 'several prompts in one /completion request (send one request per prompt)');
    throw mistyped('prompt', expected, v);
  }
  for (const x of v) if (typeof x === 'number' && (!Number.isSafeInteger(x) || x < 0)) throw new UsageError('prompt token ids must be non-negative integers', 'prompt');
  return v as (string | number)[];
}

/** logit_bias as an object {"id": bias} or llama-server's array [[id, bias], ...]; `false` bans the token. */
function parseLogitBias(v: unknown): Record<number, number> | undefined {
  if (v === undefined) return undefined;
  const pairs: [string, unknown][] = Array.isArray(v)
    ? v.map((p, i) => {
        if (!Array.isArray(p) || p.length !== 2 || typeof p[0] !== 'number') throw mistyped(`logit_bias[${i}]`, 'an [token id, bias] pair', p);
        return [String(p[0]), p[1]];
      })
    : isObject(v)
      ? Object.entries(v)
      : (() => {
          throw mistyped('logit_bias', 'an object or an array of [token id, bias] pairs', v);
        })();
  const out: Record<number, number> = {};
  for (const [k, b] of pairs) {
    const id = Number(k);
    if (!Number.isSafeInteger(id) || id < 0) throw new UsageError(`logit_bias: ${k} is not a token id`, 'logit_bias');
    if (b === false) out[id] = -100; // the sampler's largest bias: the token is never drawn
    else if (typeof b === 'number' && Number.isFinite(b)) out[id] = b;
    else throw mistyped(`logit_bias.${k}`, 'a number or false', b);
  }
  return out;
}

/** POST /completion (llama-server's native completion endpoint). */
export function parseNativeCompletion(body: unknown): NativeCompletionParams {
  const f = new Fields(requireObject(body), NATIVE_FIELDS);
  for (const [name, neutral] of Object.entries(NEUTRAL)) {
    const v = f.number(name);
    if (v !== undefined && v !== neutral) throw unsupported(name, `${name} other than ${neutral}`);
  }
  const nPredict = f.number('n_predict', { integer: true, min: -1 }) ?? LLAMA_DEFAULTS.n_predict;
  const stopRaw = f.raw('stop');
  const stop = stopRaw === undefined ? [] : typeof stopRaw === 'string' ? [stopRaw] : stopRaw;
  if (!Array.isArray(stop) || stop.some((s) => typeof s !== 'string')) throw mistyped('stop', 'an array of strings', stopRaw);
  if (stop.length > MAX_NATIVE_STOP) throw new UsageError(`stop may hold at most ${MAX_NATIVE_STOP} strings, got ${stop.length}`, 'stop');
  const seed = f.number('seed', { integer: true, min: -1 });
  const topK = f.number('top_k', { integer: true, min: -1 }) ?? LLAMA_DEFAULTS.top_k;
  const repeatLastN = f.number('repeat_last_n', { integer: true, min: -1 }) ?? LLAMA_DEFAULTS.repeat_last_n;
  const sampling: Record<string, unknown> = {
    temperature: f.number('temperature', { min: 0 }) ?? LLAMA_DEFAULTS.temperature,
    // llama-server's top_k 0 and -1 both mean off, as 0 does for the sampler.
    topK: Math.max(0, topK),
    topP: f.number('top_p') ?? LLAMA_DEFAULTS.top_p,
    minP: f.number('min_p') ?? LLAMA_DEFAULTS.min_p,
    repetitionPenalty: f.number('repeat_penalty') ?? LLAMA_DEFAULTS.repeat_penalty,
    presencePenalty: f.number('presence_penalty') ?? LLAMA_DEFAULTS.presence_penalty,
    frequencyPenalty: f.number('frequency_penalty') ?? LLAMA_DEFAULTS.frequency_penalty,
    // -1: the whole context; 0: llama-server turns the penalties off, as a window of 0 does here.
    penaltyWindow: repeatLastN === -1 ? Number.MAX_SAFE_INTEGER : repeatLastN,
    logitBias: parseLogitBias(f.raw('logit_bias')),
    // -1: a random seed, as leaving it out does here.
    seed: seed === -1 ? undefined : seed,
  };
  for (const k of Object.keys(sampling)) if (sampling[k] === undefined) delete sampling[k];
  for (const name of [...NEUTRAL_COMPANIONS, ...HINTS]) f.raw(name);
  return {
    prompt: parseNativePrompt(f.raw('prompt')),
    maxTokens: nPredict === -1 ? undefined : nPredict,
    stream: f.boolean('stream') ?? false,
    stop: (stop as string[]).filter((s) => s !== ''),
    sampling: sampling as SamplingOptions,
    ignoreEos: f.boolean('ignore_eos') ?? false,
    returnTokens: f.boolean('return_tokens') ?? false,
    timingsPerToken: f.boolean('timings_per_token') ?? false,
  };
}

export interface TokenizeParams {
  readonly content: string;
  readonly addSpecial: boolean;
  readonly withPieces: boolean;
}

/** POST /tokenize */
export function parseTokenize(body: unknown): TokenizeParams {
  const f = new Fields(requireObject(body), ['content', 'add_special', 'with_pieces', 'parse_special']);
  const content = f.string('content');
  if (content === undefined) throw new UsageError('you must provide content', 'content');
  f.boolean('parse_special');
  return { content, addSpecial: f.boolean('add_special') ?? false, withPieces: f.boolean('with_pieces') ?? false };
}

/** POST /detokenize */
export function parseDetokenize(body: unknown): number[] {
  const f = new Fields(requireObject(body), ['tokens']);
  const tokens = f.raw('tokens') ?? [];
  if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'number' || !Number.isSafeInteger(t) || t < 0)) {
    throw mistyped('tokens', 'an array of token ids (non-negative integers)', tokens);
  }
  return tokens as number[];
}

export interface EmbeddingsParams {
  readonly model: string;
  /** Texts or token-id arrays, one embedding each. */
  readonly inputs: (string | number[])[];
  readonly encodingFormat: 'float' | 'base64';
}

/** Most inputs in one /v1/embeddings request; each is a forward pass over its tokens. */
export const MAX_EMBEDDING_INPUTS = 64;

/** POST /v1/embeddings (OpenAI's shape). */
export function parseEmbeddings(body: unknown): EmbeddingsParams {
  const f = new Fields(requireObject(body), ['model', 'input', 'encoding_format', 'dimensions', 'user']);
  const model = f.string('model');
  if (model === undefined) throw new UsageError('you must provide a model parameter', 'model');
  if (f.number('dimensions') !== undefined) throw unsupported('dimensions', 'shortening embeddings (dimensions)');
  f.string('user');
  const format = f.string('encoding_format') ?? 'float';
  if (format !== 'float' && format !== 'base64') throw new UsageError(`encoding_format must be "float" or "base64", got ${JSON.stringify(format)}`, 'encoding_format');
  const v = f.raw('input');
  if (v === undefined) throw new UsageError('you must provide input', 'input');
  const isIds = (x: unknown): x is number[] => Array.isArray(x) && x.length > 0 && x.every((t) => typeof t === 'number' && Number.isSafeInteger(t) && t >= 0);
  let inputs: (string | number[])[];
  if (typeof v === 'string') inputs = [v];
  else if (isIds(v)) inputs = [v];
  else if (Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' || isIds(x))) inputs = v as (string | number[])[];
  else throw mistyped('input', 'a string, an array of strings, an array of token ids, or an array of token id arrays (not empty)', v);
  if (inputs.length > MAX_EMBEDDING_INPUTS) throw new UsageError(`input may hold at most ${MAX_EMBEDDING_INPUTS} items, got ${inputs.length}`, 'input');
  if (inputs.some((x) => x === '')) throw new UsageError('input must not hold empty strings', 'input');
  return { model, inputs, encodingFormat: format };
}
