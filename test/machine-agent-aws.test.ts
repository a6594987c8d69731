// The machine-agent's AWS registration against the real control plane: it proves which instance it
// runs on with the IMDSv2 identity document (from a loopback IMDS speaking the token protocol),
// advertises the instance's private address, and is refused when the document names another
// instance.
import test from 'ava';
import path from 'node:path';
import { freePort } from '../common/net';
import { waitFor } from '../common/wait';
import type { MachineAgentConfig } from '../common/protocol';
import { runMachineAgent } from '../machine/agent';
import { MachineAgentError } from '../machine/errors';
import { buildCsr, ScriptedAgent, startTestControlPlane } from './helpers/control-plane';
import { startImdsServer } from './helpers/imds-server';
import { captureLogger } from './helpers/logger';
import { tempDir } from './helpers/tmp';

const instanceId = 'i-0123456789abcdef0';

async function awsMachine(t: Parameters<typeof startTestControlPlane>[0]) {
  const tcp = await startTestControlPlane(t);
  const created = await tcp.user.call('createConnection', {
    body: {
      name: 'aws',
      provider: 'aws',
      aws: {
        region: 'eu-west-1',
        launchTemplates: { 'linux/amd64': 'lt-0123456789abcdef0' },
        subnets: [{ id: 'subnet-0123456789abcdef0', zone: 'eu-west-1a' }],
      },
    },
  });
  const project = await tcp.user.call('createProject', {
    body: { name: 'app', connection: created.connection.id },
  });
  await tcp.user.call('createBuild', {
    body: {
      project: project.id,
      platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
    },
  });
  const agent = new ScriptedAgent(tcp.client(created.token));
  await agent.sync();
  const desired = agent.fleet!.machines[0]!;
  // The cloud-agent launched it and saw its instance id.
  agent.observation = {
    observedAt: new Date().toISOString(),
    machines: [
      {
        id: desired.id,
        state: 'running',
        providerId: instanceId,
        address: '10.0.1.23',
        zone: 'eu-west-1a',
      },
    ],
    volumes: [],
  };
  await agent.sync();
  const dir = await tempDir(t, 'machine-aws');
  const config: MachineAgentConfig = {
    apiUrl: tcp.url,
    machineId: desired.id,
    registrationToken: desired.registrationToken!,
    provider: 'aws',
    platform: 'linux/amd64',
    stateDir: path.join(dir, 'state'),
    listenHost: '127.0.0.1',
    buildkitPort: await freePort(),
  };
  return { tcp, config };
}

function identityDocument(id: string) {
  return JSON.stringify({
    accountId: '123456789012',
    architecture: 'x86_64',
    availabilityZone: 'eu-west-1a',
    instanceId: id,
    instanceType: 'c7i.large',
    privateIp: '10.0.1.23',
    region: 'eu-west-1',
  });
}

test('on AWS the machine registers with its IMDSv2 identity and advertises its private address', async (t) => {
  const { tcp, config } = await awsMachine(t);
  const imds = await startImdsServer(t, {
    '/latest/dynamic/instance-identity/document': identityDocument(instanceId),
    '/latest/dynamic/instance-identity/rsa2048': 'MIAGCSqGSIb3DQEHAqCAMIACAQEx\n',
    '/latest/meta-data/local-ipv4': '10.0.1.23',
  });
  const stop = new AbortController();
  const { logger, text } = captureLogger();
  const running = runMachineAgent(config, { signal: stop.signal, logger, imdsUrl: imds.url });
  running.catch(() => undefined);
  t.teardown(() => stop.abort('test ended'));

  const machine = await waitFor(
    async () => {
      const { machines } = await tcp.user.call('listMachines', {});
      return machines[0]?.registeredAt ? machines[0] : undefined;
    },
    { timeoutMs: 30_000, what: 'the machine to register' },
  );
  t.is(machine.id, config.machineId);
  t.true(
    imds.requests.some((r) => r.path === '/latest/dynamic/instance-identity/document' && r.token),
  );

  stop.abort('received SIGTERM');
  t.deepEqual(await running, { reason: 'received SIGTERM' });
  const endpoint = await tcp.cp.db('machines').where({ id: config.machineId }).first();
  t.is(endpoint.endpoint_host, '10.0.1.23', 'the IMDS private address is what clients are told');
  t.false(text().includes(config.registrationToken));
});

test('an identity document of another instance is refused and the agent stops for good', async (t) => {
  const { config } = await awsMachine(t);
  const imds = await startImdsServer(t, {
    '/latest/dynamic/instance-identity/document': identityDocument('i-0fffffffffffffff0'),
    '/latest/dynamic/instance-identity/rsa2048': 'MIAGCSqGSIb3DQEHAqCAMIACAQEx\n',
    '/latest/meta-data/local-ipv4': '10.0.1.23',
  });
  const err = await t.throwsAsync(
    runMachineAgent(config, {
      signal: new AbortController().signal,
      logger: captureLogger().logger,
      imdsUrl: imds.url,
    }),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'registration_refused');
  t.true(err!.fatal, 'exit 78: systemd does not restart it');
  t.regex(err!.message, /i-0fffffffffffffff0/);
});
