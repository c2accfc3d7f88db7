/**
 * Where a tensor's bytes come from. Tensors and weights hold a ByteSource and an offset, never a
 * file handle; formats/tensor-file.ts has the implementations (files, split files, memory).
 */
export interface ByteSource {
  /** What error messages call this source (a path, or `a.part1of3+…`). */
  readonly name: string;
  readonly size: number;
  /** Reads exactly `length` bytes at `offset` (a fresh buffer, or a view for in-memory sources); a range past the end is a FormatError. */
  read(offset: number, length: number): Uint8Array;
  close(): void;
}
