/** Bytes this process has fetched from the storage layer so far (Linux /proc/self/io read_bytes: page-cache hits excluded); NaN elsewhere. */
import * as fs from 'node:fs';

export function diskReadBytes(): number {
  try {
    const m = /read_bytes:\s*(\d+)/.exec(fs.readFileSync('/proc/self/io', 'utf8'));
    return m ? Number(m[1]) : NaN;
  } catch {
    return NaN;
  }
}
