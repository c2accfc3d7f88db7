/**
 * Prompt text → token ids for the server, in bounded time. Tokenising is synchronous and runs on
 * the event loop that also drives every stream, and its speed depends on the text: ordinary prose
 * goes at 6–20 MB/s, runs of one character at ~0.4 MB/s. So before tokenising, a prompt is held to
 * a character budget: at most `maxCharsPerToken` characters per token of the model's context
 * (default 8; real text averages about 4). A prompt that cannot fit the context whatever its
 * tokens are (longer than context × the longest piece in the vocabulary) is a context-length error;
 * one over the budget is refused as too long to tokenise. Several prompts are tokenised one per
 * turn of the event loop (`encodeAll`), so decode steps of running streams go on between them.
 */
import { setImmediate as nextTurn } from 'node:timers/promises';
import { ContextLengthError, UsageError } from '../errors.js';
import type { LanguageModel } from '../language-model.js';
import { RequestError } from './errors.js';

/** Characters of prompt text per context token tokenised at most; see the module comment. */
export const DEFAULT_MAX_CHARS_PER_TOKEN = 8;

export class PromptEncoder {
  /** Upper bound on input characters one token covers; Infinity when the tokenizer may collapse whitespace runs. */
  private readonly longestPiece: number;

  constructor(
    private readonly lm: LanguageModel,
    private readonly maxCharsPerToken = DEFAULT_MAX_CHARS_PER_TOKEN,
  ) {
    if (!(maxCharsPerToken > 0)) throw new RangeError(`maxCharsPerToken must be positive, got ${maxCharsPerToken}`);
    const tok = lm.tokenizer;
    let longest = 1;
    for (let id = 0; id < tok.vocabSize; id++) longest = Math.max(longest, tok.idToPiece(id).length);
    // A normaliser that squeezes runs of spaces lets one token stand for arbitrarily many characters.
    const keepsSpaces = tok.encode('a        b').length > tok.encode('a b').length;
    this.longestPiece = keepsSpaces ? longest : Infinity;
  }

  /** The longest prompt text, in characters, that is tokenised at all. */
  get maxChars(): number {
    return this.lm.config.sequenceLen * Math.min(this.maxCharsPerToken, this.longestPiece);
  }

  /**
   * Token ids for a prompt (text, or ids checked against the model's vocabulary; `param` names the
   * request field it came from). An empty prompt
   * becomes BOS alone, the start of a document. Throws ContextLengthError when it leaves no room.
   */
  encode(prompt: string | readonly number[], param: 'prompt' | 'messages' | 'input' = 'prompt'): number[] {
    const context = this.lm.config.sequenceLen;
    if (typeof prompt === 'string' && prompt.length > context * this.longestPiece) {
      throw new ContextLengthError(Math.ceil(prompt.length / this.longestPiece), context, `at least that many: ${prompt.length} characters`);
    }
    if (typeof prompt === 'string' && prompt.length > this.maxChars) {
      throw new RequestError(
        400,
        `the prompt is ${prompt.length} characters; this server tokenises at most ${this.maxChars} (${Math.min(this.maxCharsPerToken, this.longestPiece)} characters per token of the model's ${context}-token context)`,
        'invalid_request_error',
        'context_length_exceeded',
        param,
      );
    }
    const ids = this.lm.encodePrompt(prompt);
    if (ids.length === 0) {
      if (this.lm.tokenizer.bosId < 0) throw new UsageError('the prompt is empty', param);
      ids.push(this.lm.tokenizer.bosId);
    }
    for (const id of ids) {
      if (id >= this.lm.config.vocabSize) {
        throw new UsageError(`the prompt holds token ${id}, outside this model's vocabulary of ${this.lm.config.vocabSize} (its tokenizer does not match the model)`, param);
      }
    }
    if (ids.length >= context) throw new ContextLengthError(ids.length, context, 'leave room for at least one generated token');
    return ids;
  }

  /**
   * Every prompt of a request, each text prompt in a turn of the event loop of its own (running
   * streams step in between), after all of them passed the length checks.
   */
  async encodeAll(prompts: readonly (string | readonly number[])[], param: 'prompt' | 'messages' | 'input' = 'prompt'): Promise<number[][]> {
    for (const p of prompts) if (typeof p === 'string' && p.length > this.maxChars) this.encode(p, param); // throws, before any work
    const out: number[][] = [];
    for (const p of prompts) {
      if (typeof p === 'string') await nextTurn();
      out.push(this.encode(p, param));
    }
    return out;
  }

  /**
   * How many tokens to generate: the request's max_tokens when prompt + max_tokens fits the context
   * (else a ContextLengthError, as OpenAI answers), or `fallback` capped by the room left.
   */
  budget(promptTokens: number, requested: number | undefined, fallback: number): number {
    const context = this.lm.config.sequenceLen;
    const room = context - promptTokens;
    if (requested !== undefined && requested > room) {
      throw new ContextLengthError(promptTokens, context, `max_tokens ${requested} would take it to ${promptTokens + requested}; ask for at most ${room}`);
    }
    return requested ?? Math.min(fallback, room);
  }
}
