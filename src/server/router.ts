/**
 * A small path router: each route is a pattern and a handler per method. Matching gives the route
 * and its named groups; what happens on no match (404), a wrong method (405) or a missing key is
 * the server's choice (http.ts), so that those answers stay in one place.
 */
import type * as http from 'node:http';

export type Params = Readonly<Record<string, string>>;

export type Handler = (req: http.IncomingMessage, res: http.ServerResponse, params: Params) => Promise<void> | void;

export interface Route {
  readonly pattern: RegExp;
  readonly methods: Readonly<Record<string, Handler>>;
  /** Answered without the API key and while draining (/health, the chat page's static files). */
  readonly open?: boolean;
  /** The liveness probe: the one route an overflow connection may still ask. */
  readonly health?: boolean;
}

export interface RouteMatch {
  readonly route: Route;
  readonly params: Params;
}

export class Router {
  private readonly routes: Route[] = [];

  add(...routes: readonly Route[]): this {
    this.routes.push(...routes);
    return this;
  }

  match(pathname: string): RouteMatch | undefined {
    for (const route of this.routes) {
      const m = route.pattern.exec(pathname);
      if (m) return { route, params: { ...(m.groups ?? {}) } };
    }
    return undefined;
  }
}
