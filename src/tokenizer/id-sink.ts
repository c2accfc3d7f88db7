/**
 * The last step of encoding: BPE symbols become output ids (and pieces) with the library's rules
 * for unknown text, byte fallback and unknown runs.
 */
import type { Vocabulary } from './vocabulary.js';

/**
 * Turns BPE symbols into output ids as PopulateSentencePieceText does: the id is PieceToId of the
 * symbol's text; an unknown symbol becomes its UTF-8 bytes with byte fallback, else runs of
 * unknown symbols become one unknown id.
 */
export class IdSink {
  ids: number[] = [];
  pieces: string[] | undefined;
  /** The last symbol was unknown (the library's `is_prev_unk`). */
  prevUnk = false;
  private text = '';
  readonly emit = (s: number, e: number, mergeableId: number): void => this.symbol(s, e, mergeableId);

  constructor(private readonly v: Vocabulary, private readonly byteFallback: boolean) {}

  reset(text: string, ids: number[], pieces: string[] | undefined): void {
    this.text = text;
    this.ids = ids;
    this.pieces = pieces;
    this.prevUnk = false;
  }

  symbol(s: number, e: number, mergeableId: number): void {
    const v = this.v;
    // Only a single character can be outside the mergeable pieces; PieceToId may still find it
    // among the reserved ones.
    const id =
      mergeableId >= 0
        ? v.outputId[mergeableId]!
        : v.hasOneCharReserved
          ? (v.reserved.get(this.text.slice(s, e)) ?? v.unkId)
          : v.unkId;
    const isUnk = id === v.unkId;
    if (isUnk && this.byteFallback) {
      this.pushUtf8Bytes(s, e);
    } else if (isUnk && this.prevUnk) {
      if (this.pieces) this.pieces[this.pieces.length - 1] += this.text.slice(s, e);
    } else {
      this.ids.push(id);
      this.pieces?.push(this.text.slice(s, e));
    }
    this.prevUnk = isUnk;
  }

  /** Byte fallback: the ids of the UTF-8 bytes of text[s, e). */
  private pushUtf8Bytes(s: number, e: number): void {
    const { ids, text } = this;
    const byteId = this.v.byteId;
    for (let i = s; i < e; ) {
      let cp = text.charCodeAt(i++);
      if (cp >= 0xd800 && cp < 0xdc00 && i < e) {
        const d = text.charCodeAt(i);
        if (d >= 0xdc00 && d < 0xe000) {
          cp = 0x10000 + ((cp - 0xd800) << 10) + (d - 0xdc00);
          i++;
        }
      }
      const start = ids.length;
      if (cp < 0x80) ids.push(byteId[cp]!);
      else if (cp < 0x800) ids.push(byteId[0xc0 | (cp >> 6)]!, byteId[0x80 | (cp & 0x3f)]!);
      else if (cp < 0x10000) ids.push(byteId[0xe0 | (cp >> 12)]!, byteId[0x80 | ((cp >> 6) & 0x3f)]!, byteId[0x80 | (cp & 0x3f)]!);
      else {
        ids.push(byteId[0xf0 | (cp >> 18)]!, byteId[0x80 | ((cp >> 12) & 0x3f)]!, byteId[0x80 | ((cp >> 6) & 0x3f)]!, byteId[0x80 | (cp & 0x3f)]!);
      }
      if (this.pieces) for (let k = start; k < ids.length; k++) this.pieces.push(this.v.pieces[ids[k]!]!);
    }
  }

  /** Appends ids computed earlier for an identical segment (the cache). */
  replay(cached: number | Int32Array): void {
    if (typeof cached === 'number') {
      this.pushId(cached);
    } else {
      for (let i = 0; i < cached.length; i++) this.pushId(cached[i]!);
    }
  }

  private pushId(id: number): void {
    // Unknown runs merge across segments too; byte fallback never leaves an unknown id.
    const isUnk = id === this.v.unkId;
    if (!(isUnk && this.prevUnk)) this.ids.push(id);
    this.prevUnk = isUnk;
  }
}
