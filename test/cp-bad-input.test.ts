// Bad input gets a 4xx with a stable code naming the field, never a 500, and changes nothing:
// examples of each kind, then fast-check properties over the bodies of every route that takes one.
import test from 'ava';
import fc from 'fast-check';
import { routes, buildPath, type RouteName } from '../common/api';
import { errorBodySchema } from '../common/protocol';
import type { Db } from '../control-plane/db';
import {
  buildCsr,
  registeredMachine,
  startTestControlPlane,
  type TestControlPlane,
} from './helpers/control-plane';
import { dataTables } from './helpers/cp-process';

/** Everything the database holds, to compare before and after a refused request. */
async function snapshot(db: Db): Promise<string> {
  const parts = await Promise.all(dataTables.map((table) => db(table).select()));
  return JSON.stringify(parts);
}

async function send(
  tcp: TestControlPlane,
  token: string | undefined,
  method: string,
  path: string,
  body: string | undefined,
  contentType = 'application/json',
) {
  const headers: Record<string, string> = {};
  if (token) headers.authorization = `Bearer ${token}`;
  if (body !== undefined) headers['content-type'] = contentType;
  const res = await fetch(tcp.url + path, { method, headers, body });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, json };
}

async function world(t: Parameters<typeof startTestControlPlane>[0]) {
  const tcp = await startTestControlPlane(t);
  const a = await registeredMachine(tcp, tcp.user);
  return { tcp, a, userToken: tcp.userToken };
}

test('bad requests of each kind get their code and field, and change nothing', async (t) => {
  const { tcp, a, userToken } = await world(t);
  await tcp.user.call('getOrganization', {}); // token use is recorded once a minute; do it now
  const before = await snapshot(tcp.cp.db);
  const cases: {
    what: string;
    method: string;
    path: string;
    body?: string;
    type?: string;
    status: number;
    code: string;
    field?: string;
  }[] = [
    {
      what: 'not JSON',
      method: 'POST',
      path: '/v1/projects',
      body: '{"name":',
      status: 400,
      code: 'invalid_body',
    },
    {
      what: 'empty body',
      method: 'POST',
      path: '/v1/projects',
      body: '',
      status: 400,
      code: 'invalid_body',
    },
    {
      what: 'form body',
      method: 'POST',
      path: '/v1/projects',
      body: 'name=x',
      type: 'application/x-www-form-urlencoded',
      status: 415,
      code: 'unsupported_media_type',
      field: 'content-type',
    },
    {
      what: 'unknown field',
      method: 'POST',
      path: '/v1/projects',
      body: JSON.stringify({ name: 'x', connection: a.connection.id, color: 'red' }),
      status: 400,
      code: 'invalid_body',
      field: 'color',
    },
    {
      what: 'missing field',
      method: 'POST',
      path: '/v1/projects',
      body: JSON.stringify({ name: 'x' }),
      status: 400,
      code: 'invalid_body',
      field: 'connection',
    },
    {
      what: 'bad name',
      method: 'POST',
      path: '/v1/projects',
      body: JSON.stringify({ name: 'Bad Name', connection: a.connection.id }),
      status: 400,
      code: 'invalid_body',
      field: 'name',
    },
    {
      what: 'array body',
      method: 'POST',
      path: '/v1/tokens',
      body: '[]',
      status: 400,
      code: 'invalid_body',
    },
    {
      what: 'nested bad field',
      method: 'PATCH',
      path: `/v1/connections/${a.connection.id}`,
      body: JSON.stringify({ settings: { maxMachines: 0 } }),
      status: 400,
      code: 'invalid_body',
      field: 'settings.maxMachines',
    },
    {
      what: 'bad CSR',
      method: 'POST',
      path: '/v1/builds',
      body: JSON.stringify({
        project: a.project.id,
        platforms: [
          {
            platform: 'linux/amd64',
            csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----',
          },
        ],
      }),
      status: 400,
      code: 'invalid_csr',
      field: 'platforms.0.csr',
    },
    {
      what: 'unsupported platform',
      method: 'POST',
      path: '/v1/builds',
      body: JSON.stringify({
        project: a.project.id,
        platforms: [{ platform: 'linux/arm64', csr: (await buildCsr()).csr }],
      }),
      status: 400,
      code: 'unsupported_platform',
      field: 'platforms.0.platform',
    },
    {
      what: 'unknown project',
      method: 'POST',
      path: '/v1/builds',
      body: JSON.stringify({
        project: 'nope',
        platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
      }),
      status: 404,
      code: 'not_found',
      field: 'project',
    },
    {
      what: 'unknown query parameter',
      method: 'GET',
      path: '/v1/projects?color=red',
      status: 400,
      code: 'invalid_query',
      field: 'color',
    },
    {
      what: 'repeated query parameter',
      method: 'GET',
      path: '/v1/builds?limit=1&limit=2',
      status: 400,
      code: 'invalid_query',
      field: 'limit',
    },
    {
      what: 'wait too long',
      method: 'GET',
      path: `/v1/builds/${a.build.id}/builder?platform=linux/amd64&wait=999`,
      status: 400,
      code: 'invalid_query',
      field: 'wait',
    },
    {
      what: 'bad platform',
      method: 'GET',
      path: `/v1/builds/${a.build.id}/builder?platform=windows`,
      status: 400,
      code: 'invalid_query',
      field: 'platform',
    },
    {
      what: 'platform not in the build',
      method: 'GET',
      path: `/v1/builds/${a.build.id}/builder?platform=linux/arm64`,
      status: 404,
      code: 'not_found',
      field: 'platform',
    },
    {
      what: 'malformed id',
      method: 'GET',
      path: '/v1/builds/..%2F..%2Fetc',
      status: 404,
      code: 'not_found',
    },
    { what: 'unknown route', method: 'GET', path: '/v1/nothing', status: 404, code: 'not_found' },
    {
      what: 'wrong method',
      method: 'PUT',
      path: '/v1/projects',
      body: '{}',
      status: 404,
      code: 'not_found',
    },
    {
      what: 'bad pagination anchor',
      method: 'GET',
      path: '/v1/builds?before=bld_nonexistent00',
      status: 400,
      code: 'invalid_query',
      field: 'before',
    },
  ];
  for (const c of cases) {
    const res = await send(tcp, userToken, c.method, c.path, c.body, c.type);
    t.is(res.status, c.status, c.what);
    const parsed = errorBodySchema.safeParse(res.json);
    t.true(parsed.success, `${c.what}: error body`);
    if (!parsed.success) continue;
    t.is(parsed.data.error.code as string, c.code, c.what);
    t.is(parsed.data.error.field, c.field, c.what);
    t.true(parsed.data.error.message.length > 10, c.what);
  }
  t.is(await snapshot(tcp.cp.db), before, 'nothing was written');
});

test('oversized bodies are refused: 1 MB in general, 4 MB for the agent sync', async (t) => {
  const { tcp, a, userToken } = await world(t);
  const before = await snapshot(tcp.cp.db);
  const big = JSON.stringify({ name: 'x', connection: 'y'.repeat(1024 * 1024 + 10) });
  const res = await send(tcp, userToken, 'POST', '/v1/projects', big);
  t.is(res.status, 413);
  t.is((res.json as { error: { code: string } }).error.code, 'payload_too_large');

  // Two megabytes of observation is a valid sync; over four is too much.
  const machines = Array.from({ length: 5000 }, (_, i) => ({
    id: `mch_pad${String(i).padStart(10, '0')}`,
    state: 'running',
    address: 'a'.repeat(255),
    providerId: 'p'.repeat(128),
  }));
  const sync = (padding: string) =>
    JSON.stringify({
      agentId: a.agent.agentId,
      agentVersion: 't',
      knownGeneration: 0,
      observation: { observedAt: new Date().toISOString(), machines, volumes: [] },
    }) + padding;
  const twoMb = sync('');
  t.true(twoMb.length > 2 * 1024 * 1024 && twoMb.length < 4 * 1024 * 1024, `${twoMb.length} bytes`);
  const ok = await send(tcp, a.connectionToken, 'POST', '/v1/agent/sync?wait=0', twoMb);
  t.is(ok.status, 200);
  const refused = await send(
    tcp,
    a.connectionToken,
    'POST',
    '/v1/agent/sync?wait=0',
    sync(' '.repeat(2 * 1024 * 1024)),
  );
  t.is(refused.status, 413);
  void before;
});

/** A valid body for every route that takes one, on the world's resources. */
async function validBodies(
  w: Awaited<ReturnType<typeof world>>,
): Promise<
  Partial<Record<RouteName, { path: string; token: string; body: Record<string, unknown> }>>
> {
  const { a, userToken, tcp } = w;
  const machineToken = a.machine.token!;
  const current = await tcp.cp
    .db('machines')
    .where({ id: a.machine.machineId })
    .first('task_generation');
  return {
    createToken: { path: '/v1/tokens', token: userToken, body: { name: 'fuzz' } },
    createConnection: {
      path: '/v1/connections',
      token: userToken,
      body: { name: 'fuzz', provider: 'local', settings: { maxMachines: 3 } },
    },
    updateConnection: {
      path: buildPath(routes.updateConnection.path, { connectionId: a.connection.id }),
      token: userToken,
      body: { settings: { idleTimeoutSeconds: 60 } },
    },
    createProject: {
      path: '/v1/projects',
      token: userToken,
      body: { name: 'fuzz', connection: a.connection.id },
    },
    createBuild: {
      path: '/v1/builds',
      token: userToken,
      body: {
        project: a.project.id,
        platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
        deadlineSeconds: 600,
      },
    },
    heartbeatBuild: {
      path: buildPath(routes.heartbeatBuild.path, { buildId: a.build.id }),
      token: userToken,
      body: {},
    },
    finishBuild: {
      path: buildPath(routes.finishBuild.path, { buildId: a.build.id }),
      token: userToken,
      body: { result: 'succeeded', buildMs: 5 },
    },
    agentSync: {
      path: '/v1/agent/sync?wait=0',
      token: a.connectionToken,
      body: {
        agentId: a.agent.agentId,
        agentVersion: 't',
        knownGeneration: 0,
        observation: a.agent.observation,
        applies: [],
      },
    },
    machineRegister: {
      path: '/v1/machine/register',
      token: '',
      body: await a.machine.registerBody('linux/amd64', (await buildCsr()).csr),
    },
    machineStatus: {
      path: '/v1/machine/status',
      token: machineToken,
      body: {
        taskGeneration: Number(current.task_generation),
        buildkit: 'ready',
        health: {
          buildkitdAlive: true,
          buildkitdRestarts: 0,
          cacheBytesUsed: 1,
          cacheBytesTotal: 2,
          inodesUsed: 1,
          inodesTotal: 2,
        },
      },
    },
    machineShutdown: {
      path: '/v1/machine/shutdown',
      token: machineToken,
      body: { reason: 'fuzz' },
    },
  };
}

/** A body that is probably wrong: the valid one with a field replaced, removed or added, or any JSON. */
function mutated(valid: Record<string, unknown>): fc.Arbitrary<string> {
  const keys = Object.keys(valid);
  const replaced = keys.length
    ? fc
        .tuple(fc.constantFrom(...keys), fc.jsonValue())
        .map(([k, v]) => JSON.stringify({ ...valid, [k]: v }))
    : fc.constant('{"x":1}');
  const removed = keys.length
    ? fc.constantFrom(...keys).map((k) => {
        const copy = { ...valid };
        delete copy[k];
        return JSON.stringify(copy);
      })
    : fc.constant('null');
  const added = fc
    .tuple(fc.string({ minLength: 1, maxLength: 8 }), fc.jsonValue())
    .filter(([k]) => !(k in valid))
    .map(([k, v]) => JSON.stringify({ ...valid, [k]: v }));
  return fc.oneof(
    replaced,
    removed,
    added,
    fc.jsonValue().map((v) => JSON.stringify(v)),
    fc.string({ maxLength: 64 }),
  );
}

test('property: bodies that are wrong in any way never get a 500 and never write', async (t) => {
  const w = await world(t);
  const bodies = await validBodies(w);
  let refused = 0;
  for (const [name, valid] of Object.entries(bodies) as [
    RouteName,
    { path: string; token: string; body: Record<string, unknown> },
  ][]) {
    const method = routes[name].method;
    await fc.assert(
      fc.asyncProperty(mutated(valid.body), async (body) => {
        const before = await snapshot(w.tcp.cp.db);
        const res = await send(w.tcp, valid.token || undefined, method, valid.path, body);
        if (res.status >= 500) return false;
        if (res.status >= 400) {
          refused++;
          if (!errorBodySchema.safeParse(res.json).success) return false;
          return (await snapshot(w.tcp.cp.db)) === before;
        }
        return true;
      }),
      { numRuns: 60 },
    );
  }
  t.true(refused > 400, `${refused} refused bodies`);
});

test('property: query strings and path ids of any shape never get a 500 and never write', async (t) => {
  const w = await world(t);
  const { a } = w;
  const targets: { path: string; token: string }[] = [
    { path: buildPath(routes.waitBuilder.path, { buildId: a.build.id }), token: w.userToken },
    { path: '/v1/builds', token: w.userToken },
    { path: '/v1/machines', token: w.userToken },
    {
      path: buildPath(routes.listAudit.path, { connectionId: a.connection.id }),
      token: w.userToken,
    },
    { path: '/v1/machine/task', token: a.machine.token! },
  ];
  const param = fc.tuple(
    fc.oneof(
      fc.constantFrom(
        'wait',
        'platform',
        'limit',
        'before',
        'generation',
        'includeDeleted',
        'kind',
        'project',
      ),
      fc.string({ maxLength: 8 }),
    ),
    fc.oneof(
      fc.string({ maxLength: 16 }),
      fc.integer().map(String),
      fc.constantFrom('true', 'false', '-1', '1e9', 'linux/amd64', ''),
    ),
  );
  const before = await snapshot(w.tcp.cp.db);
  await fc.assert(
    fc.asyncProperty(
      fc.constantFrom(...targets),
      fc.array(param, { maxLength: 4 }),
      async (target, params) => {
        const query = new URLSearchParams(params).toString();
        // Only quick answers: a valid long-poll would hold the property for its whole wait.
        const res = await send(
          w.tcp,
          target.token,
          'GET',
          `${target.path}?${query}&wait=0`.replace(/^([^?]*)\?&/, '$1?'),
          undefined,
        );
        return res.status < 500;
      },
    ),
    { numRuns: 300 },
  );
  await fc.assert(
    fc.asyncProperty(fc.string({ maxLength: 40 }), async (id) => {
      const res = await send(
        w.tcp,
        w.userToken,
        'GET',
        `/v1/builds/${encodeURIComponent(id)}`,
        undefined,
      );
      return res.status === 404 || res.status === 200;
    }),
    { numRuns: 200 },
  );
  // Reads write only signs of life (the CLI's on its build, the machine's) and the first use of
  // a token; nothing else changed.
  const strip = (snap: string) =>
    snap
      .replace(/"last_seen_at":\d+/g, '')
      .replace(/"session_at":\d+/g, '')
      .replace(/"(last|token)_used_at":(\d+|null)/g, '');
  t.is(strip(await snapshot(w.tcp.cp.db)), strip(before));
});
