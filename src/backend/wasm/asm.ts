/**
 * A small WebAssembly binary encoder: enough of the MVP, SIMD128 and relaxed-SIMD opcodes to write
 * the kernels as TypeScript functions that return folded expressions (operands first, then the
 * opcode, as in WAT's folded form). Kernel generators are ordinary TS, so loops can be unrolled and
 * variants (relaxed or not) emitted from one source; see README.md for why not WAT/AssemblyScript.
 *
 * Only the instructions the kernels use (and a few siblings) are here. An `Op` is the encoded bytes of one or more instructions. Nothing here validates stack types:
 * `WebAssembly.validate` / `new WebAssembly.Module` does that when the module is compiled.
 */

export type Op = readonly number[];

export const enum ValType {
  i32 = 0x7f,
  i64 = 0x7e,
  f32 = 0x7d,
  f64 = 0x7c,
  v128 = 0x7b,
}

function uleb(n: number): number[] {
  const out: number[] = [];
  let v = n >>> 0;
  do {
    let b = v & 0x7f;
    v >>>= 7;
    if (v) b |= 0x80;
    out.push(b);
  } while (v);
  return out;
}

function sleb(n: number): number[] {
  const out: number[] = [];
  let v = n | 0;
  for (;;) {
    const b = v & 0x7f;
    v >>= 7;
    if ((v === 0 && !(b & 0x40)) || (v === -1 && b & 0x40)) {
      out.push(b);
      return out;
    }
    out.push(b | 0x80);
  }
}

function str(s: string): number[] {
  const b = [...Buffer.from(s, 'utf8')];
  return [...uleb(b.length), ...b];
}

/** Concatenates ops (and nested arrays of ops) into one op. */
export function seq(...ops: (Op | readonly Op[])[]): Op {
  const out: number[] = [];
  for (const o of ops) {
    if (o.length && Array.isArray(o[0])) for (const p of o as readonly Op[]) out.push(...p);
    else out.push(...(o as Op));
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// locals and functions

export class Local {
  constructor(
    readonly index: number,
    readonly type: ValType,
  ) {}
}

export class Func {
  readonly params: Local[];
  private readonly locals: ValType[] = [];
  body: Op = [];

  constructor(
    readonly name: string,
    paramTypes: readonly ValType[],
    readonly results: readonly ValType[] = [],
  ) {
    this.params = paramTypes.map((t, i) => new Local(i, t));
  }

  get paramTypes(): ValType[] {
    return this.params.map((p) => p.type);
  }

  local(type: ValType): Local {
    this.locals.push(type);
    return new Local(this.params.length + this.locals.length - 1, type);
  }

  locals32(n: number): Local[] {
    return Array.from({ length: n }, () => this.local(ValType.i32));
  }

  vlocals(n: number): Local[] {
    return Array.from({ length: n }, () => this.local(ValType.v128));
  }

  encodeBody(): number[] {
    const groups: [number, ValType][] = [];
    for (const t of this.locals) {
      const last = groups[groups.length - 1];
      if (last && last[1] === t) last[0]++;
      else groups.push([1, t]);
    }
    const code = [...uleb(groups.length), ...groups.flatMap(([n, t]) => [...uleb(n), t]), ...this.body, 0x0b];
    return [...uleb(code.length), ...code];
  }
}

/** A module with one imported shared memory (`env.mem`) and exported functions. */
export function encodeModule(funcs: readonly Func[], memory: { minPages: number; maxPages: number }): Uint8Array {
  const section = (id: number, payload: number[]) => [id, ...uleb(payload.length), ...payload];
  const types: string[] = [];
  const typeIndex = funcs.map((f) => {
    const key = `${f.paramTypes.join(',')}:${f.results.join(',')}`;
    let i = types.indexOf(key);
    if (i < 0) {
      types.push(key);
      i = types.length - 1;
    }
    return i;
  });
  const typeSec = [
    ...uleb(types.length),
    ...types.flatMap((key) => {
      const [p, r] = key.split(':').map((s) => (s ? s.split(',').map(Number) : []));
      return [0x60, ...uleb(p!.length), ...p!, ...uleb(r!.length), ...r!];
    }),
  ];
  const importSec = [1, ...str('env'), ...str('mem'), 0x02, 0x03, ...uleb(memory.minPages), ...uleb(memory.maxPages)];
  const funcSec = [...uleb(funcs.length), ...typeIndex.flatMap((i) => uleb(i))];
  const exportSec = [...uleb(funcs.length), ...funcs.flatMap((f, i) => [...str(f.name), 0x00, ...uleb(i)])];
  const codeSec = [...uleb(funcs.length), ...funcs.flatMap((f) => f.encodeBody())];
  return new Uint8Array([
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00,
    ...section(1, typeSec),
    ...section(2, importSec),
    ...section(3, funcSec),
    ...section(7, exportSec),
    ...section(10, codeSec),
  ]);
}

// ---------------------------------------------------------------------------------------------
// instructions

export const get = (l: Local): Op => [0x20, ...uleb(l.index)];
export const set = (l: Local, v: Op): Op => [...v, 0x21, ...uleb(l.index)];
export const drop = (v: Op): Op => [...v, 0x1a];
export const select = (a: Op, b: Op, cond: Op): Op => [...a, ...b, ...cond, 0x1b];

const block0 = (code: number, body: Op[]): Op => [code, 0x40, ...seq(body), 0x0b];
export const block = (...body: Op[]): Op => block0(0x02, body);
export const loop = (...body: Op[]): Op => block0(0x03, body);
export const br = (depth: number): Op => [0x0c, ...uleb(depth)];
export const brIf = (depth: number, cond: Op): Op => [...cond, 0x0d, ...uleb(depth)];
export const if_ = (cond: Op, then: Op[], otherwise?: Op[]): Op =>
  otherwise ? [...cond, 0x04, 0x40, ...seq(then), 0x05, ...seq(otherwise), 0x0b] : [...cond, 0x04, 0x40, ...seq(then), 0x0b];
/** An if whose two arms each leave one v128: an expression. */
export const ifV128 = (cond: Op, then: Op, otherwise: Op): Op => [...cond, 0x04, 0x7b, ...then, 0x05, ...otherwise, 0x0b];

/**
 * `for (i = from; i < to; i += step) body` with unsigned compare; `to` is re-evaluated each
 * iteration, so pass a local or constant. The body must not branch out of the loop.
 */
export function forLoop(i: Local, from: Op, to: Op, step: number, ...body: Op[]): Op {
  return seq(set(i, from), block(loop(brIf(1, i32.geU(get(i), to)), ...body, set(i, i32.add(get(i), i32.const(step))), br(0))));
}

/** `while (p < end) { body; p += step }` over a pointer local. */
export function forPtr(p: Local, end: Local, step: number, ...body: Op[]): Op {
  return block(loop(brIf(1, i32.geU(get(p), get(end))), ...body, set(p, i32.add(get(p), i32.const(step))), br(0)));
}

const bin = (code: number) => (a: Op, b: Op): Op => [...a, ...b, code];
const un = (code: number) => (a: Op): Op => [...a, code];
const mem = (code: number, align: number) => (addr: Op, offset = 0): Op => [...addr, code, align, ...uleb(offset)];
const store = (code: number, align: number) => (addr: Op, value: Op, offset = 0): Op => [...addr, ...value, code, align, ...uleb(offset)];

export const i32 = {
  const: (n: number): Op => [0x41, ...sleb(n)],
  add: bin(0x6a),
  sub: bin(0x6b),
  mul: bin(0x6c),
  divU: bin(0x6e),
  and: bin(0x71),
  or: bin(0x72),
  shl: bin(0x74),
  shrS: bin(0x75),
  shrU: bin(0x76),
  eqz: un(0x45),
  eq: bin(0x46),
  ne: bin(0x47),
  ltS: bin(0x48),
  ltU: bin(0x49),
  gtS: bin(0x4a),
  gtU: bin(0x4b),
  geS: bin(0x4e),
  geU: bin(0x4f),
  load: mem(0x28, 2),
  load8S: mem(0x2c, 0),
  load8U: mem(0x2d, 0),
  load16U: mem(0x2f, 1),
  store: store(0x36, 2),
  store8: store(0x3a, 0),
  store16: store(0x3b, 1),
  truncSatF32S: (a: Op): Op => [...a, 0xfc, 0x00],
  reinterpretF32: un(0xbc),
};

export const f32 = {
  const: (x: number): Op => {
    const b = new Uint8Array(new Float32Array([x]).buffer);
    return [0x43, ...b];
  },
  load: mem(0x2a, 2),
  store: store(0x38, 2),
  add: bin(0x92),
  sub: bin(0x93),
  mul: bin(0x94),
  div: bin(0x95),
  min: bin(0x96),
  max: bin(0x97),
  sqrt: un(0x91),
  gt: bin(0x5e),
  convertI32S: un(0xb2),
  reinterpretI32: un(0xbe),
  demoteF64: un(0xb6),
};

// SIMD: prefix 0xfd, then the opcode as unsigned LEB128.
const sop = (code: number): number[] => [0xfd, ...uleb(code)];
const vbin = (code: number) => (a: Op, b: Op): Op => [...a, ...b, ...sop(code)];
const vun = (code: number) => (a: Op): Op => [...a, ...sop(code)];
const vshift = (code: number) => (a: Op, n: Op | number): Op => [...a, ...(typeof n === 'number' ? i32.const(n) : n), ...sop(code)];
const vmem = (code: number, align: number) => (addr: Op, offset = 0): Op => [...addr, ...sop(code), align, ...uleb(offset)];
const lane = (code: number) => (a: Op, l: number): Op => [...a, ...sop(code), l];

export const v128 = {
  load: vmem(0x00, 4),
  load8x8S: vmem(0x01, 3),
  load8x8U: vmem(0x02, 3),
  load16x4S: vmem(0x03, 3),
  load16x4U: vmem(0x04, 3),
  load32Splat: vmem(0x09, 2),
  load32Zero: vmem(0x5c, 2),
  load64Zero: vmem(0x5d, 3),
  /** v with 64-bit lane l replaced from memory (one vpinsrq on x64). */
  load64Lane: (addr: Op, v: Op, l: number, offset = 0): Op => [...addr, ...v, ...sop(0x57), 3, ...uleb(offset), l],
  store: (addr: Op, value: Op, offset = 0): Op => [...addr, ...value, ...sop(0x0b), 4, ...uleb(offset)],
  /** 64-bit lane l of value to memory (one movq / pextrq on x64). */
  store64Lane: (addr: Op, value: Op, l: number, offset = 0): Op => [...addr, ...value, ...sop(0x5b), 3, ...uleb(offset), l],
  const: (bytes: readonly number[]): Op => [...sop(0x0c), ...bytes],
  zero: (): Op => [...sop(0x0c), ...new Array<number>(16).fill(0)],
  not: vun(0x4d),
  and: vbin(0x4e),
  andnot: vbin(0x4f),
  or: vbin(0x50),
  xor: vbin(0x51),
  /** 1 when any bit of the vector is set. */
  anyTrue: (a: Op): Op => [...a, ...sop(0x53)],
  bitselect: (a: Op, b: Op, mask: Op): Op => [...a, ...b, ...mask, ...sop(0x52)],
};

export const i8x16 = {
  shuffle: (a: Op, b: Op, lanes: readonly number[]): Op => [...a, ...b, ...sop(0x0d), ...lanes],
  splat: vun(0x0f),
  const: (n: number): Op => v128.const(new Array<number>(16).fill(n & 0xff)),
  sub: vbin(0x71),
  popcnt: vun(0x62),
  narrowI16x8S: vbin(0x65),
  narrowI16x8U: vbin(0x66),
  /** byte i = table[idx[i]], 0 for idx ≥ 16 (V8 on x64: pshufb plus a saturating add to honour the 0). */
  swizzle: vbin(0x0e),
  /** The same for idx < 16, implementation-defined above (one pshufb). */
  relaxedSwizzle: vbin(0x100),
};

export const i16x8 = {
  splat: vun(0x10),
  const: (n: number): Op => v128.const(Array.from({ length: 16 }, (_, i) => (i & 1 ? (n >> 8) & 0xff : n & 0xff))),
  extractLaneS: lane(0x18),
  narrowI32x4S: vbin(0x85),
  extendLowI8x16S: vun(0x87),
  extendHighI8x16S: vun(0x88),
  extendLowI8x16U: vun(0x89),
  extendHighI8x16U: vun(0x8a),
  shl: vshift(0x8b),
  shrS: vshift(0x8c),
  shrU: vshift(0x8d),
  add: vbin(0x8e),
  sub: vbin(0x91),
  mul: vbin(0x95),
  maxS: vbin(0x98),
  avgrU: vbin(0x9b),
  relaxedDotI8x16I7x16S: vbin(0x112),
};

export const i32x4 = {
  splat: vun(0x11),
  const: (n: number): Op => v128.const([0, 1, 2, 3].flatMap(() => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff])),
  consts: (l: readonly number[]): Op => v128.const(l.flatMap((n) => [n & 0xff, (n >> 8) & 0xff, (n >> 16) & 0xff, (n >>> 24) & 0xff])),
  extractLane: lane(0x1b),
  eq: vbin(0x37),
  ltS: vbin(0x39),
  extaddPairwiseI16x8S: vun(0x7e),
  extendLowI16x8S: vun(0xa7),
  extendHighI16x8S: vun(0xa8),
  extendLowI16x8U: vun(0xa9),
  extendHighI16x8U: vun(0xaa),
  shl: vshift(0xab),
  shrS: vshift(0xac),
  shrU: vshift(0xad),
  add: vbin(0xae),
  sub: vbin(0xb1),
  mul: vbin(0xb5),
  dotI16x8S: vbin(0xba),
  truncSatF32x4S: vun(0xf8),
};

export const f32x4 = {
  splat: vun(0x13),
  const: (x: number): Op => {
    const b = [...new Uint8Array(new Float32Array([x]).buffer)];
    return v128.const([...b, ...b, ...b, ...b]);
  },
  extractLane: lane(0x1f),
  eq: vbin(0x41),
  lt: vbin(0x43),
  gt: vbin(0x44),
  le: vbin(0x45),
  ge: vbin(0x46),
  nearest: vun(0x6a),
  abs: vun(0xe0),
  neg: vun(0xe1),
  sqrt: vun(0xe3),
  add: vbin(0xe4),
  sub: vbin(0xe5),
  mul: vbin(0xe6),
  div: vbin(0xe7),
  min: vbin(0xe8),
  max: vbin(0xe9),
  convertI32x4S: vun(0xfa),
};
