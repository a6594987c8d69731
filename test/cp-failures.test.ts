// When things go wrong, every waiting party hears why: a request that outlives the acquire
// deadline fails with its last reason, a capacity failure reported by the agent is passed on with
// the provider's words, a machine that goes silent is declared lost and its request moves to a
// new machine. The clock-driven ones run from the planner's own wake-up time.
import test from 'ava';
import { ApiError } from '../common/api';
import { waitFor } from '../common/wait';
import {
  requestBuild,
  localProject,
  ScriptedMachine,
  startTestControlPlane,
} from './helpers/control-plane';

test('a request nobody serves fails at the acquire deadline with its last reason', async (t) => {
  const tcp = await startTestControlPlane(t);
  const { project } = await localProject(tcp, { acquireDeadlineSeconds: 5 });
  const build = await requestBuild(tcp.user, project.id);
  t.regex(build.builders[0]!.reason, /no agent is connected/);
  const started = performance.now();
  const failed = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 25 },
  });
  t.true(
    performance.now() - started < 20_000,
    'the long-poll ended with the deadline, not its own wait',
  );
  t.is(failed.state, 'failed');
  t.regex(failed.reason, /acquire deadline of 5 s; last: .*no agent is connected/);
  const after = await tcp.user.call('getBuild', { params: { buildId: build.id } });
  t.is(after.status, 'failed');
  t.regex(after.error!, /acquire deadline/);
  const heartbeat = await t.throwsAsync(
    tcp.user.call('heartbeatBuild', { params: { buildId: build.id }, body: {} }),
    { instanceOf: ApiError },
  );
  t.is(heartbeat?.code, 'build_finished');
});

test('a capacity failure reported by the agent reaches the CLI with the provider reason', async (t) => {
  const tcp = await startTestControlPlane(t);
  const { project, agent } = await localProject(tcp);
  const build = await requestBuild(tcp.user, project.id);
  await agent.sync();
  const machineId = agent.fleet!.machines[0]!.id;
  await agent.applyFleet({
    result: 'failed',
    capacity: [
      {
        machineId,
        platform: 'linux/amd64',
        reason: 'InsufficientInstanceCapacity: no capacity in eu-west-1a',
      },
    ],
  });
  const pending = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 0 },
  });
  t.is(pending.state, 'pending');
  t.regex(
    pending.reason,
    /no linux\/amd64 capacity in connection local: InsufficientInstanceCapacity: no capacity in eu-west-1a; trying again at/,
  );
  const { machines } = await tcp.user.call('listMachines', { query: { includeDeleted: true } });
  t.is(machines.find((m) => m.id === machineId)?.desiredState, 'deleted');
  // After the backoff a new machine is tried, without anyone asking.
  await waitFor(
    async () => {
      const res = await agent.sync();
      return res.lease === 'held' && res.fleet.machines.some((m) => m.id !== machineId);
    },
    { timeoutMs: 20_000, what: 'a replacement machine after the capacity backoff' },
  );
  const { records } = await tcp.user.call('listAudit', {
    params: { connectionId: agent.fleet!.connectionId },
    query: { kind: 'converge' },
  });
  t.is(records[0]!.result, 'failed');
});

test('a silent machine is declared lost, its CA destroyed, and its request moves on', async (t) => {
  const tcp = await startTestControlPlane(t);
  const { project, agent } = await localProject(tcp, { machineLostAfterSeconds: 10 });
  const build = await requestBuild(tcp.user, project.id);
  await agent.sync();
  const machine = ScriptedMachine.fromFleet(tcp, agent.fleet!);
  const registered = await machine.register();
  t.true(registered.healthIntervalSeconds <= 5);
  await agent.applyFleet();
  t.is((await machine.task()).kind, 'buildkit');

  // The machine says nothing more: it is lost after the window, by the planner's own timer.
  const moved = await waitFor(
    async () => {
      const b = await tcp.user.call('getBuild', { params: { buildId: build.id } });
      return b.builders[0]!.machineId !== machine.machineId ? b.builders[0] : undefined;
    },
    { timeoutMs: 30_000, what: 'the request to move to another machine' },
  );
  t.is(moved.state, 'pending');
  t.truthy(moved.machineId);
  const row = await tcp.cp.db('machines').where({ id: machine.machineId }).first();
  t.is(row.status, 'lost');
  t.is(row.ca_key_sealed, null);
  const told = await machine.task();
  t.is(told.kind, 'shutdown');
  if (told.kind === 'shutdown') t.regex(told.reason, /no report from the machine for 10 s/);
  await agent.sync();
  t.false(
    agent.fleet!.machines.some((m) => m.id === machine.machineId),
    'the lost machine leaves the fleet',
  );
  t.is(
    agent.fleet!.machines[0]!.volumeId,
    agent.fleet!.volumes[0]!.id,
    'the replacement gets the project volume',
  );
});
