/** The SentencePiece tokenizer: `Tokenizer` and the tokenizer.model reader it is built on. */
export { BUNDLED_TOKENIZER_PATH, readTokenizerModel, StreamingDecoder, Tokenizer, type EncodeOptions, type VocabularySpec } from './sentencepiece.js';
export {
  ModelType,
  PieceType,
  TokenizerModelError,
  parseModelProto,
  type NormalizerSpec,
  type PieceTypeValue,
  type SentencePieceModel,
  type TrainerSpec,
} from './sentencepiece-model.js';
