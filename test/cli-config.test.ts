// Where `slipway` finds its control plane, token and project: flag, environment, slipway.json
// (walking up from the build context), then the user config written by `slipway login`.
import test from 'ava';
import { mkdir, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { readUserConfig, resolveConfig, writeUserConfig } from '../cli/config';
import { tempDir } from './helpers/tmp';

const tokenA = `swu_${'a'.repeat(43)}`;
const tokenB = `swu_${'b'.repeat(43)}`;

test('precedence: flag over environment over slipway.json over user config', async (t) => {
  const dir = await tempDir(t, 'cli-config');
  const env = { SLIPWAY_CONFIG: path.join(dir, 'user', 'config.json') };
  await writeUserConfig(
    { apiUrl: 'http://user.example:1', token: tokenA, project: 'from-user' },
    env,
  );
  const nested = path.join(dir, 'repo', 'services', 'api');
  await mkdir(nested, { recursive: true });
  await writeFile(path.join(dir, 'repo', 'slipway.json'), JSON.stringify({ project: 'from-file' }));

  const fromFiles = await resolveConfig({ flags: {}, env, startDir: nested });
  t.deepEqual(fromFiles.project, { value: 'from-file', source: 'slipway.json' });
  t.deepEqual(fromFiles.token, { value: tokenA, source: 'user config' });
  t.deepEqual(fromFiles.apiUrl, { value: 'http://user.example:1', source: 'user config' });

  const fromEnv = await resolveConfig({
    flags: {},
    env: {
      ...env,
      SLIPWAY_PROJECT: 'from-env',
      SLIPWAY_TOKEN: tokenB,
      SLIPWAY_API_URL: 'http://env.example:2',
    },
    startDir: nested,
  });
  t.is(fromEnv.project?.value, 'from-env');
  t.is(fromEnv.token?.value, tokenB);
  t.is(fromEnv.apiUrl.value, 'http://env.example:2');

  const fromFlags = await resolveConfig({
    flags: { project: 'from-flag', apiUrl: 'http://flag.example:3' },
    env: { ...env, SLIPWAY_PROJECT: 'from-env' },
    startDir: nested,
  });
  t.is(fromFlags.project?.value, 'from-flag');
  t.is(fromFlags.apiUrl.source, 'flag');
});

test('the user config holding a token is written 0600', async (t) => {
  const dir = await tempDir(t, 'cli-config');
  const env = { XDG_CONFIG_HOME: dir };
  const file = await writeUserConfig({ apiUrl: 'http://127.0.0.1:1', token: tokenA }, env);
  t.is((await stat(file)).mode & 0o777, 0o600);
  t.is((await readUserConfig(env)).token, tokenA);
});

test('a broken slipway.json or a malformed token is reported with the file, field and fix', async (t) => {
  const dir = await tempDir(t, 'cli-config');
  await writeFile(path.join(dir, 'slipway.json'), JSON.stringify({ project: 'Bad Name!' }));
  await t.throwsAsync(resolveConfig({ flags: {}, env: {}, startDir: dir }), {
    message: /slipway\.json: field "project"/,
  });
  await writeFile(path.join(dir, 'slipway.json'), '{ not json');
  await t.throwsAsync(resolveConfig({ flags: {}, env: {}, startDir: dir }), {
    message: /is not valid JSON/,
  });
  await writeFile(path.join(dir, 'slipway.json'), JSON.stringify({ project: 'ok', token: tokenA }));
  await t.throwsAsync(resolveConfig({ flags: {}, env: {}, startDir: dir }), {
    message: /Unrecognized key/,
  });
  const other = await tempDir(t, 'cli-config');
  await t.throwsAsync(resolveConfig({ flags: { token: 'hunter2' }, env: {}, startDir: other }), {
    message: /token from the flag is not a Slipway token.*slipway login/,
  });
});
