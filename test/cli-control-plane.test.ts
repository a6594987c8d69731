// The slipway CLI against a real control plane on loopback: listings and creation for people and
// scripts, login, and every way a build request can fail ending with a clear message and a
// non-zero exit, never a hang.
import test from 'ava';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../common/net';
import { version as packageVersion } from '../package.json';
import { waitFor } from '../common/wait';
import {
  localProject,
  ScriptedMachine,
  startTestControlPlane,
  type TestControlPlane,
} from './helpers/control-plane';
import { runCli } from './helpers/cli';
import { tempDir } from './helpers/tmp';

const context = path.join(__dirname, 'fixtures', 'scratch-copy');

async function cliEnv(
  t: Parameters<typeof tempDir>[0],
  tcp: TestControlPlane,
  token = tcp.userToken,
) {
  const dir = await tempDir(t, 'cli-home');
  return {
    SLIPWAY_API_URL: tcp.url,
    SLIPWAY_TOKEN: token,
    SLIPWAY_CONFIG: path.join(dir, 'config.json'),
  };
}

test('connections and projects are created and listed for people and for scripts', async (t) => {
  const tcp = await startTestControlPlane(t);
  const env = await cliEnv(t, tcp);
  const created = await runCli(['connections', 'create', 'laptop', '--provider', 'local'], { env });
  t.is(created.code, 0, created.stderr);
  t.regex(created.stdout, /created connection laptop \(con_\w+\)/);
  t.regex(created.stdout, /agent token \(shown once, store it now\): swc_[\w-]{43}/);

  const project = await runCli(['projects', 'create', 'web', '--connection', 'laptop'], { env });
  t.is(project.code, 0, project.stderr);
  const listed = await runCli(['projects', '--json'], { env });
  const projects = JSON.parse(listed.stdout) as { name: string }[];
  t.deepEqual(
    projects.map((p) => p.name),
    ['web'],
  );
  const table = await runCli(['connections'], { env });
  t.regex(table.stdout, /^NAME\s+ID\s+PROVIDER/m);
  t.regex(table.stdout, /^laptop\s+con_\w+\s+local/m);
  const noToken = await runCli(['connections'], { env: { ...env, SLIPWAY_TOKEN: '' } });
  t.is(noToken.code, 1);
  t.regex(noToken.stderr, /no token: run `slipway login/);

  const dup = await runCli(['projects', 'create', 'web', '--connection', 'laptop'], { env });
  t.is(dup.code, 1);
  t.regex(dup.stderr, /creating the project: .*web/);

  const version = await runCli(['--version'], { env });
  t.is(version.code, 0, version.stderr);
  t.is(version.stdout.trim(), packageVersion, 'slipway --version prints the release');
});

test('login checks the token and keeps it in a 0600 config file', async (t) => {
  const tcp = await startTestControlPlane(t);
  const env = await cliEnv(t, tcp);
  const { SLIPWAY_TOKEN: token, ...noToken } = env;
  const login = await runCli(['--api-url', tcp.url, 'login'], {
    env: noToken,
    input: token + '\n',
  });
  t.is(login.code, 0, login.stderr);
  t.regex(login.stderr, /logged in to .* as organization org-/);
  t.is((await stat(env.SLIPWAY_CONFIG)).mode & 0o777, 0o600);
  t.true((await readFile(env.SLIPWAY_CONFIG, 'utf8')).includes(token));
  const listed = await runCli(['projects'], { env: noToken });
  t.is(listed.code, 0, listed.stderr);

  const bad = await runCli(['--api-url', tcp.url, '--token', `swu_${'x'.repeat(43)}`, 'login'], {
    env: noToken,
  });
  t.is(bad.code, 1);
  t.regex(bad.stderr, /refused the token/);
});

test('build requests that cannot be served fail at once with the reason', async (t) => {
  const tcp = await startTestControlPlane(t);
  const env = await cliEnv(t, tcp);
  await runCli(['connections', 'create', 'laptop', '--provider', 'local'], { env });
  await runCli(['projects', 'create', 'web', '--connection', 'laptop'], { env });

  const unknown = await runCli(['build', context, '--project', 'nope'], { env });
  t.is(unknown.code, 1);
  t.regex(unknown.stderr, /requesting builders: .*project/i);

  const badToken = await runCli(['build', context, '--project', 'web'], {
    env: { ...env, SLIPWAY_TOKEN: `swu_${'y'.repeat(43)}` },
  });
  t.is(badToken.code, 1);
  t.regex(badToken.stderr, /refused the token.*slipway login/);

  const arm = await runCli(['build', context, '--project', 'web', '--platform', 'linux/arm64'], {
    env,
  });
  t.is(arm.code, 1);
  t.regex(arm.stderr, /linux\/arm64/);
  t.regex(arm.stderr, /laptop|connection/);
});

test('a builder that never becomes ready fails at the acquire deadline with the last reason', async (t) => {
  const tcp = await startTestControlPlane(t);
  const env = await cliEnv(t, tcp);
  const created = await tcp.user.call('createConnection', {
    body: { name: 'no-agent', provider: 'local', settings: { acquireDeadlineSeconds: 5 } },
  });
  await tcp.user.call('createProject', {
    body: { name: 'web', connection: created.connection.id },
  });
  const started = Date.now();
  const res = await runCli(['build', context, '--project', 'web', '--progress', 'plain'], {
    env,
    timeoutMs: 60_000,
  });
  t.is(res.code, 1);
  t.regex(res.stderr, /\[linux\/amd64\] waiting: .+/, 'it said what it waited for');
  t.regex(res.stderr, /no linux\/amd64 builder: .+/);
  t.true(Date.now() - started < 30_000, 'it ended soon after the deadline');
  const builds = JSON.parse((await runCli(['builds', '--json'], { env })).stdout) as {
    status: string;
    error: string;
  }[];
  t.is(builds[0]?.status, 'failed');
});

test('a builder that died after it was handed out fails the build at once, saying the builder does not answer', async (t) => {
  const tcp = await startTestControlPlane(t);
  const env = await cliEnv(t, tcp);
  const { agent } = await localProject(tcp, {}, { connection: 'local', project: 'web' });
  await agent.sync();
  // The machine registers and reports BuildKit ready at an address where nothing listens any more:
  // a machine that died after its last report, which the control plane still counts as ready.
  const building = runCli(['build', context, '--project', 'web', '--progress', 'plain'], {
    env,
    timeoutMs: 120_000,
  });
  await waitFor(async () => (await agent.sync()).lease === 'held' && agent.fleet!.machines[0], {
    timeoutMs: 30_000,
    what: 'the build request to reach the fleet',
  });
  const port = await freePort();
  const machine = new ScriptedMachine(
    tcp,
    agent.fleet!.machines[0]!.id,
    agent.fleet!.machines[0]!.registrationToken!,
    '127.0.0.1',
    port,
  );
  await machine.register();
  await agent.applyFleet();
  await machine.task();
  await machine.report('ready');

  const res = await building;
  t.is(res.code, 1, res.stderr);
  t.regex(
    res.stderr,
    new RegExp(
      `build failed \\(exit code 1\\): the linux/amd64 builder \\(machine ${machine.machineId}\\) does not answer \\(127\\.0\\.0\\.1:${port}: ECONNREFUSED\\): BuildKit or its machine went down\\. Run the build again`,
    ),
  );
  const builds = JSON.parse((await runCli(['builds', '--json'], { env })).stdout) as {
    status: string;
    error: string;
  }[];
  t.is(builds[0]?.status, 'failed');
  t.regex(builds[0]!.error, /does not answer/, 'the control plane keeps the reason');
});
