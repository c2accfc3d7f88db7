/**
 * The one grammar form every constraint compiles to: named rules whose bodies are regular
 * expressions over bytes that may reference other rules. Regexes are one rule without references;
 * JSON Schema and GBNF become many. Text is UTF-8: a character class over code points becomes
 * an alternation of byte-range sequences (`utf8Class`), so the automata read bytes and a
 * multi-byte character may arrive split across tokens.
 */

export type Node =
  /** One byte in any of the ranges, flattened [lo0, hi0, lo1, hi1, …]. */
  | { readonly k: 'byte'; readonly ranges: readonly number[] }
  | { readonly k: 'seq'; readonly items: readonly Node[] }
  | { readonly k: 'alt'; readonly items: readonly Node[] }
  /** `max` may be Infinity. */
  | { readonly k: 'rep'; readonly item: Node; readonly min: number; readonly max: number }
  | { readonly k: 'ref'; readonly name: string };

export interface Grammar {
  readonly rules: ReadonlyMap<string, Node>;
  readonly root: string;
  /** Where each rule was defined, for errors (`line 3`, `#/$defs/item`). */
  readonly origin?: ReadonlyMap<string, string>;
}

export const EMPTY: Node = { k: 'seq', items: [] };
export const NOTHING: Node = { k: 'alt', items: [] };

export function seq(...items: Node[]): Node {
  const flat: Node[] = [];
  for (const it of items) {
    if (it.k === 'seq') flat.push(...it.items);
    else flat.push(it);
  }
  return flat.length === 1 ? flat[0]! : { k: 'seq', items: flat };
}

export function alt(...items: Node[]): Node {
  const flat: Node[] = [];
  for (const it of items) {
    if (it.k === 'alt') flat.push(...it.items);
    else flat.push(it);
  }
  return flat.length === 1 ? flat[0]! : { k: 'alt', items: flat };
}

export function rep(item: Node, min: number, max: number): Node {
  if (min === 1 && max === 1) return item;
  return { k: 'rep', item, min, max };
}

export const opt = (item: Node): Node => rep(item, 0, 1);
export const star = (item: Node): Node => rep(item, 0, Infinity);
export const plus = (item: Node): Node => rep(item, 1, Infinity);
export const ref = (name: string): Node => ({ k: 'ref', name });

export function byteRange(lo: number, hi: number = lo): Node {
  return { k: 'byte', ranges: [lo, hi] };
}

const encoder = new TextEncoder();

/** The exact UTF-8 bytes of `s`. */
export function literal(s: string): Node {
  return seq(...Array.from(encoder.encode(s), (b) => byteRange(b)));
}

export const MAX_CODE_POINT = 0x10ffff;

/** Sorts and merges code point ranges [lo, hi] (inclusive). */
export function normalizeRanges(ranges: readonly (readonly [number, number])[]): [number, number][] {
  const sorted = ranges.filter(([lo, hi]) => lo <= hi).map(([lo, hi]) => [lo, hi] as [number, number]).sort((a, b) => a[0] - b[0]);
  const out: [number, number][] = [];
  for (const r of sorted) {
    const last = out[out.length - 1];
    if (last && r[0] <= last[1] + 1) last[1] = Math.max(last[1], r[1]);
    else out.push(r);
  }
  return out;
}

/** The code points 0..U+10FFFF not in `ranges`. */
export function complementRanges(ranges: readonly (readonly [number, number])[]): [number, number][] {
  const out: [number, number][] = [];
  let next = 0;
  for (const [lo, hi] of normalizeRanges(ranges)) {
    if (lo > next) out.push([next, lo - 1]);
    next = hi + 1;
  }
  if (next <= MAX_CODE_POINT) out.push([next, MAX_CODE_POINT]);
  return out;
}

function utf8Bytes(cp: number): number[] {
  if (cp < 0x80) return [cp];
  if (cp < 0x800) return [0xc0 | (cp >> 6), 0x80 | (cp & 0x3f)];
  if (cp < 0x10000) return [0xe0 | (cp >> 12), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
  return [0xf0 | (cp >> 18), 0x80 | ((cp >> 12) & 0x3f), 0x80 | ((cp >> 6) & 0x3f), 0x80 | (cp & 0x3f)];
}

/**
 * Splits a code point range into runs whose UTF-8 encodings are products of byte ranges (the
 * utf8-ranges construction of RE2 / Rust's regex). Surrogates are skipped: UTF-8 cannot hold them.
 */
function utf8Sequences(lo: number, hi: number, out: [number, number][][]): void {
  if (lo > hi) return;
  if (lo < 0xd800 && hi > 0xdfff) {
    utf8Sequences(lo, 0xd7ff, out);
    utf8Sequences(0xe000, hi, out);
    return;
  }
  if (lo >= 0xd800 && lo <= 0xdfff) lo = 0xe000;
  if (hi >= 0xd800 && hi <= 0xdfff) hi = 0xd7ff;
  if (lo > hi) return;
  for (const max of [0x7f, 0x7ff, 0xffff]) {
    if (lo <= max && hi > max) {
      utf8Sequences(lo, max, out);
      utf8Sequences(max + 1, hi, out);
      return;
    }
  }
  if (hi <= 0x7f) {
    out.push([[lo, hi]]);
    return;
  }
  for (let i = 1; i < 4; i++) {
    const m = (1 << (6 * i)) - 1;
    if ((lo & ~m) !== (hi & ~m)) {
      if ((lo & m) !== 0) {
        utf8Sequences(lo, lo | m, out);
        utf8Sequences((lo | m) + 1, hi, out);
        return;
      }
      if ((hi & m) !== m) {
        utf8Sequences(lo, (hi & ~m) - 1, out);
        utf8Sequences(hi & ~m, hi, out);
        return;
      }
    }
  }
  const a = utf8Bytes(lo);
  const b = utf8Bytes(hi);
  out.push(a.map((x, i) => [x, b[i]!] as [number, number]));
}

/** One character (code point) from `ranges`, as UTF-8 bytes; `negate` takes the complement. */
export function utf8Class(ranges: readonly (readonly [number, number])[], negate = false): Node {
  const set = negate ? complementRanges(ranges) : normalizeRanges(ranges);
  const seqs: [number, number][][] = [];
  for (const [lo, hi] of set) utf8Sequences(lo, hi, seqs);
  // Single-byte runs merge into one byte node; multi-byte runs stay sequences.
  const single: number[] = [];
  const multi: Node[] = [];
  for (const s of seqs) {
    if (s.length === 1) single.push(s[0]![0], s[0]![1]);
    else multi.push(seq(...s.map(([l, h]) => byteRange(l, h))));
  }
  const items: Node[] = [];
  if (single.length) items.push({ k: 'byte', ranges: single });
  items.push(...multi);
  return items.length === 0 ? NOTHING : alt(...items);
}

/** Any one character except those listed (as code points). */
export function anyCharExcept(...cps: number[]): Node {
  return utf8Class(cps.map((c) => [c, c] as const), true);
}

/** Renders a grammar in GBNF-like text, for debugging and error messages. */
export function showNode(n: Node): string {
  switch (n.k) {
    case 'byte': {
      const parts: string[] = [];
      for (let i = 0; i < n.ranges.length; i += 2) {
        const lo = n.ranges[i]!;
        const hi = n.ranges[i + 1]!;
        const h = (b: number) => `\\x${b.toString(16).padStart(2, '0')}`;
        parts.push(lo === hi ? h(lo) : `${h(lo)}-${h(hi)}`);
      }
      return `[${parts.join('')}]`;
    }
    case 'seq':
      return n.items.length === 0 ? '""' : `(${n.items.map(showNode).join(' ')})`;
    case 'alt':
      return `(${n.items.map(showNode).join(' | ')})`;
    case 'rep':
      return `${showNode(n.item)}{${n.min},${n.max === Infinity ? '' : n.max}}`;
    case 'ref':
      return n.name;
  }
}
