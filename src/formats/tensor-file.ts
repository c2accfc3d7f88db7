/**
 * Positional, lazy reads of byte ranges: the one place that holds file handles. A ByteSource may
 * span several files (raw `.partNofM` splits) and is read as one logical file, never concatenated
 * on disk.
 */
import * as fs from 'node:fs';
import { FileAccessError, FormatError } from '../errors.js';
import type { ByteSource } from '../tensor/byte-source.js';
import { copyBytes } from '../tensor/dtype.js';

export type { ByteSource };

/** fs.readSync moves at most 2 GiB per call; larger tensors are read in chunks. */
const MAX_READ = 1 << 30;

export function checkRange(src: ByteSource, offset: number, length: number, what = 'a byte range'): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > src.size) {
    throw new FormatError({
      file: src.name,
      offset,
      expected: `${what} of ${length} bytes inside the file's ${src.size} bytes`,
      found: `it ends at byte ${offset + length}`,
    });
  }
}

/** Reads out.length bytes at `offset` from an open file, in chunks of at most MAX_READ; a short file is a FormatError. */
export function readFully(fd: number, out: Uint8Array, offset: number, file: string): void {
  let done = 0;
  while (done < out.length) {
    let n: number;
    try {
      n = fs.readSync(fd, out, done, Math.min(MAX_READ, out.length - done), offset + done);
    } catch (err) {
      // EISDIR, EIO, …: whatever the file turned out to be, it cannot be read as one
      throw new FileAccessError({ file, offset: offset + done, expected: 'a readable regular file', found: (err as Error).message, cause: err });
    }
    if (n <= 0) throw new FormatError({ file, offset: offset + done, expected: `${out.length - done} more bytes`, found: 'end of file' });
    done += n;
  }
}

// ---------------------------------------------------------------------------------------------
// opening files: regular files only. A FIFO blocks open() and read() for ever and a device such as
// /dev/zero never ends, so either would hang or exhaust memory in a synchronous read that no
// signal can interrupt; a directory fails with EISDIR only at the first read. Every path a model,
// config or tokenizer comes from is opened here.

/** What a non-regular file is, for messages. */
export function fileKind(st: fs.Stats): string {
  if (st.isDirectory()) return 'a directory';
  if (st.isFIFO()) return 'a FIFO (named pipe)';
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isSocket()) return 'a socket';
  return 'not a regular file';
}

/** O_NONBLOCK: a FIFO swapped in between the check and the open cannot block the open. */
const OPEN_FLAGS = fs.constants.O_RDONLY | (fs.constants.O_NONBLOCK ?? 0);

/**
 * Opens `file` for reading after checking it is a regular file (before the open, and again on the
 * open descriptor). `what` says what the file should be, for messages; `maxBytes` bounds its size.
 * Errors are FileAccessErrors naming the file (a size over `maxBytes`: a FormatError).
 */
export function openRegularFile(file: string, what = 'a readable file', maxBytes?: number): { fd: number; size: number } {
  const refuse = (found: string, cause?: unknown): never => {
    throw new FileAccessError({ file, expected: what, found, cause });
  };
  let st: fs.Stats;
  try {
    st = fs.statSync(file);
  } catch (err) {
    return refuse((err as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file (ENOENT)' : (err as Error).message, err);
  }
  if (!st.isFile()) refuse(fileKind(st));
  let fd: number;
  try {
    fd = fs.openSync(file, OPEN_FLAGS);
  } catch (err) {
    return refuse((err as Error).message, err);
  }
  try {
    const now = fs.fstatSync(fd);
    if (!now.isFile()) refuse(fileKind(now));
    if (maxBytes !== undefined && now.size > maxBytes) {
      throw new FormatError({ file, expected: `${what} of at most ${maxBytes} bytes`, found: `${now.size} bytes` });
    }
    return { fd, size: now.size };
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

/** Reads a whole regular file of at most `maxBytes` bytes (config.json, tokenizer.model, a .gz leaf). */
export function readRegularFile(file: string, maxBytes: number, what = 'a readable file'): Uint8Array {
  const { fd, size } = openRegularFile(file, what, maxBytes);
  try {
    const out = new Uint8Array(size);
    readFully(fd, out, 0, file);
    return out;
  } finally {
    fs.closeSync(fd);
  }
}

/** True when `p` is a regular file (following links); false for anything else or nothing. */
export function isRegularFile(p: string): boolean {
  try {
    return fs.statSync(p).isFile();
  } catch {
    return false;
  }
}

export class FileSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private fd: number | undefined;

  /** `what`: what the file should be, for messages (`shard 2 of 3`, `a GGUF file`). */
  constructor(path: string, what = 'a readable file') {
    this.name = path;
    const { fd, size } = openRegularFile(path, what);
    this.fd = fd;
    this.size = size;
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    const out = new Uint8Array(length);
    this.readInto(out, offset);
    return out;
  }

  /** Reads `out.length` bytes at `offset` into `out` (which may be a view into a larger buffer). */
  readInto(out: Uint8Array, offset: number): void {
    checkRange(this, offset, out.length);
    if (this.fd === undefined) throw new FormatError({ file: this.name, expected: 'an open file', found: 'it was closed' });
    readFully(this.fd, out, offset, this.name);
  }

  close(): void {
    if (this.fd !== undefined) fs.closeSync(this.fd);
    this.fd = undefined;
  }
}

/** Several files read as their concatenation (raw byte splits). */
export class ConcatSource implements ByteSource {
  readonly name: string;
  readonly size: number;
  private readonly starts: number[] = [];

  constructor(private readonly parts: FileSource[]) {
    this.name = parts.map((p) => p.name).join('+');
    let at = 0;
    for (const p of parts) {
      this.starts.push(at);
      at += p.size;
    }
    this.size = at;
  }

  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    const out = new Uint8Array(length);
    let done = 0;
    for (let i = 0; i < this.parts.length && done < length; i++) {
      const start = this.starts[i]!;
      const part = this.parts[i]!;
      const pos = offset + done;
      if (pos >= start + part.size) continue;
      const n = Math.min(length - done, start + part.size - pos);
      part.readInto(out.subarray(done, done + n), pos - start);
      done += n;
    }
    return out;
  }

  close(): void {
    for (const p of this.parts) p.close();
  }
}

/** Bytes already in memory (tests, bundled assets). */
export class MemorySource implements ByteSource {
  readonly size: number;
  constructor(readonly name: string, private readonly bytes: Uint8Array) {
    this.size = bytes.length;
  }
  read(offset: number, length: number): Uint8Array {
    checkRange(this, offset, length);
    const view = this.bytes.subarray(offset, offset + length);
    // A view costs nothing, but typed-array views over it need 8-byte alignment; else copy once.
    return view.byteOffset % 8 === 0 ? view : copyBytes(view);
  }
  close(): void {}
}
