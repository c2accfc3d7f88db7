/** What every converter takes and gives, whatever it writes. */

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
