// startControlPlane: the Koa app with every /v1 route of common/api.ts, /healthz, /metrics and
// the OpenAPI document, over HTTP or HTTPS, on a data directory (SQLite database and server
// secret). close() ends every long-poll with its current answer, then stops.
import { mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import Koa from 'koa';
import Router from '@koa/router';
import pino, { type Logger } from 'pino';
import type { ErrorCode } from '../common/protocol';
import { serveDashboard } from './dashboard';
import { openDatabase, type Db } from './db';
import { errorsAndLogs, registerRoutes, type HttpContextState } from './http';
import { createMetrics } from './metrics';
import { LocalNotifier } from './notifier';
import { PostgresNotifier } from './pg-notifier';
import { openApiDocument } from './openapi';
import { Reconciler } from './reconciler';
import { agentRoutes } from './routes/agent';
import { machineRoutes } from './routes/machine';
import type { Services } from './routes/services';
import { userRoutes } from './routes/user';
import { ServerSecrets } from './secrets';

export interface ControlPlaneOptions {
  dataDir: string;
  /** PostgreSQL (postgres://...) instead of SQLite in the data directory. */
  databaseUrl?: string;
  /** Defaults to 127.0.0.1 and any free port. */
  listen?: { host: string; port: number };
  /** What machines and CLIs are told to use; defaults to the listen URL. */
  publicUrl?: string;
  tls?: { certFile: string; keyFile: string };
  logger?: Logger;
  /** Node process metrics (event loop, memory) on /metrics; for the real server, not tests. */
  processMetrics?: boolean;
}

export interface ControlPlane {
  url: string;
  publicUrl: string;
  db: Db;
  dataDir: string;
  secrets: ServerSecrets;
  reconciler: Reconciler;
  /** Every method and path the router serves, as registered. */
  routes: { method: string; path: string }[];
  close(): Promise<void>;
}

/** Socket errors that only mean the client closed or reset its connection. */
const clientGoneCodes = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ERR_STREAM_PREMATURE_CLOSE',
]);

/** How long a client may take to send a whole request, headers and body. */
const requestTimeoutMs = 60_000;

/**
 * What Node's HTTP parser refuses before any route runs (headers too large, not HTTP, a client
 * too slow to send its request) is answered with the API's JSON error body too.
 */
function refuseUnparsed(err: NodeJS.ErrnoException, socket: Duplex, log: Logger): void {
  const pending = (socket as { _httpMessage?: http.ServerResponse | null })._httpMessage;
  // A client that reset or closed its connection has nobody left to answer.
  if (!socket.writable || pending?.headersSent || clientGoneCodes.has(err.code ?? '')) {
    socket.destroy();
    return;
  }
  const [status, code, message]: [number, ErrorCode, string] =
    err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
      ? [
          408,
          'request_timeout',
          `the request was not received in full within ${requestTimeoutMs / 1000} s`,
        ]
      : err.code === 'HPE_HEADER_OVERFLOW'
        ? [
            431,
            'invalid_header',
            `the request headers are larger than the ${http.maxHeaderSize / 1024} KB allowed`,
          ]
        : [
            400,
            'invalid_request',
            `the request is not valid HTTP/1.1 (${err.code ?? 'unparsable'})`,
          ];
  log.debug({ code: err.code, status }, 'refused a request the HTTP parser could not accept');
  const body = JSON.stringify({ error: { code, message } });
  socket.end(
    `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\ncontent-type: application/json\r\n` +
      `content-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`,
  );
}

/** How long close() lets requests finish before it cuts their connections. */
const closeGraceMs = 5000;

export async function startControlPlane(options: ControlPlaneOptions): Promise<ControlPlane> {
  const log = options.logger ?? pino({ name: 'slipway-control-plane' });
  await mkdir(options.dataDir, { recursive: true, mode: 0o700 });
  const secrets = await ServerSecrets.load(options.dataDir);
  const db = await openDatabase(options.dataDir, options.databaseUrl);
  const startedAt = Date.now();
  const closing = new AbortController();
  // Several replicas can share PostgreSQL; their long-polls then wake each other through it.
  const notifier = options.databaseUrl
    ? await PostgresNotifier.start(db, options.databaseUrl, log).catch(async (err: unknown) => {
        await db.destroy();
        throw err;
      })
    : new LocalNotifier();
  const metrics = createMetrics({
    processMetrics: options.processMetrics ?? false,
    pendingBuilders: async () => {
      const row = await db('builder_requests')
        .where({ state: 'pending' })
        .count({ n: '*' })
        .first();
      return Number(row?.n ?? 0);
    },
  });
  const reconciler = new Reconciler({ db, secrets, notifier, log, metrics, startedAt });

  let server: http.Server;
  try {
    const app = new Koa();
    // Errors that reach Koa itself come from the socket, after the middleware ran: a client that
    // went away mid-answer (a CLI cut off during its long-poll). Koa would print them to stderr
    // with a stack; they are the client's doing, so they go to the log at debug level.
    app.on('error', (err: NodeJS.ErrnoException, ctx?: Koa.Context) => {
      const l = (ctx?.state as HttpContextState | undefined)?.log ?? log;
      const where = { method: ctx?.method, path: ctx?.path, code: err.code };
      if (clientGoneCodes.has(err.code ?? ''))
        l.debug(where, 'the client went away before the answer');
      else l.error({ ...where, err }, 'answering failed');
    });
    const router = new Router();
    app.use(errorsAndLogs(log, metrics));
    app.use(async (ctx, next) => {
      await next();
      // Answers given while closing end their connection, so close() need not wait for idle sockets.
      if (closing.signal.aborted) ctx.set('connection', 'close');
    });
    router.get('/healthz', async (ctx) => {
      (ctx.state as HttpContextState).route = '/healthz';
      await db.raw('select 1');
      ctx.body = { status: 'ok' };
    });
    router.get('/metrics', async (ctx) => {
      (ctx.state as HttpContextState).route = '/metrics';
      ctx.type = metrics.registry.contentType;
      ctx.body = await metrics.registry.metrics();
    });
    const published: { openapi?: unknown } = {};
    router.get('/v1/openapi.json', async (ctx) => {
      (ctx.state as HttpContextState).route = '/v1/openapi.json';
      ctx.body = published.openapi;
    });
    // Filled in once the URL is known; handlers only run after listen().
    const svc: Services = { db, secrets, notifier, reconciler, log, publicUrl: '' };
    registerRoutes(
      router,
      db,
      { ...userRoutes(svc), ...agentRoutes(svc), ...machineRoutes(svc) },
      closing.signal,
    );
    app.use(serveDashboard());
    app.use(router.routes());

    // Receiving a request (headers and body) may take at most a minute, checked every 5 s: a
    // stalled client is cut within 65 s. Long-polls hold the answer, not the request, up to 30 s;
    // idle keep-alive sockets last a little longer than that.
    const timeouts = { requestTimeout: requestTimeoutMs, connectionsCheckingInterval: 5000 };
    server = options.tls
      ? https.createServer(
          {
            ...timeouts,
            cert: await readFile(options.tls.certFile),
            key: await readFile(options.tls.keyFile),
          },
          app.callback(),
        )
      : http.createServer(timeouts, app.callback());
    server.keepAliveTimeout = 35_000;
    server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) =>
      refuseUnparsed(err, socket, log),
    );
    const listen = options.listen ?? { host: '127.0.0.1', port: 0 };
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(listen.port, listen.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const address = server.address() as AddressInfo;
    const host = address.family === 'IPv6' ? `[${address.address}]` : address.address;
    const url = `${options.tls ? 'https' : 'http'}://${host}:${address.port}`;
    svc.publicUrl = (options.publicUrl ?? url).replace(/\/+$/, '');
    published.openapi = openApiDocument(svc.publicUrl);
    // Resume every connection: pending requests, timers and fleets continue after a restart.
    await reconciler.reconcileAll();
    log.info(
      { url, publicUrl: svc.publicUrl, dataDir: options.dataDir },
      'control plane listening',
    );

    let closed: Promise<void> | undefined;
    return {
      url,
      publicUrl: svc.publicUrl,
      db,
      dataDir: options.dataDir,
      secrets,
      reconciler,
      routes: router.stack.flatMap((layer) =>
        layer.methods
          .filter((m) => m !== 'HEAD')
          .map((method) => ({ method, path: String(layer.path) })),
      ),
      close() {
        closed ??= (async () => {
          closing.abort();
          const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
          server.closeIdleConnections();
          const idle = setInterval(() => server.closeIdleConnections(), 50);
          const cut = setTimeout(() => server.closeAllConnections(), closeGraceMs);
          await stopped;
          clearInterval(idle);
          clearTimeout(cut);
          await reconciler.close();
          await notifier.close();
          await db.destroy();
          log.info('control plane stopped');
        })();
        return closed;
      },
    };
  } catch (err) {
    await reconciler.close();
    await notifier.close();
    await db.destroy();
    throw err;
  }
}
