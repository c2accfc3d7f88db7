/**
 * Tool calls under the chat template's convention (chat-template.ts): a reply that is a call is the
 * tag (`<tool_call>`) and then one JSON object `{"name": …, "arguments": {…}}`; several calls in
 * one reply (OpenAI's parallel tool calls) follow each other, each on a line of its own:
 * `<tool_call>{…}\n<tool_call>{…}`, as assistantText writes an earlier turn's calls.
 *
 * - `toolCallSchema`: the JSON Schema of that object for the tools allowed (the name a `const`, the
 *   arguments the tool's parameter schema), which the JSON-schema constraint enforces.
 * - `ToolCallConstraint`: the constraint of a reply with tools. With `required` (or a named
 *   function), from the first token: only tokens that spell the tag, then the call's schema. With
 *   `auto`, the model chooses: as long as the reply (after leading whitespace) is a prefix of the
 *   tag, only tokens that keep it one or that leave the tag for ordinary text are allowed (never one
 *   that runs past the tag's end, so the call starts on a token boundary); once the tag is complete
 *   the call's schema takes over; once the text has left the tag, nothing is constrained. After a
 *   call's closing brace, up to `maxCalls`: the reply may end, or spell the separator and the tag
 *   of another call (only while the tokens left can still finish one).
 * - `ToolCallParser`: reply text (streamed or whole) → text content, or calls (each with its index)
 *   whose names and arguments are reported as they arrive, the way OpenAI streams them.
 */
import { randomBytes } from 'node:crypto';
import { ConstraintError, type ConstraintMatcher, type ConstraintVocabulary } from '../constrain/index.js';
import type { SequenceConstraint } from './sequence.js';
import { CALL_SEPARATOR, type ToolSpec } from './chat-template.js';

/** The JSON object of a call to one tool. */
function callSchema(t: ToolSpec): object {
  return {
    type: 'object',
    properties: { name: { const: t.name }, arguments: t.parameters ?? { type: 'object' } },
    required: ['name', 'arguments'],
    additionalProperties: false,
  };
}

/** The schema of a call to any of `tools` (or to the one named). */
export function toolCallSchema(tools: readonly ToolSpec[], only?: string): object {
  const allowed = only === undefined ? tools : tools.filter((t) => t.name === only);
  if (allowed.length === 0) throw new RangeError(`no tool named ${JSON.stringify(only)}`);
  return allowed.length === 1 ? callSchema(allowed[0]!) : { anyOf: allowed.map(callSchema) };
}

/** `call_` and 24 random letters and digits, as OpenAI's call ids look. */
export function newToolCallId(): string {
  const abc = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789';
  return `call_${[...randomBytes(24)].map((b) => abc[b % abc.length]).join('')}`;
}

const texts = new WeakMap<ConstraintVocabulary, (string | null)[]>();

/** Each token's text (its bytes as UTF-8; null for tokens without text), once per vocabulary. */
function tokenTexts(vocab: ConstraintVocabulary): (string | null)[] {
  let t = texts.get(vocab);
  if (!t) {
    const dec = new TextDecoder();
    t = vocab.tokenBytes.map((b) => (b === null ? null : dec.decode(b)));
    texts.set(vocab, t);
  }
  return t;
}

export class ToolCallConstraint implements SequenceConstraint {
  /**
   * undecided: the reply's start (whitespace and a prefix of the tag); text: ordinary text; call:
   * inside a call's JSON; between: a call has closed, and the separator and tag of another may follow.
   */
  private state: 'undecided' | 'text' | 'call' | 'between' = 'undecided';
  /** The text so far while undecided (whitespace and a prefix of the tag) or between calls (a prefix of separator + tag). */
  private prefix = '';
  private call: ConstraintMatcher | undefined;
  private calls = 0;
  private readonly texts: (string | null)[];
  /** What opens a further call after one has closed. */
  private readonly next: string;
  /** Tokens a fresh call needs at worst: its shortest JSON in bytes (every byte is a token). */
  private readonly callMin: number;

  constructor(
    private readonly vocab: ConstraintVocabulary,
    /** A fresh matcher of the call's JSON schema, one per call. */
    private readonly makeCall: () => ConstraintMatcher,
    private readonly mode: 'auto' | 'required',
    private readonly tag: string,
    /** Calls one reply may hold: 1 for `parallel_tool_calls: false`. */
    private readonly maxCalls = 1,
  ) {
    this.texts = tokenTexts(vocab);
    this.next = CALL_SEPARATOR + tag;
    this.callMin = makeCall().minTokensToComplete();
  }

  /** Whether the reply became a call (so far). */
  get isCall(): boolean {
    return this.state === 'call' || this.state === 'between';
  }

  fillMask(mask: Uint32Array, budget?: number): void {
    if (this.state === 'call') return this.call!.fillMask(mask, budget);
    if (this.state === 'text') {
      mask.fill(0xffffffff);
      return;
    }
    mask.fill(0);
    if (this.state === 'between') return this.fillBetween(mask, budget);
    const tag = this.tag;
    const required = this.mode === 'required';
    for (let id = 0; id < this.texts.length; id++) {
      const piece = this.texts[id];
      if (piece === null || piece === undefined) {
        // Tokens without text (EOS, controls) may end or pass an `auto` reply, never a required call.
        if (!required) mask[id >>> 5]! |= 1 << (id & 31);
        continue;
      }
      const q = (this.prefix + piece).trimStart();
      const onTag = tag.startsWith(q);
      const pastTag = !onTag && q.startsWith(tag);
      if (onTag || (!required && !pastTag)) mask[id >>> 5]! |= 1 << (id & 31);
    }
    if (!required && this.vocab.eosId >= 0) mask[this.vocab.eosId >>> 5]! |= 1 << (this.vocab.eosId & 31);
  }

  /** After a call: EOS, or a piece that continues separator + tag without running past it. */
  private fillBetween(mask: Uint32Array, budget: number | undefined): void {
    const eos = this.vocab.eosId;
    // Only when the rest of separator + tag and a shortest call still fit in the tokens left.
    const needed = this.next.length - this.prefix.length + this.callMin;
    if (this.prefix === '' && eos >= 0) mask[eos >>> 5]! |= 1 << (eos & 31);
    if (budget !== undefined && budget < needed) return;
    for (let id = 0; id < this.texts.length; id++) {
      const piece = this.texts[id];
      if (!piece) continue;
      if (this.next.startsWith(this.prefix + piece)) mask[id >>> 5]! |= 1 << (id & 31);
    }
  }

  accept(tokenId: number): void {
    if (this.state === 'call') {
      const call = this.call!;
      call.accept(tokenId);
      if (call.isComplete() && !call.canContinue() && ++this.calls < this.maxCalls) {
        this.state = 'between';
        this.prefix = '';
      }
      return;
    }
    if (this.state === 'text') return;
    const piece = this.texts[tokenId] ?? '';
    if (this.state === 'between') {
      const q = this.prefix + piece;
      if (piece === '' || !this.next.startsWith(q)) throw new ConstraintError(`token ${tokenId} (${JSON.stringify(piece)}) cannot follow a tool call (only ${JSON.stringify(this.next)} or the end)`);
      if (q === this.next) this.startCall();
      else this.prefix = q;
      return;
    }
    const q = (this.prefix + piece).trimStart();
    if (q === this.tag) this.startCall();
    else if (this.tag.startsWith(q)) this.prefix += piece;
    else this.state = 'text';
  }

  private startCall(): void {
    this.state = 'call';
    this.prefix = '';
    this.call = this.makeCall();
  }

  isComplete(): boolean {
    if (this.state === 'call') return this.call!.isComplete();
    if (this.state === 'between') return this.prefix === '';
    return this.mode === 'auto';
  }

  canContinue(): boolean {
    return this.state === 'call' ? this.call!.canContinue() : true;
  }
}

/** What the reply text turned out to be, piece by piece. */
export type ToolCallEvent =
  | { readonly kind: 'content'; readonly text: string }
  /** Call `index` (0, 1, … in the reply) begins: its name is known (its arguments follow as `arguments` events). */
  | { readonly kind: 'call'; readonly index: number; readonly name: string }
  | { readonly kind: 'arguments'; readonly index: number; readonly text: string };

/** A call read from a reply: the arguments as the JSON text the model wrote. */
export interface ParsedToolCall {
  readonly name: string;
  arguments: string;
}

const HEADER = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*/;

/**
 * Where a JSON value ends in text, fed piece by piece: strings (with escapes), nesting depth, and
 * for a bare literal the first delimiter. `push` returns the offset just past the value, or -1.
 */
class JsonEnd {
  private started = false;
  private depth = 0;
  private inString = false;
  private escaped = false;
  private bare = false;

  /** `depth` 1: the end of an object whose opening brace has already been read. */
  constructor(depth = 0) {
    this.depth = depth;
    this.started = depth > 0;
  }

  push(text: string): number {
    for (let i = 0; i < text.length; i++) {
      const c = text[i]!;
      if (this.inString) {
        if (this.escaped) this.escaped = false;
        else if (c === '\\') this.escaped = true;
        else if (c === '"') {
          this.inString = false;
          if (this.depth === 0) return i + 1;
        }
        continue;
      }
      if (this.bare) {
        if (/[\s,}\]]/.test(c)) return i;
        continue;
      }
      if (!this.started) {
        if (/\s/.test(c)) continue;
        this.started = true;
        if (c === '"') this.inString = true;
        else if (c === '{' || c === '[') this.depth = 1;
        else this.bare = true;
        continue;
      }
      if (c === '"') this.inString = true;
      else if (c === '{' || c === '[') this.depth++;
      else if ((c === '}' || c === ']') && --this.depth === 0) return i + 1;
    }
    return -1;
  }
}

/** `</tool_call>` for `<tool_call>`: the closer Hermes-style templates write after a call, accepted when a model writes it. */
function closerOf(tag: string): string | undefined {
  const m = /^<([^<>\s/]+)>$/.exec(tag);
  return m ? `</${m[1]!}>` : undefined;
}

/**
 * Reply text → content, or calls. Text is held while it could still be the tag; a call's name is
 * reported once `"arguments":` has been read, then its arguments as they arrive (exactly the
 * arguments value: where it ends is tracked, so the call object's closing brace is never part of
 * them). After a call: whitespace, optionally the tag's closer (`</tool_call>`), then the tag of
 * the next call or the end.
 */
/** undecided → text, or call (the header) → args (the value) → close (the call object's brace) → after → call … */
type ParserState = 'undecided' | 'text' | 'call' | 'args' | 'close' | 'after';

export class ToolCallParser {
  private state: ParserState = 'undecided';
  private buf = '';
  private end: JsonEnd | undefined;
  private readonly closer: string | undefined;
  /** The calls so far; the last one's arguments may still be growing. */
  readonly calls: ParsedToolCall[] = [];

  constructor(private readonly tag: string) {
    this.closer = closerOf(tag);
  }

  get isCall(): boolean {
    return this.calls.length > 0;
  }

  /** Every call so far has its closing brace (a reply cut by max_tokens mid-call has not). */
  get complete(): boolean {
    return this.calls.length > 0 && (this.state === 'after' || this.state === 'text');
  }

  push(text: string): ToolCallEvent[] {
    if (text === '') return [];
    if (this.state === 'text') return [{ kind: 'content', text }];
    this.buf += text;
    const out: ToolCallEvent[] = [];
    for (;;) {
      const before: ParserState = this.state;
      this.step(out);
      const now = this.state as ParserState;
      if (now === before || now === 'text') return out;
    }
  }

  /** Moves as far as the buffered text allows within the current state. */
  private step(out: ToolCallEvent[]): void {
    switch (this.state) {
      case 'undecided':
      case 'after': {
        const q = this.buf.trimStart();
        if (this.state === 'after' && this.closer !== undefined && q.startsWith(this.closer)) {
          this.buf = q.slice(this.closer.length);
          return this.step(out);
        }
        if (q.startsWith(this.tag)) {
          this.state = 'call';
          this.buf = q.slice(this.tag.length);
          return;
        }
        if (this.tag.startsWith(q) || (this.state === 'after' && this.closer?.startsWith(q))) return;
        // Not a call: the whole reply (or what follows the calls) is text.
        const all = this.state === 'after' ? q : this.buf;
        this.state = 'text';
        this.buf = '';
        if (all !== '') out.push({ kind: 'content', text: all });
        return;
      }
      case 'call': {
        const index = this.calls.length;
        const m = HEADER.exec(this.buf);
        if (m) {
          this.calls.push({ name: JSON.parse(`"${m[1]!}"`) as string, arguments: '' });
          out.push({ kind: 'call', index, name: this.calls[index]!.name });
          this.state = 'args';
          this.end = new JsonEnd();
          this.buf = this.buf.slice(m[0].length);
          return;
        }
        // Not "name" then "arguments": the object is read whole once it is complete.
        const stop = new JsonEnd().push(this.buf);
        if (stop < 0) return;
        try {
          const o = JSON.parse(this.buf.slice(0, stop)) as { name?: unknown; arguments?: unknown };
          if (typeof o.name === 'string') {
            const args = JSON.stringify(o.arguments ?? {});
            this.calls.push({ name: o.name, arguments: args });
            out.push({ kind: 'call', index, name: o.name }, { kind: 'arguments', index, text: args });
          }
        } catch {
          // not a call object: skipped
        }
        this.state = 'after';
        this.buf = this.buf.slice(stop);
        return;
      }
      case 'args': {
        const index = this.calls.length - 1;
        // Whitespace before the value (the header may have matched before it arrived) is not part of it.
        if (this.calls[index]!.arguments === '') this.buf = this.buf.trimStart();
        if (this.buf === '') return;
        const stop = this.end!.push(this.buf);
        const piece = stop < 0 ? this.buf : this.buf.slice(0, stop);
        this.buf = stop < 0 ? '' : this.buf.slice(stop);
        if (piece !== '') {
          this.calls[index]!.arguments += piece;
          out.push({ kind: 'arguments', index, text: piece });
        }
        if (stop >= 0) {
          this.state = 'close';
          this.end = new JsonEnd(1);
        }
        return;
      }
      case 'close': {
        const stop = this.end!.push(this.buf);
        if (stop < 0) {
          this.buf = '';
          return;
        }
        this.state = 'after';
        this.buf = this.buf.slice(stop);
        return;
      }
      case 'text':
        return;
    }
  }

  /** The reply ended: what is still held. A call's header that never parsed is parsed whole here. */
  finish(): ToolCallEvent[] {
    const out: ToolCallEvent[] = [];
    if (this.state === 'undecided') {
      this.state = 'text';
      if (this.buf !== '') out.push({ kind: 'content', text: this.buf });
    } else if (this.state === 'call') {
      // A call object cut before its end: complete only if it parses as it is.
      try {
        const o = JSON.parse(this.buf) as { name?: unknown; arguments?: unknown };
        if (typeof o.name === 'string') {
          const index = this.calls.length;
          const args = JSON.stringify(o.arguments ?? {});
          this.calls.push({ name: o.name, arguments: args });
          out.push({ kind: 'call', index, name: o.name }, { kind: 'arguments', index, text: args });
        }
      } catch {
        // not a complete call: left as it is
      }
    }
    this.buf = '';
    return out;
  }
}
