/**
 * Structured output and tool calls end to end: `grok-ts serve` (the bundled demo model) as a real
 * process on loopback, driven by the official `openai` client: `chat.completions.parse` with a zod
 * schema, a tool-call round trip (call → tool result → answer), streamed tool calls, and
 * llama-server's `grammar` / `json_schema` fields on /v1/completions.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { plainChatTemplate } from '../src/generate/chat-template.js';
import { Tokenizer } from '../src/tokenizer/sentencepiece.js';
import { UnsupportedError } from '../src/errors.js';
import { loadRemoteModel } from '../src/index.js';
import { PROJECT_ROOT } from './shared.js';

const BIN = path.join(PROJECT_ROOT, 'bin', 'grok-ts.js');
let child: ChildProcess;
let client: OpenAI;
let baseURL: string;

before(async () => {
  child = spawn(process.execPath, [BIN, 'serve', '--port', '0'], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, GROK_TS_API_KEY: '' } });
  let stdout = '';
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const url = await new Promise<string>((resolve, reject) => {
    child.stdout!.on('data', (d: Buffer) => {
      stdout += d.toString();
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+)\n/.exec(stdout);
      if (m) resolve(m[1]!);
    });
    child.once('exit', (code) => reject(new Error(`serve exited early (${code}): ${stderr}`)));
  });
  baseURL = `${url}/v1`;
  client = new OpenAI({ baseURL, apiKey: 'unused', maxRetries: 0 });
  // The port is bound before the model loads: wait until it serves.
  for (let i = 0; ; i++) {
    const h = await fetch(`${url}/health`).catch(() => undefined);
    if (h?.status === 200) break;
    assert.ok(i < 600, 'the server never became ready');
    await new Promise((r) => setTimeout(r, 100));
  }
});
after(async () => {
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
});

const MODEL = 'fortune-demo';

test('chat.completions.parse with a zod schema: the reply parses into the typed object', async () => {
  const Person = z.object({ name: z.string().max(12), age: z.number().int().min(0).max(120), likes_tea: z.boolean() });
  for (const seed of [1, 2, 3]) {
    const r = await client.chat.completions.parse({
      model: MODEL,
      messages: [{ role: 'user', content: 'Who?' }],
      response_format: zodResponseFormat(Person, 'person'),
      temperature: 0.9,
      seed,
      max_completion_tokens: 60,
    });
    const msg = r.choices[0]!.message;
    assert.equal(r.choices[0]!.finish_reason, 'stop');
    assert.ok(msg.parsed, `parsed: ${msg.content}`);
    assert.deepEqual(Person.parse(msg.parsed), msg.parsed);
    assert.deepEqual(JSON.parse(msg.content!), msg.parsed);
  }
});

test('response_format json_object and json_schema (streamed too) give JSON; a bad schema is a 400', async () => {
  const o = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_object' }, temperature: 0.9, seed: 4, max_tokens: 60 });
  const v = JSON.parse(o.choices[0]!.message.content!) as unknown;
  assert.ok(typeof v === 'object' && v !== null && !Array.isArray(v));
  const schema = { type: 'object', properties: { ok: { type: 'boolean' }, n: { type: 'integer', minimum: 1, maximum: 9 } }, required: ['ok', 'n'], additionalProperties: false };
  const stream = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_schema', json_schema: { name: 'r', schema, strict: true } }, temperature: 0.9, seed: 5, max_tokens: 40, stream: true });
  let text = '';
  let finish: string | null = null;
  for await (const c of stream) {
    text += c.choices[0]?.delta.content ?? '';
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  const parsed = JSON.parse(text) as { ok: unknown; n: number };
  assert.equal(typeof parsed.ok, 'boolean');
  assert.ok(Number.isInteger(parsed.n) && parsed.n >= 1 && parsed.n <= 9);
  assert.equal(finish, 'stop');
  await assert.rejects(
    client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Hi' }], response_format: { type: 'json_schema', json_schema: { name: 'r', schema: { type: 'frobnicate' } } } }),
    (e: unknown) => e instanceof OpenAI.BadRequestError && e.code === 'invalid_constraint',
  );
});

const WEATHER: OpenAI.Chat.ChatCompletionTool = {
  type: 'function',
  function: { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string', maxLength: 8 } }, required: ['city'], additionalProperties: false } },
};

test('a tool-call round trip: the call (tool_choice required), its result fed back as a tool message, then the answer', async () => {
  const messages: OpenAI.Chat.ChatCompletionMessageParam[] = [{ role: 'user', content: 'Weather?' }];
  const first = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER], tool_choice: 'required', temperature: 0.9, seed: 7, max_tokens: 30 });
  const choice = first.choices[0]!;
  assert.equal(choice.finish_reason, 'tool_calls');
  assert.equal(choice.message.content, null);
  const call = choice.message.tool_calls![0]!;
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_[A-Za-z0-9]{24}$/);
  assert.ok(call.type === 'function');
  assert.equal(call.function.name, 'weather');
  const args = JSON.parse(call.function.arguments) as { city: unknown };
  assert.deepEqual(Object.keys(args), ['city']);
  assert.equal(typeof args.city, 'string');
  messages.push(choice.message, { role: 'tool', tool_call_id: call.id, content: '{"sky": "clear"}' });
  const second = await client.chat.completions.create({ model: MODEL, messages, tools: [WEATHER], tool_choice: 'none', temperature: 0.9, seed: 7, max_tokens: 12 });
  const answer = second.choices[0]!;
  assert.equal(answer.message.tool_calls, undefined);
  assert.equal(typeof answer.message.content, 'string');
  assert.ok(['stop', 'length'].includes(answer.finish_reason));
  // The answer's prompt is the transcript of the first turn, the call and its result (tools not
  // listed: tool_choice none), as the documented convention writes it.
  const transcript = plainChatTemplate([
    { role: 'user', content: 'Weather?' },
    { role: 'assistant', content: '', toolCalls: [{ id: call.id, name: 'weather', arguments: call.function.arguments }] },
    { role: 'tool', content: '{"sky": "clear"}', toolCallId: call.id, name: 'weather' },
  ]);
  assert.match(transcript, /Assistant: <tool_call>\{"name": "weather", "arguments": \{.*\}\}\n\nTool result \(weather\): \{"sky": "clear"\}\n\nAssistant:$/);
  assert.equal(second.usage!.prompt_tokens, Tokenizer.fromFile().encode(transcript).length);
});

test('streamed tool calls: an opening delta with id and name, then argument pieces; the client helper assembles the call', async () => {
  const named = { type: 'function' as const, function: { name: 'weather' } };
  const raw = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools: [WEATHER], tool_choice: named, temperature: 0.9, seed: 8, max_tokens: 30, stream: true });
  const deltas: OpenAI.Chat.ChatCompletionChunk.Choice.Delta[] = [];
  let finish: string | null = null;
  for await (const c of raw) {
    if (c.choices[0]) deltas.push(c.choices[0].delta);
    finish = c.choices[0]?.finish_reason ?? finish;
  }
  assert.equal(finish, 'tool_calls');
  const open = deltas[0]!;
  assert.equal(open.role, 'assistant');
  assert.equal(open.content, null);
  assert.equal(open.tool_calls![0]!.function!.name, 'weather');
  assert.equal(open.tool_calls![0]!.function!.arguments, '');
  assert.match(open.tool_calls![0]!.id!, /^call_/);
  const pieces = deltas.slice(1).flatMap((d) => d.tool_calls?.map((t) => t.function?.arguments ?? '') ?? []);
  assert.ok(pieces.length >= 2, 'arguments arrive in several pieces');
  const args = JSON.parse(pieces.join('')) as { city: unknown };
  assert.equal(typeof args.city, 'string');
  // The client's stream helper puts the same deltas back together.
  const helper = client.chat.completions.stream({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools: [WEATHER], tool_choice: named, temperature: 0.9, seed: 8, max_tokens: 30 });
  const final = await helper.finalChatCompletion();
  const call = final.choices[0]!.message.tool_calls![0]!;
  assert.ok(call.type === 'function');
  assert.equal(call.function.arguments, pieces.join(''));
  assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
});

test('tool_choice auto: the model chooses text or a call; either way the shapes are OpenAI\'s', async () => {
  const kinds = new Set<string>();
  for (const seed of [1, 2, 3, 4, 5, 6]) {
    const r: OpenAI.Chat.ChatCompletion = await client.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'Weather?' }], tools: [WEATHER], temperature: 1, seed, max_tokens: 24 });
    const c = r.choices[0]!;
    if (c.message.tool_calls) {
      assert.equal(c.finish_reason, 'tool_calls');
      const t = c.message.tool_calls[0]!;
      assert.ok(t.type === 'function');
      JSON.parse(t.function.arguments);
      kinds.add('call');
    } else {
      assert.equal(typeof c.message.content, 'string');
      assert.ok(!c.message.content!.trimStart().startsWith('<tool_call>'));
      kinds.add('text');
    }
  }
  assert.ok(kinds.size >= 1);
});

test("llama-server's grammar and json_schema fields on /v1/completions constrain the text", async () => {
  const g = await client.completions.create({ model: MODEL, prompt: 'Answer:', max_tokens: 10, temperature: 0.9, seed: 2, grammar: 'root ::= " " ("yes" | "no") "."' } as OpenAI.CompletionCreateParamsNonStreaming);
  assert.match(g.choices[0]!.text, /^ (yes|no)\.$/);
  assert.equal(g.choices[0]!.finish_reason, 'stop');
  const j = await client.completions.create({ model: MODEL, prompt: 'Answer:', max_tokens: 30, temperature: 0.9, seed: 2, json_schema: { type: 'array', items: { type: 'integer' }, maxItems: 3 } } as OpenAI.CompletionCreateParamsNonStreaming);
  const arr = JSON.parse(j.choices[0]!.text) as unknown[];
  assert.ok(Array.isArray(arr) && arr.length <= 3 && arr.every((x) => Number.isInteger(x)));
});

test('a remote model (loadRemoteModel) passes jsonSchema and grammar on as response_format and grammar; a regex is refused by name', async () => {
  const remote = await loadRemoteModel(baseURL, { model: MODEL });
  try {
    const schema = { type: 'object', properties: { n: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['n'], additionalProperties: false };
    const r = await remote.generate('Answer:', { jsonSchema: schema, temperature: 0.9, seed: 3, maxTokens: 30 });
    const v = JSON.parse(r.text) as { n: number };
    assert.ok(Number.isInteger(v.n) && v.n >= 0 && v.n <= 9, r.text);
    const g = await remote.generate('Answer:', { grammar: 'root ::= " " ("yes" | "no")', temperature: 0.9, seed: 3, maxTokens: 10 });
    assert.match(g.text, /^ (yes|no)$/);
    await assert.rejects(remote.generate('Answer:', { regex: 'a+' }), (e: unknown) => e instanceof UnsupportedError && e.what === 'regex');
  } finally {
    await remote.close();
  }
});

