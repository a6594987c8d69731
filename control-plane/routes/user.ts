// What users and the CLI call with a user token: the organization and its tokens, connections,
// projects, builds with their builders, machines, volumes and audit records. Every lookup is
// scoped to the caller's organization; another organization's resource is simply not found.
import type { Knex } from 'knex';
import {
  connectionSettingsSchema,
  hostPlatform,
  type ConnectionSettings,
} from '../../common/protocol';
import { checkClientCsr, CsrError } from '../ca';
import { num, type Db } from '../db';
import { HttpError, notFound, type RouteHandlers, type UserAuth } from '../http';
import { newId, isId } from '../ids';
import { longPoll, topics } from '../notifier';
import { newToken, hashToken } from '../tokens';
import {
  auditView,
  buildView,
  builderView,
  connectionView,
  machineView,
  organizationView,
  projectView,
  tokenView,
  volumeView,
} from '../views';
import type { Services } from './services';

type Row = Record<string, unknown>;
type UserHandlers = Pick<
  RouteHandlers,
  | 'getOrganization'
  | 'createToken'
  | 'listTokens'
  | 'deleteToken'
  | 'createConnection'
  | 'listConnections'
  | 'getConnection'
  | 'updateConnection'
  | 'rotateConnectionToken'
  | 'listAudit'
  | 'createProject'
  | 'listProjects'
  | 'getProject'
  | 'createBuild'
  | 'listBuilds'
  | 'getBuild'
  | 'waitBuilder'
  | 'heartbeatBuild'
  | 'finishBuild'
  | 'listMachines'
  | 'listVolumes'
>;

function isUniqueViolation(err: unknown): boolean {
  const e = err as { code?: string; message?: string };
  return (
    e.code === 'SQLITE_CONSTRAINT' ||
    e.code === '23505' ||
    /UNIQUE constraint/.test(e.message ?? '')
  );
}

/** Settings as sent: only the fields given, so defaults never overwrite what was set before. */
function givenSettings(raw: unknown): Record<string, unknown> {
  const settings = (raw as { settings?: unknown } | undefined)?.settings;
  return settings && typeof settings === 'object' ? (settings as Record<string, unknown>) : {};
}

/** Pagination over (created_at, id), newest first; `before` is an id from the previous page. */
async function page(
  db: Db,
  q: Knex.QueryBuilder,
  table: string,
  before: string | undefined,
  limit: number,
): Promise<Row[]> {
  if (before) {
    const anchor = await db(table).where({ id: before }).first('created_at');
    if (!anchor)
      throw new HttpError(
        400,
        'invalid_query',
        `query parameter before: no item ${before}`,
        'before',
      );
    q.where((w) =>
      w
        .where('created_at', '<', anchor.created_at)
        .orWhere((x) => x.where('created_at', anchor.created_at).andWhere('id', '<', before)),
    );
  }
  return q
    .orderBy([
      { column: 'created_at', order: 'desc' },
      { column: 'id', order: 'desc' },
    ])
    .limit(limit);
}

export function userRoutes(svc: Services): UserHandlers {
  const { db } = svc;

  const connectionByRef = async (auth: UserAuth, ref: string, field?: string) => {
    const row = await db('connections')
      .where({ organization_id: auth.organizationId })
      .andWhere(isId('connection', ref) ? { id: ref } : { name: ref })
      .first();
    if (!row) throw notFound(`connection ${ref}`, field);
    return row;
  };
  const projectByRef = async (auth: UserAuth, ref: string, field?: string) => {
    const row = await db('projects')
      .where({ organization_id: auth.organizationId })
      .andWhere(isId('project', ref) ? { id: ref } : { name: ref })
      .first();
    if (!row) throw notFound(`project ${ref}`, field);
    return row;
  };
  const buildById = async (auth: UserAuth, id: string) => {
    const row = await db('builds').where({ id, organization_id: auth.organizationId }).first();
    if (!row) throw notFound(`build ${id}`);
    return row;
  };
  const loadBuilds = async (builds: Row[]) => {
    const ids = builds.map((b) => String(b.id));
    const requests = ids.length ? await db('builder_requests').whereIn('build_id', ids) : [];
    const machineIds = [...new Set(requests.map((r) => r.machine_id).filter((x) => x))] as string[];
    const machines = machineIds.length ? await db('machines').whereIn('id', machineIds) : [];
    const byId = new Map(machines.map((m) => [String(m.id), m]));
    return builds.map((b) => buildView(b, requests, byId));
  };
  const issueConnectionToken = async (trx: Db, auth: UserAuth, connection: Row, now: number) => {
    const secret = newToken('connection');
    await trx('tokens').where({ connection_id: connection.id, kind: 'connection' }).delete();
    await trx('tokens').insert({
      id: newId('token'),
      organization_id: auth.organizationId,
      kind: 'connection',
      name: connection.name,
      hash: hashToken(secret),
      connection_id: connection.id,
      created_at: now,
    });
    return secret;
  };
  /** The CLI is alive while it long-polls or heartbeats. */
  const seen = (buildId: string) =>
    db('builds')
      .where({ id: buildId })
      .whereIn('status', ['pending', 'running'])
      .update({ last_seen_at: Date.now() });

  return {
    async getOrganization({ auth }) {
      const row = await db('organizations').where({ id: auth.organizationId }).first();
      return organizationView(row);
    },

    async createToken({ auth, body }) {
      const secret = newToken('user');
      const row = {
        id: newId('token'),
        organization_id: auth.organizationId,
        kind: 'user',
        name: body.name,
        hash: hashToken(secret),
        connection_id: null,
        created_at: Date.now(),
        last_used_at: null,
      };
      await db('tokens').insert(row);
      return { token: tokenView(row), secret };
    },

    async listTokens({ auth }) {
      const rows = await db('tokens')
        .where({ organization_id: auth.organizationId })
        .orderBy('created_at');
      return { tokens: rows.map(tokenView) };
    },

    async deleteToken({ auth, params }) {
      const n = await db('tokens')
        .where({ id: params.tokenId, organization_id: auth.organizationId })
        .delete();
      if (!n) throw notFound(`token ${params.tokenId}`);
      return {};
    },

    async createConnection({ auth, body, rawBody }) {
      const now = Date.now();
      const given = givenSettings(rawBody);
      const settings = connectionSettingsSchema.parse({
        ...(body.provider === 'local' ? { platforms: [hostPlatform() ?? 'linux/amd64'] } : {}),
        ...given,
      });
      const row = {
        id: newId('connection'),
        organization_id: auth.organizationId,
        name: body.name,
        provider: body.provider,
        settings: JSON.stringify(settings),
        aws: body.aws ? JSON.stringify(body.aws) : null,
        created_at: now,
      };
      let secret = '';
      try {
        await db.transaction(async (trx) => {
          await trx('connections').insert(row);
          secret = await issueConnectionToken(trx, auth, row, now);
        });
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new HttpError(
            409,
            'already_exists',
            `a connection named ${body.name} already exists`,
            'name',
          );
        }
        throw err;
      }
      await svc.reconciler.reconcile(row.id);
      const created = await db('connections').where({ id: row.id }).first();
      return { connection: connectionView(created), token: secret };
    },

    async listConnections({ auth }) {
      const rows = await db('connections')
        .where({ organization_id: auth.organizationId })
        .orderBy('created_at');
      return { connections: rows.map(connectionView) };
    },

    async getConnection({ auth, params }) {
      return connectionView(await connectionByRef(auth, params.connectionId));
    },

    async updateConnection({ auth, params, body, rawBody }) {
      const row = await connectionByRef(auth, params.connectionId);
      const current = connectionSettingsSchema.parse(JSON.parse(String(row.settings)));
      const merged: ConnectionSettings = connectionSettingsSchema.parse({
        ...current,
        ...givenSettings(rawBody),
      });
      if (row.provider === 'local' && body.aws) {
        throw new HttpError(400, 'invalid_body', 'field aws: is only for provider aws', 'aws');
      }
      await db('connections')
        .where({ id: row.id })
        .update({
          settings: JSON.stringify(merged),
          ...(body.aws ? { aws: JSON.stringify(body.aws) } : {}),
        });
      await svc.reconciler.reconcile(String(row.id));
      return connectionView(await db('connections').where({ id: row.id }).first());
    },

    async rotateConnectionToken({ auth, params }) {
      const row = await connectionByRef(auth, params.connectionId);
      const secret = await db.transaction((trx) =>
        issueConnectionToken(trx, auth, row, Date.now()),
      );
      return { connection: connectionView(row), token: secret };
    },

    async listAudit({ auth, params, query }) {
      const conn = await connectionByRef(auth, params.connectionId);
      const q = db('audit_records').where({ connection_id: conn.id });
      if (query.kind) q.andWhere({ kind: query.kind });
      const rows = await page(db, q, 'audit_records', query.before, query.limit);
      return { records: rows.map(auditView) };
    },

    async createProject({ auth, body }) {
      const conn = await connectionByRef(auth, body.connection, 'connection');
      const row = {
        id: newId('project'),
        organization_id: auth.organizationId,
        connection_id: conn.id,
        name: body.name,
        created_at: Date.now(),
      };
      try {
        await db('projects').insert(row);
      } catch (err) {
        if (isUniqueViolation(err)) {
          throw new HttpError(
            409,
            'already_exists',
            `a project named ${body.name} already exists`,
            'name',
          );
        }
        throw err;
      }
      return projectView(row);
    },

    async listProjects({ auth }) {
      const rows = await db('projects')
        .where({ organization_id: auth.organizationId })
        .orderBy('created_at');
      return { projects: rows.map(projectView) };
    },

    async getProject({ auth, params }) {
      return projectView(await projectByRef(auth, params.projectId));
    },

    async createBuild({ auth, body }) {
      const project = await projectByRef(auth, body.project, 'project');
      const conn = (await db('connections').where({ id: project.connection_id }).first())!;
      const settings = connectionSettingsSchema.parse(JSON.parse(String(conn.settings)));
      for (const [i, p] of body.platforms.entries()) {
        if (!settings.platforms.includes(p.platform)) {
          throw new HttpError(
            400,
            'unsupported_platform',
            `connection ${conn.name} does not build for ${p.platform} (it builds for ${settings.platforms.join(', ')})`,
            `platforms.${i}.platform`,
          );
        }
        try {
          await checkClientCsr(p.csr);
        } catch (err) {
          if (err instanceof CsrError)
            throw new HttpError(400, 'invalid_csr', err.message, `platforms.${i}.csr`);
          throw err;
        }
      }
      const now = Date.now();
      const build = {
        id: newId('build'),
        organization_id: auth.organizationId,
        project_id: project.id,
        connection_id: conn.id,
        status: 'pending',
        description: body.description ?? null,
        created_by: auth.tokenName,
        created_at: now,
        deadline: now + body.deadlineSeconds * 1000,
        last_seen_at: now,
      };
      await db.transaction(async (trx) => {
        await trx('builds').insert(build);
        await trx('builder_requests').insert(
          body.platforms.map((p) => ({
            build_id: build.id,
            platform: p.platform,
            connection_id: conn.id,
            project_id: project.id,
            csr: p.csr,
            state: 'pending',
            reason: 'waiting for the planner',
            acquire_deadline: now + settings.acquireDeadlineSeconds * 1000,
            requested_at: now,
          })),
        );
      });
      svc.log.info(
        {
          buildId: build.id,
          projectId: project.id,
          platforms: body.platforms.map((p) => p.platform),
        },
        'build requested',
      );
      await svc.reconciler.reconcile(String(conn.id));
      const [view] = await loadBuilds([(await db('builds').where({ id: build.id }).first())!]);
      return view!;
    },

    async listBuilds({ auth, query }) {
      const q = db('builds').where({ organization_id: auth.organizationId });
      if (query.project)
        q.andWhere({ project_id: (await projectByRef(auth, query.project, 'project')).id });
      if (query.status) q.andWhere({ status: query.status });
      return { builds: await loadBuilds(await page(db, q, 'builds', query.before, query.limit)) };
    },

    async getBuild({ auth, params }) {
      const [view] = await loadBuilds([await buildById(auth, params.buildId)]);
      return view!;
    },

    async waitBuilder({ auth, params, query, signal }) {
      const build = await buildById(auth, params.buildId);
      const key = { build_id: build.id, platform: query.platform };
      if (!(await db('builder_requests').where(key).first('state'))) {
        throw notFound(`a ${query.platform} builder of build ${build.id}`, 'platform');
      }
      await seen(String(build.id));
      const waitStarted = performance.now();
      const read = async () => {
        const req = (await db('builder_requests').where(key).first())!;
        const machine = req.machine_id
          ? await db('machines').where({ id: req.machine_id }).first()
          : undefined;
        return { req, machine };
      };
      const settled = async () => {
        const r = await read();
        return r.req.state === 'pending' ? undefined : r;
      };
      const { req, machine } = await longPoll(
        svc.notifier,
        [topics.build(String(build.id))],
        query.wait * 1000,
        signal,
        settled,
        read,
      );
      if (req.state === 'ready' && req.answered_at === null) {
        const now = Date.now();
        await db('builder_requests')
          .where(key)
          .whereNull('answered_at')
          .update({ answered_at: now });
        req.answered_at = now;
      }
      // A long wait is a sign of life at its end too; a quick answer needs no second write.
      if (performance.now() - waitStarted > 5000) await seen(String(build.id));
      return builderView(req, machine);
    },

    async heartbeatBuild({ auth, params }) {
      const build = await buildById(auth, params.buildId);
      const n = await seen(String(build.id));
      if (!n) {
        throw new HttpError(
          409,
          'build_finished',
          `build ${build.id} has already ended (${build.status}${build.error ? `: ${build.error}` : ''})`,
        );
      }
      return { deadline: new Date(num(build.deadline)).toISOString() };
    },

    async finishBuild({ auth, params, body }) {
      const build = await buildById(auth, params.buildId);
      const now = Date.now();
      const ended = await db.transaction(async (trx) => {
        const n = await trx('builds')
          .where({ id: build.id })
          .whereIn('status', ['pending', 'running'])
          .update({
            status: body.result,
            finished_at: now,
            error: body.error ?? null,
            build_ms: body.buildMs ?? null,
          });
        if (!n) return false;
        await trx('builder_requests')
          .where({ build_id: build.id })
          .whereIn('state', ['pending', 'ready'])
          .update({ state: 'released', reason: `the build ${body.result}` });
        return true;
      });
      if (!ended) {
        const current = (await db('builds').where({ id: build.id }).first())!;
        // A retried finish with the same result is answered as the first one was.
        if (current.status !== body.result) {
          throw new HttpError(
            409,
            'build_finished',
            `build ${build.id} has already ended (${current.status})`,
          );
        }
      } else {
        svc.log.info(
          { buildId: build.id, result: body.result, buildMs: body.buildMs },
          'build finished',
        );
        svc.notifier.notify([topics.build(String(build.id))]);
        await svc.reconciler.reconcile(String(build.connection_id));
      }
      const [view] = await loadBuilds([(await db('builds').where({ id: build.id }).first())!]);
      return view!;
    },

    async listMachines({ auth, query }) {
      const q = db('machines').where({ organization_id: auth.organizationId });
      if (query.connection)
        q.andWhere({
          connection_id: (await connectionByRef(auth, query.connection, 'connection')).id,
        });
      if (!query.includeDeleted) q.whereNot({ status: 'deleted' });
      const rows = await q.orderBy([{ column: 'created_at' }, { column: 'id' }]);
      return { machines: rows.map(machineView) };
    },

    async listVolumes({ auth, query }) {
      const q = db('volumes')
        .join('connections', 'volumes.connection_id', 'connections.id')
        .where('connections.organization_id', auth.organizationId)
        .select('volumes.*');
      if (query.connection)
        q.andWhere(
          'volumes.connection_id',
          (await connectionByRef(auth, query.connection, 'connection')).id,
        );
      const rows = await q.orderBy([{ column: 'volumes.created_at' }, { column: 'volumes.id' }]);
      return {
        volumes: rows.map((r) =>
          volumeView(r, r.observed_attached_to ? String(r.observed_attached_to) : null),
        ),
      };
    },
  };
}
