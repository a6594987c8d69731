// The same control plane on PostgreSQL (a real server started for the test): the whole life of
// a build, and a pending build that survives a restart of the control plane on the database.
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import test from 'ava';
import pino from 'pino';
import { serverSecretFile } from '../control-plane/secrets';
import { startControlPlane } from '../control-plane/server';
import { coldThenHot } from './helpers/build-scenario';
import {
  localProject,
  requestBuild,
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
