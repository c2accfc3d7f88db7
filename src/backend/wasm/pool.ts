/**
 * Worker threads that share the kernels' memories with the main thread and take jobs through one
 * SharedArrayBuffer control block: no message per job. The main thread writes the job (kernel,
 * shard, arguments, unit count), bumps `seq` and notifies; each worker spins briefly on `seq`, then
 * sleeps in Atomics.wait; it runs its slice of the units and decrements `pending`. The main thread
 * runs slice 0 itself, then waits for `pending` to reach 0 (spinning first, as a job usually ends
 * within microseconds). A new memory shard reaches the workers as a MessagePort message that they
 * read synchronously (receiveMessageOnPort) when the control block tells them to attach it.
 */
import { MessageChannel, receiveMessageOnPort, Worker, type MessagePort } from 'node:worker_threads';
import { GrokError } from '../../errors.js';

/** Control block layout (Int32Array indices). */
export const CTL = {
  SEQ: 0,
  PENDING: 1,
  FN: 2,
  SHARD: 3,
  UNITS: 4,
  NARGS: 5,
  ERROR: 6,
  THREADS: 7,
  /** The next unclaimed unit, and the units a thread claims at a time (see claimChunks). */
  NEXT: 8,
  CHUNK: 9,
  ARGS: 10,
} as const;
/** Room for a multi-job (FN_MULTI): a count, then per job its kernel, units, argument count and arguments. */
export const MAX_ARGS = 96;
export const CTL_INTS = CTL.ARGS + MAX_ARGS;
/**
 * Units are claimed in chunks (about this many per thread and job) rather than split in fixed
 * slices: on a shared VM one vCPU is often slowed or descheduled for a while, and with fixed
 * halves the other then waited for it at every job.
 */
const CHUNKS_PER_THREAD = 8;

/** Claims chunks of units (from the control block's NEXT counter) and runs them until none are left. */
export function claimChunks(ctl: Int32Array, units: number, run: (start: number, end: number) => void): void {
  const chunk = ctl[CTL.CHUNK]!;
  for (;;) {
    const s = Atomics.add(ctl, CTL.NEXT, chunk);
    if (s >= units) return;
    run(s, Math.min(s + chunk, units));
  }
}

/** Special FN values. */
export const FN_ATTACH = -1;
export const FN_STOP = -2;
/** Several kernels' units as one job (runMany): the ARGS area holds their list, see encodeJobs. */
export const FN_MULTI = -3;

/** One kernel's share of a multi-job. */
export interface Job {
  readonly fn: number;
  readonly args: readonly number[];
  readonly units: number;
}

/** The ARGS ints of a multi-job: count, then per job fn, units, number of args, args. */
export function encodeJobs(jobs: readonly Job[]): number[] {
  const out = [jobs.length];
  for (const j of jobs) out.push(j.fn, j.units, j.args.length, ...j.args);
  return out;
}

/** Reads a multi-job's list back from the control block. */
export function decodeJobs(ctl: Int32Array): Job[] {
  const jobs: Job[] = [];
  let i = CTL.ARGS;
  const n = ctl[i++]!;
  for (let j = 0; j < n; j++) {
    const fn = ctl[i++]!;
    const units = ctl[i++]!;
    const nargs = ctl[i++]!;
    const args: number[] = [];
    for (let a = 0; a < nargs; a++) args.push(ctl[i++]!);
    jobs.push({ fn, args, units });
  }
  return jobs;
}

/**
 * Claims chunks of a multi-job's units, numbered through the jobs in order, and runs each chunk's
 * piece of each job it overlaps as run(job, start, end) in that job's own unit numbers.
 */
export function claimJobChunks(ctl: Int32Array, jobs: readonly Job[], run: (job: Job, start: number, end: number) => void): void {
  const total = jobs.reduce((n, j) => n + j.units, 0);
  claimChunks(ctl, total, (s, e) => {
    let base = 0;
    for (const j of jobs) {
      const a = Math.max(s, base);
      const b = Math.min(e, base + j.units);
      if (a < b) run(j, a - base, b - base);
      base += j.units;
      if (base >= e) break;
    }
  });
}
/** Atomics.load polls before a thread sleeps: ~50–100 µs, enough to bridge the gap between two matmuls of one token. */
export const SPIN = 20000;
/**
 * A job that has not finished after this long means a worker is gone (a crash cannot be observed
 * synchronously): fail instead of hanging. The longest real job (a chunk of prefill tokens against
 * the largest weight) takes seconds.
 */
const JOB_DEADLINE_MS = 300_000;

export interface WorkerData {
  readonly ctl: SharedArrayBuffer;
  /** The compiled module, shared (not recompiled): TurboFan code tiered up on one thread serves all. */
  readonly module: WebAssembly.Module;
  readonly port: MessagePort;
  readonly tid: number;
}

/** A kernel failed inside a worker thread (e.g. a wasm trap); the message is the worker's. */
export class WorkerKernelError extends GrokError {
  constructor(message: string) {
    super('kernel_error', message);
  }
}

export class WorkerPool {
  private readonly ctl: Int32Array;
  private closed = false;
  /** A job never finished: workers are not trusted with another one, close() terminates them. */
  private broken = false;

  private constructor(
    private readonly workers: Worker[],
    private readonly ports: MessagePort[],
    ctlBuffer: SharedArrayBuffer,
  ) {
    this.ctl = new Int32Array(ctlBuffer);
  }

  /** Starts `count` workers (threads = count + the main thread) and waits until each compiled the module. */
  static async create(module: WebAssembly.Module, count: number): Promise<WorkerPool> {
    const ctlBuffer = new SharedArrayBuffer(CTL_INTS * 4);
    new Int32Array(ctlBuffer)[CTL.THREADS] = count + 1;
    const workers: Worker[] = [];
    const ports: MessagePort[] = [];
    const url = new URL('./worker.js', import.meta.url);
    await Promise.all(
      Array.from({ length: count }, (_, i) => {
        const { port1, port2 } = new MessageChannel();
        const data: WorkerData = { ctl: ctlBuffer, module, port: port2, tid: i + 1 };
        const w = new Worker(url, { workerData: data, transferList: [port2] });
        workers.push(w);
        ports.push(port1);
        return new Promise<void>((resolve, reject) => {
          w.once('message', () => resolve());
          w.once('error', reject);
          w.once('exit', (code) => reject(new WorkerKernelError(`kernel worker ${i + 1} exited with code ${code} before it was ready`)));
        });
      }),
    );
    for (const w of workers) {
      w.removeAllListeners('exit');
      w.removeAllListeners('error');
      w.on('error', () => {}); // reported through the control block; never crash the process
      w.unref(); // a forgotten close() must not keep the process alive
    }
    for (const p of ports) p.unref();
    return new WorkerPool(workers, ports, ctlBuffer);
  }

  get size(): number {
    return this.workers.length;
  }

  /** Makes every worker instantiate the module on `memory` as shard number `shard`. */
  attach(shard: number, memory: WebAssembly.Memory): void {
    for (const p of this.ports) p.postMessage({ shard, memory });
    this.post(FN_ATTACH, shard, [], 0);
    this.wait();
  }

  /**
   * Runs kernel `fn` on `shard` over `units` units split across all threads; the main thread's
   * chunks run in `own(start, end)`. Returns when every unit is done.
   */
  run(fn: number, shard: number, args: readonly number[], units: number, own: (start: number, end: number) => void): void {
    this.post(fn, shard, args, units);
    let ownError: unknown;
    try {
      claimChunks(this.ctl, units, own);
    } catch (err) {
      ownError = err;
    }
    this.wait();
    if (ownError !== undefined) throw ownError;
  }

  /**
   * Runs several kernels on `shard` as one job: their units are claimed from one counter, so the
   * threads wake once and none waits between kernels. The main thread's pieces run in `own`.
   */
  runMany(shard: number, jobs: readonly Job[], own: (job: Job, start: number, end: number) => void): void {
    const units = jobs.reduce((n, j) => n + j.units, 0);
    this.post(FN_MULTI, shard, encodeJobs(jobs), units);
    let ownError: unknown;
    try {
      claimJobChunks(this.ctl, jobs, own);
    } catch (err) {
      ownError = err;
    }
    this.wait();
    if (ownError !== undefined) throw ownError;
  }

  private post(fn: number, shard: number, args: readonly number[], units: number): void {
    if (this.closed) throw new WorkerKernelError('the wasm kernels were closed');
    if (this.broken) throw new WorkerKernelError('a kernel worker stopped answering; the wasm kernels are unusable');
    if (args.length > MAX_ARGS) throw new RangeError(`a kernel job takes at most ${MAX_ARGS} arguments`);
    const c = this.ctl;
    c[CTL.FN] = fn;
    c[CTL.SHARD] = shard;
    c[CTL.UNITS] = units;
    c[CTL.NARGS] = args.length;
    for (let i = 0; i < args.length; i++) c[CTL.ARGS + i] = args[i]!;
    c[CTL.CHUNK] = Math.max(1, Math.ceil(units / ((this.workers.length + 1) * CHUNKS_PER_THREAD)));
    Atomics.store(c, CTL.NEXT, 0);
    Atomics.store(c, CTL.PENDING, this.workers.length);
    Atomics.add(c, CTL.SEQ, 1);
    Atomics.notify(c, CTL.SEQ);
  }

  private wait(): void {
    const c = this.ctl;
    let spins = 0;
    let since = 0;
    for (;;) {
      const p = Atomics.load(c, CTL.PENDING);
      if (p === 0) break;
      if (++spins > SPIN) {
        since ||= Date.now();
        if (Date.now() - since > JOB_DEADLINE_MS) {
          this.broken = true;
          throw new WorkerKernelError(`${p} kernel worker(s) did not finish a job within ${JOB_DEADLINE_MS / 1000} s; the pool is unusable`);
        }
        Atomics.wait(c, CTL.PENDING, p, 1000);
      }
    }
    if (Atomics.load(c, CTL.ERROR)) {
      c[CTL.ERROR] = 0;
      const messages: string[] = [];
      for (const p of this.ports) {
        for (let m = receiveMessageOnPort(p); m; m = receiveMessageOnPort(p)) messages.push(String((m.message as { error?: string }).error));
      }
      throw new WorkerKernelError(`a kernel failed in a worker thread: ${messages.join('; ') || 'unknown error'}`);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    if (!this.broken) this.post(FN_STOP, 0, [], 0);
    this.closed = true;
    await Promise.all(
      this.workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            w.ref(); // keep the loop alive until the worker has really gone
            const timer = setTimeout(() => void w.terminate().then(() => resolve()), this.broken ? 0 : 2000);
            w.once('exit', () => {
              clearTimeout(timer);
              resolve();
            });
          }),
      ),
    );
    for (const p of this.ports) p.close();
  }
}
