/**
 * Float storage in wasm memory that the kernels read in place: the KV cache. Blocks live in
 * shards of their own ('arena' role, so weight packing never bump-allocates into them), are
 * handed out as Float32Array views (a view into shared wasm memory stays valid when the memory
 * grows), and are reused first-fit with neighbours coalesced when freed. A block whose view is
 * garbage-collected without free() is released too (FinalizationRegistry), so a dropped cache
 * costs address space only until the next collection.
 */
import { UnsupportedError } from '../../errors.js';
import type { Shard } from './runtime.js';

const ALIGN = 64;

interface Block {
  readonly shard: Shard;
  readonly ptr: number;
  readonly bytes: number;
}

export class FloatArena {
  private readonly shards: Shard[] = [];
  /** Free blocks per shard, sorted by address. */
  private readonly freeLists = new Map<Shard, Block[]>();
  private readonly live = new WeakMap<Float32Array, Block>();
  private readonly finalizer = new FinalizationRegistry<Block>((b) => this.release(b));
  private inUse = 0;

  constructor(private readonly newShard: () => Shard) {}

  /** Bytes held by live blocks. */
  get bytesInUse(): number {
    return this.inUse;
  }

  /** A zero-filled view of n floats in wasm memory. */
  alloc(n: number): Float32Array {
    const bytes = Math.max(ALIGN, Math.ceil((n * 4) / ALIGN) * ALIGN);
    const block = this.take(bytes) ?? this.grow(bytes);
    const view = new Float32Array(block.shard.memory.buffer, block.ptr, n);
    view.fill(0);
    this.live.set(view, block);
    this.finalizer.register(view, block, view);
    this.inUse += bytes;
    return view;
  }

  /** Returns a view from alloc(); anything else (or a second free) is ignored. */
  free(view: Float32Array): void {
    const block = this.live.get(view);
    if (!block) return;
    this.live.delete(view);
    this.finalizer.unregister(view);
    this.release(block);
  }

  /** The shard and byte address of a view from alloc(), if it is live. */
  locate(view: Float32Array): { shard: Shard; ptr: number } | undefined {
    const b = this.live.get(view);
    return b && { shard: b.shard, ptr: b.ptr };
  }

  private release(block: Block): void {
    this.inUse -= block.bytes;
    const list = this.freeLists.get(block.shard)!;
    let i = 0;
    while (i < list.length && list[i]!.ptr < block.ptr) i++;
    let merged: Block = block;
    const next = list[i];
    if (next && merged.ptr + merged.bytes === next.ptr) {
      merged = { shard: block.shard, ptr: merged.ptr, bytes: merged.bytes + next.bytes };
      list.splice(i, 1);
    }
    const prev = list[i - 1];
    if (prev && prev.ptr + prev.bytes === merged.ptr) {
      list[i - 1] = { shard: block.shard, ptr: prev.ptr, bytes: prev.bytes + merged.bytes };
    } else {
      list.splice(i, 0, merged);
    }
  }

  /** First fit among the free blocks, splitting off the rest. */
  private take(bytes: number): Block | undefined {
    for (const shard of this.shards) {
      const list = this.freeLists.get(shard)!;
      const i = list.findIndex((b) => b.bytes >= bytes);
      if (i < 0) continue;
      const b = list[i]!;
      if (b.bytes === bytes) list.splice(i, 1);
      else list[i] = { shard, ptr: b.ptr + bytes, bytes: b.bytes - bytes };
      return { shard, ptr: b.ptr, bytes };
    }
    return undefined;
  }

  /** New memory at the top of the last shard, or of a new one. */
  private grow(bytes: number): Block {
    const last = this.shards[this.shards.length - 1];
    let ptr = last?.alloc(bytes);
    if (last && ptr !== undefined) return { shard: last, ptr, bytes };
    const shard = this.newShard();
    this.shards.push(shard);
    this.freeLists.set(shard, []);
    ptr = shard.alloc(bytes);
    if (ptr === undefined) throw new UnsupportedError('wasm-memory', `one block of ${bytes} bytes does not fit a memory shard of ${shard.maxBytes} bytes`);
    return { shard, ptr, bytes };
  }
}
