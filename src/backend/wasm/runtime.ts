/**
 * Memories and module instances. A wasm32 memory holds at most 4 GiB, so the weights live in as
 * many shared memories ("shards") as they need; every thread instantiates the kernel module once
 * per shard, and a kernel call runs on the shard that holds its weight. Shard 0 is the work memory
 * for activations of the non-matmul ops; weight shards keep a fixed staging area at their bottom
 * for the activations of the matmuls that read them (copying those in is cheap next to the weights).
 * Memories grow page by page as weights are packed, so untouched capacity costs no RAM.
 */
import { UnsupportedError } from '../../errors.js';
import { KERNEL_NAMES, type KernelName } from './kernels-wasm.js';
import { MAX_ARGS, WorkerPool } from './pool.js';
import { BLOCK_FORMATS } from './formats/index.js';

const PAGE = 65536;
/** Bytes below this in every shard are never used (null stays invalid). */
export const RESERVED = PAGE;

type Kernel = (...args: number[]) => void;

/** What a shard holds: the other ops' work memory, packed weights, or arena storage (the KV cache). */
export type ShardRole = 'work' | 'weights' | 'arena';

export class Shard {
  readonly kernels: Kernel[];
  /** Bump pointer: the first free byte. */
  top: number;
  private sizeBytes: number;
  u8!: Uint8Array;
  f32!: Float32Array;

  constructor(
    readonly index: number,
    readonly memory: WebAssembly.Memory,
    module: WebAssembly.Module,
    readonly maxBytes: number,
    readonly stageBytes: number,
    readonly role: ShardRole,
  ) {
    const inst = new WebAssembly.Instance(module, { env: { mem: memory } });
    this.kernels = KERNEL_NAMES.map((n) => inst.exports[n] as Kernel);
    this.sizeBytes = memory.buffer.byteLength;
    this.refresh();
    for (const f of BLOCK_FORMATS) for (const t of f.tables ?? []) this.u8.set(t.bytes, t.at);
    this.top = RESERVED + stageBytes;
  }

  /** Where matmul activations are staged in this shard. */
  get stageBase(): number {
    return RESERVED;
  }

  /** Grows the memory so that bytes [0, end) exist. */
  ensure(end: number): void {
    if (end > this.maxBytes) throw new UnsupportedError('wasm-memory', `wasm shard ${this.index}: ${end} bytes needed, the limit is ${this.maxBytes}`);
    if (end <= this.sizeBytes) return;
    this.memory.grow(Math.ceil((end - this.sizeBytes) / PAGE));
    this.sizeBytes = this.memory.buffer.byteLength;
    this.refresh();
  }

  /** Allocates `bytes` (64-byte aligned) at the top, or returns undefined when the shard is full. */
  alloc(bytes: number): number | undefined {
    const at = Math.ceil(this.top / 64) * 64;
    if (at + bytes > this.maxBytes) return undefined;
    this.ensure(at + bytes);
    this.top = at + bytes;
    return at;
  }

  get committedBytes(): number {
    return this.sizeBytes;
  }

  private refresh(): void {
    const buf = this.memory.buffer;
    this.u8 = new Uint8Array(buf);
    this.f32 = new Float32Array(buf);
  }
}

export interface RuntimeOptions {
  readonly threads: number;
  /** Capacity of one memory shard (≤ 4 GiB). */
  readonly shardBytes: number;
  /** Matmul staging area per weight shard. */
  readonly stageBytes: number;
}

export class Runtime {
  readonly shards: Shard[] = [];

  private constructor(
    readonly module: WebAssembly.Module,
    readonly pool: WorkerPool | undefined,
    readonly opts: RuntimeOptions,
  ) {}

  static async create(moduleBytes: Uint8Array, opts: RuntimeOptions): Promise<Runtime> {
    const module = new WebAssembly.Module(moduleBytes as Uint8Array<ArrayBuffer>);
    const pool = opts.threads > 1 ? await WorkerPool.create(module, opts.threads - 1) : undefined;
    const rt = new Runtime(module, pool, opts);
    rt.newShard('work', 0);
    return rt;
  }

  get threads(): number {
    return this.opts.threads;
  }

  get work(): Shard {
    return this.shards[0]!;
  }

  /** A new, empty memory shard, instantiated on every thread. `stageBytes` 0 for the work memory. */
  newShard(role: ShardRole, stageBytes = this.opts.stageBytes): Shard {
    const maxPages = Math.floor(this.opts.shardBytes / PAGE);
    const memory = new WebAssembly.Memory({ initial: Math.ceil((RESERVED + stageBytes) / PAGE), maximum: maxPages, shared: true });
    const shard = new Shard(this.shards.length, memory, this.module, maxPages * PAGE, stageBytes, role);
    this.shards.push(shard);
    this.pool?.attach(shard.index, memory);
    return shard;
  }

  /**
   * Runs kernel `name` over units 0..units-1 on `shard`: split across all threads when `parallel`
   * (and there is more than one thread and unit), else on the main thread alone.
   */
  exec(shard: Shard, name: KernelName, args: readonly number[], units: number, parallel: boolean): void {
    if (units <= 0) return;
    const fn = KERNEL_NAMES.indexOf(name);
    const k = shard.kernels[fn]!;
    if (!parallel || !this.pool || units < 2) {
      k(...args, 0, units, 0);
      return;
    }
    this.pool.run(fn, shard.index, args, units, (s, e) => {
      if (s < e) k(...args, s, e, 0);
    });
  }

  /**
   * Runs several kernels on `shard` as one pool job (see WorkerPool.runMany) when `parallel`, else
   * one after another on the main thread. Each job's units are its own, as in exec.
   */
  execMany(shard: Shard, jobs: readonly { name: KernelName; args: readonly number[]; units: number }[], parallel: boolean): void {
    const list = jobs.filter((j) => j.units > 0).map((j) => ({ fn: KERNEL_NAMES.indexOf(j.name), args: j.args, units: j.units }));
    const total = list.reduce((n, j) => n + j.units, 0);
    if (!parallel || !this.pool || total < 2) {
      for (const j of list) shard.kernels[j.fn]!(...j.args, 0, j.units, 0);
      return;
    }
    // as many jobs per pool job as its control block holds
    for (let i = 0; i < list.length; ) {
      let n = 0;
      let ints = 1;
      while (i + n < list.length && (n === 0 || ints + 3 + list[i + n]!.args.length <= MAX_ARGS)) ints += 3 + list[i + n++]!.args.length;
      this.pool.runMany(shard.index, list.slice(i, i + n), (j, s, e) => shard.kernels[j.fn]!(...j.args, s, e, 0));
      i += n;
    }
  }

  async close(): Promise<void> {
    await this.pool?.close();
    this.shards.length = 0;
  }
}
