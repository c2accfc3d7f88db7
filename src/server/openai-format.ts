/**
 * Response shapes of the OpenAI API: whole responses, stream chunks, usage and the two logprob
 * formats (the completions endpoint's legacy `tokens / token_logprobs / top_logprobs / text_offset`,
 * and chat's `content: [{token, logprob, bytes, top_logprobs}]`).
 */
import type { TokenLogprob } from '../generate/sequence.js';

export type FinishReason = 'stop' | 'length' | 'tool_calls';

export interface UsageJson {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export function usageJson(promptTokens: number, completionTokens: number): UsageJson {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;

/**
 * A SentencePiece piece as OpenAI shows a token: its text (▁ is a space) and its UTF-8 bytes. A
 * byte-fallback piece that is not a character on its own is written `bytes:\xNN`, as OpenAI writes
 * tokens that split a character.
 */
export function tokenView(piece: string): { text: string; bytes: number[] } {
  const m = BYTE_PIECE.exec(piece);
  if (m) {
    const b = parseInt(m[1]!, 16);
    return { text: b < 0x80 ? String.fromCharCode(b) : `bytes:\\x${m[1]!.toLowerCase()}`, bytes: [b] };
  }
  const text = piece.replace(/\u2581/g, ' ');
  return { text, bytes: [...Buffer.from(text, 'utf8')] };
}

export interface LegacyLogprobs {
  tokens: string[];
  token_logprobs: number[];
  top_logprobs: Record<string, number>[];
  text_offset: number[];
}

/**
 * The completions endpoint's logprobs for some tokens. Offsets count characters from the start of
 * prompt + completion, as OpenAI's do; `offset` is where the first of these tokens starts.
 */
export function legacyLogprobs(lps: readonly TokenLogprob[], offset: number): { logprobs: LegacyLogprobs; end: number } {
  const out: LegacyLogprobs = { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
  let at = offset;
  for (const lp of lps) {
    const text = tokenView(lp.token).text;
    out.tokens.push(text);
    out.token_logprobs.push(lp.logprob);
    const top: Record<string, number> = {};
    for (const t of lp.top) {
      const k = tokenView(t.token).text;
      if (!(k in top)) top[k] = t.logprob; // alternatives come best first; two ids with one text keep the better
    }
    out.top_logprobs.push(top);
    out.text_offset.push(at);
    at += text.length;
  }
  return { logprobs: out, end: at };
}

export interface ChatTokenLogprob {
  token: string;
  logprob: number;
  bytes: number[];
  top_logprobs: { token: string; logprob: number; bytes: number[] }[];
}

export function chatLogprobs(lps: readonly TokenLogprob[]): { content: ChatTokenLogprob[]; refusal: null } {
  return {
    content: lps.map((lp) => {
      const v = tokenView(lp.token);
      return {
        token: v.text,
        logprob: lp.logprob,
        bytes: v.bytes,
        top_logprobs: lp.top.map((t) => {
          const tv = tokenView(t.token);
          return { token: tv.text, logprob: t.logprob, bytes: tv.bytes };
        }),
      };
    }),
    refusal: null,
  };
}

/** The envelope every response and chunk shares. */
export interface Envelope {
  readonly id: string;
  readonly created: number;
  readonly model: string;
}

export function completionResponse(env: Envelope, choices: object[], usage: UsageJson): object {
  return { id: env.id, object: 'text_completion', created: env.created, model: env.model, choices, usage };
}

export function completionChoice(index: number, text: string, finishReason: FinishReason | null, logprobs: LegacyLogprobs | null): object {
  return { index, text, logprobs, finish_reason: finishReason };
}

export function chatResponse(env: Envelope, choices: object[], usage: UsageJson): object {
  return { id: env.id, object: 'chat.completion', created: env.created, model: env.model, choices, usage };
}

export function chatChoice(index: number, content: string, finishReason: FinishReason, logprobs: ReturnType<typeof chatLogprobs> | null): object {
  return { index, message: { role: 'assistant', content, refusal: null }, logprobs, finish_reason: finishReason };
}

/** One function call as OpenAI writes it in a message: `arguments` is JSON text. */
export function toolCallJson(id: string, name: string, args: string): object {
  return { id, type: 'function', function: { name, arguments: args } };
}

/** A reply that is tool calls: no content (unless text followed them), the calls in order, and finish reason `tool_calls` (or `length` when cut). */
export function chatToolCallChoice(index: number, calls: readonly { id: string; name: string; arguments: string }[], content: string | null, finishReason: FinishReason, logprobs: ReturnType<typeof chatLogprobs> | null): object {
  return { index, message: { role: 'assistant', content, refusal: null, tool_calls: calls.map((c) => toolCallJson(c.id, c.name, c.arguments)) }, logprobs, finish_reason: finishReason };
}

/**
 * The first delta of streamed call `callIndex`: its id, type and name, empty arguments; the
 * choice's first delta also carries the role (as OpenAI streams them).
 */
export function toolCallOpenDelta(callIndex: number, id: string, name: string, first: boolean): object {
  const call = { index: callIndex, id, type: 'function', function: { name, arguments: '' } };
  return first ? { role: 'assistant', content: null, tool_calls: [call], refusal: null } : { tool_calls: [call] };
}

/** A streamed piece of call `callIndex`'s arguments. */
export function toolCallArgumentsDelta(callIndex: number, text: string): object {
  return { tool_calls: [{ index: callIndex, function: { arguments: text } }] };
}

export function chatDeltaChoice(index: number, delta: { role?: 'assistant'; content?: string } | object, finishReason: FinishReason | null, logprobs: ReturnType<typeof chatLogprobs> | null): object {
  return { index, delta, logprobs, finish_reason: finishReason };
}

/**
 * One stream chunk. With `include_usage`, every chunk carries `usage: null` and the last one the
 * totals with no choices, as OpenAI streams them.
 */
export function streamChunk(kind: 'completion' | 'chat', env: Envelope, choices: object[], usage: UsageJson | null | undefined): object {
  const object = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  return { id: env.id, object, created: env.created, model: env.model, choices, ...(usage !== undefined ? { usage } : {}) };
}

export function modelJson(id: string, created: number): object {
  return { id, object: 'model', created, owned_by: 'grok-ts' };
}
