/**
 * The MoE sublayer (docs/REFERENCE.md §2, step 3, second half): router softmax over E experts in
 * float32, top-K by probability (ties: lower index first, as lax.top_k), GELU-gated expert FFNs,
 * sum weighted by the raw (not renormalised) probabilities.
 *
 * Legend: N rows, D width, E experts, K selected, F ffn size, Ne rows routed to expert e.
 */
import type { Kernels } from '../backend/kernels.js';
import type { GrokConfig } from '../config.js';
import type { ForwardBuffers } from './scratch.js';
import type { LayerWeights } from './weights.js';
import { expertHooks, type ExpertHooks } from './residency.js';

export interface Routing {
  /** [N, K] chosen experts per row, best first. */
  readonly experts: Int32Array;
  /** [N, K] their softmax-over-E probabilities. */
  readonly gates: Float32Array;
}

/** Softmax over each row of E router logits, then top-K (into `out` when given). */
export function route(logits: Float32Array, N: number, E: number, K: number, out?: Routing): Routing {
  const experts = out?.experts ?? new Int32Array(N * K);
  const gates = out?.gates ?? new Float32Array(N * K);
  const p = new Float64Array(E);
  const taken = new Uint8Array(E);
  for (let n = 0; n < N; n++) {
    let max = -Infinity;
    for (let e = 0; e < E; e++) max = Math.max(max, logits[n * E + e]!);
    let sum = 0;
    for (let e = 0; e < E; e++) sum += p[e] = Math.exp(logits[n * E + e]! - max);
    for (let e = 0; e < E; e++) p[e]! /= sum;
    taken.fill(0);
    for (let k = 0; k < K; k++) {
      let best = -1;
      for (let e = 0; e < E; e++) if (!taken[e] && (best < 0 || p[e]! > p[best]!)) best = e; // strict >: lower index wins ties
      taken[best] = 1;
      experts[n * K + k] = best;
      gates[n * K + k] = p[best]!;
    }
  }
  return { experts, gates };
}

/**
 * y = Σ_k gate_k · expert_k(a), [N, D], from the normed input a [N, D]; both in the call's buffers.
 * Rows are grouped by expert so each expert's weights are read once per call.
 */
export function moeBlock(kernels: Kernels, c: Readonly<GrokConfig>, w: LayerWeights, b: ForwardBuffers): void {
  const { N, a: m, y: out, ey: y, expertRows: rows, expertGates: rowGates } = b;
  const D = c.embSize;
  const E = c.numExperts;
  const K = c.numSelectedExperts;
  kernels.matmul(b.router, m, N, w.router);
  route(b.router, N, E, K, b);

  out.fill(0);
  const hooks = expertHooks(kernels);
  if (hooks) return streamedExperts(kernels, c, w, b, hooks);
  for (let e = 0; e < E; e++) {
    const Ne = runExpert(kernels, c, w, b, e);
    accumulate(out, rows, rowGates, y, Ne, D);
  }
}

/** Expert e on the rows routed to it (into b.expertRows / expertGates / ey); returns how many there are. */
function runExpert(kernels: Kernels, c: Readonly<GrokConfig>, w: LayerWeights, b: ForwardBuffers, e: number): number {
  const { N, a: m, ex: x, g, u, ey: y, expertRows: rows, expertGates: rowGates, experts, gates } = b;
  const D = c.embSize;
  const K = c.numSelectedExperts;
  let Ne = 0; // rows routed to e
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      if (experts[n * K + k] === e) {
        rows[Ne] = n;
        rowGates[Ne++] = gates[n * K + k]!;
      }
    }
  }
  if (Ne === 0) return 0;
  for (let r = 0; r < Ne; r++) x.set(m.subarray(rows[r]! * D, (rows[r]! + 1) * D), r * D);
  const ex = w.experts[e]!;
  kernels.matmulMany([g, u], x, Ne, [ex.gate, ex.up]);
  kernels.geluMul(g, u, Ne * c.ffnSize);
  kernels.matmul(y, g, Ne, ex.down);
  return Ne;
}

function accumulate(out: Float32Array, rows: Int32Array, rowGates: Float32Array, y: Float32Array, Ne: number, D: number): void {
  for (let r = 0; r < Ne; r++) {
    const n = rows[r]!;
    const gate = rowGates[r]!;
    for (let i = 0; i < D; i++) out[n * D + i]! += gate * y[r * D + i]!;
  }
}

/**
 * With an expert cache (residency.ts): the experts run in the order it gives (resident ones while
 * the others load), each one's rows, gates and outputs kept, then summed in expert order as above,
 * so the result is bit-identical to the resident path.
 */
function streamedExperts(kernels: Kernels, c: Readonly<GrokConfig>, w: LayerWeights, b: ForwardBuffers, hooks: ExpertHooks): void {
  const D = c.embSize;
  const used = [...new Set(b.experts)].sort((p, q) => p - q);
  const order = hooks.begin(w, used, b.a, b.N);
  const kept: ({ rows: Int32Array; gates: Float32Array; y: Float32Array } | undefined)[] = [];
  try {
    for (const e of order) {
      const Ne = runExpert(kernels, c, w, b, e);
      kept[e] = { rows: b.expertRows.slice(0, Ne), gates: b.expertGates.slice(0, Ne), y: b.ey.slice(0, Ne * D) };
      hooks.done(w, e);
    }
  } finally {
    hooks.end(w);
  }
  for (let e = 0; e < c.numExperts; e++) {
    const k = kept[e];
    if (k) accumulate(b.y, k.rows, k.gates, k.y, k.rows.length, D);
  }
}
