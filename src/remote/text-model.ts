/**
 * The surface an application writes against, whoever computes the tokens: `LanguageModel` (this
 * process) and `RemoteModel` (an OpenAI-compatible server: vLLM, SGLang, llama-server or
 * `grok-ts serve`) both implement it, so moving from one machine to a cluster is changing the path
 * given to loadModel into a URL:
 *
 *   const lm: TextModel = await loadModel(process.env.MODEL ?? '/models/grok-1');  // or 'http://gpu-box:8000/v1'
 *   for await (const c of lm.stream('The answer is', { maxTokens: 32, stop: ['\n'] })) process.stdout.write(c.text);
 */
import type { GenerateOptions, GenerationResult } from '../generate/sequence.js';
import type { GenerationStream } from '../language-model.js';

export type { GenerationStream };

/** Text ↔ token ids. Local tokenizers answer at once; a remote one asks its server (await either). */
export interface TextTokenizer {
  encode(text: string): number[] | Promise<number[]>;
  decode(ids: readonly number[]): string | Promise<string>;
}

/** A multi-turn conversation; the model keeps the history. */
export interface TextChat {
  send(message: string, options?: GenerateOptions): GenerationStream;
  /** Forgets the conversation (a system message stays). */
  reset(): void;
}

export interface TextChatOptions {
  /** A system message opening the conversation. */
  readonly system?: string;
}

export interface TextModel {
  /**
   * The model's tokenizer; undefined for a remote server that exposes none (one without llama-server's
   * or vLLM's /tokenize and /detokenize).
   */
  readonly tokenizer: TextTokenizer | undefined;
  generate(prompt: string | readonly number[], options?: GenerateOptions): Promise<GenerationResult>;
  stream(prompt: string | readonly number[], options?: GenerateOptions): GenerationStream;
  chat(options?: TextChatOptions): TextChat;
  /** Ends every generation in progress and releases the model (weights, workers, connections). */
  close(): Promise<void>;
}
