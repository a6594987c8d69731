// The cloud-agent's configuration as an operator meets it: environment or file, every problem
// named with the variable to set, the token never printed, and what the agent keeps across
// restarts (its id) in its data directory.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { AgentConfigError, loadAgentConfig, redactAgentConfig } from '../agent/config';
import { AgentStateStore } from '../agent/state';
import { tempDir } from './helpers/tmp';

const token = `swc_${'c'.repeat(43)}`;
const valid = {
  SLIPWAY_API_URL: 'https://slipway.example.com',
  SLIPWAY_CONNECTION_TOKEN: token,
  SLIPWAY_DATA_DIR: '/var/lib/slipway-agent',
};

test('a complete environment becomes a typed configuration with defaults', async (t) => {
  const config = await loadAgentConfig({
    ...valid,
    SLIPWAY_DRIFT_CHECK_SECONDS: '120',
    SLIPWAY_MACHINE_AGENT_COMMAND: '["/usr/bin/node","/opt/slipway/machine-agent.cjs"]',
  });
  t.like(config, {
    apiUrl: 'https://slipway.example.com',
    dataDir: '/var/lib/slipway-agent',
    secretsProvider: 'passphrase',
    driftCheckSeconds: 120,
    logLevel: 'info',
    machineAgentCommand: ['/usr/bin/node', '/opt/slipway/machine-agent.cjs'],
  });
  t.is(redactAgentConfig(config).connectionToken, '[redacted]');
  t.false(JSON.stringify(redactAgentConfig(config)).includes(token));
});

test('every problem is listed with its variable and fix, and the token is never echoed', async (t) => {
  const err = await t.throwsAsync(
    loadAgentConfig({
      SLIPWAY_API_URL: 'not a url',
      SLIPWAY_CONNECTION_TOKEN: 'swc_short',
      SLIPWAY_DRIFT_CHECK_SECONDS: 'soon',
      SLIPWAY_MACHINE_AGENT_COMMAND: 'node agent.cjs',
      SLIPWAY_STATE_BACKEND: 's3://slipway-state?region=eu-west-1',
    }),
    { instanceOf: AgentConfigError },
  );
  const message = err?.message ?? '';
  t.is(err?.code, 'invalid_config');
  t.regex(message, /SLIPWAY_API_URL: .*set it to the control plane URL/);
  t.regex(message, /SLIPWAY_CONNECTION_TOKEN: must be a connection token \(swc_\.\.\.\)/);
  t.regex(message, /SLIPWAY_DATA_DIR: is missing/);
  t.regex(message, /SLIPWAY_DRIFT_CHECK_SECONDS: .*between 0 \(never\) and 86400/);
  t.regex(message, /SLIPWAY_MACHINE_AGENT_COMMAND: is not JSON/);
  t.false(message.includes('swc_short'), 'the token is not echoed');

  const s3 = await t.throwsAsync(
    loadAgentConfig({ ...valid, SLIPWAY_STATE_BACKEND: 's3://slipway-state?region=eu-west-1' }),
    { instanceOf: AgentConfigError },
  );
  t.regex(s3?.message ?? '', /SLIPWAY_SECRETS_PROVIDER: an s3:\/\/ backend needs a KMS key/);
});

test('a file gives the fields, the environment overrides them, and its errors name the field', async (t) => {
  const dir = await tempDir(t, 'agent-config');
  const file = path.join(dir, 'agent.json');
  await writeFile(
    file,
    JSON.stringify({ apiUrl: 'https://file.example.com', dataDir: dir, driftCheckSeconds: 30 }),
  );
  const config = await loadAgentConfig(
    { SLIPWAY_CONNECTION_TOKEN: token, SLIPWAY_DRIFT_CHECK_SECONDS: '0' },
    file,
  );
  t.like(config, { apiUrl: 'https://file.example.com', dataDir: dir, driftCheckSeconds: 0 });

  await writeFile(file, JSON.stringify({ apiUrl: 42, dataDir: dir, colour: 'blue' }));
  const err = await t.throwsAsync(loadAgentConfig({ SLIPWAY_CONNECTION_TOKEN: token }, file), {
    instanceOf: AgentConfigError,
  });
  t.regex(err?.message ?? '', /unknown field\(s\) colour; remove them/);
  await writeFile(file, '{ not json');
  await t.throwsAsync(loadAgentConfig({}, file), { message: /is not valid JSON/ });
  await t.throwsAsync(loadAgentConfig({}, path.join(dir, 'missing.json')), {
    message: /cannot read the configuration file .*ENOENT.*check --config/,
  });
});

test('the agent keeps its id across restarts, and refuses a damaged state file with the fix', async (t) => {
  const dir = await tempDir(t, 'agent-state');
  const first = await AgentStateStore.open(dir);
  const second = await AgentStateStore.open(dir);
  t.is(second.agentId, first.agentId, 'the lease is keyed by an id that survives restarts');
  await writeFile(path.join(dir, 'agent.json'), '{"agentId": 7}');
  await t.throwsAsync(AgentStateStore.open(dir), {
    message: /agent\.json is not a cloud-agent state file .*remove it to start as a new agent/,
  });
});
