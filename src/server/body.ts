/** Reading a request's JSON body, bounded in size. */
import type * as http from 'node:http';
import { AbortError } from '../errors.js';
import { RequestError } from './errors.js';

/** Reads a JSON request body of at most `limit` bytes. */
export function readJsonBody(req: http.IncomingMessage, limit: number): Promise<unknown> {
  const tooLarge = () =>
    new RequestError(413, `the request body is larger than the limit of ${limit} bytes`, 'invalid_request_error', 'request_too_large', null, { Connection: 'close' });
  const declared = Number(req.headers['content-length']);
  if (Number.isFinite(declared) && declared > limit) return Promise.reject(tooLarge());
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      req.off('data', onData);
      fn();
    };
    const onData = (c: Buffer): void => {
      size += c.length;
      if (size > limit) settle(() => reject(tooLarge()));
      else chunks.push(c);
    };
    req.on('data', onData);
    req.on('end', () =>
      settle(() => {
        const text = Buffer.concat(chunks).toString('utf8');
        try {
          resolve(JSON.parse(text));
        } catch (err) {
          reject(new RequestError(400, `We could not parse the JSON body of your request: ${(err as Error).message}`, 'invalid_request_error', 'invalid_json'));
        }
      }),
    );
    req.on('error', (err) => settle(() => reject(new AbortError(`the request body did not arrive: ${err.message}`))));
    req.on('close', () => settle(() => reject(new AbortError('the client went away while sending the request'))));
  });
}
