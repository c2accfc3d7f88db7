/**
 * The SentencePiece BPE tokenizer, id for id with the C++ library (sentencepiece 0.1.97 – 0.2.x)
 * for models with the identity normaliser, which is what Grok-1's tokenizer.model uses. This file
 * is the public face: loading (tokenizer.model, or plain arrays such as GGUF metadata) and the
 * encode / decode API. The work happens in the files a text flows through:
 *
 *   vocabulary.ts      piece tables and the checks the library makes when it loads a model
 *   normalizer.ts      dummy prefix, whitespace escaping, optional whitespace removal
 *   encoder.ts         segmentation and the segment cache (segment-cache.ts) around
 *   bpe.ts             the BPE merges by score (bpe_model.cc), and
 *   id-sink.ts         symbols → ids: byte fallback, unknown runs (PopulateSentencePieceText)
 *   decoder.ts         Decode's leading-space and UTF-8 rules, and the streaming decoder
 *   prefix-matcher.ts  user-defined symbols; spans.ts: ▁, code points, the span hash
 */
import { fileURLToPath } from 'node:url';
import { readRegularFile } from '../formats/tensor-file.js';
import { UnsupportedError, UsageError } from '../errors.js';
import { buildDecodeTable, StreamingDecoder, type DecodeTable } from './decoder.js';
import { Encoder } from './encoder.js';
import type { NormalizerFlags } from './normalizer.js';
import {
  ModelType,
  PieceType,
  TokenizerModelError,
  parseModelProto,
  type SentencePieceModel,
} from './sentencepiece-model.js';
import { buildVocabulary, type Vocabulary } from './vocabulary.js';

export { StreamingDecoder };

/** Grok-1's tokenizer.model (131072 pieces) is 2.2 MB; a file far larger is not one. */
export const MAX_TOKENIZER_FILE_BYTES = 64 << 20;

/** The tokenizer that ships with the package (xai-org/grok-1, Apache-2.0; see NOTICE). */
export const BUNDLED_TOKENIZER_PATH = fileURLToPath(new URL('../../../assets/tokenizer.model', import.meta.url));

/**
 * Reads and parses a tokenizer.model file (a SentencePiece ModelProto) without building a
 * tokenizer: its pieces, scores, types and specs, e.g. to embed in a GGUF. Without a path, the
 * bundled Grok-1 tokenizer. Errors: FileAccessError (missing, unreadable, not a regular file),
 * FormatError (too large for a tokenizer), TokenizerModelError (not a valid ModelProto).
 */
export function readTokenizerModel(path: string = BUNDLED_TOKENIZER_PATH): SentencePieceModel {
  return parseModelProto(readRegularFile(path, MAX_TOKENIZER_FILE_BYTES, 'a readable tokenizer.model file'), path);
}

/**
 * A vocabulary given as plain arrays, e.g. from GGUF metadata: `tokenizer.ggml.tokens` → pieces,
 * `tokenizer.ggml.scores` → scores, `tokenizer.ggml.token_type` → types (the GGUF numbers are
 * SentencePiece's PieceType numbers). With the defaults below, Grok-1's GGUF vocabulary encodes
 * exactly as its tokenizer.model does; pass `unkSurface: '[UNK]'` to also decode id 3 the same way
 * (GGUF does not store the unknown surface).
 */
export interface VocabularySpec {
  readonly pieces: readonly string[];
  /** Merge priority of each piece (higher merges first). Default 0 for all. */
  readonly scores?: ArrayLike<number>;
  /** PieceType of each piece (1 NORMAL … 6 BYTE). Default NORMAL for all. */
  readonly types?: ArrayLike<number>;
  /** Prepend ▁ to non-empty input (SentencePiece `add_dummy_prefix`, GGUF `add_space_prefix`). Default true. */
  readonly addDummyPrefix?: boolean;
  /** Drop leading/trailing spaces and collapse runs (`remove_extra_whitespaces`). Default false. */
  readonly removeExtraWhitespaces?: boolean;
  /** Write spaces as ▁ (`escape_whitespaces`). Default true. */
  readonly escapeWhitespaces?: boolean;
  /** Put the dummy ▁ at the end instead (`treat_whitespace_as_suffix`). Default false. */
  readonly treatWhitespaceAsSuffix?: boolean;
  /** Spell characters outside the vocabulary as byte pieces. Default: whether the vocabulary has BYTE pieces. */
  readonly byteFallback?: boolean;
  /** What decode prints for the unknown piece. Default " ⁇ " (the library's default). */
  readonly unkSurface?: string;
  /** Special ids; default: the id of `bosPiece` / `eosPiece` / `padPiece` when that piece is a CONTROL piece, else -1. */
  readonly bosId?: number;
  readonly eosId?: number;
  readonly padId?: number;
  readonly bosPiece?: string;
  readonly eosPiece?: string;
  readonly padPiece?: string;
  /** Names the source in error messages. */
  readonly name?: string;
}

export interface EncodeOptions {
  /** Prepend the BOS id (the official Grok-1 runner does not). */
  readonly addBos?: boolean;
  readonly addEos?: boolean;
}

interface TokenizerSettings extends NormalizerFlags {
  readonly byteFallback: boolean;
  readonly unkSurface: string;
  readonly bosId: number;
  readonly eosId: number;
  readonly padId: number;
}

/**
 * Grok-1's tokenizer (or any SentencePiece BPE model with the identity normaliser).
 *
 *   const tok = Tokenizer.fromFile();            // the bundled tokenizer.model
 *   tok.encode('Hello world')                    // [11770, 1135]
 *   tok.decode([11770, 1135])                    // 'Hello world'
 *   const d = tok.decoder(); d.push(id) … d.flush()   // streaming text deltas
 *
 * Build one from tokenizer.model bytes (fromFile, fromBytes, fromModel) or from plain arrays such
 * as GGUF metadata (fromVocab). Instances are not safe to share between threads (they reuse
 * scratch memory), but may be shared freely within one.
 */
export class Tokenizer {
  /** Where the vocabulary came from (a path, or the name given to fromBytes/fromVocab). */
  readonly source: string;
  private readonly v: Vocabulary;
  private readonly settings: TokenizerSettings;
  private readonly encoder: Encoder;
  private decodeTable: DecodeTable | undefined;

  private constructor(source: string, v: Vocabulary, settings: TokenizerSettings, userDefined: readonly string[]) {
    this.source = source;
    this.v = v;
    this.settings = settings;
    this.encoder = new Encoder(v, settings, settings.byteFallback, userDefined);
  }

  /** Loads a tokenizer.model file; without a path, the bundled Grok-1 tokenizer. */
  static fromFile(path: string = BUNDLED_TOKENIZER_PATH): Tokenizer {
    return Tokenizer.fromModel(readTokenizerModel(path), path);
  }

  /** Parses the bytes of a tokenizer.model (a SentencePiece ModelProto). */
  static fromBytes(bytes: Uint8Array, name = 'tokenizer.model'): Tokenizer {
    return Tokenizer.fromModel(parseModelProto(bytes, name), name);
  }

  static fromModel(model: SentencePieceModel, name = 'tokenizer.model'): Tokenizer {
    const { trainer, normalizer } = model;
    if (trainer.modelType !== ModelType.BPE) {
      const names: Record<number, string> = { 1: 'UNIGRAM', 2: 'BPE', 3: 'WORD', 4: 'CHAR' };
      throw new UnsupportedError(
        'trainer_spec.model_type',
        `${name}: trainer_spec.model_type is ${names[trainer.modelType] ?? trainer.modelType}; only BPE models are supported`,
      );
    }
    for (const [field, spec] of [['normalizer_spec', normalizer], ['denormalizer_spec', model.denormalizer]] as const) {
      if (spec && spec.precompiledCharsmap.length > 0) {
        throw new UnsupportedError(
          `${field}.precompiled_charsmap`,
          `${name}: ${field}.precompiled_charsmap holds a normalisation map (${spec.name || 'unnamed'}); only the identity normaliser is supported`,
        );
      }
    }
    const v = buildVocabulary(model.pieces, model.scores, model.types, trainer.byteFallback, name);
    const userDefined = model.pieces.filter((_, id) => model.types[id] === PieceType.USER_DEFINED);
    const controlId = (piece: string): number => {
      const id = v.reserved.get(piece) ?? v.mergeable.get(piece) ?? v.unkId;
      return v.types[id] === PieceType.CONTROL ? id : -1;
    };
    const settings: TokenizerSettings = {
      addDummyPrefix: normalizer.addDummyPrefix,
      removeExtraWhitespaces: normalizer.removeExtraWhitespaces,
      escapeWhitespaces: normalizer.escapeWhitespaces,
      treatWhitespaceAsSuffix: trainer.treatWhitespaceAsSuffix,
      byteFallback: trainer.byteFallback,
      unkSurface: trainer.unkSurface,
      bosId: controlId(trainer.bosPiece),
      eosId: controlId(trainer.eosPiece),
      padId: controlId(trainer.padPiece),
    };
    return new Tokenizer(name, v, settings, userDefined);
  }

  /**
   * Builds a tokenizer from plain arrays, e.g. GGUF's `tokenizer.ggml.tokens` / `scores` /
   * `token_type`. See VocabularySpec for the defaults; they reproduce Grok-1's tokenizer.model.
   */
  static fromVocab(spec: VocabularySpec): Tokenizer {
    const name = spec.name ?? 'vocabulary';
    const size = spec.pieces.length;
    const field: (f: string, expected: string, found: string) => never = (f, expected, found) => {
      throw new TokenizerModelError({ file: name, field: f, expected, found });
    };
    if (size === 0) field('pieces', 'at least one piece', 'none');
    if (spec.scores && spec.scores.length !== size) field('scores', `${size} scores, one per piece`, String(spec.scores.length));
    if (spec.types && spec.types.length !== size) field('types', `${size} types, one per piece`, String(spec.types.length));
    const scores = new Float32Array(size);
    const types = new Uint8Array(size).fill(PieceType.NORMAL);
    for (let id = 0; id < size; id++) {
      if (typeof spec.pieces[id] !== 'string') field(`pieces[${id}]`, 'a string', typeof spec.pieces[id]);
      if (spec.scores) {
        const s = spec.scores[id]!;
        if (typeof s !== 'number' || Number.isNaN(s)) field(`scores[${id}]`, 'a number', String(s));
        scores[id] = s;
      }
      if (spec.types) {
        const t = spec.types[id]!;
        if (!Number.isInteger(t) || t < PieceType.NORMAL || t > PieceType.BYTE) field(`types[${id}]`, 'a piece type 1..6', String(t));
        types[id] = t;
      }
    }
    const byteFallback = spec.byteFallback ?? types.includes(PieceType.BYTE);
    const v = buildVocabulary(spec.pieces, scores, types, byteFallback, name);
    const userDefined = spec.pieces.filter((_, id) => types[id] === PieceType.USER_DEFINED);
    const special = (f: string, explicit: number | undefined, piece: string): number => {
      if (explicit === undefined) {
        const id = v.reserved.get(piece) ?? v.mergeable.get(piece) ?? v.unkId;
        return v.types[id] === PieceType.CONTROL ? id : -1;
      }
      if (!Number.isInteger(explicit) || explicit < -1 || explicit >= size) field(f, `-1 or an id below ${size}`, String(explicit));
      return explicit;
    };
    const settings: TokenizerSettings = {
      addDummyPrefix: spec.addDummyPrefix ?? true,
      removeExtraWhitespaces: spec.removeExtraWhitespaces ?? false,
      escapeWhitespaces: spec.escapeWhitespaces ?? true,
      treatWhitespaceAsSuffix: spec.treatWhitespaceAsSuffix ?? false,
      byteFallback,
      unkSurface: spec.unkSurface ?? ' \u2047 ',
      bosId: special('bosId', spec.bosId, spec.bosPiece ?? '<s>'),
      eosId: special('eosId', spec.eosId, spec.eosPiece ?? '</s>'),
      padId: special('padId', spec.padId, spec.padPiece ?? '<pad>'),
    };
    return new Tokenizer(name, v, settings, userDefined);
  }

  get vocabSize(): number {
    return this.v.pieces.length;
  }
  /** -1 when the model has none (as the library reports it). */
  get bosId(): number {
    return this.settings.bosId;
  }
  get eosId(): number {
    return this.settings.eosId;
  }
  get padId(): number {
    return this.settings.padId;
  }
  get unkId(): number {
    return this.v.unkId;
  }

  idToPiece(id: number): string {
    this.checkId(id);
    return this.v.pieces[id]!;
  }

  /** The id of a piece; the unknown id for text that is not a piece (as the library does). */
  pieceToId(piece: string): number {
    return this.v.reserved.get(piece) ?? this.v.mergeable.get(piece) ?? this.v.unkId;
  }

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const ids: number[] = [];
    if (opts.addBos) ids.push(this.special('bos', this.settings.bosId));
    this.encoder.encode(text, ids, undefined);
    if (opts.addEos) ids.push(this.special('eos', this.settings.eosId));
    return ids;
  }

  /** The pieces `encode` picks, as the library's `encode(out_type=str)` spells them. */
  encodeAsPieces(text: string): string[] {
    const pieces: string[] = [];
    this.encoder.encode(text, [], pieces);
    return pieces;
  }

  decode(ids: readonly number[]): string {
    const d = this.decoder();
    let out = '';
    for (let i = 0; i < ids.length; i++) out += d.push(ids[i]!);
    return out + d.flush();
  }

  /** A fresh streaming decoder (one per sequence); see StreamingDecoder for `continuation`. */
  decoder(opts: { continuation?: boolean } = {}): StreamingDecoder {
    this.decodeTable ??= buildDecodeTable(this.v, this.settings.unkSurface, this.settings);
    return new StreamingDecoder(this.decodeTable, this.v.pieces.length, opts.continuation ?? false);
  }

  private special(what: string, id: number): number {
    if (id < 0) throw new UsageError(`${this.source} defines no ${what.toUpperCase()} piece`, `add${what[0]!.toUpperCase()}${what.slice(1)}`);
    return id;
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.v.pieces.length) {
      throw new UsageError(`token id ${id} is out of range: this vocabulary has ids 0..${this.v.pieces.length - 1}`, 'id');
    }
  }
}
