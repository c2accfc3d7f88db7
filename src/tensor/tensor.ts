/**
 * Lazy tensor descriptors: what a format reader returns. Nothing here holds tensor bytes; a
 * descriptor says where they are (source, offset, byteLength), so a model reads only what it uses.
 */
import type { ByteSource } from './byte-source.js';

/**
 * Storage dtype. Plain scalars use numpy's names; GGUF block-quantised types use ggml's names
 * in lower case (`q8_0`, `q4_k`, `iq2_xs`, …; see tensor/ggml.ts).
 */
export type DType = 'f32' | 'f16' | 'bf16' | 'i8' | (string & {});

export interface TensorInfo {
  /** Parameter path as the format names it (ckpt-0: `transformer/decoder_layer_0/moe/linear/w`; GGUF: `blk.0.attn_q.weight`). */
  readonly name: string;
  readonly dtype: DType;
  /** Logical shape, row-major (slowest dimension first, as numpy). GGUF `ne` is reversed into this order. */
  readonly shape: readonly number[];
  readonly source: ByteSource;
  readonly offset: number;
  readonly byteLength: number;
  /**
   * Official int8 weights (`QuantizedWeight8bit`): the bf16 scales, shape [..., G, out] where the
   * weight is [..., K, out]; row k uses scale row floor(k·G/K) (docs/REFERENCE.md §4).
   */
  readonly scales?: TensorInfo;
}

/** A set of named tensors read from one checkpoint (a ckpt-0 directory, or one GGUF model). */
export interface TensorStore {
  /** What was opened, for messages (a directory or the first file). */
  readonly path: string;
  readonly format: 'ckpt-0' | 'gguf' | 'safetensors';
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  close(): void;
}

export function shapeString(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Bytes on disk of a tensor including its scales. */
export function storedBytes(t: TensorInfo): number {
  return t.byteLength + (t.scales ? t.scales.byteLength : 0);
}
