/** GET /metrics: Prometheus text format (metrics.ts). */

import type { ServerContext } from '../context.js';
import { METRICS_CONTENT_TYPE } from '../metrics.js';
import type { Route } from '../router.js';

/** The numbers read at scrape time; one function, so where they come from can change in one place. */
export function renderMetrics(ctx: ServerContext): string {
  const loaded = ctx.loaded();
  const memory = process.memoryUsage();
  return ctx.metrics.render({
    scheduler: loaded?.scheduler.stats(),
    kv: ctx.live.kv(),
    kvCapacityTokens: loaded ? loaded.lm.config.sequenceLen * ctx.limits.maxBatch : 0,
    connections: ctx.connections().open,
    memory,
    // maxRSS is in kilobytes.
    peakRss: Math.max(memory.rss, process.resourceUsage().maxRSS * 1024),
  });
}

export function metricsRoutes(ctx: ServerContext): Route[] {
  return [
    {
      pattern: /^\/metrics$/,
      methods: {
        GET: (_req, res) => {
          const text = renderMetrics(ctx);
          res.writeHead(200, { 'Content-Type': METRICS_CONTENT_TYPE, 'Content-Length': Buffer.byteLength(text) });
          res.end(text);
        },
      },
    },
  ];
}
