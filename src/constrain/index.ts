/**
 * Constrained decoding: a constraint is a state machine over the decoded byte stream that says,
 * at each step, which tokens may come next. Every kind (JSON Schema, any JSON object, GBNF
 * grammar, regex) compiles to one grammar form (grammar.ts), then to byte DFAs joined by a stack
 * (automaton.ts), matched against a token trie (matcher.ts).
 *
 * The engine's loop: `const m = compiled.matcher()`; per step `m.fillMask(mask)`, sample among
 * set bits, `m.accept(id)`; stop when the EOS token is picked or `!m.canContinue()`.
 */
import { ConstraintError } from '../errors.js';
import { compileGrammar, type Automaton } from './automaton.js';
import type { Grammar } from './grammar.js';
import { parseGbnf } from './gbnf.js';
import { jsonObjectGrammar, jsonSchemaToGrammar } from './json-schema.js';
import { Matcher, StackTable, TokenIndex } from './matcher.js';
import { regexToNode } from './regex.js';
import { vocabularyFromBytes, vocabularyFromTokenizer, type ConstraintVocabulary } from './vocabulary.js';

export { ConstraintError } from '../errors.js';
export { vocabularyFromBytes, vocabularyFromTokenizer, type ConstraintVocabulary };
export type { Grammar } from './grammar.js';

export type ConstraintSpec =
  /** JSON Schema (draft 2020-12 / 07 subset); the output is one JSON value valid under it. */
  | { kind: 'json-schema'; schema: object | boolean }
  /** Any JSON object. */
  | { kind: 'json-object' }
  /** A llama.cpp GBNF grammar; `root` defaults to "root". */
  | { kind: 'grammar'; gbnf: string; root?: string }
  /** A JavaScript regular expression the whole output must match. */
  | { kind: 'regex'; pattern: string };

export interface ConstraintMatcher {
  /**
   * Writes the allowed next tokens into `mask` (a bitset over the vocabulary, ceil(V/32) words;
   * bit set = allowed). The EOS bit is set iff the text so far is a complete match. With
   * `budget` (tokens left, this one included), only tokens after which a complete match is still
   * reachable in the tokens left are allowed, so a `max_tokens` cut still yields valid output.
   */
  fillMask(mask: Uint32Array, budget?: number): void;
  /** Advances by one token; throws ConstraintError if the token was not allowed. */
  accept(tokenId: number): void;
  /** Advances by text (e.g. text the engine inserts itself); throws ConstraintError if it does not fit. */
  acceptText(text: string): void;
  /** The text so far is a complete match. */
  isComplete(): boolean;
  /** Some non-EOS token may still follow (false e.g. after a JSON object's final brace). */
  canContinue(): boolean;
  /** Bytes on the shortest way to a complete match: enough tokens to close the output (byte-fallback pieces make every byte a token). */
  minTokensToComplete(): number;
  clone(): ConstraintMatcher;
}

export interface CompiledConstraint {
  matcher(): ConstraintMatcher;
  readonly vocab: ConstraintVocabulary;
  /** Mask words: ceil(vocab.size / 32). */
  readonly maskWords: number;
  /** Statistics for the bench: automaton states and how many have a cached token index. */
  stats(): { states: number; indexed: number; classes: number };
}

/** The grammar a spec compiles to (exposed for tests and tooling). */
export function constraintGrammar(spec: ConstraintSpec): Grammar {
  if (spec === null || typeof spec !== 'object') throw new ConstraintError('a constraint must be an object with a "kind"');
  switch (spec.kind) {
    case 'regex':
      if (typeof spec.pattern !== 'string') throw new ConstraintError('regex constraint needs a string "pattern"');
      return { rules: new Map([['root', regexToNode(spec.pattern)]]), root: 'root' };
    case 'grammar':
      if (typeof spec.gbnf !== 'string') throw new ConstraintError('grammar constraint needs a string "gbnf"');
      return parseGbnf(spec.gbnf, spec.root ?? 'root');
    case 'json-schema':
      return jsonSchemaToGrammar(spec.schema);
    case 'json-object':
      return jsonObjectGrammar();
    default:
      throw new ConstraintError(`unknown constraint kind ${JSON.stringify((spec as { kind?: unknown }).kind)} (expected json-schema, json-object, grammar or regex)`);
  }
}

class Compiled implements CompiledConstraint {
  readonly maskWords: number;
  private readonly index: TokenIndex;
  constructor(readonly automaton: Automaton, readonly vocab: ConstraintVocabulary) {
    this.index = new TokenIndex(automaton, vocab);
    this.maskWords = this.index.words;
  }
  matcher(): ConstraintMatcher {
    return new Matcher(this.index, new StackTable(this.automaton.G));
  }
  stats(): { states: number; indexed: number; classes: number } {
    return { states: this.automaton.G, indexed: this.index.built, classes: this.automaton.C };
  }
}

const compiledCache = new WeakMap<ConstraintVocabulary, Map<string, Compiled>>();
const CACHE_PER_VOCAB = 32;

/**
 * Compiles a constraint for a vocabulary. Throws ConstraintError naming the bad part of the
 * schema/grammar/regex. Compiled constraints (and their per-state token indexes, the costly part)
 * are cached per vocabulary by spec, so repeated requests with one schema reuse the work.
 */
export function compileConstraint(spec: ConstraintSpec, vocab: ConstraintVocabulary): CompiledConstraint {
  let key: string;
  try {
    key = JSON.stringify(spec);
  } catch {
    throw new ConstraintError('the constraint cannot be serialised (a cyclic object?)');
  }
  let perVocab = compiledCache.get(vocab);
  if (!perVocab) compiledCache.set(vocab, (perVocab = new Map()));
  const hit = perVocab.get(key);
  if (hit) {
    perVocab.delete(key);
    perVocab.set(key, hit);
    return hit;
  }
  let compiled: Compiled;
  try {
    compiled = new Compiled(compileGrammar(constraintGrammar(spec)), vocab);
  } catch (err) {
    // The parsers recurse on nesting: a hostile pattern nested thousands deep ends here, not in a crash.
    if (err instanceof RangeError) throw new ConstraintError(`the ${spec.kind} is nested too deeply or too large to compile (${err.message})`);
    throw err;
  }
  perVocab.set(key, compiled);
  if (perVocab.size > CACHE_PER_VOCAB) perVocab.delete(perVocab.keys().next().value!);
  return compiled;
}
