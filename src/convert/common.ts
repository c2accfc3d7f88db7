/** What every converter takes and gives, whatever it writes, and how it runs. */

export interface ConvertCommon {
  /** Largest output file, in bytes of data (default: the format's own). */
  readonly splitMaxBytes?: number;
  /** Called after every chunk with bytes written so far and the output's total. */
  readonly onProgress?: (done: number, total: number) => void;
  readonly signal?: AbortSignal;
  /** Called with the output file names before anything is written (e.g. to refuse overwriting). */
  readonly beforeWrite?: (files: readonly string[]) => void;
}

export interface ConvertOutput {
  readonly files: readonly string[];
  readonly bytes: number;
}

/**
 * Runs a conversion written as steps (a generator that yields after every chunk it writes),
 * giving the event loop a turn between steps so a signal handler (Ctrl-C) can abort it.
 */
export async function runSteps<T>(steps: Generator<void, T, void>): Promise<T> {
  for (;;) {
    const r = steps.next();
    if (r.done) return r.value;
    await new Promise<void>((resolve) => setImmediate(resolve));
  }
}
