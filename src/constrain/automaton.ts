/**
 * Grammar → recursive transition network: one DFA over bytes per *framed* rule, whose edges are
 * bytes or calls of other framed rules. A rule is framed when it is the root or recursive (in a
 * reference cycle); every other reference is inlined, so a regex or a JSON Schema without
 * recursive $ref becomes a single DFA (Outlines' regime) and only real nesting needs a stack.
 *
 * States of all DFAs share one global numbering (`gs`). Bytes are mapped to equivalence classes
 * (bytes no range boundary separates behave alike), so the transition table is G × C, not G × 256.
 */
import { ConstraintError } from '../errors.js';
import type { Grammar, Node } from './grammar.js';
import { MAX_DFA_STATES, MAX_NFA_STATES } from './limits.js';

export { MAX_DFA_STATES, MAX_NFA_STATES };

export interface Automaton {
  /** Global state count. */
  readonly G: number;
  /** Byte class count and the class of each byte. */
  readonly C: number;
  readonly cls: Uint8Array;
  /** trans[gs * C + class] = next gs, or -1. */
  readonly trans: Int32Array;
  readonly accepting: Uint8Array;
  readonly hasByte: Uint8Array;
  /** Calls out of gs: indices callStart[gs]..callStart[gs+1] into callRule / callRet. */
  readonly callStart: Int32Array;
  readonly callRule: Int32Array;
  readonly callRet: Int32Array;
  /** No calls and not accepting: a byte step from it needs no closure. */
  readonly simple: Uint8Array;
  /** Start gs of each framed rule; framed rule 0 is the root. */
  readonly ruleStart: Int32Array;
  readonly ruleNames: readonly string[];
  /** Fewest bytes from gs to the end of its rule's frame (sub-rule calls included). */
  readonly dist: Int32Array;
  /** A bound on how much one byte can grow the bytes still needed to finish (summed over a stack). */
  maxGrowthPerByte: number;
}

interface Nfa {
  eps: number[][];
  /** Byte edges: [lo, hi, to] triples, flattened. */
  bytes: number[][];
  /** Call edges: [rule, to] pairs, flattened. */
  calls: number[][];
}

function where(g: Grammar, rule: string): string {
  return g.origin?.get(rule) ?? `rule ${rule}`;
}

/** Rules that are part of a reference cycle (Tarjan's SCC). */
function recursiveRules(g: Grammar): Set<string> {
  const refs = new Map<string, Set<string>>();
  const collect = (n: Node, out: Set<string>): void => {
    if (n.k === 'ref') out.add(n.name);
    else if (n.k === 'seq' || n.k === 'alt') for (const it of n.items) collect(it, out);
    else if (n.k === 'rep') collect(n.item, out);
  };
  for (const [name, body] of g.rules) {
    const s = new Set<string>();
    collect(body, s);
    for (const r of s) {
      if (!g.rules.has(r)) throw new ConstraintError(`reference to undefined rule "${r}"`, where(g, name));
    }
    refs.set(name, s);
  }
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const out = new Set<string>();
  let counter = 0;
  // Iterative Tarjan: grammars from schemas can be deep.
  for (const startName of g.rules.keys()) {
    if (index.has(startName)) continue;
    const work: [string, Iterator<string>][] = [];
    const visit = (v: string) => {
      index.set(v, counter);
      low.set(v, counter);
      counter++;
      stack.push(v);
      onStack.add(v);
      work.push([v, refs.get(v)![Symbol.iterator]()]);
    };
    visit(startName);
    while (work.length) {
      const [v, it] = work[work.length - 1]!;
      const next = it.next();
      if (!next.done) {
        const w = next.value;
        if (!index.has(w)) visit(w);
        else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
        continue;
      }
      work.pop();
      if (work.length) {
        const parent = work[work.length - 1]![0];
        low.set(parent, Math.min(low.get(parent)!, low.get(v)!));
      }
      if (low.get(v) === index.get(v)) {
        const comp: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          comp.push(w);
        } while (w !== v);
        if (comp.length > 1 || refs.get(v)!.has(v)) for (const c of comp) out.add(c);
      }
    }
  }
  return out;
}

/** Inlined size above which a frame's largest inlined rule is framed instead (keeps DFAs small). */
const FRAME_SIZE_LIMIT = 20_000;

/**
 * The root and recursive rules need frames. Inlining everything else gives single DFAs, but a
 * big rule under a large repetition (`item{9,99}`) would be copied that many times: such rules
 * get their own frame, largest first, until every frame's inlined size is moderate.
 */
function chooseFramedRules(g: Grammar, recursive: Set<string>): string[] {
  const framed = new Set<string>([g.root, ...recursive]);
  for (;;) {
    const memo = new Map<string, number>();
    const size = (n: Node): number => {
      switch (n.k) {
        case 'byte':
          return 1;
        case 'seq':
        case 'alt': {
          let s = 1;
          for (const it of n.items) s += size(it);
          return s;
        }
        case 'rep':
          return size(n.item) * (n.max === Infinity ? n.min + 1 : n.max) + 2;
        case 'ref': {
          if (framed.has(n.name)) return 1;
          let s = memo.get(n.name);
          if (s === undefined) {
            memo.set(n.name, 1); // not recursive, so never read before it is set below
            s = Math.min(size(g.rules.get(n.name)!), 1e12);
            memo.set(n.name, s);
          }
          return s;
        }
      }
    };
    let over = false;
    for (const r of framed) if (size(g.rules.get(r)!) > FRAME_SIZE_LIMIT) over = true;
    if (!over) break;
    let pick: string | undefined;
    for (const [name, s] of memo) if (s > 64 && (pick === undefined || s > memo.get(pick)!)) pick = name;
    if (pick === undefined) break;
    framed.add(pick);
  }
  return [g.root, ...[...framed].filter((r) => r !== g.root)];
}

/** Byte classes: bytes between consecutive range boundaries of any byte node behave alike. */
function byteClasses(g: Grammar): { cls: Uint8Array; C: number } {
  const boundary = new Uint8Array(257);
  boundary[0] = 1;
  const walk = (n: Node): void => {
    if (n.k === 'byte') {
      for (let i = 0; i < n.ranges.length; i += 2) {
        boundary[n.ranges[i]!] = 1;
        boundary[n.ranges[i + 1]! + 1] = 1;
      }
    } else if (n.k === 'seq' || n.k === 'alt') for (const it of n.items) walk(it);
    else if (n.k === 'rep') walk(n.item);
  };
  for (const body of g.rules.values()) walk(body);
  const cls = new Uint8Array(256);
  let c = -1;
  for (let b = 0; b < 256; b++) {
    if (boundary[b]) c++;
    cls[b] = c;
  }
  return { cls, C: c + 1 };
}

function tooManyNfaStates(g: Grammar, ruleName: string): ConstraintError {
  return new ConstraintError(`too large: more than ${MAX_NFA_STATES} automaton states (reduce repetition counts or lengths)`, where(g, ruleName));
}

/**
 * The number of states buildNfa would create for a framed rule, counted without building: a
 * product of counts (`(a{10000}){10000}`) is refused at once rather than after a million states.
 * Mirrors buildNfa case by case; inlined rules are counted once (memo) and multiplied.
 */
export function nfaStateCount(g: Grammar, ruleName: string, framedIndex: ReadonlyMap<string, number>): number {
  const memo = new Map<string, number>();
  let depth = 0;
  const count = (n: Node): number => {
    switch (n.k) {
      case 'byte':
        return 0;
      case 'seq': {
        let c = Math.max(0, n.items.length - 1);
        for (const it of n.items) c += count(it);
        return c;
      }
      case 'alt': {
        let c = 0;
        for (const it of n.items) c += 2 + count(it);
        return c;
      }
      case 'rep': {
        const per = 1 + count(n.item);
        return n.min * per + (n.max === Infinity ? 1 + per : (n.max - n.min) * per);
      }
      case 'ref': {
        if (framedIndex.has(n.name)) return 0;
        let c = memo.get(n.name);
        if (c === undefined) {
          if (depth > 10_000) throw new ConstraintError('rules nest too deeply', where(g, n.name));
          depth++;
          c = count(g.rules.get(n.name)!);
          depth--;
          memo.set(n.name, c);
        }
        return c;
      }
    }
  };
  return 2 + count(g.rules.get(ruleName)!);
}

function buildNfa(g: Grammar, ruleName: string, framedIndex: Map<string, number>): { nfa: Nfa; start: number; end: number } {
  if (nfaStateCount(g, ruleName, framedIndex) > MAX_NFA_STATES) throw tooManyNfaStates(g, ruleName);
  const nfa: Nfa = { eps: [], bytes: [], calls: [] };
  const newState = (): number => {
    if (nfa.eps.length >= MAX_NFA_STATES) throw tooManyNfaStates(g, ruleName);
    nfa.eps.push([]);
    nfa.bytes.push([]);
    nfa.calls.push([]);
    return nfa.eps.length - 1;
  };
  const inlining: string[] = [];
  const build = (n: Node, s: number, e: number): void => {
    switch (n.k) {
      case 'byte':
        for (let i = 0; i < n.ranges.length; i += 2) nfa.bytes[s]!.push(n.ranges[i]!, n.ranges[i + 1]!, e);
        return;
      case 'seq': {
        let cur = s;
        for (let i = 0; i < n.items.length; i++) {
          const next = i === n.items.length - 1 ? e : newState();
          build(n.items[i]!, cur, next);
          cur = next;
        }
        if (n.items.length === 0) nfa.eps[s]!.push(e);
        return;
      }
      case 'alt':
        for (const it of n.items) {
          const a = newState();
          const b = newState();
          nfa.eps[s]!.push(a);
          nfa.eps[b]!.push(e);
          build(it, a, b);
        }
        return;
      case 'rep': {
        let cur = s;
        for (let i = 0; i < n.min; i++) {
          const next = newState();
          build(n.item, cur, next);
          cur = next;
        }
        if (n.max === Infinity) {
          const loopIn = newState();
          const loopOut = newState();
          nfa.eps[cur]!.push(loopIn);
          build(n.item, loopIn, loopOut);
          nfa.eps[loopOut]!.push(loopIn);
          nfa.eps[loopIn]!.push(e);
        } else {
          // Each optional copy may skip straight to the end: (x (x (x)?)?)?, so state sets stay small.
          for (let i = n.min; i < n.max; i++) {
            nfa.eps[cur]!.push(e);
            const next = newState();
            build(n.item, cur, next);
            cur = next;
          }
          nfa.eps[cur]!.push(e);
        }
        return;
      }
      case 'ref': {
        const framed = framedIndex.get(n.name);
        if (framed !== undefined) {
          nfa.calls[s]!.push(framed, e);
          return;
        }
        if (inlining.length > 10_000) throw new ConstraintError('rules nest too deeply', where(g, n.name));
        inlining.push(n.name);
        build(g.rules.get(n.name)!, s, e);
        inlining.pop();
        return;
      }
    }
  };
  const start = newState();
  const end = newState();
  build(g.rules.get(ruleName)!, start, end);
  return { nfa, start, end };
}

interface RuleDfa {
  /** Per DFA state: next DFA state per class (-1 none). */
  trans: Int32Array[];
  accepting: boolean[];
  /** Per DFA state: [rule, toState] pairs. */
  calls: number[][];
}

function determinize(nfa: Nfa, start: number, end: number, cls: Uint8Array, C: number, budget: { left: number }, what: string): RuleDfa {
  const closure = (seeds: Iterable<number>): number[] => {
    const seen = new Set<number>();
    const stack = [...seeds];
    while (stack.length) {
      const s = stack.pop()!;
      if (seen.has(s)) continue;
      seen.add(s);
      for (const t of nfa.eps[s]!) if (!seen.has(t)) stack.push(t);
    }
    // Only states with outgoing bytes/calls, or the end, distinguish DFA states.
    return [...seen].filter((s) => s === end || nfa.bytes[s]!.length > 0 || nfa.calls[s]!.length > 0).sort((a, b) => a - b);
  };
  const ids = new Map<string, number>();
  const sets: number[][] = [];
  const dfa: RuleDfa = { trans: [], accepting: [], calls: [] };
  const intern = (set: number[]): number => {
    const key = set.join(',');
    let id = ids.get(key);
    if (id === undefined) {
      if (--budget.left < 0) throw new ConstraintError(`too large: more than ${MAX_DFA_STATES} automaton states`, what);
      id = sets.length;
      ids.set(key, id);
      sets.push(set);
    }
    return id;
  };
  intern(closure([start]));
  for (let d = 0; d < sets.length; d++) {
    const set = sets[d]!;
    const targets: (Set<number> | undefined)[] = new Array(C);
    const callTargets = new Map<number, Set<number>>();
    let accepting = false;
    for (const s of set) {
      if (s === end) accepting = true;
      const b = nfa.bytes[s]!;
      for (let i = 0; i < b.length; i += 3) {
        const to = b[i + 2]!;
        for (let c = cls[b[i]!]!; c <= cls[b[i + 1]!]!; c++) (targets[c] ??= new Set()).add(to);
      }
      const cl = nfa.calls[s]!;
      for (let i = 0; i < cl.length; i += 2) {
        let t = callTargets.get(cl[i]!);
        if (!t) callTargets.set(cl[i]!, (t = new Set()));
        t.add(cl[i + 1]!);
      }
    }
    const row = new Int32Array(C).fill(-1);
    // Classes with the same target set share one closure computation.
    const memo = new Map<Set<number>, number>();
    for (let c = 0; c < C; c++) {
      const t = targets[c];
      if (!t) continue;
      let id = memo.get(t);
      if (id === undefined) {
        id = intern(closure(t));
        memo.set(t, id);
      }
      row[c] = id;
    }
    const calls: number[] = [];
    for (const [rule, t] of callTargets) calls.push(rule, intern(closure(t)));
    dfa.trans.push(row);
    dfa.accepting.push(accepting);
    dfa.calls.push(calls);
  }
  return dfa;
}

/** Compiles a grammar; throws ConstraintError naming the rule for undefined rules, left recursion, an empty language or excessive size. */
export function compileGrammar(g: Grammar): Automaton {
  if (!g.rules.has(g.root)) throw new ConstraintError(`root rule "${g.root}" is not defined`);
  const framed = chooseFramedRules(g, recursiveRules(g));
  const framedIndex = new Map(framed.map((r, i) => [r, i]));
  const { cls, C } = byteClasses(g);
  const budget = { left: MAX_DFA_STATES };
  const dfas = framed.map((r) => {
    const { nfa, start, end } = buildNfa(g, r, framedIndex);
    return determinize(nfa, start, end, cls, C, budget, where(g, r));
  });
  const offsets: number[] = [];
  let G = 0;
  for (const d of dfas) {
    offsets.push(G);
    G += d.trans.length;
  }
  const trans = new Int32Array(G * C);
  const accepting = new Uint8Array(G);
  const callLists: number[][] = new Array(G);
  const ruleOf = new Int32Array(G);
  dfas.forEach((d, r) => {
    const off = offsets[r]!;
    for (let s = 0; s < d.trans.length; s++) {
      const gs = off + s;
      ruleOf[gs] = r;
      const row = d.trans[s]!;
      for (let c = 0; c < C; c++) trans[gs * C + c] = row[c]! < 0 ? -1 : off + row[c]!;
      accepting[gs] = d.accepting[s] ? 1 : 0;
      const calls = d.calls[s]!;
      const out: number[] = [];
      for (let i = 0; i < calls.length; i += 2) out.push(calls[i]!, off + calls[i + 1]!);
      callLists[gs] = out;
    }
  });
  const ruleStart = Int32Array.from(offsets);

  // Liveness: a state is live if it can reach its frame's end; dead edges are cut so a matcher
  // never enters a state it cannot finish from.
  const live = new Uint8Array(G);
  const bytePreds: number[][] = Array.from({ length: G }, () => []);
  const retPreds: number[][] = Array.from({ length: G }, () => []); // [caller, rule] pairs
  const callers: number[][] = Array.from({ length: framed.length }, () => []); // [caller, ret] pairs
  for (let gs = 0; gs < G; gs++) {
    for (let c = 0; c < C; c++) {
      const t = trans[gs * C + c]!;
      if (t >= 0) bytePreds[t]!.push(gs);
    }
    const cl = callLists[gs]!;
    for (let i = 0; i < cl.length; i += 2) {
      retPreds[cl[i + 1]!]!.push(gs, cl[i]!);
      callers[cl[i]!]!.push(gs, cl[i + 1]!);
    }
  }
  const work: number[] = [];
  const mark = (gs: number) => {
    if (!live[gs]) {
      live[gs] = 1;
      work.push(gs);
    }
  };
  for (let gs = 0; gs < G; gs++) if (accepting[gs]) mark(gs);
  while (work.length) {
    const t = work.pop()!;
    for (const p of bytePreds[t]!) mark(p);
    const rp = retPreds[t]!;
    for (let i = 0; i < rp.length; i += 2) if (live[ruleStart[rp[i + 1]!]!]) mark(rp[i]!);
    // t is a rule start: callers whose return state is live become live.
    const r = ruleOf[t]!;
    if (ruleStart[r] === t) {
      const cs = callers[r]!;
      for (let i = 0; i < cs.length; i += 2) if (live[cs[i + 1]!]) mark(cs[i]!);
    }
  }
  if (!live[ruleStart[0]!]) throw new ConstraintError('matches no text at all (an empty enum, contradictory bounds, or a rule that never ends)', where(g, g.root));
  for (let i = 0; i < trans.length; i++) if (trans[i]! >= 0 && !live[trans[i]!]) trans[i] = -1;
  const callStart = new Int32Array(G + 1);
  const callRule: number[] = [];
  const callRet: number[] = [];
  const hasByte = new Uint8Array(G);
  const simple = new Uint8Array(G);
  for (let gs = 0; gs < G; gs++) {
    callStart[gs] = callRule.length;
    const cl = callLists[gs]!;
    for (let i = 0; i < cl.length; i += 2) {
      if (live[ruleStart[cl[i]!]!] && live[cl[i + 1]!]) {
        callRule.push(cl[i]!);
        callRet.push(cl[i + 1]!);
      }
    }
    for (let c = 0; c < C; c++) if (trans[gs * C + c]! >= 0) hasByte[gs] = 1;
    simple[gs] = !accepting[gs] && callRule.length === callStart[gs] ? 1 : 0;
  }
  callStart[G] = callRule.length;

  const a: Automaton = {
    G,
    C,
    cls,
    trans,
    accepting,
    hasByte,
    callStart,
    callRule: Int32Array.from(callRule),
    callRet: Int32Array.from(callRet),
    simple,
    ruleStart,
    ruleNames: framed,
    dist: new Int32Array(G),
    maxGrowthPerByte: 1,
  };
  checkLeftRecursion(a, g);
  computeDistances(a);
  let byteGrowth = 0;
  let callGrowth = 0;
  for (let gs = 0; gs < G; gs++) {
    for (let c = 0; c < C; c++) {
      const t = trans[gs * C + c]!;
      if (t >= 0) byteGrowth = Math.max(byteGrowth, a.dist[t]! + 1 - a.dist[gs]!);
    }
    for (let i = a.callStart[gs]!; i < a.callStart[gs + 1]!; i++) {
      callGrowth = Math.max(callGrowth, a.dist[a.ruleStart[a.callRule[i]!]!]! + a.dist[a.callRet[i]!]! - a.dist[gs]!);
    }
  }
  a.maxGrowthPerByte = byteGrowth + callGrowth * framed.length;
  return a;
}

/**
 * A framed rule that can call itself again before reading a byte would grow the stack forever
 * (llama.cpp rejects these grammars too).
 */
function checkLeftRecursion(a: Automaton, g: Grammar): void {
  const R = a.ruleNames.length;
  const nullable = new Uint8Array(R);
  const reachNoBytes = (r: number, onCall: (callee: number) => void): boolean => {
    const seen = new Set<number>();
    const stack = [a.ruleStart[r]!];
    let acc = false;
    while (stack.length) {
      const s = stack.pop()!;
      if (seen.has(s)) continue;
      seen.add(s);
      if (a.accepting[s]) acc = true;
      for (let i = a.callStart[s]!; i < a.callStart[s + 1]!; i++) {
        onCall(a.callRule[i]!);
        if (nullable[a.callRule[i]!]) stack.push(a.callRet[i]!);
      }
    }
    return acc;
  };
  for (let changed = true; changed; ) {
    changed = false;
    for (let r = 0; r < R; r++) {
      if (!nullable[r] && reachNoBytes(r, () => {})) {
        nullable[r] = 1;
        changed = true;
      }
    }
  }
  const edges = Array.from({ length: R }, (_, r) => {
    const out = new Set<number>();
    reachNoBytes(r, (c) => out.add(c));
    return out;
  });
  const state = new Uint8Array(R); // 0 new, 1 on path, 2 done
  const dfs = (r: number, path: number[]): void => {
    state[r] = 1;
    path.push(r);
    for (const c of edges[r]!) {
      if (state[c] === 1) {
        const cycle = path.slice(path.indexOf(c)).map((i) => a.ruleNames[i]!);
        throw new ConstraintError(`left recursion: ${[...cycle, a.ruleNames[c]!].join(' → ')} can repeat without reading any text`, where(g, a.ruleNames[c]!));
      }
      if (state[c] === 0) dfs(c, path);
    }
    path.pop();
    state[r] = 2;
  };
  for (let r = 0; r < R; r++) if (state[r] === 0) dfs(r, []);
}

/** dist[gs]: fewest bytes from gs to its frame's end (Bellman-Ford with a worklist; weights ≥ 0). */
function computeDistances(a: Automaton): void {
  const { G, C, trans, dist } = a;
  const INF = 0x3fffffff;
  dist.fill(INF);
  const preds: number[][] = Array.from({ length: G }, () => []);
  const startOf = new Map<number, number>();
  a.ruleStart.forEach((s, r) => startOf.set(s, r));
  const callersOfRule: number[][] = Array.from({ length: a.ruleNames.length }, () => []);
  for (let gs = 0; gs < G; gs++) {
    for (let c = 0; c < C; c++) {
      const t = trans[gs * C + c]!;
      if (t >= 0) preds[t]!.push(gs);
    }
    for (let i = a.callStart[gs]!; i < a.callStart[gs + 1]!; i++) {
      preds[a.callRet[i]!]!.push(gs);
      callersOfRule[a.callRule[i]!]!.push(gs);
    }
  }
  const relax = (gs: number): number => {
    let best = a.accepting[gs] ? 0 : INF;
    for (let c = 0; c < C; c++) {
      const t = trans[gs * C + c]!;
      if (t >= 0 && dist[t]! + 1 < best) best = dist[t]! + 1;
    }
    for (let i = a.callStart[gs]!; i < a.callStart[gs + 1]!; i++) {
      const d = dist[a.ruleStart[a.callRule[i]!]!]! + dist[a.callRet[i]!]!;
      if (d < best) best = d;
    }
    return best;
  };
  // A FIFO queue, each state in it at most once: byte edges all weigh 1, so states settle in
  // about breadth-first order. A LIFO stack re-relaxed long counted chains (minItems 1000 over
  // ~50k states) quadratically, ~12 s.
  const queued = new Uint8Array(G);
  let work: number[] = [];
  for (let gs = 0; gs < G; gs++) if (a.accepting[gs]) {
    dist[gs] = 0;
    work.push(gs);
    queued[gs] = 1;
  }
  while (work.length) {
    const next: number[] = [];
    for (const t of work) {
      queued[t] = 0;
      const others = startOf.has(t) ? callersOfRule[startOf.get(t)!]! : [];
      for (const list of [preds[t]!, others]) {
        for (const p of list) {
          const d = relax(p);
          if (d < dist[p]!) {
            dist[p] = d;
            if (!queued[p]) {
              queued[p] = 1;
              next.push(p);
            }
          }
        }
      }
    }
    work = next;
  }
}
