/**
 * Generation options → a constraint for one sequence: `jsonSchema`, `jsonObject`, `grammar` or
 * `regex` become a ConstraintSpec, compiled once per tokenizer and spec (src/constrain caches it),
 * and each sequence gets a fresh matcher of its own.
 */
import { compileConstraint, vocabularyFromTokenizer, type CompiledConstraint, type ConstraintSpec } from '../constrain/index.js';
import type { Tokenizer } from '../tokenizer/sentencepiece.js';
import type { GenerateOptions } from './sequence.js';

/** The constraint the options ask for, if any (validateGenerateOptions has made sure there is at most one). */
export function constraintSpec(o: GenerateOptions): ConstraintSpec | undefined {
  if (o.jsonSchema !== undefined) return { kind: 'json-schema', schema: o.jsonSchema };
  if (o.jsonObject) return { kind: 'json-object' };
  if (o.grammar !== undefined) return { kind: 'grammar', gbnf: o.grammar, ...(o.grammarRoot !== undefined ? { root: o.grammarRoot } : {}) };
  if (o.regex !== undefined) return { kind: 'regex', pattern: o.regex };
  return undefined;
}

/** Compiles a spec for a tokenizer's vocabulary; throws ConstraintError naming the bad part. */
export function compileFor(spec: ConstraintSpec, tokenizer: Tokenizer): CompiledConstraint {
  return compileConstraint(spec, vocabularyFromTokenizer(tokenizer));
}
