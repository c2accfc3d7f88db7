/**
 * The typed Grok weights the forward pass sees, and the checks both readers share. Each file
 * format maps its names onto these in its own file (weights-ckpt.ts, weights-gguf.ts), like
 * mlx-lm's `sanitize`; the forward pass never sees a checkpoint quirk.
 *
 * Legend: V vocab, D model width, H/Hkv heads, d head size, E experts, F ffn size, G scale groups.
 */
import type { GrokConfig } from '../config.js';
import { WeightError } from '../errors.js';
import { bf16BytesToF32, f16BytesToF32, f32View } from '../tensor/dtype.js';
import type { LinearWeight } from '../tensor/linear.js';
import { shapeString, type TensorInfo, type TensorStore } from '../tensor/tensor.js';

export interface ExpertWeights {
  /** moe/linear (GGUF ffn_gate_exps): D → F, gets the GELU. */
  readonly gate: LinearWeight;
  /** moe/linear_v (GGUF ffn_up_exps): D → F, the linear branch. */
  readonly up: LinearWeight;
  /** moe/linear_1 (GGUF ffn_down_exps): F → D. */
  readonly down: LinearWeight;
}

export interface LayerWeights {
  readonly attnNorm: Float32Array; // rms_norm [D]
  readonly wq: LinearWeight; // D → H·d
  readonly wk: LinearWeight; // D → Hkv·d
  readonly wv: LinearWeight; // D → Hkv·d
  readonly wo: LinearWeight; // H·d → D (multi_head_attention/linear)
  readonly attnOutNorm: Float32Array; // rms_norm_1 [D]
  readonly ffnNorm: Float32Array; // rms_norm_2 [D]
  readonly router: LinearWeight; // D → E
  readonly experts: readonly ExpertWeights[]; // [E]
  readonly ffnOutNorm: Float32Array; // rms_norm_3 [D]
}

export interface GrokWeights {
  readonly config: Readonly<GrokConfig>;
  /** Tied embedding, out-major: row v is token v's D-vector; the output projection is z · Eᵀ. */
  readonly embedding: LinearWeight; // D → V
  /** An untied output projection (D → V, out-major), when the file has one; else the embedding serves. */
  readonly output?: LinearWeight;
  readonly finalNorm: Float32Array; // language_model/rms_norm [D]
  readonly layers: readonly LayerWeights[];
  /** Total bytes of all weights in their stored form. */
  readonly byteLength: number;
}

// ---------------------------------------------------------------------------------------------
// checks shared by the readers

export function requireTensor(store: TensorStore, name: string): TensorInfo {
  const t = store.tensors.get(name);
  if (!t) throw new WeightError({ tensor: name, expected: 'a tensor of that name', found: 'none', file: store.path });
  return t;
}

export function checkShape(t: TensorInfo, expected: readonly number[], file: string): void {
  if (t.shape.length !== expected.length || t.shape.some((n, i) => n !== expected[i])) {
    throw new WeightError({ tensor: t.name, expected: `shape ${shapeString(expected)}`, found: shapeString(t.shape), file });
  }
}

/** Reads a small float vector (norm scales) eagerly as f32. */
export function readFloatVector(t: TensorInfo, length: number, file: string): Float32Array {
  checkShape(t, [length], file);
  const bytes = t.source.read(t.offset, t.byteLength);
  switch (t.dtype) {
    case 'f32':
      return f32View(bytes);
    case 'bf16':
      return bf16BytesToF32(bytes);
    case 'f16':
      return f16BytesToF32(bytes);
    default:
      throw new WeightError({ tensor: t.name, expected: 'dtype f32, f16 or bf16', found: t.dtype, file });
  }
}

export function totalBytes(embedding: LinearWeight, layers: readonly LayerWeights[], D: number): number {
  let n = embedding.byteLength + D * 4;
  for (const l of layers) {
    n += l.wq.byteLength + l.wk.byteLength + l.wv.byteLength + l.wo.byteLength + l.router.byteLength + 4 * D * 4;
    for (const e of l.experts) n += e.gate.byteLength + e.up.byteLength + e.down.byteLength;
  }
  return n;
}
