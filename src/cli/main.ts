/** `grok-ts` entry: dispatch to a command, map typed errors to exit codes and one-line messages. */
import { parseArgs } from 'node:util';
import { AbortError, ConfigError, ContextLengthError, FileAccessError, FormatError, GrokError, UnsupportedError, UsageError, WeightError } from '../errors.js';
import { EXIT, type Command } from './command.js';
import { COMMANDS } from './commands/index.js';

function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length));
  return [
    'grok-ts: run Grok-1 (and any model of its architecture) from TypeScript.',
    '',
    'Usage: grok-ts <command> [options]',
    '',
    'Commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `grok-ts <command> --help` (or `grok-ts help <command>`) for a command\'s options.',
  ].join('\n');
}

/**
 * The exit code of each error type, decided by type alone (never by message text). First match
 * wins, so a subclass comes before its parent: FileAccessError (66) is a FormatError (65).
 * Anything else, ours or not, is a failure (1).
 */
const EXIT_BY_TYPE: ReadonlyArray<readonly [abstract new (...args: never[]) => GrokError, number]> = [
  [UsageError, EXIT.usage],
  [AbortError, EXIT.interrupted],
  [UnsupportedError, EXIT.unsupported],
  [FileAccessError, EXIT.noInput],
  [FormatError, EXIT.dataErr],
  [WeightError, EXIT.dataErr],
  [ConfigError, EXIT.dataErr],
  [ContextLengthError, EXIT.dataErr],
];

export function exitCodeFor(err: unknown): number {
  for (const [type, code] of EXIT_BY_TYPE) if (err instanceof type) return code;
  return EXIT.failure;
}

// ---------------------------------------------------------------------------------------------
// flags: every mistake gets one line that names the flag, a suggestion where one is close, and a
// pointer to --help (not the whole help text)

/** Edit distance (insertions, deletions, substitutions, adjacent swaps). */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `candidates` to `given`, when it is close enough to be what was meant. */
export function closest(given: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestScore = Infinity;
  for (const c of candidates) {
    // a prefix (`--temp`) is as good as one typo
    const score = c.startsWith(given) && given.length >= 3 ? 1 : editDistance(given, c);
    if (score < bestScore) {
      best = c;
      bestScore = score;
    }
  }
  return bestScore <= Math.max(2, Math.floor(given.length / 3)) ? best : undefined;
}

/** Parses a command's flags; a mistake is a UsageError of one line. */
export function parseFlags(cmd: Command, args: string[]): { values: Record<string, string | boolean | string[] | undefined>; positionals: string[] } {
  const helpHint = `\`grok-ts ${cmd.name} --help\` lists the options`;
  // Not strict: the checks below give better messages than parseArgs's, and let a negative number be a value.
  const { values, positionals, tokens } = parseArgs({ args, options: cmd.options, allowPositionals: true, strict: false, tokens: true });
  for (const t of tokens) {
    if (t.kind === 'option-terminator') continue;
    if (t.kind === 'positional') {
      if (cmd.allowPositionals) continue;
      const hint = 'prompt' in cmd.options ? ` (did you mean --prompt ${JSON.stringify(t.value)}?)` : '';
      throw new UsageError(`unexpected argument ${JSON.stringify(t.value)}: ${cmd.name} takes only options${hint}; ${helpHint}`);
    }
    const spec = cmd.options[t.name];
    if (!spec) {
      const names = Object.entries(cmd.options).flatMap(([long, o]) => (t.rawName.startsWith('--') ? [`--${long}`] : o.short ? [`-${o.short}`] : []));
      const guess = closest(t.rawName, names);
      throw new UsageError(`unknown option ${t.rawName}${guess ? ` (did you mean ${guess}?)` : ''}; ${helpHint}`, t.name);
    }
    const flag = t.rawName.startsWith('--') ? t.rawName : `${t.rawName} (--${t.name})`;
    if (spec.type === 'boolean' && t.value !== undefined) throw new UsageError(`${flag} takes no value, got "${t.value}"`, t.name);
    if (spec.type === 'string') {
      if (t.value === undefined) throw new UsageError(`${flag} needs a value; ${helpHint}`, t.name);
      if (!t.inlineValue && t.value.length > 1 && t.value.startsWith('-') && Number.isNaN(Number(t.value))) {
        throw new UsageError(`${flag} needs a value, but is followed by the option ${t.value} (to give a value that starts with "-", write --${t.name}=${t.value})`, t.name);
      }
    }
  }
  return { values: values as Record<string, string | boolean | string[] | undefined>, positionals };
}

// ---------------------------------------------------------------------------------------------
// standard output going away: `grok-ts generate … | head -c 5` closes the pipe early. Like cat,
// the command then ends quietly (exit 0) instead of dying of an unhandled EPIPE.

interface OutputState {
  /** The first write error, once there was one. */
  error: NodeJS.ErrnoException | undefined;
  onError: (() => void) | undefined;
}

/** One listener per stream for its lifetime: errors after a command returned are absorbed too. */
const outputs = new WeakMap<NodeJS.WritableStream, OutputState>();

function watchOutput(stream: NodeJS.WritableStream): OutputState {
  let state = outputs.get(stream);
  if (!state) {
    const s: OutputState = { error: undefined, onError: undefined };
    stream.on('error', (err: NodeJS.ErrnoException) => {
      s.error ??= err;
      s.onError?.();
    });
    outputs.set(stream, s);
    state = s;
  }
  return state;
}

/** Whether an error means the reader went away (a closed pipe or socket). */
function isClosedPipe(err: NodeJS.ErrnoException | undefined): boolean {
  return err?.code === 'EPIPE' || err?.code === 'ERR_STREAM_DESTROYED' || err?.code === 'ECONNRESET';
}

/** A one-line report of an error that is not one of ours: a system error by its message, anything else as a bug. */
function describeUnexpected(err: unknown): string {
  const e = err as NodeJS.ErrnoException | undefined;
  if (process.env.GROK_TS_DEBUG) return `internal error: ${e?.stack ?? String(err)}`;
  if (e instanceof Error && typeof e.code === 'string' && typeof e.syscall === 'string') return e.message; // ENOSPC, EACCES, …
  const message = e instanceof Error ? `${e.name}: ${e.message}` : String(err);
  return `internal error: ${message.split('\n')[0]} (a bug in grok-ts; GROK_TS_DEBUG=1 prints the stack trace)`;
}

export async function main(
  argv: string[],
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream & { isTTY?: boolean }; stdin?: NodeJS.ReadableStream } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const stdin = io.stdin ?? process.stdin;
  const out = watchOutput(stdout);
  watchOutput(stderr); // a closed stderr must not crash a run either; there is nowhere to report it
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    stdout.write(topHelp() + '\n');
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    stdout.write(`grok-ts ${await version()}\n`);
    return EXIT.ok;
  }
  const helpOf = name === 'help' ? rest[0]! : undefined;
  const cmdName = helpOf ?? name;
  const cmd: Command | undefined = COMMANDS.find((c) => c.name === cmdName);
  if (!cmd) {
    const guess = closest(cmdName, COMMANDS.map((c) => c.name));
    stderr.write(`grok-ts: unknown command "${cmdName}"${guess ? ` (did you mean "${guess}"?)` : ''}; \`grok-ts --help\` lists the commands\n`);
    return EXIT.usage;
  }
  if (helpOf !== undefined || rest.includes('--help') || rest.includes('-h')) {
    stdout.write(cmd.help.trimEnd() + '\n');
    return EXIT.ok;
  }
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted); // second Ctrl-C: leave now
    controller.abort(new AbortError('interrupted'));
  };
  out.onError = () => controller.abort(new AbortError('standard output was closed'));
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const parsed = parseFlags(cmd, rest);
    const code = await cmd.run({
      values: parsed.values,
      positionals: parsed.positionals,
      stdout,
      stderr,
      stdin,
      signal: controller.signal,
    });
    return out.error ? outputFailed(out.error) : code;
  } catch (err) {
    if (out.error) return outputFailed(out.error);
    const code = exitCodeFor(err);
    if (err instanceof GrokError) stderr.write(`grok-ts ${name}: ${err.message}\n`);
    else stderr.write(`grok-ts ${name}: ${describeUnexpected(err)}\n`);
    return code;
  } finally {
    out.onError = undefined;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }

  /** Standard output failed mid-run: quietly done when the reader left, else say why. */
  function outputFailed(err: NodeJS.ErrnoException): number {
    if (isClosedPipe(err)) return EXIT.ok;
    stderr.write(`grok-ts ${name}: cannot write to standard output: ${err.message}\n`);
    return EXIT.failure;
  }
}

/**
 * For the `grok-ts` executable: an error that escapes every handler (a bug) is reported in one
 * line, like any other, instead of as a stack trace; GROK_TS_DEBUG=1 keeps Node's report.
 */
export function installFatalHandler(): void {
  if (process.env.GROK_TS_DEBUG) return;
  const fatal = (err: unknown): void => {
    try {
      process.stderr.write(`grok-ts: ${describeUnexpected(err)}\n`);
    } finally {
      process.exit(EXIT.failure);
    }
  };
  process.on('uncaughtException', fatal);
  process.on('unhandledRejection', fatal);
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
