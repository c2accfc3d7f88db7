/** Tool calls under the template's convention: the constraint's modes on the real vocabulary, and the reply parser. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { compileConstraint, vocabularyFromTokenizer } from '../src/constrain/index.js';
import { plainChatTemplate, TOOL_CALL_TAG, type ChatTurn } from '../src/generate/chat-template.js';
import { ToolCallConstraint, ToolCallParser, toolCallSchema } from '../src/generate/tool-call.js';
import { Tokenizer } from '../src/tokenizer/sentencepiece.js';

const tok = Tokenizer.fromFile();
const vocab = vocabularyFromTokenizer(tok);
const TOOLS = [
  { name: 'weather', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'], additionalProperties: false } },
  { name: 'time', description: 'the time now' },
];
const schema = toolCallSchema(TOOLS);
const compiled = compileConstraint({ kind: 'json-schema', schema }, vocab);
const allowed = (c: ToolCallConstraint): ((id: number) => boolean) => {
  const mask = new Uint32Array(Math.ceil(vocab.size / 32));
  c.fillMask(mask, 50);
  return (id) => ((mask[id >>> 5]! >>> (id & 31)) & 1) === 1;
};
const ids = new Map<string, number>();
for (let i = 0; i < tok.vocabSize; i++) if (!ids.has(tok.idToPiece(i))) ids.set(tok.idToPiece(i), i);
const id = (piece: string): number => {
  const v = ids.get(piece);
  assert.ok(v !== undefined, `no piece ${piece}`);
  return v;
};

test('required: only the tag may start the reply, then only the call\'s schema; never a token that runs past the tag', () => {
  const c = new ToolCallConstraint(vocab, compiled.matcher(), 'required', TOOL_CALL_TAG);
  let ok = allowed(c);
  assert.ok(ok(id('▁▁')) && ok(id('<')), 'whitespace and the tag\'s first piece');
  assert.ok(!ok(id('▁Hello')) && !ok(tok.eosId), 'no text, no EOS');
  for (const p of ['▁▁', '<', 'tool', '_', 'call']) c.accept(id(p));
  ok = allowed(c);
  assert.ok(ok(id('>')) && !ok(id('>{')), '">" closes the tag; ">{" would run past it');
  c.accept(id('>'));
  assert.ok(c.isCall);
  ok = allowed(c);
  assert.ok(ok(id('{"')) && !ok(id('▁Hello')) && !ok(tok.eosId), 'now the JSON object');
  const text = '{"name": "weather", "arguments": {"city": "Oslo"}}';
  for (const t of tok.encode(text)) c.accept(t);
  assert.ok(c.isComplete() && !c.canContinue());
});

test('auto: the model may write text (then nothing is constrained) or the tag (then the call is)', () => {
  const text = new ToolCallConstraint(vocab, compiled.matcher(), 'auto', TOOL_CALL_TAG);
  let ok = allowed(text);
  assert.ok(ok(id('▁Hello')) && ok(id('<')) && ok(tok.eosId));
  text.accept(id('<'));
  ok = allowed(text);
  assert.ok(ok(id('tool')) && ok(id('▁Hello')), 'still free to leave the tag for text');
  text.accept(id('▁Hello'));
  assert.ok(!text.isCall && text.isComplete() && text.canContinue());
  ok = allowed(text);
  assert.ok(ok(id('>{')) && ok(tok.eosId), 'text: everything');
  const call = new ToolCallConstraint(vocab, compiled.matcher(), 'auto', TOOL_CALL_TAG);
  for (const t of tok.encode(' <tool_call>')) call.accept(t);
  assert.ok(call.isCall && !call.isComplete());
  assert.ok(!allowed(call)(tok.eosId), 'an open call cannot end');
});

test('the call schema: one tool\'s name as a const, its parameters as the arguments; several tools as anyOf', () => {
  assert.deepEqual(toolCallSchema(TOOLS, 'time'), {
    type: 'object',
    properties: { name: { const: 'time' }, arguments: { type: 'object' } },
    required: ['name', 'arguments'],
    additionalProperties: false,
  });
  assert.equal((schema as { anyOf: unknown[] }).anyOf.length, 2);
});

test('the parser: text stays text; a call gives its name once "arguments" is read, then the arguments in pieces without the closing brace', () => {
  const p = new ToolCallParser(TOOL_CALL_TAG);
  const events = [' <tool', '_call>{"na', 'me": "weather", "argu', 'ments": {"ci', 'ty": "Oslo"', '}', '}'].flatMap((x) => p.push(x));
  events.push(...p.finish());
  assert.deepEqual(events, [
    { kind: 'call', name: 'weather' },
    { kind: 'arguments', text: '{"ci' },
    { kind: 'arguments', text: 'ty": "Oslo"' },
    { kind: 'arguments', text: '}' },
  ]);
  assert.equal(p.argumentsText, '{"city": "Oslo"}');
  const t = new ToolCallParser(TOOL_CALL_TAG);
  assert.deepEqual([...t.push(' <to'), ...t.push('p of the hill'), ...t.finish()], [{ kind: 'content', text: ' <top of the hill' }]);
  const o = new ToolCallParser(TOOL_CALL_TAG);
  o.push('<tool_call>{"arguments": {}, "name": "time"}');
  assert.deepEqual(o.finish(), [{ kind: 'call', name: 'time' }, { kind: 'arguments', text: '{}' }]);
});

test('the plain template writes tools, calls and results into the transcript (the documented convention)', () => {
  const turns: ChatTurn[] = [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Weather in Oslo?' },
    { role: 'assistant', content: '', toolCalls: [{ id: 'call_1', name: 'weather', arguments: '{"city":"Oslo"}' }] },
    { role: 'tool', content: '{"sky":"clear"}', toolCallId: 'call_1', name: 'weather' },
  ];
  assert.equal(
    plainChatTemplate(turns, TOOLS),
    'Be brief.\n\n' +
      'Tools (to call one, reply <tool_call>{"name": …, "arguments": {…}}):\n' +
      '{"name":"weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}\n' +
      '{"name":"time","description":"the time now","parameters":{"type":"object"}}\n\n' +
      'User: Weather in Oslo?\n\n' +
      'Assistant: <tool_call>{"name": "weather", "arguments": {"city":"Oslo"}}\n\n' +
      'Tool result (weather): {"sky":"clear"}\n\n' +
      'Assistant:',
  );
  // Without tools, the transcript is the plain one it always was.
  assert.equal(plainChatTemplate([{ role: 'user', content: 'Hi' }]), 'User: Hi\n\nAssistant:');
});
