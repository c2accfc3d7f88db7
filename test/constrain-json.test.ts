/**
 * JSON Schema constraints with the real Grok-1 vocabulary: 20 varied schemas × 10 seeded random
 * walks (uniform among allowed tokens, budget-forced closure at 120 tokens); every output must
 * JSON.parse and validate under Ajv. Plus json-object, and schema errors naming their pointer.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { Ajv, type AnySchema } from 'ajv';
import { Ajv2020 } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { ConstraintError } from '../src/errors.js';
import { compile, randomWalk } from './constrain-walk.js';

const addFormats = addFormatsModule as unknown as (ajv: Ajv | Ajv2020) => void;

const SCHEMAS: Record<string, Record<string, unknown> | boolean> = {
  person: {
    type: 'object',
    properties: {
      name: { type: 'string', minLength: 1, maxLength: 20 },
      age: { type: 'integer', minimum: 0, maximum: 150 },
      email: { type: 'string', format: 'email' },
      born: { type: 'string', format: 'date' },
    },
    required: ['name', 'age'],
    additionalProperties: false,
  },
  'recursive-ref': {
    type: 'object',
    properties: {
      id: { type: 'string', format: 'uuid' },
      tags: { type: 'array', items: { enum: ['a', 'b', 'c'] }, maxItems: 3 },
      child: { $ref: '#' },
    },
    required: ['id'],
  },
  'number-array': { type: 'array', items: { type: 'number', minimum: -5.5, exclusiveMaximum: 10 }, minItems: 2, maxItems: 5 },
  'mixed-enum': { enum: ['red', 'green', 'blue', null, 42, { deep: [1, 2] }] },
  'const-object': { const: { a: 1, b: [true, null], c: 'x"y' } },
  'nested-address': {
    type: 'object',
    properties: {
      street: { type: 'string', maxLength: 30 },
      city: { type: 'string', maxLength: 20 },
      zip: { type: 'string', pattern: '^[0-9]{5}$' },
      geo: { type: 'object', properties: { lat: { type: 'number', minimum: -90, maximum: 90 }, lon: { type: 'number', minimum: -180, maximum: 180 } }, required: ['lat', 'lon'] },
    },
    required: ['street', 'city', 'zip', 'geo'],
  },
  'any-of': { anyOf: [{ type: 'string', maxLength: 5 }, { type: 'integer', minimum: 10, maximum: 99 }, { type: 'boolean' }] },
  'one-of-shapes': {
    oneOf: [
      { type: 'object', properties: { kind: { const: 'circle' }, r: { type: 'number', minimum: 0 } }, required: ['kind', 'r'], additionalProperties: false },
      { type: 'object', properties: { kind: { const: 'square' }, side: { type: 'integer', minimum: 1 } }, required: ['kind', 'side'], additionalProperties: false },
    ],
  },
  'defs-order': {
    $defs: {
      item: {
        type: 'object',
        properties: { sku: { type: 'string', pattern: '^[A-Z]{3}-[0-9]{3}$' }, qty: { type: 'integer', minimum: 1, maximum: 1000 } },
        required: ['sku', 'qty'],
        additionalProperties: false,
      },
    },
    type: 'object',
    properties: { items: { type: 'array', items: { $ref: '#/$defs/item' }, minItems: 1, maxItems: 3 }, note: { type: ['string', 'null'], maxLength: 10 } },
    required: ['items'],
  },
  'additional-any': { type: 'object', properties: { id: { type: 'integer' } }, required: ['id'], additionalProperties: true },
  'additional-typed': { type: 'object', properties: { name: { type: 'string', maxLength: 8 } }, additionalProperties: { type: 'integer', minimum: 0, maximum: 9 } },
  'tuple-2020': { type: 'array', prefixItems: [{ type: 'string', maxLength: 6 }, { type: 'integer' }, { type: 'boolean' }], items: false, minItems: 2 },
  'tuple-draft7': { $schema: 'http://json-schema.org/draft-07/schema#', type: 'array', items: [{ type: 'integer', minimum: 0, maximum: 3 }, { type: 'string', maxLength: 3 }], additionalItems: { type: 'null' }, maxItems: 4 },
  'time-formats': {
    type: 'object',
    properties: { at: { type: 'string', format: 'date-time' }, clock: { type: 'string', format: 'time' }, day: { type: 'string', format: 'date' }, ref: { type: 'string', format: 'uuid' } },
    required: ['at', 'clock', 'day', 'ref'],
  },
  'bounds': {
    type: 'object',
    properties: {
      i: { type: 'integer', exclusiveMinimum: -100, exclusiveMaximum: 100 },
      p: { type: 'number', minimum: 0, maximum: 1 },
      n: { type: 'number', exclusiveMinimum: -3, maximum: -1 },
      big: { type: 'integer', minimum: 1000000 },
    },
    required: ['i', 'p', 'n', 'big'],
  },
  'nullable-strings': { type: 'array', items: { type: ['string', 'null'], minLength: 2, maxLength: 4 }, minItems: 3, maxItems: 3 },
  'recursive-tree-draft7': {
    $schema: 'http://json-schema.org/draft-07/schema#',
    definitions: {
      node: {
        type: 'object',
        properties: { value: { type: 'integer', minimum: -9, maximum: 9 }, children: { type: 'array', items: { $ref: '#/definitions/node' }, maxItems: 2 } },
        required: ['value'],
        additionalProperties: false,
      },
    },
    $ref: '#/definitions/node',
  },
  'all-of': { allOf: [{ type: 'object', properties: { a: { type: 'string', maxLength: 4 } }, required: ['a'] }, { properties: { b: { type: 'number' } }, required: ['b'] }] },
  'anything': {},
  'strings-misc': {
    type: 'object',
    properties: {
      has: { type: 'string', pattern: 'abc' },
      host: { type: 'string', format: 'hostname' },
      ip: { type: 'string', format: 'ipv4' },
      web: { type: 'string', format: 'uri' },
      exact: { type: 'string', minLength: 3, maxLength: 3 },
      extra: { type: 'boolean' },
    },
    required: ['has', 'host', 'ip', 'web', 'exact', 'extra'],
  },
};

const GENERATIONS_PER_SCHEMA = 10;
const MAX_TOKENS = 120;

function validator(schema: Record<string, unknown> | boolean): (x: unknown) => boolean {
  const draft7 = typeof schema === 'object' && String(schema.$schema ?? '').includes('draft-07');
  const ajv = draft7 ? new Ajv({ strict: false }) : new Ajv2020({ strict: false });
  addFormats(ajv);
  const v = ajv.compile(schema as AnySchema);
  return (x) => {
    const ok = v(x) as boolean;
    if (!ok) assert.fail(`Ajv: ${JSON.stringify(v.errors)}`);
    return ok;
  };
}

describe('JSON Schema constraints: random walks validate under Ajv', () => {
  assert.equal(Object.keys(SCHEMAS).length, 20);
  for (const [name, schema] of Object.entries(SCHEMAS)) {
    test(name, () => {
      const compiled = compile({ kind: 'json-schema', schema });
      const validate = validator(schema);
      for (let g = 0; g < GENERATIONS_PER_SCHEMA; g++) {
        const walk = randomWalk(compiled, 1000 * g + name.length, MAX_TOKENS, g === 0 ? 4 : 0);
        assert.ok(walk.complete, `${name} #${g} incomplete after ${walk.ids.length} tokens: ${JSON.stringify(walk.text)}`);
        let value: unknown;
        try {
          value = JSON.parse(walk.text);
        } catch (e) {
          assert.fail(`${name} #${g}: ${JSON.stringify(walk.text)} does not parse: ${(e as Error).message}`);
        }
        assert.ok(validate(value), `${name} #${g}: ${walk.text}`);
      }
    });
  }
});

describe('json-object', () => {
  test('any JSON object, closed within the budget', () => {
    const compiled = compile({ kind: 'json-object' });
    for (let g = 0; g < 10; g++) {
      const walk = randomWalk(compiled, 77 + g, 80, g === 0 ? 4 : 0);
      assert.ok(walk.complete, walk.text);
      const value = JSON.parse(walk.text) as unknown;
      assert.ok(typeof value === 'object' && value !== null && !Array.isArray(value), walk.text);
    }
  });
  test('stops at the final brace and bounds whitespace', () => {
    const m = compile({ kind: 'json-object' }).matcher();
    m.acceptText('{"a": [1, {"b": null}]}');
    assert.ok(m.isComplete());
    assert.equal(m.canContinue(), false);
    const ws = compile({ kind: 'json-object' }).matcher();
    ws.acceptText('{\n' + ' '.repeat(20));
    assert.throws(() => ws.acceptText(' '), ConstraintError);
  });
});

describe('JSON Schema language', () => {
  const check = (schema: Record<string, unknown>, good: string[], bad: string[]) => {
    const c = compile({ kind: 'json-schema', schema });
    const run = (s: string) => {
      const m = c.matcher();
      try {
        m.acceptText(s);
      } catch {
        return false;
      }
      return m.isComplete();
    };
    for (const s of good) assert.ok(run(s), `should accept ${s}`);
    for (const s of bad) assert.ok(!run(s), `should reject ${s}`);
  };
  test('integer ranges digit by digit', () => {
    check({ type: 'integer', minimum: -12, maximum: 305 }, ['-12', '-1', '0', '9', '10', '99', '100', '299', '305'], ['-13', '-0x', '306', '400', '1000', '01', '3.5']);
  });
  test('number ranges with exclusive bounds', () => {
    check({ type: 'number', exclusiveMinimum: 0, maximum: 2 }, ['0.5', '1', '1.75', '2', '2.000'], ['0', '0.0', '-1', '2.5', '2.01', '3']);
    check({ type: 'number', minimum: -2, exclusiveMaximum: -1 }, ['-2', '-1.5', '-1.999', '-2.0'], ['-1', '-2.5', '0', '-1.0']);
  });
  test('dates respect month lengths and leap years', () => {
    check({ type: 'string', format: 'date' }, ['"2024-02-29"', '"2000-02-29"', '"1999-12-31"', '"2023-04-30"'], ['"2023-02-29"', '"1900-02-29"', '"2023-04-31"', '"2023-13-01"', '"2023-00-10"']);
  });
  test('properties in order, optional ones skippable, no extras by default', () => {
    check(
      { type: 'object', properties: { a: { type: 'integer' }, b: { type: 'integer' }, c: { type: 'integer' } }, required: ['b'] },
      ['{"b":1}', '{"a":1,"b":2}', '{"b":2,"c":3}', '{ "a" : 1 , "b" : 2 , "c" : 3 }'],
      ['{}', '{"a":1}', '{"b":1,"a":2}', '{"b":1,"d":2}', '{"b":1,}'],
    );
  });
  test('extra keys never repeat a declared name', () => {
    check({ type: 'object', properties: { id: { type: 'integer' } }, additionalProperties: { type: 'boolean' } }, ['{"id":1,"idx":true}', '{"i":false}'], ['{"id":1,"id":true}', '{"id":true}']);
  });
  test('unanchored pattern matches anywhere', () => {
    check({ type: 'string', pattern: 'ab+c' }, ['"abc"', '"xxabbbcyy"'], ['"ac"', '"abx"']);
  });
});

describe('JSON Schema errors name the bad part', () => {
  const fails = (schema: unknown, where: RegExp, message: RegExp) => {
    assert.throws(
      () => compile({ kind: 'json-schema', schema: schema as object }),
      (e: unknown) => e instanceof ConstraintError && where.test(e.where ?? '') && message.test(e.message),
    );
  };
  test('unsupported keywords', () => {
    fails({ type: 'array', items: { type: 'integer' }, uniqueItems: true }, /#\/uniqueItems$/, /"uniqueItems" is not supported/);
    fails({ type: 'object', properties: { a: { not: { type: 'string' } } } }, /#\/properties\/a\/not$/, /"not"/);
    fails({ type: 'number', multipleOf: 3 }, /#\/multipleOf$/, /multipleOf/);
  });
  test('bad values', () => {
    fails({ type: 'object', properties: { a: { type: 'strin' } } }, /#\/properties\/a\/type$/, /unknown type "strin"/);
    fails({ type: 'string', minLength: 5, maxLength: 2 }, /^JSON schema #$/, /minLength 5 exceeds maxLength 2/);
    fails({ $ref: '#/$defs/missing' }, /#/, /points to nothing/);
    fails({ type: 'string', format: 'ipv6' }, /#\/format$/, /format "ipv6" is not supported/);
    fails({ enum: [] }, /#\/enum$/, /empty enum/);
    fails({ type: 'integer', minimum: 5, maximum: 4 }, /#/, /no integer/);
  });
});
