/**
 * llama.cpp's GBNF (grammars/README.md): `name ::= alternatives` rules; sequences of string
 * literals, character classes (`[a-z]`, `[^"\\]`), `.` (any character), rule references and
 * parenthesised groups; postfix `*`, `+`, `?`, `{m}`, `{m,}`, `{m,n}`, `{,n}`; escapes `\xHH`,
 * `\uHHHH`, `\UHHHHHHHH`, `\n`, `\r`, `\t`, `\\`, `\"`, `\[`, `\]`; `#` comments. As in llama.cpp, a
 * newline ends a rule except inside parentheses or after `::=` / `|`. Errors carry
 * `line L column C`.
 */
import { ConstraintError } from '../errors.js';
import { EMPTY, alt, ref, rep, seq, utf8Class, type Grammar, type Node } from './grammar.js';
import { MAX_REPEAT } from './limits.js';

export function parseGbnf(text: string, root = 'root'): Grammar {
  const cps = Array.from(text, (c) => c.codePointAt(0)!);
  const n = cps.length;
  let pos = 0;
  const rules = new Map<string, Node>();
  const origin = new Map<string, string>();

  const lineCol = (at: number): string => {
    let line = 1;
    let col = 1;
    for (let i = 0; i < at && i < n; i++) {
      if (cps[i] === 0x0a) {
        line++;
        col = 1;
      } else col++;
    }
    return `grammar line ${line} column ${col}`;
  };
  const fail = (msg: string, at = pos): never => {
    throw new ConstraintError(msg, lineCol(at));
  };
  const ch = (i = pos): string => (i < n ? String.fromCodePoint(cps[i]!) : '');
  const isWordChar = (c: string): boolean => /^[A-Za-z0-9_-]$/.test(c);

  const skipSpace = (newlines: boolean): void => {
    while (pos < n) {
      const c = ch();
      if (c === '#') {
        while (pos < n && cps[pos] !== 0x0a && cps[pos] !== 0x0d) pos++;
      } else if (c === ' ' || c === '\t' || (newlines && (c === '\n' || c === '\r'))) pos++;
      else break;
    }
  };

  const parseName = (): string => {
    const start = pos;
    while (pos < n && isWordChar(ch())) pos++;
    if (pos === start) fail(`expected a rule name, found ${pos < n ? JSON.stringify(ch()) : 'the end'}`);
    return String.fromCodePoint(...cps.slice(start, pos));
  };

  const hex = (digits: number, at: number): number => {
    let v = 0;
    for (let i = 0; i < digits; i++) {
      const d = parseInt(ch(), 16);
      if (Number.isNaN(d)) fail(`expected ${digits} hex digits in escape`, at);
      v = v * 16 + d;
      pos++;
    }
    return v;
  };

  /** One character of a literal or class, escapes decoded. */
  const parseChar = (): number => {
    const at = pos;
    if (pos >= n) fail('unexpected end of grammar');
    if (cps[pos] !== 0x5c) return cps[pos++]!;
    pos++;
    const e = ch();
    pos++;
    switch (e) {
      case 'x':
        return hex(2, at);
      case 'u':
        return hex(4, at);
      case 'U':
        return hex(8, at);
      case 't':
        return 0x09;
      case 'r':
        return 0x0d;
      case 'n':
        return 0x0a;
      case '\\':
      case '"':
      case '[':
      case ']':
      case '-':
      case '^':
      case '/':
        return e.codePointAt(0)!;
      default:
        return fail(`unknown escape \\${e}`, at);
    }
  };

  const parseInt10 = (): number | undefined => {
    const start = pos;
    while (pos < n && /[0-9]/.test(ch())) pos++;
    return pos === start ? undefined : Number(String.fromCodePoint(...cps.slice(start, pos)));
  };

  const parseSequence = (nested: boolean): Node => {
    const items: Node[] = [];
    while (pos < n) {
      const at = pos;
      const c = ch();
      let item: Node;
      if (c === '"') {
        pos++;
        const chars: Node[] = [];
        while (pos < n && ch() !== '"') {
          if (cps[pos] === 0x0a) fail('unterminated string literal', at);
          const cp = parseChar();
          chars.push(utf8Class([[cp, cp]]));
        }
        if (pos >= n) fail('unterminated string literal', at);
        pos++;
        item = seq(...chars);
      } else if (c === '[') {
        pos++;
        const negate = ch() === '^';
        if (negate) pos++;
        const ranges: [number, number][] = [];
        while (pos < n && ch() !== ']') {
          const lo = parseChar();
          if (ch() === '-' && ch(pos + 1) !== ']' && pos + 1 < n) {
            pos++;
            const hi = parseChar();
            if (hi < lo) fail('character range out of order', at);
            ranges.push([lo, hi]);
          } else ranges.push([lo, lo]);
        }
        if (pos >= n) fail('unterminated character class', at);
        pos++;
        item = utf8Class(ranges, negate);
      } else if (c === '.') {
        pos++;
        item = utf8Class([[0, 0x10ffff]]);
      } else if (c === '(') {
        pos++;
        skipSpace(true);
        item = parseAlternates(true);
        if (ch() !== ')') fail('expected ")"', pos);
        pos++;
      } else if (isWordChar(c)) {
        item = ref(parseName());
      } else if (c === '<') {
        return fail('token references (<…>) are not supported; write the text instead');
      } else break;
      // Postfix operators bind to the element just read.
      for (;;) {
        skipSpace(nested);
        const q = ch();
        const qat = pos;
        if (q === '*') item = rep(item, 0, Infinity);
        else if (q === '+') item = rep(item, 1, Infinity);
        else if (q === '?') item = rep(item, 0, 1);
        else if (q === '{') {
          pos++;
          skipSpace(nested);
          const min = parseInt10();
          skipSpace(nested);
          let max = min;
          if (ch() === ',') {
            pos++;
            skipSpace(nested);
            max = parseInt10() ?? Infinity;
            skipSpace(nested);
          }
          if (ch() !== '}') fail('expected "}" to close a repetition', qat);
          if (min === undefined && max === undefined) fail('a repetition needs a count', qat);
          if (max! < (min ?? 0)) fail('repetition maximum below its minimum', qat);
          // Refused here, before x{n} is unrolled into n copies (limits.ts).
          const count = max === Infinity ? min ?? 0 : max!;
          if (count > MAX_REPEAT) fail(`repetition count ${count} is above the limit of ${MAX_REPEAT}`, qat);
          item = rep(item, min ?? 0, max!);
        } else break;
        pos++;
      }
      items.push(item);
    }
    return items.length === 0 ? EMPTY : seq(...items);
  };

  const parseAlternates = (nested: boolean): Node => {
    const items = [parseSequence(nested)];
    while (ch() === '|') {
      pos++;
      skipSpace(true);
      items.push(parseSequence(nested));
    }
    return items.length === 1 ? items[0]! : alt(...items);
  };

  skipSpace(true);
  while (pos < n) {
    const at = pos;
    const name = parseName();
    skipSpace(false);
    if (!(ch() === ':' && ch(pos + 1) === ':' && ch(pos + 2) === '=')) fail(`expected "::=" after rule name ${name}`);
    pos += 3;
    skipSpace(true);
    const body = parseAlternates(false);
    if (rules.has(name)) fail(`rule ${name} is defined twice (first at ${origin.get(name)})`, at);
    rules.set(name, body);
    origin.set(name, lineCol(at));
    if (ch() === '\r') pos++;
    if (ch() === '\n') pos++;
    else if (pos < n) fail(`expected the end of the rule, found ${JSON.stringify(ch())}`);
    skipSpace(true);
  }
  if (!rules.has(root)) throw new ConstraintError(`the grammar defines no rule "${root}" to start from`, 'grammar');
  return { rules, root, origin };
}
