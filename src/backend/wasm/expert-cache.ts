/**
 * Expert streaming under a memory budget: a bounded set of *slots* in wasm memory, each holding one
 * expert's matrices (gate, up, down) packed back to back in their quad layouts (layout.ts), filled on
 * demand when the router picks that expert and evicted by a policy (LRU, LFU or decayed frequency).
 * Non-expert weights stay resident as before; in Grok-1 experts are ≈ 97 % of the bytes and a token
 * uses 2 of 8 per layer, so a cache of a fraction of them serves a model larger than RAM.
 *
 * The cache only decides *where* an expert lives and *when* it is loaded; an ExpertLoader fills a
 * slot, either on the calling thread (SyncLoader) or on reader threads that read and pack straight
 * into the shared wasm memory while the kernels compute (expert-reader.ts). A load's bytes are the
 * same either way, so logits are bit-identical to the resident path.
 *
 * Use per MoE layer: begin(groups) pins the experts a batch needs, counts hits and starts the
 * missing loads (ready experts are returned first, so they compute while the rest is read);
 * acquire(g) before each matmul waits for g if it is still loading; done(g) unpins it; end() unpins
 * whatever is left (also after an error). prefetch(groups) starts loads that nothing waits for yet
 * (the next layer's predicted experts).
 */
import { UsageError } from '../../errors.js';
import type { LinearWeight } from '../../tensor/linear.js';
import { packQuads, partBytes, type PackPlan } from './layout.js';
import type { Shard } from './runtime.js';
import type { FileIdentities } from './file-identity.js';

export type EvictionPolicy = 'lru' | 'lfu' | 'decay';
export const EVICTION_POLICIES: readonly EvictionPolicy[] = ['lru', 'lfu', 'decay'];

/** Where a slot lies. */
export interface SlotMemory {
  readonly shard: Shard;
  readonly ptr: number;
}

/** One expert's matrices packed back to back: plan and byte offset of each, and the total. */
export interface ExpertLayout {
  readonly plans: readonly PackPlan[];
  readonly offsets: readonly number[];
  readonly bytes: number;
}

export function expertLayout(plans: readonly PackPlan[]): ExpertLayout {
  const offsets: number[] = [];
  let at = 0;
  for (const p of plans) {
    offsets.push(at);
    at = Math.ceil((at + partBytes(p, p.quads)) / 64) * 64;
  }
  return { plans, offsets, bytes: at };
}

export interface LoadJob {
  readonly group: number;
  readonly weights: readonly LinearWeight[];
  readonly layout: ExpertLayout;
  readonly slot: SlotMemory;
}

/** Fills slots with packed experts. */
export interface ExpertLoader {
  /** Starts filling job.slot; returns a ticket for done()/wait(). A synchronous loader does the work here and keeps any error for wait(). */
  start(job: LoadJob): number;
  /** Has the load ended (successfully or not)? Never blocks. */
  done(ticket: number): boolean;
  /** Blocks until the load ends; throws its error (a typed GrokError) if it failed. */
  wait(ticket: number): void;
  close(): Promise<void>;
}

/** Packs a group into its slot from the weights' own byte sources (positioned reads in 16 MB chunks). */
export function loadGroupNow(job: LoadJob, ids?: FileIdentities): void {
  ids?.check(job.weights);
  const { slot, layout } = job;
  const dst = slot.shard.u8.subarray(slot.ptr, slot.ptr + layout.bytes);
  dst.fill(0);
  job.weights.forEach((w, i) => {
    const plan = layout.plans[i]!;
    packQuads(plan, w, 0, plan.quads, dst.subarray(layout.offsets[i]!, layout.offsets[i]! + partBytes(plan, plan.quads)));
    w.release(); // bytes another path may have cached
  });
}

/** Loads on the calling thread, inside start(). */
export class SyncLoader implements ExpertLoader {
  private next = 1;
  constructor(private readonly ids?: FileIdentities) {}
  private readonly failed = new Map<number, unknown>();
  start(job: LoadJob): number {
    const t = this.next++;
    try {
      loadGroupNow(job, this.ids);
    } catch (err) {
      this.failed.set(t, err);
    }
    return t;
  }
  done(): boolean {
    return true;
  }
  wait(ticket: number): void {
    const err = this.failed.get(ticket);
    if (err !== undefined) {
      this.failed.delete(ticket);
      throw err;
    }
  }
  async close(): Promise<void> {}
}

const EMPTY = 0;
const LOADING = 1;
const READY = 2;

interface Slot {
  readonly mem: SlotMemory;
  readonly bytes: number;
  /** A background fill load (fill()). */
  background: boolean;
  group: number;
  state: number;
  ticket: number;
  pins: number;
  /** Filled by prefetch and not used since. */
  prefetched: boolean;
  /** Started for a batch that has ended: a failure is dropped (the next batch needing it reads again and gets its own error). */
  orphan: boolean;
}

export interface ExpertCacheStats {
  /** Expert uses (one per distinct expert per MoE call) found resident or already loading. */
  hits: number;
  misses: number;
  /** Hits that a prefetch had loaded (or was loading). */
  prefetchHits: number;
  /** Prefetch loads started, and those evicted or failed before any use. */
  prefetches: number;
  prefetchWasted: number;
  /** Loads and the stored bytes they read. */
  loads: number;
  bytesRead: number;
  evictions: number;
  /** Time the forward pass spent waiting for loads, in ms. */
  waitMs: number;
  /** Loads started by the background fill (fill()). */
  backgroundLoads: number;
}

export interface ExpertCacheOptions {
  readonly policy?: EvictionPolicy;
  /** decay: a use's weight halves after this many begin() calls (default 64). */
  readonly halfLife?: number;
  /**
   * For the first this-many begin() calls (the MoE layers of the first forward pass), a miss takes
   * a slot the current batch does not use before it takes memory never used before (default 0).
   * A fresh slot's first fill writes pages no one has touched, which on a VM costs more than the
   * read (0.3–0.6 GB/s measured); the first token would pay that for every expert its prompt routes
   * to, and afterwards tokens fill the cache anyway. Where every expert has its own slot (a lazy
   * start of a model that fits), the victim is one of the same size and the background fill reads
   * it back afterwards: a few hundred MB read twice, in the background, for a first token that
   * touches a layer's worth of fresh memory instead of nearly every expert's.
   */
  readonly reuseFirst?: number;
}

export class ExpertCache {
  readonly slots: Slot[] = [];
  readonly slotBytes: number;
  readonly policy: EvictionPolicy;
  readonly stats: ExpertCacheStats = { hits: 0, misses: 0, prefetchHits: 0, prefetches: 0, prefetchWasted: 0, loads: 0, bytesRead: 0, evictions: 0, waitMs: 0, backgroundLoads: 0 };
  private readonly slotOf: Int32Array;
  private readonly lastUse: Float64Array;
  private readonly freq: Float64Array;
  private tick = 0;
  private readonly halfLife: number;
  private readonly reuseFirst: number;
  private readonly storedBytes: Float64Array;
  /** capacity ≥ groups: every group gets a slot of its own size; only the first pass evicts (reuseFirst), and the fill reads those back. */
  private readonly exact: boolean;
  private fillNext = 0;
  /** waitFilled() was called: fill without waiting for the first forward pass. */
  private fillForced = false;
  private fillTimer: ReturnType<typeof setInterval> | undefined;
  private filled: Promise<void> | undefined;
  private fillDone: (() => void) | undefined;

  constructor(
    private readonly groups: readonly (readonly LinearWeight[])[],
    private readonly layouts: readonly ExpertLayout[],
    /** Slots at most (≥ 1). */
    readonly capacity: number,
    private readonly allocSlot: (bytes: number) => SlotMemory,
    private readonly loader: ExpertLoader,
    opts: ExpertCacheOptions = {},
  ) {
    if (!(Number.isInteger(capacity) && capacity >= 1)) throw new UsageError(`an expert cache needs at least one slot, got ${capacity}`);
    this.policy = opts.policy ?? 'lru';
    if (!EVICTION_POLICIES.includes(this.policy)) throw new UsageError(`eviction policy must be one of ${EVICTION_POLICIES.join(', ')}, got ${String(this.policy)}`, 'evictionPolicy');
    this.halfLife = opts.halfLife ?? 64;
    this.reuseFirst = opts.reuseFirst ?? 0;
    this.slotBytes = Math.max(...layouts.map((l) => l.bytes));
    this.exact = capacity >= groups.length;
    this.slotOf = new Int32Array(groups.length).fill(-1);
    this.lastUse = new Float64Array(groups.length);
    this.freq = new Float64Array(groups.length);
    this.storedBytes = new Float64Array(groups.map((ws) => ws.reduce((n, w) => n + w.byteLength, 0)));
  }

  /** Bytes of the slots allocated so far. */
  get residentBytes(): number {
    return this.slots.reduce((n, s) => n + s.bytes, 0);
  }


  /**
   * Background fill: starts loads of groups not yet resident (in order: layer 0's experts first)
   * into free capacity, never evicting, until `maxInFlight` are in flight; nothing until the first
   * `reuseFirst` begin() calls have run. Returns whether there is more to fill. Failures are
   * dropped (a batch needing that expert reads it again).
   */
  fill(maxInFlight: number): boolean {
    // The first forward pass goes first: fill loads would share the readers and the fresh-memory
    // faults with the first token's own loads (measured: 1.7 s more load, no earlier first token),
    // unless someone waits for residency.
    if (this.tick < this.reuseFirst && !this.fillForced) return true;
    let inFlight = 0;
    for (const s of this.slots) {
      if (s.state === LOADING && s.background && s.pins === 0 && this.loader.done(s.ticket)) this.settle(s, false);
      if (s.state === LOADING && s.background) inFlight++;
    }
    while (inFlight < maxInFlight && this.fillNext < this.groups.length) {
      const g = this.fillNext;
      if (this.slotOf[g]! >= 0) {
        this.fillNext++;
        continue;
      }
      const need = this.exact ? this.layouts[g]!.bytes : this.slotBytes;
      if (this.slots.length >= this.capacity && !this.slots.some((x) => x.state === EMPTY && x.pins === 0 && x.bytes >= need)) {
        this.fillNext = this.groups.length; // full: the rest comes on demand
        break;
      }
      const s = this.takeSlot(g, true, true)!;
      s.background = true;
      s.orphan = true;
      this.stats.backgroundLoads++;
      this.fillNext++;
      inFlight++;
    }
    return this.fillNext < this.groups.length || inFlight > 0;
  }

  /** Runs fill() from a timer while the event loop is idle (between tokens); resolves when nothing is left to fill. */
  startBackgroundFill(maxInFlight: number, everyMs = 5): Promise<void> {
    this.filled ??= new Promise<void>((resolve) => {
      this.fillDone = resolve;
      const tick = () => {
        let more: boolean;
        try {
          more = this.fill(maxInFlight);
        } catch {
          more = false;
        }
        if (!more) {
          clearInterval(this.fillTimer);
          this.fillTimer = undefined;
          resolve();
        }
      };
      this.fillTimer = setInterval(tick, everyMs);
      this.fillTimer.unref();
      tick();
    });
    return this.filled;
  }

  /**
   * startBackgroundFill for a caller that waits on it: the fill's timer then holds the process
   * open (an idle model's fill does not), else a process awaiting only this would exit unsettled.
   */
  waitFilled(maxInFlight: number): Promise<void> {
    this.fillForced = true;
    const filled = this.startBackgroundFill(maxInFlight);
    this.fillTimer?.ref();
    return filled;
  }


  /** Where matrix i of group g lies, loading or waiting for g first. */
  locate(g: number, i: number): { shard: Shard; ptr: number } {
    const s = this.acquire(g);
    return { shard: s.mem.shard, ptr: s.mem.ptr + this.layouts[g]!.offsets[i]! };
  }

  /**
   * A batch is about to use `groups` (distinct): counts hits, pins them, starts the missing loads
   * into free or evictable slots, and returns the order to run them in: resident first, then
   * loading in the order the loads were started, then those for which no slot was free yet.
   */
  begin(groups: readonly number[]): number[] {
    this.tick++;
    const ready: number[] = [];
    const loading: number[] = [];
    const later: number[] = [];
    for (const g of groups) {
      this.touch(g);
      const o = this.slotOf[g]!;
      // a load left from an ended batch: settle it first, so its failure (if any) is not this batch's
      if (o >= 0 && this.slots[o]!.state === LOADING && this.slots[o]!.orphan) this.settle(this.slots[o]!, false);
      const si = this.slotOf[g]!;
      if (si >= 0) {
        const s = this.slots[si]!;
        this.stats.hits++;
        if (s.prefetched) {
          this.stats.prefetchHits++;
          s.prefetched = false;
        }
        s.pins++;
        (s.state === READY ? ready : loading).push(g);
      } else {
        this.stats.misses++;
        later.push(g);
      }
    }
    const unslotted: number[] = [];
    for (const g of later) {
      const s = this.takeSlot(g, false);
      if (!s) {
        unslotted.push(g);
        continue;
      }
      s.pins++;
      loading.push(g);
    }
    return [...ready, ...loading, ...unslotted];
  }

  /** The batch is done with g. */
  done(g: number): void {
    const si = this.slotOf[g]!;
    if (si >= 0 && this.slots[si]!.pins > 0) this.slots[si]!.pins--;
  }

  /** The batch is done with every group (also after an error). */
  end(): void {
    for (const s of this.slots) {
      s.pins = 0;
      if (s.state === LOADING) s.orphan = true;
    }
  }

  /** Starts loads of `groups` that nothing waits for yet, evicting only unpinned, settled slots. */
  prefetch(groups: readonly number[]): void {
    for (const g of groups) {
      if (this.slotOf[g]! >= 0) continue;
      const s = this.takeSlot(g, true);
      if (!s) return;
      s.prefetched = true;
      this.stats.prefetches++;
    }
  }

  /** The slot of g, ready: waits for its load, or loads it now (evicting) if it has none. */
  acquire(g: number): Slot {
    let si = this.slotOf[g]!;
    if (si < 0) {
      if (this.takeSlot(g, false) === undefined) this.takeSlotAfterWaiting(g);
      si = this.slotOf[g]!;
    }
    const s = this.slots[si]!;
    if (s.state === LOADING) this.settle(s, true);
    if (s.state !== READY) {
      // a prefetch that failed: load again, now for the caller that needs it (its error is theirs)
      return this.acquire(g);
    }
    return s;
  }

  /** Finishes a load: on failure the slot is emptied and, if `rethrow`, the error thrown unless it was a prefetch. */
  private settle(s: Slot, rethrow: boolean): void {
    const t0 = performance.now();
    const g = s.group;
    try {
      this.loader.wait(s.ticket);
      s.state = READY;
      s.background = false;
    } catch (err) {
      const wasPrefetch = s.prefetched || s.orphan;
      this.slotOf[g] = -1;
      s.group = -1;
      s.state = EMPTY;
      if (s.prefetched) this.stats.prefetchWasted++;
      s.prefetched = false;
      s.orphan = false;
      if (rethrow && !wasPrefetch) throw err;
    } finally {
      this.stats.waitMs += performance.now() - t0;
    }
  }

  private touch(g: number): void {
    const h = this.halfLife;
    if (this.policy === 'decay') this.freq[g] = this.freq[g]! * 2 ** (-(this.tick - this.lastUse[g]!) / h) + 1;
    else this.freq[g]!++;
    this.lastUse[g] = this.tick;
  }

  private score(g: number): number {
    switch (this.policy) {
      case 'lru':
        return this.lastUse[g]!;
      case 'lfu':
        return this.freq[g]! * 1e9 + this.lastUse[g]!; // ties: least recent
      case 'decay':
        return this.freq[g]! * 2 ** (-(this.tick - this.lastUse[g]!) / this.halfLife);
    }
  }

  /**
   * A slot for g with its load started: a free one; during the first `reuseFirst` begin() calls,
   * a victim this batch does not use; a new one while under capacity; or the policy's victim among
   * unpinned, settled slots (a prefetch never evicts a slot used at this tick). The background
   * fill never reuses: it only fills memory the cache may still take.
   */
  private takeSlot(g: number, forPrefetch: boolean, background = false): Slot | undefined {
    const need = this.exact ? this.layouts[g]!.bytes : this.slotBytes;
    let s = this.slots.find((x) => x.state === EMPTY && x.pins === 0 && x.bytes >= need);
    if (!s && !background && this.tick <= this.reuseFirst) s = this.victim(need, true);
    if (!s && this.slots.length < this.capacity) {
      const bytes = this.exact ? this.layouts[g]!.bytes : this.slotBytes;
      s = { mem: this.allocSlot(bytes), bytes, background: false, group: -1, state: EMPTY, ticket: 0, pins: 0, prefetched: false, orphan: false };
      this.slots.push(s);
    }
    s ??= this.victim(need, forPrefetch);
    if (!s) return undefined;
    s.group = g;
    s.state = LOADING;
    s.prefetched = false;
    s.orphan = false;
    s.background = false;
    this.slotOf[g] = this.slots.indexOf(s);
    this.stats.loads++;
    this.stats.bytesRead += this.storedBytes[g]!;
    s.ticket = this.loader.start({ group: g, weights: this.groups[g]!, layout: this.layouts[g]!, slot: s.mem });
    return s;
  }

  /**
   * The policy's victim among unpinned, settled slots of at least `need` bytes (not one used at
   * this tick when `notThisTick`), emptied for a new load; undefined when there is none. Where every
   * expert has its own slot, only one of exactly `need` bytes: the slots then still add up to the
   * resident size once the background fill has read the victims back.
   */
  private victim(need: number, notThisTick: boolean): Slot | undefined {
    for (const x of this.slots) {
      if (x.state === LOADING && this.loader.done(x.ticket) && x.pins === 0) this.settle(x, false);
    }
    let best = Infinity;
    let s: Slot | undefined;
    for (const x of this.slots) {
      if (x.pins > 0 || x.state === LOADING) continue;
      if (notThisTick && this.lastUse[x.group]! >= this.tick) continue;
      if (x.bytes < need || (this.exact && x.bytes !== need)) continue;
      const sc = x.state === EMPTY ? -Infinity : this.score(x.group);
      if (sc < best) {
        best = sc;
        s = x;
      }
    }
    if (s?.state === READY) {
      this.stats.evictions++;
      if (s.prefetched) this.stats.prefetchWasted++;
      this.slotOf[s.group] = -1;
      // every expert is meant to end up resident: the background fill comes back for this one
      if (this.exact) this.fillNext = Math.min(this.fillNext, s.group);
    }
    return s;
  }

  /** Every slot is pinned or loading: wait for an unpinned load to finish, then take a slot. */
  private takeSlotAfterWaiting(g: number): Slot {
    for (const x of this.slots) {
      if (x.state === LOADING && x.pins === 0) {
        this.settle(x, false);
        const s = this.takeSlot(g, false);
        if (s) return s;
      }
    }
    throw new UsageError(`expert cache: all ${this.slots.length} slots are in use by the current batch; the memory budget must hold more experts`, 'memoryBudget');
  }

  async close(): Promise<void> {
    clearInterval(this.fillTimer);
    this.fillDone?.(); // nothing more will be filled: a waiter must not hang
    await this.loader.close();
  }
}
