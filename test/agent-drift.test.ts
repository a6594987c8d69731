// The periodic drift check, end to end on the local provider: behind the agent's back a builder's
// processes are killed and its cache volume's directory removed. The next drift check (a refresh
// preview every SLIPWAY_DRIFT_CHECK_SECONDS) reports both as a drift audit record whose diff names
// them, and the agent repairs the fleet with a refreshing converge: the volume is made again and
// the machine started again, without registering again, and it gets ready.
import test from 'ava';
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { machineDir, volumeDir } from '../automation/layout';
import { observeLocal } from '../automation/local/observe';
import { processesUnder } from '../automation/local/processes';
import type { AuditRecord } from '../common/protocol';
import { waitFor } from '../common/wait';
import { agentCaughtUp, builderReady, localAgents, requestBuilder } from './helpers/cloud-agent';
import { localProject, startTestControlPlane } from './helpers/control-plane';

test('a drift check reports a killed machine and a removed volume, and the agent repairs both', async (t) => {
  const tcp = await startTestControlPlane(t);
  const { connection, connectionToken, project } = await localProject(tcp);
  const { dataDir, start } = await localAgents(t, { apiUrl: tcp.url, connectionToken });
  start({ env: { SLIPWAY_DRIFT_CHECK_SECONDS: '3' } });
  const audit = async (kind: AuditRecord['kind']) =>
    (
      await tcp.user.call('listAudit', {
        params: { connectionId: connection.id },
        query: { kind, limit: 100 },
      })
    ).records;

  const build = await requestBuilder(tcp.user, project.name);
  const ready = await builderReady(tcp.user, build.id, 180_000);
  const machineId = ready.machineId!;
  await agentCaughtUp(tcp.user, connection.id);
  const [registered] = (
    await tcp.user.call('listMachines', { query: { connection: connection.id } })
  ).machines;
  const volumeId = registered!.volumeId!;
  t.deepEqual(await audit('drift'), [], 'no drift while nothing changed behind the agent');

  // Behind the agent's back: the builder's processes die, its cache directory goes away.
  const since = new Date();
  for (const { pid } of processesUnder(machineDir(dataDir, machineId))) {
    process.kill(pid, 'SIGKILL');
  }
  await rm(volumeDir(dataDir, volumeId), { recursive: true, force: true });

  const drift = await waitFor(
    async () => (await audit('drift')).find((r) => new Date(r.createdAt) >= since),
    { timeoutMs: 120_000, what: 'a drift audit record' },
  );
  t.regex(drift.diff, new RegExp(`LocalMachine ${machineId} +update`), drift.diff);
  t.regex(drift.diff, new RegExp(`LocalVolume ${volumeId} +delete`), drift.diff);
  t.notRegex(drift.diff, /warning/, 'the engine takes its plugins from this installation');
  t.deepEqual(
    drift.steps.map((s) => [s.op, s.name]).sort(),
    [
      ['refresh-delete', volumeId],
      ['refresh-update', machineId],
    ].sort(),
    'the machine is no longer running and the volume is gone',
  );
  t.true(
    drift.steps.find((s) => s.name === machineId)?.diffs?.includes('state'),
    'the machine drifted in its power state',
  );

  // The repair: a converge that refreshes, creates the volume again and starts the machine.
  const repair = await waitFor(
    async () =>
      (await audit('converge')).find(
        (r) => new Date(r.createdAt) >= new Date(drift.createdAt) && r.steps.length > 0,
      ),
    { timeoutMs: 120_000, what: 'the converge that repairs the drift' },
  );
  t.is(repair.result, 'succeeded', repair.error ?? '');
  t.regex(repair.diff, new RegExp(`LocalVolume::${volumeId}`));
  t.true(
    repair.steps.some((s) => s.op === 'create' && s.name === volumeId),
    'the volume is made again',
  );
  t.true(
    repair.steps.some((s) => s.name === machineId && s.op === 'update'),
    'the machine is started again',
  );
  await waitFor(() => observeLocal(dataDir).machines[0]?.state === 'running', {
    timeoutMs: 60_000,
    what: 'the machine-agent to run again',
  });
  t.true(existsSync(volumeDir(dataDir, volumeId)), 'the volume directory is back');
  await waitFor(
    async () => {
      const { machines } = await tcp.user.call('listMachines', {
        query: { connection: connection.id },
      });
      return machines[0]?.status === 'ready' && machines[0].id === machineId;
    },
    { timeoutMs: 90_000, what: 'the repaired machine to be ready again' },
  );
  const { machines } = await tcp.user.call('listMachines', {
    query: { connection: connection.id },
  });
  t.is(machines.length, 1, 'repaired, not replaced');
  t.is(machines[0]?.registeredAt, registered!.registeredAt, 'it did not register again');
  t.true(existsSync(path.join(machineDir(dataDir, machineId), 'machine.json')));
});
