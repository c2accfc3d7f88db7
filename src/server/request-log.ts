/**
 * Request logs: one line per request on stderr (method, path, status, tokens, duration, client
 * address), as text for people or JSON for machines. Levels: a request answered below 500 is
 * `info`, a 5xx `warn`, an internal error `error`; `--log-level warn` keeps only the last two.
 */
export type LogFormat = 'text' | 'json';
export type LogLevel = 'debug' | 'info' | 'warn' | 'error';

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error'];

export interface RequestLogEntry {
  readonly method: string;
  readonly path: string;
  /** 0: the client left before an answer was sent. */
  readonly status: number;
  readonly promptTokens: number;
  readonly completionTokens: number;
  readonly durationMs: number;
  readonly client: string;
}

export interface LoggerOptions {
  readonly format?: LogFormat;
  readonly level?: LogLevel;
  /** Where lines go (each ends with a newline). */
  readonly write: (line: string) => void;
  /** Default: now. For tests. */
  readonly now?: () => Date;
}

export class Logger {
  readonly format: LogFormat;
  readonly level: LogLevel;

  constructor(private readonly options: LoggerOptions) {
    this.format = options.format ?? 'text';
    this.level = options.level ?? 'info';
  }

  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(this.level);
  }

  request(e: RequestLogEntry): void {
    const level: LogLevel = e.status >= 500 ? 'warn' : 'info';
    if (!this.enabled(level)) return;
    const durationMs = Math.round(e.durationMs * 10) / 10;
    if (this.format === 'json') {
      this.emit({ level, msg: 'request', method: e.method, path: e.path, status: e.status, prompt_tokens: e.promptTokens, completion_tokens: e.completionTokens, duration_ms: durationMs, client: e.client });
    } else {
      const tokens = e.promptTokens + e.completionTokens > 0 ? ` tokens=${e.promptTokens}+${e.completionTokens}` : '';
      this.line(level, `${e.method} ${e.path} ${e.status}${tokens} ${durationMs}ms ${e.client}`);
    }
  }

  message(level: LogLevel, msg: string): void {
    if (!this.enabled(level)) return;
    if (this.format === 'json') this.emit({ level, msg });
    else this.line(level, msg);
  }

  private time(): string {
    return (this.options.now?.() ?? new Date()).toISOString();
  }

  private emit(fields: Record<string, unknown>): void {
    this.options.write(JSON.stringify({ time: this.time(), ...fields }) + '\n');
  }

  private line(level: LogLevel, text: string): void {
    this.options.write(`${this.time()} ${level} ${text}\n`);
  }
}
