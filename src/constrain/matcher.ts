/**
 * Runs an Automaton against tokens. A matcher's state is a set of stacks (the grammar may be
 * ambiguous); stacks are hash-consed nodes (top gs, parent node), so a stack is one integer and
 * pushing/popping allocates nothing once seen.
 *
 * Masks, XGrammar-style: for each DFA state S (the top of a stack) the tokens are split once, by
 * a walk of the token trie inside S's frame, into
 *   - accepted whatever lies below the frame: a bitset A(S), cached per compiled constraint;
 *   - tokens that leave the frame part-way: recorded as the trie nodes E(S) where the frame ends.
 * Per step the mask is the union of A(top) over the stacks, plus a walk of the subtries under
 * E(top) against the real stack below; that walk is pruned at once by the real state, so its
 * cost is tiny next to the full trie. A regex or a non-recursive schema is a single frame, so its
 * mask is one cached bitset (Outlines' per-DFA-state index).
 */
import { ConstraintError } from '../errors.js';
import type { Automaton } from './automaton.js';
import type { ConstraintVocabulary, TokenTrie } from './vocabulary.js';

/** The stack below the root frame: in a matcher, "the whole text matched". */
export const EXIT = -1;

/** Hash-consed stacks: ids below G are (gs, bottom); larger ids are stored. */
export class StackTable {
  private readonly gsOf: number[] = [];
  private readonly parentOf: number[] = [];
  private readonly ids = new Map<number, number>();
  constructor(private readonly G: number) {}

  mk(gs: number, parent: number): number {
    if (parent < 0) return gs;
    const key = parent * this.G + gs;
    let id = this.ids.get(key);
    if (id === undefined) {
      id = this.G + this.gsOf.length;
      this.gsOf.push(gs);
      this.parentOf.push(parent);
      this.ids.set(key, id);
    }
    return id;
  }
  gs(id: number): number {
    return id < this.G ? id : this.gsOf[id - this.G]!;
  }
  parent(id: number): number {
    return id < this.G ? -1 : this.parentOf[id - this.G]!;
  }
  get size(): number {
    return this.gsOf.length;
  }
}

/**
 * Adds to `out` every stack reachable from `id` without reading a byte whose top reads bytes,
 * pushing called rules and popping finished frames; EXIT when the bottom frame can finish.
 */
function close(a: Automaton, t: StackTable, id: number, out: number[], seen: Set<number>): void {
  if (seen.has(id)) return;
  seen.add(id);
  const gs = t.gs(id);
  if (a.hasByte[gs]) out.push(id);
  const ce = a.callStart[gs + 1]!;
  let i = a.callStart[gs]!;
  if (i < ce) {
    const p = t.parent(id);
    for (; i < ce; i++) close(a, t, t.mk(a.ruleStart[a.callRule[i]!]!, t.mk(a.callRet[i]!, p)), out, seen);
  }
  if (a.accepting[gs]) {
    const p = t.parent(id);
    if (p < 0) {
      if (!seen.has(EXIT)) {
        seen.add(EXIT);
        out.push(EXIT);
      }
    } else close(a, t, p, out, seen);
  }
}

export function closure(a: Automaton, t: StackTable, id: number): number[] {
  const out: number[] = [];
  close(a, t, id, out, new Set());
  return out;
}

/** The stacks after reading `byte` from `set` (EXIT reads nothing). */
export function step(a: Automaton, t: StackTable, set: readonly number[], byte: number): number[] {
  const out: number[] = [];
  const c = a.cls[byte]!;
  let seen: Set<number> | undefined;
  for (const id of set) {
    if (id === EXIT) continue;
    const gs = t.gs(id);
    const nt = a.trans[gs * a.C + c]!;
    if (nt < 0) continue;
    const nid = t.mk(nt, t.parent(id));
    if (a.simple[nt] && set.length === 1) return [nid];
    close(a, t, nid, out, (seen ??= new Set()));
  }
  return out;
}

interface StateIndex {
  /** Tokens accepted from this state whatever lies below its frame. */
  readonly accepted: Uint32Array;
  /** Trie nodes (depth ≥ 1, with children) where the frame can end: their subtries depend on the stack below. */
  readonly exits: Int32Array;
  /** Most a token ending inside the frame can add to the bytes still needed to finish it. */
  readonly maxIncrease: number;
  /** Tokens ending inside the frame that add to the bytes still needed, and by how much. */
  readonly growers: Int32Array;
  readonly growth: Int32Array;
}

/** Per-automaton, per-vocabulary cache of state indexes (shared by every matcher of a compiled constraint). */
export class TokenIndex {
  private readonly states: (StateIndex | undefined)[];
  private readonly table: StackTable;
  private readonly shared = new Map<number, (Int32Array | Uint32Array)[]>();
  private readonly bySignature = new Map<number, StateIndex>();
  readonly words: number;
  constructor(readonly a: Automaton, readonly vocab: ConstraintVocabulary) {
    this.states = new Array(a.G);
    this.table = new StackTable(a.G);
    this.words = Math.ceil(vocab.size / 32);
  }

  get(gs: number): StateIndex {
    let idx = this.states[gs];
    if (!idx) {
      const sig = this.signature(gs);
      idx = sig === undefined ? undefined : this.bySignature.get(sig);
      if (!idx) {
        idx = this.share(this.build(gs));
        if (sig !== undefined) this.bySignature.set(sig, idx);
      }
      this.states[gs] = idx;
    }
    return idx;
  }

  /**
   * What a trie walk from gs can see: the states within the longest token's length of it,
   * numbered in breadth-first order, with their transitions, calls, acceptance and distances
   * relative to gs. Two states with one signature get the same index (the positions of a long
   * string), so only the first pays the walk. Undefined when the region is large or its edge is
   * not plain (then the state is indexed on its own).
   */
  private signature(S: number): number | undefined {
    const a = this.a;
    const { C, trans, dist, accepting, simple, callStart, callRule, callRet } = a;
    const depthLimit = this.vocab.trie.maxDepth;
    const label = new Map<number, number>([[S, 0]]);
    const order = [S];
    const depth = [0];
    // Two FNV-1a hashes of the description, kept as one 53-bit number (collisions ~n²/2⁵³).
    let h1 = 0x811c9dc5;
    let h2 = 0x01000193;
    const put = (x: number): void => {
      h1 = Math.imul(h1 ^ (x & 0xffff), 0x01000193);
      h1 = Math.imul(h1 ^ (x >>> 16), 0x01000193);
      h2 = Math.imul(h2 ^ x, 0x5bd1e995) + 0x6b43a9b5;
      h2 ^= h2 >>> 15;
    };
    for (let i = 0; i < order.length; i++) {
      if (order.length > 1500) return undefined;
      const s = order[i]!;
      const d = depth[i]!;
      put(-7);
      put(dist[s]! - dist[S]!);
      put(accepting[s]!);
      if (d >= depthLimit) {
        if (!simple[s]) return undefined;
        continue;
      }
      const see = (t: number, td: number): number => {
        let l = label.get(t);
        if (l === undefined) {
          l = order.length;
          label.set(t, l);
          order.push(t);
          depth.push(td);
        }
        return l;
      };
      for (let c = 0; c < C; c++) {
        const t = trans[s * C + c]!;
        put(t < 0 ? -1 : see(t, d + 1));
      }
      for (let k = callStart[s]!; k < callStart[s + 1]!; k++) {
        put(-3);
        put(callRule[k]!);
        put(see(callRet[k]!, d));
      }
    }
    return (h1 >>> 0) * 0x200000 + ((h2 >>> 0) & 0x1fffff);
  }

  /**
   * States that accept the same tokens (the positions of a long string, say) share one bitset
   * and growth list, so a schema with maxLength 5000 does not hold 5000 copies.
   */
  private share(idx: StateIndex): StateIndex {
    const fnv = (xs: Int32Array | Uint32Array): number => {
      let h = 0x811c9dc5;
      for (let i = 0; i < xs.length; i++) h = Math.imul(h ^ xs[i]!, 0x01000193);
      return h >>> 0;
    };
    const same = (x: Int32Array | Uint32Array, y: Int32Array | Uint32Array): boolean => {
      if (x.length !== y.length) return false;
      for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
      return true;
    };
    const intern = <T extends Int32Array | Uint32Array>(xs: T): T => {
      const h = fnv(xs);
      const bucket = this.shared.get(h);
      if (bucket) {
        for (const other of bucket) if (same(other, xs)) return other as T;
        bucket.push(xs);
      } else this.shared.set(h, [xs]);
      return xs;
    };
    return { ...idx, accepted: intern(idx.accepted), growers: intern(idx.growers), growth: intern(idx.growth) };
  }

  /** How many states have an index so far. */
  get built(): number {
    let n = 0;
    for (const s of this.states) if (s) n++;
    return n;
  }

  private build(S: number): StateIndex {
    const a = this.a;
    const trie = this.vocab.trie;
    const accepted = new Uint32Array(this.words);
    const exits: number[] = [];
    const dist = a.dist;
    const base = dist[S]!;
    let maxIncrease = 0;
    const growers: number[] = [];
    const growth: number[] = [];
    const grew = (v: number, inc: number): void => {
      if (inc <= 0) return;
      if (inc > maxIncrease) maxIncrease = inc;
      for (let i = tokenStart[v]!; i < tokenStart[v + 1]!; i++) {
        growers.push(tokenIds[i]!);
        growth.push(inc);
      }
    };
    const { childStart, edgeByte, edgeNode, tokenStart, tokenIds } = trie;
    const { trans, cls, simple, C } = a;
    const t = this.table;
    const addTokens = (v: number): void => {
      for (let i = tokenStart[v]!; i < tokenStart[v + 1]!; i++) {
        const id = tokenIds[i]!;
        accepted[id >>> 5]! |= 1 << (id & 31);
      }
    };
    // The common case: one stack, one frame; a byte step is a table lookup.
    const walkSimple = (u: number, gs: number): void => {
      const row = gs * C;
      for (let e = childStart[u]!; e < childStart[u + 1]!; e++) {
        const nt = trans[row + cls[edgeByte[e]!]!]!;
        if (nt < 0) continue;
        const v = edgeNode[e]!;
        if (simple[nt]) {
          if (tokenStart[v]! < tokenStart[v + 1]!) {
            addTokens(v);
            grew(v, dist[nt]! - base);
          }
          if (childStart[v]! < childStart[v + 1]!) walkSimple(v, nt);
        } else {
          walkSet(v, closure(a, t, nt));
        }
      }
    };
    const walkSet = (v: number, set: number[]): void => {
      if (set.length === 0) return;
      if (tokenStart[v]! < tokenStart[v + 1]!) {
        addTokens(v);
        let d = Infinity;
        for (const id of set) d = Math.min(d, id === EXIT ? 0 : stackDist(a, t, id));
        grew(v, d - base);
      }
      if (childStart[v]! === childStart[v + 1]!) return;
      let exit = false;
      const configs: number[] = [];
      for (const id of set) {
        if (id === EXIT) exit = true;
        else configs.push(id);
      }
      if (exit) exits.push(v);
      if (configs.length === 1 && configs[0]! < a.G) {
        walkSimple(v, configs[0]!);
        return;
      }
      for (let e = childStart[v]!; e < childStart[v + 1]!; e++) {
        const next = step(a, t, configs, edgeByte[e]!);
        if (next.length) walkSet(edgeNode[e]!, next);
      }
    };
    walkSimple(0, S);
    return { accepted, exits: Int32Array.from(exits), maxIncrease, growers: Int32Array.from(growers), growth: Int32Array.from(growth) };
  }
}

/** Bytes still needed to finish every frame of the stack `id`. */
function stackDist(a: Automaton, t: StackTable, id: number): number {
  let d = 0;
  for (let s = id; s >= 0; s = t.parent(s)) d += a.dist[t.gs(s)]!;
  return d;
}

/**
 * Walks the subtrie under trie node u from the real stacks `set`, allowing tokens that end on a
 * live state. Returns the most bytes any allowed token leaves to finish (for the budget check).
 */
function walkReal(a: Automaton, t: StackTable, trie: TokenTrie, u: number, set: number[], mask: Uint32Array, dists?: Map<number, number>): number {
  const { childStart, edgeByte, edgeNode, tokenStart, tokenIds } = trie;
  let worst = 0;
  for (let e = childStart[u]!; e < childStart[u + 1]!; e++) {
    const next = step(a, t, set, edgeByte[e]!);
    if (next.length === 0) continue;
    const v = edgeNode[e]!;
    if (tokenStart[v]! < tokenStart[v + 1]!) {
      for (let i = tokenStart[v]!; i < tokenStart[v + 1]!; i++) {
        const id = tokenIds[i]!;
        mask[id >>> 5]! |= 1 << (id & 31);
      }
      let d = Infinity;
      for (const id of next) d = Math.min(d, id === EXIT ? 0 : stackDist(a, t, id));
      if (d > worst) worst = d;
      if (dists) for (let i = tokenStart[v]!; i < tokenStart[v + 1]!; i++) dists.set(tokenIds[i]!, Math.min(d, dists.get(tokenIds[i]!) ?? Infinity));
    }
    if (childStart[v]! < childStart[v + 1]!) worst = Math.max(worst, walkReal(a, t, trie, v, next, mask, dists));
  }
  return worst;
}

function tokenText(bytes: Uint8Array | null): string {
  return bytes ? JSON.stringify(new TextDecoder().decode(bytes)) : '(no text)';
}

export class Matcher {
  private set: number[];
  /** Tokens allowed through frame exits in the last fillMask (for the budget check). */
  private exitMask: Uint32Array | undefined;
  /** Bytes left to finish after each exit token of the last fillMask with a budget. */
  private readonly exitDists = new Map<number, number>();
  private ended = false;

  constructor(private readonly index: TokenIndex, private readonly table: StackTable, set?: number[]) {
    this.set = set ?? closure(index.a, table, index.a.ruleStart[0]!);
  }

  fillMask(mask: Uint32Array, budget?: number): void {
    const { a, vocab } = this.index;
    if (mask.length !== this.index.words) {
      throw new ConstraintError(`the mask has ${mask.length} words; this vocabulary of ${vocab.size} tokens needs ${this.index.words}`);
    }
    mask.fill(0);
    if (this.ended) return;
    const t = this.table;
    let exitWorst = 0;
    const exitMask = budget === undefined ? mask : (this.exitMask ??= new Uint32Array(mask.length)).fill(0);
    this.exitDists.clear();
    const dists = budget === undefined ? undefined : this.exitDists;
    for (const id of this.set) {
      if (id === EXIT) continue;
      const idx = this.index.get(t.gs(id));
      const acc = idx.accepted;
      for (let w = 0; w < acc.length; w++) mask[w]! |= acc[w]!;
      if (idx.exits.length === 0) continue;
      const p = t.parent(id);
      if (p < 0) continue; // past the root frame's end no byte can follow
      const below = closure(a, t, p).filter((x) => x !== EXIT);
      if (below.length === 0) continue;
      for (const u of idx.exits) exitWorst = Math.max(exitWorst, walkReal(a, t, vocab.trie, u, below, exitMask, dists));
    }
    if (vocab.eosId >= 0 && this.isComplete()) mask[vocab.eosId >>> 5]! |= 1 << (vocab.eosId & 31);
    if (budget !== undefined) {
      for (let w = 0; w < mask.length; w++) mask[w]! |= exitMask[w]!;
      this.limitToBudget(mask, budget, exitWorst);
    }
  }

  /**
   * Keeps only tokens after which a complete match is still reachable within `budget − 1` more
   * tokens (counting one token per byte, which byte-fallback pieces guarantee). When nothing
   * fits, keeps the tokens that come closest. Runs only when some allowed token could overshoot
   * (per-state maxIncrease), then as one trie walk pruned by distance.
   */
  private limitToBudget(mask: Uint32Array, budget: number, exitWorst: number): void {
    const { a, vocab } = this.index;
    const t = this.table;
    const limit0 = budget - 1;
    const now = this.minTokensToComplete();
    const trie = vocab.trie;
    let needed = limit0 < exitWorst;
    const live: number[] = [];
    for (const id of this.set) {
      if (id === EXIT) continue;
      live.push(id);
      if (limit0 < now + this.index.get(t.gs(id)).maxIncrease) needed = true;
    }
    if (!needed) return;
    // Every stack has room to finish: per stack, its tokens minus the growing ones that would
    // overshoot (precomputed per state), and the exit tokens that fit (measured by walkReal).
    const slacks = live.map((id) => limit0 - stackDist(a, t, id));
    if (slacks.every((x) => x >= 0)) {
      const keep = this.exitMask ? this.exitMask.slice() : new Uint32Array(mask.length);
      for (const [id, d] of this.exitDists) if (d > limit0) keep[id >>> 5]! &= ~(1 << (id & 31));
      const part = new Uint32Array(mask.length);
      live.forEach((id, k) => {
        const idx = this.index.get(t.gs(id));
        part.set(idx.accepted);
        const { growers, growth } = idx;
        for (let i = 0; i < growers.length; i++) {
          if (growth[i]! > slacks[k]!) {
            const g = growers[i]!;
            part[g >>> 5]! &= ~(1 << (g & 31));
          }
        }
        for (let w = 0; w < keep.length; w++) keep[w]! |= part[w]!;
      });
      if (this.isComplete()) keep[vocab.eosId >>> 5]! |= 1 << (vocab.eosId & 31);
      for (let w = 0; w < mask.length; w++) mask[w]! &= keep[w]!;
      return;
    }
    const { childStart, edgeByte, edgeNode, tokenStart, tokenIds, maxDepth } = trie;
    const { trans, cls, simple, C, dist } = a;
    const out = new Uint32Array(mask.length);
    let best = Infinity;
    let limit = limit0;
    const record = (v: number, d: number): void => {
      if (d < best) best = d;
      if (d > limit) return;
      for (let i = tokenStart[v]!; i < tokenStart[v + 1]!; i++) {
        const id = tokenIds[i]!;
        out[id >>> 5]! |= 1 << (id & 31);
      }
    };
    const walkFast = (u: number, gs: number, p: number, below: number, k: number): void => {
      const row = gs * C;
      for (let e = childStart[u]!; e < childStart[u + 1]!; e++) {
        const nt = trans[row + cls[edgeByte[e]!]!]!;
        if (nt < 0) continue;
        const v = edgeNode[e]!;
        if (simple[nt]) {
          const d = dist[nt]! + below;
          if (tokenStart[v]! < tokenStart[v + 1]!) record(v, d);
          if (childStart[v]! < childStart[v + 1]! && d - (maxDepth - k - 1) <= limit) walkFast(v, nt, p, below, k + 1);
        } else walkSlow(v, closure(a, t, t.mk(nt, p)), k + 1);
      }
    };
    const walkSlow = (v: number, set: number[], k: number): void => {
      if (set.length === 0) return;
      const d = this.distOf(set);
      if (tokenStart[v]! < tokenStart[v + 1]!) record(v, d);
      if (childStart[v]! === childStart[v + 1]! || d - (maxDepth - k) > limit) return;
      if (set.length === 1 && set[0] !== EXIT) {
        const p = t.parent(set[0]!);
        walkFast(v, t.gs(set[0]!), p, p < 0 ? 0 : stackDist(a, t, p), k);
        return;
      }
      for (let e = childStart[v]!; e < childStart[v + 1]!; e++) walkSlow(edgeNode[e]!, step(a, t, set, edgeByte[e]!), k + 1);
    };
    const run = (): void => {
      out.fill(0);
      for (const id of this.set) {
        if (id === EXIT) continue;
        const p = t.parent(id);
        walkFast(0, t.gs(id), p, p < 0 ? 0 : stackDist(a, t, p), 0);
      }
    };
    run();
    if (this.isComplete()) {
      best = 0;
      out[vocab.eosId >>> 5]! |= 1 << (vocab.eosId & 31);
    } else if (best > limit) {
      limit = best;
      run();
    }
    for (let w = 0; w < mask.length; w++) mask[w]! &= out[w]!;
  }

  private distOf(set: readonly number[]): number {
    const { a } = this.index;
    let best = Infinity;
    for (const id of set) {
      if (id === EXIT) return 0;
      const d = stackDist(a, this.table, id);
      if (d < best) best = d;
    }
    return best;
  }

  accept(tokenId: number): void {
    const { a, vocab } = this.index;
    if (this.ended) throw new ConstraintError(`token ${tokenId} after the end of sequence`);
    if (tokenId === vocab.eosId) {
      if (!this.isComplete()) throw new ConstraintError('end of sequence before the text is a complete match');
      this.ended = true;
      this.set = [EXIT];
      return;
    }
    const bytes = tokenId >= 0 && tokenId < vocab.size ? vocab.tokenBytes[tokenId] : null;
    if (!bytes) throw new ConstraintError(`token ${tokenId} has no text and is never allowed under a constraint`);
    let set = this.set;
    for (const b of bytes) {
      set = step(a, this.table, set, b);
      if (set.length === 0) throw new ConstraintError(`token ${tokenId} (${tokenText(bytes)}) is not allowed here`);
    }
    this.set = set;
  }

  /**
   * Advances by text rather than a token (text the engine itself inserts, tests). Throws
   * ConstraintError naming the byte offset where the text leaves the language.
   */
  acceptText(text: string): void {
    if (this.ended) throw new ConstraintError('text after the end of sequence');
    const bytes = new TextEncoder().encode(text);
    let set = this.set;
    for (let i = 0; i < bytes.length; i++) {
      set = step(this.index.a, this.table, set, bytes[i]!);
      if (set.length === 0) throw new ConstraintError(`${JSON.stringify(text)} is not allowed: it leaves the language at byte ${i}`);
    }
    this.set = set;
  }

  isComplete(): boolean {
    return this.set.includes(EXIT);
  }

  canContinue(): boolean {
    return !this.ended && this.set.some((id) => id !== EXIT);
  }

  /**
   * Bytes on the shortest way to a complete match: with byte-fallback pieces every byte is a
   * token, so this many tokens always suffice to close the output (0 when complete).
   */
  minTokensToComplete(): number {
    return this.distOf(this.set);
  }

  clone(): Matcher {
    const m = new Matcher(this.index, this.table, this.set.slice());
    m.ended = this.ended;
    return m;
  }
}
