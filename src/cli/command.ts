/**
 * The one command framework: each command declares its flags (node:util parseArgs), its help
 * text and a run function over the public API. main.ts parses, dispatches and maps errors to exit
 * codes in one place.
 */
import type { ParseArgsConfig } from 'node:util';

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

export interface CommandContext {
  /** Parsed flag values (strings / booleans / string[] for `multiple`). */
  readonly values: Record<string, string | boolean | string[] | undefined>;
  readonly positionals: string[];
  readonly stdout: NodeJS.WritableStream;
  readonly stderr: NodeJS.WritableStream & { isTTY?: boolean };
  readonly stdin: NodeJS.ReadableStream;
  /** Aborted on Ctrl-C / SIGTERM; long-running commands stop cleanly when it fires. */
  readonly signal: AbortSignal;
}

export interface Command {
  readonly name: string;
  /** One line for `grok-ts --help`. */
  readonly summary: string;
  /** Full help for `grok-ts NAME --help`: usage line, then the flags. */
  readonly help: string;
  readonly options: OptionSpec;
  readonly allowPositionals?: boolean;
  /** Returns the exit code. Throws typed errors (errors.ts); main maps them. */
  run(ctx: CommandContext): Promise<number>;
}

/** Exit codes that mean something (sysexits-style). */
export const EXIT = {
  ok: 0,
  failure: 1, // generic runtime failure
  usage: 2, // bad flags or arguments
  dataErr: 65, // bad input file / data (FormatError, WeightError, ConfigError, ContextLengthError)
  noInput: 66, // a file that is missing or cannot be read as one (FileAccessError)
  unsupported: 69, // unsupported dtype / quant type / feature
  interrupted: 130, // Ctrl-C
} as const;

/** Reads a flag that must be a string. */
export function str(ctx: CommandContext, name: string): string | undefined {
  const v = ctx.values[name];
  if (v === undefined || typeof v === 'string') return v;
  if (Array.isArray(v)) return v[v.length - 1];
  return undefined;
}

import { UsageError } from '../errors.js';

/** Reads a numeric flag, checking it is finite and within [min, max] (and an integer when asked). */
export function num(
  ctx: CommandContext,
  name: string,
  opts: { min?: number; max?: number; integer?: boolean; /** What the flag takes, for every message (`a number from 0 (greedy) to 100`). */ describe?: string } = {},
): number | undefined {
  const raw = str(ctx, name);
  if (raw === undefined) return undefined;
  const v = Number(raw);
  const kind = opts.integer ? 'an integer' : 'a number';
  const fail = (fallback: string): never => {
    throw new UsageError(`--${name} must be ${opts.describe ?? fallback}, got ${JSON.stringify(raw)}`, name);
  };
  if (raw.trim() === '' || !Number.isFinite(v) || (opts.integer && !Number.isInteger(v))) fail(kind);
  if (opts.min !== undefined && v < opts.min) fail(`≥ ${opts.min}`);
  if (opts.max !== undefined && v > opts.max) fail(`≤ ${opts.max}`);
  return v;
}

/** Parses a comma-separated list of token ids (`5,6,7`). */
export function parseIds(raw: string, flag = 'ids'): number[] {
  const parts = raw.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (parts.length === 0) throw new UsageError(`--${flag} must list at least one token id`, flag);
  return parts.map((p) => {
    const v = Number(p);
    if (!Number.isSafeInteger(v) || v < 0) throw new UsageError(`--${flag}: "${p}" is not a token id (a non-negative integer)`, flag);
    return v;
  });
}
