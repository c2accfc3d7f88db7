/**
 * JSON Schema (draft 2020-12 / draft-07 subset) → grammar producing JSON text valid under the
 * schema. Layout: properties in schema order; whitespace bounded (none, one space, or a newline
 * and up to 20 spaces/tabs) after `{`, `[`, `,`, `:` and after each value, so a model cannot
 * loop on spaces; nothing after the root value, so the engine stops at its final brace.
 *
 * Choices that keep every output valid rather than every valid value producible:
 *   - additionalProperties defaults to false (as llama.cpp); allowed extra keys are
 *     [A-Za-z0-9_-]{1,32}, never a declared name, after the declared properties;
 *   - `pattern` is a regex over the string's characters, minus `"`, `\` and controls;
 *   - numeric bounds are applied digit by digit; non-integer bounds are rounded inward;
 *   - strings never use \u escapes of surrogates (lengths then count code points as Ajv does).
 * Unsupported keywords (uniqueItems, not, if/then/else, patternProperties, multipleOf, …) raise
 * ConstraintError naming the keyword and its JSON pointer; annotations are ignored.
 */
import { ConstraintError } from '../errors.js';
import { EMPTY, NOTHING, alt, byteRange, literal, opt, ref, rep, seq, star, utf8Class, type Grammar, type Node } from './grammar.js';
import { MAX_ARRAY_ITEMS, MAX_STRING_LENGTH } from './limits.js';
import { regexToNode } from './regex.js';

type Schema = Record<string, unknown> | boolean;

/** Keywords that only annotate: ignored. */
const ANNOTATIONS = new Set([
  '$schema', '$id', '$comment', '$anchor', '$dynamicAnchor', '$vocabulary', 'title', 'description', 'default', 'examples', 'example',
  'readOnly', 'writeOnly', 'deprecated', 'contentMediaType', 'contentEncoding', 'discriminator', 'xml', 'externalDocs', 'strict',
]);
/** Keywords this converter applies. */
const SUPPORTED = new Set([
  'type', 'enum', 'const', 'properties', 'required', 'additionalProperties', 'items', 'prefixItems', 'additionalItems',
  'minItems', 'maxItems', 'minLength', 'maxLength', 'pattern', 'format', 'minimum', 'maximum', 'exclusiveMinimum',
  'exclusiveMaximum', 'anyOf', 'oneOf', 'allOf', '$ref', '$defs', 'definitions', 'nullable', 'unevaluatedProperties',
]);

/** Optional whitespace: none, one space, or a newline and up to 20 spaces/tabs (llama.cpp's `space`). */
const WS: Node = opt(alt(literal(' '), seq(literal('\n'), rep({ k: 'byte', ranges: [0x09, 0x09, 0x20, 0x20] }, 0, 20))));
/** Before the root value: at most one space or newline (a leading "▁" piece is common). */
const LEAD: Node = opt({ k: 'byte', ranges: [0x0a, 0x0a, 0x20, 0x20] });

const HEX: Node = { k: 'byte', ranges: [0x30, 0x39, 0x41, 0x46, 0x61, 0x66] };
const HEX_LOWER: Node = { k: 'byte', ranges: [0x30, 0x39, 0x61, 0x66] };
const DIGIT: Node = byteRange(0x30, 0x39);
const DIGIT19: Node = byteRange(0x31, 0x39);

/** One character of a JSON string: unescaped (no quote, backslash, control) or an escape; no surrogate \u escapes. */
const STRING_CHAR: Node = alt(
  utf8Class([[0x00, 0x1f], [0x22, 0x22], [0x5c, 0x5c], [0x7f, 0x7f]], true),
  seq(
    literal('\\'),
    alt(
      { k: 'byte', ranges: [0x22, 0x22, 0x2f, 0x2f, 0x5c, 0x5c, 0x62, 0x62, 0x66, 0x66, 0x6e, 0x6e, 0x72, 0x72, 0x74, 0x74] },
      seq(literal('u'), alt(seq({ k: 'byte', ranges: [0x30, 0x39, 0x41, 0x43, 0x61, 0x63, 0x45, 0x46, 0x65, 0x66] }, HEX, HEX, HEX), seq({ k: 'byte', ranges: [0x44, 0x44, 0x64, 0x64] }, byteRange(0x30, 0x37), HEX, HEX))),
    ),
  ),
);
/** Characters a `pattern` may produce raw inside a JSON string. */
const PATTERN_EXCLUDE: [number, number][] = [[0x00, 0x1f], [0x22, 0x22], [0x5c, 0x5c], [0x7f, 0x7f]];
const KEY_RANGES = [0x2d, 0x2d, 0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a];
const KEY_CHAR: Node = { k: 'byte', ranges: KEY_RANGES };
/** Integers stay within 15 digits so JSON.parse reads them exactly. */
const MAX_INT_DIGITS = 15;

const QUOTE = literal('"');

function pointerEscape(s: string): string {
  return s.replaceAll('~', '~0').replaceAll('/', '~1');
}

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

// --------------------------------------------------------------------------------------------
// Integer ranges, digit by digit
// --------------------------------------------------------------------------------------------

/** Decimal strings x ≤ y of equal length n (leading digit may be 0 only when n = 1 or inside). */
function sameLength(x: string, y: string): Node {
  if (x.length === 0) return EMPTY;
  const x0 = x.charCodeAt(0);
  const y0 = y.charCodeAt(0);
  if (x.length === 1) return byteRange(x0, y0);
  const n0 = x.length - 1;
  // [x0-y0] followed by any n digits: keeps the size linear in the digit count.
  if (/^0*$/.test(x.slice(1)) && /^9*$/.test(y.slice(1))) return seq(byteRange(x0, y0), rep(DIGIT, n0, n0));
  if (x0 === y0) return seq(byteRange(x0), sameLength(x.slice(1), y.slice(1)));
  const n = x.length - 1;
  const parts: Node[] = [seq(byteRange(x0), sameLength(x.slice(1), '9'.repeat(n)))];
  if (x0 + 1 <= y0 - 1) parts.push(seq(byteRange(x0 + 1, y0 - 1), rep(DIGIT, n, n)));
  parts.push(seq(byteRange(y0), sameLength('0'.repeat(n), y.slice(1))));
  return alt(...parts);
}

/** Non-negative integers in [a, b] without leading zeros; b = Infinity means up to MAX_INT_DIGITS digits. */
function natRange(a: number, b: number): Node {
  const maxValue = 10 ** MAX_INT_DIGITS - 1;
  if (b > maxValue) b = maxValue;
  if (a > b) return NOTHING;
  const sa = String(a);
  const sb = String(b);
  if (sa.length === sb.length) return sameLength(sa, sb);
  const parts: Node[] = [sameLength(sa, '9'.repeat(sa.length))];
  for (let len = sa.length + 1; len < sb.length; len++) parts.push(seq(DIGIT19, rep(DIGIT, len - 1, len - 1)));
  parts.push(sameLength('1' + '0'.repeat(sb.length - 1), sb));
  return alt(...parts);
}

/** Integers in [lo, hi] (either may be ±Infinity). */
function intRange(lo: number, hi: number): Node {
  const parts: Node[] = [];
  if (hi >= 0) parts.push(natRange(Math.max(lo, 0), hi));
  if (lo < 0) parts.push(seq(literal('-'), natRange(Math.max(1, hi < 0 ? -hi : 1), -lo)));
  return alt(...parts);
}

const FRACTION: Node = seq(literal('.'), rep(DIGIT, 1, 15));
/** A fraction that is not all zeros. */
const NONZERO_FRACTION: Node = seq(literal('.'), rep(DIGIT, 0, 14), DIGIT19);
const ZERO_FRACTION: Node = opt(seq(literal('.'), rep(literal('0'), 1, 15)));

/**
 * Decimal numbers v with lo ⊲ v ⊲ hi, integer bounds, ⊲ being < or ≤ as `loStrict`/`hiStrict`.
 * A magnitude "k.f" is split by its integer part k: inside the bounds any fraction, at a bound
 * only the fractions that stay inside.
 */
function decimalRange(lo: number, loStrict: boolean, hi: number, hiStrict: boolean): Node {
  const maxValue = 10 ** MAX_INT_DIGITS - 1;
  const parts: Node[] = [];
  // Non-negative values k.f.
  if (hi >= 0) {
    if (lo >= 0) {
      if (lo === hi) {
        if (!loStrict && !hiStrict) parts.push(seq(natRange(lo, lo), ZERO_FRACTION));
      } else parts.push(seq(natRange(lo, lo), loStrict ? NONZERO_FRACTION : opt(FRACTION)));
    }
    const kLo = lo >= 0 ? lo + 1 : 0;
    const kHi = hi === Infinity ? maxValue : hi - 1;
    if (kLo <= kHi) parts.push(seq(natRange(kLo, kHi), opt(FRACTION)));
    if (hi !== Infinity && hi > lo && !hiStrict) parts.push(seq(natRange(hi, hi), ZERO_FRACTION));
  }
  // Negative values −m, m = j.f > 0: v ⊳ lo ⇔ m ⊲ −lo; v ⊲ hi ⇔ m ⊳ −hi when hi < 0.
  if (lo < 0) {
    const mLo = hi < 0 ? -hi : 0;
    const mLoStrict = hi < 0 ? hiStrict : true;
    const mHi = lo === -Infinity ? Infinity : -lo;
    const mHiStrict = loStrict;
    const neg: Node[] = [];
    if (mLo === mHi) {
      if (!mLoStrict && !mHiStrict) neg.push(seq(natRange(mLo, mLo), ZERO_FRACTION));
    } else neg.push(seq(natRange(mLo, mLo), mLoStrict ? NONZERO_FRACTION : opt(FRACTION)));
    const jLo = mLo + 1;
    const jHi = mHi === Infinity ? maxValue : mHi - 1;
    if (jLo <= jHi) neg.push(seq(natRange(jLo, jHi), opt(FRACTION)));
    if (mHi !== Infinity && mHi > mLo && !mHiStrict) neg.push(seq(natRange(mHi, mHi), ZERO_FRACTION));
    if (neg.length) parts.push(seq(literal('-'), alt(...neg)));
  }
  return parts.length ? alt(...parts) : NOTHING;
}

// --------------------------------------------------------------------------------------------
// String formats
// --------------------------------------------------------------------------------------------

function digits2(lo: number, hi: number): Node {
  return natRangePadded(lo, hi, 2);
}
/** Zero-padded numbers lo..hi of exactly `width` digits. */
function natRangePadded(lo: number, hi: number, width: number): Node {
  return sameLength(String(lo).padStart(width, '0'), String(hi).padStart(width, '0'));
}

function dateNode(): Node {
  const year = rep(DIGIT, 4, 4);
  const m31 = alt(literal('01'), literal('03'), literal('05'), literal('07'), literal('08'), literal('10'), literal('12'));
  const m30 = alt(literal('04'), literal('06'), literal('09'), literal('11'));
  // Leap years: divisible by 4, except centuries not divisible by 400.
  const leap = alt(
    seq(DIGIT, DIGIT, alt(seq(literal('0'), byteRange(0x34), ), seq(literal('0'), byteRange(0x38)), seq({ k: 'byte', ranges: [0x32, 0x32, 0x34, 0x34, 0x36, 0x36, 0x38, 0x38] }, { k: 'byte', ranges: [0x30, 0x30, 0x34, 0x34, 0x38, 0x38] }), seq({ k: 'byte', ranges: [0x31, 0x31, 0x33, 0x33, 0x35, 0x35, 0x37, 0x37, 0x39, 0x39] }, { k: 'byte', ranges: [0x32, 0x32, 0x36, 0x36] }))),
    seq(alt(seq({ k: 'byte', ranges: [0x30, 0x30, 0x32, 0x32, 0x34, 0x34, 0x36, 0x36, 0x38, 0x38] }, { k: 'byte', ranges: [0x30, 0x30, 0x34, 0x34, 0x38, 0x38] }), seq({ k: 'byte', ranges: [0x31, 0x31, 0x33, 0x33, 0x35, 0x35, 0x37, 0x37, 0x39, 0x39] }, { k: 'byte', ranges: [0x32, 0x32, 0x36, 0x36] })), literal('00')),
  );
  return alt(
    seq(year, literal('-'), alt(seq(m31, literal('-'), digits2(1, 31)), seq(m30, literal('-'), digits2(1, 30)), seq(literal('02-'), digits2(1, 28)))),
    seq(leap, literal('-02-29')),
  );
}

function timeNode(): Node {
  const offset = alt(literal('Z'), seq({ k: 'byte', ranges: [0x2b, 0x2b, 0x2d, 0x2d] }, digits2(0, 23), literal(':'), digits2(0, 59)));
  return seq(digits2(0, 23), literal(':'), digits2(0, 59), literal(':'), digits2(0, 59), opt(seq(literal('.'), rep(DIGIT, 1, 6))), offset);
}

const ALNUM_LOWER: Node = { k: 'byte', ranges: [0x30, 0x39, 0x61, 0x7a] };
function label(): Node {
  return seq(ALNUM_LOWER, opt(seq(rep({ k: 'byte', ranges: [0x2d, 0x2d, 0x30, 0x39, 0x61, 0x7a] }, 0, 20), ALNUM_LOWER)));
}
function hostname(): Node {
  return seq(label(), rep(seq(literal('.'), label()), 0, 4), literal('.'), rep(byteRange(0x61, 0x7a), 2, 6));
}

/** Format grammars and the code point lengths their outputs can have. */
function formatNode(format: string): { node: Node; min: number; max: number } | undefined {
  const hexes = (n: number) => rep(HEX_LOWER, n, n);
  switch (format) {
    case 'date':
      return { node: dateNode(), min: 10, max: 10 };
    case 'time':
      return { node: timeNode(), min: 9, max: 21 };
    case 'date-time':
      return { node: seq(dateNode(), literal('T'), timeNode()), min: 20, max: 32 };
    case 'uuid':
      return { node: seq(hexes(8), literal('-'), hexes(4), literal('-'), hexes(4), literal('-'), hexes(4), literal('-'), hexes(12)), min: 36, max: 36 };
    case 'email': {
      const atom = rep({ k: 'byte', ranges: [0x30, 0x39, 0x61, 0x7a] }, 1, 20);
      const local = seq(atom, rep(seq({ k: 'byte', ranges: [0x2b, 0x2b, 0x2d, 0x2e, 0x5f, 0x5f] }, atom), 0, 2));
      return { node: seq(local, literal('@'), hostname()), min: 6, max: 184 };
    }
    case 'hostname':
      return { node: hostname(), min: 4, max: 121 };
    case 'ipv4': {
      const octet = natRange(0, 255);
      return { node: seq(octet, literal('.'), octet, literal('.'), octet, literal('.'), octet), min: 7, max: 15 };
    }
    case 'uri': {
      const path = rep({ k: 'byte', ranges: [0x2d, 0x2f, 0x30, 0x39, 0x41, 0x5a, 0x5f, 0x5f, 0x61, 0x7a, 0x7e, 0x7e] }, 0, 60);
      return { node: seq(literal('http'), opt(literal('s')), literal('://'), hostname(), opt(seq(literal('/'), path))), min: 11, max: 190 };
    }
    default:
      return undefined;
  }
}

// --------------------------------------------------------------------------------------------
// The converter
// --------------------------------------------------------------------------------------------

/** Rules for any JSON value (used for `{}`, `true`, extra property values and json-object). */
function addAnyValueRules(rules: Map<string, Node>, origin: Map<string, string>): void {
  if (rules.has('json-value')) return;
  const number = seq(opt(literal('-')), alt(literal('0'), seq(DIGIT19, rep(DIGIT, 0, MAX_INT_DIGITS - 1))), opt(FRACTION), opt(seq({ k: 'byte', ranges: [0x45, 0x45, 0x65, 0x65] }, opt({ k: 'byte', ranges: [0x2b, 0x2b, 0x2d, 0x2d] }), rep(DIGIT, 1, 2))));
  const string = seq(QUOTE, star(STRING_CHAR), QUOTE);
  rules.set('json-value', alt(ref('json-object'), ref('json-array'), string, number, literal('true'), literal('false'), literal('null')));
  rules.set('json-object', seq(literal('{'), WS, opt(seq(string, WS, literal(':'), WS, ref('json-value'), WS, star(seq(literal(','), WS, string, WS, literal(':'), WS, ref('json-value'), WS)))), literal('}')));
  rules.set('json-array', seq(literal('['), WS, opt(seq(ref('json-value'), WS, star(seq(literal(','), WS, ref('json-value'), WS)))), literal(']')));
  for (const r of ['json-value', 'json-object', 'json-array']) origin.set(r, `built-in rule ${r}`);
}

export function jsonObjectGrammar(): Grammar {
  const rules = new Map<string, Node>();
  const origin = new Map<string, string>();
  addAnyValueRules(rules, origin);
  rules.set('root', seq(LEAD, ref('json-object')));
  return { rules, root: 'root', origin };
}

class Converter {
  readonly rules = new Map<string, Node>();
  readonly origin = new Map<string, string>();
  /** Rule of each $ref target pointer. */
  private readonly refRules = new Map<string, string>();
  private counter = 0;

  constructor(private readonly root: Schema) {}

  fail(pointer: string, msg: string): never {
    throw new ConstraintError(msg, `JSON schema ${pointer}`);
  }

  private newRule(hint: string, pointer: string): string {
    const name = `${hint.replace(/[^A-Za-z0-9-]+/g, '-').slice(0, 40) || 'r'}-${this.counter++}`;
    this.origin.set(name, `JSON schema ${pointer}`);
    return name;
  }

  /** A rule for the schema at `pointer`, so large or recursive parts get their own frame. */
  rule(schema: unknown, pointer: string, hint: string): Node {
    const name = this.newRule(hint, pointer);
    this.rules.set(name, NOTHING); // placeholder against self-reference while building
    this.rules.set(name, this.value(schema, pointer));
    return ref(name);
  }

  resolve(refStr: string, pointer: string): { schema: unknown; pointer: string } {
    if (!refStr.startsWith('#')) this.fail(pointer, `$ref ${JSON.stringify(refStr)}: only local references (#/…) are supported`);
    const path = refStr.slice(1);
    if (path !== '' && !path.startsWith('/')) this.fail(pointer, `$ref ${JSON.stringify(refStr)}: anchors are not supported, use a JSON pointer`);
    let cur: unknown = this.root;
    for (const raw of path === '' ? [] : path.slice(1).split('/')) {
      let key: string;
      try {
        key = decodeURIComponent(raw).replaceAll('~1', '/').replaceAll('~0', '~');
      } catch {
        this.fail(pointer, `$ref ${JSON.stringify(refStr)}: ${JSON.stringify(raw)} is not a valid percent-encoded pointer segment`);
      }
      if (Array.isArray(cur)) cur = /^(0|[1-9]\d*)$/.test(key) ? cur[Number(key)] : undefined;
      else if (isObject(cur)) cur = Object.hasOwn(cur, key) ? cur[key] : undefined;
      else cur = undefined;
      if (cur === undefined) this.fail(pointer, `$ref ${JSON.stringify(refStr)} points to nothing`);
    }
    return { schema: cur, pointer: refStr };
  }

  refRule(refStr: string, pointer: string): Node {
    let name = this.refRules.get(refStr);
    if (name === undefined) {
      const target = this.resolve(refStr, pointer);
      name = this.newRule(`ref-${refStr.split('/').pop() ?? 'root'}`, target.pointer);
      this.refRules.set(refStr, name);
      this.rules.set(name, NOTHING);
      this.rules.set(name, this.value(target.schema, target.pointer));
    }
    return ref(name);
  }

  /** The JSON text of a value valid under `schema` (no surrounding whitespace). */
  value(schema: unknown, pointer: string): Node {
    if (schema === true) return this.any();
    if (schema === false) this.fail(pointer, 'schema false allows no value');
    if (!isObject(schema)) this.fail(pointer, `a schema must be an object or a boolean, found ${JSON.stringify(schema)}`);
    for (const key of Object.keys(schema)) {
      if (!SUPPORTED.has(key) && !ANNOTATIONS.has(key) && !key.startsWith('x-')) {
        this.fail(`${pointer}/${pointerEscape(key)}`, `keyword "${key}" is not supported by constrained decoding`);
      }
    }
    if (schema.unevaluatedProperties !== undefined && schema.unevaluatedProperties !== false) {
      this.fail(`${pointer}/unevaluatedProperties`, 'keyword "unevaluatedProperties" is only supported as false');
    }
    const withNull = (n: Node): Node => (schema.nullable === true ? alt(n, literal('null')) : n);
    if (typeof schema.$ref === 'string') {
      const others = Object.keys(schema).filter((k) => k !== '$ref' && k !== '$defs' && k !== 'definitions' && !ANNOTATIONS.has(k));
      if (others.length) this.fail(pointer, `$ref beside ${others.map((k) => `"${k}"`).join(', ')} is not supported`);
      return withNull(this.refRule(schema.$ref, pointer));
    }
    if ('const' in schema) return literal(JSON.stringify(schema.const));
    if (Array.isArray(schema.enum)) {
      if (schema.enum.length === 0) this.fail(`${pointer}/enum`, 'an empty enum allows no value');
      return alt(...schema.enum.map((v) => literal(JSON.stringify(v))));
    }
    if (Array.isArray(schema.allOf)) return withNull(this.value(this.mergeAllOf(schema, pointer), pointer));
    for (const key of ['anyOf', 'oneOf'] as const) {
      const list = schema[key];
      if (list === undefined) continue;
      if (!Array.isArray(list) || list.length === 0) this.fail(`${pointer}/${key}`, `${key} must be a non-empty array`);
      const { [key]: _drop, ...rest } = schema;
      // Keywords beside anyOf apply to every branch: fold them in.
      const base = Object.keys(rest).some((k) => !ANNOTATIONS.has(k) && k !== '$defs' && k !== 'definitions') ? rest : undefined;
      return withNull(alt(...list.map((s, i) => {
        const p = `${pointer}/${key}/${i}`;
        if (base && isObject(s) && s.$ref === undefined) return this.rule({ ...base, ...s }, p, key);
        if (base && isObject(s)) return this.rule({ allOf: [base, s] }, p, key);
        return this.rule(s, p, key);
      })));
    }
    let types: string[];
    if (typeof schema.type === 'string') types = [schema.type];
    else if (Array.isArray(schema.type)) types = schema.type.map(String);
    else if (schema.type === undefined) types = this.inferTypes(schema);
    else this.fail(`${pointer}/type`, 'type must be a string or an array of strings');
    if (schema.nullable === true && !types.includes('null')) types.push('null');
    if (types.length === 0) return this.any();
    return alt(...types.map((t) => this.typed(t, schema, pointer)));
  }

  private inferTypes(s: Record<string, unknown>): string[] {
    const out: string[] = [];
    if (['properties', 'required', 'additionalProperties'].some((k) => k in s)) out.push('object');
    if (['items', 'prefixItems', 'minItems', 'maxItems'].some((k) => k in s)) out.push('array');
    if (['minLength', 'maxLength', 'pattern', 'format'].some((k) => k in s)) out.push('string');
    if (['minimum', 'maximum', 'exclusiveMinimum', 'exclusiveMaximum'].some((k) => k in s)) out.push('number');
    return out;
  }

  private mergeAllOf(schema: Record<string, unknown>, pointer: string): Record<string, unknown> {
    const { allOf, ...rest } = schema;
    const parts = [rest, ...(allOf as unknown[]).map((s, i) => {
      let cur = s;
      let p = `${pointer}/allOf/${i}`;
      while (isObject(cur) && typeof cur.$ref === 'string') {
        const r = this.resolve(cur.$ref, p);
        cur = r.schema;
        p = r.pointer;
      }
      if (cur === true) return {};
      if (!isObject(cur)) this.fail(p, 'allOf members must be schemas');
      return cur;
    })];
    const out: Record<string, unknown> = {};
    const props: Record<string, unknown> = {};
    const required = new Set<string>();
    for (const part of parts) {
      for (const [k, v] of Object.entries(part)) {
        if (k === 'properties' && isObject(v)) {
          for (const [pk, pv] of Object.entries(v)) {
            if (pk in props) this.fail(`${pointer}/allOf`, `property "${pk}" is defined in several allOf members; merging them is not supported`);
            props[pk] = pv;
          }
        } else if (k === 'required' && Array.isArray(v)) v.forEach((r) => required.add(String(r)));
        else if (k === 'allOf') this.fail(`${pointer}/allOf`, 'nested allOf is not supported');
        else if (k in out && JSON.stringify(out[k]) !== JSON.stringify(v) && !ANNOTATIONS.has(k)) {
          this.fail(`${pointer}/allOf`, `keyword "${k}" differs between allOf members; merging them is not supported`);
        } else out[k] = v;
      }
    }
    if (Object.keys(props).length) out.properties = props;
    if (required.size) out.required = [...required];
    return out;
  }

  private any(): Node {
    addAnyValueRules(this.rules, this.origin);
    return ref('json-value');
  }

  /** A length or item count; above `limit` (limits.ts) it is refused before anything is unrolled. */
  private count(schema: Record<string, unknown>, key: string, pointer: string, limit: number, unit: string): number | undefined {
    const v = schema[key];
    if (v === undefined) return undefined;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0) this.fail(`${pointer}/${key}`, `${key} must be a non-negative integer`);
    if (v > limit) {
      const hint = key.startsWith('max') ? '; leave it out for no upper bound' : '';
      this.fail(`${pointer}/${key}`, `${key} ${v} is above the limit of ${limit} ${unit} (a counted bound is unrolled into automaton states${hint})`);
    }
    return v;
  }

  private typed(type: string, s: Record<string, unknown>, pointer: string): Node {
    switch (type) {
      case 'null':
        return literal('null');
      case 'boolean':
        return alt(literal('true'), literal('false'));
      case 'string':
        return this.string(s, pointer);
      case 'integer':
      case 'number':
        return this.number(type, s, pointer);
      case 'object':
        return this.object(s, pointer);
      case 'array':
        return this.array(s, pointer);
      default:
        return this.fail(`${pointer}/type`, `unknown type "${type}"`);
    }
  }

  private string(s: Record<string, unknown>, pointer: string): Node {
    const minLength = this.count(s, 'minLength', pointer, MAX_STRING_LENGTH, 'characters') ?? 0;
    const maxLength = this.count(s, 'maxLength', pointer, MAX_STRING_LENGTH, 'characters') ?? Infinity;
    if (minLength > maxLength) this.fail(pointer, `minLength ${minLength} exceeds maxLength ${maxLength}`);
    if (s.format !== undefined) {
      if (typeof s.format !== 'string') this.fail(`${pointer}/format`, 'format must be a string');
      const f = formatNode(s.format);
      if (!f) this.fail(`${pointer}/format`, `format "${s.format}" is not supported (supported: date, time, date-time, uuid, email, hostname, ipv4, uri)`);
      if (s.pattern !== undefined) this.fail(`${pointer}/pattern`, 'pattern together with format is not supported');
      if (minLength > f.min || maxLength < f.max) this.fail(pointer, `minLength/maxLength together with format "${s.format}" is not supported`);
      return seq(QUOTE, f.node, QUOTE);
    }
    if (s.pattern !== undefined) {
      if (typeof s.pattern !== 'string') this.fail(`${pointer}/pattern`, 'pattern must be a string');
      if (s.minLength !== undefined || s.maxLength !== undefined) this.fail(`${pointer}/pattern`, 'pattern together with minLength/maxLength is not supported');
      // A JSON Schema pattern matches anywhere unless anchored.
      let p = s.pattern;
      const startAnchored = p.startsWith('^');
      if (startAnchored) p = p.slice(1);
      const endAnchored = /(^|[^\\])(\\\\)*\$$/.test(p);
      if (endAnchored) p = p.slice(0, -1);
      p = `${startAnchored ? '' : '[^]*'}(?:${p})${endAnchored ? '' : '[^]*'}`;
      return seq(QUOTE, regexToNode(p, { exclude: PATTERN_EXCLUDE, where: `JSON schema ${pointer}/pattern` }), QUOTE);
    }
    return seq(QUOTE, rep(STRING_CHAR, minLength, maxLength), QUOTE);
  }

  private bound(s: Record<string, unknown>, key: string, pointer: string): number | boolean | undefined {
    const v = s[key];
    if (v === undefined) return undefined;
    if (typeof v === 'boolean' && (key === 'exclusiveMinimum' || key === 'exclusiveMaximum')) return v; // draft-04
    if (typeof v !== 'number' || !Number.isFinite(v)) this.fail(`${pointer}/${key}`, `${key} must be a number`);
    return v;
  }

  private number(type: string, s: Record<string, unknown>, pointer: string): Node {
    const minimum = this.bound(s, 'minimum', pointer) as number | undefined;
    const maximum = this.bound(s, 'maximum', pointer) as number | undefined;
    const exMin = this.bound(s, 'exclusiveMinimum', pointer);
    const exMax = this.bound(s, 'exclusiveMaximum', pointer);
    // Bounds as (value, strict), tightest wins; draft-04 booleans make minimum/maximum strict.
    let lo = -Infinity;
    let loStrict = false;
    let hi = Infinity;
    let hiStrict = false;
    const setLo = (v: number, strict: boolean) => {
      if (v > lo || (v === lo && strict)) [lo, loStrict] = [v, strict];
    };
    const setHi = (v: number, strict: boolean) => {
      if (v < hi || (v === hi && strict)) [hi, hiStrict] = [v, strict];
    };
    if (minimum !== undefined) setLo(minimum, exMin === true);
    if (maximum !== undefined) setHi(maximum, exMax === true);
    if (typeof exMin === 'number') setLo(exMin, true);
    if (typeof exMax === 'number') setHi(exMax, true);
    const unbounded = lo === -Infinity && hi === Infinity;
    if (type === 'integer') {
      if (unbounded) return seq(opt(literal('-')), natRange(0, Infinity));
      // Integer bounds: round inward.
      const ilo = lo === -Infinity ? -Infinity : loStrict ? Math.floor(lo) + 1 : Math.ceil(lo);
      const ihi = hi === Infinity ? Infinity : hiStrict ? Math.ceil(hi) - 1 : Math.floor(hi);
      if (ilo > ihi) this.fail(pointer, `no integer lies between the bounds ${lo} and ${hi}`);
      return intRange(ilo, ihi);
    }
    if (unbounded) {
      return seq(opt(literal('-')), natRange(0, Infinity), opt(FRACTION), opt(seq({ k: 'byte', ranges: [0x45, 0x45, 0x65, 0x65] }, opt({ k: 'byte', ranges: [0x2b, 0x2b, 0x2d, 0x2d] }), rep(DIGIT, 1, 2))));
    }
    // Non-integer bounds are rounded inward to integers (the output stays valid).
    if (lo !== -Infinity && !Number.isInteger(lo)) [lo, loStrict] = [Math.ceil(lo), false];
    if (hi !== Infinity && !Number.isInteger(hi)) [hi, hiStrict] = [Math.floor(hi), false];
    if (lo > hi || (lo === hi && (loStrict || hiStrict))) this.fail(pointer, 'the numeric bounds leave no value this converter can write');
    return decimalRange(lo, loStrict, hi, hiStrict);
  }

  private object(s: Record<string, unknown>, pointer: string): Node {
    if (s.properties !== undefined && !isObject(s.properties)) this.fail(`${pointer}/properties`, 'properties must be an object');
    // No prototype: a property named `constructor` or `__proto__` is a property like any other.
    const props: Record<string, unknown> = Object.assign(Object.create(null) as Record<string, unknown>, (s.properties as Record<string, unknown> | undefined) ?? {});
    const required = new Set<string>();
    if (s.required !== undefined) {
      if (!Array.isArray(s.required)) this.fail(`${pointer}/required`, 'required must be an array of strings');
      for (const r of s.required) required.add(String(r));
    }
    const extra = s.additionalProperties;
    // Required but undeclared: written like a declared property with any value.
    for (const r of required) if (!Object.hasOwn(props, r)) props[r] = extra === undefined || typeof extra === 'boolean' ? true : extra;
    interface Item {
      node: Node;
      required: boolean;
      repeat: boolean;
    }
    const items: Item[] = [];
    for (const [name, sub] of Object.entries(props)) {
      const p = `${pointer}/properties/${pointerEscape(name)}`;
      const kv = seq(literal(JSON.stringify(name)), WS, literal(':'), WS, this.rule(sub, p, name), WS);
      items.push({ node: kv, required: required.has(name), repeat: false });
    }
    if (extra !== undefined && extra !== false) {
      const valueNode = extra === true ? this.any() : this.rule(extra, `${pointer}/additionalProperties`, 'additional');
      const key = seq(QUOTE, notOneOf(Object.keys(props)), QUOTE);
      items.push({ node: seq(key, WS, literal(':'), WS, valueNode, WS), required: false, repeat: true });
    }
    const sep = seq(literal(','), WS);
    // rest(i): items i.. each preceded by a comma (something came before).
    const restMemo = new Map<number, Node>();
    const rest = (i: number): Node => {
      if (i >= items.length) return EMPTY;
      let r = restMemo.get(i);
      if (!r) {
        const it = items[i]!;
        const one = seq(sep, it.node);
        r = seq(it.repeat ? star(one) : it.required ? one : opt(one), rest(i + 1));
        restMemo.set(i, r);
      }
      return r;
    };
    // The first item present is some j with only optional items before it.
    const firsts: Node[] = [];
    let allOptional = true;
    for (let j = 0; j < items.length; j++) {
      const it = items[j]!;
      firsts.push(seq(it.node, it.repeat ? star(seq(sep, it.node)) : EMPTY, rest(j + 1)));
      if (it.required) {
        allOptional = false;
        break;
      }
    }
    const body = allOptional ? opt(alt(...firsts)) : alt(...firsts);
    return seq(literal('{'), WS, firsts.length ? body : EMPTY, literal('}'));
  }

  private array(s: Record<string, unknown>, pointer: string): Node {
    const minItems = this.count(s, 'minItems', pointer, MAX_ARRAY_ITEMS, 'items') ?? 0;
    const maxItems = this.count(s, 'maxItems', pointer, MAX_ARRAY_ITEMS, 'items') ?? Infinity;
    if (minItems > maxItems) this.fail(pointer, `minItems ${minItems} exceeds maxItems ${maxItems}`);
    let prefix: unknown[] = [];
    let rest: unknown = s.items ?? true;
    if (Array.isArray(s.prefixItems)) {
      prefix = s.prefixItems;
      rest = s.items ?? true;
    } else if (Array.isArray(s.items)) {
      prefix = s.items; // draft-07 tuple form
      rest = s.additionalItems ?? true;
    }
    const prefixKey = Array.isArray(s.prefixItems) ? 'prefixItems' : 'items';
    const prefixNodes = prefix.map((p, i) => seq(this.rule(p, `${pointer}/${prefixKey}/${i}`, 'item'), WS));
    const restAllowed = rest !== false;
    const restNode = restAllowed ? seq(this.rule(rest, `${pointer}/${Array.isArray(s.items) ? 'additionalItems' : 'items'}`, 'item'), WS) : NOTHING;
    const sep = seq(literal(','), WS);
    // Element i (0-based) is prefix i or a rest item; elements ≥ minItems are optional.
    const maxTotal = restAllowed ? maxItems : Math.min(maxItems, prefix.length);
    if (minItems > maxTotal) this.fail(pointer, `minItems ${minItems} cannot be met with ${prefix.length} tuple items and no others`);
    const element = (i: number): Node => (i < prefixNodes.length ? prefixNodes[i]! : restNode);
    // Tail from element i on, each preceded by a comma.
    const tail = (i: number): Node => {
      if (i >= maxTotal) return EMPTY;
      if (i >= prefixNodes.length) {
        const needed = Math.max(0, minItems - i);
        const extraMax = maxTotal === Infinity ? Infinity : maxTotal - i;
        return rep(seq(sep, restNode), needed, extraMax);
      }
      const one = seq(sep, element(i), tail(i + 1));
      return i < minItems ? one : opt(one);
    };
    let body: Node;
    if (maxTotal === 0) body = EMPTY;
    else {
      const first = seq(element(0), tail(1));
      body = minItems > 0 ? first : opt(first);
    }
    return seq(literal('['), WS, body, literal(']'));
  }
}

/** Key text (inside quotes) from [A-Za-z0-9_-]{1,32} that is none of `names`. */
function notOneOf(names: readonly string[]): Node {
  const MAX = 32;
  interface TrieNode {
    children: Map<number, TrieNode>;
    end: boolean;
  }
  const root: TrieNode = { children: new Map(), end: false };
  for (const n of names) {
    if (!/^[A-Za-z0-9_-]*$/.test(n)) continue; // names outside the key alphabet cannot collide
    let cur = root;
    for (const c of n) {
      const code = c.charCodeAt(0);
      let next = cur.children.get(code);
      if (!next) cur.children.set(code, (next = { children: new Map(), end: false }));
      cur = next;
    }
    cur.end = true;
  }
  const keyRanges = KEY_RANGES;
  // After `depth` characters matching trie node t: the rest of a key of total length 1..MAX.
  const build = (t: TrieNode, depth: number): Node => {
    const parts: Node[] = [];
    const left = MAX - depth;
    if (depth > 0 && !t.end) parts.push(EMPTY);
    if (left > 0) {
      const other: number[] = [];
      for (let i = 0; i < keyRanges.length; i += 2) {
        for (let c = keyRanges[i]!; c <= keyRanges[i + 1]!; c++) if (!t.children.has(c)) other.push(c, c);
      }
      if (other.length) parts.push(seq({ k: 'byte', ranges: other }, rep(KEY_CHAR, 0, left - 1)));
      for (const [c, child] of t.children) parts.push(seq(byteRange(c), build(child, depth + 1)));
    }
    return parts.length ? alt(...parts) : NOTHING;
  };
  return build(root, 0);
}

export function jsonSchemaToGrammar(schema: unknown): Grammar {
  if (typeof schema !== 'boolean' && !isObject(schema)) throw new ConstraintError('a JSON schema must be an object or a boolean', 'JSON schema #');
  const c = new Converter(schema as Schema);
  const body = c.value(schema, '#');
  c.rules.set('root', seq(LEAD, body));
  c.origin.set('root', 'JSON schema #');
  return { rules: c.rules, root: 'root', origin: c.origin };
}
