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
    'Run `grok-ts <command> --help` for a command\'s options.',
  ].join('\n');
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof UsageError) return EXIT.usage;
  if (err instanceof AbortError) return EXIT.interrupted;
  if (err instanceof UnsupportedError) return EXIT.unsupported;
  if (err instanceof FileAccessError) return EXIT.noInput;
  if (err instanceof FormatError && /readable file|ENOENT|no such file/i.test(err.message)) return EXIT.noInput;
  if (err instanceof FormatError || err instanceof WeightError || err instanceof ConfigError) return EXIT.dataErr;
  if (err instanceof ContextLengthError) return EXIT.dataErr;
  return EXIT.failure;
}

export async function main(
  argv: string[],
  io: { stdout?: NodeJS.WritableStream; stderr?: NodeJS.WritableStream & { isTTY?: boolean }; stdin?: NodeJS.ReadableStream } = {},
): Promise<number> {
  const stdout = io.stdout ?? process.stdout;
  const stderr = io.stderr ?? process.stderr;
  const stdin = io.stdin ?? process.stdin;
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    stdout.write(topHelp() + '\n');
    return name === undefined ? EXIT.usage : EXIT.ok;
  }
  if (name === '--version' || name === '-v') {
    stdout.write(`grok-ts ${await version()}\n`);
    return EXIT.ok;
  }
  const cmd: Command | undefined = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    stderr.write(`grok-ts: unknown command "${name}"\n\n${topHelp()}\n`);
    return EXIT.usage;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    stdout.write(cmd.help.trimEnd() + '\n');
    return EXIT.ok;
  }
  const controller = new AbortController();
  const onSignal = (): void => {
    if (controller.signal.aborted) process.exit(EXIT.interrupted); // second Ctrl-C: leave now
    controller.abort(new AbortError('interrupted'));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    let parsed;
    try {
      parsed = parseArgs({ args: rest, options: cmd.options, allowPositionals: cmd.allowPositionals ?? false, strict: true });
    } catch (err) {
      throw new UsageError(`${(err as Error).message}\n\n${cmd.help.trimEnd()}`);
    }
    return await cmd.run({
      values: parsed.values as Record<string, string | boolean | string[] | undefined>,
      positionals: parsed.positionals,
      stdout,
      stderr,
      stdin,
      signal: controller.signal,
    });
  } catch (err) {
    const code = exitCodeFor(err);
    if (err instanceof GrokError) stderr.write(`grok-ts ${name}: ${err.message}\n`);
    else stderr.write(`grok-ts ${name}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return code;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

async function version(): Promise<string> {
  const { readFile } = await import('node:fs/promises');
  const pkg = JSON.parse(await readFile(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}
