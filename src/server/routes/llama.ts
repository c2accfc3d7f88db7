/**
 * llama-server's native endpoints, so its clients work unchanged:
 *
 *   POST /completion, /completions   native completion (llama-server's fields and response shape)
 *   POST /tokenize, /detokenize      token ids ↔ text (`with_pieces` gives each id's piece)
 *   GET  /props                      model, context, chat template, /completion's sampling defaults
 *   GET  /slots                      the sequences being served (counts only, never prompt text)
 */
import type * as http from 'node:http';
import { readJsonBody } from '../body.js';
import { effectiveTemplate } from '../chat-tools.js';
import { runJob } from '../completion-job.js';
import { core, type ServerContext } from '../context.js';
import { NativeOutput, type NativeJobInfo } from '../llama-format.js';
import { LLAMA_DEFAULTS, parseDetokenize, parseNativeCompletion, parseTokenize } from '../llama-schema.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';
import { UsageError } from '../../errors.js';
import { envelope, jobOptions, tracked } from './openai.js';

/** A piece's text, or its bytes when it is not valid UTF-8 on its own (as llama-server answers with_pieces). */
function pieceOf(ctx: { decode(ids: readonly number[]): string; idToPiece(id: number): string }, id: number): string | number[] {
  const piece = ctx.idToPiece(id);
  const byte = /^<0x([0-9A-Fa-f]{2})>$/.exec(piece);
  if (byte) {
    const b = parseInt(byte[1]!, 16);
    return b < 0x80 ? String.fromCharCode(b) : [b];
  }
  return piece.replace(/\u2581/g, ' ');
}

async function nativeCompletion(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const c = core(ctx);
  const p = parseNativeCompletion(await readJsonBody(req, ctx.maxBodyBytes));
  let ids: number[];
  if (typeof p.prompt === 'string') {
    [ids] = (await c.prompts.encodeAll([p.prompt])) as [number[]];
  } else {
    // Text parts are tokenised on their own and joined with the ids around them, as llama-server does.
    const joined: number[] = [];
    for (const part of p.prompt) {
      if (typeof part === 'number') joined.push(part);
      else if (part !== '') joined.push(...(await c.prompts.encodeAll([part]))[0]!);
    }
    if (joined.length === 0) throw new UsageError('the prompt is empty', 'prompt');
    ids = c.prompts.encode(joined);
  }
  // n_predict past the context stops at the context, as llama-server does, rather than failing.
  const maxTokens = c.prompts.budget(ids.length, undefined, p.maxTokens ?? Infinity);
  const seq = c.lm.newSequence(ids, { ...p.sampling, ...p.constraint, maxTokens, stop: p.stop, ignoreEos: p.ignoreEos }, c.lm.newCache(0));
  const env = envelope('cmpl', c.modelId);
  const job = { kind: 'completion' as const, env, choices: [{ seq, textOffset: 0 }], promptTokens: ids.length, stream: p.stream, includeUsage: false, logprobs: false };
  const s = p.sampling;
  const info: NativeJobInfo = {
    model: c.modelId,
    prompt: typeof p.prompt === 'string' ? p.prompt : c.lm.tokenizer.decode(ids),
    returnTokens: p.returnTokens,
    timingsPerToken: p.timingsPerToken,
    settings: {
      n_ctx: c.lm.config.sequenceLen,
      n_predict: p.maxTokens ?? -1,
      temperature: s.temperature,
      top_k: s.topK,
      top_p: s.topP,
      min_p: s.minP,
      repeat_penalty: s.repetitionPenalty,
      repeat_last_n: s.penaltyWindow === Number.MAX_SAFE_INTEGER ? -1 : s.penaltyWindow,
      presence_penalty: s.presencePenalty,
      frequency_penalty: s.frequencyPenalty,
      stop: p.stop,
      ignore_eos: p.ignoreEos,
      stream: p.stream,
    },
  };
  await tracked(ctx, req, res, env.id, job.choices, () =>
    runJob(c.scheduler, job, res, { promptParam: 'prompt', onInternal: ctx.onInternal }, jobOptions(ctx, req), (j, r) => new NativeOutput(j, r, info)),
  );
}

async function tokenize(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const c = core(ctx);
  const p = parseTokenize(await readJsonBody(req, ctx.maxBodyBytes));
  if (p.content.length > c.prompts.maxChars) {
    c.prompts.encode(p.content); // throws the same length error a prompt would get
  }
  const tok = c.lm.tokenizer;
  const ids = p.content === '' ? [] : c.lm.encodePrompt(p.content, p.addSpecial);
  if (p.content === '' && p.addSpecial && tok.bosId >= 0) ids.push(tok.bosId);
  sendJson(res, 200, { tokens: p.withPieces ? ids.map((id) => ({ id, piece: pieceOf(tok, id) })) : ids });
}

async function detokenize(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const c = core(ctx);
  const ids = parseDetokenize(await readJsonBody(req, ctx.maxBodyBytes));
  const vocab = c.lm.tokenizer.vocabSize;
  const bad = ids.find((id) => id >= vocab);
  if (bad !== undefined) throw new UsageError(`token ${bad} is outside the vocabulary of ${vocab}`, 'tokens');
  sendJson(res, 200, { content: c.lm.tokenizer.decode(ids) });
}

function props(ctx: ServerContext, res: http.ServerResponse): void {
  const c = core(ctx);
  const template = effectiveTemplate(c.lm, ctx.template); // what /v1/chat/completions renders with
  const example = template.render([
    { role: 'system', content: '{system}' },
    { role: 'user', content: '{user}' },
  ]);
  sendJson(res, 200, {
    model: c.modelId,
    model_alias: c.names.slice(1),
    model_path: c.modelId,
    n_ctx: c.lm.config.sequenceLen,
    total_slots: ctx.limits.maxBatch,
    backend: c.lm.backend,
    chat_template: example,
    chat_template_stop: template.stop,
    default_generation_settings: { n_ctx: c.lm.config.sequenceLen, params: { ...LLAMA_DEFAULTS, stop: [], stream: false } },
    build_info: 'grok-ts',
    modalities: { vision: false, audio: false },
    endpoints: { webui: ctx.webui },
  });
}

function slots(ctx: ServerContext, res: http.ServerResponse): void {
  const c = core(ctx);
  sendJson(res, 200, ctx.live.slots(c.lm.config.sequenceLen));
}

export function llamaRoutes(ctx: ServerContext): Route[] {
  const complete = (req: http.IncomingMessage, res: http.ServerResponse) => nativeCompletion(ctx, req, res);
  return [
    { pattern: /^\/completions?$/, methods: { POST: complete } },
    { pattern: /^\/tokenize$/, methods: { POST: (req, res) => tokenize(ctx, req, res) } },
    { pattern: /^\/detokenize$/, methods: { POST: (req, res) => detokenize(ctx, req, res) } },
    { pattern: /^\/props$/, methods: { GET: (_req, res) => props(ctx, res) } },
    { pattern: /^\/slots$/, methods: { GET: (_req, res) => slots(ctx, res) } },
  ];
}
