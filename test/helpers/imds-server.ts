// A loopback server that speaks IMDSv2's protocol as EC2 does: PUT /latest/api/token with a TTL
// header returns a session token; every GET must carry a live token or gets 401; IMDSv1 (a GET
// without a token) is refused. Tests can expire tokens and make it fail for a while.
import http from 'node:http';
import { randomBytes } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';

export interface ImdsServer {
  url: string;
  /** Every request as "METHOD path" and whether it carried a token, in order. */
  requests: { method: string; path: string; token: boolean; ttl?: string }[];
  /** Invalidates every token issued so far, as their TTL running out would. */
  expireTokens(): void;
  /** Answer the next `n` requests with 503, as IMDS can right after boot. */
  failNext(n: number): void;
}

export async function startImdsServer(
  t: ExecutionContext,
  paths: Record<string, string>,
): Promise<ImdsServer> {
  const tokens = new Map<string, number>();
  let failing = 0;
  const requests: ImdsServer['requests'] = [];
  const server = http.createServer((req, res) => {
    const token = req.headers['x-aws-ec2-metadata-token'];
    const ttl = req.headers['x-aws-ec2-metadata-token-ttl-seconds'];
    requests.push({
      method: req.method ?? '',
      path: req.url ?? '',
      token: typeof token === 'string',
      ...(typeof ttl === 'string' ? { ttl } : {}),
    });
    const answer = (status: number, body = '') => {
      res.writeHead(status, { 'content-type': 'text/plain' });
      res.end(body);
    };
    if (failing > 0) {
      failing--;
      return answer(503);
    }
    if (req.method === 'PUT' && req.url === '/latest/api/token') {
      const seconds = Number(ttl);
      if (!Number.isInteger(seconds) || seconds < 1 || seconds > 21600) return answer(400);
      const value = randomBytes(32).toString('base64');
      tokens.set(value, Date.now() + seconds * 1000);
      return answer(200, value);
    }
    if (req.method !== 'GET') return answer(405);
    const expires = typeof token === 'string' ? tokens.get(token) : undefined;
    if (expires === undefined || expires < Date.now()) return answer(401);
    const body = paths[req.url ?? ''];
    return body === undefined ? answer(404) : answer(200, body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    expireTokens: () => tokens.clear(),
    failNext: (n) => {
      failing = n;
    },
  };
}
