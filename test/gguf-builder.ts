/**
 * Hand-built GGUF bytes for reader tests, written field by field (independently of
 * src/formats/gguf-writer.ts) and recording where each field starts, so a test can corrupt exactly
 * one field and check the error names it and its offset.
 */
export class GgufBytes {
  private readonly parts: number[] = [];
  /** Byte offset of each named field, as recorded by mark(). */
  readonly at = new Map<string, number>();

  get length(): number {
    return this.parts.length;
  }
  mark(name: string): this {
    this.at.set(name, this.parts.length);
    return this;
  }
  raw(bytes: ArrayLike<number>): this {
    for (let i = 0; i < bytes.length; i++) this.parts.push(bytes[i]! & 255);
    return this;
  }
  u8(v: number): this {
    return this.raw([v]);
  }
  u16(v: number): this {
    return this.raw([v, v >> 8]);
  }
  u32(v: number): this {
    return this.raw([v, v >>> 8, v >>> 16, v >>> 24]);
  }
  u64(v: number | bigint): this {
    let b = BigInt(v);
    const out: number[] = [];
    for (let i = 0; i < 8; i++, b >>= 8n) out.push(Number(b & 255n));
    return this.raw(out);
  }
  f32(v: number): this {
    return this.raw(new Uint8Array(Float32Array.of(v).buffer));
  }
  str(s: string): this {
    const b = new TextEncoder().encode(s);
    return this.u64(b.length).raw(b);
  }
  pad(alignment: number): this {
    while (this.parts.length % alignment) this.parts.push(0);
    return this;
  }
  bytes(): Uint8Array {
    return Uint8Array.from(this.parts);
  }
}

/** GGUF value type ids. */
export const T = { u8: 0, i8: 1, u16: 2, i16: 3, u32: 4, i32: 5, f32: 6, bool: 7, string: 8, array: 9, u64: 10, i64: 11, f64: 12 } as const;
/** ggml type ids used below. */
export const G = { f32: 0, q8_0: 8 } as const;

/**
 * A small valid GGUF: header, a few metadata entries of every kind, two tensors (`a`: f32 [4, 2],
 * `b`: q8_0 [32, 1]) and their data; fields are marked for corruption tests.
 */
export function sampleGguf(): GgufBytes {
  const g = new GgufBytes();
  g.mark('magic').raw([0x47, 0x47, 0x55, 0x46]);
  g.mark('version').u32(3);
  g.mark('tensor_count').u64(2);
  g.mark('kv_count').u64(5);
  g.mark('kv0').str('general.architecture').u32(T.string).mark('kv0.value').str('grok');
  g.mark('kv1').str('test.scalar').u32(T.f32).f32(1.5);
  g.mark('kv2').str('test.strings').u32(T.array).u32(T.string).mark('kv2.count').u64(3).str('x').str('').str('\u2581t\ufeff');
  g.mark('kv3').str('test.nested').u32(T.array).u32(T.array).u64(2);
  g.u32(T.u16).u64(2).u16(1).u16(65535);
  g.u32(T.i64).u64(1).u64(-5n & 0xffffffffffffffffn);
  g.mark('kv4').str('test.u64').u32(T.u64).u64(2n ** 60n);
  g.mark('ti0').str('a').mark('ti0.ndims').u32(2).mark('ti0.ne').u64(4).u64(2).mark('ti0.type').u32(G.f32).mark('ti0.offset').u64(0);
  g.mark('ti1').str('b').u32(2).u64(32).u64(1).u32(G.q8_0).mark('ti1.offset').u64(32);
  g.pad(32).mark('data');
  for (let i = 0; i < 8; i++) g.f32(i + 0.5);
  g.raw([0x00, 0x3c]); // q8_0 d = 1
  for (let i = 0; i < 32; i++) g.u8(i - 16);
  return g;
}
