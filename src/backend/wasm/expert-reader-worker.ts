/**
 * A reader thread (expert-reader.ts): reads an expert's matrices from the model file with
 * positioned reads and packs them into their slot in the shared wasm memory, then sets the job's
 * status word (1 done, 2 failed with the error as JSON text) and wakes the main thread.
 */
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { FileAccessError } from '../../errors.js';
import { outMajorRowSize } from '../../tensor/rows.js';
import { packQuads, partBytes, planFor } from './layout.js';
import { FileRangeLinear, READER_ERROR_BYTES, readFully, STAGE_BYTES, type ReaderInit, type ReaderJob } from './expert-reader.js';
import { checkIdentity } from './file-identity.js';
import { packKernels, packQ8_0Staged, type PackKernels } from './pack-kernels.js';

const init = workerData as ReaderInit;
const status = new Int32Array(init.status);
const errors = new Uint8Array(init.errors);
const memories: WebAssembly.Memory[] = [];
const packers: PackKernels[] = [];
const fds = new Map<string, number>();

function fdOf(file: string): number {
  let fd = fds.get(file);
  if (fd === undefined) {
    fd = fs.openSync(file, fs.constants.O_RDONLY);
    fds.set(file, fd);
  }
  return fd;
}

function run(job: ReaderJob): void {
  if (job.memory) memories[job.shard] = job.memory;
  const memory = memories[job.shard];
  if (!memory) throw new Error(`reader: memory shard ${job.shard} was never sent`);
  // The main thread grows shared memories; this thread's buffer object can still have the old
  // length (V8 refreshes it at interrupt checks), and grow(0) brings it up to date.
  const end = Math.max(job.ptr + job.bytes, job.stage === undefined ? 0 : job.stage + STAGE_BYTES);
  if (end > memory.buffer.byteLength) memory.grow(0);
  if (job.stage !== undefined && job.stage + STAGE_BYTES > memory.buffer.byteLength) throw new Error(`reader: staging at ${job.stage} lies beyond memory shard ${job.shard}'s ${memory.buffer.byteLength} bytes`);
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
    if (plan.kind === 'q8_0' && job.stage !== undefined && 8 * rowSize <= STAGE_BYTES) {
      // stored rows read straight into the staging area, then repacked in wasm
      const fill = (first: number, into: Uint8Array) => readFully(fd, p.file, p.name, into, p.offset + first * rowSize);
      packQ8_0Staged(packers[job.shard] ??= packKernels(memory), memory, job.stage, STAGE_BYTES, plan, 0, plan.quads, job.ptr + p.dstOffset, fill);
      continue;
    }
    // the JavaScript packers write into zeroed memory (only this part's: other readers fill the rest of the slot)
    const out = dst.subarray(p.dstOffset, p.dstOffset + partBytes(plan, plan.quads));
    out.fill(0);
    packQuads(plan, w, 0, plan.quads, out);
  }
}
