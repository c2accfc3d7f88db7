/**
 * What each token contributes to the decoded byte stream, and a byte trie over all tokens. Built
 * once per tokenizer (cached in a WeakMap): the mask walk shares token prefixes through the trie
 * instead of scanning 131072 tokens per step.
 *
 * Token bytes follow streaming decode as a continuation of the prompt (StreamingDecoder with
 * `continuation`): a piece's '▁' is a space, a byte-fallback piece <0xNN> is the single byte
 * 0xNN, and control/unknown pieces contribute nothing and are never allowed by a constraint.
 */
import { UsageError } from '../errors.js';
import type { Tokenizer } from '../tokenizer/index.js';

export interface ConstraintVocabulary {
  /** Number of token ids (the mask covers ceil(size / 32) words). */
  readonly size: number;
  /** The bytes each token contributes to the text; null for tokens a constraint never allows. */
  readonly tokenBytes: readonly (Uint8Array | null)[];
  /** The end-of-sequence id, allowed exactly when the text is a complete match; -1 if none. */
  readonly eosId: number;
  /** The byte trie over all non-null tokens. */
  readonly trie: TokenTrie;
}

/**
 * Nodes are numbered in depth-first order. Children of node u are edges
 * childStart[u]..childStart[u+1] (bytes edgeByte, targets edgeNode, sorted by byte); tokens whose
 * bytes end exactly at u are tokenIds[tokenStart[u]..tokenStart[u+1]] (several tokens may share
 * bytes, e.g. "A" and <0x41>).
 */
export interface TokenTrie {
  readonly nodes: number;
  readonly childStart: Int32Array;
  readonly edgeByte: Uint8Array;
  readonly edgeNode: Int32Array;
  readonly tokenStart: Int32Array;
  readonly tokenIds: Int32Array;
  /** Longest token in bytes. */
  readonly maxDepth: number;
}

export function buildTrie(tokenBytes: readonly (Uint8Array | null)[]): TokenTrie {
  const order: number[] = [];
  const keys: string[] = new Array<string>(tokenBytes.length);
  let totalBytes = 0;
  let longest = 0;
  for (let id = 0; id < tokenBytes.length; id++) {
    const b = tokenBytes[id];
    if (!b || b.length === 0) continue;
    order.push(id);
    // Latin-1 keys compare like the bytes, and native string comparison is fast.
    keys[id] = String.fromCharCode.apply(null, b as unknown as number[]);
    totalBytes += b.length;
    if (b.length > longest) longest = b.length;
  }
  order.sort((x, y) => (keys[x]! < keys[y]! ? -1 : keys[x]! > keys[y]! ? 1 : x - y));
  // Sorted tokens give the trie in depth-first order: each token extends the path of the previous
  // one from their common prefix on.
  const cap = totalBytes + 1;
  const parentOf = new Int32Array(cap);
  const byteOf = new Uint8Array(cap);
  const tokenNode = new Int32Array(order.length);
  parentOf[0] = -1;
  let nodes = 1;
  const path = new Int32Array(longest + 1);
  let pathLen = 1;
  let prev: Uint8Array = new Uint8Array(0);
  let maxDepth = 0;
  order.forEach((id, k) => {
    const b = tokenBytes[id]!;
    let common = 0;
    while (common < b.length && common < prev.length && b[common] === prev[common]) common++;
    pathLen = common + 1;
    for (let i = common; i < b.length; i++) {
      parentOf[nodes] = path[i]!;
      byteOf[nodes] = b[i]!;
      path[pathLen++] = nodes++;
    }
    tokenNode[k] = path[b.length]!;
    prev = b;
    if (b.length > maxDepth) maxDepth = b.length;
  });
  const childStart = new Int32Array(nodes + 1);
  for (let u = 1; u < nodes; u++) childStart[parentOf[u]! + 1]!++;
  for (let u = 0; u < nodes; u++) childStart[u + 1]! += childStart[u]!;
  const fill = childStart.slice(0, nodes);
  const edgeByte = new Uint8Array(Math.max(1, nodes - 1));
  const edgeNode = new Int32Array(Math.max(1, nodes - 1));
  // Nodes were created in depth-first, byte-sorted order, so children land sorted by byte.
  for (let u = 1; u < nodes; u++) {
    const e = fill[parentOf[u]!]!++;
    edgeByte[e] = byteOf[u]!;
    edgeNode[e] = u;
  }
  // Tokens sharing bytes are adjacent in `order`, and nodes increase along it.
  const tokenStart = new Int32Array(nodes + 1);
  for (let k = 0; k < order.length; k++) tokenStart[tokenNode[k]! + 1]!++;
  for (let u = 0; u < nodes; u++) tokenStart[u + 1]! += tokenStart[u]!;
  const tokenIds = new Int32Array(order.length);
  const tfill = tokenStart.slice(0, nodes);
  for (let k = 0; k < order.length; k++) tokenIds[tfill[tokenNode[k]!]!++] = order[k]!;
  return { nodes, childStart, edgeByte, edgeNode, tokenStart, tokenIds, maxDepth };
}

/** A vocabulary from explicit token bytes (tests, other tokenizers). */
export function vocabularyFromBytes(tokenBytes: readonly (Uint8Array | null)[], eosId: number): ConstraintVocabulary {
  if (eosId >= tokenBytes.length) throw new UsageError(`eosId ${eosId} is outside the vocabulary of ${tokenBytes.length} tokens`, 'eosId');
  const bytes = tokenBytes.map((b, i) => (i === eosId ? null : b));
  return { size: tokenBytes.length, tokenBytes: bytes, eosId, trie: buildTrie(bytes) };
}

const BYTE_PIECE = /^<0x([0-9A-Fa-f]{2})>$/;
const cache = new WeakMap<Tokenizer, ConstraintVocabulary>();

/** The vocabulary of a tokenizer, built once and cached per tokenizer object. */
export function vocabularyFromTokenizer(tok: Tokenizer): ConstraintVocabulary {
  const hit = cache.get(tok);
  if (hit) return hit;
  const enc = new TextEncoder();
  const bytes: (Uint8Array | null)[] = new Array(tok.vocabSize);
  for (let id = 0; id < tok.vocabSize; id++) {
    const piece = tok.idToPiece(id);
    const d = tok.decoder({ continuation: true });
    const text = d.push(id);
    const m = BYTE_PIECE.exec(piece);
    if (m && text !== piece) {
      // A byte-fallback piece: alone, the decoder holds a lead byte (''), rejects a lone
      // continuation byte (U+FFFD) or prints ASCII; a text piece spelled "<0x41>" prints itself.
      bytes[id] = Uint8Array.of(parseInt(m[1]!, 16));
    } else if (text === '' || id === tok.unkId) {
      bytes[id] = null;
    } else {
      bytes[id] = enc.encode(text);
    }
  }
  const v = vocabularyFromBytes(bytes, tok.eosId);
  cache.set(tok, v);
  return v;
}
