// An HTTP proxy between one component and the control plane that injects a fault at an exact
// point of an exchange: the control plane has answered, the component has not seen the answer
// yet. A hook sees each finished exchange and says whether to pass the answer on or to cut the
// connection (after, say, killing the component that was waiting for it).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { ExecutionContext } from 'ava';

export interface Exchange {
  method: string;
  path: string;
  status: number;
  body: string;
}

export type Verdict = 'pass' | 'cut';

export interface FaultProxy {
  url: string;
  /** Every exchange so far, with what the hook decided. */
  exchanges: (Exchange & { verdict: Verdict })[];
}

export async function startFaultProxy(
  t: ExecutionContext,
  target: string,
  hook: (exchange: Exchange) => Promise<Verdict> | Verdict,
): Promise<FaultProxy> {
  const exchanges: FaultProxy['exchanges'] = [];
  const server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const headers = { ...req.headers, host: new URL(target).host };
      const upstream = http.request(target + req.url, { method: req.method, headers }, (answer) => {
        const body: Buffer[] = [];
        answer.on('data', (c: Buffer) => body.push(c));
        answer.on('end', async () => {
          const exchange = {
            method: req.method ?? '',
            path: req.url ?? '',
            status: answer.statusCode ?? 0,
            body: Buffer.concat(body).toString(),
          };
          const verdict = await hook(exchange);
          exchanges.push({ ...exchange, verdict });
          if (verdict === 'cut') {
            res.socket?.destroy();
            return;
          }
          res.writeHead(answer.statusCode ?? 502, answer.headers);
          res.end(Buffer.concat(body));
        });
      });
      upstream.on('error', () => res.socket?.destroy());
      upstream.end(Buffer.concat(chunks));
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, exchanges };
}
