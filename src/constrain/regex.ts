/**
 * JavaScript regular expressions (with the `u` flag's view of text: code points) → grammar node.
 * The whole output must match, so `^` at the start and `$` at the end are accepted and mean
 * nothing more. What a finite automaton cannot express (backreferences, lookaround, word
 * boundaries) is rejected with the offending offset.
 */
import { ConstraintError } from '../errors.js';
import { EMPTY, NOTHING, alt, rep, seq, utf8Class, type Node } from './grammar.js';
import { MAX_REPEAT } from './limits.js';

type Ranges = [number, number][];

export const DIGIT: Ranges = [[0x30, 0x39]];
export const WORD: Ranges = [
  [0x30, 0x39],
  [0x41, 0x5a],
  [0x5f, 0x5f],
  [0x61, 0x7a],
];
/** JS `\s`: WhiteSpace and LineTerminator. */
export const SPACE: Ranges = [
  [0x09, 0x0d],
  [0x20, 0x20],
  [0xa0, 0xa0],
  [0x1680, 0x1680],
  [0x2000, 0x200a],
  [0x2028, 0x2029],
  [0x202f, 0x202f],
  [0x205f, 0x205f],
  [0x3000, 0x3000],
  [0xfeff, 0xfeff],
];
const LINE_TERMINATORS: Ranges = [
  [0x0a, 0x0a],
  [0x0d, 0x0d],
  [0x2028, 0x2029],
];

function complement(r: Ranges): Ranges {
  const sorted = [...r].sort((x, y) => x[0] - y[0]);
  const out: Ranges = [];
  let next = 0;
  for (const [lo, hi] of sorted) {
    if (lo > next) out.push([next, lo - 1]);
    next = Math.max(next, hi + 1);
  }
  if (next <= 0x10ffff) out.push([next, 0x10ffff]);
  return out;
}

/** Code points of `set` not in `minus`. */
function subtract(set: Ranges, minus: Ranges): Ranges {
  const comp = complement(minus);
  const out: Ranges = [];
  for (const [lo, hi] of set) {
    for (const [clo, chi] of comp) {
      const a = Math.max(lo, clo);
      const b = Math.min(hi, chi);
      if (a <= b) out.push([a, b]);
    }
  }
  return out;
}

/** Parses `pattern`; `dotAll` is the `s` flag. Errors name the offset (in code points) in `where`. */
export function regexToNode(pattern: string, opts: { dotAll?: boolean; where?: string; exclude?: Ranges } = {}): Node {
  const cps = Array.from(pattern, (c) => c.codePointAt(0)!);
  // Characters the context cannot hold raw (a JSON string's quote, backslash, controls) are
  // removed from every class: the output stays valid, it only cannot use them.
  const exclude = opts.exclude ?? [];
  const cls = (ranges: Ranges, negate = false): Node => {
    const set = negate ? complement(ranges) : ranges;
    return utf8Class(exclude.length ? subtract(set, exclude) : set);
  };
  let pos = 0;
  const label = opts.where ?? 'regex';
  const fail = (msg: string, at = pos): never => {
    throw new ConstraintError(`${msg} (in /${pattern}/)`, `${label} at offset ${at}`);
  };
  const peek = (): number | undefined => cps[pos];
  const eat = (c: string): boolean => {
    if (cps[pos] === c.codePointAt(0)) {
      pos++;
      return true;
    }
    return false;
  };
  const readHex = (n: number): number => {
    let v = 0;
    for (let i = 0; i < n; i++) {
      const c = cps[pos];
      const d = c === undefined ? NaN : parseInt(String.fromCodePoint(c), 16);
      if (Number.isNaN(d)) fail(`expected ${n} hex digits`);
      v = v * 16 + d;
      pos++;
    }
    return v;
  };
  const readInt = (): number | undefined => {
    const start = pos;
    while (pos < cps.length && cps[pos]! >= 0x30 && cps[pos]! <= 0x39) pos++;
    return pos === start ? undefined : Number(String.fromCodePoint(...cps.slice(start, pos)));
  };

  /** After a backslash: a class (ranges) or one code point. */
  const escape = (inClass: boolean): Ranges | number => {
    const at = pos - 1;
    const c = cps[pos++];
    if (c === undefined) return fail('pattern ends with a backslash', at);
    const ch = String.fromCodePoint(c);
    switch (ch) {
      case 'd':
        return DIGIT;
      case 'D':
        return complement(DIGIT);
      case 'w':
        return WORD;
      case 'W':
        return complement(WORD);
      case 's':
        return SPACE;
      case 'S':
        return complement(SPACE);
      case 'n':
        return 0x0a;
      case 'r':
        return 0x0d;
      case 't':
        return 0x09;
      case 'f':
        return 0x0c;
      case 'v':
        return 0x0b;
      case '0':
        if (cps[pos] !== undefined && cps[pos]! >= 0x30 && cps[pos]! <= 0x39) return fail('octal escapes are not supported', at);
        return 0;
      case 'x':
        return readHex(2);
      case 'u':
        if (eat('{')) {
          const start = pos;
          while (pos < cps.length && cps[pos] !== 0x7d) pos++;
          const v = parseInt(String.fromCodePoint(...cps.slice(start, pos)), 16);
          if (!eat('}') || Number.isNaN(v) || v > 0x10ffff) fail('bad \\u{…} escape', at);
          return v;
        }
        {
          const hi = readHex(4);
          // A surrogate pair written as two \u escapes is one character.
          if (hi >= 0xd800 && hi < 0xdc00 && cps[pos] === 0x5c && cps[pos + 1] === 0x75) {
            const save = pos;
            pos += 2;
            const lo = readHex(4);
            if (lo >= 0xdc00 && lo < 0xe000) return 0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00);
            pos = save;
          }
          return hi;
        }
      case 'c': {
        const l = cps[pos];
        if (l === undefined || !/[A-Za-z]/.test(String.fromCodePoint(l))) return fail('bad \\c escape', at);
        pos++;
        return l % 32;
      }
      case 'b':
        if (inClass) return 0x08;
        return fail('word boundaries (\\b) are not supported by a constraint automaton', at);
      case 'B':
        return fail('word boundaries (\\B) are not supported by a constraint automaton', at);
      case 'p':
      case 'P':
        return fail('Unicode property escapes (\\p{…}) are not supported', at);
      case 'k':
        return fail('named backreferences are not supported', at);
      default:
        if (c >= 0x31 && c <= 0x39) return fail('backreferences are not supported', at);
        return c;
    }
  };

  const charClass = (): Node => {
    const negate = eat('^');
    const ranges: Ranges = [];
    let first = true;
    for (;;) {
      const c = cps[pos];
      if (c === undefined) return fail('unterminated character class');
      if (c === 0x5d && !first) {
        pos++;
        break;
      }
      if (c === 0x5d && first) {
        // `[]` matches nothing and `[^]` anything in JS.
        pos++;
        return negate ? cls([[0, 0x10ffff]]) : NOTHING;
      }
      first = false;
      pos++;
      let lo: Ranges | number = c === 0x5c ? escape(true) : c;
      if (typeof lo === 'number' && cps[pos] === 0x2d && cps[pos + 1] !== undefined && cps[pos + 1] !== 0x5d) {
        pos++;
        const c2 = cps[pos++]!;
        const hi: Ranges | number = c2 === 0x5c ? escape(true) : c2;
        if (typeof hi !== 'number') return fail('a class escape cannot end a range');
        if (hi < lo) return fail('range out of order in character class');
        ranges.push([lo, hi]);
        continue;
      }
      if (typeof lo === 'number') ranges.push([lo, lo]);
      else ranges.push(...lo);
    }
    return cls(ranges, negate);
  };

  const atom = (): Node | undefined => {
    const at = pos;
    const c = peek();
    if (c === undefined) return undefined;
    const ch = String.fromCodePoint(c);
    switch (ch) {
      case '|':
      case ')':
        return undefined;
      case '(': {
        pos++;
        if (eat('?')) {
          if (eat(':')) {
            // non-capturing
          } else if (cps[pos] === 0x3c && cps[pos + 1] !== 0x3d && cps[pos + 1] !== 0x21) {
            pos++;
            while (pos < cps.length && cps[pos] !== 0x3e) pos++;
            if (!eat('>')) fail('unterminated group name', at);
          } else return fail('lookaround and inline flags are not supported', at);
        }
        const inner = alternation();
        if (!eat(')')) fail('missing )', at);
        return inner;
      }
      case '[':
        pos++;
        return charClass();
      case '.':
        pos++;
        return opts.dotAll ? cls([[0, 0x10ffff]]) : cls(LINE_TERMINATORS, true);
      case '\\': {
        pos++;
        const e = escape(false);
        return typeof e === 'number' ? cls([[e, e]]) : cls(e);
      }
      case '^':
        if (pos === 0) {
          pos++;
          return EMPTY;
        }
        return fail('^ is only supported at the start (the whole output must match anyway)');
      case '$':
        if (pos === cps.length - 1) {
          pos++;
          return EMPTY;
        }
        return fail('$ is only supported at the end (the whole output must match anyway)');
      case '*':
      case '+':
      case '?':
        return fail(`nothing to repeat before ${ch}`);
      case '{': {
        // A `{` that does not start a valid quantifier is a literal (Annex B).
        pos++;
        return cls([[c, c]]);
      }
      default:
        pos++;
        return cls([[c, c]]);
    }
  };

  const quantified = (): Node | undefined => {
    let node = atom();
    if (node === undefined) return undefined;
    for (;;) {
      const at = pos;
      let min: number;
      let max: number;
      if (eat('*')) [min, max] = [0, Infinity];
      else if (eat('+')) [min, max] = [1, Infinity];
      else if (eat('?')) [min, max] = [0, 1];
      else if (peek() === 0x7b) {
        pos++;
        const m = readInt();
        if (m === undefined) {
          pos = at;
          return node;
        }
        min = m;
        max = m;
        if (eat(',')) max = readInt() ?? Infinity;
        if (!eat('}')) {
          pos = at;
          return node;
        }
        if (max < min) fail('numbers out of order in {} quantifier', at);
        // Refused here, before x{n} is unrolled into n copies (limits.ts).
        if (min > MAX_REPEAT || (max !== Infinity && max > MAX_REPEAT)) fail(`{} quantifier count ${max === Infinity ? min : max} is above the limit of ${MAX_REPEAT}`, at);
      } else return node;
      eat('?'); // lazy: the same language
      node = rep(node, min, max);
    }
  };

  const sequence = (): Node => {
    const items: Node[] = [];
    for (;;) {
      const q = quantified();
      if (q === undefined) break;
      items.push(q);
    }
    return seq(...items);
  };

  const alternation = (): Node => {
    const items = [sequence()];
    while (eat('|')) items.push(sequence());
    return items.length === 1 ? items[0]! : alt(...items);
  };

  const node = alternation();
  if (pos < cps.length) fail(cps[pos] === 0x29 ? 'unmatched )' : 'unexpected character');
  return node;
}
