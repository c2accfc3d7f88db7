/**
 * A kernel worker thread (see pool.ts): instantiates the kernel module once per memory shard and
 * runs its slice of each job posted through the shared control block until told to stop.
 */
import { parentPort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { CTL, FN_ATTACH, FN_MULTI, FN_STOP, SPIN, claimChunks, claimJobChunks, decodeJobs, type WorkerData } from './pool.js';
import { KERNEL_NAMES } from './kernels-wasm.js';

type Kernel = (...args: number[]) => void;

const data = workerData as WorkerData;
const ctl = new Int32Array(data.ctl);
const module = data.module;
const shards: Kernel[][] = [];
const tid = data.tid;

function attach(): void {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = receiveMessageOnPort(data.port);
    if (!m) {
      // posted before the job, so it is on its way
      if (Date.now() > deadline) throw new Error('no memory shard arrived for an attach job');
      continue;
    }
    const { shard, memory } = m.message as { shard: number; memory: WebAssembly.Memory };
    const inst = new WebAssembly.Instance(module, { env: { mem: memory } });
    shards[shard] = KERNEL_NAMES.map((n) => inst.exports[n] as Kernel);
    return;
  }
}

function runJob(fn: number): void {
  const units = ctl[CTL.UNITS]!;
  const n = ctl[CTL.NARGS]!;
  const args: number[] = [];
  for (let i = 0; i < n; i++) args.push(ctl[CTL.ARGS + i]!);
  const kernel = shards[ctl[CTL.SHARD]!]![fn]!;
  claimChunks(ctl, units, (start, end) => kernel(...args, start, end, tid));
}

function runMulti(): void {
  const kernels = shards[ctl[CTL.SHARD]!]!;
  claimJobChunks(ctl, decodeJobs(ctl), (job, start, end) => kernels[job.fn]!(...job.args, start, end, tid));
}

// read before announcing readiness: the first job may be posted the moment 'ready' arrives
let seen = Atomics.load(ctl, CTL.SEQ);
parentPort!.postMessage('ready');
for (;;) {
  let spins = 0;
  while (Atomics.load(ctl, CTL.SEQ) === seen) {
    if (++spins > SPIN) {
      Atomics.wait(ctl, CTL.SEQ, seen);
      spins = 0;
    }
  }
  seen = Atomics.load(ctl, CTL.SEQ);
  const fn = ctl[CTL.FN]!;
  if (fn === FN_STOP) break;
  try {
    if (fn === FN_ATTACH) attach();
    else if (fn === FN_MULTI) runMulti();
    else runJob(fn);
  } catch (err) {
    data.port.postMessage({ error: `worker ${tid}: ${(err as Error).message}` });
    Atomics.store(ctl, CTL.ERROR, 1);
  }
  if (Atomics.sub(ctl, CTL.PENDING, 1) === 1) Atomics.notify(ctl, CTL.PENDING);
}
data.port.close();
