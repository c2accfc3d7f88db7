/**
 * Tool calls under the chat template's convention (chat-template.ts): a reply that is a call is the
 * tag (`<tool_call>`) and then one JSON object `{"name": …, "arguments": {…}}`.
 *
 * - `toolCallSchema`: the JSON Schema of that object for the tools allowed (the name a `const`, the
 *   arguments the tool's parameter schema), which the JSON-schema constraint enforces.
 * - `ToolCallConstraint`: the constraint of a reply with tools. With `required` (or a named
 *   function), from the first token: only tokens that spell the tag, then the call's schema. With
 *   `auto`, the model chooses: as long as the reply (after leading whitespace) is a prefix of the
 *   tag, only tokens that keep it one or that leave the tag for ordinary text are allowed (never one
 *   that runs past the tag's end, so the call starts on a token boundary); once the tag is complete
 *   the call's schema takes over; once the text has left the tag, nothing is constrained.
 * - `ToolCallParser`: reply text (streamed or whole) → text content, or a call's name and its
 *   arguments as they arrive, the way OpenAI streams them.
 */
import { randomBytes } from 'node:crypto';
import type { ConstraintVocabulary } from '../constrain/index.js';
import type { SequenceConstraint } from './sequence.js';
import type { ToolSpec } from './chat-template.js';

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
  private state: 'undecided' | 'text' | 'call' = 'undecided';
  /** The reply so far while undecided: whitespace and a prefix of the tag. */
  private prefix = '';
  private readonly texts: (string | null)[];

  constructor(
    private readonly vocab: ConstraintVocabulary,
    /** A fresh matcher of the call's JSON schema. */
    private readonly call: SequenceConstraint,
    private readonly mode: 'auto' | 'required',
    private readonly tag: string,
  ) {
    this.texts = tokenTexts(vocab);
  }

  /** Whether the reply became a call (so far). */
  get isCall(): boolean {
    return this.state === 'call';
  }

  fillMask(mask: Uint32Array, budget?: number): void {
    if (this.state === 'call') return this.call.fillMask(mask, budget);
    if (this.state === 'text') {
      mask.fill(0xffffffff);
      return;
    }
    mask.fill(0);
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

  accept(tokenId: number): void {
    if (this.state === 'call') return this.call.accept(tokenId);
    if (this.state === 'text') return;
    const piece = this.texts[tokenId] ?? '';
    const q = (this.prefix + piece).trimStart();
    if (q === this.tag) this.state = 'call';
    else if (this.tag.startsWith(q)) this.prefix += piece;
    else this.state = 'text';
  }

  isComplete(): boolean {
    if (this.state === 'call') return this.call.isComplete();
    return this.mode === 'auto';
  }

  canContinue(): boolean {
    return this.state === 'call' ? this.call.canContinue() : true;
  }
}

/** What the reply text turned out to be, piece by piece. */
export type ToolCallEvent =
  | { readonly kind: 'content'; readonly text: string }
  /** A call begins: its name is known (its arguments follow as `arguments` events). */
  | { readonly kind: 'call'; readonly name: string }
  | { readonly kind: 'arguments'; readonly text: string };

const HEADER = /^\s*\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"arguments"\s*:\s*/;

/**
 * Reply text → content or one call. Text is held while it could still be the tag; a call's name is
 * reported once `"arguments":` has been read, then its arguments as they arrive, less the call
 * object's closing brace (held back until the end, as any trailing braces and whitespace are).
 */
export class ToolCallParser {
  private state: 'undecided' | 'text' | 'call' | 'args' = 'undecided';
  private buf = '';
  /** Arguments text received but not yet given out (it may be the call's own closing brace). */
  private held = '';
  name: string | undefined;
  /** The arguments text given out so far. */
  argumentsText = '';

  constructor(private readonly tag: string) {}

  get isCall(): boolean {
    return this.state === 'call' || this.state === 'args';
  }

  push(text: string): ToolCallEvent[] {
    if (text === '') return [];
    if (this.state === 'text') return [{ kind: 'content', text }];
    this.buf += text;
    if (this.state === 'undecided') {
      const q = this.buf.trimStart();
      if (this.tag.startsWith(q)) return [];
      if (!q.startsWith(this.tag)) {
        this.state = 'text';
        const all = this.buf;
        this.buf = '';
        return [{ kind: 'content', text: all }];
      }
      this.state = 'call';
      this.buf = q.slice(this.tag.length);
    }
    if (this.state === 'call') {
      const m = HEADER.exec(this.buf);
      if (!m) return [];
      this.name = JSON.parse(`"${m[1]!}"`) as string;
      this.state = 'args';
      const rest = this.buf.slice(m[0].length);
      this.buf = '';
      return [{ kind: 'call', name: this.name }, ...this.args(rest)];
    }
    const rest = this.buf;
    this.buf = '';
    return this.args(rest);
  }

  /** The reply ended: what is still held. A call whose header never parsed is parsed whole here. */
  finish(): ToolCallEvent[] {
    if (this.state === 'undecided') {
      this.state = 'text';
      return this.buf === '' ? [] : [{ kind: 'content', text: this.buf }];
    }
    if (this.state === 'call') {
      // The object did not start with "name" then "arguments": read it whole.
      try {
        const o = JSON.parse(this.buf) as { name?: unknown; arguments?: unknown };
        if (typeof o.name === 'string') {
          this.name = o.name;
          this.state = 'args';
          this.argumentsText = JSON.stringify(o.arguments ?? {});
          return [{ kind: 'call', name: o.name }, { kind: 'arguments', text: this.argumentsText }];
        }
      } catch {
        // not a complete call: left as it is
      }
      return [];
    }
    if (this.state === 'args') {
      const tail = this.held.replace(/\}\s*$/, '').replace(/\s+$/, '');
      this.held = '';
      if (tail === '') return [];
      this.argumentsText += tail;
      return [{ kind: 'arguments', text: tail }];
    }
    return [];
  }

  private args(text: string): ToolCallEvent[] {
    const all = this.held + text;
    const keep = /[\s}]*$/.exec(all)![0].length;
    const out = all.slice(0, all.length - keep);
    this.held = all.slice(all.length - keep);
    if (out === '') return [];
    this.argumentsText += out;
    return [{ kind: 'arguments', text: out }];
  }
}
