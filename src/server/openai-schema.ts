/**
 * Request validation for the OpenAI endpoints: a parsed JSON body in, typed parameters out, one
 * function per endpoint. Every field is checked for type and range and named in the error (`param`,
 * OpenAI's snake_case names); a field this server does not know is refused rather than silently
 * ignored, and a known OpenAI feature it does not implement (audio, echo, best_of, ...) is refused
 * by name. `null` means "not given", as in the OpenAI API.
 *
 * Beyond OpenAI's fields, the sampling extensions other OpenAI-compatible servers (vLLM) accept:
 * `top_k`, `min_p`, `repetition_penalty`, `ignore_eos`.
 */
import { UsageError } from '../errors.js';
import type { ChatTurn, ToolCall, ToolSpec } from '../generate/chat-template.js';
import type { SamplingOptions } from '../generate/sampler.js';
import type { GenerateOptions } from '../generate/sequence.js';
import { RequestError } from './errors.js';

/** Limits that depend on the server's configuration. */
export interface SchemaLimits {
  /** Most choices (`n`) per prompt. */
  readonly maxN: number;
}

/** OpenAI's limit on stop sequences. */
export const MAX_STOP = 4;
/** The generator reports at most this many alternatives per token. */
export const MAX_TOP_LOGPROBS = 20;

/** What both endpoints share. */
export interface CommonParams {
  readonly model: string;
  readonly n: number;
  readonly stream: boolean;
  /** `stream_options.include_usage`: a last chunk with usage and no choices. */
  readonly includeUsage: boolean;
  /** undefined: the endpoint's default. */
  readonly maxTokens: number | undefined;
  readonly stop: string[];
  readonly sampling: SamplingOptions;
  readonly ignoreEos: boolean;
  readonly user: string | undefined;
  /** `response_format` (json_object, json_schema) or llama-server's `grammar` / `json_schema`: at most one is set. */
  readonly constraint: ConstraintParams;
}

/** The constraint options a request sets (GenerateOptions' names). */
export type ConstraintParams = Pick<GenerateOptions, 'jsonSchema' | 'jsonObject' | 'grammar'>;

/** `tool_choice`: none, auto (text or a call, the model decides), required (some call), or a named function. */
export type ToolChoice = 'none' | 'auto' | 'required' | { readonly name: string };

export interface CompletionParams extends CommonParams {
  /** Text or token ids; a request may hold several prompts (choices are prompt-major, then n). */
  readonly prompts: (string | number[])[];
  /** Legacy `logprobs`: report the chosen token and this many alternatives. */
  readonly logprobs: number | undefined;
}

export interface ChatParams extends CommonParams {
  readonly messages: ChatTurn[];
  /** The functions the model may call (empty: none). */
  readonly tools: ToolSpec[];
  readonly toolChoice: ToolChoice;
  /** `parallel_tool_calls` (default true, as OpenAI's): several calls in one reply; false stops after the first. */
  readonly parallelToolCalls: boolean;
  /** `logprobs: true`, with `top_logprobs` alternatives. */
  readonly logprobs: boolean;
  readonly topLogprobs: number;
}

function typeName(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'array';
  return typeof v;
}

export function mistyped(param: string, expected: string, v: unknown): RequestError {
  return new RequestError(400, `${param} must be ${expected}, got ${typeName(v)}`, 'invalid_request_error', 'invalid_type', param);
}

export function unsupported(param: string, what: string): RequestError {
  return new RequestError(400, `${param}: ${what} is not supported by this server`, 'invalid_request_error', 'unsupported_parameter', param);
}

export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Typed reads of one JSON object's fields; refuses any field not listed. */
export class Fields {
  constructor(
    private readonly obj: Record<string, unknown>,
    allowed: readonly string[],
    /** Prefix for `param` in errors (`messages[2].`). */
    private readonly at = '',
  ) {
    for (const key of Object.keys(obj)) {
      if (!allowed.includes(key)) {
        throw new RequestError(400, `Unrecognized request argument supplied: ${at}${key}`, 'invalid_request_error', 'unknown_parameter', at + key);
      }
    }
  }

  param(name: string): string {
    return this.at + name;
  }

  raw(name: string): unknown {
    const v = Object.hasOwn(this.obj, name) ? this.obj[name] : undefined;
    return v === null ? undefined : v;
  }

  number(name: string, range: { min?: number; max?: number; integer?: boolean } = {}): number | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    const p = this.param(name);
    if (typeof v !== 'number' || !Number.isFinite(v)) throw mistyped(p, range.integer ? 'an integer' : 'a number', v);
    if (range.integer && !Number.isSafeInteger(v)) throw new UsageError(`${p} must be an integer, got ${v}`, p);
    if ((range.min !== undefined && v < range.min) || (range.max !== undefined && v > range.max)) {
      throw new UsageError(`${p} must be in [${range.min ?? '-inf'}, ${range.max ?? 'inf'}], got ${v}`, p);
    }
    return v;
  }

  boolean(name: string): boolean | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'boolean') throw mistyped(this.param(name), 'a boolean', v);
    return v;
  }

  string(name: string): string | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (typeof v !== 'string') throw mistyped(this.param(name), 'a string', v);
    return v;
  }

  object(name: string): Record<string, unknown> | undefined {
    const v = this.raw(name);
    if (v === undefined) return undefined;
    if (!isObject(v)) throw mistyped(this.param(name), 'an object', v);
    return v;
  }
}

const SAMPLING_FIELDS = ['temperature', 'top_p', 'top_k', 'min_p', 'presence_penalty', 'frequency_penalty', 'repetition_penalty', 'logit_bias', 'seed'] as const;
/** Constrained output: OpenAI's `response_format`, and llama-server's `grammar` (GBNF) and `json_schema`. */
const CONSTRAINT_FIELDS = ['response_format', 'grammar', 'json_schema'] as const;
const COMMON_FIELDS = ['model', 'n', 'stream', 'stream_options', 'max_tokens', 'stop', 'user', 'ignore_eos', ...SAMPLING_FIELDS, ...CONSTRAINT_FIELDS] as const;

/** Known OpenAI chat features this server does not implement: refused by name, not as unknown. */
const CHAT_UNSUPPORTED = ['functions', 'function_call', 'audio', 'modalities', 'prediction', 'web_search_options'];

export function requireObject(body: unknown): Record<string, unknown> {
  if (!isObject(body)) throw new RequestError(400, `the request body must be a JSON object, got ${typeName(body)}`, 'invalid_request_error', 'invalid_type');
  return body;
}

function parseStop(f: Fields): string[] {
  const v = f.raw('stop');
  if (v === undefined) return [];
  const list = typeof v === 'string' ? [v] : v;
  if (!Array.isArray(list) || list.some((s) => typeof s !== 'string')) throw mistyped('stop', 'a string or an array of strings', v);
  if (list.length > MAX_STOP) throw new UsageError(`stop may hold at most ${MAX_STOP} sequences, got ${list.length}`, 'stop');
  if (list.some((s) => s === '')) throw new UsageError('stop sequences must not be empty', 'stop');
  return list as string[];
}

function parseSampling(f: Fields): SamplingOptions {
  const logitBias = f.object('logit_bias');
  if (logitBias) for (const [k, v] of Object.entries(logitBias)) if (typeof v !== 'number') throw mistyped(`logit_bias.${k}`, 'a number', v);
  const topK = f.number('top_k', { integer: true, min: -1 });
  const o: Record<string, unknown> = {
    // OpenAI's temperature range; the sampler itself would allow more.
    temperature: f.number('temperature', { min: 0, max: 2 }),
    topP: f.number('top_p'),
    // -1 is vLLM's "off", 0 the sampler's.
    topK: topK === -1 ? 0 : topK,
    minP: f.number('min_p'),
    presencePenalty: f.number('presence_penalty'),
    frequencyPenalty: f.number('frequency_penalty'),
    repetitionPenalty: f.number('repetition_penalty'),
    logitBias,
    seed: f.number('seed', { integer: true }),
  };
  for (const k of Object.keys(o)) if (o[k] === undefined) delete o[k];
  return o as SamplingOptions; // ranges are checked by the sampler's validator, which names the same params
}

/** OpenAI's rule for names of response formats and functions. */
const NAME = /^[a-zA-Z0-9_-]{1,64}$/;

function schemaValue(v: unknown, param: string): object | boolean {
  if (typeof v === 'boolean' || isObject(v)) return v;
  throw mistyped(param, 'a JSON Schema (an object or a boolean)', v);
}

/**
 * `response_format`: `{"type": "text"}`, `{"type": "json_object"}` (llama-server also takes a
 * `schema` there), or `{"type": "json_schema", "json_schema": {"name", "description", "schema",
 * "strict"}}`: the output is constrained to the schema whether or not `strict` is set (with no
 * schema, to any JSON object). llama-server's `json_schema` (a schema) and `grammar` (GBNF text)
 * fields constrain the same way. At most one of them per request.
 */
export function parseConstraint(f: Fields): ConstraintParams {
  const found: { param: string; c: ConstraintParams }[] = [];
  const format = f.object('response_format');
  if (format) {
    const ff = new Fields(format, ['type', 'json_schema', 'schema'], 'response_format.');
    const type = ff.string('type');
    if (type === 'json_object') {
      const schema = ff.raw('schema');
      found.push({ param: 'response_format', c: schema === undefined ? { jsonObject: true } : { jsonSchema: schemaValue(schema, 'response_format.schema') } });
    } else if (type === 'json_schema') {
      const js = ff.object('json_schema');
      if (!js) throw new UsageError('response_format.json_schema is required when type is "json_schema"', 'response_format.json_schema');
      const jf = new Fields(js, ['name', 'description', 'schema', 'strict'], 'response_format.json_schema.');
      const name = jf.string('name');
      if (name === undefined) throw new UsageError('response_format.json_schema.name is required', 'response_format.json_schema.name');
      if (!NAME.test(name)) throw new UsageError('response_format.json_schema.name must be 1-64 letters, digits, _ or -', 'response_format.json_schema.name');
      jf.string('description');
      jf.boolean('strict');
      const schema = jf.raw('schema');
      found.push({ param: 'response_format', c: schema === undefined ? { jsonObject: true } : { jsonSchema: schemaValue(schema, 'response_format.json_schema.schema') } });
    } else if (type !== 'text') {
      if (type === undefined) throw new UsageError('response_format.type is required', 'response_format.type');
      throw new UsageError(`response_format.type must be "text", "json_object" or "json_schema", got ${JSON.stringify(type)}`, 'response_format.type');
    }
  }
  const grammar = f.string('grammar');
  if (grammar !== undefined && grammar !== '') found.push({ param: 'grammar', c: { grammar } });
  const jsonSchema = f.raw('json_schema');
  if (jsonSchema !== undefined) found.push({ param: 'json_schema', c: { jsonSchema: schemaValue(jsonSchema, 'json_schema') } });
  if (found.length > 1) throw new UsageError(`give one of ${found.map((x) => x.param).join(' and ')}: they both constrain the output`, found[1]!.param);
  return found[0]?.c ?? {};
}

function parseCommon(f: Fields, limits: SchemaLimits, maxTokensField: number | undefined): CommonParams {
  const model = f.string('model');
  if (model === undefined) throw new UsageError('you must provide a model parameter', 'model');
  const stream = f.boolean('stream') ?? false;
  const streamOptions = f.object('stream_options');
  let includeUsage = false;
  if (streamOptions) {
    if (!stream) throw new UsageError("stream_options is only allowed when stream is true", 'stream_options');
    includeUsage = new Fields(streamOptions, ['include_usage'], 'stream_options.').boolean('include_usage') ?? false;
  }
  return {
    model,
    n: f.number('n', { integer: true, min: 1, max: limits.maxN }) ?? 1,
    stream,
    includeUsage,
    maxTokens: maxTokensField,
    stop: parseStop(f),
    sampling: parseSampling(f),
    ignoreEos: f.boolean('ignore_eos') ?? false,
    user: f.string('user'),
    constraint: parseConstraint(f),
  };
}

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'number');
}

function parsePrompts(v: unknown): (string | number[])[] {
  if (v === undefined) throw new UsageError('you must provide a prompt', 'prompt');
  if (typeof v === 'string') return [v];
  const expected = 'a string, an array of strings, an array of token ids, or an array of token id arrays';
  if (!Array.isArray(v) || v.length === 0) throw mistyped('prompt', `${expected} (not empty)`, v);
  let prompts: (string | number[])[];
  if (v.every((x) => typeof x === 'string')) prompts = v as string[];
  else if (isTokenArray(v)) prompts = [v];
  else if (v.every(isTokenArray)) prompts = v as number[][];
  else throw mistyped('prompt', expected, v);
  for (const p of prompts) {
    if (typeof p !== 'string' && p.some((id) => !Number.isSafeInteger(id) || id < 0)) {
      throw new UsageError('prompt token ids must be non-negative integers', 'prompt');
    }
  }
  return prompts;
}

/** POST /v1/completions */
export function parseCompletionRequest(body: unknown, limits: SchemaLimits): CompletionParams {
  const f = new Fields(requireObject(body), [...COMMON_FIELDS, 'prompt', 'logprobs', 'echo', 'suffix', 'best_of']);
  if (f.boolean('echo')) throw unsupported('echo', 'echoing the prompt');
  if (f.string('suffix')) throw unsupported('suffix', 'insertion (a suffix)');
  const maxTokens = f.number('max_tokens', { integer: true, min: 1 });
  const common = parseCommon(f, limits, maxTokens);
  const bestOf = f.number('best_of', { integer: true, min: 1 });
  if (bestOf !== undefined && bestOf !== common.n) throw unsupported('best_of', 'best_of other than n');
  return {
    ...common,
    prompts: parsePrompts(f.raw('prompt')),
    logprobs: f.number('logprobs', { integer: true, min: 0, max: MAX_TOP_LOGPROBS }),
  };
}

function parseContent(v: unknown, at: string): string {
  if (typeof v === 'string') return v;
  if (!Array.isArray(v)) throw mistyped(at, 'a string or an array of text parts', v);
  return v
    .map((part, j) => {
      const pat = `${at}[${j}]`;
      if (!isObject(part)) throw mistyped(pat, 'a content part object', part);
      const pf = new Fields(part, ['type', 'text'], `${pat}.`);
      const type = pf.string('type');
      if (type !== 'text') throw unsupported(`${pat}.type`, `content of type ${JSON.stringify(type)} (only "text")`);
      const text = pf.string('text');
      if (text === undefined) throw new UsageError(`${pat}.text is required`, `${pat}.text`);
      return text;
    })
    .join('');
}

function parseToolCalls(v: unknown, at: string): ToolCall[] {
  if (!Array.isArray(v)) throw mistyped(at, 'an array of tool calls', v);
  return v.map((c, j) => {
    const cat = `${at}[${j}]`;
    if (!isObject(c)) throw mistyped(cat, 'a tool call object', c);
    const cf = new Fields(c, ['id', 'type', 'function'], `${cat}.`);
    const id = cf.string('id');
    if (id === undefined) throw new UsageError(`${cat}.id is required`, `${cat}.id`);
    const type = cf.string('type') ?? 'function';
    if (type !== 'function') throw unsupported(`${cat}.type`, `tool calls of type ${JSON.stringify(type)} (only "function")`);
    const fn = cf.object('function');
    if (!fn) throw new UsageError(`${cat}.function is required`, `${cat}.function`);
    const ff = new Fields(fn, ['name', 'arguments'], `${cat}.function.`);
    const name = ff.string('name');
    if (name === undefined) throw new UsageError(`${cat}.function.name is required`, `${cat}.function.name`);
    return { id, name, arguments: ff.string('arguments') ?? '{}' };
  });
}

function parseMessages(v: unknown): ChatTurn[] {
  if (v === undefined) throw new UsageError('you must provide messages', 'messages');
  if (!Array.isArray(v)) throw mistyped('messages', 'an array', v);
  if (v.length === 0) throw new UsageError('messages must hold at least one message', 'messages');
  /** Tool names by call id, from the assistant turns so far: a tool result is written with its tool's name. */
  const callNames = new Map<string, string>();
  return v.map((m, i): ChatTurn => {
    const at = `messages[${i}]`;
    if (!isObject(m)) throw mistyped(at, 'a message object', m);
    const role = m.role;
    let mapped: ChatTurn['role'];
    if (role === 'system' || role === 'developer') mapped = 'system';
    else if (role === 'user' || role === 'assistant' || role === 'tool') mapped = role;
    else if (role === undefined || role === null) throw new UsageError(`${at}.role is required`, `${at}.role`);
    else if (role === 'function') throw unsupported(`${at}.role`, 'the function role (use tool)');
    else throw new UsageError(`${at}.role must be system, developer, user, assistant or tool, got ${JSON.stringify(role)}`, `${at}.role`);
    const f = new Fields(m, ['role', 'content', 'name', 'refusal', 'annotations', 'tool_calls', 'tool_call_id', 'audio', 'function_call'], `${at}.`);
    if (f.raw('audio') !== undefined) throw unsupported(`${at}.audio`, 'audio');
    if (f.raw('function_call') !== undefined) throw unsupported(`${at}.function_call`, 'function_call (use tool_calls)');
    f.string('name');
    f.string('refusal');
    const content = f.raw('content');
    const text = content === undefined ? '' : parseContent(content, `${at}.content`);
    if (mapped === 'tool') {
      const id = f.string('tool_call_id');
      if (id === undefined) throw new UsageError(`${at}.tool_call_id is required for a tool message`, `${at}.tool_call_id`);
      if (content === undefined) throw new UsageError(`${at}.content is required`, `${at}.content`);
      const name = callNames.get(id);
      return { role: 'tool', content: text, toolCallId: id, ...(name !== undefined ? { name } : {}) };
    }
    if (f.raw('tool_call_id') !== undefined) throw new UsageError(`${at}.tool_call_id belongs to tool messages only`, `${at}.tool_call_id`);
    const calls = f.raw('tool_calls');
    if (calls !== undefined && mapped !== 'assistant') throw new UsageError(`${at}.tool_calls belongs to assistant messages only`, `${at}.tool_calls`);
    if (content === undefined && mapped !== 'assistant') throw new UsageError(`${at}.content is required`, `${at}.content`);
    if (calls !== undefined) {
      const toolCalls = parseToolCalls(calls, `${at}.tool_calls`);
      for (const c of toolCalls) callNames.set(c.id, c.name);
      return { role: 'assistant', content: text, toolCalls };
    }
    return { role: mapped, content: text };
  });
}

function parseTools(f: Fields): ToolSpec[] {
  const v = f.raw('tools');
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw mistyped('tools', 'an array of tools', v);
  const names = new Set<string>();
  return v.map((t, i) => {
    const at = `tools[${i}]`;
    if (!isObject(t)) throw mistyped(at, 'a tool object', t);
    const tf = new Fields(t, ['type', 'function'], `${at}.`);
    const type = tf.string('type');
    if (type !== 'function') throw unsupported(`${at}.type`, `tools of type ${JSON.stringify(type)} (only "function")`);
    const fn = tf.object('function');
    if (!fn) throw new UsageError(`${at}.function is required`, `${at}.function`);
    const ff = new Fields(fn, ['name', 'description', 'parameters', 'strict'], `${at}.function.`);
    const name = ff.string('name');
    if (name === undefined) throw new UsageError(`${at}.function.name is required`, `${at}.function.name`);
    if (!NAME.test(name)) throw new UsageError(`${at}.function.name must be 1-64 letters, digits, _ or -`, `${at}.function.name`);
    if (names.has(name)) throw new UsageError(`${at}.function.name ${JSON.stringify(name)} is given twice`, `${at}.function.name`);
    names.add(name);
    ff.boolean('strict');
    const description = ff.string('description');
    const parameters = ff.object('parameters');
    return { name, ...(description !== undefined ? { description } : {}), ...(parameters !== undefined ? { parameters } : {}) };
  });
}

function parseToolChoice(f: Fields, tools: readonly ToolSpec[]): ToolChoice {
  const v = f.raw('tool_choice');
  if (v === undefined) return tools.length > 0 ? 'auto' : 'none';
  let choice: ToolChoice;
  if (v === 'none' || v === 'auto' || v === 'required') choice = v;
  else if (isObject(v)) {
    const cf = new Fields(v, ['type', 'function'], 'tool_choice.');
    if (cf.string('type') !== 'function') throw new UsageError('tool_choice.type must be "function"', 'tool_choice.type');
    const fn = cf.object('function');
    const name = fn ? new Fields(fn, ['name'], 'tool_choice.function.').string('name') : undefined;
    if (name === undefined) throw new UsageError('tool_choice.function.name is required', 'tool_choice.function.name');
    if (!tools.some((t) => t.name === name)) throw new UsageError(`tool_choice names ${JSON.stringify(name)}, which is not among tools`, 'tool_choice');
    choice = { name };
  } else throw mistyped('tool_choice', '"none", "auto", "required" or {"type": "function", "function": {"name": …}}', v);
  if (choice !== 'none' && tools.length === 0) throw new UsageError('tool_choice needs tools', 'tool_choice');
  return choice;
}

/** POST /v1/chat/completions */
export function parseChatRequest(body: unknown, limits: SchemaLimits): ChatParams {
  const f = new Fields(requireObject(body), [
    ...COMMON_FIELDS,
    'messages',
    'max_completion_tokens',
    'logprobs',
    'top_logprobs',
    'tools',
    'tool_choice',
    'parallel_tool_calls',
    ...CHAT_UNSUPPORTED,
  ]);
  for (const name of CHAT_UNSUPPORTED) if (f.raw(name) !== undefined) throw unsupported(name, name.replace(/_/g, ' '));
  const parallelToolCalls = f.boolean('parallel_tool_calls') ?? true;
  const tools = parseTools(f);
  const toolChoice = parseToolChoice(f, tools);
  const maxTokens = f.number('max_tokens', { integer: true, min: 1 });
  const maxCompletion = f.number('max_completion_tokens', { integer: true, min: 1 });
  if (maxTokens !== undefined && maxCompletion !== undefined && maxTokens !== maxCompletion) {
    throw new UsageError('max_tokens and max_completion_tokens disagree; give one of them', 'max_completion_tokens');
  }
  const logprobs = f.boolean('logprobs') ?? false;
  const topLogprobs = f.number('top_logprobs', { integer: true, min: 0, max: MAX_TOP_LOGPROBS });
  if (topLogprobs !== undefined && !logprobs) throw new UsageError('top_logprobs needs logprobs set to true', 'top_logprobs');
  const common = parseCommon(f, limits, maxCompletion ?? maxTokens);
  if (toolChoice !== 'none' && (common.constraint.jsonSchema !== undefined || common.constraint.jsonObject || common.constraint.grammar !== undefined)) {
    throw new UsageError('tools with a tool_choice other than "none" cannot be combined with response_format, grammar or json_schema', 'tool_choice');
  }
  return {
    ...common,
    tools,
    toolChoice,
    parallelToolCalls,
    messages: parseMessages(f.raw('messages')),
    logprobs,
    topLogprobs: topLogprobs ?? 0,
  };
}
