/**
 * What a model file looked like when its experts were registered for streaming: size, mtime and
 * inode. Every expert load compares the file against it first, so a file that was rewritten,
 * replaced or truncated under a running model fails that load with a FileAccessError instead of
 * feeding other bytes into the forward pass.
 */
import * as fs from 'node:fs';
import { FileAccessError } from '../../errors.js';
import { FileSource } from '../../formats/tensor-file.js';
import { LazyLinear, type LinearWeight } from '../../tensor/linear.js';

export interface FileIdentity {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ino: number;
}

export function identityOfStats(st: { size: number; mtimeMs: number; ino: number }): FileIdentity {
  return { size: st.size, mtimeMs: st.mtimeMs, ino: st.ino };
}

/** Throws a FileAccessError when `st` is not the file described by `expect`. */
export function checkIdentity(file: string, st: { size: number; mtimeMs: number; ino: number }, expect: FileIdentity): void {
  // mtime to the millisecond: what utimes and copies preserve
  if (st.size !== expect.size || Math.round(st.mtimeMs) !== Math.round(expect.mtimeMs) || st.ino !== expect.ino) {
    throw new FileAccessError({
      file,
      expected: `the file the model was opened from (${expect.size} bytes, modified ${new Date(expect.mtimeMs).toISOString()})`,
      found: `it changed while the model was running (now ${st.size} bytes, modified ${new Date(st.mtimeMs).toISOString()}); reload the model`,
    });
  }
}

/** The plain file a weight's bytes come from (a GGUF or one gguf-split shard), if it has one. */
export function weightFile(w: LinearWeight): { file: string; offset: number; byteLength: number } | undefined {
  if (!(w instanceof LazyLinear) || w.scales || !(w.range.source instanceof FileSource)) return undefined;
  return { file: w.range.source.name, offset: w.range.offset, byteLength: w.range.byteLength };
}

/** Identities of the files behind a set of weights, recorded now. */
export class FileIdentities {
  private readonly map = new Map<string, FileIdentity>();

  record(weights: Iterable<LinearWeight>): void {
    for (const w of weights) {
      const f = weightFile(w);
      if (f && !this.map.has(f.file)) this.map.set(f.file, identityOfStats(fs.statSync(f.file)));
    }
  }

  get(file: string): FileIdentity | undefined {
    return this.map.get(file);
  }

  /** Checks every file behind `weights` (by path) against its recorded identity. */
  check(weights: Iterable<LinearWeight>): void {
    for (const w of weights) {
      const f = weightFile(w);
      const id = f && this.map.get(f.file);
      if (!f || !id) continue;
      let st: fs.Stats;
      try {
        st = fs.statSync(f.file);
      } catch (err) {
        throw new FileAccessError({ file: f.file, expected: 'the model file', found: `${(err as Error).message} (it was removed while the model was running?)`, cause: err });
      }
      checkIdentity(f.file, st, id);
    }
  }
}
