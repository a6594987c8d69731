// The machine-agent's configuration: from the SLIPWAY_* environment or a JSON file, every
// problem named by the variable (or field) with the fix, and the registration token never echoed.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { configFromEnv, configFromFile, redactConfig } from '../machine/config';
import { MachineAgentError } from '../machine/errors';
import { tempDir } from './helpers/tmp';

const registrationToken = `swr_${'A'.repeat(43)}`;

const goodEnv = {
  SLIPWAY_API_URL: 'http://127.0.0.1:7000',
  SLIPWAY_MACHINE_ID: 'mch_abcdefgh1234',
  SLIPWAY_REGISTRATION_TOKEN: registrationToken,
  SLIPWAY_PROVIDER: 'local',
  SLIPWAY_PLATFORM: 'linux/amd64',
  SLIPWAY_STATE_DIR: '/tmp/state',
  SLIPWAY_VOLUMES_DIR: '/tmp/volumes',
  SLIPWAY_LISTEN_HOST: '127.0.0.1',
  SLIPWAY_BUILDKIT_PORT: '18372',
};

test('a complete SLIPWAY_* environment becomes a typed configuration', (t) => {
  const config = configFromEnv({ ...goodEnv, PATH: '/usr/bin', SLIPWAY_TOOLS_DIR: '/opt/x' });
  t.like(config, {
    apiUrl: 'http://127.0.0.1:7000',
    machineId: 'mch_abcdefgh1234',
    provider: 'local',
    buildkitPort: 18372,
    listenHost: '127.0.0.1',
    volumesDir: '/tmp/volumes',
  });
});

test('environment errors name each variable and the fix, and never echo the token', (t) => {
  const err = t.throws(
    () =>
      configFromEnv({
        ...goodEnv,
        SLIPWAY_API_URL: undefined,
        SLIPWAY_MACHINE_ID: 'machine-1',
        SLIPWAY_BUILDKIT_PORT: 'eighty',
        SLIPWAY_REGISTRATION_TOKEN: 'swr_short-secret-value',
      }),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'invalid_config');
  const message = err!.message;
  t.regex(message, /SLIPWAY_API_URL: is missing; set it to the control plane URL/);
  t.regex(message, /SLIPWAY_MACHINE_ID: must be a machine id \(mch_\.\.\.\)/);
  t.regex(message, /SLIPWAY_BUILDKIT_PORT: .*set it to a TCP port number/);
  t.regex(message, /SLIPWAY_REGISTRATION_TOKEN: .*single-use registration token/);
  t.notRegex(message, /short-secret-value/);
});

test('the local provider needs SLIPWAY_VOLUMES_DIR', (t) => {
  const err = t.throws(() => configFromEnv({ ...goodEnv, SLIPWAY_VOLUMES_DIR: '' }), {
    instanceOf: MachineAgentError,
  });
  t.regex(err!.message, /SLIPWAY_VOLUMES_DIR: is required for provider local/);
});

test('a JSON config file is validated by field name, unknown fields included', async (t) => {
  const dir = await tempDir(t, 'machine-config');
  const good = path.join(dir, 'good.json');
  await writeFile(
    good,
    JSON.stringify({
      apiUrl: 'https://cp.example.com',
      machineId: 'mch_abcdefgh1234',
      registrationToken,
      provider: 'aws',
      platform: 'linux/arm64',
      stateDir: '/var/lib/slipway',
    }),
  );
  t.like(await configFromFile(good), {
    provider: 'aws',
    listenHost: '0.0.0.0',
    buildkitPort: 8372,
  });

  const bad = path.join(dir, 'bad.json');
  await writeFile(bad, JSON.stringify({ apiUrl: 'not a url', provider: 'gcp', colour: 'blue' }));
  const err = await t.throwsAsync(configFromFile(bad), { instanceOf: MachineAgentError });
  t.regex(err!.message, new RegExp(`in ${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}`));
  t.regex(err!.message, /apiUrl: .*control plane URL/);
  t.regex(err!.message, /provider: must be local or aws/);
  t.regex(err!.message, /machineId: is missing/);
  t.regex(err!.message, /unknown field\(s\) colour/);

  const broken = path.join(dir, 'broken.json');
  await writeFile(broken, '{ "apiUrl": ');
  const parseErr = await t.throwsAsync(configFromFile(broken), { instanceOf: MachineAgentError });
  t.regex(parseErr!.message, /is not valid JSON/);

  const missing = await t.throwsAsync(configFromFile(path.join(dir, 'nope.json')), {
    instanceOf: MachineAgentError,
  });
  t.regex(missing!.message, /cannot read .*ENOENT/);
});

test('the printed configuration hides the registration token', (t) => {
  const shown = JSON.stringify(redactConfig(configFromEnv(goodEnv)));
  t.false(shown.includes(registrationToken));
  t.regex(shown, /\[redacted\]/);
});
