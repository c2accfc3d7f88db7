/**
 * A reader thread (expert-reader.ts): reads an expert's matrices from the model file with
 * positioned reads and packs them into their slot in the shared wasm memory, then sets the job's
 * status word (1 done, 2 failed with the error as JSON text) and wakes the main thread.
 */
import * as fs from 'node:fs';
import { parentPort, workerData } from 'node:worker_threads';
import { FileAccessError } from '../../errors.js';
import { outMajorRowSize } from '../../tensor/rows.js';
import { packQuads, partBytes, planFor, type PackPlan } from './layout.js';
import { FileRangeLinear, READER_ERROR_BYTES, readFully, STAGE_BYTES, type ReaderInit, type ReaderJob, type ReaderPart } from './expert-reader.js';
import { checkIdentity } from './file-identity.js';
import { packKernels, type PackKernels } from './pack-kernels.js';

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
    const w = new FileRangeLinear(p.name, p.inDim, p.outDim, p.format, p.byteLength, fd, p.offset, p.file, outMajorRowSize(p.format, p.inDim, p.name));
    const plan = planFor(w, job.panel, { relaxedQ4_0: job.relaxed });
    if (!plan) throw new Error(`${p.name}: no packed layout`);
    if (plan.kind === 'q8_0' && job.stage !== undefined && 8 * rowSizeOf(p) <= STAGE_BYTES) {
      packQ8_0Staged(memory, (packers[job.shard] ??= packKernels(memory)), fd, p, plan, job.stage, job.ptr + p.dstOffset);
      continue;
    }
    // the JavaScript packers write into zeroed memory (only this part's: other readers fill the rest of the slot)
    const out = dst.subarray(p.dstOffset, p.dstOffset + partBytes(plan, plan.quads));
    out.fill(0);
    packQuads(plan, w, 0, plan.quads, out);
  }
}

const rowSizeOf = (p: ReaderPart): number => outMajorRowSize(p.format, p.inDim, p.name);

/**
 * A Q8_0 part read into the staging area as many 8-row units at a time as fit, each batch
 * repacked by pack_q8_0 (pack-kernels.ts) into its place; rows past the weight's end are zeros.
 */
function packQ8_0Staged(memory: WebAssembly.Memory, k: PackKernels, fd: number, p: ReaderPart, plan: PackPlan, stage: number, dst: number): void {
  const rowBytes = rowSizeOf(p);
  const units = plan.quads / 2;
  const perRead = Math.floor(STAGE_BYTES / (8 * rowBytes));
  const bpp = Math.min(plan.panel, plan.segStride) / 32;
  for (let u = 0; u < units; u += perRead) {
    const n = Math.min(perRead, units - u);
    const rows = Math.min(p.outDim - 8 * u, 8 * n);
    const view = new Uint8Array(memory.buffer, stage, 8 * n * rowBytes);
    readFully(fd, p.file, p.name, view.subarray(0, rows * rowBytes), p.offset + 8 * u * rowBytes);
    view.fill(0, rows * rowBytes);
    k.pack_q8_0(stage, rowBytes, p.inDim / 32, n, u, units, bpp, dst);
  }
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
