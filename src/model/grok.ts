/**
 * The Grok-1 forward pass (docs/REFERENCE.md §2), written once against the Kernels interface.
 * A call takes one or more sequences, each with its own KV cache, and runs their new tokens as one
 * batch of rows, so matmuls read each weight once per call however many sequences there are.
 *
 * Legend: N rows of this call (all sequences' new tokens), D width, V vocabulary.
 */
import type { Kernels } from '../backend/kernels.js';
import type { GrokConfig } from '../config.js';
import { UsageError } from '../errors.js';
import { readOutMajorRow } from '../tensor/rows.js';
import { attentionBlock, type BatchSlice } from './attention.js';
import { KvCache } from './kv-cache.js';
import { moeBlock } from './moe.js';
import type { GrokWeights } from './weights.js';

export interface SequenceInput {
  /** New tokens of this sequence; they take cache positions cache.length … cache.length + T - 1. */
  readonly tokens: readonly number[];
  readonly cache: KvCache;
}

export interface ForwardOptions {
  /** Logits for every new token (T·V per sequence) instead of only the last (V). */
  readonly allLogits?: boolean;
}

export class GrokModel {
  readonly config: Readonly<GrokConfig>;

  constructor(readonly weights: GrokWeights, readonly kernels: Kernels) {
    this.config = weights.config;
  }

  newCache(initialCapacity?: number): KvCache {
    const k = this.kernels;
    // K/V in the backend's own memory where it has some, so its attention reads them in place
    const storage = k.allocFloats && k.freeFloats ? { allocFloats: k.allocFloats.bind(k), freeFloats: k.freeFloats.bind(k) } : undefined;
    return new KvCache(this.config, initialCapacity, storage);
  }

  /**
   * Runs the new tokens of each sequence and appends their K/V to its cache. Returns, per
   * sequence, its logits: [T, V] with allLogits, else the last row [V].
   */
  forward(seqs: readonly SequenceInput[], opts: ForwardOptions = {}): Float32Array[] {
    const c = this.config;
    const D = c.embSize;
    const V = c.vocabSize;
    const w = this.weights;
    const batch: BatchSlice[] = [];
    let N = 0;
    for (const [i, s] of seqs.entries()) {
      if (s.tokens.length === 0) throw new UsageError(`sequence ${i} has no tokens`, 'tokens');
      for (const t of s.tokens) {
        if (!Number.isInteger(t) || t < 0 || t >= V) throw new UsageError(`token id ${t} is outside the vocabulary [0, ${V})`, 'tokens');
      }
      if (seqs.some((o, j) => j < i && o.cache === s.cache)) throw new UsageError(`sequence ${i} shares its cache with another sequence of the batch`, 'cache');
      s.cache.reserve(s.tokens.length);
      batch.push({ cache: s.cache, row: N, T: s.tokens.length, start: s.cache.length });
      N += s.tokens.length;
    }

    // 1. Embedding × multiplier; positions continue each sequence's cache; pad ids are masked as keys.
    const h = new Float32Array(N * D); // [N, D]
    const positions = new Int32Array(N);
    const row = new Float32Array(D);
    for (const [i, s] of batch.entries()) {
      const tokens = seqs[i]!.tokens;
      for (let t = 0; t < s.T; t++) {
        readOutMajorRow(w.embedding, tokens[t]!, row);
        for (let j = 0; j < D; j++) h[(s.row + t) * D + j] = row[j]! * c.embeddingMultiplierScale;
        positions[s.row + t] = s.start + t;
        s.cache.keyValid[s.start + t] = tokens[t]! > c.padToken ? 1 : 0;
      }
    }

    // 2. Decoder layers: four RMSNorms, the post-norms wrap each sublayer's output before the residual add.
    const a = new Float32Array(N * D);
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l]!;
      this.kernels.rmsNorm(a, h, N, D, lw.attnNorm, c.rmsNormEps);
      const o = attentionBlock(this.kernels, c, lw, l, a, N, positions, batch);
      this.kernels.rmsNorm(o, o, N, D, lw.attnOutNorm, c.rmsNormEps);
      for (let i = 0; i < N * D; i++) h[i]! += o[i]!;
      this.kernels.rmsNorm(a, h, N, D, lw.ffnNorm, c.rmsNormEps);
      const y = moeBlock(this.kernels, c, lw, a, N);
      this.kernels.rmsNorm(y, y, N, D, lw.ffnOutNorm, c.rmsNormEps);
      for (let i = 0; i < N * D; i++) h[i]! += y[i]!;
    }
    for (const s of batch) s.cache.length = s.start + s.T;

    // 3. Final norm and the tied output projection × multiplier, only for the rows whose logits are wanted.
    const wanted: number[] = [];
    for (const s of batch) {
      if (opts.allLogits) for (let t = 0; t < s.T; t++) wanted.push(s.row + t);
      else wanted.push(s.row + s.T - 1);
    }
    const R = wanted.length;
    const z = new Float32Array(R * D); // [R, D]
    wanted.forEach((row, r) => z.set(h.subarray(row * D, (row + 1) * D), r * D));
    this.kernels.rmsNorm(z, z, R, D, w.finalNorm, c.rmsNormEps);
    const logits = new Float32Array(R * V); // [R, V]
    this.kernels.matmul(logits, z, R, w.output ?? w.embedding);
    for (let i = 0; i < R * V; i++) logits[i]! *= c.outputMultiplierScale;

    const result: Float32Array[] = [];
    let r = 0;
    for (const s of batch) {
      const rows = opts.allLogits ? s.T : 1;
      result.push(logits.slice(r * V, (r + rows) * V));
      r += rows;
    }
    return result;
  }
}
