import { ConstraintError } from '../errors.js';
import type { Grammar } from './grammar.js';
export function jsonSchemaToGrammar(_schema: unknown): Grammar {
  throw new ConstraintError('JSON Schema constraints are not implemented yet');
}
export function jsonObjectGrammar(): Grammar {
  throw new ConstraintError('json-object constraints are not implemented yet');
}
