// The HTTP shell around the handlers: every /v1 route of common/api.ts registered from its table
// entry, with the token kind checked, path, query and body parsed by the route's schemas, the
// answer checked against its response schema, and every failure turned into the JSON error body
// of protocol.ts (4xx for anything the client sent, never a 500 for it).
import { randomUUID } from 'node:crypto';
import type { Context, Middleware } from 'koa';
import Router from '@koa/router';
import getRawBody from 'raw-body';
import type { Logger } from 'pino';
import { z } from 'zod';
import { routes, type PathParams, type RouteDef, type RouteName, type Routes } from '../common/api';
import { idSchema, tokenPattern, type ErrorCode, type IdKind } from '../common/protocol';
import type { Db } from './db';
import { hashToken, sameSecret, tokenKindOf } from './tokens';
import type { Metrics } from './metrics';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: ErrorCode,
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

/** A token anywhere in a text: tokenPattern without its anchors. */
const tokenLike = new RegExp(tokenPattern.source.replace(/^\^|\$$/g, ''), 'g');
const privateKeyBlock =
  /-----BEGIN [A-Z ]*PRIVATE KEY-----[\s\S]*?(-----END [A-Z ]*PRIVATE KEY-----|$)/g;

/**
 * Error messages repeat what the client sent (a name, a field, an id); a token or a private key
 * pasted into the wrong place is never repeated, since answers end up in terminals and CI logs.
 */
export function redactSecrets(text: string): string {
  return text
    .replace(tokenLike, (t) => `${t.slice(0, 4)}[redacted]`)
    .replace(privateKeyBlock, '[redacted private key]');
}

export const notFound = (what: string, field?: string) =>
  new HttpError(404, 'not_found', `${what} was not found`, field);

export interface UserAuth {
  kind: 'user';
  organizationId: string;
  tokenId: string;
  tokenName: string;
}
export interface ConnectionAuth {
  kind: 'connection';
  organizationId: string;
  connectionId: string;
  tokenId: string;
}
export interface MachineAuth {
  kind: 'machine';
  organizationId: string;
  connectionId: string;
  machineId: string;
}
type AuthFor<K> = K extends 'user'
  ? UserAuth
  : K extends 'connection'
    ? ConnectionAuth
    : K extends 'machine'
      ? MachineAuth
      : null;

type Def<N extends RouteName> = Routes[N];
export interface RouteRequest<N extends RouteName> {
  body: Def<N> extends { body: z.ZodType } ? z.output<Def<N>['body']> : undefined;
  query: Def<N> extends { query: z.ZodType } ? z.output<Def<N>['query']> : undefined;
  /** The body as sent, before defaults: for PATCH semantics (which fields were given). */
  rawBody: unknown;
  params: Record<PathParams<Def<N>['path']>, string>;
  auth: AuthFor<Def<N>['auth']>;
  log: Logger;
  /** Aborts when the client goes away or the server closes: long-polls end then. */
  signal: AbortSignal;
}
export type RouteHandlers = {
  [N in RouteName]: (req: RouteRequest<N>) => Promise<z.input<Def<N>['response']>>;
};

const defaultBodyLimit = 1024 * 1024;
/** Routes allowed a larger body than the default megabyte. */
const bodyLimits: Partial<Record<RouteName, number>> = { agentSync: 4 * 1024 * 1024 };
/** Path parameters by name: a malformed id cannot exist, so it answers 404 like a missing one. */
const paramKinds: Record<string, IdKind> = {
  tokenId: 'token',
  connectionId: 'connection',
  projectId: 'project',
  buildId: 'build',
};
const noQuery = z.object({}).strict();
/** Tokens are used often; recording every use would turn each read into a write. */
const lastUsedResolutionMs = 60_000;

/** A zod error as the API's error: the first issue, its field as a dotted path. */
export function validationError(
  code: 'invalid_body' | 'invalid_query',
  error: z.ZodError,
  prefix: (string | number)[] = [],
): HttpError {
  const issue = error.issues[0]!;
  let path = [...prefix, ...issue.path.map((p) => (typeof p === 'symbol' ? String(p) : p))];
  let message = issue.message;
  if (issue.code === 'unrecognized_keys') {
    path = [...path, issue.keys[0]!];
    message = `is not a known field (remove it)`;
  } else if (issue.code === 'invalid_type' && /received undefined/.test(issue.message)) {
    message = 'is required';
  }
  const field = path.join('.');
  const where = code === 'invalid_query' ? 'query parameter' : 'field';
  return new HttpError(
    400,
    code,
    field ? `${where} ${field}: ${message}` : message,
    field || undefined,
  );
}

async function readJsonBody(ctx: Context, limit: number): Promise<unknown> {
  const type = ctx.request.type;
  if (type !== 'application/json') {
    throw new HttpError(
      415,
      'unsupported_media_type',
      `send the body as JSON with content-type application/json (got ${type || 'none'})`,
      'content-type',
    );
  }
  // raw-body never decodes: a compressed body would be read as garbage JSON, so say why instead.
  const encoding = (ctx.get('content-encoding') || 'identity').trim().toLowerCase();
  if (encoding !== 'identity') {
    throw new HttpError(
      415,
      'unsupported_media_type',
      `send the body uncompressed (content-encoding ${encoding} is not accepted)`,
      'content-encoding',
    );
  }
  const charset = ctx.request.charset;
  if (charset && charset.toLowerCase() !== 'utf-8') {
    throw new HttpError(415, 'unsupported_media_type', `the body must be UTF-8 (got ${charset})`);
  }
  let text: string;
  try {
    text = await getRawBody(ctx.req, {
      length: ctx.request.length,
      limit,
      encoding: 'utf8',
    });
  } catch (err) {
    const e = err as { type?: string; status?: number };
    if (e.type === 'entity.too.large') {
      // The client may still be sending. Closing now would make the kernel reset the connection
      // over the unread body, and the client would never read this answer: Node reads and drops
      // the rest instead (a request may take a minute at most, server.ts).
      throw new HttpError(
        413,
        'payload_too_large',
        `the body is larger than the ${limit / (1024 * 1024)} MB this endpoint accepts`,
      );
    }
    throw new HttpError(400, 'invalid_body', 'the body could not be read completely');
  }
  if (text.trim() === '')
    throw new HttpError(400, 'invalid_body', 'the body is empty; send a JSON object');
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new HttpError(
      400,
      'invalid_body',
      `the body is not valid JSON: ${(err as Error).message}`,
    );
  }
}

function parseQuery(ctx: Context, schema: z.ZodType): unknown {
  const raw: Record<string, string> = {};
  for (const [key, value] of Object.entries(ctx.query)) {
    if (Array.isArray(value)) {
      throw new HttpError(
        400,
        'invalid_query',
        `query parameter ${key} is given more than once`,
        key,
      );
    }
    if (value !== undefined) raw[key] = value;
  }
  const parsed = schema.safeParse(raw);
  if (!parsed.success) throw validationError('invalid_query', parsed.error);
  return parsed.data;
}

function bearer(ctx: Context): string {
  const header = ctx.get('authorization');
  if (!header) {
    throw new HttpError(
      401,
      'unauthorized',
      'send a token in the Authorization header (Bearer ...)',
    );
  }
  const match = /^Bearer ([^\s]+)$/i.exec(header);
  if (!match) {
    throw new HttpError(
      401,
      'unauthorized',
      'the Authorization header must be `Bearer <token>`',
      'authorization',
    );
  }
  return match[1]!;
}

const kindNames = { user: 'user', connection: 'connection', machine: 'machine' } as const;

interface Authenticated {
  auth: unknown;
  /** Records the token's use; called only once the request succeeded, so refusals write nothing. */
  recordUse?: () => Promise<unknown>;
}

async function authenticate(
  db: Db,
  ctx: Context,
  need: RouteDef['auth'],
  now: number,
): Promise<Authenticated> {
  if (need === 'none') return { auth: null };
  const token = bearer(ctx);
  const kind = tokenKindOf(token);
  if (!kind) throw new HttpError(401, 'unauthorized', 'the token is not a Slipway token');
  if (kind !== need) {
    throw new HttpError(
      403,
      'forbidden',
      `this endpoint takes a ${kindNames[need]} token, not a ${kind} token`,
    );
  }
  const hash = hashToken(token);
  const refused = new HttpError(401, 'unauthorized', 'the token is not valid (revoked or unknown)');
  if (kind === 'machine') {
    const row = await db('machines')
      .where({ token_hash: hash })
      .first('id', 'organization_id', 'connection_id', 'token_hash', 'token_used_at');
    if (!row || !sameSecret(row.token_hash, hash)) throw refused;
    const auth: MachineAuth = {
      kind,
      organizationId: row.organization_id,
      connectionId: row.connection_id,
      machineId: row.id,
    };
    // The first use proves the machine stored its token: no registration again after it.
    const recordUse =
      row.token_used_at === null
        ? () =>
            db('machines')
              .where({ id: row.id, token_hash: hash })
              .whereNull('token_used_at')
              .update({ token_used_at: now })
        : undefined;
    return { auth, recordUse };
  }
  const row = await db('tokens').where({ hash, kind }).first();
  if (!row || !sameSecret(row.hash, hash)) throw refused;
  const recordUse =
    row.last_used_at === null || now - Number(row.last_used_at) > lastUsedResolutionMs
      ? () => db('tokens').where({ id: row.id }).update({ last_used_at: now })
      : undefined;
  if (kind === 'connection') {
    const auth: ConnectionAuth = {
      kind,
      organizationId: row.organization_id,
      connectionId: row.connection_id,
      tokenId: row.id,
    };
    return { auth, recordUse };
  }
  const auth: UserAuth = {
    kind: 'user',
    organizationId: row.organization_id,
    tokenId: row.id,
    tokenName: row.name,
  };
  return { auth, recordUse };
}

export interface HttpContextState {
  requestId: string;
  log: Logger;
  route?: string;
}

/** Request ids, request logs, metrics and the error body; outermost middleware. */
export function errorsAndLogs(log: Logger, metrics: Metrics): Middleware {
  return async (ctx, next) => {
    const started = performance.now();
    const given = ctx.get('x-request-id');
    const requestId = /^[A-Za-z0-9._-]{1,64}$/.test(given) ? given : randomUUID();
    const state = ctx.state as HttpContextState;
    state.requestId = requestId;
    state.log = log.child({ requestId });
    ctx.set('x-request-id', requestId);
    try {
      await next();
      if (ctx.status === 404 && ctx.body === undefined) {
        throw new HttpError(404, 'not_found', `no route for ${ctx.method} ${ctx.path}`);
      }
    } catch (err) {
      if (err instanceof HttpError) {
        ctx.status = err.status;
        ctx.body = {
          error: {
            code: err.code,
            message: redactSecrets(err.message),
            field: err.field === undefined ? undefined : redactSecrets(err.field),
          },
        };
      } else {
        state.log.error({ err, method: ctx.method, route: state.route }, 'request failed');
        ctx.status = 500;
        ctx.body = {
          error: { code: 'internal', message: `internal error (request id ${requestId})` },
        };
      }
    }
    const ms = performance.now() - started;
    const route = state.route ?? 'unmatched';
    metrics.httpRequests.inc({ method: ctx.method, route, status: String(ctx.status) });
    metrics.httpDuration.observe({ method: ctx.method, route }, ms / 1000);
    state.log.info(
      { method: ctx.method, route, status: ctx.status, ms: Math.round(ms * 10) / 10 },
      'request',
    );
  };
}

/** Registers every route of the table on a router; the table and the router stay equal. */
export function registerRoutes(
  router: Router,
  db: Db,
  handlers: RouteHandlers,
  closing: AbortSignal,
): void {
  for (const name of Object.keys(routes) as RouteName[]) {
    const def: RouteDef = routes[name];
    const handler = handlers[name] as (req: RouteRequest<RouteName>) => Promise<unknown>;
    const method = def.method.toLowerCase() as 'get' | 'post' | 'patch' | 'delete';
    router[method](name, def.path, async (ctx) => {
      const state = ctx.state as HttpContextState;
      state.route = def.path;
      const now = Date.now();
      const { auth, recordUse } = await authenticate(db, ctx, def.auth, now);
      const params: Record<string, string> = {};
      for (const [key, value] of Object.entries(ctx.params as Record<string, string>)) {
        const kind = paramKinds[key];
        if (kind && !idSchema(kind).safeParse(value).success) throw notFound(`${kind} ${value}`);
        params[key] = value;
      }
      const query = parseQuery(ctx, def.query ?? noQuery);
      let body: unknown;
      let raw: unknown;
      if (def.body) {
        raw = await readJsonBody(ctx, bodyLimits[name] ?? defaultBodyLimit);
        const parsed = def.body.safeParse(raw);
        if (!parsed.success) throw validationError('invalid_body', parsed.error);
        body = parsed.data;
      }
      const aborted = new AbortController();
      const onClose = () => {
        if (!ctx.res.writableFinished) aborted.abort();
      };
      ctx.res.once('close', onClose);
      try {
        const result = await handler({
          body,
          rawBody: raw,
          query,
          params,
          auth,
          log: state.log,
          signal: AbortSignal.any([aborted.signal, closing]),
        } as RouteRequest<RouteName>);
        // The answer must match the published schema; a mismatch is our bug, not the client's.
        ctx.body = def.response.parse(result);
        ctx.status = def.status ?? 200;
        await recordUse?.();
      } finally {
        ctx.res.off('close', onClose);
      }
    });
  }
}
