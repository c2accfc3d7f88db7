/**
 * The user-defined symbols of a vocabulary: pieces the normaliser and the encoder treat as one
 * unit wherever they occur, found by longest prefix as the library's PrefixMatcher finds them.
 */

/** Longest-prefix matcher over the user-defined symbols (the library's PrefixMatcher). */
export class PrefixMatcher {
  /** children[node] maps a UTF-16 code unit to the next node; node 0 is the root. */
  private readonly children: Map<number, number>[] = [new Map()];
  private readonly terminal: boolean[] = [false];
  /** Code units that start some symbol: the scan tests this before walking the trie. */
  readonly startsSymbol = new Uint8Array(0x10000);
  readonly empty: boolean;

  constructor(symbols: readonly string[]) {
    for (const s of symbols) {
      let node = 0;
      for (let i = 0; i < s.length; i++) {
        const c = s.charCodeAt(i);
        let next = this.children[node]!.get(c);
        if (next === undefined) {
          next = this.children.length;
          this.children.push(new Map());
          this.terminal.push(false);
          this.children[node]!.set(c, next);
        }
        node = next;
      }
      this.terminal[node] = true;
      this.startsSymbol[s.charCodeAt(0)] = 1;
    }
    this.empty = symbols.length === 0;
  }

  /** Length (in code units) of the longest symbol starting at `pos` in text[..end), or 0. */
  match(text: string, pos: number, end: number): number {
    let node = 0;
    let best = 0;
    for (let i = pos; i < end; i++) {
      const next = this.children[node]!.get(text.charCodeAt(i));
      if (next === undefined) break;
      node = next;
      if (this.terminal[node]) best = i + 1 - pos;
    }
    return best;
  }
}
