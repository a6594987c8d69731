// The cloud-agent end to end on the local provider: the real control plane on loopback, the
// agent as its own process driving the real Pulumi engine (file backend), machine-agents as real
// detached processes with their own buildkitd. A build request makes the agent create a machine
// and a volume; the machine registers and gets ready; idle, it is stopped, and started again for
// the next build; every change leaves its preview diff as an audit record.
import test from 'ava';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { observeLocal } from '../automation/local/observe';
import { processesUnder } from '../automation/local/processes';
import { waitFor } from '../common/wait';
import {
  agentCaughtUp,
  builderReady,
  localAgents,
  requestBuilder,
  stopAgentProcess,
} from './helpers/cloud-agent';
import { localProject, startTestControlPlane } from './helpers/control-plane';

test('a build request makes the agent create a machine and volume; idle it is stopped, then started again', async (t) => {
  const tcp = await startTestControlPlane(t);
  const { connection, connectionToken, project } = await localProject(tcp, {
    idleTimeoutSeconds: 10,
  });
  const { dataDir, start: startAgent } = await localAgents(t, { apiUrl: tcp.url, connectionToken });
  const agent = startAgent();

  const build = await requestBuilder(tcp.user, project.name);
  t.is(build.builders[0]?.path, 'cold');
  const ready = await builderReady(tcp.user, build.id, 180_000);
  const machineId = ready.machineId!;
  t.truthy(ready.endpoint);
  t.truthy(ready.phases.machineStartedAt, 'the agent reported the apply that started it');
  t.truthy(ready.phases.registeredAt);

  const { machines } = await tcp.user.call('listMachines', {
    query: { connection: connection.id },
  });
  t.is(machines.length, 1);
  const machine = machines[0]!;
  t.is(machine.id, machineId);
  t.is(machine.status, 'ready');
  const volumeId = machine.volumeId!;
  const local = observeLocal(dataDir);
  t.deepEqual(
    local.machines.map((m) => [m.id, m.state]),
    [[machineId, 'running']],
    'one machine-agent process, running',
  );
  t.deepEqual(
    local.volumes.map((v) => v.id),
    [volumeId],
  );
  t.true(existsSync(path.join(dataDir, 'volumes', volumeId)), 'the volume is a directory');

  // Idle past the timeout: the control plane stops it, the agent ends its process.
  await tcp.user.call('finishBuild', {
    params: { buildId: build.id },
    body: { result: 'succeeded' },
  });
  await waitFor(() => observeLocal(dataDir).machines[0]?.state === 'stopped', {
    timeoutMs: 90_000,
    what: 'the idle machine to be stopped',
  });
  t.deepEqual(processesUnder(path.join(dataDir, 'machines', machineId)), [], 'no process left');
  t.true(existsSync(path.join(dataDir, 'machines', machineId)), 'its directory stays');
  await waitFor(
    async () => {
      const list = await tcp.user.call('listMachines', { query: { connection: connection.id } });
      return list.machines[0]?.status === 'stopped';
    },
    { timeoutMs: 30_000, what: 'the control plane to see the machine stopped' },
  );

  // The next build starts the same machine again: warm path, same state, no new registration.
  const second = await requestBuilder(tcp.user, project.name);
  t.is(second.builders[0]?.path, 'warm');
  const again = await builderReady(tcp.user, second.id, 120_000);
  t.is(again.machineId, machineId);
  const after = await tcp.user.call('listMachines', { query: { connection: connection.id } });
  t.is(after.machines.length, 1);
  t.is(after.machines[0]?.registeredAt, machine.registeredAt, 'it did not register again');
  t.is(after.machines[0]?.volumeId, volumeId);
  t.deepEqual(
    observeLocal(dataDir).machines.map((m) => [m.id, m.state]),
    [[machineId, 'running']],
  );

  // Each change has its preview diff in the audit trail.
  await agentCaughtUp(tcp.user, connection.id);
  const { records } = await tcp.user.call('listAudit', {
    params: { connectionId: connection.id },
    query: { kind: 'converge', limit: 100 },
  });
  const changes = records.filter((r) => r.diff !== '').reverse();
  t.true(changes.length >= 3, `three changes at least, got ${changes.length}`);
  const create = changes.find((r) =>
    r.steps.some((s) => s.op === 'create' && s.name === machineId),
  );
  t.truthy(create, 'the creation was audited');
  t.regex(create!.diff, new RegExp(`LocalMachine::${machineId}`));
  t.regex(create!.diff, new RegExp(`LocalVolume::${volumeId}`));
  t.regex(create!.diff, /registrationToken\s*: \[secret\]/, 'the token is masked');
  t.false(create!.diff.includes('swr_'), 'no token in the audit record');
  t.is(create!.result, 'succeeded');
  const stop = changes.find((r) => /state\s*: "running" => "stopped"/.test(r.diff));
  const start = changes.find((r) => /state\s*: "stopped" => "running"/.test(r.diff));
  t.truthy(stop, 'the stop was audited with its diff');
  t.truthy(start, 'the start was audited with its diff');
  t.deepEqual(
    stop!.steps.map((s) => [s.op, s.name]),
    [['update', machineId]],
  );

  const exit = await stopAgentProcess(agent);
  t.deepEqual(exit, { code: 0, signal: null }, 'SIGTERM stops the agent cleanly');
});
