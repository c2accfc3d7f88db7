/**
 * The official ckpt-0 (docs/REFERENCE.md §4) → GrokWeights. Checkpoint weights are input-major
 * [in, out]; a quantised one is int8 with bf16 scales [groups, out]; experts are stacked [E, …].
 */
import type { GrokConfig } from '../config.js';
import { WeightError } from '../errors.js';
import { LazyLinear, type LinearWeight } from '../tensor/linear.js';
import { shapeString, type TensorInfo, type TensorStore } from '../tensor/tensor.js';
import { checkShape, readFloatVector, requireTensor, totalBytes, type ExpertWeights, type GrokWeights, type LayerWeights } from './weights.js';

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

