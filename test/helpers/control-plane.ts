// A real control plane on loopback over a real SQLite file in a temporary directory, with an
// organization and clients for the three sides: the CLI (user token), the cloud-agent
// (connection token) and machine-agents (scripted here with their own keys and CSRs).
import { randomUUID } from 'node:crypto';
import type { ExecutionContext } from 'ava';
import pino from 'pino';
import { ApiClient } from '../../common/api';
import * as pki from '../../common/pki';
import type {
  Build,
  DesiredFleet,
  Observation,
  Platform,
  SyncRequest,
  SyncResponse,
} from '../../common/protocol';
import { bootstrapOrganization } from '../../control-plane/bootstrap';
import { builderServerName } from '../../common/protocol';
import {
  startControlPlane,
  type ControlPlane,
  type ControlPlaneOptions,
} from '../../control-plane/server';
import { tempDir } from './tmp';

export interface TestControlPlane {
  cp: ControlPlane;
  url: string;
  dataDir: string;
  /** The first organization's admin, as the CLI. */
  user: ApiClient;
  userToken: string;
  organizationId: string;
  /** An unauthenticated client. */
  anonymous: ApiClient;
  client(token?: string): ApiClient;
}

/** What the scripted sides need of a control plane, in this process or its own: its clients. */
export type ApiClients = Pick<TestControlPlane, 'user' | 'anonymous' | 'client'>;

export async function startTestControlPlane(
  t: ExecutionContext,
  options: Partial<ControlPlaneOptions> = {},
): Promise<TestControlPlane> {
  const dataDir = options.dataDir ?? (await tempDir(t, 'cp'));
  const cp = await startControlPlane({
    dataDir,
    logger: pino({ level: process.env.SLIPWAY_TEST_LOG ?? 'silent' }),
    ...options,
  });
  t.teardown(() => cp.close());
  const { organization, token } = await bootstrapOrganization(
    cp.db,
    `org-${randomUUID().slice(0, 8)}`,
  );
  const clients: ApiClient[] = [];
  const client = (tok?: string) => {
    const c = new ApiClient({ baseUrl: cp.url, token: tok });
    clients.push(c);
    return c;
  };
  t.teardown(() => Promise.all(clients.map((c) => c.close())).then(() => undefined));
  return {
    cp,
    url: cp.url,
    dataDir,
    user: client(token),
    userToken: token,
    organizationId: organization.id,
    anonymous: client(),
    client,
  };
}

/** A machine's health report as a machine-agent sends it. */
export const healthReport = {
  buildkitdAlive: true,
  buildkitdRestarts: 0,
  cacheBytesUsed: 1024,
  cacheBytesTotal: 50 * 1024 ** 3,
  inodesUsed: 10,
  inodesTotal: 1_000_000,
};

/** A second organization on the same control plane, for isolation tests. */
export async function otherOrganization(tcp: TestControlPlane): Promise<ApiClient> {
  const { token } = await bootstrapOrganization(tcp.cp.db, `other-${randomUUID().slice(0, 8)}`);
  return tcp.client(token);
}

/** A key pair and CSR as the CLI makes them for one platform. */
export async function buildCsr(): Promise<{ keys: pki.KeyPair; csr: string }> {
  const keys = await pki.generateKeyPair();
  return { keys, csr: await pki.createCsr(keys, { commonName: 'slipway-cli' }) };
}

/** Sets up a local connection with its agent client and a project. */
export async function localProject(
  tcp: ApiClients,
  settings: Record<string, unknown> = {},
  names = { connection: 'local', project: 'app' },
) {
  const created = await tcp.user.call('createConnection', {
    body: {
      name: names.connection,
      provider: 'local',
      settings: { platforms: ['linux/amd64'], ...settings },
    },
  });
  const project = await tcp.user.call('createProject', {
    body: { name: names.project, connection: created.connection.id },
  });
  const agent = new ScriptedAgent(tcp.client(created.token));
  return { connection: created.connection, connectionToken: created.token, project, agent };
}

/**
 * The cloud-agent's side, scripted: it syncs with an observation that says every desired machine
 * runs (or is stopped) and every volume exists, as a local agent would after a successful apply.
 */
export class ScriptedAgent {
  known = 0;
  fleet: DesiredFleet | undefined;
  observation: Observation = { observedAt: new Date().toISOString(), machines: [], volumes: [] };

  constructor(
    readonly api: ApiClient,
    /** Kept across restarts, as a real agent keeps it in its data directory. */
    readonly agentId: string = randomUUID(),
  ) {}

  async sync(
    opts: { wait?: number; applies?: SyncRequest['applies']; signal?: AbortSignal } = {},
  ): Promise<SyncResponse> {
    const res = await this.api.call('agentSync', {
      query: { wait: opts.wait ?? 0 },
      body: {
        agentId: this.agentId,
        agentVersion: 'test',
        knownGeneration: this.known,
        observation: { ...this.observation, observedAt: new Date().toISOString() },
        applies: opts.applies ?? [],
      },
      signal: opts.signal,
    });
    if (res.lease === 'held') {
      this.known = res.fleet.generation;
      this.fleet = res.fleet;
    }
    return res;
  }

  /** Reports the current fleet as applied: machines in their desired state, volumes attached. */
  async applyFleet(
    opts: {
      result?: 'succeeded' | 'failed';
      capacity?: { machineId: string; platform: Platform; reason: string }[];
    } = {},
  ): Promise<SyncResponse> {
    const fleet = this.fleet!;
    const failed = new Set((opts.capacity ?? []).map((c) => c.machineId));
    const started = new Date().toISOString();
    this.observation = {
      observedAt: started,
      machines: fleet.machines
        .filter((m) => !failed.has(m.id))
        .map((m) => ({ id: m.id, state: m.state, address: '127.0.0.1' })),
      volumes: fleet.volumes.map((v) => {
        const user = fleet.machines.find((m) => m.volumeId === v.id && !failed.has(m.id));
        return user
          ? { id: v.id, state: 'in-use' as const, attachedTo: user.id }
          : { id: v.id, state: 'available' as const };
      }),
    };
    return this.sync({
      applies: [
        {
          generation: fleet.generation,
          kind: 'converge',
          result: opts.result ?? 'succeeded',
          startedAt: started,
          finishedAt: new Date().toISOString(),
          summary: { create: fleet.machines.length },
          steps: [],
          diff: `+ ${fleet.machines.length} machines`,
          capacityFailures: opts.capacity ?? [],
          orphansRemoved: [],
        },
      ],
    });
  }
}

/** The machine-agent's side, scripted: its own server key and CSR, register, task, status. */
export class ScriptedMachine {
  api: ApiClient | undefined;
  token: string | undefined;
  keys: pki.KeyPair | undefined;
  taskGeneration = 0;

  constructor(
    /** Only its clients are used, so a control plane in another process serves as well. */
    readonly tcp: Pick<TestControlPlane, 'anonymous' | 'client'>,
    readonly machineId: string,
    readonly registrationToken: string,
    readonly host = '127.0.0.1',
    readonly port = 8372,
  ) {}

  static fromFleet(
    tcp: Pick<TestControlPlane, 'anonymous' | 'client'>,
    fleet: DesiredFleet,
    index = 0,
  ): ScriptedMachine {
    const m = fleet.machines[index]!;
    return new ScriptedMachine(tcp, m.id, m.registrationToken!);
  }

  /** The registration body, with a CSR of this machine's own key unless one is given. */
  async registerBody(platform: Platform = 'linux/amd64', csr?: string) {
    this.keys = await pki.generateKeyPair();
    return {
      machineId: this.machineId,
      registrationToken: this.registrationToken,
      platform,
      endpoint: { host: this.host, port: this.port },
      csr:
        csr ??
        (await pki.createCsr(this.keys, {
          commonName: this.machineId,
          dnsNames: [builderServerName(this.machineId)],
          ipAddresses: [this.host],
        })),
      agentVersion: 'test',
    };
  }

  async register(platform: Platform = 'linux/amd64') {
    const res = await this.tcp.anonymous.call('machineRegister', {
      body: await this.registerBody(platform),
    });
    this.token = res.machineToken;
    this.api = this.tcp.client(res.machineToken);
    return res;
  }

  async task(wait = 0, signal?: AbortSignal) {
    const task = await this.api!.call('machineTask', {
      query: { generation: this.taskGeneration, wait },
      signal,
    });
    this.taskGeneration = task.generation;
    return task;
  }

  async report(buildkit: 'stopped' | 'starting' | 'ready' | 'failed', error?: string) {
    return this.api!.call('machineStatus', {
      body: {
        taskGeneration: this.taskGeneration,
        buildkit,
        error,
        health: { ...healthReport, buildkitdAlive: buildkit === 'ready' },
      },
    });
  }

  async serverKeyPem(): Promise<string> {
    return pki.privateKeyToPem(this.keys!.privateKey);
  }
}

/**
 * An organization's local connection with one build pending and its machine registered: every
 * kind of token and resource exists.
 */
export async function registeredMachine(
  tcp: ApiClients,
  user: ApiClient,
  names = { connection: 'local', project: 'app' },
) {
  const created = await user.call('createConnection', {
    body: { name: names.connection, provider: 'local', settings: { platforms: ['linux/amd64'] } },
  });
  const project = await user.call('createProject', {
    body: { name: names.project, connection: created.connection.id },
  });
  const agent = new ScriptedAgent(tcp.client(created.token));
  const build = await user.call('createBuild', {
    body: {
      project: project.id,
      platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
    },
  });
  await agent.sync();
  const machine = ScriptedMachine.fromFleet(tcp, agent.fleet!);
  await machine.register();
  await agent.applyFleet();
  return {
    connection: created.connection,
    connectionToken: created.token,
    project,
    agent,
    build,
    machine,
  };
}

/**
 * A local connection with one project per name and one pending build in each, synced by a
 * scripted agent: each build comes with its CLI key and the machine the fleet made for it.
 */
export async function pendingBuildsOnNewMachines(tcp: ApiClients, names: string[]) {
  const created = await tcp.user.call('createConnection', {
    body: { name: 'local', provider: 'local', settings: { platforms: ['linux/amd64'] } },
  });
  const agent = new ScriptedAgent(tcp.client(created.token));
  const builds: { build: Build; keys: pki.KeyPair }[] = [];
  for (const name of names) {
    await tcp.user.call('createProject', { body: { name, connection: created.connection.id } });
    const { keys, csr } = await buildCsr();
    const build = await tcp.user.call('createBuild', {
      body: { project: name, platforms: [{ platform: 'linux/amd64', csr }] },
    });
    builds.push({ build, keys });
  }
  await agent.sync();
  return {
    agent,
    builds: builds.map((b) => ({
      ...b,
      machine: agent.fleet!.machines.find((m) => m.id === b.build.builders[0]!.machineId)!,
    })),
  };
}

/** The CLI's first step: a build of one platform, with a fresh CSR. */
export async function requestBuild(
  user: ApiClient,
  project: string,
  platform: Platform = 'linux/amd64',
) {
  return user.call('createBuild', {
    body: { project, platforms: [{ platform, csr: (await buildCsr()).csr }] },
  });
}
