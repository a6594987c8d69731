// The dashboard's client of the public /v1 API: fetch with the signed-in user's bearer token,
// every answer parsed with the wire schemas of common/protocol.ts. The same routes the CLI
// calls through common/api.ts (whose undici client is for Node, not the browser).
import { z } from 'zod';
import * as p from '../../common/protocol';

/** An error answer of the API, or a failure to reach it (code `unreachable`). */
export class DashboardApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

type Query = Record<string, string | number | boolean | undefined>;

async function get<T extends z.ZodType>(
  token: string,
  path: string,
  schema: T,
  query: Query = {},
  signal?: AbortSignal,
): Promise<z.output<T>> {
  const url = new URL(path, window.location.origin);
  for (const [k, v] of Object.entries(query)) if (v !== undefined) url.searchParams.set(k, `${v}`);
  let res: Response;
  try {
    res = await fetch(url, {
      headers: { accept: 'application/json', authorization: `Bearer ${token}` },
      signal,
    });
  } catch (err) {
    if (signal?.aborted) throw err;
    throw new DashboardApiError(0, 'unreachable', 'cannot reach the control plane');
  }
  const json: unknown = await res.json().catch(() => undefined);
  if (!res.ok) {
    const parsed = p.errorBodySchema.safeParse(json);
    if (parsed.success) {
      throw new DashboardApiError(res.status, parsed.data.error.code, parsed.data.error.message);
    }
    throw new DashboardApiError(res.status, 'bad_response', `the API answered ${res.status}`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new DashboardApiError(
      res.status,
      'bad_response',
      `unexpected answer from ${path}: ${issue ? `${issue.path.join('.')} ${issue.message}` : 'invalid'}`,
    );
  }
  return parsed.data;
}

const list = <K extends string, T extends z.ZodType>(key: K, item: T) =>
  z.object({ [key]: z.array(item) } as Record<K, z.ZodArray<T>>);

/** Most builds a listing returns (the API's limit); charts cover this many. */
export const buildHistoryLimit = 500;

export function dashboardApi(token: string) {
  return {
    organization: (signal?: AbortSignal) =>
      get(token, '/v1/organization', p.organizationSchema, {}, signal),
    connections: async (signal?: AbortSignal) =>
      (await get(token, '/v1/connections', list('connections', p.connectionSchema), {}, signal))
        .connections,
    projects: async (signal?: AbortSignal) =>
      (await get(token, '/v1/projects', list('projects', p.projectSchema), {}, signal)).projects,
    machines: async (includeDeleted: boolean, signal?: AbortSignal) =>
      (
        await get(
          token,
          '/v1/machines',
          list('machines', p.machineSchema),
          { includeDeleted: includeDeleted || undefined },
          signal,
        )
      ).machines,
    builds: async (signal?: AbortSignal) =>
      (
        await get(
          token,
          '/v1/builds',
          list('builds', p.buildSchema),
          { limit: buildHistoryLimit },
          signal,
        )
      ).builds,
    build: (buildId: string, signal?: AbortSignal) =>
      get(token, `/v1/builds/${encodeURIComponent(buildId)}`, p.buildSchema, {}, signal),
    audit: async (connectionId: string, kind: p.AuditRecord['kind'] | '', signal?: AbortSignal) =>
      (
        await get(
          token,
          `/v1/connections/${encodeURIComponent(connectionId)}/audit`,
          list('records', p.auditRecordSchema),
          { kind: kind || undefined, limit: 100 },
          signal,
        )
      ).records,
  };
}

export type DashboardApi = ReturnType<typeof dashboardApi>;
