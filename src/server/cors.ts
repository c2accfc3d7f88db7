/**
 * Cross-origin requests from browser pages: off unless origins are listed. A listed origin (or any,
 * with `*`) gets Access-Control-Allow-Origin on every answer, and its preflight (OPTIONS with
 * Access-Control-Request-Method) is answered 204 before the API key is checked: browsers never send
 * credentials on a preflight, the actual request still needs the key.
 */
import type * as http from 'node:http';

const ALLOWED_METHODS = 'GET, POST, OPTIONS';
const DEFAULT_ALLOWED_HEADERS = 'Authorization, Content-Type';
const PREFLIGHT_MAX_AGE_S = 600;

export class Cors {
  private readonly any: boolean;
  private readonly origins: Set<string>;

  constructor(origins: readonly string[]) {
    this.any = origins.includes('*');
    this.origins = new Set(origins.map((o) => o.replace(/\/+$/, '')));
  }

  get enabled(): boolean {
    return this.any || this.origins.size > 0;
  }

  /** The value for Access-Control-Allow-Origin, or undefined when this origin is not allowed. */
  allow(origin: string | undefined): string | undefined {
    if (origin === undefined) return undefined;
    if (this.any) return '*';
    return this.origins.has(origin) ? origin : undefined;
  }

  /**
   * Sets the CORS headers for this request's origin; answers a preflight and returns true when it
   * was one (from an allowed origin).
   */
  apply(req: http.IncomingMessage, res: http.ServerResponse): boolean {
    if (!this.enabled) return false;
    const allowed = this.allow(req.headers.origin);
    if (!this.any) res.setHeader('Vary', 'Origin');
    if (allowed === undefined) return false;
    res.setHeader('Access-Control-Allow-Origin', allowed);
    const isPreflight = req.method === 'OPTIONS' && req.headers['access-control-request-method'] !== undefined;
    if (!isPreflight) return false;
    const requested = req.headers['access-control-request-headers'];
    res.writeHead(204, {
      'Access-Control-Allow-Methods': ALLOWED_METHODS,
      'Access-Control-Allow-Headers': typeof requested === 'string' && requested !== '' ? requested : DEFAULT_ALLOWED_HEADERS,
      'Access-Control-Max-Age': String(PREFLIGHT_MAX_AGE_S),
      'Content-Length': '0',
    });
    res.end();
    return true;
  }
}
