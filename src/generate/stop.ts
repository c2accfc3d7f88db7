/**
 * Stop strings over streamed text: text is held back while it could still be the start of a stop
 * string, so a stop that spans several tokens is caught and never emitted.
 */
export class StopMatcher {
  private pending = '';

  constructor(private readonly stops: readonly string[]) {}

  /**
   * Adds decoded text. Returns what can be emitted now and, when a stop string completed, which
   * one (the text before it is emitted; the stop and anything after is dropped).
   */
  push(text: string): { emit: string; stop?: string } {
    this.pending += text;
    if (this.stops.length === 0) return this.take(this.pending.length);
    let first = -1;
    let which: string | undefined;
    for (const s of this.stops) {
      const at = this.pending.indexOf(s);
      if (at >= 0 && (first < 0 || at < first)) {
        first = at;
        which = s;
      }
    }
    if (which !== undefined) {
      const emit = this.pending.slice(0, first);
      this.pending = '';
      return { emit, stop: which };
    }
    return this.take(this.pending.length - this.heldBack());
  }

  /** Releases what was held back (at the end of generation without a stop). */
  flush(): string {
    return this.take(this.pending.length).emit;
  }

  /** Length of the longest suffix of pending that is a proper prefix of some stop string. */
  private heldBack(): number {
    let keep = 0;
    for (const s of this.stops) {
      for (let n = Math.min(s.length - 1, this.pending.length); n > keep; n--) {
        if (this.pending.endsWith(s.slice(0, n))) {
          keep = n;
          break;
        }
      }
    }
    return keep;
  }

  private take(n: number): { emit: string } {
    const emit = this.pending.slice(0, n);
    this.pending = this.pending.slice(n);
    return { emit };
  }
}
