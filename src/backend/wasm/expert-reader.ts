/**
 * Expert loads on reader threads: each reader opens the model file itself and reads pieces of an
 * expert's matrices with large positioned reads (fs.readSync of up to 8 MB, its own thread, so the
 * main thread and the kernel workers keep computing). Pieces of ggml matrices are read straight
 * into the reader's staging area in the slot's memory shard (with O_DIRECT when asked) and repacked
 * from there into their place in the slot: every type llama.cpp's mixes give experts by wasm
 * kernels (pack-kernels.ts), the rest by their JavaScript packers. A load is split so that every
 * reader has a read in flight. Completion is a word per piece in a shared status array
 * (Atomics.wait on the main thread: the forward pass is synchronous), errors come back as JSON
 * text in a shared buffer and are rethrown as the typed error they were.
 *
 * Only weights read from one plain file (a GGUF, or one gguf-split shard) qualify; others (ckpt-0's
 * tensor files, raw .partNofM splits, memory) load on the calling thread as before.
 */
import * as fs from 'node:fs';
import { Worker } from 'node:worker_threads';
import { FileAccessError, FormatError, GrokError } from '../../errors.js';
import type { LinearFormat, LinearWeight } from '../../tensor/linear.js';
import { loadGroupNow, type ExpertLoader, type LoadJob } from './expert-cache.js';
import { weightFile, type FileIdentities, type FileIdentity } from './file-identity.js';
import type { Shard } from './runtime.js';
import { unitsThatFit } from './pack-kernels.js';

/**
 * Reader threads that load experts when `expertReaders` is not given: each keeps one read of up to
 * 8 MB in flight. They mostly wait on the disk (repacking runs at 3.5–33 GB/s), so they cost little
 * CPU, and virtio disks give more to more reads in flight: cold expert loads of the 6-layer bench
 * files ran 1.35× (Q8_0) and 2.8× (Q4_K_M) faster with 8 readers than with 4 (8 of 9 paired runs),
 * decode on the 30 GB streaming file at 8 and 16 GiB won 3 of 4 pairs; 16 readers gained nothing
 * more over 8 (bench/results/2026-12-03-streaming.md).
 */
export const DEFAULT_EXPERT_READERS = 8;

/** Bytes of stored rows one reader stages in a shard at a time: the size of its positioned reads. */
export const STAGE_BYTES = 8 << 20;
/** Direct reads are aligned to this (address, offset and length). */
export const DIRECT_ALIGN = 4096;
/** A reader's staging allocation: STAGE_BYTES, plus room to align a direct read's start and end. */
export const READER_STAGE_ALLOC = STAGE_BYTES + 3 * DIRECT_ALIGN;

/**
 * Reads in flight at most (one status word and error text each, taken from a free list and given
 * back when the read is waited for); a load that finds too few free runs on the calling thread.
 */
const RING = 4096;
const ERROR_BYTES = 512;
/** A read that has not finished after this long means a reader is gone. */
const LOAD_DEADLINE_MS = 600_000;

export interface ReaderPart {
  readonly file: string;
  readonly offset: number;
  readonly byteLength: number;
  readonly format: LinearFormat;
  readonly name: string;
  readonly inDim: number;
  readonly outDim: number;
  readonly dstOffset: number;
  readonly expect: FileIdentity;
  /** Just these units [from, to) of the matrix (its plan's units: 8 rows for Q8_0, else 4), read in one staged read and packed where the whole matrix's packing puts them. */
  readonly units?: readonly [number, number];
}

export interface ReaderJob {
  readonly idx: number;
  readonly shard: number;
  readonly memory?: WebAssembly.Memory;
  /** This reader's staging area in the shard (READER_STAGE_ALLOC bytes), when one could be allocated: stored rows are read into it and repacked in wasm. */
  readonly stage?: number;
  /** Read staged pieces with O_DIRECT where the file system allows it. */
  readonly direct: boolean;
  readonly ptr: number;
  readonly bytes: number;
  readonly parts: readonly ReaderPart[];
  readonly panel: number;
  readonly relaxed: boolean;
}

export interface ReaderInit {
  readonly status: SharedArrayBuffer;
  readonly errors: SharedArrayBuffer;
}

/** The error a reader reports, as the typed error it was. */
export function errorFromJson(text: string): Error {
  try {
    const e = JSON.parse(text) as { kind: string; file?: string; offset?: number; expected?: string; found?: string; message: string };
    if (e.kind === 'FileAccessError' || e.kind === 'FormatError') {
      const args = { file: e.file ?? '?', expected: e.expected ?? 'readable bytes', ...(e.found !== undefined ? { found: e.found } : {}), ...(e.offset !== undefined ? { offset: e.offset } : {}) };
      return e.kind === 'FileAccessError' ? new FileAccessError(args) : new FormatError(args);
    }
    return new GrokError('expert_load_failed', e.message);
  } catch {
    return new GrokError('expert_load_failed', text);
  }
}

/** The file-backed parts of a job's weights, or undefined when one of them is not a plain file range. */
function fileParts(job: LoadJob, ids: FileIdentities): ReaderPart[] | undefined {
  const parts: ReaderPart[] = [];
  for (const [i, w] of job.weights.entries()) {
    const f = weightFile(w);
    const expect = f && ids.get(f.file);
    if (!f || !expect) return undefined;
    parts.push({ ...f, format: w.format, name: w.name, inDim: w.inDim, outDim: w.outDim, dstOffset: job.layout.offsets[i]!, expect });
  }
  return parts;
}

interface Pending {
  readonly idx: number;
  readonly reader: number;
}

export class ReaderLoader implements ExpertLoader {
  private readonly status: Int32Array;
  private readonly errors: Uint8Array;
  private next = 1;
  private readonly outstanding: number[];
  private readonly sent: Set<number>[];
  /** Each ticket's reads: status word and reader. */
  private readonly tickets = new Map<number, Pending[]>();
  private readonly free = Array.from({ length: RING }, (_, i) => RING - 1 - i);
  private readonly syncFailed = new Map<number, unknown>();
  private closed = false;

  private constructor(
    private readonly workers: Worker[],
    init: ReaderInit,
    private readonly panel: number,
    private readonly relaxed: boolean,
    private readonly ids: FileIdentities,
    private readonly allocStage: ((shard: Shard) => number | undefined) | undefined,
    private readonly direct: boolean,
  ) {
    this.status = new Int32Array(init.status);
    this.errors = new Uint8Array(init.errors);
    this.outstanding = workers.map(() => 0);
    this.sent = workers.map(() => new Set());
    // A reader that dies must not take the process with it: its jobs fail (typed) and later jobs
    // go to the other readers, or are read on the main thread when none is left.
    workers.forEach((w, r) => {
      const down = (why: string) => {
        if (this.broken[r] === undefined) this.broken[r] = new GrokError('expert_load_failed', `expert reader ${r} stopped: ${why}`);
      };
      w.on('error', (err: Error) => down(err.message));
      w.on('exit', (code) => {
        if (!this.closed) down(`exit code ${code}`);
      });
    });
  }

  /** Why reader r can take no more jobs (it died, or missed a deadline and was stopped). */
  private readonly broken: (GrokError | undefined)[] = [];

  /** Each reader's staging area per shard (undefined: none could be allocated; the reader packs in JavaScript). */
  private readonly stages: Map<number, number | undefined>[] = [];

  /** `allocStage` reserves READER_STAGE_ALLOC bytes in a shard for a reader's reads (not counted as resident weights). */
  static create(readers: number, panel: number, relaxed: boolean, ids: FileIdentities, allocStage?: (shard: Shard) => number | undefined, direct = false): ReaderLoader {
    const init: ReaderInit = { status: new SharedArrayBuffer(RING * 4), errors: new SharedArrayBuffer(RING * ERROR_BYTES) };
    const url = new URL('./expert-reader-worker.js', import.meta.url);
    const workers: Worker[] = [];
    for (let i = 0; i < readers; i++) {
      const w = new Worker(url, { workerData: init });
      w.unref();
      workers.push(w);
    }
    return new ReaderLoader(workers, init, panel, relaxed, ids, allocStage, direct);
  }

  /** Loads on the calling thread, keeping a failure for wait(). */
  private loadHere(job: LoadJob, t: number): number {
    try {
      loadGroupNow(job, this.ids);
    } catch (err) {
      this.syncFailed.set(t, err);
    }
    return t;
  }

  /** Reader r's staging area in `shard`, allocated on first use (undefined: the shard is full). */
  private stageOf(r: number, shard: Shard): number | undefined {
    const stages = (this.stages[r] ??= new Map());
    if (!stages.has(shard.index)) stages.set(shard.index, this.allocStage?.(shard));
    return stages.get(shard.index);
  }

  start(job: LoadJob): number {
    const t = this.next++;
    const alive = this.workers.some((_, i) => this.broken[i] === undefined);
    const parts = this.closed || !alive ? undefined : fileParts(job, this.ids);
    if (!parts) return this.loadHere(job, t);
    // Pieces to the least busy reader: a ggml matrix in as many reads as there are readers (each at
    // most a staging area), so one expert keeps every reader busy (the disk here read 0.61 GB/s
    // with 1 stream, 1.37 with 4) and the packing of its pieces runs on every core while the next
    // pieces are read (one reader per matrix packed 3 matrices on 2 cores, behind their reads).
    const shard = job.slot.shard;
    const split = this.workers.every((_, r) => this.broken[r] !== undefined || this.stageOf(r, shard) !== undefined);
    const pieces = parts.flatMap((part, i): ReaderPart[] => {
      if (!split || part.format.kind !== 'ggml') return [part];
      const plan = job.layout.plans[i]!;
      const units = plan.quads / plan.unitQuads;
      // at most a staging area per read, and at least as many reads as readers
      const alive = this.workers.filter((_, r) => this.broken[r] === undefined).length;
      const fit = unitsThatFit(plan, part.format.type, STAGE_BYTES);
      if (fit < 1) return [part];
      const per = Math.min(fit, Math.ceil(units / alive));
      const out: ReaderPart[] = [];
      for (let u = 0; u < units; u += per) out.push({ ...part, units: [u, Math.min(units, u + per)] });
      return out;
    });
    if (this.free.length < pieces.length) return this.loadHere(job, t);
    const pending: Pending[] = [];
    for (const piece of pieces) {
      const idx = this.free.pop()!;
      Atomics.store(this.status, idx, 0);
      let r = this.workers.findIndex((_, i) => this.broken[i] === undefined);
      for (let i = r + 1; i < this.workers.length; i++) if (this.broken[i] === undefined && this.outstanding[i]! < this.outstanding[r]!) r = i;
      const first = !this.sent[r]!.has(shard.index);
      this.sent[r]!.add(shard.index);
      const stage = this.stageOf(r, shard);
      const msg: ReaderJob = {
        idx, shard: shard.index, ...(first ? { memory: shard.memory } : {}), ...(stage !== undefined ? { stage } : {}), ptr: job.slot.ptr, bytes: job.layout.bytes,
        parts: [piece], panel: this.panel, relaxed: this.relaxed, direct: this.direct,
      };
      this.workers[r]!.postMessage(msg);
      this.outstanding[r]!++;
      pending.push({ idx, reader: r });
    }
    this.tickets.set(t, pending);
    return t;
  }

  done(ticket: number): boolean {
    const pending = this.tickets.get(ticket);
    return pending === undefined || pending.every((p) => Atomics.load(this.status, p.idx) !== 0);
  }

  wait(ticket: number): void {
    const pending = this.tickets.get(ticket);
    if (pending === undefined) {
      const err = this.syncFailed.get(ticket);
      if (err !== undefined) {
        this.syncFailed.delete(ticket);
        throw err;
      }
      return;
    }
    this.tickets.delete(ticket);
    // every part is waited for, also after one failed: none may still write into the slot when it is reused
    let failure: Error | undefined;
    for (const p of pending) failure ??= this.waitPart(p);
    if (failure) throw failure;
  }

  /** Waits for one part's read; returns its error, if any. */
  private waitPart({ idx, reader: r }: Pending): Error | undefined {
    const deadline = Date.now() + LOAD_DEADLINE_MS;
    while (Atomics.load(this.status, idx) === 0) {
      Atomics.wait(this.status, idx, 0, 1000);
      if (Atomics.load(this.status, idx) !== 0) break;
      // a dead reader's status word is not reused (it may yet be written): one ring entry lost per death
      const dead = this.broken[r];
      if (dead !== undefined) return dead;
      if (Date.now() > deadline) {
        // Stopped, so that it cannot write into the slot after the slot is given to another expert.
        this.broken[r] = new GrokError('expert_load_failed', `expert reader ${r} was stopped: a read did not finish within ${LOAD_DEADLINE_MS / 1000} s`);
        void this.workers[r]!.terminate();
        return this.broken[r];
      }
    }
    this.outstanding[r]!--;
    let err: Error | undefined;
    if (Atomics.load(this.status, idx) === 2) {
      const bytes = this.errors.subarray(idx * ERROR_BYTES, (idx + 1) * ERROR_BYTES);
      const end = bytes.indexOf(0);
      err = errorFromJson(new TextDecoder().decode(bytes.slice(0, end < 0 ? ERROR_BYTES : end)));
    }
    this.free.push(idx);
    return err;
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.workers.map((w) => w.terminate()));
  }
}

export const READER_ERROR_BYTES = ERROR_BYTES;

/** Fills `out` from `fd` at byte `at` (positioned reads until done), with typed errors naming the file. */
export function readFully(fd: number, file: string, name: string, out: Uint8Array, at: number): void {
  const n = out.length;
  let done = 0;
  while (done < n) {
    let got: number;
    try {
      got = fs.readSync(fd, out, done, n - done, at + done);
    } catch (err) {
      throw new FileAccessError({ file, offset: at + done, expected: 'a readable regular file', found: (err as Error).message, cause: err });
    }
    if (got <= 0) throw new FormatError({ file, offset: at + done, expected: `${n - done} more bytes of ${name}`, found: 'end of file (the file shrank while the model was running?)' });
    done += got;
  }
}

/** A LinearWeight over a file range, read with positioned reads into one reused buffer (reader threads). */
export class FileRangeLinear implements LinearWeight {
  private buf = new Uint8Array(0);
  constructor(
    readonly name: string,
    readonly inDim: number,
    readonly outDim: number,
    readonly format: LinearFormat,
    readonly byteLength: number,
    private readonly fd: number,
    private readonly offset: number,
    private readonly file: string,
    private readonly rowSize: number,
  ) {}
  bytes(): Uint8Array {
    return this.rowBytes(0, this.outDim);
  }
  scaleBytes(): Uint8Array {
    throw new Error(`${this.name}: no scales`);
  }
  rowBytes(first: number, count: number): Uint8Array {
    const n = count * this.rowSize;
    if (this.buf.length < n) this.buf = new Uint8Array(n);
    const out = this.buf.subarray(0, n);
    readFully(this.fd, this.file, this.name, out, this.offset + first * this.rowSize);
    return out;
  }
  release(): void {
    this.buf = new Uint8Array(0);
  }
}
