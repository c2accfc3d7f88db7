/**
 * Size limits of constraints (src/constrain/limits.ts): a huge repetition bound is refused where
 * it is written, by name, before any part of it is unrolled; products of moderate counts are
 * refused from a state count, before the automaton is built. No timing: "before expansion" is
 * shown by the refusal coming from the grammar stage (constraintGrammar), which unrolls nothing.
 */
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { compileGrammar, nfaStateCount } from '../src/constrain/automaton.js';
import { constraintGrammar, type ConstraintSpec } from '../src/constrain/index.js';
import { MAX_ARRAY_ITEMS, MAX_DFA_STATES, MAX_NFA_STATES, MAX_REPEAT, MAX_STRING_LENGTH } from '../src/constrain/limits.js';
import { ConstraintError } from '../src/errors.js';

const HUGE = 1_000_000_000;

/** Refused by the grammar stage: a ConstraintError whose `where` and message match. */
function refusedEarly(spec: ConstraintSpec, where: RegExp, message: RegExp): void {
  assert.throws(
    () => constraintGrammar(spec),
    (e: unknown) => e instanceof ConstraintError && where.test(e.where ?? '') && message.test(e.message),
    JSON.stringify(spec),
  );
}

/** Automaton states of a compiled spec. */
const states = (spec: ConstraintSpec): number => compileGrammar(constraintGrammar(spec)).G;

describe('JSON Schema bounds above the limits', () => {
  const schema = (s: object): ConstraintSpec => ({ kind: 'json-schema', schema: s });
  test('minLength / maxLength name the keyword, its pointer and the limit', () => {
    const limit = new RegExp(`above the limit of ${MAX_STRING_LENGTH} characters`);
    refusedEarly(schema({ type: 'string', minLength: HUGE }), /^JSON schema #\/minLength$/, limit);
    refusedEarly(schema({ type: 'string', maxLength: HUGE }), /^JSON schema #\/maxLength$/, limit);
    refusedEarly(schema({ type: 'string', maxLength: MAX_STRING_LENGTH + 1 }), /#\/maxLength$/, /maxLength 7001 is above/);
    refusedEarly(
      schema({ type: 'object', properties: { name: { type: 'string', minLength: 1, maxLength: HUGE } } }),
      /^JSON schema #\/properties\/name\/maxLength$/,
      /leave it out for no upper bound/,
    );
  });
  test('minItems / maxItems name the keyword, its pointer and the limit', () => {
    const limit = new RegExp(`above the limit of ${MAX_ARRAY_ITEMS} items`);
    refusedEarly(schema({ type: 'array', minItems: HUGE }), /^JSON schema #\/minItems$/, limit);
    refusedEarly(schema({ type: 'array', items: { type: 'integer' }, maxItems: HUGE }), /^JSON schema #\/maxItems$/, limit);
    refusedEarly(schema({ type: 'array', items: { type: 'array', minItems: HUGE } }), /^JSON schema #\/items\/minItems$/, limit);
  });
  test('minProperties / maxProperties are refused as unsupported, by name', () => {
    refusedEarly(schema({ type: 'object', minProperties: HUGE }), /#\/minProperties$/, /"minProperties" is not supported/);
    refusedEarly(schema({ type: 'object', maxProperties: HUGE }), /#\/maxProperties$/, /"maxProperties" is not supported/);
  });
  test('a pattern quantifier is held to the regex limit, at the pattern', () => {
    refusedEarly(schema({ type: 'string', pattern: '^a{1000000000}$' }), /^JSON schema #\/pattern at offset \d+$/, new RegExp(`limit of ${MAX_REPEAT}`));
  });
  test('bounds at the limits still convert; a lone minimum leaves the maximum a loop', () => {
    assert.doesNotThrow(() => constraintGrammar(schema({ type: 'string', minLength: MAX_STRING_LENGTH, maxLength: MAX_STRING_LENGTH })));
    assert.doesNotThrow(() => constraintGrammar(schema({ type: 'array', minItems: MAX_ARRAY_ITEMS, maxItems: MAX_ARRAY_ITEMS })));
    // minLength 20 with no maximum: 20 counted characters then a loop, not one state more than
    // minLength 20 with maxLength 21 (the loop closes back on itself).
    assert.ok(states(schema({ type: 'string', minLength: 20 })) < states(schema({ type: 'string', minLength: 20, maxLength: 21 })));
  });
  test('the limits fit the state cap: states per counted character / element × limit ≤ MAX_DFA_STATES', () => {
    const perChar = (states(schema({ type: 'string', maxLength: 20 })) - states(schema({ type: 'string', maxLength: 10 }))) / 10;
    assert.equal(perChar, 27, 'one JSON string character counted');
    assert.ok(perChar * MAX_STRING_LENGTH <= MAX_DFA_STATES);
    // The cheapest element: a one-byte value.
    const perItem = (states(schema({ type: 'array', items: { const: 0 }, minItems: 20 })) - states(schema({ type: 'array', items: { const: 0 }, minItems: 10 }))) / 10;
    assert.ok(perItem >= 44, `one array element counted takes ${perItem} states`);
    assert.ok(perItem * MAX_ARRAY_ITEMS <= MAX_DFA_STATES);
  });
});

describe('regex and GBNF repetition counts above the limit', () => {
  const limit = new RegExp(`above the limit of ${MAX_REPEAT}`);
  test('regex {n}, {n,m}, {n,} name the offset', () => {
    for (const pattern of ['a{1000000000}', 'a{2,1000000000}', 'a{1000000000,}', 'x(ab){200001}']) {
      refusedEarly({ kind: 'regex', pattern }, /^regex at offset \d+$/, limit);
    }
    assert.throws(() => constraintGrammar({ kind: 'regex', pattern: 'x(ab){200001}' }), /offset 5/);
  });
  test('GBNF {n}, {n,m}, {n,} name the line and column', () => {
    refusedEarly({ kind: 'grammar', gbnf: 'root ::= "a"{1000000000}' }, /^grammar line 1 column 13$/, limit);
    refusedEarly({ kind: 'grammar', gbnf: 'root ::= item\nitem ::= [a-z]{0,1000000000}' }, /^grammar line 2 column 15$/, limit);
    refusedEarly({ kind: 'grammar', gbnf: 'root ::= "a"{1000000000,}' }, /line 1 column 13/, limit);
  });
  test('a count at the limit converts; a large minimum with no maximum compiles as a loop', () => {
    assert.doesNotThrow(() => constraintGrammar({ kind: 'regex', pattern: `a{${MAX_REPEAT}}` }));
    assert.equal(states({ kind: 'regex', pattern: 'a{1000,}' }), 1001);
    assert.equal(states({ kind: 'grammar', gbnf: 'root ::= "a"{1000,}' }), 1001);
  });
});

describe('automaton size counted before it is built', () => {
  test('nfaStateCount follows the construction: products of counts multiply', () => {
    const count = (pattern: string) => {
      const g = constraintGrammar({ kind: 'regex', pattern });
      return nfaStateCount(g, g.root, new Map([[g.root, 0]]));
    };
    assert.equal(count('a'), 2);
    assert.equal(count('ab'), 3);
    assert.equal(count('a|b'), 6);
    assert.equal(count('a{3}'), 5);
    assert.equal(count('a{2,4}'), 6);
    assert.equal(count('a*'), 4);
    // (a{10000}){10000}: each outer copy is one state plus the inner 10 000.
    assert.equal(count('(a{10000}){10000}'), 10_000 * 10_001 + 2);
  });
  test('a product of counts beyond MAX_NFA_STATES is refused with the existing error', () => {
    for (const spec of [
      { kind: 'regex', pattern: '(a{10000}){10000}' },
      { kind: 'regex', pattern: '[^]{0,100000}' },
      { kind: 'grammar', gbnf: 'root ::= ([a-z]{1000}){1000}' },
    ] as ConstraintSpec[]) {
      assert.throws(
        () => compileGrammar(constraintGrammar(spec)),
        (e: unknown) => e instanceof ConstraintError && e.message.includes(`more than ${MAX_NFA_STATES} automaton states`),
        JSON.stringify(spec),
      );
    }
  });
});
