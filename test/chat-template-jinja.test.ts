/** Jinja chat templates (@huggingface/jinja): from a file for the server, tools and tool turns in OpenAI's shape, errors named. */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import OpenAI from 'openai';
import { FormatError, UsageError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { DEFAULT_CHAT_TEMPLATE, defaultTemplateFor, jinjaChatTemplate, loadChatTemplateFile } from '../src/server/chat-template-file.js';
import { createServer, type GrokServer } from '../src/server/index.js';
import { PROJECT_ROOT } from './shared.js';

const FILE = path.join(PROJECT_ROOT, 'test', 'data', 'chat-templates', 'chatml-tools.jinja');
let demo: LanguageModel;
let server: GrokServer;
let client: OpenAI;

before(async () => {
  demo = await loadModel();
  server = createServer(demo, { chatTemplate: loadChatTemplateFile(FILE) });
  client = new OpenAI({ baseURL: `${(await server.listen(0)).url}/v1`, apiKey: 'x', maxRetries: 0 });
});
after(async () => {
  await server.close(100);
  await demo.close();
});

test('a .jinja file is read as a Jinja template: messages, tools and tool turns rendered as the template says', () => {
  const t = loadChatTemplateFile(FILE);
  const text = t.render(
    [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Weather?' },
      { role: 'assistant', content: '', toolCalls: [{ id: 'call_1', name: 'weather', arguments: '{"city":"Oslo"}' }] },
      { role: 'tool', content: 'clear', toolCallId: 'call_1', name: 'weather' },
    ],
    [{ name: 'weather', parameters: { type: 'object' } }],
  );
  assert.equal(
    text,
    '<|im_start|>system\nBe brief.\n\nTools:\n{"name": "weather", "parameters": {"type": "object"}}\nCall one as <tool_call>{"name": ..., "arguments": ...}<|im_end|>\n' +
      '<|im_start|>user\nWeather?<|im_end|>\n' +
      '<|im_start|>assistant\n<tool_call>{"name": "weather", "arguments": {"city": "Oslo"}}<|im_end|>\n' +
      '<|im_start|>user\n<tool_response>clear</tool_response><|im_end|>\n' +
      '<|im_start|>assistant\n',
  );
  assert.deepEqual(t.stop, []);
});

test('errors: a template that does not parse is a FormatError naming the file; raise_exception is a 400-style UsageError', () => {
  assert.throws(() => jinjaChatTemplate('{% for %}', { file: 'bad.jinja' }), (e: unknown) => e instanceof FormatError && /bad\.jinja/.test(e.message));
  const strict = jinjaChatTemplate("{% if messages[0].role != 'user' %}{{ raise_exception('first message must be from the user') }}{% endif %}ok", { file: 't.jinja', eosToken: '</s>' });
  assert.throws(() => strict.render([{ role: 'system', content: 's' }]), (e: unknown) => e instanceof UsageError && /must be from the user/.test(e.message));
  assert.equal(strict.render([{ role: 'user', content: 'u' }]), 'ok');
  assert.deepEqual(strict.stop, ['</s>']);
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'tpl-'));
  fs.writeFileSync(path.join(tmp, 'neither.txt'), 'plain words');
  assert.throws(() => loadChatTemplateFile(path.join(tmp, 'neither.txt')), (e: unknown) => e instanceof FormatError && /JSON chat template or a Jinja one/.test(e.message));
  fs.rmSync(tmp, { recursive: true });
});

test('a model without a template of its own (the demo, Grok-1 files) keeps the plain transcript', () => {
  assert.equal(defaultTemplateFor(demo), DEFAULT_CHAT_TEMPLATE);
});

test('the server renders chats with the Jinja template, tool calls included', async () => {
  const r = await client.chat.completions.create({
    model: 'fortune-demo',
    messages: [{ role: 'user', content: 'Hi' }],
    tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { x: { type: 'integer' } }, required: ['x'], additionalProperties: false } } }],
    tool_choice: 'required',
    temperature: 0.9,
    seed: 1,
    max_tokens: 30,
  });
  const call = r.choices[0]!.message.tool_calls![0]!;
  assert.ok(call.type === 'function');
  assert.equal(call.function.name, 'f');
  assert.ok(Number.isInteger((JSON.parse(call.function.arguments) as { x: number }).x));
  // The prompt is the template's: its tokens are those of the rendered text.
  const rendered = loadChatTemplateFile(FILE).render([{ role: 'user', content: 'Hi' }], [{ name: 'f', parameters: { type: 'object', properties: { x: { type: 'integer' } }, required: ['x'], additionalProperties: false } }]);
  assert.equal(r.usage!.prompt_tokens, demo.encodePrompt(rendered).length);
});
