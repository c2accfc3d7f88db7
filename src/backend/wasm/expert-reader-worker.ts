/**
 * A reader thread (expert-reader.ts): reads a piece of an expert (a matrix, or a run of a ggml
 * matrix's units) from the model file with positioned reads and packs it into its place in
 * the slot in the shared wasm memory, then sets the job's status word (1 done, 2 failed with the
 * error as JSON text) and wakes the main thread.
 */
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { FileAccessError, FormatError } from '../../errors.js';
import type { LinearFormat, LinearWeight } from '../../tensor/linear.js';
import { outMajorRowSize } from '../../tensor/rows.js';
import { packQuads, partBytes, planFor } from './layout.js';
import { DIRECT_ALIGN, FileRangeLinear, READER_ERROR_BYTES, READER_STAGE_ALLOC, readFully, STAGE_BYTES, type ReaderInit, type ReaderJob } from './expert-reader.js';
import { checkIdentity } from './file-identity.js';
import { packKernels, packStaged, unitsPerStage, type PackKernels } from './pack-kernels.js';

const init = workerData as ReaderInit;
const status = new Int32Array(init.status);
const errors = new Uint8Array(init.errors);
const memories: WebAssembly.Memory[] = [];
const packers: PackKernels[] = [];
const fds = new Map<string, number>();
/** O_DIRECT descriptors by file; undefined where the file system refused O_DIRECT (then reads are buffered). */
const directFds = new Map<string, number | undefined>();

function fdOf(file: string): number {
  let fd = fds.get(file);
  if (fd === undefined) {
    fd = fs.openSync(file, fs.constants.O_RDONLY);
    fds.set(file, fd);
  }
  return fd;
}

function directFdOf(file: string): number | undefined {
  if (!directFds.has(file)) {
    let fd: number | undefined;
    try {
      fd = fs.constants.O_DIRECT === undefined ? undefined : fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_DIRECT);
    } catch {
      fd = undefined; // tmpfs and some others: EINVAL
    }
    directFds.set(file, fd);
  }
  return directFds.get(file);
}

const alignUp = (n: number) => Math.ceil(n / DIRECT_ALIGN) * DIRECT_ALIGN;

/**
 * Reads `bytes` at file offset `at` into memory with O_DIRECT, from the aligned address at or after
 * `stage`: the read starts at the block boundary below `at` and ends at the one above, so the
 * bytes wanted begin `at mod 4096` bytes in; returns their address, or undefined when the file
 * system refused the read (EINVAL: then the caller reads buffered).
 */
function readDirect(fd: number, memory: WebAssembly.Memory, stage: number, file: string, name: string, at: number, bytes: number): number | undefined {
  const from = Math.floor(at / DIRECT_ALIGN) * DIRECT_ALIGN;
  const shift = at - from;
  const base = alignUp(stage);
  const view = new Uint8Array(memory.buffer, base, alignUp(shift + bytes));
  let done = 0;
  while (done < shift + bytes) {
    let got: number;
    try {
      got = fs.readSync(fd, view, done, view.length - done, from + done);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EINVAL' && done === 0) return undefined;
      throw new FileAccessError({ file, offset: from + done, expected: 'a readable regular file', found: (err as Error).message, cause: err });
    }
    // a short read ends at the end of the file: only a file that shrank ends before the bytes wanted
    if (got <= 0 || (done + got < shift + bytes && got % DIRECT_ALIGN !== 0)) {
      throw new FormatError({ file, offset: from + done + Math.max(0, got), expected: `${shift + bytes - done} more bytes of ${name}`, found: 'end of file (the file shrank while the model was running?)' });
    }
    done += got;
  }
  return base + shift;
}

function run(job: ReaderJob): void {
  if (job.memory) memories[job.shard] = job.memory;
  const memory = memories[job.shard];
  if (!memory) throw new Error(`reader: memory shard ${job.shard} was never sent`);
  // The main thread grows shared memories; this thread's buffer object can still have the old
  // length (V8 refreshes it at interrupt checks), and grow(0) brings it up to date.
  const end = Math.max(job.ptr + job.bytes, job.stage === undefined ? 0 : job.stage + READER_STAGE_ALLOC);
  if (end > memory.buffer.byteLength) memory.grow(0);
  if (job.stage !== undefined && job.stage + READER_STAGE_ALLOC > memory.buffer.byteLength) throw new Error(`reader: staging at ${job.stage} lies beyond memory shard ${job.shard}'s ${memory.buffer.byteLength} bytes`);
  if (job.ptr + job.bytes > memory.buffer.byteLength) throw new Error(`reader: slot at ${job.ptr} + ${job.bytes} lies beyond memory shard ${job.shard}'s ${memory.buffer.byteLength} bytes`);
  const dst = new Uint8Array(memory.buffer, job.ptr, job.bytes);
  for (const p of job.parts) {
    // by path, as the main thread checks: a file removed or replaced fails like one rewritten
    let st: fs.Stats;
    try {
      st = fs.statSync(p.file);
    } catch (err) {
      throw new FileAccessError({ file: p.file, expected: 'the model file', found: `${(err as Error).message} (it was removed while the model was running?)`, cause: err });
    }
    checkIdentity(p.file, st, p.expect);
    const fd = fdOf(p.file);
    const rowSize = outMajorRowSize(p.format, p.inDim, p.name);
    const w = new FileRangeLinear(p.name, p.inDim, p.outDim, p.format, p.byteLength, fd, p.offset, p.file, rowSize);
    const plan = planFor(w, job.panel, { relaxedQ4_0: job.relaxed });
    if (!plan) throw new Error(`${p.name}: no packed layout`);
    const stage = job.stage;
    const wasmUnits = unitsPerStage(plan, STAGE_BYTES);
    if (stage !== undefined && (p.units || wasmUnits >= 1)) {
      // stored rows read straight into the staging area; returns where they are
      const stageRows = (first: number, bytes: number): number => {
        const at = p.offset + first * rowSize;
        const dfd = job.direct ? directFdOf(p.file) : undefined;
        const src = dfd === undefined ? undefined : readDirect(dfd, memory, stage, p.file, p.name, at, bytes);
        if (src !== undefined) return src;
        if (dfd !== undefined) directFds.set(p.file, undefined); // refused: buffered from now on
        readFully(fd, p.file, p.name, new Uint8Array(memory.buffer, stage, bytes), at);
        return stage;
      };
      if (wasmUnits >= 1) {
        // repacked in wasm
        const [from, to] = p.units ?? [0, plan.quads / plan.unitQuads];
        packStaged(packers[job.shard] ??= packKernels(memory), memory, STAGE_BYTES, plan, 0, plan.quads, job.ptr + p.dstOffset, (first, _rows, bytes) => stageRows(first, bytes), from, to);
        continue;
      }
      if (p.units) {
        // a piece (at most a staging area of stored rows: one read), packed in JavaScript into its place
        const [from, to] = p.units;
        const staged = new StagedRows(w, rowSize, (first, count) => new Uint8Array(memory.buffer, stageRows(first, count * rowSize), count * rowSize));
        packQuads(plan, staged, from * plan.unitQuads, to * plan.unitQuads, dst.subarray(p.dstOffset, p.dstOffset + partBytes(plan, plan.quads)), true);
        continue;
      }
    }
    if (p.units) throw new Error(`reader: ${p.name}: a piece of a matrix came without a staging area`);
    // the JavaScript packers write into zeroed memory (only this part's: other readers fill the rest of the slot)
    const out = dst.subarray(p.dstOffset, p.dstOffset + partBytes(plan, plan.quads));
    out.fill(0);
    packQuads(plan, w, 0, plan.quads, out);
  }
}

/** A weight's stored rows as the packers read them, served from the staging area (at most STAGE_BYTES per call). */
class StagedRows implements LinearWeight {
  readonly name: string;
  readonly inDim: number;
  readonly outDim: number;
  readonly format: LinearFormat;
  readonly byteLength: number;
  constructor(
    w: LinearWeight,
    private readonly rowSize: number,
    private readonly stage: (first: number, count: number) => Uint8Array,
  ) {
    ({ name: this.name, inDim: this.inDim, outDim: this.outDim, format: this.format, byteLength: this.byteLength } = w);
  }
  rowBytes(first: number, count: number): Uint8Array {
    if (count * this.rowSize > STAGE_BYTES) throw new RangeError(`${this.name}: ${count} rows do not fit a staging area`);
    return this.stage(first, count);
  }
  bytes(): Uint8Array {
    throw new Error(`${this.name}: staged rows are read a piece at a time`);
  }
  scaleBytes(): Uint8Array {
    throw new Error(`${this.name}: no scales`);
  }
  release(): void {}
}

parentPort!.on('message', (job: ReaderJob) => {
  let code = 1;
  try {
    run(job);
  } catch (err) {
    code = 2;
    const e = err as Error & { file?: string; offset?: number; expected?: string; found?: string };
    const json = JSON.stringify({ kind: e.name, message: e.message, file: e.file, offset: e.offset, expected: e.expected, found: e.found });
    const bytes = new TextEncoder().encode(json).subarray(0, READER_ERROR_BYTES - 1);
    const at = job.idx * READER_ERROR_BYTES;
    errors.fill(0, at, at + READER_ERROR_BYTES);
    errors.set(bytes, at);
  }
  Atomics.store(status, job.idx, code);
  Atomics.notify(status, job.idx);
});
