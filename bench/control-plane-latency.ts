// Control plane latency on this host (never part of the test run): how soon a waiting agent's
// sync returns after a build request (pickup; goal under 50 ms), and how long a build takes to be
// answered ready when its builder is already ready (hot path; goal p95 under 100 ms).
// Run: npx tsx bench/control-plane-latency.ts [rounds]
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import pino from 'pino';
import { ApiClient } from '../common/api';
import * as pki from '../common/pki';
import { builderServerName } from '../common/protocol';
import { bootstrapOrganization } from '../control-plane/bootstrap';
import { startControlPlane } from '../control-plane/server';
import { healthReport } from '../test/helpers/control-plane';

const rounds = Number(process.argv[2] ?? 50);

function percentile(values: number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

function report(what: string, ms: number[]): void {
  const f = (x: number) => `${x.toFixed(1)} ms`;
  console.log(
    `${what.padEnd(34)} n=${ms.length}  p50 ${f(percentile(ms, 50))}  p95 ${f(percentile(ms, 95))}  max ${f(Math.max(...ms))}`,
  );
}

async function csr(): Promise<string> {
  return pki.createCsr(await pki.generateKeyPair(), { commonName: 'bench' });
}

async function run(): Promise<void> {
  const dataDir = await mkdtemp(path.join(tmpdir(), 'slipway-bench-'));
  const cp = await startControlPlane({ dataDir, logger: pino({ level: 'warn' }) });
  const { token } = await bootstrapOrganization(cp.db, 'bench');
  const user = new ApiClient({ baseUrl: cp.url, token });
  try {
    const { connection, token: connectionToken } = await user.call('createConnection', {
      body: {
        name: 'local',
        provider: 'local',
        settings: { platforms: ['linux/amd64'], maxMachines: 1000 },
      },
    });
    const agent = new ApiClient({ baseUrl: cp.url, token: connectionToken });
    const agentId = '11111111-1111-4111-8111-111111111111';
    let known = 0;
    const observation = { observedAt: new Date().toISOString(), machines: [], volumes: [] };
    const sync = async (wait: number) => {
      const res = await agent.call('agentSync', {
        query: { wait },
        body: { agentId, agentVersion: 'bench', knownGeneration: known, observation },
      });
      if (res.lease !== 'held') throw new Error(res.reason);
      known = res.fleet.generation;
      return res.fleet;
    };
    await sync(0);

    // Pickup: each request of a new project wakes the waiting agent.
    const pickup: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const project = await user.call('createProject', {
        body: { name: `p${i}`, connection: connection.id },
      });
      const body = {
        project: project.id,
        platforms: [{ platform: 'linux/amd64' as const, csr: await csr() }],
      };
      const waiting = sync(25);
      // Let the long-poll reach the server before the request that should wake it.
      await new Promise((resolve) => setTimeout(resolve, 20));
      const started = performance.now();
      const create = user.call('createBuild', { body });
      await waiting;
      pickup.push(performance.now() - started);
      await create;
    }

    // Hot path: one ready builder, many builds.
    const project = await user.call('createProject', {
      body: { name: 'hot', connection: connection.id },
    });
    await user.call('createBuild', {
      body: { project: project.id, platforms: [{ platform: 'linux/amd64', csr: await csr() }] },
    });
    const fleet = await sync(0);
    const volume = fleet.volumes.find((v) => v.projectId === project.id)!;
    const machine = fleet.machines.find((m) => m.volumeId === volume.id)!;
    const keys = await pki.generateKeyPair();
    const registered = await new ApiClient({ baseUrl: cp.url }).call('machineRegister', {
      body: {
        machineId: machine.id,
        registrationToken: machine.registrationToken!,
        platform: 'linux/amd64',
        endpoint: { host: '127.0.0.1', port: 8372 },
        csr: await pki.createCsr(keys, {
          commonName: machine.id,
          dnsNames: [builderServerName(machine.id)],
          ipAddresses: ['127.0.0.1'],
        }),
        agentVersion: 'bench',
      },
    });
    const machineApi = new ApiClient({ baseUrl: cp.url, token: registered.machineToken });
    await agent.call('agentSync', {
      query: { wait: 0 },
      body: {
        agentId,
        agentVersion: 'bench',
        knownGeneration: known,
        observation: {
          observedAt: new Date().toISOString(),
          machines: [{ id: machine.id, state: 'running' }],
          volumes: [{ id: volume.id, state: 'in-use', attachedTo: machine.id }],
        },
      },
    });
    const task = await machineApi.call('machineTask', { query: { generation: 0, wait: 0 } });
    await machineApi.call('machineStatus', {
      body: {
        taskGeneration: task.generation,
        buildkit: 'ready',
        health: healthReport,
      },
    });
    const hot: number[] = [];
    for (let i = 0; i < rounds; i++) {
      const body = {
        project: project.id,
        platforms: [{ platform: 'linux/amd64' as const, csr: await csr() }],
      };
      const started = performance.now();
      const build = await user.call('createBuild', { body });
      const builder = await user.call('waitBuilder', {
        params: { buildId: build.id },
        query: { platform: 'linux/amd64', wait: 25 },
      });
      hot.push(performance.now() - started);
      if (builder.state !== 'ready' || builder.path !== 'hot')
        throw new Error(`not hot: ${builder.state} ${builder.reason}`);
      await user.call('finishBuild', {
        params: { buildId: build.id },
        body: { result: 'succeeded' },
      });
    }

    report('agent pickup after a build request', pickup);
    report('hot path: request to ready answer', hot);
    await Promise.all([agent.close(), machineApi.close()]);
  } finally {
    await user.close();
    await cp.close();
    await rm(dataDir, { recursive: true, force: true });
  }
}

run().catch((err) => {
  console.error(err);
  process.exit(1);
});
