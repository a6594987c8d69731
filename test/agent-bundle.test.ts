// How the cloud-agent ships: `npm run bundle` writes cloud-agent.cjs with the machine-agent and
// the local provider's dynamic-provider module beside it (dist/ by default). In a directory laid
// out like the agent image (the bundles, node_modules with only the externals @pulumi/pulumi and
// @pulumi/aws), away from the sources, the bundle checks its configuration and runs a real local
// fleet: a build request ends with a ready builder whose every process came from the bundles.
import test from 'ava';
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { stackLayout } from '../automation/layout';
import { observeLocal } from '../automation/local/observe';
import { processesUnder } from '../automation/local/processes';
import {
  agentCaughtUp,
  builderReady,
  localAgents,
  requestBuilder,
  stopAgentProcess,
} from './helpers/cloud-agent';
import { localProject, startTestControlPlane } from './helpers/control-plane';

const execFileAsync = promisify(execFile);
const root = path.join(__dirname, '..');
const bundles = ['cloud-agent.cjs', 'local-provider.cjs', 'machine-agent.cjs'];

async function run(args: string[], env: NodeJS.ProcessEnv, cwd: string) {
  try {
    const { stdout, stderr } = await execFileAsync(process.execPath, args, {
      env,
      cwd,
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

/**
 * The bundles as the image lays them out (images/agent/Dockerfile): `npm run bundle` into a
 * directory of their own (not the shared dist/, which other tests build at the same time), and
 * beside them node_modules with the externals only, installed the image's way.
 */
let app = '';
test.before(async (t) => {
  app = await mkdtemp(path.join(tmpdir(), 'slipway-agent-app-'));
  const bundled = await execFileAsync(
    'npm',
    ['run', '--silent', 'bundle', '--', `--outdir=${app}`],
    { cwd: root },
  );
  t.is(bundled.stderr.trim(), '', 'the bundle builds without warnings');
  t.deepEqual((await readdir(app)).sort(), bundles);
  await execFileAsync(process.execPath, [
    path.join(root, 'images/agent/runtime-package.cjs'),
    root,
    app,
  ]);
  await execFileAsync(
    'npm',
    ['install', '--omit=dev', '--ignore-scripts', '--prefer-offline', '--no-audit', '--no-fund'],
    { cwd: app, timeout: 300_000 },
  );
});
test.after.always(() => rm(app, { recursive: true, force: true }));

test('the image installs only what the bundles leave external, at the locked versions', async (t) => {
  const lock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version: string }>;
  };
  const installed = JSON.parse(await readFile(path.join(app, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version: string }>;
  };
  const names = Object.keys(installed.packages).filter((k) => k !== '');
  t.true(
    names.includes('node_modules/@pulumi/pulumi') && names.includes('node_modules/@pulumi/aws'),
  );
  t.deepEqual(
    names.filter((k) => lock.packages[k]?.version !== installed.packages[k]?.version),
    [],
    'every package at the version of the repository lock',
  );
  for (const notNeeded of ['knex', 'koa', 'sqlite3', 'pino', 'zod', '@aws-sdk/client-ec2', 'tsx']) {
    t.false(existsSync(path.join(app, 'node_modules', notNeeded)), `${notNeeded} is in the bundle`);
  }
});

test('the bundled cloud-agent prints its help and checks its configuration', async (t) => {
  const agent = path.join(app, 'cloud-agent.cjs');
  const env = { PATH: process.env.PATH };

  const help = await run([agent, '--help'], env, app);
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /SLIPWAY_CONNECTION_TOKEN/);
  t.regex(help.stdout, /--check-config/);

  const bad = await run(
    [agent, '--check-config'],
    { ...env, SLIPWAY_CONNECTION_TOKEN: 'not-a-token', SLIPWAY_DRIFT_CHECK_SECONDS: '-5' },
    app,
  );
  t.is(bad.code, 78, 'a configuration error is final (ECS and systemd need not retry it)');
  t.regex(bad.stderr, /invalid_config/);
  t.regex(bad.stderr, /SLIPWAY_API_URL: is missing/);
  t.regex(bad.stderr, /SLIPWAY_CONNECTION_TOKEN: must be a connection token/);
  t.regex(bad.stderr, /SLIPWAY_DRIFT_CHECK_SECONDS: .*between 0 \(never\) and 86400/);
  t.false(bad.stderr.includes('not-a-token'), 'the token is not echoed');

  const token = `swc_${'c'.repeat(43)}`;
  const good = await run(
    [agent, '--check-config'],
    {
      ...env,
      SLIPWAY_API_URL: 'https://slipway.example.com',
      SLIPWAY_CONNECTION_TOKEN: token,
      SLIPWAY_DATA_DIR: '/var/lib/slipway-agent',
      SLIPWAY_STATE_BACKEND: 's3://fleet-state?region=eu-west-1',
      SLIPWAY_SECRETS_PROVIDER: 'awskms://alias/slipway?region=eu-west-1',
    },
    app,
  );
  t.is(good.code, 0, good.stderr);
  t.like(JSON.parse(good.stdout), {
    apiUrl: 'https://slipway.example.com',
    connectionToken: '[redacted]',
    stateBackend: 's3://fleet-state?region=eu-west-1',
    driftCheckSeconds: 600,
  });
  t.false(good.stdout.includes(token), 'the token is not printed');
});

test('the bundled cloud-agent converges a local fleet: a build request ends with a ready builder', async (t) => {
  const tcp = await startTestControlPlane(t);
  const { connection, connectionToken, project } = await localProject(tcp);
  const { dataDir, start } = await localAgents(t, { apiUrl: tcp.url, connectionToken });
  const agent = start({ args: [path.join(app, 'cloud-agent.cjs')], cwd: app });

  const build = await requestBuilder(tcp.user, project.name);
  const ready = await builderReady(tcp.user, build.id, 180_000);
  t.truthy(ready.endpoint);

  const machineId = ready.machineId!;
  const [machine] = observeLocal(dataDir).machines;
  t.like(machine, { id: machineId, state: 'running' });
  const pids = processesUnder(path.join(dataDir, 'machines', machineId));
  const commands = await Promise.all(
    pids.map(async ({ pid }) => (await readFile(`/proc/${pid}/cmdline`, 'utf8')).split('\0')),
  );
  t.true(
    commands.some(
      (argv) => argv[0] === process.execPath && argv[1] === path.join(app, 'machine-agent.cjs'),
    ),
    `the machine-agent runs from the bundle beside the agent: ${JSON.stringify(commands)}`,
  );
  t.false(
    commands.flat().some((arg) => arg.includes('tsx') || arg.endsWith('.ts')),
    'nothing runs from the TypeScript sources',
  );

  // The dynamic providers recorded in the state load the bundled implementation.
  await agentCaughtUp(tcp.user, connection.id);
  const checkpoint = JSON.parse(
    await readFile(
      path.join(
        stackLayout(dataDir, connection.id).backendDir,
        '.pulumi',
        'stacks',
        'slipway-fleet',
        `${connection.id}.json`,
      ),
      'utf8',
    ),
  ) as {
    checkpoint: { latest: { resources: { type: string; inputs?: { __provider?: string } }[] } };
  };
  const providers = checkpoint.checkpoint.latest.resources
    .filter((r) => r.type.startsWith('pulumi-nodejs:dynamic/slipway:'))
    .map((r) => r.inputs?.__provider ?? '');
  t.is(providers.length, 2, 'a machine and a volume');
  for (const provider of providers) {
    t.true(provider.includes(JSON.stringify(path.join(app, 'local-provider.cjs'))));
    t.false(provider.includes('provider-impl.ts'));
  }
  const exit = await stopAgentProcess(agent);
  t.deepEqual(exit, { code: 0, signal: null }, agent.output().slice(-5000));
  t.regex(agent.output(), /"msg":"converge finished"/);
});
