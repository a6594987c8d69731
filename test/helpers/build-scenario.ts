// The whole life of a build from the CLI's, the cloud-agent's and the machine's sides, with the
// long-polls returning as soon as something they wait for changes: cold (a new machine and
// volume), then hot. Run against the control plane on SQLite and on PostgreSQL.
import type { ExecutionContext } from 'ava';
import { describeCertificate } from '../../common/pki';
import { builderServerName } from '../../common/protocol';
import {
  buildCsr,
  requestBuild,
  localProject,
  ScriptedMachine,
  type TestControlPlane,
} from './control-plane';

export async function coldThenHot(t: ExecutionContext, tcp: TestControlPlane): Promise<void> {
  const { project, agent, connection } = await localProject(tcp);

  const first = await agent.sync();
  t.is(first.lease, 'held');
  t.deepEqual(agent.fleet!.machines, []);
  t.is(first.lease === 'held' && first.controlPlaneUrl, tcp.cp.publicUrl);

  // The agent waits for work; a build request must wake it at once.
  const agentWait = agent.sync({ wait: 25 });
  const { csr, keys } = await buildCsr();
  const requested = performance.now();
  const build = await tcp.user.call('createBuild', {
    body: { project: project.name, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  t.is(build.status, 'pending');
  t.is(build.builders[0]!.state, 'pending');
  t.truthy(build.builders[0]!.reason);
  t.is(build.builders[0]!.path, 'cold');
  const woken = await agentWait;
  const pickupMs = performance.now() - requested;
  // Woken by the request, well before its own 25 s wait would have ended.
  t.true(pickupMs < 12_000, `the agent's sync returned ${pickupMs} ms after the request`);
  t.is(woken.lease, 'held');
  const fleet = agent.fleet!;
  t.is(fleet.machines.length, 1);
  t.is(fleet.volumes.length, 1);
  t.is(fleet.machines[0]!.state, 'running');
  t.is(fleet.machines[0]!.volumeId, fleet.volumes[0]!.id);
  t.regex(fleet.machines[0]!.registrationToken!, /^swr_/);
  t.is(fleet.volumes[0]!.projectId, project.id);

  const builder = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 0 },
  });
  t.is(builder.state, 'pending');
  t.regex(builder.reason, new RegExp(fleet.machines[0]!.id));
  t.truthy(builder.phases.pickedUpAt, 'the agent picked the request up');

  // The machine boots and registers; until the agent reports the volume it idles.
  const machine = ScriptedMachine.fromFleet(tcp, fleet);
  const registered = await machine.register();
  t.regex(registered.machineToken, /^swm_/);
  t.true(registered.healthIntervalSeconds > 0);
  const idle = await machine.task();
  t.is(idle.kind, 'idle');

  // The machine long-polls; the agent's report that the volume is attached hands it BuildKit.
  const taskWait = machine.task(25);
  const taskRequested = performance.now();
  await agent.applyFleet();
  const task = await taskWait;
  t.true(performance.now() - taskRequested < 12_000, 'woken before the end of its wait');
  t.is(task.kind, 'buildkit');
  if (task.kind !== 'buildkit') return;
  t.is(task.projectId, project.id);
  t.is(task.volume.id, fleet.volumes[0]!.id);
  t.is(task.serverName, builderServerName(machine.machineId));
  const serverCert = describeCertificate(task.serverCertificate);
  t.regex(serverCert.issuer, new RegExp(machine.machineId));

  // The CLI long-polls; the machine's ready report answers it.
  const cliWait = tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 25 },
  });
  await machine.report('starting');
  await machine.report('ready');
  const ready = await cliWait;
  t.is(ready.state, 'ready');
  t.is(ready.path, 'cold');
  t.is(ready.endpoint, 'tcp://127.0.0.1:8372');
  t.is(ready.serverName, builderServerName(machine.machineId));
  t.is(ready.caCertificate, task.clientCa);
  const clientCert = describeCertificate(ready.clientCertificate!);
  t.regex(clientCert.subject, new RegExp(`CN=${build.id}`));
  t.regex(clientCert.subject, new RegExp(tcp.organizationId));
  t.true(clientCert.validTo.getTime() <= Date.parse(build.deadline));
  t.truthy(ready.phases.readyAt);
  t.truthy(ready.phases.answeredAt);
  t.truthy(ready.phases.registeredAt);
  t.truthy(ready.phases.machineStartedAt);
  void keys;

  const running = await tcp.user.call('getBuild', { params: { buildId: build.id } });
  t.is(running.status, 'running');
  const beat = await tcp.user.call('heartbeatBuild', { params: { buildId: build.id }, body: {} });
  t.is(beat.deadline, build.deadline);
  const finished = await tcp.user.call('finishBuild', {
    params: { buildId: build.id },
    body: { result: 'succeeded', buildMs: 1234 },
  });
  t.is(finished.status, 'succeeded');
  t.is(finished.buildMs, 1234);
  t.is(finished.builders[0]!.state, 'released');
  t.is(finished.builders[0]!.clientCertificate, null);

  // Hot path: the builder is ready, so the next build is answered ready at once.
  const hot = await requestBuild(tcp.user, project.id);
  t.is(hot.builders[0]!.state, 'ready', hot.builders[0]!.reason);
  t.is(hot.builders[0]!.path, 'hot');
  t.is(hot.builders[0]!.machineId, machine.machineId);
  t.is(hot.status, 'running');

  // Listings as users see them.
  const { machines } = await tcp.user.call('listMachines', {
    query: { connection: connection.name },
  });
  t.is(machines.length, 1);
  t.is(machines[0]!.status, 'ready');
  t.is(machines[0]!.projectId, project.id);
  t.truthy(machines[0]!.health);
  const { volumes } = await tcp.user.call('listVolumes', {});
  t.is(volumes[0]!.attachedTo, machine.machineId);
  const { records } = await tcp.user.call('listAudit', { params: { connectionId: connection.id } });
  t.is(records.length, 1);
  t.is(records[0]!.kind, 'converge');
  t.is(records[0]!.result, 'succeeded');

  const metrics = await (await fetch(`${tcp.url}/metrics`)).text();
  t.regex(metrics, /slipway_builder_acquire_seconds_count\{path="cold"\} 1/);
  t.regex(metrics, /slipway_builder_acquire_seconds_count\{path="hot"\} 1/);
  t.regex(metrics, /slipway_pending_builders 0/);
}
