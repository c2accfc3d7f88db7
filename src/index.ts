/**
 * grok-ts: Grok-1 (and any model of its architecture) from TypeScript.
 *
 *   import { loadModel } from 'grok-ts';
 *   const lm = await loadModel('/models/grok-1/ckpt-0');   // or a .gguf, or nothing for the demo
 *   for await (const chunk of lm.stream('The answer is', { maxTokens: 32 })) process.stdout.write(chunk.text);
 *   await lm.close();
 */
export { loadModel, LanguageModel, ChatSession, type ChatOptions, type LoadOptions, type LoadProgress, type BackendName, type GenerationStream } from './language-model.js';
export type { GenerateOptions, GenerationChunk, GenerationResult, StopReason, TokenLogprob, Usage } from './generate/sequence.js';
export { SequenceState } from './generate/sequence.js';
export { Sampler, type SamplingOptions } from './generate/sampler.js';
export { CounterRng } from './generate/rng.js';
export { plainChatTemplate, CHAT_STOP, type ChatMessage, type ChatTemplate } from './generate/chat-template.js';
export { Tokenizer } from './tokenizer/sentencepiece.js';
export { GROK1, makeConfig, configFromJson, ffnSize, parameterCount, type GrokConfig } from './config.js';
export { GrokModel, type SequenceInput, type ForwardOptions } from './model/grok.js';
export { KvCache } from './model/kv-cache.js';
export { openModelFiles, DEMO_MODEL_DIR, type ModelFiles } from './model/load.js';
export type { GrokWeights, LayerWeights, ExpertWeights } from './model/weights.js';
export { openCheckpoint, type CheckpointStore } from './formats/xai-checkpoint.js';
export { jsKernels } from './backend/js/kernels.js';
export type { Kernels, AttentionArgs } from './backend/kernels.js';
export type { LinearWeight, LinearFormat } from './tensor/linear.js';
export type { TensorInfo, TensorStore, DType } from './tensor/tensor.js';
export * from './errors.js';
export { createServer, type GrokServer, type ServerOptions } from './server/index.js';
export { StreamingDecoder, type VocabularySpec } from './tokenizer/sentencepiece.js';
// What the CLI's convert and inspect commands use, public so that a library user can do the same.
export { inspectModel, type ModelReport, type TensorSummary } from './model/inspect.js';
export { convertToGguf, convertToGgufAsync, type ConvertOptions, type ConvertResult } from './convert/to-gguf.js';
export { QUANTIZE_TYPES, isQuantizeType, type QuantizeType } from './tensor/ggml-quantize.js';
export { BUNDLED_TOKENIZER_PATH, readTokenizerModel } from './tokenizer/sentencepiece.js';
export type { SentencePieceModel } from './tokenizer/sentencepiece-model.js';
export type { GgufMetadata } from './formats/gguf.js';
export type { GgufDescription } from './formats/gguf-split.js';
export { RemoteModel, RemoteChat, RemoteTokenizer, loadRemoteModel, isRemoteUrl, type RemoteLoadOptions, type RemoteUrl } from './remote/remote-model.js';
export { RemoteError, type RetryPolicy } from './remote/http.js';
export type { TextModel, TextChat, TextChatOptions, TextTokenizer } from './remote/text-model.js';
export { openSafetensorsStore, type SafetensorsStore } from './formats/safetensors.js';
export { convertToSafetensors, DEFAULT_SHARD_BYTES, type SafetensorsConvertOptions, type SafetensorsConvertResult } from './convert/to-safetensors.js';
export { HF_NAMINGS, type HfNaming } from './model/weights-safetensors.js';
