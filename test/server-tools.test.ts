/**
 * Structured output and tool calls end to end: `grok-ts serve` (the bundled demo model) as a real
 * process on loopback, driven by the official `openai` client: `chat.completions.parse` with a zod
 * schema, a tool-call round trip (call → tool result → answer), streamed tool calls, and
 * llama-server's `grammar` / `json_schema` fields on /v1/completions.
 */
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';
import { after, before, describe, test } from 'node:test';
import OpenAI from 'openai';
import { zodResponseFormat } from 'openai/helpers/zod';
import { z } from 'zod';
import { vocabularyFromTokenizer } from '../src/constrain/index.js';
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


/** A call as short as one can be (the demo model's context is 128 tokens): arguments `{}`. */
const TIME: OpenAI.Chat.ChatCompletionTool = { type: 'function', function: { name: 'time', parameters: { type: 'object' } } };

describe('parallel tool calls: several calls in one reply', () => {
  // The demo model's context is 128 tokens and it likes whitespace, so logit_bias steers it:
  //  - EOS away: after a call it cannot end the reply, so it writes another for as long as the
  //    tokens left leave room for one (the constraint's budget, each byte a token at worst:
  //    "\n<tool_call>" and the shortest call, 12 + 30 = 42), then it must end;
  //  - whitespace away, a lone newline less so: it is written only where nothing else may be, the
  //    separator between calls;
  //  - the tag's pieces first: "<", "tool", "_", "call", ">".
  // A call then takes at most 5 + 33 tokens, and max_tokens, all the context leaves after the
  // prompt (84), leaves room for a second (84 - 38 ≥ 42) but not a third.
  const tok = Tokenizer.fromFile();
  const bias: Record<number, number> = { [tok.eosId]: -100 };
  const tagPieces = new Set(['<', 'tool', '_', 'call', '>']);
  const dec = new TextDecoder();
  vocabularyFromTokenizer(tok).tokenBytes.forEach((b, id) => {
    if (b === null || b.length === 0) return;
    const text = dec.decode(b);
    if (text === '\n') bias[id] = -50;
    else if (/^\s+$/.test(text)) bias[id] = -100;
    else if (tagPieces.has(text)) bias[id] = 100;
  });
  const prompt = plainChatTemplate([{ role: 'user', content: 'Time?' }], [{ name: 'time', parameters: { type: 'object' } }]);
  const maxTokens = 128 - tok.encode(prompt).length;
  const request = { model: MODEL, messages: [{ role: 'user' as const, content: 'Time?' }], tools: [TIME], tool_choice: 'required' as const, temperature: 0.9, seed: 11, max_tokens: maxTokens, logit_bias: bias };
  const callsOf = (m: OpenAI.Chat.ChatCompletionMessage) => (m.tool_calls ?? []).map((t) => (assert.ok(t.type === 'function'), { name: t.function.name, arguments: t.function.arguments }));

  test('non-streamed: message.tool_calls holds every call, with distinct ids; parallel_tool_calls false gives one', async () => {
    const r = await client.chat.completions.create(request);
    const c = r.choices[0]!;
    assert.equal(c.finish_reason, 'tool_calls');
    assert.equal(c.message.content, null);
    const calls = c.message.tool_calls!;
    assert.ok(calls.length >= 2, `${calls.length} calls`);
    assert.equal(new Set(calls.map((t) => t.id)).size, calls.length, 'distinct ids');
    for (const t of calls) {
      assert.match(t.id, /^call_[A-Za-z0-9]{24}$/);
      assert.ok(t.type === 'function' && t.function.name === 'time');
      assert.deepEqual(JSON.parse(t.function.arguments), {});
    }
    // The calls fed back: the transcript writes them one per line, as the model wrote them.
    const transcript = plainChatTemplate([
      { role: 'user', content: 'Time?' },
      { role: 'assistant', content: '', toolCalls: calls.map((t) => (assert.ok(t.type === 'function'), { id: t.id, name: t.function.name, arguments: t.function.arguments })) },
    ]);
    assert.equal(transcript.match(/^(Assistant: )?<tool_call>\{"name": "time", "arguments": \{\}\}$/gm)?.length, calls.length);

    const single = await client.chat.completions.create({ ...request, parallel_tool_calls: false });
    assert.equal(single.choices[0]!.finish_reason, 'tool_calls');
    assert.equal(single.choices[0]!.message.tool_calls!.length, 1);
    assert.deepEqual(callsOf(single.choices[0]!.message), callsOf(c.message).slice(0, 1), 'the same first call, then the reply ends');
  });

  test('streamed: delta.tool_calls entries with each call\'s index; the client helper assembles the same calls', async () => {
    const whole = callsOf((await client.chat.completions.create(request)).choices[0]!.message);
    const raw = await client.chat.completions.create({ ...request, stream: true });
    const opened: { index: number; id: string; name: string; withRole: boolean }[] = [];
    const args = new Map<number, string>();
    let finish: string | null = null;
    for await (const chunk of raw) {
      const ch = chunk.choices[0];
      if (!ch) continue;
      finish = ch.finish_reason ?? finish;
      assert.ok(!ch.delta.content, 'no text');
      for (const t of ch.delta.tool_calls ?? []) {
        if (t.id !== undefined) {
          assert.equal(t.type, 'function');
          assert.equal(t.function!.arguments, '');
          opened.push({ index: t.index, id: t.id, name: t.function!.name!, withRole: ch.delta.role === 'assistant' });
        } else {
          assert.ok(opened.some((o) => o.index === t.index), `arguments for call ${t.index} after it opened`);
          args.set(t.index, (args.get(t.index) ?? '') + t.function!.arguments!);
        }
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.ok(opened.length >= 2, `${opened.length} calls`);
    assert.deepEqual(opened.map((o) => o.index), opened.map((_, i) => i), 'indices 0, 1, … in order, each opened once');
    assert.deepEqual(opened.map((o) => o.withRole), opened.map((_, i) => i === 0), 'the role comes with the first delta only');
    assert.equal(new Set(opened.map((o) => o.id)).size, opened.length, 'distinct ids');
    const streamed = opened.map((o) => ({ name: o.name, arguments: args.get(o.index) ?? '' }));
    assert.deepEqual(streamed, whole, 'the same calls as the non-streamed reply (same seed)');
    const helper = client.chat.completions.stream(request);
    const final = await helper.finalChatCompletion();
    assert.deepEqual(callsOf(final.choices[0]!.message), whole);
    assert.equal(final.choices[0]!.finish_reason, 'tool_calls');
  });
});
