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
import { ForwardScratch } from './scratch.js';
import type { GrokWeights } from './weights.js';

export interface SequenceInput {
  /** New tokens of this sequence; they take cache positions cache.length … cache.length + T - 1. */
  readonly tokens: readonly number[];
  readonly cache: KvCache;
}

export interface ForwardOptions {
  /** Logits for every new token (T·V per sequence) instead of only the last (V). */
  readonly allLogits?: boolean;
  /**
   * Instead of logits, the final RMS-normed hidden state of every new token (T·D per sequence):
   * what the tied output projection would read, e.g. for embeddings.
   */
  readonly hidden?: boolean;
}

export class GrokModel {
  readonly config: Readonly<GrokConfig>;
  /** The forward pass's activations, reused across calls (scratch.ts). */
  readonly scratch: ForwardScratch;

  constructor(readonly weights: GrokWeights, readonly kernels: Kernels) {
    this.config = weights.config;
    this.scratch = new ForwardScratch(this.config);
  }

  newCache(initialCapacity?: number): KvCache {
    const k = this.kernels;
    // K/V in the backend's own memory where it has some, so its attention reads them in place
    const storage = k.allocFloats && k.freeFloats ? { allocFloats: k.allocFloats.bind(k), freeFloats: k.freeFloats.bind(k) } : undefined;
    return new KvCache(this.config, initialCapacity, storage);
  }

  /**
   * Runs the new tokens of each sequence and appends their K/V to its cache. Returns, per
   * sequence, its logits: [T, V] with allLogits, else the last row [V]; with `hidden`, its final
   * normed hidden states [T, D] instead.
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

    const allRows = opts.allLogits || opts.hidden;
    const R = allRows ? N : batch.length;
    const b = this.scratch.buffers(N, R, opts.hidden);
    const { h, a, positions, valid } = b;

    // 1. Embedding × multiplier; positions continue each sequence's cache; pad ids are masked as keys.
    const row = b.z.subarray(0, D); // scratch for one embedding row (z is written only in step 3)
    for (const [i, s] of batch.entries()) {
      const tokens = seqs[i]!.tokens;
      for (let t = 0; t < s.T; t++) {
        readOutMajorRow(w.embedding, tokens[t]!, row);
        for (let j = 0; j < D; j++) h[(s.row + t) * D + j] = row[j]! * c.embeddingMultiplierScale;
        positions[s.row + t] = s.start + t;
        valid[s.row + t] = tokens[t]! > c.padToken ? 1 : 0;
      }
      s.cache.markKeys(s.start, valid.subarray(s.row, s.row + s.T));
    }

    // 2. Decoder layers: four RMSNorms, the post-norms wrap each sublayer's output before the residual add.
    for (let l = 0; l < c.numLayers; l++) {
      const lw = w.layers[l]!;
      this.kernels.rmsNorm(a, h, N, D, lw.attnNorm, c.rmsNormEps);
      attentionBlock(this.kernels, c, lw, l, b, batch);
      const o = b.o;
      this.kernels.rmsNorm(o, o, N, D, lw.attnOutNorm, c.rmsNormEps);
      for (let i = 0; i < N * D; i++) h[i]! += o[i]!;
      this.kernels.rmsNorm(a, h, N, D, lw.ffnNorm, c.rmsNormEps);
      moeBlock(this.kernels, c, lw, b);
      const y = b.y;
      this.kernels.rmsNorm(y, y, N, D, lw.ffnOutNorm, c.rmsNormEps);
      for (let i = 0; i < N * D; i++) h[i]! += y[i]!;
    }
    for (const s of batch) s.cache.commit(s.T);

    // 3. Final norm and the tied output projection × multiplier, only for the rows whose logits are wanted.
    const { z } = b; // [R, D]
    let r0 = 0;
    for (const s of batch) {
      const first = allRows ? s.row : s.row + s.T - 1;
      const rows = allRows ? s.T : 1;
      z.set(h.subarray(first * D, (first + rows) * D), r0 * D);
      r0 += rows;
    }
    this.kernels.rmsNorm(z, z, R, D, w.finalNorm, c.rmsNormEps);
    if (opts.hidden) return batch.map((s) => z.slice(s.row * D, (s.row + s.T) * D));
    const logits = b.logits!; // [R, V]
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
