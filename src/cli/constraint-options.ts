/** `--json-schema FILE`, `--grammar FILE`, `--regex RE`: constrained output for generate and chat. */
import { FormatError, UsageError } from '../errors.js';
import { readRegularFile } from '../formats/tensor-file.js';
import type { GenerateOptions } from '../generate/sequence.js';
import { str, type CommandContext, type OptionSpec } from './command.js';

/** A schema or grammar file is text of a few kilobytes; anything far larger is not one. */
const MAX_CONSTRAINT_FILE_BYTES = 1024 * 1024;

export const CONSTRAINT_OPTIONS: OptionSpec = {
  'json-schema': { type: 'string' },
  grammar: { type: 'string' },
  regex: { type: 'string' },
};

export const CONSTRAINT_HELP = `Constrained output (at most one):
      --json-schema FILE       the output is one JSON value valid under this JSON Schema
      --grammar FILE           the output follows this llama.cpp GBNF grammar (rule "root")
      --regex RE               the whole output matches this regular expression
  Generation ends when the output is complete; if --max-tokens cuts it first, the finish reason
  is "length" (the constraint still closes it where it can within the budget).`;

function readText(file: string, what: string): string {
  return new TextDecoder('utf-8', { fatal: false }).decode(readRegularFile(file, MAX_CONSTRAINT_FILE_BYTES, what));
}

export function constraintOptions(ctx: CommandContext): Pick<GenerateOptions, 'jsonSchema' | 'grammar' | 'regex'> {
  const schemaFile = str(ctx, 'json-schema');
  const grammarFile = str(ctx, 'grammar');
  const regex = str(ctx, 'regex');
  if ([schemaFile, grammarFile, regex].filter((x) => x !== undefined).length > 1) {
    throw new UsageError('give at most one of --json-schema, --grammar and --regex', 'json-schema');
  }
  if (schemaFile !== undefined) {
    const text = readText(schemaFile, 'a JSON Schema file');
    let schema: unknown;
    try {
      schema = JSON.parse(text);
    } catch (err) {
      throw new FormatError({ file: schemaFile, expected: 'a JSON Schema (JSON)', found: (err as Error).message });
    }
    if (typeof schema !== 'boolean' && (typeof schema !== 'object' || schema === null || Array.isArray(schema))) {
      throw new FormatError({ file: schemaFile, expected: 'a JSON Schema: an object or a boolean', found: Array.isArray(schema) ? 'an array' : typeof schema });
    }
    return { jsonSchema: schema as object | boolean };
  }
  if (grammarFile !== undefined) return { grammar: readText(grammarFile, 'a GBNF grammar file') };
  if (regex !== undefined) return { regex };
  return {};
}
