/**
 * One generating sequence as a step machine: it says which tokens to feed next (the prompt first,
 * then each sampled token) and takes the logits that come back. The single-stream generator and
 * the server's batching scheduler drive the same machine, so stop rules, sampling and streaming
 * behave identically in both.
 */
import { ContextLengthError, UsageError } from '../errors.js';
import type { KvCache } from '../model/kv-cache.js';
import { streamKey } from './rng.js';
import { logprobs as logprobsOf, Sampler, type SamplingOptions } from './sampler.js';
import { StopMatcher } from './stop.js';

/** What generation needs of a tokenizer (the SentencePiece Tokenizer satisfies it). */
export interface TextCodec {
  readonly eosId: number;
  idToPiece(id: number): string;
  /** `continuation`: the text continues a prompt, so a leading ▁ is kept as a space. */
  decoder(opts?: { continuation?: boolean }): { push(id: number): string; flush(): string };
}

export interface GenerateOptions extends SamplingOptions {
  /** Most tokens to generate. Default 128. */
  readonly maxTokens?: number;
  /** Stop when any of these strings appears in the output (it is not emitted). */
  readonly stop?: readonly string[];
  /** Keep going after EOS (the official runner does). Default false. */
  readonly ignoreEos?: boolean;
  /** Prepend BOS to the prompt (the reference does not). Default false. */
  readonly addBos?: boolean;
  /** A prompt longer than the context: `error` (default) or keep its last tokens (`left`, as the reference's window). */
  readonly truncate?: 'error' | 'left';
  /** Report log-probabilities of each chosen token and this many alternatives (0 = chosen only). */
  readonly logprobs?: number;
  readonly signal?: AbortSignal;
  /** The output is one JSON value valid under this JSON Schema (`true`: any JSON value). */
  readonly jsonSchema?: object | boolean;
  /** The output is one JSON object (OpenAI's `json_object` response format). */
  readonly jsonObject?: boolean;
  /** The output matches this llama.cpp GBNF grammar (from its `root` rule, or `grammarRoot`). */
  readonly grammar?: string;
  readonly grammarRoot?: string;
  /** The whole output matches this regular expression (JavaScript syntax, no flags). */
  readonly regex?: string;
}

/**
 * What a sequence needs of a constraint's matcher (src/constrain's ConstraintMatcher): the tokens
 * allowed next, as a bitset, and the token chosen.
 */
export interface SequenceConstraint {
  /** Sets the bits of the allowed ids (EOS iff the output is complete); with `budget` (tokens left), only ids after which the output can still be completed in time. */
  fillMask(mask: Uint32Array, budget?: number): void;
  accept(tokenId: number): void;
  isComplete(): boolean;
  canContinue(): boolean;
}

/** How many of the constraint options are set (at most one may be). */
export function constraintOptionCount(o: GenerateOptions): number {
  return [o.jsonSchema !== undefined, o.jsonObject === true, o.grammar !== undefined, o.regex !== undefined].filter(Boolean).length;
}

/**
 * Why generation ended. `constraint`: the constraint's output was complete and nothing may follow
 * (a JSON object's closing brace); finish reason `stop`.
 */
export type StopReason = 'eos' | 'stop_string' | 'max_tokens' | 'context_length' | 'constraint';

export interface TokenLogprob {
  readonly id: number;
  readonly token: string;
  readonly logprob: number;
  readonly top: { id: number; token: string; logprob: number }[];
}

export interface GenerationChunk {
  /** Text delta (never a broken character; may be '' while text is held back). */
  readonly text: string;
  /** Token ids sampled in this step. */
  readonly ids: number[];
  readonly logprobs?: TokenLogprob[];
}

export interface Usage {
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly totalTokens: number;
}

export interface GenerationResult {
  readonly text: string;
  readonly ids: number[];
  /** OpenAI's two values: `stop` (EOS or a stop string) or `length` (max tokens or context). */
  readonly finishReason: 'stop' | 'length';
  readonly stopReason: StopReason;
  readonly stopString?: string;
  readonly usage: Usage;
  readonly logprobs?: TokenLogprob[];
  /** The seed used (drawn at random when none was given), to repeat a run. */
  readonly seed: number;
  readonly timings: { prefillMs: number; decodeMs: number; prefillTokensPerSec: number; decodeTokensPerSec: number };
}

export const DEFAULT_MAX_TOKENS = 128;

/** Validates generation options that are not sampling options, naming the field. */
export function validateGenerateOptions(o: GenerateOptions): void {
  if (o.maxTokens !== undefined && (!Number.isSafeInteger(o.maxTokens) || o.maxTokens < 0)) {
    throw new UsageError('max_tokens must be a non-negative integer', 'max_tokens');
  }
  if (o.stop !== undefined && (!Array.isArray(o.stop) || o.stop.some((s) => typeof s !== 'string' || s === ''))) {
    throw new UsageError('stop must be a list of non-empty strings', 'stop');
  }
  if (o.truncate !== undefined && o.truncate !== 'error' && o.truncate !== 'left') {
    throw new UsageError(`truncate must be "error" or "left", got ${JSON.stringify(o.truncate)}`, 'truncate');
  }
  if (o.logprobs !== undefined && (!Number.isSafeInteger(o.logprobs) || o.logprobs < 0 || o.logprobs > 20)) {
    throw new UsageError('logprobs must be an integer in [0, 20]', 'logprobs');
  }
  if (constraintOptionCount(o) > 1) throw new UsageError('give at most one of jsonSchema, jsonObject, grammar and regex', 'jsonSchema');
  if (o.jsonSchema !== undefined && (o.jsonSchema === null || (typeof o.jsonSchema !== 'object' && typeof o.jsonSchema !== 'boolean'))) {
    throw new UsageError('jsonSchema must be a JSON Schema object or a boolean', 'jsonSchema');
  }
  if (o.grammar !== undefined && typeof o.grammar !== 'string') throw new UsageError('grammar must be a GBNF grammar as a string', 'grammar');
  if (o.grammarRoot !== undefined && typeof o.grammarRoot !== 'string') throw new UsageError('grammarRoot must be a rule name', 'grammarRoot');
  if (o.regex !== undefined && typeof o.regex !== 'string') throw new UsageError('regex must be a string', 'regex');
}

/**
 * Fits a prompt into the context: returns the ids to prefill (after `cached` tokens already in the
 * cache), left-truncated when allowed, else a ContextLengthError.
 */
export function fitPrompt(ids: number[], cached: number, contextLen: number, o: GenerateOptions): number[] {
  const total = cached + ids.length;
  if (total < contextLen) return ids;
  if (o.truncate === 'left' && cached === 0) {
    const room = Math.max(1, contextLen - Math.min(o.maxTokens ?? DEFAULT_MAX_TOKENS, contextLen - 1));
    return ids.slice(ids.length - room);
  }
  throw new ContextLengthError(total, contextLen, 'leave room for at least one generated token, shorten the prompt, or pass truncate: "left"');
}

export class SequenceState {
  readonly sampler: Sampler;
  readonly generated: number[] = [];
  /** Everything the model has seen or will see: prompt then generated tokens (penalty history). */
  readonly history: number[];
  private input: number[];
  private readonly decoder: { push(id: number): string; flush(): string };
  private readonly stops: StopMatcher;
  private readonly maxTokens: number;
  private text = '';
  private lps: TokenLogprob[] | undefined;
  /** The constraint's allowed-ids bitset, refilled each step. */
  private readonly mask: Uint32Array | undefined;
  done: { finishReason: 'stop' | 'length'; stopReason: StopReason; stopString?: string } | undefined;
  prefillMs = 0;
  decodeMs = 0;
  readonly promptTokens: number;

  constructor(
    readonly cache: KvCache,
    promptIds: number[],
    private readonly codec: TextCodec,
    readonly vocabSize: number,
    private readonly contextLen: number,
    readonly options: GenerateOptions,
    /** A constraint's matcher, fresh (nothing accepted yet): every sampled token must be one it allows. */
    readonly constraint?: SequenceConstraint,
  ) {
    validateGenerateOptions(options);
    if (constraint) this.mask = new Uint32Array(Math.ceil(vocabSize / 32));
    if (promptIds.length === 0) throw new UsageError('the prompt is empty: give at least one token', 'prompt');
    // The noise depends on the prompt (and where it starts in the cache) as well as the seed.
    this.sampler = new Sampler(options, vocabSize, streamKey(promptIds, cache.length));
    this.input = promptIds;
    this.history = [...promptIds];
    this.promptTokens = promptIds.length;
    // The output continues the prompt: prompt text + output = decode(prompt ids + output ids).
    this.decoder = codec.decoder({ continuation: true });
    this.stops = new StopMatcher(options.stop ?? []);
    this.maxTokens = options.maxTokens ?? DEFAULT_MAX_TOKENS;
    if (options.logprobs !== undefined) this.lps = [];
    if (this.maxTokens === 0) this.done = { finishReason: 'length', stopReason: 'max_tokens' };
  }

  /** Tokens to feed in the next forward call (empty once done). */
  nextInput(): number[] {
    return this.done ? [] : this.input;
  }

  /** Takes the logits of the last fed token, samples, applies the stop rules; returns this step's output. */
  accept(logits: Float32Array): GenerationChunk {
    const c = this.constraint;
    if (c) {
      this.mask!.fill(0);
      // The tokens still allowed: the constraint keeps a complete output reachable within them.
      // (The context allows one more token than it has slots: the last one sampled is never fed.)
      const byTokens = this.maxTokens - this.generated.length;
      const byContext = this.contextLen - this.cache.length + 1;
      c.fillMask(this.mask!, Math.max(1, Math.min(byTokens, byContext)));
      if (!this.mask!.some((w) => w !== 0)) {
        // No token keeps the output completable in the tokens left (max_tokens below what it needs).
        this.finish({ finishReason: 'length', stopReason: byContext < byTokens ? 'context_length' : 'max_tokens' });
        const tail = this.flushText();
        this.text += tail;
        return { text: tail, ids: [] };
      }
    }
    const id = this.sampler.sample(logits, this.history, this.mask);
    let lp: TokenLogprob | undefined;
    if (this.lps) {
      const r = logprobsOf(logits, id, this.options.logprobs ?? 0);
      lp = { id, token: this.codec.idToPiece(id), logprob: r.logprob, top: r.top.map((t) => ({ ...t, token: this.codec.idToPiece(t.id) })) };
    }
    // Under a constraint, EOS is only allowed once the output is complete, and then it ends it.
    if (id === this.codec.eosId && (!this.options.ignoreEos || c)) {
      this.finish({ finishReason: 'stop', stopReason: 'eos' });
      const tail = this.flushText();
      this.text += tail;
      return { text: tail, ids: [] };
    }
    c?.accept(id);
    this.generated.push(id);
    this.history.push(id);
    if (lp) this.lps!.push(lp);
    this.input = [id];
    const { emit, stop } = this.stops.push(this.decoder.push(id));
    let text = emit;
    if (stop !== undefined) this.finish({ finishReason: 'stop', stopReason: 'stop_string', stopString: stop });
    else if (c && !c.canContinue()) this.finish({ finishReason: 'stop', stopReason: 'constraint' });
    else if (this.generated.length >= this.maxTokens) this.finish({ finishReason: 'length', stopReason: 'max_tokens' });
    else if (this.cache.length >= this.contextLen) this.finish({ finishReason: 'length', stopReason: 'context_length' });
    if (this.done && stop === undefined) text += this.flushText();
    this.text += text;
    return { text, ids: [id], ...(lp ? { logprobs: [lp] } : {}) };
  }

  result(): GenerationResult {
    if (!this.done) throw new Error('generation has not finished');
    const gen = this.generated.length;
    const rate = (n: number, ms: number) => (ms > 0 ? (n * 1000) / ms : 0);
    return {
      text: this.text,
      ids: [...this.generated],
      ...this.done,
      usage: { promptTokens: this.promptTokens, completionTokens: gen, totalTokens: this.promptTokens + gen },
      ...(this.lps ? { logprobs: this.lps } : {}),
      seed: this.sampler.seed,
      timings: {
        prefillMs: this.prefillMs,
        decodeMs: this.decodeMs,
        prefillTokensPerSec: rate(this.promptTokens, this.prefillMs),
        decodeTokensPerSec: rate(Math.max(0, gen - 1), this.decodeMs),
      },
    };
  }

  private finish(d: NonNullable<SequenceState['done']>): void {
    this.done = d;
  }

  private flushText(): string {
    const rest = this.stops.push(this.decoder.flush());
    return rest.emit + (rest.stop === undefined ? this.stops.flush() : '');
  }
}
