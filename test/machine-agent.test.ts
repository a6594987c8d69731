// The machine-agent end to end: the real control plane on loopback (SQLite file), the cloud-agent's
// sync scripted with the connection token, the real machine-agent process and a real buildkitd.
// A build's client certificate builds a Dockerfile through the builder's mTLS listener; another
// machine's certificate is refused; the registration token works once; a killed buildkitd comes
// back and the health report says so; SIGTERM shuts down cleanly within its deadline; started
// again, the machine resumes without registering, cache kept.
import test from 'ava';
import { copyFile, cp, mkdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { ApiError } from '../common/api';
import { freePort } from '../common/net';
import { waitFor } from '../common/wait';
import { defaultTiming, runMachineAgent } from '../machine/agent';
import { configFromEnv } from '../machine/config';
import { buildCsr, localProject, startTestControlPlane } from './helpers/control-plane';
import {
  agentEnv,
  buildClient,
  startAgentChild,
  startAgentDetached,
  waitForBuilder,
} from './helpers/machine-agent';
import { buildctl, dockerfileBuildArgs } from './helpers/mtls-buildkitd';
import { captureLogger } from './helpers/logger';
import { tempDir } from './helpers/tmp';

const fixtures = path.join(__dirname, 'fixtures');

async function requestBuild(
  user: Awaited<ReturnType<typeof startTestControlPlane>>['user'],
  project: string,
) {
  const { keys, csr } = await buildCsr();
  const build = await user.call('createBuild', {
    body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  return { build, keys };
}

/** A busybox RUN context: a real container step, so the cache holds something. */
async function runContext(dir: string): Promise<string> {
  const context = path.join(dir, 'busybox-run');
  await cp(path.join(fixtures, 'busybox-run'), context, { recursive: true });
  await copyFile('/bin/busybox', path.join(context, 'busybox'));
  return context;
}

test('a registered machine serves its build over mTLS, refuses another machine’s certificate, and its token works once', async (t) => {
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'machine-e2e');
  const first = await localProject(tcp, {}, { connection: 'local', project: 'app' });
  const { build, keys } = await requestBuild(tcp.user, first.project.id);

  // The cloud-agent's sync hands out the machine and its registration token.
  await first.agent.sync();
  const desired = first.agent.fleet!.machines[0]!;
  t.truthy(desired.registrationToken);
  const settings = {
    apiUrl: tcp.url,
    machineId: desired.id,
    registrationToken: desired.registrationToken!,
    stateDir: path.join(work, 'machines', desired.id),
    volumesDir: path.join(work, 'volumes'),
    buildkitPort: await freePort(),
  };
  // Started the way the local provider starts it: detached by a parent that exits at once.
  const agent = await startAgentDetached(t, agentEnv(settings), path.join(work, 'agent-1.log'));
  await first.agent.applyFleet();

  const builder = await waitForBuilder(tcp.user, build.id).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await agent.log()}`);
  });
  t.is(builder.state, 'ready', builder.reason);
  t.is(builder.endpoint, `tcp://127.0.0.1:${settings.buildkitPort}`);
  t.true(await agent.running(), 'the agent outlived the parent that started it');

  const { target, client } = await buildClient(path.join(work, 'cli-1'), keys, builder);
  const out = path.join(work, 'out-1');
  const built = await buildctl(
    target,
    client,
    dockerfileBuildArgs(path.join(fixtures, 'scratch-copy'), out),
  );
  t.is(built.code, 0, built.output);
  t.is(await readFile(path.join(out, 'hello.txt'), 'utf8'), 'hello from a slipway builder\n');

  // The machine's key never left it: 0600 in its state directory, and the token kept with it.
  t.is((await stat(path.join(settings.stateDir, 'server-key.pem'))).mode & 0o777, 0o600);
  t.is((await stat(path.join(settings.stateDir, 'machine.json'))).mode & 0o777, 0o600);
  const log = await agent.log();
  t.false(log.includes(settings.registrationToken), 'the registration token is never logged');
  t.notRegex(log, /swm_[A-Za-z0-9_-]{43}/, 'nor the machine token');

  // The registration token works once: neither a second agent nor anyone else can use it again.
  const again = await startAgentChild(
    t,
    agentEnv({
      ...settings,
      stateDir: path.join(work, 'machines', 'impostor'),
      buildkitPort: await freePort(),
    }),
    path.join(work, 'impostor.log'),
  );
  const refused = await again.exited;
  t.is(refused.code, 78, await again.log());
  t.regex(await again.log(), /already_registered/);
  const replay = await tcp.anonymous
    .call('machineRegister', {
      body: {
        machineId: desired.id,
        registrationToken: settings.registrationToken,
        platform: 'linux/amd64',
        endpoint: { host: '127.0.0.1', port: 1 },
        csr: (await buildCsr()).csr,
        agentVersion: 'replay',
      },
    })
    .catch((err: unknown) => err);
  t.true(replay instanceof ApiError && replay.code === 'already_registered', String(replay));

  // A second machine for another project: its build's certificate does not open the first.
  const second = await localProject(tcp, {}, { connection: 'other', project: 'other-app' });
  const other = await requestBuild(tcp.user, second.project.id);
  await second.agent.sync();
  const otherMachine = second.agent.fleet!.machines[0]!;
  const otherAgent = await startAgentChild(
    t,
    agentEnv({
      apiUrl: tcp.url,
      machineId: otherMachine.id,
      registrationToken: otherMachine.registrationToken!,
      stateDir: path.join(work, 'machines', otherMachine.id),
      volumesDir: path.join(work, 'volumes'),
      buildkitPort: await freePort(),
    }),
    path.join(work, 'agent-2.log'),
  );
  await second.agent.applyFleet();
  const otherBuilder = await waitForBuilder(tcp.user, other.build.id).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await otherAgent.log()}`);
  });
  t.is(otherBuilder.state, 'ready', otherBuilder.reason);
  const otherClient = await buildClient(path.join(work, 'cli-2'), other.keys, otherBuilder);
  const crossed = await buildctl(target, otherClient.client, ['debug', 'workers']);
  t.not(crossed.code, 0, 'the first machine refuses the second machine’s client certificate');
  t.notRegex(crossed.output, /linux\/amd64/);
  const own = await buildctl(otherClient.target, otherClient.client, ['debug', 'workers']);
  t.is(own.code, 0, own.output);

  const { machines } = await tcp.user.call('listMachines', { query: { connection: 'local' } });
  t.is(machines[0]!.status, 'ready');
  t.like(machines[0]!.health, { buildkitdAlive: true, buildkitdRestarts: 0 });
  t.true(machines[0]!.health!.cacheBytesTotal > 0, 'disk use of the cache is reported');
});

test('a killed buildkitd is restarted and reported; SIGTERM stops cleanly in time; restarted, the machine resumes with its cache', async (t) => {
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'machine-e2e');
  const { project, agent: cloudAgent } = await localProject(tcp);
  const { build, keys } = await requestBuild(tcp.user, project.id);
  await cloudAgent.sync();
  const desired = cloudAgent.fleet!.machines[0]!;
  const settings = {
    apiUrl: tcp.url,
    machineId: desired.id,
    registrationToken: desired.registrationToken!,
    stateDir: path.join(work, 'machines', desired.id),
    volumesDir: path.join(work, 'volumes'),
    buildkitPort: await freePort(),
  };
  const env = agentEnv(settings);
  const agent = await startAgentChild(t, env, path.join(work, 'agent.log'));
  await cloudAgent.applyFleet();
  const builder = await waitForBuilder(tcp.user, build.id).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await agent.log()}`);
  });
  t.is(builder.state, 'ready', builder.reason);
  const { target, client } = await buildClient(path.join(work, 'cli'), keys, builder);
  const context = await runContext(work);
  const firstBuild = await buildctl(
    target,
    client,
    dockerfileBuildArgs(context, path.join(work, 'out-1')),
  );
  t.is(firstBuild.code, 0, firstBuild.output);

  // buildkitd dies (OOM killer, a bug): it is restarted, and the control plane hears of it.
  const pidFile = path.join(settings.stateDir, 'buildkit', 'buildkitd.pid');
  const buildkitd = Number(await readFile(pidFile, 'utf8'));
  process.kill(buildkitd, 'SIGKILL');
  const health = await waitFor(
    async () => {
      const { machines } = await tcp.user.call('listMachines', {});
      const h = machines[0]!.health;
      return h && h.buildkitdRestarts === 1 && h.buildkitdAlive ? h : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200, what: 'a health report of the restart' },
  );
  t.regex(
    health.lastEvent ?? '',
    /buildkitd restarted after it exited unexpectedly \(killed by SIGKILL\)/,
  );
  t.not(Number(await readFile(pidFile, 'utf8')), buildkitd);
  const afterRestart = await buildctl(target, client, ['debug', 'workers']);
  t.is(afterRestart.code, 0, afterRestart.output);

  // SIGTERM: buildkitd stopped, the control plane told, all within the shutdown deadline.
  const runningBuildkitd = Number(await readFile(pidFile, 'utf8'));
  const stopping = performance.now();
  agent.child.kill('SIGTERM');
  const exit = await agent.exited;
  const stopMs = performance.now() - stopping;
  t.deepEqual(exit, { code: 0, signal: null }, await agent.log());
  t.true(stopMs < defaultTiming.shutdownDeadlineMs, `shutdown took ${Math.round(stopMs)} ms`);
  t.false(
    await readFile(`/proc/${runningBuildkitd}/cmdline`, 'utf8').then(
      () => true,
      () => false,
    ),
    'no buildkitd is left behind',
  );
  t.regex(await agent.log(), /shut down cleanly/);
  const { machines: afterStop } = await tcp.user.call('listMachines', {});
  t.false(afterStop[0]!.health!.buildkitdAlive, 'the last report says buildkitd is stopped');

  // Started again on the same state directory: no registration (the token is spent), ready again.
  const restarted = await startAgentChild(t, env, path.join(work, 'agent-restarted.log'));
  const { build: next, keys: nextKeys } = await requestBuild(tcp.user, project.id);
  const nextBuilder = await waitForBuilder(tcp.user, next.id).catch(async (err: Error) => {
    throw new Error(`${err.message}\n${await restarted.log()}`);
  });
  t.is(nextBuilder.state, 'ready', nextBuilder.reason);
  t.regex(await restarted.log(), /already registered; resuming/);
  const nextClient = await buildClient(path.join(work, 'cli-next'), nextKeys, nextBuilder);
  const secondBuild = await buildctl(
    nextClient.target,
    nextClient.client,
    dockerfileBuildArgs(context, path.join(work, 'out-2')),
  );
  t.is(secondBuild.code, 0, secondBuild.output);
  t.regex(secondBuild.output, /CACHED/, 'the RUN step came from the cache kept on the volume');
});

test('an agent killed outright is started again and takes over from the buildkitd it left behind', async (t) => {
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'machine-e2e');
  const { project, agent: cloudAgent } = await localProject(tcp);
  const { build } = await requestBuild(tcp.user, project.id);
  await cloudAgent.sync();
  const desired = cloudAgent.fleet!.machines[0]!;
  const stateDir = path.join(work, 'machines', desired.id);
  const env = agentEnv({
    apiUrl: tcp.url,
    machineId: desired.id,
    registrationToken: desired.registrationToken!,
    stateDir,
    volumesDir: path.join(work, 'volumes'),
    buildkitPort: await freePort(),
  });
  const agent = await startAgentChild(t, env, path.join(work, 'agent.log'));
  await cloudAgent.applyFleet();
  t.is((await waitForBuilder(tcp.user, build.id)).state, 'ready', await agent.log());

  // SIGKILL: no cleanup at all. Its buildkitd still holds the port and the cache root's lock.
  const orphan = Number(await readFile(path.join(stateDir, 'buildkit', 'buildkitd.pid'), 'utf8'));
  agent.child.kill('SIGKILL');
  await agent.exited;

  const restarted = await startAgentChild(t, env, path.join(work, 'agent-restarted.log'));
  await waitFor(
    async () => {
      const log = await restarted.log();
      return /buildkitd ready/.test(log) ? log : undefined;
    },
    { timeoutMs: 120_000, intervalMs: 200, what: 'the restarted agent to have buildkitd ready' },
  );
  const log = await restarted.log();
  t.regex(log, /stopping a buildkitd left running by an earlier agent/);
  t.false(
    await readFile(`/proc/${orphan}/cmdline`, 'utf8').then(
      (cmdline) => cmdline.includes('buildkitd'),
      () => false,
    ),
    'the orphaned buildkitd is gone',
  );
  const next = await requestBuild(tcp.user, project.id);
  const builder = await waitForBuilder(tcp.user, next.build.id);
  t.is(builder.state, 'ready', builder.reason);
  const { target, client } = await buildClient(path.join(work, 'cli'), next.keys, builder);
  const workers = await buildctl(target, client, ['debug', 'workers']);
  t.is(workers.code, 0, workers.output);
});

test('a shutdown task from the control plane stops the agent cleanly with its reason', async (t) => {
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'machine-e2e');
  const { project, agent: cloudAgent } = await localProject(tcp);
  await requestBuild(tcp.user, project.id);
  await cloudAgent.sync();
  const desired = cloudAgent.fleet!.machines[0]!;
  const { logger, lines } = captureLogger();
  const stop = new AbortController();
  const running = runMachineAgent(
    configFromEnv(
      agentEnv({
        apiUrl: tcp.url,
        machineId: desired.id,
        registrationToken: desired.registrationToken!,
        stateDir: path.join(work, 'machines', desired.id),
        volumesDir: path.join(work, 'volumes'),
        buildkitPort: await freePort(),
      }),
    ),
    { signal: stop.signal, logger },
  );
  running.catch(() => undefined);
  t.teardown(async () => {
    stop.abort('test ended');
    await running.catch(() => undefined);
  });
  await waitFor(async () => (await tcp.user.call('listMachines', {})).machines[0]?.registeredAt, {
    timeoutMs: 30_000,
    what: 'the machine to register',
  });

  // The planner gives the machine up (here: the provider reported it could not run it).
  await cloudAgent.applyFleet({
    capacity: [
      { machineId: desired.id, platform: 'linux/amd64', reason: 'InsufficientInstanceCapacity' },
    ],
  });
  const exit = await running;
  t.regex(exit.reason, /InsufficientInstanceCapacity/);
  t.true(lines().some((l) => l.msg === 'shutdown task'));
  t.true(
    lines().some((l) => l.msg === 'shut down cleanly'),
    'the control plane was told',
  );
  const { machines } = await tcp.user.call('listMachines', { query: { includeDeleted: true } });
  t.false(machines[0]!.health?.buildkitdAlive ?? false);
});

test('health is reported on the interval even when nothing changes', async (t) => {
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'machine-e2e');
  const { project, agent: cloudAgent } = await localProject(tcp);
  await requestBuild(tcp.user, project.id);
  await cloudAgent.sync();
  const desired = cloudAgent.fleet!.machines[0]!;
  const stop = new AbortController();
  const running = runMachineAgent(
    configFromEnv(
      agentEnv({
        apiUrl: tcp.url,
        machineId: desired.id,
        registrationToken: desired.registrationToken!,
        stateDir: path.join(work, 'machines', desired.id),
        volumesDir: path.join(work, 'volumes'),
        buildkitPort: await freePort(),
      }),
    ),
    { signal: stop.signal, logger: captureLogger().logger, timing: { healthIntervalMs: 300 } },
  );
  running.catch(() => undefined);
  t.teardown(async () => {
    stop.abort('test ended');
    await running.catch(() => undefined);
  });

  const lastHealth = async () =>
    (await tcp.user.call('listMachines', {})).machines[0]?.lastHealthAt ?? undefined;
  const first = await waitFor(lastHealth, { timeoutMs: 30_000, what: 'a first health report' });
  const later = await waitFor(
    async () => ((await lastHealth()) !== first ? lastHealth() : undefined),
    {
      timeoutMs: 30_000,
      what: 'the next health report on the interval',
    },
  );
  t.true(Date.parse(later!) > Date.parse(first));
  stop.abort('received SIGTERM');
  t.deepEqual(await running, { reason: 'received SIGTERM' });
});

test('a task that cannot be applied is reported with its reason and applied again once the cause is gone', async (t) => {
  const tcp = await startTestControlPlane(t);
  const work = await tempDir(t, 'machine-e2e');
  const { project, agent: cloudAgent } = await localProject(tcp);
  const { build } = await requestBuild(tcp.user, project.id);
  await cloudAgent.sync();
  const desired = cloudAgent.fleet!.machines[0]!;
  // The volumes directory is not a directory: the cache volume cannot be made.
  const volumesDir = path.join(work, 'volumes');
  await writeFile(volumesDir, 'not a directory');
  const stop = new AbortController();
  const running = runMachineAgent(
    configFromEnv(
      agentEnv({
        apiUrl: tcp.url,
        machineId: desired.id,
        registrationToken: desired.registrationToken!,
        stateDir: path.join(work, 'machines', desired.id),
        volumesDir,
        buildkitPort: await freePort(),
      }),
    ),
    { signal: stop.signal, logger: captureLogger().logger },
  );
  running.catch(() => undefined);
  t.teardown(async () => {
    stop.abort('test ended');
    await running.catch(() => undefined);
  });
  await cloudAgent.applyFleet();

  const reason = await waitFor(
    async () => {
      const builder = await tcp.user.call('waitBuilder', {
        params: { buildId: build.id },
        query: { platform: 'linux/amd64', wait: 0 },
      });
      return /BuildKit failed/.test(builder.reason) ? builder.reason : undefined;
    },
    { timeoutMs: 60_000, intervalMs: 200, what: 'the failure to reach the CLI' },
  );
  t.regex(reason, /cannot use .* as cache volume .*ENOTDIR.*SLIPWAY_VOLUMES_DIR/);

  await rm(volumesDir);
  await mkdir(volumesDir);
  const builder = await waitForBuilder(tcp.user, build.id);
  t.is(builder.state, 'ready', builder.reason);
});
