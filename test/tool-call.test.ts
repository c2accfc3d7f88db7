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
  const c = new ToolCallConstraint(vocab, () => compiled.matcher(), 'required', TOOL_CALL_TAG);
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
  const text = new ToolCallConstraint(vocab, () => compiled.matcher(), 'auto', TOOL_CALL_TAG);
  let ok = allowed(text);
  assert.ok(ok(id('▁Hello')) && ok(id('<')) && ok(tok.eosId));
  text.accept(id('<'));
  ok = allowed(text);
  assert.ok(ok(id('tool')) && ok(id('▁Hello')), 'still free to leave the tag for text');
  text.accept(id('▁Hello'));
  assert.ok(!text.isCall && text.isComplete() && text.canContinue());
  ok = allowed(text);
  assert.ok(ok(id('>{')) && ok(tok.eosId), 'text: everything');
  const call = new ToolCallConstraint(vocab, () => compiled.matcher(), 'auto', TOOL_CALL_TAG);
  for (const t of tok.encode(' <tool_call>')) call.accept(t);
  assert.ok(call.isCall && !call.isComplete());
  assert.ok(!allowed(call)(tok.eosId), 'an open call cannot end');
});

test('several calls: after a call closes, EOS or the separator and tag; maxCalls 1 ends at the first call', () => {
  const callText = '{"name": "time", "arguments": {}}';
  const one = new ToolCallConstraint(vocab, () => compiled.matcher(), 'required', TOOL_CALL_TAG, 1);
  for (const t of tok.encode(TOOL_CALL_TAG + callText)) one.accept(t);
  assert.ok(one.isComplete() && !one.canContinue(), 'parallel_tool_calls false: nothing may follow the first call');

  const many = new ToolCallConstraint(vocab, () => compiled.matcher(), 'required', TOOL_CALL_TAG, 3);
  for (const t of tok.encode(TOOL_CALL_TAG + callText)) many.accept(t);
  assert.ok(many.isComplete() && many.canContinue(), 'another call may follow');
  let ok = allowed(many);
  const newline = tok.encode('\n').at(-1)!;
  assert.ok(ok(tok.eosId) && ok(newline), 'the end, or the separator');
  assert.ok(!ok(id('▁Hello')) && !ok(id('<')) && !ok(id('{"')), 'nothing else');
  many.accept(newline);
  ok = allowed(many);
  assert.ok(ok(id('<')) && !ok(tok.eosId) && !ok(newline), 'once the separator is written, the tag must follow');
  assert.throws(() => many.accept(id('▁Hello')), /cannot follow a tool call/);
  for (const p of ['<', 'tool', '_', 'call', '>']) many.accept(id(p));
  assert.ok(many.isCall && !many.isComplete(), 'the second call is open');
  for (const t of tok.encode(callText)) many.accept(t);
  assert.ok(many.isComplete() && many.canContinue());
  // (encode() would add SentencePiece's dummy-prefix space: the separator and tag piece by piece.)
  for (const t of [newline, ...['<', 'tool', '_', 'call', '>'].map(id), ...tok.encode(callText)]) many.accept(t);
  assert.ok(many.isComplete() && !many.canContinue(), 'the third call is the last of maxCalls 3');

  // A further call starts only while the tokens left can finish one (each byte a token at worst).
  const tight = new ToolCallConstraint(vocab, () => compiled.matcher(), 'required', TOOL_CALL_TAG, 3);
  for (const t of tok.encode(TOOL_CALL_TAG + callText)) tight.accept(t);
  const need = ('\n' + TOOL_CALL_TAG).length + compiled.matcher().minTokensToComplete();
  const mask = new Uint32Array(Math.ceil(vocab.size / 32));
  tight.fillMask(mask, need - 1);
  assert.deepEqual([...mask.keys()].filter((w) => mask[w] !== 0), [tok.eosId >>> 5], 'only EOS');
  tight.fillMask(mask, need);
  assert.ok((mask[newline >>> 5]! >>> (newline & 31)) & 1, 'the separator once a call fits');
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
    { kind: 'call', index: 0, name: 'weather' },
    { kind: 'arguments', index: 0, text: '{"ci' },
    { kind: 'arguments', index: 0, text: 'ty": "Oslo"' },
    { kind: 'arguments', index: 0, text: '}' },
  ]);
  assert.deepEqual(p.calls, [{ name: 'weather', arguments: '{"city": "Oslo"}' }]);
  assert.ok(p.complete);
  const t = new ToolCallParser(TOOL_CALL_TAG);
  assert.deepEqual([...t.push(' <to'), ...t.push('p of the hill'), ...t.finish()], [{ kind: 'content', text: ' <top of the hill' }]);
  const o = new ToolCallParser(TOOL_CALL_TAG);
  assert.deepEqual([...o.push('<tool_call>{"arguments": {}, "name": "time"}'), ...o.finish()], [{ kind: 'call', index: 0, name: 'time' }, { kind: 'arguments', index: 0, text: '{}' }]);
});

test('the parser: several calls in one reply, each with its index; braces and tags inside strings are not structure', () => {
  const reply =
    ' <tool_call>{"name": "weather", "arguments": {"city": "Oslo {x}"}}\n' +
    '<tool_call>{"name": "time", "arguments": {}}\n' +
    '<tool_call>{"name": "weather", "arguments": {"city": "<tool_call>\\"}\n"}}';
  const expected = [
    { name: 'weather', arguments: '{"city": "Oslo {x}"}' },
    { name: 'time', arguments: '{}' },
    { name: 'weather', arguments: '{"city": "<tool_call>\\"}\n"}' },
  ];
  // Whole, and streamed in pieces of every size from 1 to 7 characters: the same calls.
  for (const size of [reply.length, 1, 2, 3, 5, 7]) {
    const p = new ToolCallParser(TOOL_CALL_TAG);
    const events = [];
    for (let i = 0; i < reply.length; i += size) events.push(...p.push(reply.slice(i, i + size)));
    events.push(...p.finish());
    assert.deepEqual(p.calls, expected, `pieces of ${size}`);
    assert.deepEqual(events.filter((e) => e.kind === 'call'), expected.map((c, index) => ({ kind: 'call', index, name: c.name })));
    for (const [index, c] of expected.entries()) {
      const args = events.flatMap((e) => (e.kind === 'arguments' && e.index === index ? [e.text] : [])).join('');
      assert.equal(args, c.arguments, `call ${index}, pieces of ${size}`);
    }
    assert.ok(!events.some((e) => e.kind === 'content'));
    assert.ok(p.complete);
  }
});

test('the parser: Hermes-style closers and newlines around calls; a cut call is incomplete', () => {
  const p = new ToolCallParser(TOOL_CALL_TAG);
  p.push('<tool_call>\n{"name": "a", "arguments": {"x": [1, {"y": 2}]}}\n</tool_call>\n<tool_call>\n{"name": "b", "arguments": {}}\n</tool_call>');
  p.finish();
  assert.deepEqual(p.calls, [{ name: 'a', arguments: '{"x": [1, {"y": 2}]}' }, { name: 'b', arguments: '{}' }]);
  assert.ok(p.complete);
  const cut = new ToolCallParser(TOOL_CALL_TAG);
  cut.push('<tool_call>{"name": "a", "arguments": {}}\n<tool_call>{"name": "b", "arguments": {"x": "ab');
  cut.finish();
  assert.deepEqual(cut.calls, [{ name: 'a', arguments: '{}' }, { name: 'b', arguments: '{"x": "ab' }]);
  assert.ok(!cut.complete);
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
