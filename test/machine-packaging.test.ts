// How the machine-agent ships: a single-file bundle that runs with nothing but node beside it,
// and a systemd unit that systemd itself accepts, with the paths images/ installs to.
import test from 'ava';
import { execFile } from 'node:child_process';
import { copyFile, readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import { tempDir } from './helpers/tmp';

const execFileAsync = promisify(execFile);
const root = path.join(__dirname, '..');
const unitFile = path.join(root, 'machine', 'systemd', 'slipway-machine-agent.service');

async function run(file: string, args: string[], env: NodeJS.ProcessEnv, cwd: string) {
  try {
    const { stdout, stderr } = await execFileAsync(file, args, { env, cwd, timeout: 60_000 });
    return { code: 0, stdout, stderr };
  } catch (err) {
    const e = err as { code?: number; stdout?: string; stderr?: string };
    return { code: e.code ?? 1, stdout: e.stdout ?? '', stderr: e.stderr ?? '' };
  }
}

test('the bundle runs on its own: help, and configuration errors that name the variable', async (t) => {
  const built = await run('npm', ['run', '--silent', 'bundle'], process.env, root);
  t.is(built.code, 0, built.stderr);
  // Copied away from node_modules: the bundle must not need anything but node.
  const dir = await tempDir(t, 'bundle');
  const bundle = path.join(dir, 'machine-agent.cjs');
  await copyFile(path.join(root, 'dist', 'machine-agent.cjs'), bundle);
  const env = { PATH: process.env.PATH };

  const help = await run(process.execPath, [bundle, '--help'], env, dir);
  t.is(help.code, 0, help.stderr);
  t.regex(help.stdout, /SLIPWAY_REGISTRATION_TOKEN/);
  t.regex(help.stdout, /--config FILE/);

  const bad = await run(
    process.execPath,
    [bundle, '--check-config'],
    { ...env, SLIPWAY_PROVIDER: 'gcp', SLIPWAY_MACHINE_ID: 'mch_bundletest1' },
    dir,
  );
  t.is(bad.code, 78, 'a configuration error is final (systemd does not restart on 78)');
  t.regex(bad.stderr, /invalid_config/);
  t.regex(bad.stderr, /SLIPWAY_PROVIDER: must be local or aws/);
  t.regex(bad.stderr, /SLIPWAY_API_URL: is missing/);

  const token = `swr_${'b'.repeat(43)}`;
  const good = await run(
    process.execPath,
    [bundle, '--check-config'],
    {
      ...env,
      SLIPWAY_API_URL: 'https://cp.example.com',
      SLIPWAY_MACHINE_ID: 'mch_bundletest1',
      SLIPWAY_REGISTRATION_TOKEN: token,
      SLIPWAY_PROVIDER: 'aws',
      SLIPWAY_PLATFORM: 'linux/arm64',
      SLIPWAY_STATE_DIR: '/var/lib/slipway',
    },
    dir,
  );
  t.is(good.code, 0, good.stderr);
  t.like(JSON.parse(good.stdout), { provider: 'aws', buildkitPort: 8372 });
  t.false(good.stdout.includes(token), 'the registration token is not printed');
});

test('systemd accepts the unit, which runs the bundle from the documented paths', async (t) => {
  const verify = await run('systemd-analyze', ['verify', unitFile], process.env, root);
  t.is(verify.code, 0, verify.stderr);
  t.is(verify.stderr.trim(), '', 'no warnings either');
  const unit = await readFile(unitFile, 'utf8');
  // images/ installs the bundle and user data writes the environment file at these paths.
  t.regex(unit, /^ExecStart=\/usr\/bin\/node \/opt\/slipway\/machine-agent\.cjs$/m);
  t.regex(unit, /^EnvironmentFile=\/etc\/slipway\/machine\.env$/m);
  t.regex(unit, /^RestartPreventExitStatus=78$/m);
  t.regex(unit, /^KillMode=mixed$/m);
});
