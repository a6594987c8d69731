// The authorization matrix: every route of the table against every kind of token, across two
// organizations. A token of the wrong kind is refused (403), a missing, unknown or revoked one
// is refused (401), and another organization's resources answer as if they did not exist (404).
import test from 'ava';
import { ApiClient, ApiError, routes, type RouteName } from '../common/api';
import {
  buildCsr,
  healthReport,
  otherOrganization,
  registeredMachine,
  startTestControlPlane,
} from './helpers/control-plane';

type Call = { params?: Record<string, string>; query?: Record<string, unknown>; body?: unknown };

async function outcome(client: ApiClient, name: RouteName, call: Call): Promise<number> {
  try {
    await (client.call as (n: RouteName, o: Call) => Promise<unknown>)(name, call);
    return 200;
  } catch (err) {
    if (err instanceof ApiError) return err.status;
    throw err;
  }
}

test('every route refuses the wrong token kind and hides other organizations', async (t) => {
  const tcp = await startTestControlPlane(t);
  const a = await registeredMachine(tcp, tcp.user);
  const userB = await otherOrganization(tcp);
  const b = await registeredMachine(tcp, userB, { connection: 'other', project: 'other-app' });
  const extraToken = await tcp.user.call('createToken', { body: { name: 'extra' } });

  const clients = {
    none: tcp.anonymous,
    garbage: tcp.client('not-a-token'),
    unknownUser: tcp.client('swu_' + 'A'.repeat(43)),
    registration: tcp.client(
      a.agent.fleet!.machines[0]?.registrationToken ?? 'swr_' + 'B'.repeat(43),
    ),
    userA: tcp.user,
    userB,
    connectionA: a.agent.api,
    connectionB: b.agent.api,
    machineA: a.machine.api!,
    machineB: b.machine.api!,
  };
  const kindOf = {
    userA: 'user',
    userB: 'user',
    connectionA: 'connection',
    connectionB: 'connection',
    machineA: 'machine',
    machineB: 'machine',
  } as const;

  // A valid call of every route on organization A's resources.
  const calls: Record<RouteName, Call> = {
    getOrganization: {},
    createToken: { body: { name: 'ci' } },
    listTokens: {},
    deleteToken: { params: { tokenId: extraToken.token.id } },
    createConnection: { body: { name: 'another', provider: 'local' } },
    listConnections: {},
    getConnection: { params: { connectionId: a.connection.id } },
    updateConnection: {
      params: { connectionId: a.connection.id },
      body: { settings: { maxMachines: 5 } },
    },
    rotateConnectionToken: { params: { connectionId: a.connection.id } },
    listAudit: { params: { connectionId: a.connection.id } },
    createProject: { body: { name: 'second', connection: a.connection.id } },
    listProjects: {},
    getProject: { params: { projectId: a.project.id } },
    createBuild: {
      body: {
        project: a.project.id,
        platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
      },
    },
    listBuilds: { query: { project: a.project.id } },
    getBuild: { params: { buildId: a.build.id } },
    waitBuilder: { params: { buildId: a.build.id }, query: { platform: 'linux/amd64', wait: 0 } },
    heartbeatBuild: { params: { buildId: a.build.id }, body: {} },
    finishBuild: { params: { buildId: a.build.id }, body: { result: 'canceled' } },
    listMachines: { query: { connection: a.connection.id } },
    listVolumes: { query: { connection: a.connection.id } },
    agentSync: {
      query: { wait: 0 },
      body: {
        agentId: a.agent.agentId,
        agentVersion: 'test',
        knownGeneration: 0,
        observation: a.agent.observation,
      },
    },
    machineRegister: { body: await a.machine.registerBody() },
    machineTask: { query: { generation: 0, wait: 0 } },
    machineStatus: {
      body: {
        taskGeneration: 0,
        buildkit: 'starting',
        health: healthReport,
      },
    },
    machineShutdown: { body: { reason: 'test' } },
  };
  /** Routes whose call names one of organization A's resources. */
  const namesResourceOfA = new Set<RouteName>([
    'deleteToken',
    'getConnection',
    'updateConnection',
    'rotateConnectionToken',
    'listAudit',
    'createProject',
    'getProject',
    'createBuild',
    'listBuilds',
    'getBuild',
    'waitBuilder',
    'heartbeatBuild',
    'finishBuild',
    'listMachines',
    'listVolumes',
  ]);
  // Destructive calls run last, so the matrix sees every resource in place.
  const order = (Object.keys(routes) as RouteName[]).sort(
    (x, y) =>
      Number(
        ['deleteToken', 'rotateConnectionToken', 'finishBuild', 'machineShutdown'].includes(x),
      ) -
      Number(
        ['deleteToken', 'rotateConnectionToken', 'finishBuild', 'machineShutdown'].includes(y),
      ),
  );

  const failures: string[] = [];
  for (const name of order) {
    const need = routes[name].auth;
    if (need === 'none') continue;
    for (const [caller, client] of Object.entries(clients) as [keyof typeof clients, ApiClient][]) {
      if (caller === 'userA' || caller === 'connectionA' || caller === 'machineA') continue;
      const kind = (kindOf as Record<string, string>)[caller];
      const expected =
        caller === 'none' || caller === 'garbage'
          ? 401
          : caller === 'registration' || (caller === 'unknownUser' && need !== 'user')
            ? 403
            : caller === 'unknownUser'
              ? 401
              : kind !== need
                ? 403
                : kind === 'user' && namesResourceOfA.has(name)
                  ? 404
                  : 200;
      const got = await outcome(client, name, calls[name]);
      if (got !== expected) failures.push(`${name} as ${caller}: expected ${expected}, got ${got}`);
    }
    const own =
      need === 'user'
        ? clients.userA
        : need === 'connection'
          ? clients.connectionA
          : clients.machineA;
    const got = await outcome(own, name, calls[name]);
    if (got >= 400) failures.push(`${name} as its owner: got ${got}`);
  }
  t.deepEqual(failures, []);

  // What organization B could list holds nothing of A's.
  const seenByB = JSON.stringify([
    await userB.call('listConnections', {}),
    await userB.call('listProjects', {}),
    await userB.call('listBuilds', {}),
    await userB.call('listMachines', { query: { includeDeleted: true } }),
    await userB.call('listVolumes', {}),
    await userB.call('listTokens', {}),
  ]);
  for (const id of [
    a.connection.id,
    a.project.id,
    a.build.id,
    a.machine.machineId,
    extraToken.token.id,
  ]) {
    t.false(seenByB.includes(id), `organization B sees ${id}`);
  }
  // Connection B's agent gets its own fleet, never A's.
  const syncB = await b.agent.sync();
  t.is(syncB.lease === 'held' && syncB.fleet.connectionId, b.connection.id);
});

test('a revoked token and a rotated connection token stop working at once', async (t) => {
  const tcp = await startTestControlPlane(t);
  const made = await tcp.user.call('createToken', { body: { name: 'short-lived' } });
  const temporary = tcp.client(made.secret);
  t.is((await temporary.call('getOrganization', {})).id, tcp.organizationId);
  await tcp.user.call('deleteToken', { params: { tokenId: made.token.id } });
  t.is(await outcome(temporary, 'getOrganization', {}), 401);

  const a = await registeredMachine(tcp, tcp.user);
  const rotated = await tcp.user.call('rotateConnectionToken', {
    params: { connectionId: a.connection.id },
  });
  t.is(
    await outcome(a.agent.api, 'agentSync', {
      query: { wait: 0 },
      body: {
        agentId: a.agent.agentId,
        agentVersion: 't',
        knownGeneration: 0,
        observation: a.agent.observation,
      },
    }),
    401,
  );
  const fresh = tcp.client(rotated.token);
  const res = await fresh.call('agentSync', {
    query: { wait: 0 },
    body: {
      agentId: a.agent.agentId,
      agentVersion: 't',
      knownGeneration: 0,
      observation: a.agent.observation,
    },
  });
  t.is(res.lease, 'held');
  const { tokens } = await tcp.user.call('listTokens', {});
  t.false(JSON.stringify(tokens).includes(rotated.token), 'listings never show secrets');
});

test('a second agent waits while the first holds the lease', async (t) => {
  const tcp = await startTestControlPlane(t);
  const a = await registeredMachine(tcp, tcp.user);
  const body = (agentId: string) => ({
    agentId,
    agentVersion: 't',
    knownGeneration: 0,
    observation: a.agent.observation,
  });
  const other = await a.agent.api.call('agentSync', {
    query: { wait: 0 },
    body: body('00000000-0000-4000-8000-000000000000'),
  });
  t.is(other.lease, 'wait');
  if (other.lease === 'wait') {
    t.regex(other.reason, new RegExp(a.agent.agentId));
    t.true(other.retryAfterMs > 60_000);
  }
  const again = await a.agent.api.call('agentSync', {
    query: { wait: 0 },
    body: body(a.agent.agentId),
  });
  t.is(again.lease, 'held');
});
