// The same control plane on PostgreSQL (a real server started for the test): the whole life of
// a build, a pending build that survives a restart of the control plane on the database, and two
// replicas on one database waking each other's long-polls.
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import pino from 'pino';
import { ApiClient } from '../common/api';
import { serverSecretFile } from '../control-plane/secrets';
import { startControlPlane } from '../control-plane/server';
import { coldThenHot } from './helpers/build-scenario';
import {
  localProject,
  requestBuild,
  ScriptedAgent,
  ScriptedMachine,
  startTestControlPlane,
} from './helpers/control-plane';
import { startPostgres } from './helpers/postgres';
import { tempDir } from './helpers/tmp';

test('a build goes cold, then hot, on PostgreSQL', async (t) => {
  const pg = await startPostgres(t);
  const tcp = await startTestControlPlane(t, { databaseUrl: await pg.database('lifecycle') });
  t.is(tcp.cp.db.client.config.client, 'pg');
  await coldThenHot(t, tcp);
});

test('a pending build survives a restart of the control plane on PostgreSQL', async (t) => {
  const pg = await startPostgres(t);
  const databaseUrl = await pg.database('restart');
  const tcp = await startTestControlPlane(t, { databaseUrl });
  const { project, agent } = await localProject(tcp);
  const build = await requestBuild(tcp.user, project.id);
  await agent.sync();
  const machine = ScriptedMachine.fromFleet(tcp, agent.fleet!);
  await tcp.cp.close();

  // Another data directory: everything lives in the database but the server secret.
  const dataDir = await tempDir(t, 'cp-pg');
  await copyFile(path.join(tcp.dataDir, serverSecretFile), path.join(dataDir, serverSecretFile));
  const again = await startControlPlane({
    dataDir,
    databaseUrl,
    logger: pino({ level: 'silent' }),
    listen: { host: '127.0.0.1', port: Number(new URL(tcp.url).port) },
  });
  t.teardown(() => again.close());
  await machine.register();
  await agent.applyFleet();
  t.is((await machine.task()).kind, 'buildkit');
  await machine.report('ready');
  const ready = await tcp.user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 10 },
  });
  t.is(ready.state, 'ready');
});

test('two replicas on one PostgreSQL database wake each other long-polls', async (t) => {
  const pg = await startPostgres(t);
  const databaseUrl = await pg.database('replicas');
  const one = await startTestControlPlane(t, { databaseUrl });
  // A second replica: its own data directory with the same server secret.
  const dataDir = await tempDir(t, 'cp-replica');
  await copyFile(path.join(one.dataDir, serverSecretFile), path.join(dataDir, serverSecretFile));
  const two = await startControlPlane({ dataDir, databaseUrl, logger: pino({ level: 'silent' }) });
  t.teardown(() => two.close());
  const onTwo = new ApiClient({ baseUrl: two.url, token: one.userToken });
  t.teardown(() => onTwo.close());

  const { project, agent, connectionToken } = await localProject(one);
  // The same agent (its id) talking to the other replica.
  const agentOnTwo = new ScriptedAgent(
    new ApiClient({ baseUrl: two.url, token: connectionToken }),
    agent.agentId,
  );
  t.teardown(() => agentOnTwo.api.close());
  await agentOnTwo.sync();

  // The agent waits on replica two; a build requested on replica one wakes it.
  const waiting = agentOnTwo.sync({ wait: 25 });
  const requested = performance.now();
  const build = await requestBuild(one.user, project.id);
  await waiting;
  t.true(
    performance.now() - requested < 12_000,
    'woken across replicas, not by the end of its wait',
  );
  t.is(agentOnTwo.fleet!.machines.length, 1);

  // The CLI waits on replica two; the machine's ready report on replica one answers it.
  const machine = ScriptedMachine.fromFleet(one, agentOnTwo.fleet!);
  await machine.register();
  await agentOnTwo.applyFleet();
  await machine.task();
  const cli = onTwo.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 25 },
  });
  const reported = performance.now();
  await machine.report('ready');
  const ready = await cli;
  t.is(ready.state, 'ready');
  t.true(performance.now() - reported < 12_000, 'woken before the end of its wait');
});
