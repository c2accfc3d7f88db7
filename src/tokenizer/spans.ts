/**
 * How the tokenizer looks at text: the ▁ that stands for a space inside pieces, code points in a
 * UTF-16 string, and the span hash that lets piece tables and the segment cache look text up in
 * place, without slicing it.
 */

/** U+2581 LOWER ONE EIGHTH BLOCK: how SentencePiece writes a space inside pieces. */
export const SPACE_SYMBOL = '\u2581';
export const SPACE_CODE = 0x2581;

/** FNV-1a over the UTF-16 code units of text[s, e). */
export function spanHash(text: string, s: number, e: number): number {
  let h = 0x811c9dc5;
  for (let i = s; i < e; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h;
}

/** Code units (1 or 2) of the code point at s[i]; a lone surrogate counts as one. */
export function codePointLength(s: string, i: number): number {
  const c = s.charCodeAt(i);
  if (c >= 0xd800 && c < 0xdc00 && i + 1 < s.length) {
    const d = s.charCodeAt(i + 1);
    if (d >= 0xdc00 && d < 0xe000) return 2;
  }
  return 1;
}

/** ES2024 String methods (Node 20 has them; the ES2022 lib typings do not). */
export interface WellFormedString {
  toWellFormed(): string;
}
