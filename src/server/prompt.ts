/**
 * Prompt text → token ids for the server, in bounded time. Tokenising is synchronous and a body may
 * hold a megabyte of text, so a prompt that cannot fit the context whatever its tokens are is
 * refused from its length alone: no piece covers more characters than the longest piece in the
 * vocabulary, so a text longer than context × that many characters has more tokens than fit.
 */
import { ContextLengthError, UsageError } from '../errors.js';
import type { LanguageModel } from '../language-model.js';

export class PromptEncoder {
  /** Upper bound on input characters one token covers; Infinity when the tokenizer may collapse whitespace runs. */
  private readonly maxCharsPerToken: number;

  constructor(private readonly lm: LanguageModel) {
    const tok = lm.tokenizer;
    let longest = 1;
    for (let id = 0; id < tok.vocabSize; id++) longest = Math.max(longest, tok.idToPiece(id).length);
    // A normaliser that squeezes runs of spaces lets one token stand for arbitrarily many characters.
    const keepsSpaces = tok.encode('a        b').length > tok.encode('a b').length;
    this.maxCharsPerToken = keepsSpaces ? longest : Infinity;
  }

  /**
   * Token ids for a prompt (text, or ids checked against the model's vocabulary; `param` names the
   * request field it came from). An empty prompt
   * becomes BOS alone, the start of a document. Throws ContextLengthError when it leaves no room.
   */
  encode(prompt: string | readonly number[], param: 'prompt' | 'messages' = 'prompt'): number[] {
    const context = this.lm.config.sequenceLen;
    if (typeof prompt === 'string' && prompt.length > context * this.maxCharsPerToken) {
      throw new ContextLengthError(Math.ceil(prompt.length / this.maxCharsPerToken), context, `at least that many: ${prompt.length} characters`);
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
