// The cloud-agent killed with SIGKILL in the middle of an update, then started again on the same
// data directory: alone (its engine goes on or dies on its own), or with its whole process group
// (engine and provider processes too, as when its container dies). Either way it ends with
// exactly the desired machines: no duplicate machine-agent, no orphan process or directory, no
// lock left, and a crash that left the stack locked is repaired and audited.
import test, { type ExecutionContext } from 'ava';
import { existsSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { stackLayout } from '../automation/layout';
import { observeLocal } from '../automation/local/observe';
import { processesUnder } from '../automation/local/processes';
import { waitFor } from '../common/wait';
import { agentCaughtUp, localAgents, stopAgentProcess } from './helpers/cloud-agent';
import { buildCsr, localProject, startTestControlPlane } from './helpers/control-plane';

async function crashMidUpdate(t: ExecutionContext, killGroup: boolean) {
  const tcp = await startTestControlPlane(t);
  const projects = ['alpha', 'beta', 'gamma'];
  const first = await localProject(tcp, {}, { connection: 'local', project: projects[0]! });
  const { connection, connectionToken } = first;
  for (const name of projects.slice(1)) {
    await tcp.user.call('createProject', { body: { name, connection: connection.id } });
  }
  const { dataDir, start } = await localAgents(
    t,
    { apiUrl: tcp.url, connectionToken },
    'agent-crash',
  );
  const killed = start();

  // Three projects, three builds: one update creates three machines and three volumes.
  const builds = [];
  for (const project of projects) {
    const { csr } = await buildCsr();
    builds.push(
      await tcp.user.call('createBuild', {
        body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
      }),
    );
  }

  // Kill the agent while the update holds the stack's lock and has begun creating machines.
  const machinesDir = path.join(dataDir, 'machines');
  const layout = stackLayout(dataDir, connection.id);
  const locks = path.join(layout.backendDir, '.pulumi', 'locks');
  const lockFiles = () =>
    existsSync(locks)
      ? readdirSync(locks, { recursive: true, withFileTypes: true }).filter((e) => e.isFile())
      : [];
  // The window lasts a second or so: watch it closely.
  await waitFor(
    () => existsSync(machinesDir) && readdirSync(machinesDir).length > 0 && lockFiles().length > 0,
    {
      timeoutMs: 120_000,
      intervalMs: 5,
      maxIntervalMs: 5,
      what: 'the update to start creating machines',
    },
  );
  process.kill(killGroup ? -killed.child.pid! : killed.child.pid!, 'SIGKILL');
  t.is((await killed.exited).signal, 'SIGKILL');

  const restarted = start();
  for (const build of builds) {
    await waitFor(
      async () => {
        const b = await tcp.user.call('waitBuilder', {
          params: { buildId: build.id },
          query: { platform: 'linux/amd64', wait: 20 },
        });
        if (b.state === 'failed') throw new Error(`builder failed: ${b.reason}`);
        return b.state === 'ready';
      },
      { timeoutMs: 240_000, what: `the builder of ${build.id}` },
    );
  }
  // Builders may get ready from what the killed update had started; wait for the new agent to
  // have converged the current fleet too.
  await agentCaughtUp(tcp.user, connection.id);

  const { machines } = await tcp.user.call('listMachines', {
    query: { connection: connection.id },
  });
  const desired = machines.map((m) => m.id).sort();
  t.is(desired.length, 3, 'one machine per project');
  const local = observeLocal(dataDir);
  t.deepEqual(
    local.machines.map((m) => m.id).sort(),
    desired,
    'exactly the desired machine directories: no orphan, no duplicate',
  );
  t.true(local.machines.every((m) => m.state === 'running'));
  for (const id of desired) {
    const procs = processesUnder(path.join(machinesDir, id));
    const pids = new Set(procs.map((p) => p.pid));
    const agentsOfMachine = procs.filter((p) => !pids.has(p.ppid));
    t.is(agentsOfMachine.length, 1, `one machine-agent for ${id}`);
  }
  t.deepEqual(
    local.volumes.map((v) => v.id).sort(),
    machines.map((m) => m.volumeId).sort(),
    'exactly the desired volumes',
  );
  const { records } = await tcp.user.call('listAudit', {
    params: { connectionId: connection.id },
    query: { kind: 'recovery', limit: 10 },
  });

  const exit = await stopAgentProcess(restarted);
  t.is(exit.code, 0);
  t.deepEqual(processesUnder(layout.workDir), [], 'no engine process left behind');
  t.deepEqual(lockFiles(), [], 'no stuck lock');
  return { recoveries: records };
}

test.serial(
  'the agent killed alone mid-update converges to exactly the desired machines',
  async (t) => {
    await crashMidUpdate(t, false);
  },
);

test.serial(
  'the agent killed with its engine mid-update recovers the locked stack and converges',
  async (t) => {
    const { recoveries } = await crashMidUpdate(t, true);
    t.is(recoveries.length, 1, 'the recovery is in the audit trail');
    t.regex(recoveries[0]!.diff, /Recovered the stack: .*removed 1 stale stack lock/);
  },
);
