/**
 * Typed errors. Each is thrown where bad input is first seen and carries the context a user needs
 * to fix it (file, byte offset, tensor, field). The library never exits the process: the CLI maps
 * these to exit codes and the server to OpenAI error bodies, each in one place.
 */

export class GrokError extends Error {
  /** Stable machine-readable code, e.g. `format_error`. */
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
    this.code = code;
  }
}

/** Bytes of a file do not match its format: truncated, corrupt, hostile. */
export class FormatError extends GrokError {
  readonly file: string;
  readonly offset: number | undefined;
  readonly expected: string;
  readonly found: string | undefined;
  constructor(args: { file: string; offset?: number; expected: string; found?: string; cause?: unknown }) {
    const where = args.offset === undefined ? args.file : `${args.file} at byte ${args.offset}`;
    super('format_error', `${where}: expected ${args.expected}${args.found === undefined ? '' : `, found ${args.found}`}`, {
      cause: args.cause,
    });
    this.file = args.file;
    this.offset = args.offset;
    this.expected = args.expected;
    this.found = args.found;
  }
}

/**
 * A path that cannot be read as the file it should be: missing, unreadable, a directory, or not a
 * regular file at all (a FIFO, a device such as /dev/zero, a socket). The CLI exits 66 on it.
 */
export class FileAccessError extends FormatError {}

/** A model configuration that cannot describe a Grok network; lists every problem at once. */
export class ConfigError extends GrokError {
  readonly problems: readonly string[];
  constructor(problems: readonly string[], source?: string) {
    super('config_error', `${source ? `${source}: ` : ''}invalid model config: ${problems.join('; ')}`);
    this.problems = problems;
  }
}

/** A tensor is missing or has a shape/dtype other than the config implies. */
export class WeightError extends GrokError {
  readonly tensor: string;
  readonly expected: string;
  readonly found: string;
  constructor(args: { tensor: string; expected: string; found: string; file?: string }) {
    super('weight_error', `${args.file ? `${args.file}: ` : ''}tensor ${args.tensor}: expected ${args.expected}, found ${args.found}`);
    this.tensor = args.tensor;
    this.expected = args.expected;
    this.found = args.found;
  }
}

/** A dtype / quantisation type / kernel layout this build does not implement. */
export class UnsupportedError extends GrokError {
  readonly what: string;
  constructor(what: string, message: string) {
    super('unsupported', message);
    this.what = what;
  }
}

/** Bad arguments from a caller (library options, CLI flags). `param` names the offending field. */
export class UsageError extends GrokError {
  readonly param: string | undefined;
  constructor(message: string, param?: string) {
    super('usage_error', message);
    this.param = param;
  }
}

/** The prompt (plus requested tokens) does not fit the model's context. */
export class ContextLengthError extends GrokError {
  readonly promptTokens: number;
  readonly contextLength: number;
  constructor(promptTokens: number, contextLength: number, detail = '') {
    super(
      'context_length_exceeded',
      `prompt has ${promptTokens} tokens but the model's context is ${contextLength} tokens${detail ? `; ${detail}` : ''}`,
    );
    this.promptTokens = promptTokens;
    this.contextLength = contextLength;
  }
}

/** The operation was cancelled through an AbortSignal. */
export class AbortError extends GrokError {
  constructor(message = 'the operation was aborted') {
    super('aborted', message);
  }
}

/** A scheduler's queue has no room for the sequences submitted: retry later (the server answers 429). */
export class QueueFullError extends GrokError {
  constructor(
    readonly queued: number,
    readonly limit: number,
    /** A hint for when to retry, in seconds. */
    readonly retryAfterSeconds = 1,
  ) {
    super('queue_full', `the queue is full: ${queued} sequences are waiting (limit ${limit}); retry later`);
  }
}

/** A sequence waited in the scheduler's queue longer than its limit without starting (the server answers 503). */
export class QueueTimeoutError extends GrokError {
  constructor(
    readonly waitedMs: number,
    readonly retryAfterSeconds = 1,
  ) {
    super('queue_timeout', `the request waited ${waitedMs} ms in the queue without starting`);
  }
}

/** A stream's reader took no output for longer than the scheduler's stall limit, so it was ended (the server answers 408). */
export class StreamStalledError extends GrokError {
  constructor(message: string) {
    super('stream_stalled', message);
  }
}

/**
 * A constraint (JSON Schema, GBNF grammar, regular expression) that cannot be compiled, or a token
 * the constraint does not allow. `where` names the bad part: a JSON pointer into the schema
 * (`#/properties/age/minimum`), a grammar `line:column`, a regex offset.
 */
export class ConstraintError extends GrokError {
  readonly where: string | undefined;
  constructor(message: string, where?: string) {
    super('constraint_error', where === undefined ? message : `${where}: ${message}`);
    this.where = where;
  }
}

/** Throws the signal's AbortError (or a fresh one) if it has fired. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) {
    const reason: unknown = signal.reason;
    throw reason instanceof AbortError ? reason : new AbortError();
  }
}

/** A memory budget below what the model needs resident at the least; `minimumBytes` says how much that is. */
export class MemoryBudgetError extends UsageError {
  readonly budgetBytes: number;
  readonly minimumBytes: number;
  constructor(budgetBytes: number, minimumBytes: number, detail: string) {
    super(`memory budget ${budgetBytes} bytes is below this model's minimum of ${minimumBytes} bytes (${(minimumBytes / 2 ** 30).toFixed(2)} GiB: ${detail})`, 'memoryBudget');
    this.budgetBytes = budgetBytes;
    this.minimumBytes = minimumBytes;
  }
}
