/**
 * Chat templates for /v1/chat/completions. Grok-1 is a base model, so a chat is a plain-text
 * transcript it continues (generate/chat-template.ts); the default is that module's template. A
 * server can use another one given as a small JSON file: no code, just the text around each
 * message, where `{content}` stands for the message text (trimmed):
 *
 *   {
 *     "system": "{content}\n\n",
 *     "user": "User: {content}\n\n",
 *     "assistant": "Assistant: {content}\n\n",
 *     "assistant_start": "Assistant:",
 *     "stop": ["\nUser:", "\nAssistant:"]
 *   }
 *
 * `assistant_start` opens the reply the model writes; `stop` ends it (up to 8 strings).
 *
 * Or a Jinja chat template, as Hugging Face models and GGUF files (`tokenizer.chat_template`) carry
 * them, rendered by @huggingface/jinja with `messages` (OpenAI's shape: tool calls with their
 * arguments as objects, tool results with `tool_call_id`), `tools` (OpenAI's), and
 * `add_generation_prompt: true`. `bos_token` is empty: the prompt text is tokenised as text, so a
 * literal `<s>` would not be the BOS token. The reply ends at EOS (and its piece as text); a tool
 * call is recognised by the `<tool_call>` tag, as Hermes-style templates write it.
 */
import { assistantText, CHAT_STOP, DEFAULT_TOOL_CONVENTION, plainChatTemplate, type ChatTemplate, type ChatTurn } from '../generate/chat-template.js';
import { Template } from '@huggingface/jinja';
import { FormatError, UsageError } from '../errors.js';
import { readRegularFile } from '../formats/tensor-file.js';
import type { LanguageModel } from '../language-model.js';

export interface ServerChatTemplate {
  readonly render: ChatTemplate;
  /** Strings that end the assistant's turn, added to the request's own `stop`. */
  readonly stop: readonly string[];
  /** What opens a tool call in the reply; default `<tool_call>` (generate/chat-template.ts). */
  readonly toolCallTag?: string;
}

export const DEFAULT_CHAT_TEMPLATE: ServerChatTemplate = { render: plainChatTemplate, stop: CHAT_STOP };

/** A template file is a few hundred bytes; anything much larger is not one. */
const MAX_TEMPLATE_FILE_BYTES = 64 * 1024;
const MAX_TEMPLATE_STOPS = 8;
const ROLE_KEYS = ['system', 'user', 'assistant'] as const;

/** Builds a template from the parsed JSON of a template file; `file` names it in errors. */
export function parseChatTemplate(json: unknown, file: string): ServerChatTemplate {
  const fail = (expected: string, found?: string): never => {
    throw new FormatError({ file, expected, ...(found !== undefined ? { found } : {}) });
  };
  if (typeof json !== 'object' || json === null || Array.isArray(json)) return fail('a JSON object with system, user, assistant and assistant_start');
  const o = json as Record<string, unknown>;
  for (const k of Object.keys(o)) {
    if (![...ROLE_KEYS, 'assistant_start', 'stop'].includes(k)) fail('only the keys system, user, assistant, assistant_start, stop', `key "${k}"`);
  }
  const parts: Record<string, string> = {};
  for (const k of [...ROLE_KEYS, 'assistant_start']) {
    const v = o[k];
    if (typeof v !== 'string') return fail(`"${k}" to be a string`, typeof v);
    if (k !== 'assistant_start' && !v.includes('{content}')) fail(`"${k}" to contain {content}`, JSON.stringify(v));
    parts[k] = v;
  }
  const stop = o.stop ?? [];
  if (!Array.isArray(stop) || stop.length > MAX_TEMPLATE_STOPS || stop.some((s) => typeof s !== 'string' || s === '')) {
    fail(`"stop" to be a list of at most ${MAX_TEMPLATE_STOPS} non-empty strings`);
  }
  // Tools, calls and results follow the default convention (generate/chat-template.ts): the tool
  // list after the system message, calls as the assistant's text, results as plain turns.
  const conv = DEFAULT_TOOL_CONVENTION;
  const render: ChatTemplate = (messages: readonly ChatTurn[], tools) => {
    const toolText = tools && tools.length > 0 ? `${conv.describeTools(tools)}\n\n` : '';
    let out = messages[0]?.role === 'system' ? '' : toolText;
    for (const [i, m] of messages.entries()) {
      if (m.role === 'tool') out += `${conv.renderResult(m)}\n\n`;
      else out += parts[m.role]!.split('{content}').join(m.role === 'assistant' ? assistantText(m) : m.content.trim());
      if (i === 0 && m.role === 'system') out += toolText;
    }
    return out + parts.assistant_start!;
  };
  return { render, stop: [...(stop as string[])] };
}

/** OpenAI-shaped messages for a Jinja template, as Hugging Face templates expect them. */
function jinjaMessages(messages: readonly ChatTurn[]): object[] {
  return messages.map((m) => {
    if (m.role === 'tool') return { role: 'tool', content: m.content, tool_call_id: m.toolCallId, ...(m.name !== undefined ? { name: m.name } : {}) };
    if (m.role === 'assistant' && m.toolCalls && m.toolCalls.length > 0) {
      return {
        role: 'assistant',
        content: m.content,
        tool_calls: m.toolCalls.map((c) => {
          let args: unknown = c.arguments;
          try {
            args = JSON.parse(c.arguments);
          } catch {
            // not JSON: the template gets the text
          }
          return { id: c.id, type: 'function', function: { name: c.name, arguments: args } };
        }),
      };
    }
    return { role: m.role, content: m.content };
  });
}

/** A Jinja chat template (a GGUF's `tokenizer.chat_template`, or a file); `file` names it in errors. */
export function jinjaChatTemplate(source: string, opts: { file: string; eosToken?: string }): ServerChatTemplate {
  let template: Template;
  try {
    template = new Template(source);
  } catch (err) {
    throw new FormatError({ file: opts.file, expected: 'a Jinja chat template', found: (err as Error).message, cause: err });
  }
  const eos = opts.eosToken ?? '';
  const render: ChatTemplate = (messages, tools) => {
    try {
      return template.render({
        messages: jinjaMessages(messages),
        ...(tools && tools.length > 0 ? { tools: tools.map((t) => ({ type: 'function', function: t })) } : {}),
        add_generation_prompt: true,
        bos_token: '',
        eos_token: eos,
      });
    } catch (err) {
      // raise_exception (which @huggingface/jinja provides) lands here too, with the template's words.
      throw new UsageError(`the chat template (${opts.file}) failed on these messages: ${(err as Error).message}`, 'messages');
    }
  };
  return { render, stop: eos !== '' ? [eos] : [] };
}

/** Whether text is a Jinja template rather than this module's JSON form. */
function looksLikeJinja(text: string): boolean {
  return /\{%|\{\{/.test(text);
}

export function loadChatTemplateFile(file: string): ServerChatTemplate {
  let text: string;
  try {
    // a regular file only (a FIFO would hang the start), its size checked before reading
    text = new TextDecoder().decode(readRegularFile(file, MAX_TEMPLATE_FILE_BYTES, 'a chat template file'));
  } catch (err) {
    if (err instanceof FormatError) throw err;
    throw new FormatError({ file, expected: 'a readable chat template file', found: (err as Error).message, cause: err });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (err) {
    if (looksLikeJinja(text)) return jinjaChatTemplate(text, { file });
    throw new FormatError({ file, expected: 'a JSON chat template or a Jinja one', found: (err as Error).message, cause: err });
  }
  return parseChatTemplate(json, file);
}

const modelTemplates = new WeakMap<LanguageModel, ServerChatTemplate>();

/**
 * The template for a model when the server was given none: the GGUF's `tokenizer.chat_template`
 * when it carries one that parses as Jinja, else the plain transcript (Grok-1's files carry none).
 */
export function defaultTemplateFor(lm: LanguageModel): ServerChatTemplate {
  let t = modelTemplates.get(lm);
  if (!t) {
    t = DEFAULT_CHAT_TEMPLATE;
    const meta = lm.files.ggufMetadata;
    const source = meta?.has('tokenizer.chat_template') ? meta.string('tokenizer.chat_template') : undefined;
    if (source !== undefined && source.trim() !== '') {
      try {
        t = jinjaChatTemplate(source, { file: `${meta!.file} (tokenizer.chat_template)`, eosToken: lm.tokenizer.eosId >= 0 ? lm.tokenizer.idToPiece(lm.tokenizer.eosId) : '' });
      } catch {
        // a template this Jinja cannot parse: the plain transcript, which always works
      }
    }
    modelTemplates.set(lm, t);
  }
  return t;
}
