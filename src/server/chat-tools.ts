/**
 * A chat request → what its sequences need: the prompt text (tools listed by the template when the
 * model may call one), the stop strings, and for tool calls a fresh constraint per choice (the
 * call's tag, then the tool's parameter schema, for as many calls as parallel_tool_calls allows;
 * generate/tool-call.ts).
 */
import { vocabularyFromTokenizer } from '../constrain/index.js';
import { TOOL_CALL_TAG, TOOL_STOP } from '../generate/chat-template.js';
import { compileFor } from '../generate/constraint-options.js';
import type { SequenceConstraint } from '../generate/sequence.js';
import { toolCallSchema, ToolCallConstraint } from '../generate/tool-call.js';
import type { LanguageModel } from '../language-model.js';
import { DEFAULT_CHAT_TEMPLATE, defaultTemplateFor, type ServerChatTemplate } from './chat-template-file.js';
import type { ChatParams } from './openai-schema.js';

export interface ChatPlan {
  readonly prompt: string;
  /** The template's stops (none when the output is constrained: the constraint ends it). */
  readonly stop: readonly string[];
  /** A fresh constraint for each choice, when the reply may be a tool call. */
  readonly constraint: (() => SequenceConstraint) | undefined;
  /** The tag that opens a call in the reply, when the reply may be one. */
  readonly toolCallTag: string | undefined;
}

/** The template chats use: the one given, else the model's own (a GGUF's Jinja template) if it has one, else the plain transcript. */
export function effectiveTemplate(lm: LanguageModel, given: ServerChatTemplate): ServerChatTemplate {
  return given === DEFAULT_CHAT_TEMPLATE ? defaultTemplateFor(lm) : given;
}

export function planChat(lm: LanguageModel, given: ServerChatTemplate, p: ChatParams): ChatPlan {
  const template = effectiveTemplate(lm, given);
  const calling = p.toolChoice !== 'none' && p.tools.length > 0;
  const prompt = template.render(p.messages, calling ? p.tools : undefined);
  const constrained = p.constraint.jsonSchema !== undefined || p.constraint.jsonObject === true || p.constraint.grammar !== undefined;
  const usesTools = calling || p.messages.some((m) => m.role === 'tool');
  const stop = constrained ? [] : [...template.stop, ...(usesTools && !template.stop.includes(TOOL_STOP) ? [TOOL_STOP] : [])];
  if (!calling) return { prompt, stop, constraint: undefined, toolCallTag: undefined };
  const tag = template.toolCallTag ?? TOOL_CALL_TAG;
  const named = typeof p.toolChoice === 'object' ? p.toolChoice.name : undefined;
  // Compiled once per request (and cached by spec across requests); each choice gets its own matcher.
  const compiled = compileFor({ kind: 'json-schema', schema: toolCallSchema(p.tools, named) }, lm.tokenizer);
  const vocab = vocabularyFromTokenizer(lm.tokenizer);
  const mode = p.toolChoice === 'auto' ? 'auto' : 'required';
  const maxCalls = p.parallelToolCalls ? Infinity : 1;
  return { prompt, stop, constraint: () => new ToolCallConstraint(vocab, () => compiled.matcher(), mode, tag, maxCalls), toolCallTag: tag };
}
