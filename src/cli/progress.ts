/** A one-line progress bar with bytes, rate and ETA, drawn on standard error when it is a terminal (else, if asked, a plain line every few seconds). */

export function formatBytes(n: number): string {
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let u = 0;
  while (n >= 1000 && u < units.length - 1) {
    n /= 1000;
    u++;
  }
  return `${n.toFixed(u === 0 ? 0 : n < 10 ? 2 : 1)} ${units[u]}`;
}

function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--:--';
  const m = Math.floor(s / 60);
  const sec = Math.floor(s % 60);
  return m >= 60 ? `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m` : `${m}:${String(sec).padStart(2, '0')}`;
}

export class ProgressBar {
  private readonly start = performance.now();
  private lastDraw = 0;
  private lastLine: number;
  private drawn = false;
  private readonly enabled: boolean;
  /** Off a terminal: a plain line at most this often (0 = nothing off a terminal). */
  private readonly lineEveryMs: number;

  constructor(
    private readonly stream: NodeJS.WritableStream & { isTTY?: boolean; columns?: number },
    private readonly label: string,
    opts: { enabled?: boolean; lineEveryMs?: number } = {},
  ) {
    this.enabled = opts.enabled ?? stream.isTTY === true;
    this.lineEveryMs = opts.lineEveryMs ?? 0;
    this.lastLine = this.start;
  }

  update(done: number, total: number, force = false): void {
    const now = performance.now();
    const elapsed = (now - this.start) / 1000;
    const frac = total > 0 ? Math.min(1, done / total) : 1;
    const rate = elapsed > 0 ? done / elapsed : 0;
    const eta = rate > 0 ? (total - done) / rate : Infinity;
    if (!this.enabled) {
      // A log file or a pipe gets a line every few seconds instead of a redrawn bar.
      if (this.lineEveryMs > 0 && now - this.lastLine >= this.lineEveryMs && done < total) {
        this.lastLine = now;
        this.stream.write(`${this.label}: ${(frac * 100).toFixed(0)}% ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ETA ${formatSeconds(eta)}\n`);
      }
      return;
    }
    if (!force && now - this.lastDraw < 100 && done < total) return;
    this.lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - 60));
    const fill = Math.round(frac * width);
    const bar = `${'█'.repeat(fill)}${'░'.repeat(width - fill)}`;
    this.stream.write(`\r${this.label} ${bar} ${(frac * 100).toFixed(0).padStart(3)}% ${formatBytes(done)}/${formatBytes(total)} ${formatBytes(rate)}/s ETA ${formatSeconds(eta)}\x1b[K`);
    this.drawn = true;
  }

  /** Clears the line (the caller prints its own summary). */
  done(): void {
    if (this.drawn) this.stream.write('\r\x1b[K');
    this.drawn = false;
  }
}
