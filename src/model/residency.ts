/**
 * Which weights stay resident under a memory budget, and the hooks through which the MoE layer
 * tells an expert cache what a batch needs. The budget counts resident weight bytes (packed, as
 * the backend holds them): every non-expert weight (embedding, attention, routers, norms) plus
 * a number of expert slots. A budget that holds every expert changes nothing (all resident, packed
 * as before); a smaller one streams experts through the cache (backend/wasm/expert-cache.ts); one
 * below the non-expert bytes plus one layer's selected experts (top-K) is a MemoryBudgetError.
 */
import type { Kernels } from '../backend/kernels.js';
import { MemoryBudgetError, UsageError } from '../errors.js';
import type { LinearWeight } from '../tensor/linear.js';
import { route } from './moe.js';
import type { GrokWeights, LayerWeights } from './weights.js';

const UNITS: Record<string, number> = { '': 1, k: 2 ** 10, m: 2 ** 20, g: 2 ** 30, t: 2 ** 40 };

/** Bytes from a number or a string such as `16G`, `512M`, `1.5GiB`, `4096` (K/M/G/T are powers of 1024). */
export function parseByteSize(v: string | number, what = 'memoryBudget'): number {
  if (typeof v === 'number') {
    if (!(Number.isFinite(v) && v > 0)) throw new UsageError(`${what} must be a positive number of bytes, got ${v}`, what);
    return Math.floor(v);
  }
  const m = /^\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*$/i.exec(v);
  if (!m) throw new UsageError(`${what} must be bytes or a size like 16G, 512M, 1.5GiB; got ${JSON.stringify(v)}`, what);
  const n = Math.floor(Number(m[1]) * UNITS[m[2]!.toLowerCase()]!);
  if (!(n > 0)) throw new UsageError(`${what} must be positive, got ${JSON.stringify(v)}`, what);
  return n;
}

/** Every expert of the model as [gate, up, down], group index = layer · E + expert. */
export function expertGroups(w: GrokWeights): LinearWeight[][] {
  return w.layers.flatMap((l) => l.experts.map((e) => [e.gate, e.up, e.down]));
}

/** The weights that are not experts. */
export function nonExpertWeights(w: GrokWeights): LinearWeight[] {
  return [w.embedding, ...(w.output ? [w.output] : []), ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.router])];
}

export interface ResidencyPlan {
  /** 'resident': every weight packed resident (no budget, or one that holds them all); 'stream': experts through a cache. */
  readonly mode: 'resident' | 'stream';
  readonly budgetBytes: number | undefined;
  /** Non-expert weights (and norm vectors) as held resident. */
  readonly nonExpertBytes: number;
  /** One expert slot (the largest expert as held). */
  readonly expertBytes: number;
  readonly experts: number;
  /** Expert slots the budget holds (all experts when resident). */
  readonly slots: number;
  /** Everything resident. */
  readonly totalBytes: number;
  /** The smallest budget that runs: non-expert bytes + top-K expert slots. */
  readonly minimumBytes: number;
  /** Expert bytes a decoded token uses (top-K per layer). */
  readonly expertBytesPerToken: number;
}

/** `sizeOf(w)`: bytes the backend holds w in (packed size on wasm, stored size on js). */
export function planResidency(w: GrokWeights, sizeOf: (w: LinearWeight) => number, budget?: number): ResidencyPlan {
  const c = w.config;
  const norms = 4 * c.embSize * (4 * c.numLayers + 1);
  const nonExpertBytes = nonExpertWeights(w).reduce((n, x) => n + sizeOf(x), 0) + norms;
  const groups = expertGroups(w);
  const sizes = groups.map((g) => g.reduce((n, x) => n + Math.ceil(sizeOf(x) / 64) * 64, 0));
  const expertBytes = Math.max(0, ...sizes);
  const total = nonExpertBytes + sizes.reduce((a, b) => a + b, 0);
  const K = c.numSelectedExperts;
  const minimumBytes = nonExpertBytes + K * expertBytes;
  const perToken = (sizes.reduce((a, b) => a + b, 0) / Math.max(1, groups.length)) * K * c.numLayers;
  const base = { budgetBytes: budget, nonExpertBytes, expertBytes, experts: groups.length, totalBytes: total, minimumBytes, expertBytesPerToken: perToken };
  if (budget === undefined || budget >= total) return { ...base, mode: 'resident', slots: groups.length };
  if (budget < minimumBytes) {
    throw new MemoryBudgetError(budget, minimumBytes, `non-expert weights ${nonExpertBytes} bytes + ${K} experts × ${expertBytes} bytes`);
  }
  const slots = Math.min(groups.length, Math.floor((budget - nonExpertBytes) / expertBytes));
  return { ...base, mode: 'stream', slots };
}

/** What the MoE layer tells an expert store about a batch (moe.ts). */
export interface ExpertHooks {
  /** The batch's distinct experts (ascending) in layer `w`; returns the order to run them in. `m` [N, D] is the layer's router input. */
  begin(w: LayerWeights, experts: readonly number[], m: Float32Array, N: number): readonly number[];
  /** Expert e of layer w has run. */
  done(w: LayerWeights, e: number): void;
  /** The layer has run (or failed). */
  end(w: LayerWeights): void;
}

const hooks = new WeakMap<Kernels, ExpertHooks>();

export function expertHooks(k: Kernels): ExpertHooks | undefined {
  return hooks.get(k);
}

export function setExpertHooks(k: Kernels, h: ExpertHooks | undefined): void {
  if (h) hooks.set(k, h);
  else hooks.delete(k);
}

/** The cache operations the hooks use (backend/wasm/expert-cache.ts's ExpertCache). */
export interface ExpertStore {
  begin(groups: readonly number[]): number[];
  done(group: number): void;
  end(): void;
  prefetch(groups: readonly number[]): void;
  fill(maxInFlight: number): boolean;
}

export interface StreamingOptions {
  /** Predict layer l+1's experts from layer l's router input through l+1's router and prefetch them. */
  readonly predict?: boolean;
  /** Called per MoE call with the layer and its distinct experts (traces for the benchmark). */
  readonly onRoute?: (layer: number, experts: readonly number[]) => void;
  /** Background fill loads to keep in flight while the forward pass runs (0 = none). */
  readonly fillInFlight?: number;
}

/** Hooks that map a layer's experts to cache groups, and optionally prefetch the next layer's. */
export class StreamingHooks implements ExpertHooks {
  private readonly layerIndex = new Map<LayerWeights, number>();
  /** Predictions made / of which the expert was then used. */
  predicted = 0;
  predictedUsed = 0;
  private lastPrediction: { layer: number; experts: Set<number> } | undefined;
  private filling: boolean;

  get predicting(): boolean {
    return this.opts.predict === true;
  }

  constructor(
    private readonly weights: GrokWeights,
    private readonly kernels: Kernels,
    private readonly store: ExpertStore,
    private readonly opts: StreamingOptions = {},
  ) {
    weights.layers.forEach((l, i) => this.layerIndex.set(l, i));
    this.filling = (opts.fillInFlight ?? 0) > 0;
  }

  begin(w: LayerWeights, experts: readonly number[], m: Float32Array, N: number): readonly number[] {
    const l = this.layerIndex.get(w)!;
    const E = this.weights.config.numExperts;
    this.opts.onRoute?.(l, experts);
    if (this.lastPrediction?.layer === l) {
      for (const e of experts) if (this.lastPrediction.experts.has(e)) this.predictedUsed++;
      this.lastPrediction = undefined;
    }
    const order = this.store.begin(experts.map((e) => l * E + e)).map((g) => g - l * E);
    if (this.filling) this.filling = this.store.fill(this.opts.fillInFlight!);
    const next = this.weights.layers[l + 1];
    if (this.opts.predict && next) {
      const logits = new Float32Array(N * E);
      this.kernels.matmul(logits, m, N, next.router);
      const K = this.weights.config.numSelectedExperts;
      const chosen = new Set(route(logits, N, E, K).experts);
      this.predicted += chosen.size;
      this.lastPrediction = { layer: l + 1, experts: chosen };
      this.store.prefetch([...chosen].map((e) => (l + 1) * E + e));
    }
    return order;
  }

  done(w: LayerWeights, e: number): void {
    this.store.done(this.layerIndex.get(w)! * this.weights.config.numExperts + e);
  }

  end(): void {
    this.store.end();
  }
}
