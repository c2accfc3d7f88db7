/**
 * The forward pass's working arrays, owned by the model and reused across calls (llama2.c's
 * RunState): every activation of one call lives here, sized for the call's shape, so a decode step
 * allocates nothing large. Arrays are reallocated only when a call needs more rows than any before
 * (a longer prompt, a bigger batch); a smaller call uses views of the front of them.
 *
 * They are plain JS arrays: the wasm backend stages activations into its own memory per kernel
 * call anyway. Only the KV cache, which its attention reads in place, comes from Kernels.allocFloats.
 *
 * Legend: N rows of the call (all sequences' new tokens), R output rows (logits or hidden states),
 * D width, H/Hkv heads, d head size, E experts, K selected, F ffn size, V vocabulary.
 */
import type { GrokConfig } from '../config.js';

/** Views sized for one call's shape. Contents are garbage on entry: every user writes before reading. */
export interface ForwardBuffers {
  readonly N: number;
  readonly R: number;
  /** [N, D] residual stream. */
  readonly h: Float32Array;
  /** [N, D] normed input of a sublayer. */
  readonly a: Float32Array;
  /** [N, D] attention output. */
  readonly o: Float32Array;
  /** [N, D] MoE output (accumulated: zeroed by its user). */
  readonly y: Float32Array;
  /** [N] cache position of each row. */
  readonly positions: Int32Array;
  /** [N] 1 where the row's token is not a pad id. */
  readonly valid: Uint8Array;
  /** [N, H·d] queries, then [N, H·d] attention result. */
  readonly q: Float32Array;
  readonly attn: Float32Array;
  /** [N, Hkv·d] new keys and values. */
  readonly k: Float32Array;
  readonly v: Float32Array;
  /** [N, E] router logits. */
  readonly router: Float32Array;
  /** [N·K] chosen experts and their gates, and the rows routed to one expert with their gates (≤ N: a row picks an expert once). */
  readonly experts: Int32Array;
  readonly gates: Float32Array;
  readonly expertRows: Int32Array;
  readonly expertGates: Float32Array;
  /** [N, D] one expert's input rows and its output; [N, F] its gate and up projections. */
  readonly ex: Float32Array;
  readonly ey: Float32Array;
  readonly g: Float32Array;
  readonly u: Float32Array;
  /** [R, D] final-normed rows; [R, V] their logits (absent when the call wants hidden states only). */
  readonly z: Float32Array;
  readonly logits: Float32Array | undefined;
}

export class ForwardScratch {
  private rowCap = 0;
  private outCap = 0;
  private logitCap = 0;
  private rowArrays: Float32Array[] = [];
  private intArrays: Int32Array[] = [];
  private valid = new Uint8Array(0);
  private zArray = new Float32Array(0);
  private logitArray = new Float32Array(0);
  private last: ForwardBuffers | undefined;

  constructor(private readonly config: Readonly<GrokConfig>) {}

  /** Bytes held (what a long prompt left allocated). */
  get byteLength(): number {
    let n = this.valid.byteLength + this.zArray.byteLength + this.logitArray.byteLength;
    for (const a of [...this.rowArrays, ...this.intArrays]) n += a.byteLength;
    return n;
  }

  /** Drops the arrays; the next call reallocates them at its own size. */
  release(): void {
    this.rowCap = this.outCap = this.logitCap = 0;
    this.rowArrays = [];
    this.intArrays = [];
    this.valid = new Uint8Array(0);
    this.zArray = new Float32Array(0);
    this.logitArray = new Float32Array(0);
    this.last = undefined;
  }

  /** Buffers for a call of N rows with R output rows, with logits unless `hiddenOnly`. */
  buffers(N: number, R: number, hiddenOnly = false): ForwardBuffers {
    const withLogits = !hiddenOnly;
    const l = this.last;
    if (l && l.N === N && l.R === R && (l.logits !== undefined) === withLogits) return l;
    const c = this.config;
    const D = c.embSize;
    const qRow = c.numQHeads * c.keySize;
    const kvRow = c.numKvHeads * c.keySize;
    const K = c.numSelectedExperts;
    // floats per row of: h a o y q attn k v router gates expertGates ex ey g u
    const widths = [D, D, D, D, qRow, qRow, kvRow, kvRow, c.numExperts, K, 1, D, D, c.ffnSize, c.ffnSize];
    if (N > this.rowCap) {
      this.rowArrays = widths.map((w) => new Float32Array(N * w));
      this.intArrays = [new Int32Array(N), new Int32Array(N * K), new Int32Array(N)]; // positions, experts, expertRows
      this.valid = new Uint8Array(N);
      this.rowCap = N;
    }
    if (R > this.outCap) {
      this.zArray = new Float32Array(R * D);
      this.outCap = R;
    }
    if (withLogits && R > this.logitCap) {
      this.logitArray = new Float32Array(R * c.vocabSize);
      this.logitCap = R;
    }
    const f = this.rowArrays.map((a, i) => a.subarray(0, N * widths[i]!));
    const [positions, experts, expertRows] = this.intArrays.map((a, i) => a.subarray(0, i === 1 ? N * K : N));
    this.last = {
      N, R,
      h: f[0]!, a: f[1]!, o: f[2]!, y: f[3]!, q: f[4]!, attn: f[5]!, k: f[6]!, v: f[7]!, router: f[8]!,
      gates: f[9]!, expertGates: f[10]!, ex: f[11]!, ey: f[12]!, g: f[13]!, u: f[14]!,
      positions: positions!, experts: experts!, expertRows: expertRows!,
      valid: this.valid.subarray(0, N),
      z: this.zArray.subarray(0, R * D),
      logits: withLogits ? this.logitArray.subarray(0, R * c.vocabSize) : undefined,
    };
    return this.last;
  }
}
