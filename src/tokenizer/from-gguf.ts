/**
 * The tokenizer a GGUF carries in its `tokenizer.ggml.*` metadata (model "llama" = SentencePiece:
 * tokens, scores, token_type, special ids), and the reverse: those keys for a tokenizer.model, as
 * `convert` writes them. GGUF token types use SentencePiece's PieceType numbers (1 NORMAL,
 * 2 UNKNOWN, 3 CONTROL, 4 USER_DEFINED, 5 UNUSED, 6 BYTE), so they pass through unchanged.
 */
import { FormatError, UnsupportedError } from '../errors.js';
import type { GgufMetadata } from '../formats/gguf.js';
import type { GgufKv } from '../formats/gguf-writer.js';
import { kv } from '../formats/gguf-writer.js';
import { PieceType, type SentencePieceModel } from './sentencepiece-model.js';
import { Tokenizer } from './sentencepiece.js';

/** Builds the Tokenizer described by a GGUF's metadata; `file` names it in errors. */
export function tokenizerFromGguf(metadata: GgufMetadata, file: string = metadata.file): Tokenizer {
  const model = metadata.string('tokenizer.ggml.model');
  if (model !== 'llama') {
    throw new UnsupportedError(
      `tokenizer ${model ?? '(none)'}`,
      `${file}: tokenizer.ggml.model is ${model === undefined ? 'missing' : `"${model}"`}; only "llama" (SentencePiece, Grok-1's tokenizer) is supported`,
    );
  }
  const pieces = metadata.stringArray('tokenizer.ggml.tokens');
  if (!pieces) throw new FormatError({ file, expected: 'metadata tokenizer.ggml.tokens', found: 'none' });
  const scores = metadata.numberArray('tokenizer.ggml.scores');
  const types = metadata.numberArray('tokenizer.ggml.token_type');
  const id = (key: string) => metadata.integer(`tokenizer.ggml.${key}`);
  const unkId = id('unknown_token_id') ?? (types ? Array.prototype.indexOf.call(types, PieceType.UNKNOWN) : -1);
  return Tokenizer.fromVocab({
    name: file,
    pieces,
    ...(scores ? { scores } : {}),
    ...(types ? { types } : {}),
    addDummyPrefix: metadata.bool('tokenizer.ggml.add_space_prefix') ?? true,
    removeExtraWhitespaces: metadata.bool('tokenizer.ggml.remove_extra_whitespaces') ?? false,
    // GGUF does not store SentencePiece's unk_surface; Grok-1's tokenizer.model uses its unknown
    // piece's own text ("[UNK]"), so decode prints that.
    ...(unkId >= 0 && unkId < pieces.length ? { unkSurface: pieces[unkId]! } : {}),
    ...optional('bosId', id('bos_token_id')),
    ...optional('eosId', id('eos_token_id')),
    ...optional('padId', id('padding_token_id')),
  });
}

function optional<K extends string>(key: K, value: number | undefined): Partial<Record<K, number>> {
  return value === undefined ? {} : ({ [key]: value } as Record<K, number>);
}

function specialIds(pieces: readonly string[], types: ArrayLike<number>, named: Record<'bos' | 'eos' | 'unk' | 'pad', string>): GgufKv[] {
  const out: GgufKv[] = [];
  const keys = { bos: 'bos_token_id', eos: 'eos_token_id', unk: 'unknown_token_id', pad: 'padding_token_id' } as const;
  for (const role of ['bos', 'eos', 'unk', 'pad'] as const) {
    const id = pieces.indexOf(named[role]);
    const wanted = role === 'unk' ? PieceType.UNKNOWN : PieceType.CONTROL;
    if (id >= 0 && types[id] === wanted) out.push(kv.u32(`tokenizer.ggml.${keys[role]}`, id));
  }
  return out;
}

/** tokenizer.ggml.* for a SentencePiece model (the Grok-1 tokenizer.model), as llama.cpp reads them. */
export function ggufTokenizerKvs(model: SentencePieceModel): GgufKv[] {
  const t = model.trainer;
  return [
    kv.string('tokenizer.ggml.model', 'llama'),
    kv.strings('tokenizer.ggml.tokens', model.pieces),
    kv.f32s('tokenizer.ggml.scores', Float32Array.from(model.scores)),
    kv.i32s('tokenizer.ggml.token_type', Int32Array.from(model.types)),
    ...specialIds(model.pieces, model.types, { bos: t.bosPiece, eos: t.eosPiece, unk: t.unkPiece, pad: t.padPiece }),
    // The official runner adds neither (docs/REFERENCE.md §6).
    kv.bool('tokenizer.ggml.add_bos_token', false),
    kv.bool('tokenizer.ggml.add_eos_token', false),
    kv.bool('tokenizer.ggml.add_space_prefix', model.normalizer.addDummyPrefix),
  ];
}

/**
 * A placeholder vocabulary for models whose vocabulary is not the tokenizer's (the test fixtures:
 * 1024 ids). It follows the fixtures' GGUFs: [PAD] [BOS] [EOS] [UNK] as ids 0-3, then `▁t<i>`,
 * score −i, so llama.cpp can load the file; the text it produces means nothing.
 */
export function syntheticTokenizerKvs(vocabSize: number): GgufKv[] {
  const special = ['[PAD]', '[BOS]', '[EOS]', '[UNK]'];
  const pieces = Array.from({ length: vocabSize }, (_, i) => special[i] ?? `\u2581t${i}`);
  const types = Int32Array.from(pieces, (_, i) => (i === 3 ? PieceType.UNKNOWN : i < 3 ? PieceType.CONTROL : PieceType.NORMAL));
  return [
    kv.string('tokenizer.ggml.model', 'llama'),
    kv.strings('tokenizer.ggml.tokens', pieces),
    kv.f32s('tokenizer.ggml.scores', Float32Array.from(pieces, (_, i) => -i)),
    kv.i32s('tokenizer.ggml.token_type', types),
    ...specialIds(pieces, types, { bos: '[BOS]', eos: '[EOS]', unk: '[UNK]', pad: '[PAD]' }),
    kv.bool('tokenizer.ggml.add_bos_token', false),
    kv.bool('tokenizer.ggml.add_eos_token', false),
  ];
}
