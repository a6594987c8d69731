// The /v1 route table (method, path, who may call it, body, query and response schemas) and a
// typed client over it. The server registers exactly these routes, the OpenAPI document is
// generated from them, and the CLI, cloud-agent and machine-agent call them through ApiClient.
import { Agent, request, type Dispatcher } from 'undici';
import { z } from 'zod';
import * as p from './protocol';

export type AuthKind = 'none' | 'user' | 'connection' | 'machine';

export interface RouteDef {
  method: 'GET' | 'POST' | 'PATCH' | 'DELETE';
  path: string;
  auth: AuthKind;
  summary: string;
  body?: z.ZodType;
  query?: z.ZodType;
  response: z.ZodType;
  /** Success status; 200 unless said otherwise. */
  status?: number;
}

const listQuery = z
  .object({
    limit: z.coerce.number().int().min(1).max(500).default(50),
    /** Return items created before this id (pagination, newest first). */
    before: z.string().max(64).optional(),
  })
  .strict();

const empty = z.object({}).strict();

export const routes = {
  getOrganization: {
    method: 'GET',
    path: '/v1/organization',
    auth: 'user',
    summary: "The caller's organization",
    response: p.organizationSchema,
  },
  createToken: {
    method: 'POST',
    path: '/v1/tokens',
    auth: 'user',
    summary: 'Create a user token; its secret is returned once',
    body: p.tokenCreateSchema,
    response: p.tokenCreatedSchema,
    status: 201,
  },
  listTokens: {
    method: 'GET',
    path: '/v1/tokens',
    auth: 'user',
    summary: "The organization's tokens (never their secrets)",
    response: z.object({ tokens: z.array(p.tokenInfoSchema) }),
  },
  deleteToken: {
    method: 'DELETE',
    path: '/v1/tokens/:tokenId',
    auth: 'user',
    summary: 'Revoke a token',
    response: empty,
  },
  createConnection: {
    method: 'POST',
    path: '/v1/connections',
    auth: 'user',
    summary: 'Create a connection; its agent token is returned once',
    body: p.connectionCreateSchema,
    response: p.connectionCreatedSchema,
    status: 201,
  },
  listConnections: {
    method: 'GET',
    path: '/v1/connections',
    auth: 'user',
    summary: 'Connections of the organization',
    response: z.object({ connections: z.array(p.connectionSchema) }),
  },
  getConnection: {
    method: 'GET',
    path: '/v1/connections/:connectionId',
    auth: 'user',
    summary: 'One connection, with its agent',
    response: p.connectionSchema,
  },
  updateConnection: {
    method: 'PATCH',
    path: '/v1/connections/:connectionId',
    auth: 'user',
    summary: "Change a connection's settings",
    body: p.connectionUpdateSchema,
    response: p.connectionSchema,
  },
  rotateConnectionToken: {
    method: 'POST',
    path: '/v1/connections/:connectionId/token',
    auth: 'user',
    summary: "Replace the connection's agent token; the new one is returned once",
    response: p.connectionCreatedSchema,
  },
  listAudit: {
    method: 'GET',
    path: '/v1/connections/:connectionId/audit',
    auth: 'user',
    summary: "The connection's audit records, newest first",
    query: listQuery.extend({ kind: z.enum(p.auditKinds).optional() }),
    response: z.object({ records: z.array(p.auditRecordSchema) }),
  },
  createProject: {
    method: 'POST',
    path: '/v1/projects',
    auth: 'user',
    summary: 'Create a project bound to a connection',
    body: p.projectCreateSchema,
    response: p.projectSchema,
    status: 201,
  },
  listProjects: {
    method: 'GET',
    path: '/v1/projects',
    auth: 'user',
    summary: 'Projects of the organization',
    response: z.object({ projects: z.array(p.projectSchema) }),
  },
  getProject: {
    method: 'GET',
    path: '/v1/projects/:projectId',
    auth: 'user',
    summary: 'One project',
    response: p.projectSchema,
  },
  createBuild: {
    method: 'POST',
    path: '/v1/builds',
    auth: 'user',
    summary: 'Request a builder per platform for a build; answers at once',
    body: p.buildCreateSchema,
    response: p.buildSchema,
    status: 201,
  },
  listBuilds: {
    method: 'GET',
    path: '/v1/builds',
    auth: 'user',
    summary: 'Builds, newest first',
    query: listQuery.extend({
      project: z.string().max(64).optional(),
      status: z.enum(p.buildStatuses).optional(),
    }),
    response: z.object({ builds: z.array(p.buildSchema) }),
  },
  getBuild: {
    method: 'GET',
    path: '/v1/builds/:buildId',
    auth: 'user',
    summary: 'One build with its builders',
    response: p.buildSchema,
  },
  waitBuilder: {
    method: 'GET',
    path: '/v1/builds/:buildId/builder',
    auth: 'user',
    summary: "Long-poll one platform's builder until it is ready or failed, or the wait ends",
    query: z.object({ platform: p.platformSchema, wait: p.waitSecondsSchema }).strict(),
    response: p.builderSchema,
  },
  heartbeatBuild: {
    method: 'POST',
    path: '/v1/builds/:buildId/heartbeat',
    auth: 'user',
    summary: 'The CLI is still building; keeps the builders assigned',
    body: p.buildHeartbeatSchema,
    response: z.object({ deadline: z.string() }),
  },
  finishBuild: {
    method: 'POST',
    path: '/v1/builds/:buildId/finish',
    auth: 'user',
    summary: 'Report the result; releases the builders',
    body: p.buildFinishSchema,
    response: p.buildSchema,
  },
  listMachines: {
    method: 'GET',
    path: '/v1/machines',
    auth: 'user',
    summary: 'Machines, optionally of one connection',
    query: z
      .object({
        connection: z.string().max(64).optional(),
        includeDeleted: z.union([z.boolean(), z.stringbool()]).default(false),
      })
      .strict(),
    response: z.object({ machines: z.array(p.machineSchema) }),
  },
  listVolumes: {
    method: 'GET',
    path: '/v1/volumes',
    auth: 'user',
    summary: 'Cache volumes, optionally of one connection',
    query: z.object({ connection: z.string().max(64).optional() }).strict(),
    response: z.object({ volumes: z.array(p.volumeSchema) }),
  },
  agentSync: {
    method: 'POST',
    path: '/v1/agent/sync',
    auth: 'connection',
    summary: 'Report observations and apply results; long-poll for the desired fleet',
    query: z.object({ wait: p.waitSecondsSchema }).strict(),
    body: p.syncRequestSchema,
    response: p.syncResponseSchema,
  },
  machineRegister: {
    method: 'POST',
    path: '/v1/machine/register',
    auth: 'none',
    summary: 'A new machine proves itself with its single-use registration token',
    body: p.machineRegisterSchema,
    response: p.machineRegisteredSchema,
    status: 201,
  },
  machineTask: {
    method: 'GET',
    path: '/v1/machine/task',
    auth: 'machine',
    summary: "Long-poll the machine's task; answers at once when newer than `generation`",
    query: z
      .object({ generation: z.coerce.number().int().min(0).default(0), wait: p.waitSecondsSchema })
      .strict(),
    response: p.machineTaskSchema,
  },
  machineStatus: {
    method: 'POST',
    path: '/v1/machine/status',
    auth: 'machine',
    summary: 'BuildKit state and health of the machine',
    body: p.machineStatusSchema,
    response: empty,
  },
  machineShutdown: {
    method: 'POST',
    path: '/v1/machine/shutdown',
    auth: 'machine',
    summary: 'The machine is shutting down',
    body: p.machineShutdownSchema,
    response: empty,
  },
} as const satisfies Record<string, RouteDef>;

export type Routes = typeof routes;
export type RouteName = keyof Routes;
type Def<N extends RouteName> = Routes[N];
type BodyOf<N extends RouteName> =
  Def<N> extends { body: z.ZodType } ? z.input<Def<N>['body']> : undefined;
type QueryOf<N extends RouteName> =
  Def<N> extends { query: z.ZodType } ? z.input<Def<N>['query']> : undefined;
export type ResponseOf<N extends RouteName> = z.output<Def<N>['response']>;
export type PathParams<S extends string> = S extends `${string}:${infer P}/${infer Rest}`
  ? P | PathParams<`/${Rest}`>
  : S extends `${string}:${infer P}`
    ? P
    : never;
type ParamsOf<N extends RouteName> = Record<PathParams<Def<N>['path']>, string>;

export type CallOptions<N extends RouteName> = {
  signal?: AbortSignal;
  /** Defaults to 30 s, plus the long-poll wait when there is one. */
  timeoutMs?: number;
} & (PathParams<Def<N>['path']> extends never ? { params?: undefined } : { params: ParamsOf<N> }) &
  (BodyOf<N> extends undefined ? { body?: undefined } : { body: BodyOf<N> }) &
  (QueryOf<N> extends undefined ? { query?: undefined } : { query?: QueryOf<N> });

/** An error answer of the API, or a failure to reach it (code `unreachable`). */
export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: p.ErrorCode | 'unreachable' | 'bad_response',
    message: string,
    readonly field?: string,
  ) {
    super(message);
  }
}

export interface ApiClientOptions {
  baseUrl: string;
  token?: string;
  /** Extra PEM CA bundle to trust for HTTPS. */
  ca?: string;
  userAgent?: string;
}

export function buildPath(path: string, params: Record<string, string> = {}): string {
  return path.replace(/:([A-Za-z]+)/g, (_, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`missing path parameter ${name}`);
    return encodeURIComponent(value);
  });
}

export class ApiClient {
  private readonly dispatcher: Dispatcher;
  readonly baseUrl: string;

  constructor(private readonly opts: ApiClientOptions) {
    this.baseUrl = opts.baseUrl.replace(/\/+$/, '');
    this.dispatcher = new Agent({
      connect: opts.ca ? { ca: opts.ca } : {},
      keepAliveTimeout: 30_000,
      // Long-polls hold a request for up to 30 s.
      headersTimeout: 0,
      bodyTimeout: 0,
    });
  }

  withToken(token: string): ApiClient {
    return new ApiClient({ ...this.opts, token });
  }

  async call<N extends RouteName>(name: N, options: CallOptions<N>): Promise<ResponseOf<N>> {
    const def: RouteDef = routes[name];
    const url = new URL(
      this.baseUrl + buildPath(def.path, options.params as Record<string, string>),
    );
    const query = (options.query ?? {}) as Record<string, unknown>;
    for (const [k, v] of Object.entries(query))
      if (v !== undefined) url.searchParams.set(k, String(v));
    const wait = typeof query.wait === 'number' ? query.wait : 0;
    const timeoutMs = options.timeoutMs ?? 30_000 + wait * 1000;
    const signals = [AbortSignal.timeout(timeoutMs), ...(options.signal ? [options.signal] : [])];
    const headers: Record<string, string> = {
      accept: 'application/json',
      'user-agent': this.opts.userAgent ?? 'slipway',
    };
    if (this.opts.token) headers.authorization = `Bearer ${this.opts.token}`;
    let body: string | undefined;
    if (options.body !== undefined) {
      headers['content-type'] = 'application/json';
      body = JSON.stringify(options.body);
    }
    let res: Dispatcher.ResponseData;
    try {
      res = await request(url, {
        method: def.method,
        headers,
        body,
        dispatcher: this.dispatcher,
        signal: AbortSignal.any(signals),
      });
    } catch (err) {
      if (options.signal?.aborted) throw options.signal.reason ?? err;
      const why = err instanceof Error ? err.message : String(err);
      throw new ApiError(
        0,
        'unreachable',
        `cannot reach the control plane at ${this.baseUrl}: ${why}`,
      );
    }
    const text = await res.body.text();
    let json: unknown;
    try {
      json = text ? JSON.parse(text) : {};
    } catch {
      throw new ApiError(
        res.statusCode,
        'bad_response',
        `the control plane answered ${res.statusCode} with non-JSON`,
      );
    }
    if (res.statusCode >= 400) {
      const parsed = p.errorBodySchema.safeParse(json);
      if (parsed.success) {
        const e = parsed.data.error;
        throw new ApiError(res.statusCode, e.code, e.message, e.field);
      }
      throw new ApiError(
        res.statusCode,
        'bad_response',
        `the control plane answered ${res.statusCode}`,
      );
    }
    const parsed = def.response.safeParse(json);
    if (!parsed.success) {
      throw new ApiError(
        res.statusCode,
        'bad_response',
        `unexpected answer from ${def.method} ${def.path}: ${parsed.error.issues[0]?.message ?? 'invalid'}`,
      );
    }
    return parsed.data as ResponseOf<N>;
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }
}
