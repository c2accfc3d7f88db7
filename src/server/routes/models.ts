/** GET /v1/models and /v1/models/{id}: the one served model, once under each of its names (id, then aliases). */
import { checkModel, core, type ServerContext } from '../context.js';
import { modelJson } from '../openai-format.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export function modelRoutes(ctx: ServerContext): Route[] {
  return [
    {
      pattern: /^\/v1\/models$/,
      methods: {
        GET: (_req, res) => {
          const c = core(ctx);
          sendJson(res, 200, { object: 'list', data: c.names.map((name) => modelJson(name, ctx.created)) });
        },
      },
    },
    {
      pattern: /^\/v1\/models\/(?<id>[^/]+)$/,
      methods: {
        GET: (_req, res, { id }) => {
          const c = core(ctx);
          let name = id!;
          try {
            name = decodeURIComponent(name);
          } catch {
            // not percent-encoded text: compare it as given
          }
          checkModel(c, name);
          sendJson(res, 200, modelJson(name, ctx.created));
        },
      },
    },
  ];
}
