/**
 * The MoE sublayer (REFERENCE.md §2, step 3, second half): router softmax over E experts in
 * float32, top-K by probability (ties: lower index first, as lax.top_k), GELU-gated expert FFNs,
 * sum weighted by the raw (not renormalised) probabilities.
 *
 * Legend: N rows, D width, E experts, K selected, F ffn size, Ne rows routed to expert e.
 */
import type { Kernels } from '../backend/kernels.js';
import type { GrokConfig } from '../config.js';
import type { LayerWeights } from './weights.js';
import { expertHooks } from './residency.js';

export interface Routing {
  /** [N, K] chosen experts per row, best first. */
  readonly experts: Int32Array;
  /** [N, K] their softmax-over-E probabilities. */
  readonly gates: Float32Array;
}

/** Softmax over each row of E router logits, then top-K. */
export function route(logits: Float32Array, N: number, E: number, K: number): Routing {
  const experts = new Int32Array(N * K);
  const gates = new Float32Array(N * K);
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

/** Returns Σ_k gate_k · expert_k(m), [N, D]. Rows are grouped by expert so each expert's weights are read once per call. */
export function moeBlock(kernels: Kernels, c: Readonly<GrokConfig>, w: LayerWeights, m: Float32Array, N: number): Float32Array {
  const D = c.embSize;
  const E = c.numExperts;
  const K = c.numSelectedExperts;
  const logits = new Float32Array(N * E); // [N, E]
  kernels.matmul(logits, m, N, w.router);
  const { experts, gates } = route(logits, N, E, K);

  // An expert cache (residency.ts) may order the experts so that resident ones run while the
  // others load; outputs are summed in expert order afterwards, so results never depend on it.
  const hooks = expertHooks(kernels);
  const used = [...new Set(experts)].sort((a, b) => a - b);
  const order = hooks ? hooks.begin(w, used, m, N) : used;
  const ys: ({ rows: number[]; rowGates: number[]; y: Float32Array } | undefined)[] = new Array(E);
  try {
    for (const e of order) {
      ys[e] = runExpert(kernels, c, w, m, N, experts, gates, e);
      hooks?.done(w, e);
    }
  } finally {
    hooks?.end(w);
  }
  const out = new Float32Array(N * D); // [N, D]
  for (let e = 0; e < E; e++) {
    const r = ys[e];
    if (!r) continue;
    r.rows.forEach((n, i) => {
      const gate = r.rowGates[i]!;
      for (let j = 0; j < D; j++) out[n * D + j]! += gate * r.y[i * D + j]!;
    });
  }
  return out;
}

/** Expert e on the rows routed to it: their indices, gates and outputs [Ne, D]; undefined when none are. */
function runExpert(
  kernels: Kernels, c: Readonly<GrokConfig>, w: LayerWeights, m: Float32Array, N: number, experts: Int32Array, gates: Float32Array, e: number,
): { rows: number[]; rowGates: number[]; y: Float32Array } | undefined {
  const D = c.embSize;
  const K = c.numSelectedExperts;
  const F = c.ffnSize;
  const rows: number[] = [];
  const rowGates: number[] = [];
  for (let n = 0; n < N; n++) {
    for (let k = 0; k < K; k++) {
      if (experts[n * K + k] === e) {
        rows.push(n);
        rowGates.push(gates[n * K + k]!);
      }
    }
  }
  const Ne = rows.length;
  if (Ne === 0) return undefined;
  const x = new Float32Array(Ne * D); // [Ne, D]
  rows.forEach((n, r) => x.set(m.subarray(n * D, (n + 1) * D), r * D));
  const g = new Float32Array(Ne * F); // [Ne, F]
  const u = new Float32Array(Ne * F); // [Ne, F]
  const ex = w.experts[e]!;
  kernels.matmul(g, x, Ne, ex.gate);
  kernels.matmul(u, x, Ne, ex.up);
  kernels.geluMul(g, u, Ne * F);
  const y = new Float32Array(Ne * D); // [Ne, D]
  kernels.matmul(y, g, Ne, ex.down);
  return { rows, rowGates, y };
}
