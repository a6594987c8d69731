// Nothing is lost across a crash: the control plane (`slipway server` as a child process) is
// killed with SIGKILL while a build waits for its builder, started again on the same data
// directory, and the build completes. Also: a restart on an existing database keeps what was
// there, and close() ends open long-polls with an answer (start-up time is in bench/ api).
import { spawn, type ChildProcess } from 'node:child_process';
import path from 'node:path';
import test from 'ava';
import { ApiClient } from '../common/api';
import { freePort } from '../common/net';
import { waitFor } from '../common/wait';
import { startControlPlane } from '../control-plane/server';
import pino from 'pino';
import {
  buildCsr,
  localProject,
  ScriptedMachine,
  startTestControlPlane,
  type TestControlPlane,
} from './helpers/control-plane';
import { tempDir } from './helpers/tmp';

const root = path.resolve(__dirname, '..');

function serve(
  t: Parameters<typeof tempDir>[0],
  dataDir: string,
  port: number,
  extra: string[] = [],
) {
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      'control-plane/main.ts',
      '--data-dir',
      dataDir,
      '--listen',
      `127.0.0.1:${port}`,
      ...extra,
    ],
    {
      cwd: root,
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d) => (stdout += d));
  child.stderr!.on('data', (d) => (stderr += d));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const url = `http://127.0.0.1:${port}`;
  const up = waitFor(
    async () => {
      if (child.exitCode !== null) throw new Error(`the server exited: ${stderr}`);
      const res = await fetch(`${url}/healthz`);
      return res.ok;
    },
    { timeoutMs: 60_000, what: 'the control plane to answer /healthz' },
  );
  return { child, url, up, output: () => ({ stdout, stderr }) };
}

function killed(child: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    child.once('exit', () => resolve());
    child.kill('SIGKILL');
  });
}

test('a build waiting for its builder completes after the server is killed and restarted', async (t) => {
  const dataDir = await tempDir(t, 'cp-restart');
  const port = await freePort();
  const first = serve(t, dataDir, port, ['--bootstrap-org', 'acme']);
  await first.up;
  const token = await waitFor(() => /swu_[A-Za-z0-9_-]{43}/.exec(first.output().stdout)?.[0], {
    timeoutMs: 10_000,
    what: 'the printed admin token',
  });
  const user = new ApiClient({ baseUrl: first.url, token });
  t.teardown(() => user.close());
  // A stand-in for TestControlPlane's clients, pointing at the child process.
  const clients: ApiClient[] = [];
  const tcp = {
    user,
    anonymous: new ApiClient({ baseUrl: first.url }),
    client: (tok?: string) => {
      const c = new ApiClient({ baseUrl: first.url, token: tok });
      clients.push(c);
      return c;
    },
  } as unknown as TestControlPlane;
  t.teardown(() =>
    Promise.all([...clients, tcp.anonymous].map((c) => c.close())).then(() => undefined),
  );

  const { project, agent } = await localProject(tcp);
  const { csr } = await buildCsr();
  const build = await user.call('createBuild', {
    body: { project: project.id, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  await agent.sync();
  const fleetBefore = agent.fleet!;
  t.is(fleetBefore.machines.length, 1);

  await killed(first.child);

  const second = serve(t, dataDir, port, ['--bootstrap-org', 'acme']);
  await second.up;
  // The organization exists: no second token is printed.
  t.notRegex(second.output().stdout, /swu_/);
  // The agent (same agent id) keeps its lease; the fleet is the same, and so is the registration
  // token derived from the server secret.
  const agentAgain = agent;
  agentAgain.known = 0;
  const resumed = await agentAgain.sync();
  t.is(resumed.lease, 'held');
  t.deepEqual(agentAgain.fleet!.machines, fleetBefore.machines);
  const pending = await user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 0 },
  });
  t.is(pending.state, 'pending');

  const machine = ScriptedMachine.fromFleet(tcp, agentAgain.fleet!);
  await machine.register();
  await agentAgain.applyFleet();
  const task = await machine.task();
  t.is(task.kind, 'buildkit');
  await machine.report('ready');
  const ready = await user.call('waitBuilder', {
    params: { buildId: build.id },
    query: { platform: 'linux/amd64', wait: 10 },
  });
  t.is(ready.state, 'ready');
  t.truthy(ready.clientCertificate);
  const finished = await user.call('finishBuild', {
    params: { buildId: build.id },
    body: { result: 'succeeded' },
  });
  t.is(finished.status, 'succeeded');

  // SIGTERM stops it cleanly.
  const exited = new Promise<number | null>((resolve) =>
    second.child.once('exit', (code) => resolve(code)),
  );
  second.child.kill('SIGTERM');
  t.is(await exited, 0);
});

test('close() answers open long-polls, and a restart on the same database keeps the connection', async (t) => {
  const tcp: TestControlPlane = await startTestControlPlane(t);
  const { agent } = await localProject(tcp);
  await agent.sync();
  const seen = await tcp.cp.db('connections').first('agent_last_seen_at');
  const open = agent.sync({ wait: 25 });
  await waitFor(
    async () =>
      Number((await tcp.cp.db('connections').first('agent_last_seen_at')).agent_last_seen_at) >
      Number(seen.agent_last_seen_at),
    { timeoutMs: 5000, what: 'the long-poll to reach the server' },
  );
  const closing = performance.now();
  await tcp.cp.close();
  const res = await open;
  t.is(res.lease, 'held', 'the long-poll got its answer');
  t.true(performance.now() - closing < 10_000, 'close() did not wait for the 25 s long-poll');

  const again = await startControlPlane({
    dataDir: tcp.dataDir,
    logger: pino({ level: 'silent' }),
  });
  t.teardown(() => again.close());
  const after = await again.db('connections').first('agent_last_seen_at');
  t.truthy(after, 'the connection is still there after the restart');
  t.true(
    Number(after.agent_last_seen_at) >= Number(seen.agent_last_seen_at),
    'the agent last-seen time survived the restart',
  );
});
