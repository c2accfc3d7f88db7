/**
 * What a checkpoint holds and what running it needs, without reading a weight: the report behind
 * `grok-ts inspect`, for library users too.
 */
import { parameterCount, type GrokConfig } from '../config.js';
import { describeGguf, type GgufDescription } from '../formats/gguf-split.js';
import { shapeString, storedBytes } from '../tensor/tensor.js';
import { openModelFiles, type ModelFiles } from './load.js';
import { planResidency } from './residency.js';
import { partBytes, planFor } from '../backend/wasm/layout.js';

export interface TensorSummary {
  readonly name: string;
  /** The stored dtype; an official int8 weight reads `i8+bf16 scales [G, out]`. */
  readonly dtype: string;
  readonly shape: readonly number[];
  /** Bytes on disk, scales included. */
  readonly bytes: number;
}

export interface ModelReport {
  readonly path: string;
  readonly format: ModelFiles['format'];
  readonly config: Readonly<GrokConfig>;
  readonly parameters: number;
  readonly weightBytes: number;
  /** K and V of every layer for one token, as float32 (what the KV cache holds). */
  readonly kvCacheBytesPerToken: number;
  /** Weights, a full-context KV cache and the activations of one step: a lower bound for a run. */
  readonly memoryForFullContext: number;
  /**
   * Under --memory-budget (stored sizes; packed ones differ by ≤ 6 %): the least that must stay
   * resident (non-expert weights + top-K experts), one expert's bytes, everything, and the bytes
   * one decoded token reads (the non-expert weights and its top-K experts per layer).
   */
  readonly residency: { readonly minimumBytes: number; readonly nonExpertBytes: number; readonly expertBytes: number; readonly totalBytes: number; readonly expertBytesPerToken: number; readonly bytesPerToken: number };
  readonly tensors: readonly TensorSummary[];
  /** For a GGUF: its files, metadata and bytes per quantisation type. */
  readonly gguf?: GgufDescription;
}

/**
 * Opens the model at `path` (a ckpt-0 directory or its parent, a GGUF file or split set), reports
 * on it and closes it. Reads headers only. Errors are those of openModelFiles.
 */
export function inspectModel(path: string): ModelReport {
  const files = openModelFiles(path);
  try {
    const c = files.config;
    const tensors = [...files.store.tensors.values()].map((t) => ({
      name: t.name,
      dtype: t.scales ? `${t.dtype}+${t.scales.dtype} scales ${shapeString(t.scales.shape)}` : t.dtype,
      shape: t.shape,
      bytes: storedBytes(t),
    }));
    const weightBytes = tensors.reduce((n, t) => n + t.bytes, 0);
    const kvPerToken = 2 * c.numLayers * c.numKvHeads * c.keySize * 4;
    const activations = 4 * (c.vocabSize + 4 * c.embSize + 2 * c.ffnSize + c.numQHeads * c.sequenceLen);
    const gguf = files.format === 'gguf' ? describeGguf(path) : undefined;
    return {
      path: files.path,
      format: files.format,
      config: c,
      parameters: parameterCount(c),
      weightBytes,
      kvCacheBytesPerToken: kvPerToken,
      memoryForFullContext: weightBytes + kvPerToken * c.sequenceLen + activations,
      residency: residencySummary(files.weights),
      tensors,
      ...(gguf ? { gguf } : {}),
    };
  } finally {
    files.close();
  }
}

function residencySummary(w: Parameters<typeof planResidency>[0]): ModelReport['residency'] {
  // Sized as the wasm backend (the default) packs them, so the minimum is the one loadModel checks.
  const p = planResidency(w, (x) => {
    const plan = planFor(x);
    return plan ? partBytes(plan, plan.quads) : x.byteLength;
  });
  return { minimumBytes: p.minimumBytes, nonExpertBytes: p.nonExpertBytes, expertBytes: p.expertBytes, totalBytes: p.totalBytes, expertBytesPerToken: p.expertBytesPerToken, bytesPerToken: p.nonExpertBytes + p.expertBytesPerToken };
}
