import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FormatError } from '../src/errors.js';
import { NumpyArray, PICKLE_LIMITS, QuantizedWeight8bit, unpickle, type NdArrayInfo, type UnpickleResult } from '../src/formats/pickle.js';
import { FileSource, MemorySource, type ByteSource } from '../src/formats/tensor-file.js';
import { bf16BytesToF32, f32View } from '../src/tensor/dtype.js';
import { FIXTURES, rng, shared } from './shared.js';

// ---------------------------------------------------------------------------------------------
// a tiny pickle assembler, to build well-formed and hostile streams by hand

const enc = new TextEncoder();
const u32 = (n: number) => [n & 255, (n >>> 8) & 255, (n >>> 16) & 255, (n >>> 24) & 255];
const str = (s: string) => {
  const b = enc.encode(s);
  return [0x8c, b.length, ...b]; // SHORT_BINUNICODE
};
const bytes = (b: ArrayLike<number>) => (b.length < 256 ? [0x43, b.length, ...Array.from(b)] : [0x42, ...u32(b.length), ...Array.from(b)]);
const stackGlobal = (module: string, name: string) => [...str(module), ...str(name), 0x93];
const int1 = (n: number) => [0x4b, n];
const int4 = (n: number) => [0x4a, ...u32(n)];
const MARK = 0x28;
const TUPLE = 0x74;
const BUILD = 0x62;
const REDUCE = 0x52;
const NONE = 0x4e;

function dtypeOps(type: string, order: string): number[] {
  const arg = type === 'bf16' ? stackGlobal('ml_dtypes', 'bfloat16') : str(type);
  const elsize = type === 'bf16' ? [...int1(2), ...int1(2)] : [...int4(-1), ...int4(-1)];
  return [...stackGlobal('numpy', 'dtype'), ...arg, 0x89, 0x88, 0x87, REDUCE, MARK, ...int1(3), ...str(order), NONE, NONE, NONE, ...elsize, ...int1(0), TUPLE, BUILD];
}

interface ArraySpec {
  module?: string;
  shape: number[];
  type?: string;
  order?: string;
  fortran?: boolean;
  data: ArrayLike<number>;
}

/** numpy 1.x's ndarray.__reduce__ then BUILD, as ndarray pickles look (docs/REFERENCE.md §4). */
function ndarrayOps(a: ArraySpec): number[] {
  return [
    ...stackGlobal(a.module ?? 'numpy.core.multiarray', '_reconstruct'),
    ...stackGlobal('numpy', 'ndarray'),
    ...int1(0), 0x85, ...bytes([0x62]), 0x87, REDUCE,
    MARK, ...int1(1), MARK, ...a.shape.flatMap(int4), TUPLE, ...dtypeOps(a.type ?? 'f4', a.order ?? '<'),
    a.fortran ? 0x88 : 0x89, ...bytes(a.data), TUPLE, BUILD,
  ];
}

const pickle = (...ops: number[][]) => Uint8Array.from([0x80, 4, ...ops.flat(), 0x2e]);
const mem = (b: Uint8Array, name = 'hand.pkl') => new MemorySource(name, b);
const f32Bytes = (xs: number[]) => new Uint8Array(Float32Array.from(xs).buffer);

function arrayOf(r: UnpickleResult): NdArrayInfo {
  assert.ok(r.value instanceof NumpyArray && r.value.info, `expected an ndarray, got ${String(r.value)}`);
  return r.value.info;
}

/** Asserts a FormatError naming `file`, at `offset` when given, whose message holds every `words`. */
function rejects(fn: () => unknown, file: string, words: string[], offset?: number): FormatError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof FormatError, `expected a FormatError, got ${String(caught)}`);
  assert.equal(caught.file, file);
  assert.equal(typeof caught.offset, 'number', `no offset in: ${caught.message}`);
  if (offset !== undefined) assert.equal(caught.offset, offset, caught.message);
  for (const w of words) assert.ok(caught.message.includes(w), `"${w}" not in: ${caught.message}`);
  return caught;
}

/** Counts the bytes a parse reads. */
class CountingSource implements ByteSource {
  bytesRead = 0;
  constructor(private readonly inner: ByteSource) {}
  get name() {
    return this.inner.name;
  }
  get size() {
    return this.inner.size;
  }
  read(offset: number, length: number): Uint8Array {
    this.bytesRead += length;
    return this.inner.read(offset, length);
  }
  close(): void {
    this.inner.close();
  }
}

// ---------------------------------------------------------------------------------------------

describe('unpickle: real checkpoint files', FIXTURES, () => {
  it('reads the demo embedding header and leaves the 33 MB payload unread', () => {
    const src = new CountingSource(new FileSource(shared('demo', 'fortune', 'ckpt-0', 'tensor00000_000')));
    try {
      const r = unpickle(src);
      assert.deepEqual(arrayOf(r), { dtype: 'f32', shape: [131072, 64], offset: 150, byteLength: 131072 * 64 * 4 });
      assert.equal(r.end, src.size);
      assert.ok(src.bytesRead <= 2 * 4096, `read ${src.bytesRead} bytes`);
      // first 4 floats, as numpy reads them
      assert.deepEqual([...f32View(src.read(150, 16))], [-0.08416713029146194, 0.3485437333583832, -0.0290946327149868, -0.12417576462030411]);
    } finally {
      src.close();
    }
  });

  it('reads a QuantizedWeight8bit (int8 weight, bf16 scales) by NEWOBJ + BUILD', () => {
    const src = new FileSource(shared('demo', 'fortune', 'ckpt-0', 'tensor00003_000')); // layer 0 moe/linear_1
    try {
      const { value } = unpickle(src);
      assert.ok(value instanceof QuantizedWeight8bit && value.weight && value.scales);
      assert.deepEqual(value.weight, { dtype: 'i8', shape: [8, 176, 64], offset: 199, byteLength: 90112 });
      assert.deepEqual(value.scales, { dtype: 'bf16', shape: [8, 8, 64], offset: 90416, byteLength: 8192 });
      const w = new Int8Array(src.read(value.weight.offset, value.weight.byteLength).buffer);
      assert.deepEqual([...w.subarray(0, 6)], [-39, -21, -20, 46, -66, -1]);
      assert.deepEqual([...w.subarray(w.length - 3)], [-89, 106, -6]);
      const s = bf16BytesToF32(src.read(value.scales.offset, value.scales.byteLength));
      assert.deepEqual([...s.subarray(0, 4)], [0.001434326171875, 0.00177001953125, 0.002288818359375, 0.001800537109375]);
      assert.equal(s[s.length - 1], 0.00125885009765625);
    } finally {
      src.close();
    }
  });

  it('reads a small array inline-sized payload at its file offset', () => {
    const src = new FileSource(shared('fixtures', 'tiny', 'ckpt-0', 'tensor00013_000')); // layer 0 router
    try {
      const a = arrayOf(unpickle(src));
      assert.deepEqual(a, { dtype: 'f32', shape: [48, 8], offset: 147, byteLength: 1536 });
      assert.deepEqual([...f32View(src.read(a.offset, 12))], [0.12894102931022644, 0.08951924741268158, 0.24433039128780365]);
    } finally {
      src.close();
    }
  });
});

describe('unpickle: numpy variants', () => {
  it('accepts numpy 2 module paths (numpy._core.multiarray)', () => {
    const data = f32Bytes([0, 1, 2, 3, 4, 5]);
    const b = pickle(ndarrayOps({ module: 'numpy._core.multiarray', shape: [2, 3], data }));
    const a = arrayOf(unpickle(mem(b)));
    assert.deepEqual({ ...a, offset: undefined }, { dtype: 'f32', shape: [2, 3], offset: undefined, byteLength: 24 });
    assert.deepEqual([...b.subarray(a.offset, a.offset + 24)], [...data]);
  });

  it('accepts a numpy 2 pickle made by byte-editing a real file (module renamed, frame length fixed)', FIXTURES, () => {
    const src = new FileSource(shared('demo', 'fortune', 'ckpt-0', 'tensor00001_000'));
    const orig = src.read(0, src.size);
    src.close();
    const from = enc.encode('\x15numpy.core.multiarray');
    const at = orig.findIndex((_, i) => from.every((c, j) => orig[i + j] === c));
    assert.equal(at, 12);
    const edited = new Uint8Array(orig.length + 1);
    edited.set(orig.subarray(0, at));
    edited.set(enc.encode('\x16numpy._core.multiarray'), at);
    edited.set(orig.subarray(at + from.length), at + from.length + 1);
    const dv = new DataView(edited.buffer);
    dv.setUint32(3, dv.getUint32(3, true) + 1, true); // FRAME length, u64 at byte 3
    const a = arrayOf(unpickle(mem(edited)));
    assert.deepEqual(a, { dtype: 'f32', shape: [64], offset: 146, byteLength: 256 });
    assert.deepEqual([...edited.subarray(146, 146 + 256)], [...orig.subarray(145, 145 + 256)]);
  });

  it("decodes protocol 2 bytes sent as _codecs.encode(text, 'latin1')", () => {
    // pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3), protocol=2) with numpy 2.4
    const uni = (s: string) => {
      const b = enc.encode(s);
      return [0x58, ...u32(b.length), ...b]; // BINUNICODE
    };
    const global = (m: string, n: string) => [0x63, ...enc.encode(`${m}\n${n}\n`)];
    const text = String.fromCharCode(...f32Bytes([0, 1, 2, 3, 4, 5]));
    const b = Uint8Array.from([
      0x80, 2,
      ...global('numpy._core.multiarray', '_reconstruct'), 0x71, 0,
      ...global('numpy', 'ndarray'), 0x71, 1,
      ...int1(0), 0x85, 0x71, 2,
      ...global('_codecs', 'encode'), 0x71, 3,
      ...uni('b'), 0x71, 4, ...uni('latin1'), 0x71, 5, 0x86, 0x71, 6, REDUCE, 0x71, 7,
      0x87, 0x71, 8, REDUCE, 0x71, 9,
      MARK, ...int1(1), ...int1(2), ...int1(3), 0x86, 0x71, 10,
      ...global('numpy', 'dtype'), 0x71, 11, ...uni('f4'), 0x71, 12, 0x89, 0x88, 0x87, 0x71, 13, REDUCE, 0x71, 14,
      MARK, ...int1(3), ...uni('<'), 0x71, 15, NONE, NONE, NONE, ...int4(-1), ...int4(-1), ...int1(0), TUPLE, 0x71, 16, BUILD,
      0x89, 0x68, 3, ...uni(text), 0x71, 17, 0x68, 5, 0x86, 0x71, 18, REDUCE, 0x71, 19,
      TUPLE, 0x71, 20, BUILD, 0x2e,
    ]);
    assert.equal(b.length, 236); // the size Python writes
    const a = arrayOf(unpickle(mem(b)));
    assert.deepEqual(a.shape, [2, 3]);
    assert.ok(a.decoded);
    assert.deepEqual([...f32View(a.decoded)], [0, 1, 2, 3, 4, 5]);
  });

  it('reads a bf16 user dtype and single-byte dtypes with byte order |', () => {
    const b = pickle(ndarrayOps({ shape: [2], type: 'bf16', data: [0x80, 0x3f, 0x00, 0xc0] }));
    assert.deepEqual(arrayOf(unpickle(mem(b))).dtype, 'bf16');
    const c = pickle(ndarrayOps({ shape: [3], type: 'u1', order: '|', data: [1, 2, 3] }));
    assert.deepEqual(arrayOf(unpickle(mem(c))).dtype, 'u8');
  });
});

describe('unpickle: hostile and malformed input', () => {
  it('refuses globals outside the allow-list, naming them and their offset', () => {
    // the classic: os.system('echo pwned')
    const evil = pickle(stackGlobal('os', 'system'), str('echo pwned'), [0x85, REDUCE]);
    rejects(() => unpickle(mem(evil)), 'hand.pkl', ['os.system', 'allow-list'], 2 + 4 + 8);
    const evil2 = Uint8Array.from([0x80, 2, 0x63, ...enc.encode('builtins\neval\n'), 0x2e]);
    rejects(() => unpickle(mem(evil2)), 'hand.pkl', ['builtins.eval'], 2);
    // numpy names outside the list are refused as well
    rejects(() => unpickle(mem(pickle(stackGlobal('numpy', 'load')))), 'hand.pkl', ['numpy.load']);
  });

  it('refuses allow-listed globals used in constructions other than the numpy ones', () => {
    const reduceNdarray = pickle(stackGlobal('numpy', 'ndarray'), [0x29, REDUCE]);
    rejects(() => unpickle(mem(reduceNdarray)), 'hand.pkl', ['REDUCE of numpy.ndarray']);
    const newobjNdarray = pickle(stackGlobal('numpy', 'ndarray'), [0x29, 0x81]);
    rejects(() => unpickle(mem(newobjNdarray)), 'hand.pkl', ['NEWOBJ only of __main__.QuantizedWeight8bit']);
    const buildDict = pickle([0x7d], [0x7d, BUILD]);
    rejects(() => unpickle(mem(buildDict)), 'hand.pkl', ['BUILD only of']);
  });

  it('refuses unknown opcodes at their offset, naming them', () => {
    rejects(() => unpickle(mem(pickle([NONE], [0xff]))), 'hand.pkl', ['opcode 0xff'], 3);
    rejects(() => unpickle(mem(pickle([0x69]))), 'hand.pkl', ["opcode 0x69 'i' (INST)"], 2);
    rejects(() => unpickle(mem(pickle([0x51]))), 'hand.pkl', ['BINPERSID'], 2);
    rejects(() => unpickle(mem(Uint8Array.from([0x28, 0x2e]))), 'hand.pkl', ['protocol 2-5'], 0);
    rejects(() => unpickle(mem(Uint8Array.from([0x80, 1, NONE, 0x2e]))), 'hand.pkl', ['protocol 1'], 0);
  });

  it('refuses a truncated real file at every cut, with the file and an offset', FIXTURES, () => {
    const src = new FileSource(shared('demo', 'fortune', 'ckpt-0', 'tensor00003_000'));
    const whole = src.read(0, src.size);
    src.close();
    for (const cut of [0, 1, 2, 5, 11, 47, 133, 150, 199, 5000, 90410, 90411, 90420, 98000, whole.length - 1]) {
      const e = rejects(() => unpickle(mem(whole.subarray(0, cut), `cut${cut}`)), `cut${cut}`, []);
      assert.ok(e.offset! <= cut, `offset ${e.offset} beyond the cut ${cut}`);
    }
  });

  it('refuses a BINBYTES length past the end of the file without allocating it', () => {
    const b = pickle([0x42, ...u32(0xfffffff0)]);
    rejects(() => unpickle(mem(b)), 'hand.pkl', ['4294967280 bytes of BINBYTES data', 'end of file'], 7);
    const huge = pickle([0x8e, 0, 0, 0, 0, 0, 0, 0, 0x7f]); // BINBYTES8 of ~2^63
    rejects(() => unpickle(mem(huge)), 'hand.pkl', ['BINBYTES8 data']);
    const hugeText = pickle([0x58, ...u32(0xffffffff)]); // BINUNICODE of 4 GiB
    rejects(() => unpickle(mem(hugeText)), 'hand.pkl', ['bytes of strings']);
  });

  it('refuses memo, stack and mark errors', () => {
    rejects(() => unpickle(mem(pickle([0x68, 5]))), 'hand.pkl', ['memo index', 'index 5 (never stored)'], 2);
    rejects(() => unpickle(mem(pickle([0x6a, ...u32(123456)]))), 'hand.pkl', ['index 123456'], 2);
    rejects(() => unpickle(mem(pickle([NONE, 0x86]))), 'hand.pkl', ['stack underflow'], 3);
    rejects(() => unpickle(mem(pickle([NONE, TUPLE]))), 'hand.pkl', ['MARK before TUPLE'], 3);
    rejects(() => unpickle(mem(pickle([MARK, NONE, 0x86]))), 'hand.pkl', ['stack underflow'], 4); // cannot reach below a MARK
    rejects(() => unpickle(mem(pickle([0x94]))), 'hand.pkl', ['stack underflow'], 2);
    rejects(() => unpickle(mem(pickle([0x30]))), 'hand.pkl', ['stack underflow'], 2);
    rejects(() => unpickle(mem(pickle([NONE, NONE]))), 'hand.pkl', ['exactly one value'], 4);
    rejects(() => unpickle(mem(pickle([MARK, NONE]))), 'hand.pkl', ['MARK closed'], 4);
  });

  it('stops at its named limits instead of growing without bound', () => {
    const marks = pickle(new Array(PICKLE_LIMITS.maxMarks + 1).fill(MARK));
    rejects(() => unpickle(mem(marks)), 'hand.pkl', [`at most ${PICKLE_LIMITS.maxMarks} nested MARKs`]);
    const stack = pickle(new Array(PICKLE_LIMITS.maxStack + 1).fill(NONE));
    rejects(() => unpickle(mem(stack)), 'hand.pkl', [`at most ${PICKLE_LIMITS.maxStack} values`]);
    const spin = pickle([NONE], new Array(PICKLE_LIMITS.maxOps).fill(0x32 /* DUP */).flatMap((d) => [d, 0x30 /* POP */]));
    rejects(() => unpickle(mem(spin)), 'hand.pkl', [`at most ${PICKLE_LIMITS.maxOps} opcodes`]);
    const longLine = Uint8Array.from([0x80, 2, 0x49, ...new Array(PICKLE_LIMITS.maxLine + 10).fill(0x31), 0x0a, 0x2e]);
    rejects(() => unpickle(mem(longLine)), 'hand.pkl', ['newline within'], 3);
  });

  it('survives random corruption of real headers: every outcome is a value or a FormatError', FIXTURES, () => {
    const originals = [
      shared('demo', 'fortune', 'ckpt-0', 'tensor00001_000'), // ndarray, frame-resident payload
      shared('demo', 'fortune', 'ckpt-0', 'tensor00005_000'), // QuantizedWeight8bit
    ].map((f) => {
      const src = new FileSource(f);
      const b = src.read(0, src.size);
      src.close();
      return b;
    });
    const next = rng(1234);
    let rejected = 0;
    for (let trial = 0; trial < 2000; trial++) {
      const b = originals[trial % 2]!.slice();
      const flips = 1 + Math.floor(next() * 4);
      for (let k = 0; k < flips; k++) b[Math.floor(next() * Math.min(b.length, 260))] = Math.floor(next() * 256);
      try {
        unpickle(mem(b));
      } catch (e) {
        assert.ok(e instanceof FormatError, `trial ${trial}: ${String(e)}`);
        rejected++;
      }
    }
    assert.ok(rejected > 1000, `only ${rejected} of 2000 corruptions were refused`);
  });

  it('checks frames', () => {
    const past = Uint8Array.from([0x80, 4, 0x95, 100, 0, 0, 0, 0, 0, 0, 0, NONE, 0x2e]);
    rejects(() => unpickle(mem(past)), 'hand.pkl', ['frame inside the file'], 2);
    // an opcode argument that crosses the frame end: BININT (5 bytes) in a 3-byte frame
    const straddle = Uint8Array.from([0x80, 4, 0x95, 3, 0, 0, 0, 0, 0, 0, 0, ...int4(7), 0x2e]);
    rejects(() => unpickle(mem(straddle)), 'hand.pkl', ['crosses the frame end'], 12);
  });

  it('refuses unsupported or inconsistent arrays', () => {
    const data = f32Bytes([1, 2]);
    const withType = (type: string) => pickle(ndarrayOps({ shape: [2], type, data }));
    rejects(() => unpickle(mem(withType('c8'))), 'hand.pkl', ["dtype 'c8'"]);
    rejects(() => unpickle(mem(withType('zz'))), 'hand.pkl', ["dtype 'zz'"]);
    rejects(() => unpickle(mem(pickle(ndarrayOps({ shape: [2], order: '>', data })))), 'hand.pkl', ['little-endian', '">"']);
    rejects(() => unpickle(mem(pickle(ndarrayOps({ shape: [2], fortran: true, data })))), 'hand.pkl', ['C-order', 'Fortran']);
    rejects(() => unpickle(mem(pickle(ndarrayOps({ shape: [3], data })))), 'hand.pkl', ['12 data bytes for shape [3] of f32', 'found 8']);
    rejects(() => unpickle(mem(pickle(ndarrayOps({ shape: [0x7fffffff, 0x7fffffff, 0x7fffffff], data })))), 'hand.pkl', ['data bytes']);
  });

  it('refuses a QuantizedWeight8bit whose state is not {weight, scales}', () => {
    const qw = stackGlobal('__main__', 'QuantizedWeight8bit');
    const extra = pickle(qw, [0x29, 0x81, 0x7d, MARK], str('weight'), [NONE], str('evil'), [NONE], [0x75, BUILD]);
    rejects(() => unpickle(mem(extra)), 'hand.pkl', ["{'weight', 'scales'}", 'keys weight, evil']);
    rejects(() => unpickle(mem(pickle(stackGlobal('model', 'QuantizedWeight8bit')))), 'hand.pkl', ['model.QuantizedWeight8bit']);
  });
});
