/**
 * `convert --to safetensors` and the safetensors reader: the round trip is exact, the names,
 * shapes and dtypes are the ones vLLM's and SGLang's loaders look up, and hostile files give
 * FormatErrors naming the file and the field.
 *
 * Which comparison is exact, and why:
 * - f32: the official int8 weights times their bf16 scales are exact in float32 (8 + 8 significant
 *   bits < 24), and f32 norms and embeddings are copied as they are; so a converted f32 directory
 *   holds the checkpoint's own values and gives bit-identical logits.
 * - bf16: an int8 × bf16 product needs up to 16 significant bits, bf16 has 8, so bf16 is a
 *   rounding of the source and its logits differ from the checkpoint's (slightly). What it must
 *   equal exactly is the source rounded to bf16 once (nearest-even), which is what the GGUF bf16
 *   conversion stores (matrices bf16, norms and routers f32, as here): same bits, same kernels,
 *   bit-identical logits.
 */
import assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { jsKernels } from '../src/backend/js/kernels.js';
import { runCli } from './cli-harness.js';
import { convertToGguf } from '../src/convert/to-gguf.js';
import { convertToSafetensors, PLAIN_CHAT_JINJA } from '../src/convert/to-safetensors.js';
import { AbortError, FormatError } from '../src/errors.js';
import { encodeSafetensorsHeader, SafetensorsWriter } from '../src/formats/safetensors-writer.js';
import { openSafetensors, openSafetensorsStore } from '../src/formats/safetensors.js';
import { loadModel } from '../src/language-model.js';
import { GrokModel } from '../src/model/grok.js';
import { DEMO_MODEL_DIR, openModelFiles } from '../src/model/load.js';
import type { GrokWeights } from '../src/model/weights.js';
import { FIXTURES, readJson, shared } from './shared.js';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'safetensors-'));
after(() => fs.rmSync(tmp, { recursive: true, force: true }));

function logitsOf(weights: GrokWeights, tokens: number[]): Float32Array {
  const model = new GrokModel(weights, jsKernels);
  return model.forward([{ tokens, cache: model.newCache() }], { allLogits: true })[0]!;
}

async function convert(src: string, out: string, opts: Parameters<typeof convertToSafetensors>[3] = {}) {
  const files = openModelFiles(src);
  try {
    return await convertToSafetensors(files.weights, files.store, out, opts);
  } finally {
    files.close();
  }
}

/**
 * Logits of the model at `p`. `config` replaces the file's: a GGUF stores the multipliers as f32,
 * so its config differs from the checkpoint's in the last bits, which is not what is compared.
 */
function logitsAt(p: string, tokens: number[], config?: GrokWeights['config']): Float32Array {
  const f = openModelFiles(p);
  try {
    return logitsOf(config ? { ...f.weights, config } : f.weights, tokens);
  } finally {
    f.close();
  }
}

/**
 * The names, shapes and dtypes the engines' loaders look up for a model of this config, per layer.
 * Derived from (README "Scaling out" has the links):
 * - SGLang python/sglang/srt/models/grok.py (Grok1ForCausalLM.load_weights): q_proj/k_proj/v_proj
 *   → qkv_proj under `self_attn`; FusedMoE.make_expert_params_mapping(ckpt_gate_proj_name="w1",
 *   ckpt_down_proj_name="w2", ckpt_up_proj_name="w3") under `block_sparse_moe.experts.E.`;
 *   `block_sparse_moe.gate`, the four norms, `model.embed_tokens`, `model.norm`, `lm_head` by name.
 * - vLLM vllm/model_executor/models/grok1.py: Grok1ForCausalLM (ckpt names "linear", "linear_1",
 *   "linear_v", modules `attn`, `moe_block`) and Grok2ForCausalLM (w1/w2/w3, remapping
 *   ".self_attn."→".attn.", ".block_sparse_moe."→".moe_block."), chosen by _get_grok_version
 *   (moe_intermediate_size present → grok2).
 * Shapes are torch's nn.Linear [out, in]; embed_tokens and lm_head are [vocab, hidden].
 */
function expectedNameMap(naming: 'sglang' | 'hpcai', c: { V: number; D: number; H: number; Hkv: number; d: number; L: number; E: number; F: number }, dtype: 'BF16' | 'F32'): Map<string, { shape: number[]; dtype: string }> {
  const attn = naming === 'sglang' ? 'self_attn' : 'attn';
  const moe = naming === 'sglang' ? 'block_sparse_moe' : 'moe_block';
  const [w1, w3, w2] = naming === 'sglang' ? ['w1', 'w3', 'w2'] : ['linear', 'linear_v', 'linear_1'];
  const m = new Map<string, { shape: number[]; dtype: string }>();
  m.set('model.embed_tokens.weight', { shape: [c.V, c.D], dtype });
  m.set('lm_head.weight', { shape: [c.V, c.D], dtype });
  m.set('model.norm.weight', { shape: [c.D], dtype: 'F32' });
  for (let i = 0; i < c.L; i++) {
    const p = `model.layers.${i}`;
    for (const n of ['pre_attn_norm', 'post_attn_norm', 'pre_moe_norm', 'post_moe_norm']) m.set(`${p}.${n}.weight`, { shape: [c.D], dtype: 'F32' });
    m.set(`${p}.${attn}.q_proj.weight`, { shape: [c.H * c.d, c.D], dtype });
    m.set(`${p}.${attn}.k_proj.weight`, { shape: [c.Hkv * c.d, c.D], dtype });
    m.set(`${p}.${attn}.v_proj.weight`, { shape: [c.Hkv * c.d, c.D], dtype });
    m.set(`${p}.${attn}.o_proj.weight`, { shape: [c.D, c.H * c.d], dtype });
    m.set(`${p}.${moe}.gate.weight`, { shape: [c.E, c.D], dtype: 'F32' });
    for (let e = 0; e < c.E; e++) {
      m.set(`${p}.${moe}.experts.${e}.${w1}.weight`, { shape: [c.F, c.D], dtype });
      m.set(`${p}.${moe}.experts.${e}.${w3}.weight`, { shape: [c.F, c.D], dtype });
      m.set(`${p}.${moe}.experts.${e}.${w2}.weight`, { shape: [c.D, c.F], dtype });
    }
  }
  return m;
}

const TINY = { V: 1024, D: 48, H: 6, Hkv: 2, d: 8, L: 12, E: 8, F: 256 };

describe('convert --to safetensors: the tiny fixture', FIXTURES, () => {
  let ckpt: string;
  let prompt: number[];
  before(() => {
    ckpt = shared('fixtures', 'tiny', 'ckpt-0');
    prompt = readJson<{ prompt_ids: number[] }>('fixtures', 'tiny', 'expected.json').prompt_ids;
  });

  it('f32 is lossless: bit-identical logits to the checkpoint, and the same config', async () => {
    const out = path.join(tmp, 'tiny-f32');
    const r = await convert(ckpt, out, { dtype: 'f32', splitMaxBytes: 1e6 });
    assert.ok(r.files.filter((f) => f.endsWith('.safetensors')).length > 1, 'sharded');
    assert.deepEqual(r.warnings, []);
    const src = openModelFiles(ckpt);
    const back = openModelFiles(out);
    try {
      assert.equal(back.format, 'safetensors');
      assert.deepEqual(back.config, src.config);
      assert.deepEqual(logitsOf(back.weights, prompt), logitsOf(src.weights, prompt));
    } finally {
      src.close();
      back.close();
    }
  });

  it('bf16 equals the source rounded to bf16 once: bit-identical logits to the GGUF bf16 conversion', async () => {
    const out = path.join(tmp, 'tiny-bf16');
    await convert(ckpt, out, { splitMaxBytes: 300e3 });
    const gguf = path.join(tmp, 'tiny-bf16.gguf');
    const src = openModelFiles(ckpt);
    try {
      convertToGguf(src.weights, src.store, gguf, { type: 'bf16' });
      const exact = logitsOf(src.weights, prompt);
      const rounded = logitsAt(out, prompt);
      assert.deepEqual(rounded, logitsAt(gguf, prompt, src.config));
      // …and it is a rounding, not a different model: close to the checkpoint, not equal.
      let max = 0;
      for (let i = 0; i < exact.length; i++) max = Math.max(max, Math.abs(exact[i]! - rounded[i]!));
      assert.ok(max > 0 && max < 0.5, `bf16 logits near the checkpoint's, not equal (max diff ${max}; random weights amplify the rounding)`);
    } finally {
      src.close();
    }
  });

  for (const naming of ['sglang', 'hpcai'] as const) {
    it(`${naming} names: exactly the tensors, shapes and dtypes the engines' loaders look up`, async () => {
      const out = path.join(tmp, `tiny-names-${naming}`);
      await convert(ckpt, out, { naming, splitMaxBytes: 500e3 });
      const index = JSON.parse(fs.readFileSync(path.join(out, 'model.safetensors.index.json'), 'utf8')) as { metadata: { total_size: number }; weight_map: Record<string, string> };
      const expected = expectedNameMap(naming, TINY, 'BF16');
      assert.deepEqual(Object.keys(index.weight_map).sort(), [...expected.keys()].sort());
      let total = 0;
      for (const shard of new Set(Object.values(index.weight_map))) {
        const f = openSafetensors(path.join(out, shard));
        try {
          assert.deepEqual(f.metadata, { format: 'pt' }, 'transformers refuses safetensors without format=pt metadata');
          for (const [name, t] of f.tensors) {
            const want = expected.get(name)!;
            assert.deepEqual(t.shape, want.shape, name);
            assert.equal(t.dtype, want.dtype.toLowerCase(), name);
            assert.equal(index.weight_map[name], shard, name);
            total += t.byteLength;
          }
        } finally {
          f.close();
        }
      }
      assert.equal(index.metadata.total_size, total);
      const cfg = JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
      // the fields the two engines' configs read (see weights-safetensors.ts hfConfigJson)
      assert.deepEqual(cfg.architectures, ['Grok1ModelForCausalLM'], 'registered by every vLLM version and by SGLang');
      assert.equal(cfg.hidden_size, 48);
      assert.equal(cfg.num_attention_heads, 6);
      assert.equal(cfg.num_key_value_heads, 2);
      assert.equal(cfg.head_dim, 8);
      assert.equal(cfg.num_local_experts, 8);
      assert.equal(cfg.num_experts_per_tok, 2);
      assert.equal(cfg.intermediate_size, 256);
      assert.equal(cfg.moe_router_renormalize, false);
      assert.equal(cfg.router_logit_softcapping, 0);
      assert.equal(cfg.load_presharded_moe, false);
      assert.equal(cfg.tie_word_embeddings, false);
      assert.equal('attn_output_multiplier' in cfg, false, 'vLLM would scale the attention output by it');
      // vLLM picks the loader whose names these are: grok2 (w1/w2/w3) iff moe_intermediate_size is set
      assert.equal('moe_intermediate_size' in cfg, naming === 'sglang');
      // and both name sets load back to the same model
      assert.deepEqual(logitsAt(out, prompt), logitsAt(path.join(tmp, 'tiny-bf16'), prompt));
    });
  }

  it('an aborted conversion leaves no shard, no index and no temporary file', async () => {
    const out = path.join(tmp, 'tiny-aborted');
    const controller = new AbortController();
    let calls = 0;
    await assert.rejects(
      convert(ckpt, out, {
        splitMaxBytes: 300e3,
        signal: controller.signal,
        onProgress: () => {
          if (++calls === 40) controller.abort(new AbortError('test abort'));
        },
      }),
      AbortError,
    );
    assert.deepEqual(fs.readdirSync(out), []);
  });
});

describe('convert --to safetensors: from a GGUF', FIXTURES, () => {
  it('a k-quant GGUF dequantised to f32 gives bit-identical logits to the GGUF itself', async () => {
    const gguf = shared('fixtures', 'gguf', 'mini-q4_k_m.gguf');
    const out = path.join(tmp, 'mini-f32');
    await convert(gguf, out, { dtype: 'f32' });
    const src = openModelFiles(gguf);
    const back = openModelFiles(out);
    try {
      assert.deepEqual(back.config, src.config);
      const ids = [1, 5, 9, 200, 3];
      assert.deepEqual(logitsOf(back.weights, ids), logitsOf(src.weights, ids));
    } finally {
      src.close();
      back.close();
    }
  });
});

describe('convert --to safetensors: the demo model', FIXTURES, () => {
  it('loads back through loadModel with the tokenizer beside it, and generates what the checkpoint generates', async () => {
    const out = path.join(tmp, 'demo-f32');
    const r = await convert(DEMO_MODEL_DIR, out, { dtype: 'f32', tokenizerFile: path.join(DEMO_MODEL_DIR, '..', 'tokenizer.model'), tokenizerVocabSize: 131072 });
    assert.equal(r.tokenizer, 'copied');
    for (const f of ['tokenizer.model', 'tokenizer_config.json', 'special_tokens_map.json', 'generation_config.json', 'config.json']) assert.ok(fs.existsSync(path.join(out, f)), f);
    const tc = JSON.parse(fs.readFileSync(path.join(out, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
    assert.equal(tc.add_bos_token, false);
    assert.equal(tc.eos_token, '[EOS]');
    // the plain transcript as Jinja; rendered with jinja2 3.1.6 under transformers' settings
    // (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks) it equals plainChatTemplate
    assert.equal(tc.chat_template, PLAIN_CHAT_JINJA);
    const sample = readJson<{ samples: { prompt: string; prompt_ids: number[]; greedy: { ids: number[] } }[] }>('demo', 'fortune', 'samples.json').samples[0]!;
    const lm = await loadModel(out, { backend: 'js' });
    const demo = await loadModel(undefined, { backend: 'js' });
    try {
      assert.deepEqual(lm.tokenizer.encode(sample.prompt), sample.prompt_ids);
      assert.deepEqual(lm.logits(sample.prompt_ids), demo.logits(sample.prompt_ids));
      const g = await lm.generate(sample.prompt, { maxTokens: 12, temperature: 0 });
      assert.deepEqual(g.ids, sample.greedy.ids.slice(0, 12));
    } finally {
      await lm.close();
      await demo.close();
    }
  });

  it('bf16: bit-identical logits to the GGUF bf16 conversion of the demo', async () => {
    const out = path.join(tmp, 'demo-bf16');
    await convert(DEMO_MODEL_DIR, out);
    const gguf = path.join(tmp, 'demo-bf16.gguf');
    const src = openModelFiles(DEMO_MODEL_DIR);
    try {
      convertToGguf(src.weights, src.store, gguf, { type: 'bf16' });
    } finally {
      src.close();
    }
    const ids = [422, 4071, 359, 1180, 391];
    assert.deepEqual(logitsAt(out, ids), logitsAt(gguf, ids, src.config));
  });
});

describe('safetensors reader: hostile files', () => {
  /** A valid two-tensor file. */
  function valid(): Uint8Array {
    const plans = [
      { name: 'a', dtype: 'f32', shape: [2, 3] },
      { name: 'b', dtype: 'bf16', shape: [4] },
    ];
    const header = encodeSafetensorsHeader(plans);
    const out = new Uint8Array(header.length + 24 + 8);
    out.set(header);
    return out;
  }
  /** A file whose header is `json` (length-prefixed), then `data` bytes. */
  function withHeader(json: string, data = 64): Uint8Array {
    const body = Buffer.from(json);
    const out = new Uint8Array(8 + body.length + data);
    new DataView(out.buffer).setBigUint64(0, BigInt(body.length), true);
    out.set(body, 8);
    return out;
  }
  function open(bytes: Uint8Array, name: string) {
    const p = path.join(tmp, name);
    fs.writeFileSync(p, bytes);
    return () => openSafetensors(p);
  }
  const rejects = (bytes: Uint8Array, name: string, field: RegExp) => {
    assert.throws(open(bytes, name), (err: unknown) => {
      assert.ok(err instanceof FormatError, `${name}: ${String(err)}`);
      assert.ok(err.message.includes(path.join(tmp, name)), `${name} names the file: ${err.message}`);
      assert.match(err.message, field, name);
      return true;
    });
  };

  it('reads a valid file', () => {
    const f = open(valid(), 'ok.safetensors')();
    try {
      assert.deepEqual([...f.tensors.keys()], ['a', 'b']);
      assert.deepEqual(f.tensors.get('b')!.shape, [4]);
      assert.equal(f.tensors.get('b')!.offset, f.dataStart + 24);
    } finally {
      f.close();
    }
  });

  it('every truncation is a FormatError naming the file', () => {
    const bytes = valid();
    for (const n of [0, 4, 7, 8, 20, bytes.length - 33, bytes.length - 1]) {
      rejects(bytes.subarray(0, n), `trunc-${n}.safetensors`, /header length|data_offsets|JSON/);
    }
  });

  it('corrupt fields are FormatErrors naming the field', () => {
    const big = new Uint8Array(16);
    new DataView(big.buffer).setBigUint64(0, 1n << 60n, true);
    rejects(big, 'huge.safetensors', /header length of at most/);
    rejects(withHeader('[1,2]'), 'array.safetensors', /JSON object/);
    rejects(withHeader('{"a":'), 'json.safetensors', /UTF-8 JSON/);
    rejects(withHeader('{"a":{"dtype":"F8","shape":[1],"data_offsets":[0,1]}}'), 'dtype.safetensors', /tensor "a" field "dtype"/);
    rejects(withHeader('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}'), 'shape.safetensors', /tensor "a" field "shape"/);
    rejects(withHeader('{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}}'), 'size.safetensors', /tensor "a" field "data_offsets" to span 2 × 4 = 8 bytes/);
    rejects(withHeader('{"a":{"dtype":"F32","shape":[16],"data_offsets":[8,72]}}'), 'past.safetensors', /inside the 64 data bytes/);
    rejects(withHeader('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[4],"data_offsets":[8,24]}}'), 'overlap.safetensors', /not to overlap/);
    // an empty tensor between two overlapping ones must not hide the overlap
    rejects(withHeader('{"a":{"dtype":"F32","shape":[25],"data_offsets":[0,100]},"z":{"dtype":"F32","shape":[0],"data_offsets":[50,50]},"c":{"dtype":"F32","shape":[4],"data_offsets":[60,76]}}', 128), 'overlap-empty.safetensors', /tensor "c" field "data_offsets" not to overlap tensor "a"/);
    rejects(withHeader('{"__metadata__":{"format":1}}'), 'meta.safetensors', /"__metadata__"."format" to be a string/);
    rejects(withHeader('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0]}}'), 'offs.safetensors', /tensor "a" field "data_offsets" to be \[begin, end\]/);
  });

  it('random byte corruptions of a real header give a FormatError or a file that still checks out, never anything else', () => {
    const plans = Array.from({ length: 12 }, (_, i) => ({ name: `model.layers.${i}.w`, dtype: i % 2 ? 'bf16' : 'f32', shape: [3, i + 1] }));
    const header = encodeSafetensorsHeader(plans);
    const data = plans.reduce((n, p) => n + p.shape[0]! * p.shape[1]! * (p.dtype === 'f32' ? 4 : 2), 0);
    let state = 12345;
    const rand = (n: number) => ((state = (Math.imul(state, 1103515245) + 12345) >>> 0) % n);
    for (let i = 0; i < 300; i++) {
      const bytes = new Uint8Array(header.length + data);
      bytes.set(header);
      for (let k = 0, n = 1 + rand(3); k < n; k++) bytes[rand(header.length)] = rand(256);
      const p = path.join(tmp, 'fuzz.safetensors');
      fs.writeFileSync(p, bytes);
      try {
        const f = openSafetensors(p);
        for (const t of f.tensors.values()) assert.ok(t.offset + t.byteLength <= bytes.length);
        f.close();
      } catch (err) {
        assert.ok(err instanceof FormatError, `mutation ${i}: ${String(err)}`);
        assert.ok(err.message.includes(p));
      }
    }
  });

  it('an index may not point outside its directory, nor at a shard without the tensor', () => {
    const dir = path.join(tmp, 'bad-index');
    fs.mkdirSync(dir);
    const w = new SafetensorsWriter(dir, [{ name: 'x', dtype: 'f32', shape: [2] }]);
    w.append(new Uint8Array(8));
    w.commit();
    const index = path.join(dir, 'model.safetensors.index.json');
    fs.writeFileSync(index, JSON.stringify({ weight_map: { x: '../../etc/passwd' } }));
    assert.throws(() => openSafetensorsStore(dir), /"weight_map"."x" to be a file name in the same directory/);
    fs.writeFileSync(index, JSON.stringify({ weight_map: { y: 'model.safetensors' } }));
    assert.throws(() => openSafetensorsStore(dir), (e: unknown) => e instanceof FormatError && /tensor "y"/.test(e.message) && e.message.includes('model.safetensors'));
    fs.writeFileSync(index, JSON.stringify({ weight_map: { x: 'model.safetensors' } }));
    const s = openSafetensorsStore(dir);
    assert.deepEqual([...s.tensors.keys()], ['x']);
    s.close();
  });
});

describe('grok-ts convert --to safetensors (CLI)', FIXTURES, () => {
  const run = runCli;

  it('converts, refuses to overwrite without --force, rejects bad flags, and the directory loads', async () => {
    const ckpt = shared('fixtures', 'tiny', 'ckpt-0');
    const out = path.join(tmp, 'cli-st');
    const first = await run(['convert', ckpt, out, '--to', 'safetensors', '--split-max-size', '1M']);
    assert.equal(first.code, 0, first.err);
    assert.match(first.out, /wrote .*cli-st: 8 safetensors files, .* bf16, sglang names; tokenizer absent/);
    const again = await run(['convert', ckpt, out, '--to', 'safetensors']);
    assert.equal(again.code, 2);
    assert.match(again.err, /already exists; pass --force/);
    assert.equal((await run(['convert', ckpt, out, '--to', 'safetensors', '--split-max-size', '1M', '--force'])).code, 0);
    assert.match((await run(['convert', ckpt, out, '--to', 'safetensors', '--type', 'q8_0'])).err, /--type for safetensors must be bf16 or f32/);
    assert.match((await run(['convert', ckpt, out, '--to', 'safetensors', '--names', 'x'])).err, /--names must be one of sglang, hpcai/);
    assert.match((await run(['convert', ckpt, out, '--to', 'onnx'])).err, /--to must be gguf or safetensors/);
    const back = openModelFiles(out);
    assert.equal(back.store.tensors.size, expectedNameMap('sglang', TINY, 'BF16').size);
    back.close();
    // eval runs the directory: the logits of its bf16 weights, as the library computes them
    const ev = await run(['eval', '--model', out, '--ids', '5,6,7', '--backend', 'js']);
    assert.equal(ev.code, 0, ev.err);
    const row = (JSON.parse(ev.out) as { logits: number[][] }).logits[0]!;
    const lib = logitsAt(out, [5, 6, 7]);
    assert.deepEqual(row, Array.from(lib.subarray(lib.length - TINY.V)));
  });
});
