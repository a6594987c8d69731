// The builder image's recipe, checked here without AWS: its scripts pass shellcheck, the unit it
// installs passes systemd-analyze verify, its kernel settings exist, and its build script really
// reproduces the pinned BuildKit binaries (and refuses anything else).
import test from 'ava';
import { execFile } from 'node:child_process';
import { cp, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import {
  artifactsDigest,
  builderImageDir,
  defaultArtifactSources,
  ImageArtifactsError,
  imageArtifacts,
  readVersions,
} from '../images/builder/image';
import { tempDir } from './helpers/tmp';

const run = promisify(execFile);

async function fails(file: string, args: string[], env?: NodeJS.ProcessEnv) {
  try {
    await run(file, args, { env: env ?? process.env, maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    const e = err as { code: number; stdout: string; stderr: string };
    return { code: e.code, output: `${e.stdout}${e.stderr}` };
  }
  throw new Error(`${file} ${args.join(' ')} succeeded`);
}

test('the provisioning scripts pass shellcheck', async (t) => {
  const dir = path.join(builderImageDir, 'scripts');
  const scripts = (await readdir(dir))
    .filter((f) => f.endsWith('.sh'))
    .map((f) => path.join(dir, f));
  t.true(scripts.length >= 3);
  await run('shellcheck', ['--external-sources', '--severity=info', ...scripts]);
  // And shellcheck does bite: an unquoted expansion is reported.
  const tmp = await tempDir(t, 'shellcheck');
  const bad = path.join(tmp, 'bad.sh');
  await writeFile(bad, '#!/usr/bin/env bash\nrm -rf $1/cache\n');
  const result = await fails('shellcheck', [bad]);
  t.regex(result.output, /SC2086/);
});

test('the machine-agent unit the image installs passes systemd-analyze verify', async (t) => {
  const unit = defaultArtifactSources.machineAgentUnit;
  const { stderr } = await run('systemd-analyze', ['verify', unit]);
  t.is(stderr.trim(), '');
  // A copy naming a program that does not exist is refused, so a pass means something.
  const tmp = await tempDir(t, 'units');
  const broken = path.join(tmp, 'slipway-machine-agent.service');
  await writeFile(
    broken,
    (await readFile(unit, 'utf8')).replace(/^ExecStart=\S+/m, 'ExecStart=/nonexistent/node'),
  );
  const result = await fails('systemd-analyze', ['verify', broken]);
  t.regex(result.output, /\/nonexistent\/node is not executable/);
});

test('every kernel setting the image applies exists in the kernel', async (t) => {
  const conf = await readFile(
    path.join(builderImageDir, 'kernel', '99-slipway-buildkit.conf'),
    'utf8',
  );
  const keys = conf
    .split('\n')
    .filter((l) => l.trim() && !l.trim().startsWith('#'))
    .map((l) => l.split('=')[0]!.trim());
  t.true(keys.length >= 4);
  for (const key of keys) {
    await t.notThrowsAsync(readFile(path.join('/proc/sys', ...key.split('.'))), key);
  }
  const modules = (
    await readFile(path.join(builderImageDir, 'kernel', 'slipway-buildkit-modules.conf'), 'utf8')
  )
    .split('\n')
    .filter((l) => l.trim() && !l.startsWith('#'));
  t.deepEqual(modules, ['overlay']);
});

test('the image is made from files that exist, and says which one is missing', async (t) => {
  const tmp = await tempDir(t, 'artifacts');
  const bundle = path.join(tmp, 'machine-agent.cjs');
  await writeFile(bundle, '"use strict";\n');
  const files = imageArtifacts({ ...defaultArtifactSources, machineAgentBundle: bundle });
  const digest = artifactsDigest(files, '1');
  t.regex(digest, /^[0-9a-f]{12}$/);
  t.not(artifactsDigest(files, '2'), digest, 'a new revision rebuilds the image');
  await writeFile(bundle, '"use strict"; // changed\n');
  t.not(artifactsDigest(files, '1'), digest, 'a new machine-agent rebuilds the image');

  const missing = imageArtifacts({
    ...defaultArtifactSources,
    machineAgentBundle: path.join(tmp, 'nope.cjs'),
  });
  const error = t.throws(() => artifactsDigest(missing, '1'), { instanceOf: ImageArtifactsError });
  t.is(error.code, 'missing_image_artifacts');
  t.regex(error.message, /nope\.cjs/);
  t.regex(error.message, /npm run bundle/);
});

test('the pins in versions.env are the ones go.sum holds', async (t) => {
  const v = readVersions();
  const buildkitSum = await readFile(
    path.join(builderImageDir, 'go', 'buildkit', 'go.sum'),
    'utf8',
  );
  const runcSum = await readFile(path.join(builderImageDir, 'go', 'runc', 'go.sum'), 'utf8');
  t.true(
    buildkitSum.includes(
      `github.com/moby/buildkit ${v.BUILDKIT_VERSION} ${v.BUILDKIT_MODULE_SUM}\n`,
    ),
  );
  t.true(
    runcSum.includes(`github.com/opencontainers/runc ${v.RUNC_VERSION} ${v.RUNC_MODULE_SUM}\n`),
  );
  t.is(v.BUILDKIT_VERSION, 'v0.34.2');
  for (const key of [
    'BUILDKITD_SHA256_AMD64',
    'BUILDCTL_SHA256_AMD64',
    'BUILDKITD_SHA256_ARM64',
    'BUILDCTL_SHA256_ARM64',
  ]) {
    t.regex(v[key] ?? '', /^[0-9a-f]{64}$/, key);
  }
});

test('a go.sum that does not pin the recorded BuildKit is refused before building', async (t) => {
  const artifacts = path.join(await tempDir(t, 'tampered'), 'artifacts');
  await cp(builderImageDir, artifacts, { recursive: true });
  const sum = path.join(artifacts, 'go', 'buildkit', 'go.sum');
  await writeFile(
    sum,
    (await readFile(sum, 'utf8')).replace(
      /^github\.com\/moby\/buildkit v0\.34\.2 h1:.*$/m,
      'github.com/moby/buildkit v0.34.2 h1:AAAA=',
    ),
  );
  const result = await fails('bash', [
    path.join(artifacts, 'scripts', 'build-tools.sh'),
    artifacts,
    path.join(artifacts, 'out'),
  ]);
  t.regex(result.output, /go\.sum does not pin github\.com\/moby\/buildkit v0\.34\.2/);
});

test('build-tools.sh reproduces the pinned BuildKit and builds runc with seccomp', async (t) => {
  t.timeout(20 * 60_000, 'a cold Go build of BuildKit and runc');
  if (process.arch !== 'x64' && process.arch !== 'arm64')
    return t.fail(`unsupported arch ${process.arch}`);
  const dir = await tempDir(t, 'build-tools');
  // Another directory than the repository's: the build must not depend on where it runs.
  const artifacts = path.join(dir, 'artifacts');
  await cp(builderImageDir, artifacts, { recursive: true });
  const out = path.join(dir, 'bin');
  const script = path.join(artifacts, 'scripts', 'build-tools.sh');
  const { stderr } = await run('bash', [script, artifacts, out], { maxBuffer: 16 * 1024 * 1024 });
  t.regex(stderr, /buildkitd sha256 [0-9a-f]{64} matches the pin/);
  t.regex(stderr, /buildctl sha256 [0-9a-f]{64} matches the pin/);
  const { stdout: version } = await run(path.join(out, 'buildkitd'), ['--version']);
  t.regex(version, /^buildkitd github\.com\/moby\/buildkit v0\.34\.2/);
  const { stdout: runc } = await run(path.join(out, 'runc'), ['--version']);
  t.regex(runc, /^runc version 1\.5\.2$/m);
  t.regex(runc, /^libseccomp: /m);

  // A pin that the build does not reproduce stops the image build.
  const versions = path.join(artifacts, 'versions.env');
  const pin = process.arch === 'x64' ? 'BUILDKITD_SHA256_AMD64' : 'BUILDKITD_SHA256_ARM64';
  await writeFile(
    versions,
    (await readFile(versions, 'utf8')).replace(
      new RegExp(`^${pin}=.*$`, 'm'),
      `${pin}=${'0'.repeat(64)}`,
    ),
  );
  const result = await fails('bash', [script, artifacts, path.join(dir, 'bin2')]);
  t.regex(result.output, /buildkitd has sha256 [0-9a-f]{64}, pinned 0{64}: not the pinned build/);
});
