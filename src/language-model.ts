/**
 * The library's entry point: `const lm = await loadModel(path)`, then `lm.generate(prompt)`,
 * `lm.stream(prompt)`, `lm.chat()`, `lm.tokenizer`, `lm.close()`. Generation, the CLI and the server
 * all run through this one object.
 */
import * as fs from 'node:fs';
import type { Kernels } from './backend/kernels.js';
import { jsKernels } from './backend/js/kernels.js';
import { createWasmKernels, wasmAvailable, type WasmKernels } from './backend/wasm/index.js';
import type { EvictionPolicy, ExpertCache, ExpertCacheStats } from './backend/wasm/expert-cache.js';
import { DEFAULT_EXPERT_READERS } from './backend/wasm/expert-reader.js';
import { weightFile } from './backend/wasm/file-identity.js';
import { expertGroups, parseByteSize, planResidency, setExpertHooks, StreamingHooks, type ResidencyPlan, type StreamingOptions } from './model/residency.js';
import type { GrokConfig } from './config.js';
import { ContextLengthError, throwIfAborted, UnsupportedError, UsageError } from './errors.js';
import { LIBRARY_LIMITS, Scheduler, type SchedulerLane, type SchedulerLimits } from './generate/scheduler.js';
import { sequenceStream, type GenerationStream } from './generate/sequence-stream.js';
import { compileFor, constraintSpec } from './generate/constraint-options.js';
import {
  DEFAULT_MAX_TOKENS,
  fitPrompt,
  SequenceState,
  validateGenerateOptions,
  type SequenceConstraint,
  type GenerateOptions,
  type GenerationResult,
} from './generate/sequence.js';
import { CHAT_STOP, userTurnText } from './generate/chat-template.js';
import { GrokModel } from './model/grok.js';
import type { KvCache } from './model/kv-cache.js';
import { DEMO_MODEL_DIR, openModelFiles, type ModelFiles } from './model/load.js';
import { tokenizerFromGguf } from './tokenizer/from-gguf.js';
import { Tokenizer } from './tokenizer/sentencepiece.js';
import { isRemoteUrl, loadRemoteModel, type RemoteLoadOptions, type RemoteModel, type RemoteUrl } from './remote/remote-model.js';
import type { TextModel } from './remote/text-model.js';

export type BackendName = 'js' | 'wasm' | 'auto';

export interface LoadProgress {
  readonly loadedBytes: number;
  readonly totalBytes: number;
  /** The weight just read. */
  readonly tensor: string;
}

export interface LoadOptions {
  /** `auto` (default): the WebAssembly SIMD backend where it runs, else plain TypeScript. */
  readonly backend?: BackendName;
  /** Worker threads for the wasm backend; default: the machine's cores. */
  readonly threads?: number;
  /** A tokenizer.model to use instead of the one in the file or the bundled one. */
  readonly tokenizer?: string;
  /** Read every weight now (default) instead of on first use; progress is reported per weight. */
  readonly preload?: boolean;
  readonly onProgress?: (p: LoadProgress) => void;
  /**
   * Limits of the library's lane of the scheduler (batch size, queue size, ...); by default the
   * server's batch and queue sizes, no queue timeout and no stall limit.
   */
  readonly scheduler?: Partial<SchedulerLimits>;
  /**
   * Resident weight bytes at most: a number, or a size such as '16G' (K/M/G/T = powers of 1024).
   * Non-expert weights stay resident and experts are streamed from the file through a cache of
   * the rest (wasm backend; the js backend then reads experts lazily). Default: everything
   * resident. Below the non-expert bytes plus one layer's top-K experts: a MemoryBudgetError
   * stating the minimum. A budget that holds every weight changes nothing.
   */
  readonly memoryBudget?: number | string;
  /**
   * Which cached expert a load evicts under a budget: 'lru', 'lfu' or 'decay'. Default: LRU when
   * the cache holds at least one token's experts (layers × top-K), else LFU: a forward pass visits
   * the layers in order, so a cache smaller than that is a cyclic scan for LRU, which then evicts
   * every expert just before its next use (0 % hits on uniform routing, where LFU keeps ≈ slots /
   * experts; bench/streaming.ts replays both).
   */
  readonly evictionPolicy?: EvictionPolicy;
  /** Reader threads for expert loads under a budget (default 8; 0 = read on the main thread). */
  readonly expertReaders?: number;
  /** Prefetch layer l+1's experts predicted through its router from layer l (default off: measured no gain on random routing). */
  readonly predictExperts?: boolean;
  /**
   * Read streamed Q8_0 experts with O_DIRECT, bypassing the page cache (where the file system
   * allows it; else buffered). Default on: on the 30 GB streaming bench, direct reads decoded
   * 1.5–2.2× faster than buffered ones at every budget (4, 8, 16 GiB), with no readahead past the
   * bytes a load needs and no second copy of what the expert cache holds.
   */
  readonly expertDirectReads?: boolean;
  /**
   * Read experts on first use (and in the background after load) instead of packing every weight
   * before the first token. Default: on the wasm backend when every expert lies in a plain file
   * (GGUF); the start then costs the non-expert weights only, whatever the model's size.
   */
  readonly lazyExperts?: boolean;
  /** @internal Called per MoE call with its layer and distinct experts (benchmark traces). */
  readonly onRoute?: StreamingOptions['onRoute'];
}

/** What a model holds resident and, under a budget, how its expert cache fares. */
export interface MemoryReport {
  readonly mode: 'resident' | 'stream';
  readonly budgetBytes: number | undefined;
  /** Weight bytes resident now (packed in wasm memory; on the js backend, the planned figure). */
  readonly residentBytes: number;
  readonly nonExpertBytes: number;
  readonly expertBytes: number;
  readonly experts: number;
  readonly slots: number;
  readonly minimumBytes: number;
  readonly totalBytes: number;
  readonly expertBytesPerToken: number;
  /** Under a budget on the wasm backend: the cache's counters and its hit rate (hits / uses). */
  readonly cache?: ExpertCacheStats & {
    readonly hitRate: number;
    readonly policy: EvictionPolicy;
    /** Slots that have memory so far (at most `slots`): the cache is warm once every slot has been filled. */
    readonly slotsUsed: number;
  };
  /** With predictExperts: experts predicted for the next layer, and how many of them it then used. */
  readonly prediction?: { readonly predicted: number; readonly used: number };
}

export type { GenerationStream };

/** `auto` prefers the wasm backend and falls back to js where WebAssembly SIMD is missing. */
async function makeKernels(name: BackendName, threads: number | undefined): Promise<Kernels> {
  if (name === 'js') return jsKernels;
  if (!wasmAvailable()) {
    if (name === 'wasm') throw new UnsupportedError('wasm', 'the wasm backend needs WebAssembly SIMD128, which this runtime lacks; use --backend js');
    return jsKernels;
  }
  return createWasmKernels(threads ? { threads } : {});
}

/** See LoadOptions.evictionPolicy. */
export function defaultEvictionPolicy(slots: number, c: GrokConfig): EvictionPolicy {
  return slots >= c.numLayers * c.numSelectedExperts ? 'lru' : 'lfu';
}

export class LanguageModel implements TextModel {
  readonly model: GrokModel;
  readonly config: Readonly<GrokConfig>;
  /**
   * The one engine that drives every sequence of this model: generate, stream, chat sessions and
   * any server over it submit here, so concurrent calls share each forward pass.
   */
  readonly scheduler: Scheduler;

  constructor(
    readonly files: ModelFiles,
    readonly tokenizer: Tokenizer,
    readonly kernels: Kernels,
    /** True when this is the bundled demo model. */
    readonly isDemo: boolean,
    /**
     * Weights (name and format) the backend has no fast kernel for: they run in the js kernel, far
     * slower. Empty for every format llama.cpp writes; counted here so that it is never silent.
     */
    readonly slowTensors: readonly { readonly name: string; readonly format: string }[] = [],
    schedulerLimits: Partial<SchedulerLimits> = {},
    /** How the weights are held (set by loadModel; a plain resident plan otherwise). */
    readonly residency?: ResidencyPlan,
    private readonly expertCache?: ExpertCache,
    private readonly hooks?: StreamingHooks,
  ) {
    this.model = new GrokModel(files.weights, kernels);
    this.config = files.config;
    this.scheduler = new Scheduler(this.model, { ...LIBRARY_LIMITS, ...schedulerLimits });
  }

  /** A lane of this model's scheduler with limits of its own (a server opens one; close it when done). */
  openLane(limits: Partial<SchedulerLimits>, closingMessage?: string): SchedulerLane {
    return this.scheduler.openLane(limits, closingMessage);
  }

  /** An empty KV cache for a sequence of this model: memory is taken as the sequence runs. */
  newCache(capacity = 0): KvCache {
    return this.model.newCache(capacity);
  }

  get backend(): string {
    return this.kernels.name;
  }

  /** Resident bytes, the budget, and the expert cache's hits and reads. */
  get memory(): MemoryReport {
    const plan = this.residency ?? planResidency(this.files.weights, (w) => w.byteLength);
    const k = this.kernels as Partial<WasmKernels>;
    const c = this.expertCache;
    const uses = c ? c.stats.hits + c.stats.misses : 0;
    return {
      mode: plan.mode, budgetBytes: plan.budgetBytes, nonExpertBytes: plan.nonExpertBytes, expertBytes: plan.expertBytes, experts: plan.experts,
      slots: plan.slots, minimumBytes: plan.minimumBytes, totalBytes: plan.totalBytes, expertBytesPerToken: plan.expertBytesPerToken,
      residentBytes: k.packedBytes ?? (plan.mode === 'stream' ? plan.nonExpertBytes : plan.totalBytes),
      ...(c ? { cache: { ...c.stats, hitRate: uses ? c.stats.hits / uses : 0, policy: c.policy, slotsUsed: c.slots.length } } : {}),
      ...(this.hooks?.predicting ? { prediction: { predicted: this.hooks.predicted, used: this.hooks.predictedUsed } } : {}),
    };
  }

  /**
   * Resolves when the background fill has nothing left to read (experts read in the background
   * after a lazy start; at once otherwise). The fill otherwise waits for the first forward pass;
   * this starts it now. An expert whose background read failed is read again when first used;
   * close() resolves it too.
   */
  whenResident(): Promise<void> {
    const c = this.expertCache;
    // Joins the fill loadModel started, when it did.
    return c && this.residency?.mode === 'resident' ? c.waitFilled(DEFAULT_EXPERT_READERS) : Promise.resolve();
  }

  /** The memory report as the server's /health shows it (snake_case, bytes). */
  memoryHealth(): Record<string, number | string | null> {
    const m = this.memory;
    return {
      mode: m.mode, budget_bytes: m.budgetBytes ?? null, resident_bytes: m.residentBytes, minimum_bytes: m.minimumBytes, total_bytes: m.totalBytes,
      ...(m.cache ? { expert_slots: m.slots, expert_slots_used: m.cache.slotsUsed, experts: m.experts, hit_rate: m.cache.hitRate, expert_hits: m.cache.hits, expert_misses: m.cache.misses, disk_read_bytes: m.cache.bytesRead, eviction_policy: m.cache.policy } : {}),
    };
  }

  /** Prompt text → ids (no BOS unless asked, as the reference), or ids passed through after a range check. */
  encodePrompt(prompt: string | readonly number[], addBos = false): number[] {
    if (typeof prompt === 'string') return this.tokenizer.encode(prompt, { addBos });
    if (!Array.isArray(prompt)) throw new UsageError('prompt must be a string or an array of token ids', 'prompt');
    for (const id of prompt) {
      if (!Number.isSafeInteger(id) || id < 0 || id >= this.config.vocabSize) {
        throw new UsageError(`prompt token ${id} is outside the vocabulary [0, ${this.config.vocabSize})`, 'prompt');
      }
    }
    return addBos ? [this.tokenizer.bosId, ...prompt] : [...prompt];
  }

  /**
   * Starts a sequence on a fresh cache (or continues `cache`, which must hold exactly `cachedIds`).
   * A constraint in the options (jsonSchema, jsonObject, grammar, regex) is compiled here, so a bad
   * one throws a ConstraintError before anything runs; `constraint` gives a matcher directly instead.
   */
  newSequence(prompt: string | readonly number[], options: GenerateOptions = {}, cache?: KvCache, constraint?: SequenceConstraint): SequenceState {
    validateGenerateOptions(options);
    const spec = constraintSpec(options);
    const matcher = constraint ?? (spec ? compileFor(spec, this.tokenizer).matcher() : undefined);
    const ids = fitPrompt(this.encodePrompt(prompt, options.addBos), cache?.length ?? 0, this.config.sequenceLen, options);
    const own = cache ?? this.model.newCache(ids.length + (options.maxTokens ?? 128));
    try {
      return new SequenceState(own, ids, this.tokenizer, this.config.vocabSize, this.config.sequenceLen, options, matcher);
    } catch (err) {
      if (own !== cache) own.free();
      throw err;
    }
  }

  /** Streams text deltas as they are produced. */
  stream(prompt: string | readonly number[], options: GenerateOptions = {}): GenerationStream {
    return this.streamSequence(this.newSequence(prompt, options), options.signal, true);
  }

  /** Generates to the end and returns the text, ids, finish reason and usage. */
  async generate(prompt: string | readonly number[], options: GenerateOptions = {}): Promise<GenerationResult> {
    const s = this.stream(prompt, options);
    for await (const _ of s);
    return s.result;
  }

  /** Logits for `ids` on a fresh sequence at positions 0..T-1: the last row, or every row. */
  logits(ids: readonly number[], all = false): Float32Array[] {
    const V = this.config.vocabSize;
    const cache = this.model.newCache(ids.length);
    const [flat] = this.model.forward([{ tokens: ids, cache }], { allLogits: all });
    const rows: Float32Array[] = [];
    for (let r = 0; r < flat!.length / V; r++) rows.push(flat!.subarray(r * V, (r + 1) * V));
    return rows;
  }

  /**
   * An embedding of `input` (as llama-server's /v1/embeddings gives for a base model): the final
   * normed hidden state of every position, mean-pooled (in float64) and L2-normalised, [D].
   * Text is encoded as for generation (no BOS unless asked).
   */
  async embed(input: string | readonly number[], options: { readonly addBos?: boolean } = {}): Promise<Float32Array> {
    const ids = this.encodePrompt(input, options.addBos);
    if (ids.length === 0) throw new UsageError('cannot embed an empty input', 'input');
    const D = this.config.embSize;
    const cache = this.model.newCache(ids.length);
    try {
      const [states] = this.model.forward([{ tokens: ids, cache }], { hidden: true });
      const sum = new Float64Array(D);
      for (let t = 0; t < ids.length; t++) for (let i = 0; i < D; i++) sum[i]! += states![t * D + i]!;
      let norm = 0;
      for (let i = 0; i < D; i++) norm += (sum[i]! / ids.length) ** 2;
      norm = Math.sqrt(norm);
      return Float32Array.from(sum, (s) => (norm > 0 ? s / ids.length / norm : 0));
    } finally {
      cache.free();
    }
  }

  /** A multi-turn session whose history stays in the KV cache: each turn prefills only its new text. */
  chat(options: ChatOptions = {}): ChatSession {
    return new ChatSession(this, options);
  }

  async close(): Promise<void> {
    // Whatever still runs is aborted: the kernels are about to go.
    await this.scheduler.close(0);
    await this.kernels.close();
    this.files.close();
  }

  /** @internal Streams one sequence through the scheduler's library lane. */
  streamSequence(seq: SequenceState, signal: AbortSignal | undefined, freeCacheOnEnd: boolean): GenerationStream {
    return sequenceStream(this.scheduler.lane, seq, signal, !freeCacheOnEnd);
  }
}

export interface ChatOptions {
  /** A system message opening the transcript; it stays when older turns are dropped. */
  readonly system?: string;
  /**
   * Called when the context is full and the oldest turns are dropped to make room for a new one
   * (the CLI says so once).
   */
  readonly onTrim?: (info: { readonly droppedTurns: number; readonly keptTurns: number; readonly contextLength: number }) => void;
}

/**
 * A chat over a base model: turns are rendered with the plain-text template (chat-template.ts)
 * and appended to one growing sequence whose KV cache is kept between turns, so each turn
 * prefills only its own new text. When a new turn (and room for its reply) no longer fits the
 * context, the oldest turns are dropped (the system message stays) and the rest is prefilled
 * again once.
 */
export class ChatSession {
  private cache: KvCache;
  /** Token ids of the conversation: the system message, then each turn (user text + reply). The cache holds a prefix of it. */
  private transcript: number[] = [];
  /** Where each turn starts in the transcript. */
  private turnStarts: number[] = [];
  private readonly systemIds: number[];
  /** Turns dropped so far to fit the context. */
  droppedTurns = 0;

  constructor(
    private readonly lm: LanguageModel,
    private readonly options: ChatOptions = {},
  ) {
    this.cache = lm.model.newCache();
    const system = options.system?.trim();
    this.systemIds = system ? lm.encodePrompt(`${system}\n\n`) : [];
    this.transcript = [...this.systemIds];
  }

  /** Tokens held in the cache. */
  get length(): number {
    return this.cache.length;
  }

  /** The conversation as token ids: the system message, then each turn kept (user text and reply). */
  get ids(): readonly number[] {
    return this.transcript;
  }

  /** Sends one user message and streams the reply; the reply stays in the history. */
  send(message: string, options: GenerateOptions = {}): GenerationStream {
    throwIfAborted(options.signal);
    const ctx = this.lm.config.sequenceLen;
    const turn = this.lm.encodePrompt(userTurnText(message, this.turnStarts.length === 0 && this.droppedTurns === 0));
    const sys = this.systemIds.length;
    if (sys + turn.length >= ctx) {
      throw new ContextLengthError(sys + turn.length, ctx, sys ? 'the message and the system message leave no room for a reply: shorten them' : 'the message leaves no room for a reply: shorten it');
    }
    // Room for the reply: what was asked, up to half the context.
    const reserve = Math.max(1, Math.min(options.maxTokens ?? DEFAULT_MAX_TOKENS, Math.floor(ctx / 2)));
    if (this.transcript.length + turn.length + reserve > ctx && this.turnStarts.length > 0) this.dropOldestTurns(turn.length + reserve);
    const ids = [...this.transcript.slice(this.cache.length), ...turn];
    // A constrained reply ends where its constraint says; the template's stops could cut it.
    const stop = [...(constraintSpec(options) ? [] : CHAT_STOP), ...(options.stop ?? [])];
    // Before the turn joins the history: a bad option (e.g. a ConstraintError) leaves it untouched.
    const seq = this.lm.newSequence(ids, { ...options, stop }, this.cache);
    this.turnStarts.push(this.transcript.length);
    this.transcript.push(...turn);
    const stream = this.lm.streamSequence(seq, options.signal, false);
    const session = this;
    return {
      result: stream.result,
      async *[Symbol.asyncIterator]() {
        try {
          yield* stream;
        } finally {
          const r = await stream.result.catch(() => undefined);
          // The reply's tokens the cache took, and a last sampled one it did not (max tokens, an
          // interrupt) that the next turn feeds first. A token that completed a stop string is left out.
          const fed = Math.max(0, session.cache.length - session.transcript.length);
          const kept = seq.generated.slice(0, fed);
          const last = seq.generated[fed];
          if (last !== undefined && (!r || r.stopReason === 'max_tokens')) kept.push(last);
          session.transcript.push(...kept);
        }
      },
    };
  }

  /** Drops the oldest turns until `room` more tokens fit after the rest; the cache starts over. */
  private dropOldestTurns(room: number): void {
    const ctx = this.lm.config.sequenceLen;
    const sys = this.systemIds.length;
    const n = this.turnStarts.length;
    const rest = (k: number) => (k < n ? this.transcript.length - this.turnStarts[k]! : 0);
    let k = 1;
    while (k < n && sys + rest(k) + room > ctx) k++;
    const from = k < n ? this.turnStarts[k]! : this.transcript.length;
    this.transcript = [...this.systemIds, ...this.transcript.slice(from)];
    this.turnStarts = this.turnStarts.slice(k).map((t) => t - from + sys);
    this.cache.free();
    this.cache = this.lm.model.newCache();
    this.droppedTurns += k;
    this.options.onTrim?.({ droppedTurns: k, keptTurns: n - k, contextLength: ctx });
  }

  /** Forgets the conversation (the system message stays). */
  reset(): void {
    this.cache.free();
    this.cache = this.lm.model.newCache();
    this.transcript = [...this.systemIds];
    this.turnStarts = [];
    this.droppedTurns = 0;
  }
}

/**
 * Loads a model. With no path, the bundled demo (a small model trained on fortune cookies). With an
 * http(s):// URL, a RemoteModel over that OpenAI-compatible server (same TextModel surface).
 */
export async function loadModel(url: RemoteUrl, options?: RemoteLoadOptions): Promise<RemoteModel>;
export async function loadModel(modelPath?: string, options?: LoadOptions): Promise<LanguageModel>;
export async function loadModel(modelPath?: string, options: LoadOptions | RemoteLoadOptions = {}): Promise<LanguageModel | RemoteModel> {
  if (isRemoteUrl(modelPath)) return loadRemoteModel(modelPath, options as RemoteLoadOptions);
  return loadLocalModel(modelPath, options as LoadOptions);
}

async function loadLocalModel(modelPath: string | undefined, options: LoadOptions): Promise<LanguageModel> {
  validateLoadOptions(options);
  if (modelPath === undefined && !fs.existsSync(DEMO_MODEL_DIR)) {
    // Never fall back to random weights: without the demo there is no model to run.
    throw new UsageError(`no model path was given and the built-in demo model is missing from this installation (expected at ${DEMO_MODEL_DIR}); pass a ckpt-0 directory or a GGUF file`, 'model');
  }
  const files = openModelFiles(modelPath ?? DEMO_MODEL_DIR);
  try {
    const tokenizer = options.tokenizer
      ? Tokenizer.fromFile(options.tokenizer)
      : files.ggufMetadata?.has('tokenizer.ggml.tokens')
        ? tokenizerFromGguf(files.ggufMetadata)
        : Tokenizer.fromFile(files.tokenizerFile); // ckpt-0 ships without one: the official tokenizer.model
    const kernels = await makeKernels(options.backend ?? 'auto', options.threads);
    let slow: { name: string; format: string }[] = [];
    let plan: ResidencyPlan | undefined;
    let cache: ExpertCache | undefined;
    let hooks: StreamingHooks | undefined;
    try {
      const budget = options.memoryBudget === undefined ? undefined : parseByteSize(options.memoryBudget);
      const wk = kernels as Partial<WasmKernels>;
      plan = planResidency(files.weights, (w) => wk.packedSize?.(w) ?? w.byteLength, budget);
      const groups = expertGroups(files.weights);
      const readers = options.expertReaders ?? DEFAULT_EXPERT_READERS;
      const lazy = plan.mode === 'resident' && !!wk.streamExperts && (options.preload ?? true) &&
        (options.lazyExperts ?? (readers > 0 && groups.every((g) => g.every((x) => weightFile(x) !== undefined && wk.packedSize!(x) !== undefined))));
      if ((plan.mode === 'stream' || lazy) && wk.streamExperts) {
        cache = wk.streamExperts(groups, plan.slots, {
          policy: options.evictionPolicy ?? defaultEvictionPolicy(plan.slots, files.weights.config),
          readers,
          directReads: options.expertDirectReads ?? true,
          // the first token's layers reuse slots rather than touch fresh memory (see ExpertCacheOptions.reuseFirst)
          reuseFirst: files.weights.config.numLayers,
        });
        hooks = new StreamingHooks(files.weights, kernels, cache, {
          predict: options.predictExperts ?? false, ...(options.onRoute ? { onRoute: options.onRoute } : {}), fillInFlight: lazy ? Math.max(1, readers) : 0,
        });
        setExpertHooks(kernels, hooks);
        if (lazy) void cache.startBackgroundFill(Math.max(1, readers));
      }
      if (options.preload ?? true) slow = preload(files, kernels, options.onProgress, cache !== undefined);
    } catch (err) {
      await kernels.close();
      throw err;
    }
    return new LanguageModel(files, tokenizer, kernels, modelPath === undefined, slow, options.scheduler, plan, cache, hooks);
  } catch (err) {
    files.close();
    throw err;
  }
}

function validateLoadOptions(o: LoadOptions): void {
  if (o.backend !== undefined && !['auto', 'wasm', 'js'].includes(o.backend)) {
    throw new UsageError(`backend must be "auto", "wasm" or "js", got ${JSON.stringify(o.backend)}`, 'backend');
  }
  if (o.evictionPolicy !== undefined && !['lru', 'lfu', 'decay'].includes(o.evictionPolicy)) {
    throw new UsageError(`evictionPolicy must be "lru", "lfu" or "decay", got ${JSON.stringify(o.evictionPolicy)}`, 'evictionPolicy');
  }
  if (o.threads !== undefined && (!Number.isSafeInteger(o.threads) || o.threads < 1 || o.threads > 256)) {
    throw new UsageError(`threads must be an integer in [1, 256], got ${o.threads}`, 'threads');
  }
}

/**
 * Reads every weight now: into the backend's own form where it keeps one (so the JS copy is
 * dropped as it goes and memory stays near the weight bytes), else into memory as stored. Returns
 * the weights a fast backend (one with `prepare`) could not take: they will run in the js kernel.
 */
function preload(files: ModelFiles, kernels: Kernels, onProgress: LoadOptions['onProgress'], skipExperts = false): { name: string; format: string }[] {
  const slow: { name: string; format: string }[] = [];
  const w = files.weights;
  // Under a budget experts are read when a batch routes to them (and counted, not preloaded).
  const all = [w.embedding, ...w.layers.flatMap((l) => [l.wq, l.wk, l.wv, l.wo, l.router, ...(skipExperts ? [] : l.experts.flatMap((e) => [e.gate, e.up, e.down]))])];
  const total = all.reduce((n, x) => n + x.byteLength, 0);
  let done = 0;
  for (const x of all) {
    if (!kernels.prepare?.(x)) {
      if (kernels.prepare) slow.push({ name: x.name, format: x.format.kind === 'ggml' ? x.format.type : x.format.kind === 'dense' ? x.format.dtype : x.format.kind });
      x.bytes();
      if (x.format.kind === 'int8-grouped') x.scaleBytes();
    }
    done += x.byteLength;
    onProgress?.({ loadedBytes: done, totalBytes: total, tensor: x.name });
  }
  return slow;
}
