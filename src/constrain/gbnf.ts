import { ConstraintError } from '../errors.js';
import type { Grammar } from './grammar.js';
export function parseGbnf(_text: string, _root: string): Grammar {
  throw new ConstraintError('GBNF grammars are not implemented yet');
}
