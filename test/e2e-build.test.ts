// End to end, as a developer uses it: `slipway dev` (control plane + cloud-agent with the real
// Pulumi engine and the local provider), then `slipway build`: the agent starts a machine-agent,
// which starts buildkitd with mTLS, and the CLI builds on it directly. The second build of the
// project reuses the running builder and its cache; a broken Dockerfile and Ctrl-C end cleanly.
import test from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { copyFile, cp, readFile, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { ApiClient } from '../common/api';
import { waitFor } from '../common/wait';
import { ociImageFiles } from './helpers/oci';
import { runCli, slipwayBin } from './helpers/cli';
import { tempDir } from './helpers/tmp';

const example = path.join(__dirname, '..', 'examples', 'hello');

async function startDev(t: Parameters<typeof tempDir>[0]) {
  const dir = await tempDir(t, 'e2e');
  const exportFile = path.join(dir, 'env');
  const dev: ChildProcess = spawn(
    process.execPath,
    [
      slipwayBin,
      'dev',
      '--data-dir',
      path.join(dir, 'dev'),
      '--listen',
      '127.0.0.1:0',
      '--export-file',
      exportFile,
      '--project',
      'hello',
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let devOutput = '';
  dev.stderr!.on('data', (d: Buffer) => (devOutput += d.toString()));
  const exited = once(dev, 'exit');
  t.teardown(async () => {
    if (dev.exitCode === null) {
      dev.kill('SIGINT');
      await exited;
    }
  });
  const env = await waitFor(
    async () => {
      if (dev.exitCode !== null) throw new Error(`slipway dev exited: ${devOutput}`);
      if (!existsSync(exportFile)) return undefined;
      const lines = (await readFile(exportFile, 'utf8')).trim().split('\n');
      return lines.length === 3
        ? Object.fromEntries(lines.map((l) => l.split(/=(.*)/s).slice(0, 2) as [string, string]))
        : undefined;
    },
    { timeoutMs: 120_000, what: 'slipway dev to start' },
  );
  const context = path.join(dir, 'hello');
  await cp(example, context, { recursive: true });
  await copyFile('/bin/busybox', path.join(context, 'busybox'));
  const cliEnv = { ...env, SLIPWAY_CONFIG: path.join(dir, 'config.json') } as Record<
    string,
    string
  >;
  const api = new ApiClient({ baseUrl: env.SLIPWAY_API_URL!, token: env.SLIPWAY_TOKEN! });
  t.teardown(() => api.close());
  return { dir, dev, exited, context, env: cliEnv, api, output: () => devOutput };
}

test('slipway build runs on a self-hosted local builder, then again on the same warm builder', async (t) => {
  const { dir, context, env, api, dev, exited, output } = await startDev(t);

  const first = await runCli(
    [
      'build',
      context,
      '--progress',
      'plain',
      '--output',
      `type=oci,dest=${path.join(dir, 'one.tar')}`,
      '--metadata-file',
      path.join(dir, 'one.json'),
    ],
    { env, timeoutMs: 300_000 },
  );
  t.is(first.code, 0, first.stderr);
  t.regex(first.stderr, /\[linux\/amd64\] waiting: .+/, 'it said what it was waiting for');
  t.regex(first.stderr, /builder mch_\w+ ready \(cold path/);
  const files = await ociImageFiles(path.join(dir, 'one.tar'));
  t.is(
    files.get('/app/GREETING.txt'),
    'HELLO FROM A SLIPWAY BUILDER\n',
    'the image holds what the Dockerfile made',
  );
  t.is(files.get('/app/greeting.txt'), 'hello from a slipway builder\n', 'and what it copied');

  const second = await runCli(
    [
      'build',
      context,
      '--progress',
      'plain',
      '--output',
      `type=oci,dest=${path.join(dir, 'two.tar')}`,
      '--metadata-file',
      path.join(dir, 'two.json'),
    ],
    { env, timeoutMs: 120_000 },
  );
  t.is(second.code, 0, second.stderr);
  t.regex(second.stderr, /ready \(hot path/);
  t.regex(
    second.stderr,
    /\[build 3\/3\] RUN [^\n]*\n#\d+ CACHED/,
    'the RUN step came from the cache',
  );
  const one = JSON.parse(await readFile(path.join(dir, 'one.json'), 'utf8'));
  const two = JSON.parse(await readFile(path.join(dir, 'two.json'), 'utf8'));
  t.is(
    two.build.builders[0].machineId,
    one.build.builders[0].machineId,
    'the same builder served both',
  );
  const { machines } = await api.call('listMachines', {});
  t.is(machines.filter((m) => m.status !== 'deleted').length, 1, 'no second machine was made');

  // A broken Dockerfile fails the build with BuildKit's words and a non-zero exit.
  await writeFile(path.join(context, 'Dockerfile.broken'), 'FROM scratch\nCOPY missing-file /x\n');
  const broken = await runCli(
    ['build', context, '-f', path.join(context, 'Dockerfile.broken'), '--progress', 'plain'],
    {
      env,
      timeoutMs: 120_000,
    },
  );
  t.is(broken.code, 1);
  t.regex(broken.stderr, /missing-file/);
  t.regex(broken.stderr, /build failed \(exit code 1\)/);
  const { builds } = await api.call('listBuilds', {});
  t.deepEqual(
    builds.map((b) => b.status),
    ['failed', 'succeeded', 'succeeded'],
  );

  dev.kill('SIGINT');
  const [code] = await exited;
  t.is(code, 0, output());
});

test('Ctrl-C cancels a running build and tells the control plane', async (t) => {
  const { context, env, api } = await startDev(t);
  await writeFile(
    path.join(context, 'Dockerfile.slow'),
    'FROM scratch\nCOPY busybox /bin/busybox\nRUN ["/bin/busybox", "sh", "-c", "echo started-slow-step; /bin/busybox sleep 120"]\n',
  );
  const child = spawn(
    process.execPath,
    [
      slipwayBin,
      'build',
      context,
      '-f',
      path.join(context, 'Dockerfile.slow'),
      '--progress',
      'plain',
    ],
    {
      env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '/root', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const closed = once(child, 'close');
  await waitFor(() => stderr.includes('started-slow-step'), {
    timeoutMs: 300_000,
    what: 'the slow step to start',
  });
  child.kill('SIGINT');
  const [code] = await Promise.race([
    closed,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`no exit after Ctrl-C:\n${stderr}`)), 60_000),
    ),
  ]);
  t.is(code, 130);
  t.regex(stderr, /build canceled/);
  const { builds } = await api.call('listBuilds', {});
  t.is(builds[0]?.status, 'canceled');
});
