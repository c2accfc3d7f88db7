/** GET /health: liveness, scheduler load and connections (no API key needed). */
import type * as http from 'node:http';
import type { ServerContext } from '../context.js';
import { sendJson } from '../respond.js';
import type { Route } from '../router.js';

export function health(ctx: ServerContext, res: http.ServerResponse, headers: Record<string, string> = {}): void {
  const connections = ctx.connections();
  const loaded = ctx.loaded();
  const draining = ctx.draining();
  if (!loaded) {
    const status = draining ? 'shutting_down' : ctx.loadFailed() ? 'failed' : 'loading';
    sendJson(res, 503, { status, ...(ctx.configuredModelId !== undefined ? { model: ctx.configuredModelId } : {}), connections }, { 'Retry-After': '5', ...headers });
    return;
  }
  const s = loaded.scheduler.stats();
  sendJson(res, draining ? 503 : 200, { status: draining ? 'shutting_down' : 'ok', model: loaded.modelId, backend: loaded.lm.backend, ...s, connections, memory: loaded.lm.memoryHealth() }, headers);
}

export function healthRoutes(ctx: ServerContext): Route[] {
  return [{ pattern: /^\/health$/, open: true, health: true, methods: { GET: (_req, res) => health(ctx, res) } }];
}
