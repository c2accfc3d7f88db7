/**
 * The normaliser (normalizer.cc Normalize) for models with the identity rules: dummy prefix,
 * whitespace escaping, optional removal of extra whitespace. Models with a precompiled
 * normalisation map are refused when the tokenizer loads.
 */
import type { PrefixMatcher } from './prefix-matcher.js';
import { SPACE_SYMBOL, codePointLength } from './spans.js';

export interface NormalizerFlags {
  readonly addDummyPrefix: boolean;
  readonly removeExtraWhitespaces: boolean;
  readonly escapeWhitespaces: boolean;
  readonly treatWhitespaceAsSuffix: boolean;
}

export function normalize(text: string, f: NormalizerFlags, matcher: PrefixMatcher): string {
  if (text === '') return '';
  const ws = f.escapeWhitespaces ? SPACE_SYMBOL : ' ';
  if (!f.removeExtraWhitespaces) {
    // Each unit (a user-defined symbol or a character) is copied with ' ' escaped, so the units
    // do not matter here.
    const body = f.escapeWhitespaces ? text.replaceAll(' ', SPACE_SYMBOL) : text;
    if (!f.addDummyPrefix) return body;
    return f.treatWhitespaceAsSuffix ? body + ws : ws + body;
  }
  // remove_extra_whitespaces works on units: a user-defined symbol is one unit even if it holds
  // spaces, so the units must be found as the library finds them.
  const n = text.length;
  const unitEnd = (pos: number): number => {
    if (!matcher.empty && matcher.startsSymbol[text.charCodeAt(pos)]) {
      const len = matcher.match(text, pos, n);
      if (len > 0) return pos + len;
    }
    return pos + codePointLength(text, pos);
  };
  let pos = 0;
  while (pos < n && text.charCodeAt(pos) === 0x20 && unitEnd(pos) === pos + 1) pos++;
  if (pos === n) return '';
  let out = f.addDummyPrefix && !f.treatWhitespaceAsSuffix ? ws : '';
  let prevSpace = true;
  while (pos < n) {
    const end = unitEnd(pos);
    let s = pos;
    if (prevSpace) while (s < end && text.charCodeAt(s) === 0x20) s++;
    if (s < end) {
      const unit = text.slice(s, end);
      out += f.escapeWhitespaces ? unit.replaceAll(' ', SPACE_SYMBOL) : unit;
      prevSpace = text.charCodeAt(end - 1) === 0x20;
    }
    pos = end;
  }
  while (out.endsWith(ws)) out = out.slice(0, out.length - ws.length);
  if (f.addDummyPrefix && f.treatWhitespaceAsSuffix) out += ws;
  return out;
}
