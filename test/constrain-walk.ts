/**
 * Seeded random walks under a constraint with the real Grok-1 vocabulary (assets/tokenizer.model):
 * at each step pick uniformly among the tokens the mask allows, until EOS is picked or the
 * constraint cannot continue. The `budget` (tokens left) makes the mask steer to a complete
 * output before `maxTokens`, as the engine does with max_tokens.
 */
import assert from 'node:assert/strict';
import { compileConstraint, vocabularyFromTokenizer, type CompiledConstraint, type ConstraintSpec, type ConstraintVocabulary } from '../src/constrain/index.js';
import { countAllowed, nthAllowed as nthAllowedOrNone } from '../src/constrain/token-mask.js';
import { Tokenizer } from '../src/tokenizer/index.js';

let tokenizer: Tokenizer | undefined;
export function grokTokenizer(): Tokenizer {
  return (tokenizer ??= Tokenizer.fromFile());
}
export function grokVocabulary(): ConstraintVocabulary {
  return vocabularyFromTokenizer(grokTokenizer());
}

/** xorshift32: small, seeded, the same on every platform. */
export function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x100000000;
  };
}

/** The id of the r-th allowed token (0-based). */
function nthAllowed(mask: Uint32Array, r: number): number {
  const id = nthAllowedOrNone(mask, r);
  if (id < 0) throw new RangeError('fewer set bits than asked for');
  return id;
}

const isSet = (mask: Uint32Array, id: number): boolean => (mask[id >>> 5]! & (1 << (id & 31))) !== 0;

export interface Walk {
  readonly text: string;
  readonly ids: number[];
  readonly complete: boolean;
  readonly endedBy: 'eos' | 'no-continuation' | 'max-tokens';
}

/**
 * One walk. `probe`: at each step also accept up to that many allowed tokens on clones (none may
 * throw) and check that as many disallowed ones do throw.
 */
export function randomWalk(compiled: CompiledConstraint, seed: number, maxTokens: number, probe = 0): Walk {
  const tok = grokTokenizer();
  const vocab = compiled.vocab;
  const random = rng(seed);
  const m = compiled.matcher();
  const mask = new Uint32Array(compiled.maskWords);
  const full = new Uint32Array(compiled.maskWords);
  const ids: number[] = [];
  let endedBy: Walk['endedBy'] = 'max-tokens';
  for (let step = 0; step < maxTokens; step++) {
    m.fillMask(mask, maxTokens - step);
    const count = countAllowed(mask);
    assert.ok(count > 0, `no token allowed after ${JSON.stringify(tok.decode(ids))}`);
    assert.equal(isSet(mask, vocab.eosId), m.isComplete(), 'the EOS bit must be set exactly when the text is complete');
    // The budget may drop tokens that still fit the language: those need not throw.
    if (probe) m.fillMask(full);
    for (let i = 0; i < probe; i++) {
      const id = nthAllowed(mask, Math.floor(random() * count));
      if (id === vocab.eosId) continue;
      m.clone().accept(id);
      const other = Math.floor(random() * vocab.size);
      if (!isSet(full, other)) assert.throws(() => m.clone().accept(other), { name: 'ConstraintError' });
    }
    const id = nthAllowed(mask, Math.floor(random() * count));
    if (id === vocab.eosId) {
      m.accept(id);
      endedBy = 'eos';
      break;
    }
    m.accept(id);
    ids.push(id);
    if (!m.canContinue()) {
      endedBy = 'no-continuation';
      break;
    }
  }
  const d = tok.decoder({ continuation: true });
  let text = '';
  for (const id of ids) text += d.push(id);
  text += d.flush();
  return { text, ids, complete: endedBy === 'eos' || m.isComplete(), endedBy };
}

export function compile(spec: ConstraintSpec): CompiledConstraint {
  return compileConstraint(spec, grokVocabulary());
}

/** Whether a whole text is in the constraint's language (fed as text, not tokens). */
export function accepts(compiled: CompiledConstraint, text: string): boolean {
  const m = compiled.matcher();
  try {
    m.acceptText(text);
  } catch {
    return false;
  }
  return m.isComplete();
}
