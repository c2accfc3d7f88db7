/**
 * POST /v1/embeddings (and /embeddings): OpenAI's shape, computed as llama-server does for a base
 * model: the final-normed hidden state mean-pooled over the input's tokens, L2-normalised
 * (LanguageModel.embed). Grok-1 was not trained for embeddings: these vectors are what the model
 * has, not a tuned retrieval embedding.
 */
import type * as http from 'node:http';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { readJsonBody } from '../body.js';
import { checkModel, core, type ServerContext } from '../context.js';
import { parseEmbeddings } from '../llama-schema.js';
import { usageJson } from '../openai-format.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

/** Float32 little-endian bytes in base64, as OpenAI's encoding_format "base64". */
function base64(v: Float32Array): string {
  const le = new Float32Array(v); // a copy: the model's array may be a view into shared memory
  return Buffer.from(le.buffer, le.byteOffset, le.byteLength).toString('base64');
}

async function embeddings(ctx: ServerContext, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const c = core(ctx);
  const p = parseEmbeddings(await readJsonBody(req, ctx.maxBodyBytes));
  checkModel(c, p.model);
  const ids = await c.prompts.encodeAll(p.inputs, 'input');
  let gone = false; // the client left: the remaining inputs are not worth a forward pass
  res.once('close', () => (gone = true));
  const data: object[] = [];
  let tokens = 0;
  for (const [index, x] of ids.entries()) {
    // A forward pass per input, each in a turn of its own: running streams step in between.
    await nextTurn();
    if (gone) return;
    const v = await c.lm.embed(x);
    tokens += x.length;
    data.push({ object: 'embedding', index, embedding: p.encodingFormat === 'base64' ? base64(v) : Array.from(v) });
  }
  ctx.metrics.tokens({ prompt: tokens, completion: 0, prefillMs: 0, decodeMs: 0 });
  const u = usageJson(tokens, 0);
  sendJson(res, 200, { object: 'list', data, model: p.model, usage: { prompt_tokens: u.prompt_tokens, total_tokens: u.total_tokens } });
}

export function embeddingRoutes(ctx: ServerContext): Route[] {
  return [{ pattern: /^\/(?:v1\/)?embeddings$/, methods: { POST: (req, res) => embeddings(ctx, req, res) } }];
}
