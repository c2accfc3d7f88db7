/**
 * Regex and GBNF constraints: regex full-match agrees with JavaScript's RegExp; llama.cpp's
 * example grammars (test/data/gbnf, MIT, see LICENSE.md there) load and constrain random walks
 * with the real vocabulary; bad grammars and regexes fail with their position; the mask never
 * allows a token whose acceptance throws.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, test } from 'node:test';
import { vocabularyFromBytes, compileConstraint, type ConstraintSpec } from '../src/constrain/index.js';
import { ConstraintError } from '../src/errors.js';
import { accepts, compile, randomWalk } from './constrain-walk.js';
import { PROJECT_ROOT } from './shared.js';

const GBNF_DIR = path.join(PROJECT_ROOT, 'test', 'data', 'gbnf');
const gbnf = (name: string) => fs.readFileSync(path.join(GBNF_DIR, name), 'utf8');

describe('regex constraints', () => {
  const cases: [string, string[]][] = [
    ['(yes|no)', ['yes', 'no', 'ye', 'yesno', '', 'YES']],
    ['\\d{3}-\\d{4}', ['555-1234', '55-1234', '5555-1234', '555-12345', 'abc-defg']],
    ['[A-Z][a-z]+( [A-Z][a-z]+)*', ['Hello', 'Hello World', 'hello', 'Hello world', 'Hello  World', 'H']],
    ['a{2,4}b?', ['aa', 'aaaa', 'aaab', 'a', 'aaaaa', 'b']],
    ['[^"\\\\]*', ['', 'abc', 'a"b', 'üñí', 'x\\y']],
    ['(?:\\w+@\\w+\\.com)', ['a@b.com', '_x@y1.com', '@b.com', 'a@b.org']],
    ['.+', ['x', 'héllo wörld 日本', '', 'a\nb']],
    ['[\\s\\S]{2}', ['\n\n', 'ab', '日本', 'a', 'abc']],
    ['x*', ['', 'x', 'xxxxxxxx', 'xy']],
    ['-?(0|[1-9]\\d*)(\\.\\d+)?', ['0', '-12.5', '01', '1.', '3.14159']],
    ['[\\u00e0-\\u00ff]+|\\u{1F600}', ['àé', 'ÿ', '😀', 'a', '😀😀']],
    ['^colou?r$', ['color', 'colour', 'colr']],
  ];
  for (const [pattern, strings] of cases) {
    test(`/${pattern}/ agrees with RegExp`, () => {
      const compiled = compile({ kind: 'regex', pattern });
      const re = new RegExp(`^(?:${pattern})$`, 'u');
      for (const s of strings) assert.equal(accepts(compiled, s), re.test(s), `${JSON.stringify(s)}`);
    });
  }
  test('random walks produce full matches', () => {
    for (const pattern of ['\\d{3}-\\d{4}', '[A-Z][a-z]{1,8}( [A-Z][a-z]{1,8}){0,3}', '(red|green|blue) #[0-9a-f]{6}', '[^\\n]{5,40}\\.']) {
      const compiled = compile({ kind: 'regex', pattern });
      const re = new RegExp(`^(?:${pattern})$`, 'u');
      for (let g = 0; g < 5; g++) {
        const walk = randomWalk(compiled, 31 + g, 60, 3);
        assert.ok(walk.complete, `${pattern}: ${JSON.stringify(walk.text)}`);
        assert.ok(re.test(walk.text), `${pattern}: ${JSON.stringify(walk.text)}`);
      }
    }
  });
  test('multi-byte characters split across byte tokens', () => {
    // Token 0: 0xE6, token 1: 0x97, token 2: 0xA5 — "日" in three byte pieces; token 3: "a".
    const vocab = vocabularyFromBytes([Uint8Array.of(0xe6), Uint8Array.of(0x97), Uint8Array.of(0xa5), Uint8Array.of(0x61), null], 4);
    const c = compileConstraint({ kind: 'regex', pattern: '日+' }, vocab);
    const m = c.matcher();
    const mask = new Uint32Array(c.maskWords);
    m.fillMask(mask);
    assert.equal(mask[0], 0b00001);
    m.accept(0);
    m.fillMask(mask);
    assert.equal(mask[0], 0b00010);
    m.accept(1);
    assert.equal(m.isComplete(), false);
    m.accept(2);
    m.fillMask(mask);
    assert.equal(mask[0], 0b10001, 'another 日 or EOS');
    assert.ok(m.isComplete());
    assert.throws(() => m.accept(3), ConstraintError);
  });
  test('errors name the offset', () => {
    const bad: [string, RegExp][] = [
      ['(abc', /missing \)/],
      ['a)', /unmatched \)/],
      ['(a)\\1', /backreferences/],
      ['(?=a)b', /lookaround/],
      ['a\\bc', /word boundaries/],
      ['[z-a]', /out of order/],
      ['*a', /nothing to repeat/],
    ];
    for (const [pattern, msg] of bad) {
      assert.throws(
        () => compile({ kind: 'regex', pattern }),
        (e: unknown) => e instanceof ConstraintError && /regex at offset \d+/.test(e.where ?? '') && msg.test(e.message),
        pattern,
      );
    }
  });
});

describe("llama.cpp's example grammars", () => {
  const files = ['json.gbnf', 'json_arr.gbnf', 'arithmetic.gbnf', 'c.gbnf', 'chess.gbnf', 'list.gbnf', 'japanese.gbnf', 'readme-chess.gbnf', 'readme-name-age.gbnf', 'readme-summary.gbnf'];
  const maxTokens: Record<string, number> = { 'readme-name-age.gbnf': 400, 'readme-summary.gbnf': 300 };
  for (const file of files) {
    test(`${file} loads and constrains`, () => {
      const compiled = compile({ kind: 'grammar', gbnf: gbnf(file) });
      for (let g = 0; g < 3; g++) {
        const walk = randomWalk(compiled, 5 + g, maxTokens[file] ?? 60, g === 0 ? 3 : 0);
        assert.ok(walk.complete, `${file}: ${JSON.stringify(walk.text)}`);
        if (file.startsWith('json')) JSON.parse(walk.text);
        // Its `dot ::= [^\x0A\x0D]` lets a key fact hold a raw `"`: the grammar (llama.cpp's
        // converter output) admits invalid JSON, so only its shape is checked here.
        if (file === 'readme-summary.gbnf') assert.match(walk.text, /^\{\s*"key_facts"\s*:\s*\[[^]*"question_answers"\s*:\s*\[[^]*\}\s*$/);
        if (file.includes('chess')) assert.match(walk.text, /^1\. \S+ \S+\n([1-9][0-9]?\. \S+ \S+\n)+$/);
        if (file === 'readme-name-age.gbnf') {
          const people = JSON.parse(walk.text) as { name: string; age: number }[];
          assert.ok(people.length >= 10 && people.length <= 100);
          for (const p of people) assert.ok(Number.isInteger(p.age) && p.age >= 0 && p.age <= 150 && p.name.length >= 1);
        }
      }
    });
  }
  test('accepts and rejects known texts', () => {
    const arith = compile({ kind: 'grammar', gbnf: gbnf('arithmetic.gbnf') });
    assert.ok(accepts(arith, 'x=(1+y2*3)\n'));
    assert.ok(accepts(arith, 'a=(b+(c*2))\n'));
    assert.ok(!accepts(arith, 'a=(b+c\n'));
    const c = compile({ kind: 'grammar', gbnf: gbnf('c.gbnf') });
    assert.ok(accepts(c, 'int main(){return 0;}'));
    assert.ok(accepts(c, 'int f(int x){while(x<10){x = x+1;}return x;}'));
    assert.ok(!accepts(c, 'int main(){return 0}'));
    const jp = compile({ kind: 'grammar', gbnf: gbnf('japanese.gbnf') });
    assert.ok(accepts(jp, 'ひらがな カタカナ'));
    assert.ok(!accepts(jp, 'abc'));
  });
});

describe('GBNF syntax', () => {
  test('repetitions, classes, escapes, comments, alternation across lines', () => {
    const g = compile({
      kind: 'grammar',
      gbnf: `# comment line
root ::= greeting ("," ws name){1,2} [.!]? # trailing comment
greeting ::= "hi" |
  "hello"
name ::= [A-Z] [a-z]{0,5} | "\\x41\\u00e9\\U0001F600"
ws ::= [ \\t]?
`,
    });
    for (const s of ['hi,Bob', 'hello, Al,Zed!', 'hi,Aé😀']) assert.ok(accepts(g, s), s);
    for (const s of ['hi', 'hi,bob', 'hi,A,B,C', 'hey,Bob']) assert.ok(!accepts(g, s), s);
  });
  test('errors carry line and column', () => {
    const bad: [string, RegExp, RegExp][] = [
      ['root ::= "abc', /line 1 column 10/, /unterminated string/],
      ['root ::= "a"\n\nitem ::= foo\n', /line 3 column 1/, /undefined rule "foo"/],
      ['root ::= expr\nexpr ::= expr "+" "1" | "1"\n', /line 2 column 1/, /left recursion/],
      ['root ::= "a"\nbad rule\n', /line 2 column 5/, /expected "::="/],
      ['root ::= [a-\n', /line 1/, /unterminated character class|character range/],
      ['root ::= "a"{3,1}\n', /line 1 column 13/, /maximum below its minimum/],
      ['root ::= "\\q"\n', /line 1 column 11/, /unknown escape/],
      ['item ::= "a"\n', /grammar/, /no rule "root"/],
    ];
    for (const [text, where, message] of bad) {
      assert.throws(
        () => compile({ kind: 'grammar', gbnf: text }),
        (e: unknown) => e instanceof ConstraintError && where.test(e.where ?? '') && message.test(e.message),
        text,
      );
    }
  });
});

describe('matcher contract', () => {
  test('every allowed token is accepted; the EOS bit follows completeness; clones are independent', () => {
    const c = compile({ kind: 'grammar', gbnf: gbnf('json.gbnf') });
    const m = c.matcher();
    m.acceptText('{"a": [1, 2');
    const before = m.clone();
    m.acceptText(']}');
    assert.ok(m.isComplete());
    assert.ok(!before.isComplete());
    assert.ok(before.canContinue());
    assert.ok(before.minTokensToComplete() >= 2);
    assert.equal(m.minTokensToComplete(), 0);
  });
  test('in sampled states, every allowed token is accepted and every other token throws', () => {
    const states: [ConstraintSpec, string][] = [
      [{ kind: 'grammar', gbnf: gbnf('json.gbnf') }, '{"a": [1, {"b": "x'],
      [{ kind: 'grammar', gbnf: gbnf('json.gbnf') }, '{"a": [1, {"b": "x"}'],
      [{ kind: 'json-schema', schema: { type: 'object', properties: { n: { type: 'integer', maximum: 250 } }, required: ['n'] } }, '{"n": 2'],
      [{ kind: 'regex', pattern: '日本(語|人)?' }, '日'],
    ];
    for (const [spec, prefix] of states) {
      const c = compile(spec);
      const m = c.matcher();
      m.acceptText(prefix);
      const mask = new Uint32Array(c.maskWords);
      m.fillMask(mask);
      let allowed = 0;
      for (let id = 0; id < c.vocab.size; id++) {
        const on = (mask[id >>> 5]! & (1 << (id & 31))) !== 0;
        if (id === c.vocab.eosId) {
          assert.equal(on, m.isComplete());
          continue;
        }
        if (on) {
          allowed++;
          m.clone().accept(id);
        } else if (id % 97 === 0) assert.throws(() => m.clone().accept(id), ConstraintError, `token ${id} after ${prefix}`);
      }
      assert.ok(allowed > 0, prefix);
    }
  });
  test('unknown kinds and bad specs are ConstraintErrors', () => {
    assert.throws(() => compile({ kind: 'xml' } as never), ConstraintError);
    assert.throws(() => compile({ kind: 'regex' } as never), ConstraintError);
  });
});
