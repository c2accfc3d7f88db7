/**
 * Named tensors → typed Grok weights, with every shape checked against the config. Checkpoint
 * quirks (names, expert stacking, orientation) live here, like mlx-lm's `sanitize`; the forward
 * pass only sees GrokWeights.
 *
 * Legend: V vocab, D model width, H/Hkv heads, d head size, E experts, F ffn size, G scale groups.
 */
import type { LinearWeight } from '../backend/kernels.js';
import type { GrokConfig } from '../config.js';
import { WeightError } from '../errors.js';
import { bf16BytesToF32, f16BytesToF32, f32View } from '../tensor/dtype.js';
import { LazyLinear } from '../tensor/linear.js';
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
// shared helpers for both readers

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

// ---------------------------------------------------------------------------------------------
// official ckpt-0 (REFERENCE.md §4): weights are input-major [in, out]

const CKPT = {
  embedding: 'language_model/in_out_embed/embeddings',
  finalNorm: 'language_model/rms_norm/scale',
  layer: (i: number) => `transformer/decoder_layer_${i}`,
};

/** One input-major linear [.., in, out] of the checkpoint (optionally expert e of a stacked tensor). */
function ckptLinear(t: TensorInfo, inDim: number, outDim: number, file: string, expert?: number): LinearWeight {
  const stacked = expert !== undefined;
  const name = stacked ? `${t.name}[${expert}]` : t.name;
  const lead = stacked ? [t.shape[0]!] : [];
  checkShape(t, [...lead, inDim, outDim], file);
  const e = expert ?? 0;
  if (t.dtype === 'f32') {
    const bytes = inDim * outDim * 4;
    return new LazyLinear(name, inDim, outDim, { kind: 'dense', dtype: 'f32', order: 'in-major' }, { source: t.source, offset: t.offset + e * bytes, byteLength: bytes });
  }
  if (t.dtype === 'i8' && t.scales) {
    const s = t.scales;
    const groups = s.shape[s.shape.length - 2]!;
    checkShape(s, [...lead, groups, outDim], file);
    if (s.dtype !== 'bf16') throw new WeightError({ tensor: `${t.name} scales`, expected: 'dtype bf16', found: s.dtype, file });
    if (groups < 1 || inDim % groups !== 0) {
      throw new WeightError({ tensor: `${t.name} scales`, expected: `a group count dividing ${inDim}`, found: `${groups}`, file });
    }
    const wBytes = inDim * outDim;
    const sBytes = groups * outDim * 2;
    return new LazyLinear(
      name, inDim, outDim, { kind: 'int8-grouped', groups },
      { source: t.source, offset: t.offset + e * wBytes, byteLength: wBytes },
      { source: s.source, offset: s.offset + e * sBytes, byteLength: sBytes },
    );
  }
  throw new WeightError({ tensor: t.name, expected: 'f32, or int8 with bf16 scales (QuantizedWeight8bit)', found: t.dtype, file });
}

export function grokWeightsFromCheckpoint(store: TensorStore, config: Readonly<GrokConfig>): GrokWeights {
  const c = config;
  const file = store.path;
  const D = c.embSize;
  const get = (name: string) => requireTensor(store, name);

  const emb = get(CKPT.embedding);
  checkShape(emb, [c.vocabSize, D], file);
  if (emb.dtype !== 'f32') throw new WeightError({ tensor: emb.name, expected: 'dtype f32', found: emb.dtype, file });
  const embedding = new LazyLinear(emb.name, D, c.vocabSize, { kind: 'dense', dtype: 'f32', order: 'out-major' }, emb);

  const extra = `${CKPT.layer(c.numLayers)}/rms_norm/scale`;
  if (store.tensors.has(extra)) {
    // Silently running the first numLayers of a deeper checkpoint would be a different model.
    throw new WeightError({ tensor: CKPT.layer(c.numLayers), expected: `no layer ${c.numLayers}: the config says num_layers ${c.numLayers}`, found: 'the checkpoint has more layers', file });
  }
  const layers: LayerWeights[] = [];
  for (let i = 0; i < c.numLayers; i++) {
    const p = CKPT.layer(i);
    const attn = (n: string) => get(`${p}/multi_head_attention/${n}/w`);
    const moe = (n: string) => get(`${p}/moe/${n}/w`);
    const norm = (n: string) => readFloatVector(get(`${p}/${n}/scale`), D, file);
    const gate = moe('linear');
    const up = moe('linear_v');
    const down = moe('linear_1');
    const experts: ExpertWeights[] = [];
    for (let e = 0; e < c.numExperts; e++) {
      experts.push({
        gate: ckptLinear(gate, D, c.ffnSize, file, e),
        up: ckptLinear(up, D, c.ffnSize, file, e),
        down: ckptLinear(down, c.ffnSize, D, file, e),
      });
    }
    for (const t of [gate, up, down]) {
      if (t.shape[0] !== c.numExperts) {
        throw new WeightError({ tensor: t.name, expected: `${c.numExperts} experts in dimension 0`, found: shapeString(t.shape), file });
      }
    }
    const router = get(`${p}/router/w`);
    layers.push({
      attnNorm: norm('rms_norm'),
      wq: ckptLinear(attn('query'), D, c.numQHeads * c.keySize, file),
      wk: ckptLinear(attn('key'), D, c.numKvHeads * c.keySize, file),
      wv: ckptLinear(attn('value'), D, c.numKvHeads * c.keySize, file),
      wo: ckptLinear(attn('linear'), c.numQHeads * c.keySize, D, file),
      attnOutNorm: norm('rms_norm_1'),
      ffnNorm: norm('rms_norm_2'),
      router: ckptLinear(router, D, c.numExperts, file),
      experts,
      ffnOutNorm: norm('rms_norm_3'),
    });
  }
  const finalNorm = readFloatVector(get(CKPT.finalNorm), D, file);
  return { config: c, embedding, finalNorm, layers, byteLength: totalBytes(embedding, layers, D) };
}

export function totalBytes(embedding: LinearWeight, layers: readonly LayerWeights[], D: number): number {
  let n = embedding.byteLength + D * 4;
  for (const l of layers) {
    n += l.wq.byteLength + l.wk.byteLength + l.wv.byteLength + l.wo.byteLength + l.router.byteLength + 4 * D * 4;
    for (const e of l.experts) n += e.gate.byteLength + e.up.byteLength + e.down.byteLength;
  }
  return n;
}
