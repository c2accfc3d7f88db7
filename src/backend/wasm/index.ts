/**
 * The fast CPU backend: SIMD128 kernels (kernels-wasm.ts) on a worker-thread pool (pool.ts) over
 * sharded shared memories (runtime.ts), with weights repacked once into their quad layouts
 * (layout.ts) at first use and then released from JS. Implements the same Kernels interface as the
 * js oracle; a weight format without a wasm kernel falls back to the js kernel for that call, and
 * `stats` records which backend ran what.
 */
import * as os from 'node:os';
import type { LinearWeight } from '../../tensor/linear.js';
import type { AttentionArgs, Kernels } from '../kernels.js';
import { jsKernels } from '../js/kernels.js';
import { UnsupportedError, UsageError } from '../../errors.js';
import { buildKernelModule, relaxedSimdAvailable, Q4K_DECODED, type KernelName } from './kernels-wasm.js';
import { DEFAULT_PANEL, packQuads, partBytes, planFor, type PackPlan } from './layout.js';
import { packKernels, packStaged, unitsPerStage, type PackKernels } from './pack-kernels.js';
import { FloatArena } from './arena.js';
import { RESERVED, Runtime, type Shard } from './runtime.js';
import { ggmlRowBytes } from '../../tensor/ggml.js';
import { MemoryLinear } from '../../tensor/linear.js';
import { kernelName, prefillKernelName } from './block-format.js';
import { decodedBlockBytes } from './decoded.js';
import { BLOCK_FORMATS } from './formats/index.js';
import { ExpertCache, expertLayout, SyncLoader, type EvictionPolicy } from './expert-cache.js';
import { DEFAULT_EXPERT_READERS, READER_STAGE_ALLOC, ReaderLoader, STAGE_BYTES } from './expert-reader.js';
import { FileIdentities } from './file-identity.js';

export interface ExpertStreamOptions {
  /** Which resident expert a load evicts (default lru; see expert-cache.ts). */
  readonly policy?: EvictionPolicy;
  /** Reader threads that read and pack experts while the kernels compute; 0 loads on the calling thread (default 8). */
  readonly readers?: number;
  /**
   * Expert pieces read with O_DIRECT (where the file system allows it): no kernel readahead past
   * what a load needs, no second copy in the page cache, and (measured) a better use of the disk's
   * parallel reads than buffered I/O (default false here; loadModel turns it on).
   */
  readonly directReads?: boolean;
  /** begin() calls during which a miss reuses a slot before taking fresh memory (ExpertCacheOptions.reuseFirst; default 0). */
  readonly reuseFirst?: number;
}

export interface WasmKernelOptions {
  /** Threads including the main thread; default: the machine's cores (os.availableParallelism()). */
  readonly threads?: number;
  /** Capacity of one weight memory shard in bytes, ≤ 4 GiB (default 4 GiB). Small values are for tests. */
  readonly shardBytes?: number;
  /** Per-shard staging area for matmul activations (default 16 MiB); a call with more tokens runs in chunks. */
  readonly stageBytes?: number;
  /**
   * Use the relaxed-SIMD i8 dot product where a kernel has a relaxed variant (Q4_0). Default: when
   * the runtime validates relaxed SIMD (Node 20: only with --experimental-wasm-relaxed-simd).
   * `true` on a runtime without it is an UnsupportedError.
   */
  readonly relaxed?: boolean;
  /** Inputs per column panel of the packed weights (layout.ts), a multiple of 256; default 1024. Small values are for tests. */
  readonly panelInputs?: number;
  /**
   * ggml types to run in the js kernel although they have a wasm kernel: for tests of the fallback
   * path and A/B comparisons against the oracle (such calls are counted in `stats.js`).
   */
  readonly jsFormats?: readonly string[];
  /**
   * Calls with at least this many tokens (per staging chunk) run a block format's prefill kernel
   * (decoded.ts) where it has one; fewer run its own kernel. The results are identical; this is a
   * speed threshold (default PREFILL_MIN_TOKENS), and Infinity turns the prefill kernels off (A/B).
   */
  readonly prefillMinTokens?: number;
}

export interface WasmStats {
  /** Calls per `op:format` that ran in wasm. */
  readonly wasm: Map<string, number>;
  /** Calls per `op:format` that fell back to the js kernel (no wasm kernel for that format or shape). */
  readonly js: Map<string, number>;
}

export interface WasmKernels extends Kernels {
  readonly threads: number;
  /** Whether the relaxed-SIMD kernels are in use. */
  readonly relaxed: boolean;
  readonly stats: WasmStats;
  /** Bytes of packed weights held in wasm memory. */
  readonly packedBytes: number;
  /** Memory shards holding weights (the work memory not counted). */
  readonly weightShards: number;
  /** Bytes of live allocFloats storage (KV caches). */
  readonly arenaBytes: number;
  allocFloats(n: number): Float32Array;
  freeFloats(a: Float32Array): void;
  /** Packs a weight now instead of at its first matmul (e.g. to load before timing); false if it has no wasm kernel. */
  prepare(w: LinearWeight): boolean;
  /**
   * Memory read bandwidth in bytes/s as these threads see it: the best of `repeats` passes of a
   * SIMD XOR over `bytes` of packed weights when a shard holds that many, else over a buffer in
   * the work memory (which then stays committed).
   */
  measureReadBandwidth(bytes: number, repeats: number): number;
  /** Bytes `w` occupies packed in wasm memory, or undefined when it has no wasm kernel. */
  packedSize(w: LinearWeight): number | undefined;
  /**
   * Streams `groups` (each an expert's gate, up, down) through a cache of `slots` packed slots
   * instead of packing them resident: a matmul on one of them loads it on demand (expert-cache.ts).
   */
  streamExperts(groups: readonly (readonly LinearWeight[])[], slots: number, opts?: ExpertStreamOptions): ExpertCache;
}

const MAX_SHARD = 4 * 1024 * 1024 * 1024;

/** Is SIMD128 + shared memory + Atomics available in this runtime? */
export function wasmAvailable(): boolean {
  try {
    if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
    // (module (func (result v128) v128.const i32x4 0 0 0 0))
    const simd = new Uint8Array([0, 97, 115, 109, 1, 0, 0, 0, 1, 5, 1, 96, 0, 1, 123, 3, 2, 1, 0, 10, 22, 1, 20, 0, 253, 12, ...new Array<number>(16).fill(0), 11]);
    if (!WebAssembly.validate(simd)) return false;
    new WebAssembly.Memory({ initial: 1, maximum: 2, shared: true });
    return true;
  } catch {
    return false;
  }
}

export async function createWasmKernels(opts: WasmKernelOptions = {}): Promise<WasmKernels> {
  if (!wasmAvailable()) throw new UnsupportedError('wasm', 'this runtime lacks WebAssembly SIMD128 or shared memory; use --backend js');
  const threads = opts.threads ?? os.availableParallelism();
  if (!Number.isInteger(threads) || threads < 1 || threads > 256) throw new UsageError(`threads must be an integer from 1 to 256, got ${threads}`, 'threads');
  const shardBytes = opts.shardBytes ?? MAX_SHARD;
  const stageBytes = opts.stageBytes ?? 16 * 1024 * 1024;
  if (!(shardBytes >= RESERVED + stageBytes + 65536 && shardBytes <= MAX_SHARD)) {
    throw new UsageError(`shardBytes must lie between stageBytes + 128 KiB and 4 GiB, got ${shardBytes}`, 'shardBytes');
  }
  const canRelax = relaxedSimdAvailable();
  if (opts.relaxed && !canRelax) throw new UnsupportedError('relaxed-simd', 'this runtime does not validate relaxed SIMD (Node 20 needs --experimental-wasm-relaxed-simd)');
  const relaxed = opts.relaxed ?? canRelax;
  const panelInputs = opts.panelInputs ?? DEFAULT_PANEL;
  if (!(Number.isInteger(panelInputs) && panelInputs >= 256 && panelInputs % 256 === 0)) {
    throw new UsageError(`panelInputs must be a positive multiple of 256, got ${panelInputs}`, 'panelInputs');
  }
  const moduleBytes = buildKernelModule({ relaxed, maxPages: Math.floor(shardBytes / 65536) });
  const rt = await Runtime.create(moduleBytes, { threads, shardBytes, stageBytes });
  const prefillMinTokens = opts.prefillMinTokens ?? PREFILL_MIN_TOKENS;
  if (!(prefillMinTokens >= 1)) throw new UsageError(`prefillMinTokens must be at least 1, got ${prefillMinTokens}`, 'prefillMinTokens');
  const backend = new WasmBackend(rt, relaxed, panelInputs, new Set(opts.jsFormats ?? []), prefillMinTokens);
  warmUp(backend);
  return backend;
}

/**
 * Runs every kernel path (each matmul format with 1 and 3 tokens, and the other ops) a few times
 * on tiny zero inputs, so that V8 compiles them with TurboFan before real work: a wasm function
 * starts in the baseline compiler (Liftoff) and is tiered up only after it has run for a while,
 * and a call already running keeps its Liftoff code. Without this, a first 512-token prompt ran
 * its first long calls in Liftoff: 480 ms instead of 40 for one 2048 × 2048 Q8_0 matmul.
 * Costs ≈ 10–20 ms at start and a few KB of packed weights; the stats are reset after.
 */
function warmUp(k: WasmBackend): void {
  const I = 512;
  const O = 16;
  const ggmlType = (type: string): LinearWeight =>
    new MemoryLinear(`warm-up ${type}`, I, O, { kind: 'ggml', type }, new Uint8Array(ggmlRowBytes(type, I) * O));
  const weights: LinearWeight[] = [
    new MemoryLinear('warm-up int8', I, O, { kind: 'int8-grouped', groups: 1 }, new Uint8Array(I * O), new Uint8Array(2 * O)),
    ggmlType('q8_0'), ggmlType('q4_0'), ggmlType('q4_k'), ggmlType('f32'), ggmlType('f16'), ggmlType('bf16'),
    ...BLOCK_FORMATS.map((b) => ggmlType(b.type)),
  ];
  const T = 3;
  const x = new Float32Array(T * I);
  const y = new Float32Array(T * O);
  const d = 64;
  const positions = new Int32Array([0, 1, 2]);
  // the prefill kernels run from prefillMinTokens tokens (capped: a threshold of Infinity turns them off)
  const TP = Math.min(k.prefillTokens, 64);
  const xp = new Float32Array(TP * I);
  const yp = new Float32Array(TP * O);
  for (let round = 0; round < 10; round++) {
    for (const w of weights) {
      k.matmul(y, x, 1, w);
      k.matmul(y, x, T, w);
      const type = w.format.kind === 'ggml' ? w.format.type : '';
      if (TP > T && (type === 'q4_k' || BLOCK_FORMATS.some((b) => b.prefill && b.type === type))) k.matmul(yp, xp, TP, w);
    }
    k.rmsNorm(y, y, T, O, new Float32Array(O), 1e-5);
    k.rope(x, T, 2, d, positions, 10000);
    k.geluMul(x, x, T * I);
    k.attention({
      out: new Float32Array(T * 2 * d), q: x.subarray(0, T * 2 * d), k: x.subarray(0, T * d), v: x.subarray(0, T * d),
      keyValid: new Uint8Array(T).fill(1), T, start: 0, numQHeads: 2, numKvHeads: 1, headDim: d, scale: 1, softcap: 30,
    });
  }
  k.stats.wasm.clear();
  k.stats.js.clear();
  k.packedTotal = 0; // a few KB of warm-up weights are not the model's: budgets count the model's
}

/** One contiguous run of quads of a packed weight, in one shard. */
interface Part {
  readonly shard: Shard;
  readonly ptr: number;
  readonly q0: number;
  readonly q1: number;
}

interface Packed {
  readonly plan: PackPlan;
  readonly parts: readonly Part[];
}

/** One packed part of one weight in a matmulMany call, and where its rows go. */
interface PartJob {
  readonly out: Float32Array;
  readonly name: string;
  readonly plan: PackPlan;
  readonly part: Part;
}

const roundUp = (n: number, m: number) => Math.ceil(n / m) * m;
const f32bits = (() => {
  const f = new Float32Array(1);
  const i = new Int32Array(f.buffer);
  return (x: number) => {
    f[0] = x;
    return i[0]!;
  };
})();

const TILE_BYTES = 192 * 1024;

/** Tokens from which a block format's prefill kernel (decoded.ts) runs instead of its own (measured: bench/prefill.ts). */
const PREFILL_MIN_TOKENS = 8;

/** Work below this many multiply-adds (or elements) runs on the main thread: waking the pool costs more. */
const PARALLEL_MIN = 1 << 15;

function formatKey(w: LinearWeight): string {
  const f = w.format;
  return f.kind === 'dense' ? `dense-${f.dtype}-${f.order}` : f.kind === 'ggml' ? f.type : `int8-grouped`;
}

class WasmBackend implements WasmKernels {
  readonly name = 'wasm';
  readonly stats: WasmStats = { wasm: new Map(), js: new Map() };
  private readonly packed = new WeakMap<LinearWeight, Packed | null>();
  /** Weights streamed through an expert cache: which cache, group and matrix of the group. */
  private readonly streamed = new WeakMap<LinearWeight, { cache: ExpertCache; group: number; index: number; plan: PackPlan }>();
  private readonly caches: ExpertCache[] = [];
  /** Bytes of resident packed weights (warmUp resets it). */
  packedTotal = 0;
  private readonly invFreq = new Map<string, Float64Array>();
  private closed = false;
  private lastWeightShard: Shard | undefined;
  /** KV cache storage that attention reads in place (allocFloats). */
  private readonly arena: FloatArena;

  constructor(
    private readonly rt: Runtime,
    readonly relaxed: boolean,
    private readonly panelInputs: number,
    private readonly jsFormats: ReadonlySet<string>,
    private readonly prefillMinTokens: number,
  ) {
    this.arena = new FloatArena(() => this.rt.newShard('arena'));
  }

  /** Per weight shard: the repack kernels and a staging area for packing on this thread (none when the shard is full). */
  private readonly packStages = new Map<Shard, { k: PackKernels; ptr: number } | undefined>();

  private packStage(shard: Shard): { k: PackKernels; ptr: number } | undefined {
    if (!this.packStages.has(shard)) {
      const ptr = shard.alloc(STAGE_BYTES);
      this.packStages.set(shard, ptr === undefined ? undefined : { k: packKernels(shard.memory), ptr });
    }
    return this.packStages.get(shard);
  }

  private newWeightShard(): Shard {
    this.lastWeightShard = this.rt.newShard('weights');
    return this.lastWeightShard;
  }

  allocFloats(n: number): Float32Array {
    this.check();
    return this.arena.alloc(n);
  }

  freeFloats(a: Float32Array): void {
    this.arena.free(a);
  }

  /** Bytes of live allocFloats storage. */
  get arenaBytes(): number {
    return this.arena.bytesInUse;
  }

  get threads(): number {
    return this.rt.threads;
  }

  get packedBytes(): number {
    return this.packedTotal + this.caches.reduce((n, c) => n + c.residentBytes, 0);
  }

  get weightShards(): number {
    return this.rt.shards.filter((s) => s.role === 'weights').length;
  }

  private count(which: 'wasm' | 'js', key: string): void {
    const m = this.stats[which];
    m.set(key, (m.get(key) ?? 0) + 1);
  }

  private check(): void {
    if (this.closed) throw new UsageError('the wasm kernels were closed');
  }

  // -------------------------------------------------------------------------------------------
  // weights

  prepare(w: LinearWeight): boolean {
    if (this.streamed.has(w)) return true; // loaded when a batch routes to it
    return this.packedFor(w) !== null;
  }

  private planOf(w: LinearWeight): PackPlan | undefined {
    return this.jsFormats.has(formatKey(w)) ? undefined : planFor(w, this.panelInputs, { relaxedQ4_0: this.relaxed });
  }

  packedSize(w: LinearWeight): number | undefined {
    const plan = this.planOf(w);
    return plan && partBytes(plan, plan.quads);
  }

  streamExperts(groups: readonly (readonly LinearWeight[])[], slots: number, opts: ExpertStreamOptions = {}): ExpertCache {
    this.check();
    const layouts = groups.map((ws) => expertLayout(ws.map((w) => {
      const plan = this.planOf(w);
      if (!plan) throw new UnsupportedError('expert-streaming', `${w.name}: format ${formatKey(w)} has no wasm kernel, so it cannot be streamed`);
      return plan;
    })));
    const readers = opts.readers ?? DEFAULT_EXPERT_READERS;
    if (!(Number.isInteger(readers) && readers >= 0 && readers <= 16)) throw new UsageError(`readers must be an integer from 0 to 16, got ${readers}`, 'readers');
    const ids = new FileIdentities();
    ids.record(groups.flat());
    const loader = readers > 0 ? ReaderLoader.create(readers, this.panelInputs, this.relaxed, ids, (shard) => shard.alloc(READER_STAGE_ALLOC), opts.directReads ?? false) : new SyncLoader(ids);
    const cache = new ExpertCache(groups, layouts, slots, (bytes) => this.allocSlot(bytes), loader, {
      ...(opts.policy ? { policy: opts.policy } : {}),
      ...(opts.reuseFirst ? { reuseFirst: opts.reuseFirst } : {}),
    });
    groups.forEach((ws, group) => ws.forEach((w, index) => this.streamed.set(w, { cache, group, index, plan: layouts[group]!.plans[index]! })));
    this.caches.push(cache);
    return cache;
  }

  /** Memory for one expert slot, never split across shards. */
  private allocSlot(bytes: number): { shard: Shard; ptr: number } {
    let shard = this.lastWeightShard ?? this.newWeightShard();
    let ptr = shard.alloc(bytes);
    if (ptr === undefined) {
      shard = this.newWeightShard();
      ptr = shard.alloc(bytes);
      if (ptr === undefined) throw new UnsupportedError('wasm-memory', `one expert slot of ${bytes} bytes does not fit a memory shard`);
    }
    return { shard, ptr };
  }

  private packedFor(w: LinearWeight): Packed | null {
    const st = this.streamed.get(w);
    if (st) {
      const at = st.cache.locate(st.group, st.index);
      return { plan: st.plan, parts: [{ shard: at.shard, ptr: at.ptr, q0: 0, q1: st.plan.quads }] };
    }
    let p = this.packed.get(w);
    if (p === undefined) {
      const plan = this.jsFormats.has(formatKey(w)) ? undefined : planFor(w, this.panelInputs, { relaxedQ4_0: this.relaxed });
      p = plan ? this.pack(w, plan) : null;
      this.packed.set(w, p);
    }
    return p;
  }

  /** Copies the weight into wasm memory in its quad layout (splitting it by quads only if it exceeds a shard), then releases the JS copy. */
  private pack(w: LinearWeight, plan: PackPlan): Packed {
    const parts: Part[] = [];
    const perQuad = plan.quadBytes + plan.scaleQuadBytes;
    let q = 0;
    while (q < plan.quads) {
      let shard = this.lastWeightShard ?? this.newWeightShard();
      const fitQuads = (s: Shard) => Math.floor((s.maxBytes - roundUp(s.top, 64)) / perQuad);
      // a weight that fits a fresh shard never spans two: start a new shard instead of splitting
      if (fitQuads(shard) < plan.quads - q) {
        const fresh = Math.floor((shard.maxBytes - RESERVED - shard.stageBytes - 64) / perQuad);
        if (fresh >= plan.quads - q || fitQuads(shard) < plan.unitQuads) shard = this.newWeightShard();
      }
      const n = Math.min(plan.quads - q, fitQuads(shard) - (fitQuads(shard) % plan.unitQuads));
      if (n < 1) throw new UnsupportedError('wasm-memory', `${w.name}: one unit of ${4 * plan.unitQuads} rows (${plan.unitQuads * perQuad} bytes) does not fit a memory shard`);
      const bytes = partBytes(plan, n);
      const ptr = shard.alloc(bytes)!;
      const stage = unitsPerStage(plan, STAGE_BYTES) >= 1 ? this.packStage(shard) : undefined;
      if (stage !== undefined) {
        // the wasm repack (pack-kernels.ts): several times the JavaScript packers' speed
        packStaged(stage.k, shard.memory, STAGE_BYTES, plan, q, q + n, ptr, (first, rows) => {
          shard.u8.set(w.rowBytes(first, rows), stage.ptr);
          return stage.ptr;
        });
      } else {
        packQuads(plan, w, q, q + n, shard.u8.subarray(ptr, ptr + bytes));
      }
      parts.push({ shard, ptr, q0: q, q1: q + n });
      this.packedTotal += bytes;
      q += n;
    }
    w.release();
    return { plan, parts };
  }

  measureReadBandwidth(bytes: number, repeats: number): number {
    this.check();
    const unit = 1 << 16;
    const units = Math.floor(bytes / unit);
    // Read packed weights where a shard holds enough of them (no extra RAM); else a work buffer.
    const full = this.rt.shards.find((s) => s.role === 'weights' && s.top - (RESERVED + s.stageBytes) >= units * unit);
    const shard = full ?? this.rt.work;
    const sink = RESERVED;
    const base = full ? RESERVED + full.stageBytes : RESERVED + 64 * 16;
    if (!full) {
      this.workView(base + units * unit - RESERVED);
      this.rt.work.u8.fill(1, base, base + units * unit); // commit the pages before timing
    }
    let best = Infinity;
    for (let r = 0; r < repeats; r++) {
      const t = process.hrtime.bigint();
      this.rt.exec(shard, 'read_sum', [base, unit, sink], units, true);
      best = Math.min(best, Number(process.hrtime.bigint() - t) / 1e9);
    }
    return (units * unit) / best;
  }

  // -------------------------------------------------------------------------------------------
  // matmul

  matmul(out: Float32Array, x: Float32Array, T: number, w: LinearWeight): void {
    this.matmulMany([out], x, T, [w]);
  }

  /**
   * Weights that share an input (q/k/v, an expert's gate/up) are grouped by the memory shard and
   * the activation form they read: each group stages and quantises x once, then runs every weight's
   * rows in one pool job. Results are those of separate matmuls, bit for bit.
   */
  matmulMany(outs: readonly Float32Array[], x: Float32Array, T: number, ws: readonly LinearWeight[]): void {
    this.check();
    if (outs.length !== ws.length) throw new UsageError(`matmulMany: ${ws.length} weights but ${outs.length} outputs`);
    const groups = new Map<string, PartJob[]>();
    for (const [i, w] of ws.entries()) {
      const out = outs[i]!;
      if (w.inDim !== ws[0]!.inDim) throw new UsageError(`matmulMany: ${w.name} takes ${w.inDim} inputs, ${ws[0]!.name} ${ws[0]!.inDim}`);
      const p = this.packedFor(w);
      if (!p) {
        this.count('js', `matmul:${formatKey(w)}`);
        jsKernels.matmul(out, x, T, w);
        continue;
      }
      this.count('wasm', `matmul:${formatKey(w)}`);
      if (x.length < T * w.inDim || out.length < T * w.outDim) {
        throw new UsageError(`${w.name}: matmul of ${T} rows needs x ≥ ${T * w.inDim} and out ≥ ${T * w.outDim} floats, got ${x.length} and ${out.length}`);
      }
      const { plan } = p;
      const quant = plan.kind === 'q4_0' && this.relaxed ? 'x8' : plan.xBlock ? 'x' : 'f32';
      const stageKey = `${quant}:${plan.segs}:${plan.segLen}:${plan.segStride}:${plan.xBlock}:${plan.bsumLen}`;
      for (const part of p.parts) {
        const key = `${part.shard.index}:${stageKey}`;
        let g = groups.get(key);
        if (!g) groups.set(key, (g = []));
        g.push({ out, name: w.name, plan, part });
      }
    }
    for (const g of groups.values()) this.matmulGroup(x, T, g);
  }

  /** Weights' parts in one shard that read the same staged activation, in chunks of tokens that fit the staging area. */
  private matmulGroup(x: Float32Array, T: number, jobs: readonly PartJob[]): void {
    const { plan } = jobs[0]!;
    const Lx = plan.segs * plan.segStride; // staged floats per token
    const nblk = plan.xBlock ? plan.segs * Math.ceil(plan.segStride / plan.xBlock) : 0; // x blocks per token
    const nbs = plan.bsumLen ? Lx / plan.bsumLen : 0;
    const outBytes = jobs.reduce((n, j) => n + (j.part.q1 - j.part.q0) * 16, 0);
    const perToken = Lx * 4 + (plan.xBlock ? Lx * 2 + nblk * 4 : 0) + nbs * 4 + outBytes + 64 * (jobs.length + 4); // + alignment slack
    const stage = jobs[0]!.part.shard.stageBytes - this.scratchBytes(jobs);
    const Tc = Math.min(T, Math.floor(stage / perToken));
    if (Tc < 1) throw new UnsupportedError('wasm-stage', `${jobs.map((j) => j.name).join(', ')}: one token's activations (${perToken} bytes) exceed the ${stage}-byte staging area`);
    for (let t0 = 0; t0 < T; t0 += Tc) this.matmulChunk(x, t0, Math.min(Tc, T - t0), Tc, jobs, { Lx, nblk, nbs });
  }

  private matmulChunk(x: Float32Array, t0: number, tn: number, Tc: number, jobs: readonly PartJob[], dims: { Lx: number; nblk: number; nbs: number }): void {
    const { Lx, nblk, nbs } = dims;
    const { plan } = jobs[0]!;
    const s = jobs[0]!.part.shard;
    const I = plan.inDim;
    // staging layout for Tc tokens: x as f32, its int16 form and block scales, block sums, then each job's output rows
    const xf = s.stageBase;
    const xq = roundUp(xf + Tc * Lx * 4, 64);
    const xs = roundUp(xq + Tc * Lx * 2, 64);
    const bs = roundUp(xs + Tc * nblk * 4, 64);
    let ob = roundUp(bs + Tc * nbs * 4, 64);
    // x rows → [tn][segs·segStride] f32, zero padded
    const f32 = s.f32;
    if (plan.segs === 1 && plan.segStride === I) {
      f32.set(x.subarray(t0 * I, (t0 + tn) * I), xf >>> 2);
    } else {
      for (let t = 0; t < tn; t++) {
        for (let g = 0; g < plan.segs; g++) {
          const d = (xf >>> 2) + t * Lx + g * plan.segStride;
          const src = (t0 + t) * I + g * plan.segLen;
          f32.set(x.subarray(src, src + plan.segLen), d);
          f32.fill(0, d + plan.segLen, d + plan.segStride);
        }
      }
    }
    const rt = this.rt;
    const relaxedQ4 = plan.kind === 'q4_0' && this.relaxed;
    if (relaxedQ4) {
      rt.exec(s, 'quant_x8', [xf, xq, xs, bs], tn * nblk, tn * Lx >= PARALLEL_MIN);
    } else if (plan.xBlock) {
      const blocks = tn * nblk;
      rt.exec(s, 'quant_x', [xf, xq, xs, plan.xBlock, plan.segStride], blocks, blocks * plan.xBlock >= PARALLEL_MIN);
      if (plan.bsumLen) rt.exec(s, 'bsum_x', [xq, bs, plan.bsumLen], tn * nbs, tn * Lx >= PARALLEL_MIN);
    }
    const kernels: { name: KernelName; args: number[]; units: number }[] = [];
    const obs: number[] = [];
    let macs = 0;
    // the prefill kernels' per-thread scratch lies after every job's outputs
    const scr = roundUp(jobs.reduce((o, j) => roundUp(o + Tc * 4 * (j.part.q1 - j.part.q0) * 4, 64), ob), 64);
    for (const j of jobs) {
      const nq = j.part.q1 - j.part.q0;
      obs.push(ob);
      kernels.push(this.mmJob(j.plan, j.part.ptr, nq, xf, xq, xs, bs, ob, tn, Lx, scr));
      macs += nq * 4 * Lx * tn;
      ob = roundUp(ob + Tc * 4 * nq * 4, 64);
    }
    rt.execMany(s, kernels, macs >= PARALLEL_MIN);
    const res = s.f32;
    jobs.forEach((j, i) => {
      const O = j.plan.outDim;
      const outP = 4 * (j.part.q1 - j.part.q0);
      const rows = Math.min(outP, O - 4 * j.part.q0);
      const o32 = obs[i]! >>> 2;
      for (let t = 0; t < tn; t++) j.out.set(res.subarray(o32 + t * outP, o32 + t * outP + rows), (t0 + t) * O + 4 * j.part.q0);
    });
  }

  /** The prefill kernels' scratch a group of jobs needs in the staging area: every thread's, for the largest panel. */
  private scratchBytes(jobs: readonly PartJob[]): number {
    let most = 0;
    for (const j of jobs) {
      const spec = j.plan.kind === 'q4_k' ? Q4K_DECODED : j.plan.kind === 'block' ? j.plan.block?.prefill : undefined;
      if (spec) most = Math.max(most, Math.ceil(Math.min(j.plan.panel, j.plan.segStride) / 256) * decodedBlockBytes(spec));
    }
    return most ? most * this.rt.threads + 64 : 0;
  }

  /** Tokens from which the prefill kernels run. */
  get prefillTokens(): number {
    return this.prefillMinTokens;
  }

  /** The kernel call for one packed part: nq quads at wp against tn staged tokens, results at ob (scr: the prefill kernels' scratch). */
  private mmJob(plan: PackPlan, wp: number, nq: number, xf: number, xq: number, xs: number, bs: number, ob: number, tn: number, Lx: number, scr: number): { name: KernelName; args: number[]; units: number } {
    const I = plan.inDim;
    const outP = 4 * nq;
    // tokens per tile: their activations (int16, or f32 for dense) for one column panel stay
    // within ~192 KiB of L2
    const tile = Math.max(1, Math.floor(TILE_BYTES / (Math.min(Lx, plan.panel) * (plan.xBlock ? 2 : 4))));
    // blocks per column panel for a block of `inputs` inputs (the kernels' unit of the layout)
    const pb = (inputs: number) => Math.ceil(Math.min(plan.panel, plan.segStride) / inputs);
    switch (plan.kind) {
      case 'i8g':
        return { name: 'mm_i8g', args: [wp, wp + nq * plan.quadBytes, xq, xs, ob, tn, plan.segs, plan.segStride, plan.xBlock, outP, tile, pb(16)], units: nq };
      case 'f32':
      case 'bf16':
      case 'f16':
        return { name: `mm_${plan.kind}`, args: [wp, xf, ob, tn, plan.segStride, outP, tile, pb(plan.kind === 'f32' ? 4 : 8)], units: nq };
      case 'q8_0':
        return { name: 'mm_q8_0', args: [wp, xq, xs, ob, tn, I / 32, outP, tile, pb(32)], units: nq / 2 }; // units of 2 quads
      case 'q4_0':
        return { name: this.relaxed ? 'mm_q4_0r' : 'mm_q4_0', args: [wp, xq, xs, bs, ob, tn, I / 32, outP, tile, pb(32)], units: nq };
      case 'q4_k':
        if (tn >= this.prefillMinTokens) return { name: 'mmp_q4_k', args: [wp, xq, xs, bs, ob, tn, I / 256, outP, tile, pb(256), scr], units: nq };
        return { name: 'mm_q4_k', args: [wp, xq, xs, bs, ob, tn, I / 256, outP, tile, pb(256)], units: nq };
      case 'block': {
        const bf = plan.block!;
        if (bf.prefill && tn >= this.prefillMinTokens) {
          return { name: prefillKernelName(bf), args: [wp, xq, xs, bs, ob, tn, I / bf.blockInputs, outP, tile, pb(bf.blockInputs), scr], units: nq };
        }
        return { name: kernelName(bf), args: [wp, xq, xs, bs, ob, tn, I / bf.blockInputs, outP, tile, pb(bf.blockInputs)], units: nq };
      }
    }
  }

  // -------------------------------------------------------------------------------------------
  // the other ops run in the work memory (shard 0)

  /** Grows the work memory to hold `bytes` after RESERVED and returns its f32 view. */
  private workView(bytes: number): Float32Array {
    this.rt.work.ensure(RESERVED + bytes);
    return this.rt.work.f32;
  }

  rmsNorm(out: Float32Array, x: Float32Array, T: number, D: number, scale: Float32Array, eps: number): void {
    this.check();
    this.count('wasm', 'rmsNorm');
    const Dp = roundUp(D, 4);
    const xa = RESERVED;
    const sa = roundUp(xa + T * Dp * 4, 64);
    const f = this.workView(sa + Dp * 4 - RESERVED);
    copyRows(f, xa >>> 2, Dp, x, 0, D, T, D);
    copyRows(f, sa >>> 2, Dp, scale, 0, D, 1, D);
    this.rt.exec(this.rt.work, 'rmsnorm', [xa, xa, sa, Dp, D, f32bits(eps)], T, T * D >= PARALLEL_MIN);
    copyRowsBack(out, 0, D, f, xa >>> 2, Dp, T, D);
  }

  rope(x: Float32Array, T: number, heads: number, headDim: number, positions: Int32Array, base: number): void {
    this.check();
    if (headDim % 2 !== 0) {
      this.count('js', 'rope');
      jsKernels.rope(x, T, heads, headDim, positions, base);
      return;
    }
    this.count('wasm', 'rope');
    const half = headDim / 2;
    const halfP = roundUp(half, 4);
    const key = `${headDim}:${base}`;
    let inv = this.invFreq.get(key);
    if (!inv) {
      inv = new Float64Array(half);
      for (let i = 0; i < half; i++) inv[i] = 1 / base ** ((2 * i) / headDim);
      this.invFreq.set(key, inv);
    }
    const xa = RESERVED;
    const ca = roundUp(xa + T * heads * 2 * halfP * 4, 64);
    const f = this.workView(ca + T * 2 * halfP * 4 - RESERVED);
    // [T·heads rows][2 halves] of `half` values, each half padded to halfP
    copyRows(f, xa >>> 2, halfP, x, 0, half, T * heads * 2, half);
    const c0 = ca >>> 2;
    for (let t = 0; t < T; t++) {
      const pos = positions[t]!;
      const row = c0 + t * 2 * halfP;
      for (let i = 0; i < half; i++) {
        f[row + i] = Math.cos(pos * inv[i]!);
        f[row + halfP + i] = Math.sin(pos * inv[i]!);
      }
    }
    this.rt.exec(this.rt.work, 'rope', [xa, ca, heads, halfP], T, T * heads * headDim >= PARALLEL_MIN);
    copyRowsBack(x, 0, half, f, xa >>> 2, halfP, T * heads * 2, half);
  }

  geluMul(gate: Float32Array, up: Float32Array, n: number): void {
    this.check();
    this.count('wasm', 'geluMul');
    const CHUNK = 1 << 22;
    for (let i0 = 0; i0 < n; i0 += CHUNK) {
      const m = Math.min(CHUNK, n - i0);
      const m4 = roundUp(m, 4);
      const ga = RESERVED;
      const ua = roundUp(ga + m4 * 4, 64);
      const f = this.workView(ua + m4 * 4 - RESERVED);
      f.set(gate.subarray(i0, i0 + m), ga >>> 2);
      f.set(up.subarray(i0, i0 + m), ua >>> 2);
      f.fill(0, (ga >>> 2) + m, (ga >>> 2) + m4);
      f.fill(0, (ua >>> 2) + m, (ua >>> 2) + m4);
      this.rt.exec(this.rt.work, 'gelu_mul', [ga, ua], m4 / 4, m >= PARALLEL_MIN / 4);
      gate.set(this.rt.work.f32.subarray(ga >>> 2, (ga >>> 2) + m), i0);
    }
  }

  attention(a: AttentionArgs): void {
    this.check();
    const { T, start, numQHeads: H, numKvHeads: Hkv, headDim: d } = a;
    if (H % Hkv !== 0 || T < 1) {
      this.count('js', 'attention');
      jsKernels.attention(a);
      return;
    }
    this.count('wasm', 'attention');
    const S = start + T;
    const S4 = roundUp(S, 4);
    // where q, the key mask, the score scratch and out go, from `base` in a shard
    const layout = (base: number, dP: number, kvBytes: number) => {
      const qa = base;
      const ka = roundUp(qa + T * H * dP * 4, 64);
      const va = roundUp(ka + kvBytes, 64);
      const ma = roundUp(va + kvBytes, 64);
      const sa = roundUp(ma + S4 + 16, 64);
      const oa = roundUp(sa + this.rt.threads * S4 * 4, 64);
      return { qa, ka, va, ma, sa, oa, end: oa + T * H * dP * 4 };
    };
    const run = (shard: Shard, l: ReturnType<typeof layout>, kp: number, vp: number, dP: number) => {
      copyRows(shard.f32, l.qa >>> 2, dP, a.q, 0, d, T * H, d);
      shard.u8.set(a.keyValid.subarray(0, S), l.ma);
      shard.u8.fill(0, l.ma + S, l.ma + S4 + 16);
      const units = T * H;
      this.rt.exec(
        shard, 'attention',
        [l.qa, kp, vp, l.ma, l.oa, l.sa, T, start, H, Hkv, dP, f32bits(a.scale), f32bits(a.softcap), S],
        units, units * S * d >= PARALLEL_MIN,
      );
      copyRowsBack(a.out, 0, d, shard.f32, l.oa >>> 2, dP, T * H, d);
    };
    // A KV cache from allocFloats is read where it lies (rows of Hkv·d, so d must fill whole
    // 16-float chunks); q, mask, scores and out go to its shard's staging area when they fit.
    const kIn = this.arena.locate(a.k);
    const vIn = this.arena.locate(a.v);
    if (kIn && vIn && kIn.shard === vIn.shard && d % 16 === 0) {
      const shard = kIn.shard;
      const l = layout(shard.stageBase, d, 0);
      if (l.end <= shard.stageBase + shard.stageBytes) {
        this.count('wasm', 'attention:kv-in-place');
        run(shard, l, kIn.ptr, vIn.ptr, d);
        return;
      }
    }
    // otherwise the used K/V rows are copied into the work memory, rows padded to 16 floats
    const dP = roundUp(d, 16);
    const l = layout(RESERVED, dP, S * Hkv * dP * 4);
    const f = this.workView(l.end - RESERVED);
    copyRows(f, l.ka >>> 2, dP, a.k, 0, d, S * Hkv, d);
    copyRows(f, l.va >>> 2, dP, a.v, 0, d, S * Hkv, d);
    run(this.rt.work, l, l.ka, l.va, dP);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await Promise.all(this.caches.map((c) => c.close()));
    await this.rt.close();
  }
}

/** rows × len floats from src (row stride srcStride) into dst at dstOff with row stride dstStride, zero-padding each row. */
function copyRows(dst: Float32Array, dstOff: number, dstStride: number, src: Float32Array, srcOff: number, srcStride: number, rows: number, len: number): void {
  if (dstStride === len && srcStride === len) {
    dst.set(src.subarray(srcOff, srcOff + rows * len), dstOff);
    return;
  }
  for (let r = 0; r < rows; r++) {
    const d = dstOff + r * dstStride;
    dst.set(src.subarray(srcOff + r * srcStride, srcOff + r * srcStride + len), d);
    dst.fill(0, d + len, d + dstStride);
  }
}

function copyRowsBack(dst: Float32Array, dstOff: number, dstStride: number, src: Float32Array, srcOff: number, srcStride: number, rows: number, len: number): void {
  if (dstStride === len && srcStride === len) {
    dst.set(src.subarray(srcOff, srcOff + rows * len), dstOff);
    return;
  }
  for (let r = 0; r < rows; r++) dst.set(src.subarray(srcOff + r * srcStride, srcOff + r * srcStride + len), dstOff + r * dstStride);
}
