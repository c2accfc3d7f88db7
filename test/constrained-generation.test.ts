/**
 * Constrained generation end to end on the bundled demo model: seeded sampling at temperature > 0
 * under 20 JSON Schemas, every output checked by a real validator (Ajv), also when max_tokens is
 * tight; grammars and regexes; what happens when max_tokens cuts the output.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { after, before, test } from 'node:test';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { ConstraintError } from '../src/errors.js';
import { loadModel, type LanguageModel } from '../src/language-model.js';
import { PROJECT_ROOT } from './shared.js';

// ajv-formats is CommonJS: its default export arrives as the module object's `default`.
const addFormats = ((addFormatsModule as unknown as { default?: unknown }).default ?? addFormatsModule) as unknown as (ajv: Ajv2020) => Ajv2020;

let demo: LanguageModel;
before(async () => {
  // Ten sequences per schema run together: one forward pass per step for all of them.
  demo = await loadModel(undefined, { scheduler: { maxBatch: 16, maxQueue: 64 } });
});
after(async () => {
  await demo.close();
});

const str = (maxLength: number) => ({ type: 'string', maxLength });
const obj = (properties: Record<string, unknown>, required = Object.keys(properties)) => ({ type: 'object', properties, required, additionalProperties: false });

export const SCHEMAS: [string, object][] = [
  ['object with a string and an integer range', obj({ name: str(12), age: { type: 'integer', minimum: 0, maximum: 120 } })],
  ['string enum', { type: 'string', enum: ['red', 'green', 'blue'] }],
  ['const and numbers', obj({ kind: { const: 'point' }, x: { type: 'number' }, y: { type: 'number' } })],
  ['array of bounded integers, 1-4 items', { type: 'array', items: { type: 'integer', minimum: -10, maximum: 10 }, minItems: 1, maxItems: 4 }],
  ['boolean', { type: 'boolean' }],
  ['nested object with an optional field', obj({ user: obj({ id: { type: 'integer', minimum: 1 }, email: str(16) }, ['id']) })],
  ['anyOf integer or string', { anyOf: [{ type: 'integer' }, str(8)] }],
  ['oneOf two object shapes', { oneOf: [obj({ a: { type: 'integer' } }), obj({ b: { type: 'boolean' } })] }],
  ['date format', obj({ when: { type: 'string', format: 'date' } })],
  ['uuid format', obj({ id: { type: 'string', format: 'uuid' } })],
  ['number in [0, 1]', { type: 'number', minimum: 0, maximum: 1 }],
  ['three-digit integer', { type: 'integer', minimum: 100, maximum: 999 }],
  ['array of small objects', { type: 'array', items: obj({ k: str(6), v: { type: 'integer' } }), maxItems: 2 }],
  ['optional properties', obj({ a: str(8), b: { type: 'integer' }, c: { type: 'boolean' } }, ['a'])],
  ['string or null', { type: ['string', 'null'], maxLength: 10 }],
  ['enum of mixed values', { enum: [1, 'two', null, true] }],
  ['string pattern', { type: 'string', pattern: '^[A-Z]{3}-[0-9]{2}$' }],
  ['array of enum, 2-3 items', { type: 'array', items: { enum: ['x', 'y', 'z'] }, minItems: 2, maxItems: 3 }],
  ['three levels deep', obj({ a: obj({ b: obj({ c: { type: 'array', items: { type: 'boolean' }, maxItems: 2 } }) }) })],
  ['integer array with uniqueness left free, exclusive bounds', obj({ n: { type: 'integer', exclusiveMinimum: 0, exclusiveMaximum: 10 }, list: { type: 'array', items: { type: 'number' }, maxItems: 3 } })],
];

const ajv = addFormats(new Ajv2020({ strict: false }));

test('20 schemas × 10 seeded generations at temperature 0.9: every output parses and validates (Ajv)', async () => {
  let stopped = 0;
  for (const [name, schema] of SCHEMAS) {
    const validate = ajv.compile(schema);
    const results = await Promise.all(
      Array.from({ length: 10 }, (_, seed) => demo.generate('Answer:', { jsonSchema: schema, temperature: 0.9, seed, maxTokens: 80 })),
    );
    for (const [seed, r] of results.entries()) {
      let value: unknown;
      assert.doesNotThrow(() => (value = JSON.parse(r.text)), `${name}, seed ${seed}: not JSON: ${JSON.stringify(r.text)}`);
      assert.ok(validate(value), `${name}, seed ${seed}: ${JSON.stringify(r.text)} fails the schema: ${ajv.errorsText(validate.errors)}`);
      if (r.finishReason === 'stop') stopped++;
    }
  }
  // A complete value ends the sequence (EOS or nothing may follow), well within 80 tokens.
  assert.equal(stopped, 200);
});

test('a tight max_tokens still gives valid output: the mask keeps a complete value reachable in the tokens left', async () => {
  const schema = SCHEMAS[0]![1];
  const validate = ajv.compile(schema);
  // {"name":"","age":0} is 13 tokens at the least; 16 leaves almost no room to wander.
  const results = await Promise.all(Array.from({ length: 10 }, (_, seed) => demo.generate('Answer:', { jsonSchema: schema, temperature: 0.9, seed, maxTokens: 16 })));
  for (const r of results) {
    assert.ok(r.usage.completionTokens <= 16);
    assert.ok(validate(JSON.parse(r.text)), r.text);
  }
});

test('max_tokens below what any complete value needs: finish_reason "length", the output cut (not valid)', async () => {
  const r = await demo.generate('Answer:', { jsonSchema: SCHEMAS[0]![1], temperature: 0.9, seed: 1, maxTokens: 3 });
  assert.equal(r.finishReason, 'length');
  assert.equal(r.stopReason, 'max_tokens');
  assert.ok(r.usage.completionTokens <= 3);
  assert.throws(() => JSON.parse(r.text));
});

test('json object, regex and GBNF grammars from llama.cpp constrain the output', async () => {
  const o = await demo.generate('Answer:', { jsonObject: true, temperature: 0.9, seed: 3, maxTokens: 60 });
  const parsed = JSON.parse(o.text) as unknown;
  assert.ok(typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed), o.text);
  for (let seed = 0; seed < 5; seed++) {
    const r = await demo.generate('Answer:', { regex: '(yes|no), [a-z ]{3,20}\\.', temperature: 0.9, seed, maxTokens: 40 });
    assert.match(r.text, /^(yes|no), [a-z ]{3,20}\.$/);
    assert.equal(r.stopReason, 'constraint');
  }
  const list = fs.readFileSync(path.join(PROJECT_ROOT, 'test', 'data', 'gbnf', 'list.gbnf'), 'utf8');
  const l = await demo.generate('Answer:', { grammar: list, temperature: 0.9, seed: 2, maxTokens: 40 });
  assert.match(l.text, /^(- [^\r\n]+\n)+$/, JSON.stringify(l.text));
  const arith = fs.readFileSync(path.join(PROJECT_ROOT, 'test', 'data', 'gbnf', 'arithmetic.gbnf'), 'utf8');
  const a = await demo.generate('Answer:', { grammar: arith, temperature: 0.9, seed: 2, maxTokens: 30 });
  assert.match(a.text, /^[a-z0-9_+\-*/()= \t\n]*=[a-z0-9_+\-*/()= \t\n]*\n$/, JSON.stringify(a.text));
});

test('a bad schema or several constraints at once are errors before anything runs', async () => {
  await assert.rejects(demo.generate('x', { jsonSchema: { type: 'object', properties: { a: { type: 'nonsense' } } } }), ConstraintError);
  await assert.rejects(demo.generate('x', { regex: '(' }), ConstraintError);
  await assert.rejects(demo.generate('x', { regex: 'a', grammar: 'root ::= "a"' }), /at most one/);
});
