/**
 * The chat page at `/`: static files from assets/webui (no build step, nothing from a CDN), read
 * once when the server is created and served from memory. The page needs no API key to load (it
 * holds no secret; it asks for the key and sends it with its API calls).
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { PACKAGE_ROOT } from '../../model/load.js';
import type { Route } from '../router.js';

export const WEBUI_DIR = path.join(PACKAGE_ROOT, 'assets', 'webui');

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};

/** Same-origin only: the page talks to this server and loads nothing from elsewhere. */
const PAGE_HEADERS = {
  'Content-Security-Policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Cache-Control': 'no-cache',
};

interface StaticFile {
  readonly body: Buffer;
  readonly type: string;
}

/** Reads every file of the page; a missing directory is an error at server start, not at the first request. */
export function loadWebUi(dir = WEBUI_DIR): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  for (const name of fs.readdirSync(dir)) {
    const type = TYPES[path.extname(name)];
    if (!type) continue;
    files.set(name, { body: fs.readFileSync(path.join(dir, name)), type });
  }
  if (!files.has('index.html')) throw new Error(`the chat page is missing: no index.html in ${dir}`);
  return files;
}

export function webuiRoutes(files: Map<string, StaticFile>): Route[] {
  const serve = (name: string) => (_req: unknown, res: import('node:http').ServerResponse) => {
    const f = files.get(name)!;
    res.writeHead(200, { 'Content-Type': f.type, 'Content-Length': f.body.length, ...PAGE_HEADERS });
    res.end(f.body);
  };
  const routes: Route[] = [{ pattern: /^\/(?:index\.html)?$/, open: true, methods: { GET: serve('index.html') } }];
  for (const name of files.keys()) {
    if (name === 'index.html') continue;
    routes.push({ pattern: new RegExp(`^/webui/${name.replace(/[.]/g, '\\.')}$`), open: true, methods: { GET: serve(name) } });
  }
  return routes;
}
