// The machine-agent on AWS against the real control plane, with what the cloud provides played by
// real local things: a loopback IMDS speaking IMDSv2's token protocol, and a loop device with the
// NVMe by-id link udev makes for an attached EBS volume. It proves its instance identity,
// advertises the private address IMDS gives, is refused with another instance's document, and
// serves a build over mTLS from the EBS volume it formatted and mounted, unmounted at shutdown.
import test, { type ExecutionContext } from 'ava';
import { mkdir, readFile, symlink } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../common/net';
import { waitFor } from '../common/wait';
import type { MachineAgentConfig, Observation } from '../common/protocol';
import { mountAt } from '../machine/block-volume';
import { runMachineAgent } from '../machine/agent';
import { MachineAgentError } from '../machine/errors';
import { buildCsr, ScriptedAgent, startTestControlPlane } from './helpers/control-plane';
import { startImdsServer } from './helpers/imds-server';
import { captureLogger } from './helpers/logger';
import { loopDevice } from './helpers/loop-device';
import { buildClient, waitForBuilder } from './helpers/machine-agent';
import { buildctl, dockerfileBuildArgs } from './helpers/mtls-buildkitd';
import { tempDir } from './helpers/tmp';

const instanceId = 'i-0123456789abcdef0';

const ebsVolumeId = 'vol-0123456789abcdef0';

/** The cloud-agent's view: the instance is running; the volume is attached when `attached`. */
function observe(machineId: string, volumeId: string | undefined, attached: boolean): Observation {
  return {
    observedAt: new Date().toISOString(),
    machines: [
      {
        id: machineId,
        state: 'running',
        providerId: instanceId,
        address: '127.0.0.1',
        zone: 'eu-west-1a',
      },
    ],
    volumes: volumeId
      ? [
          {
            id: volumeId,
            state: attached ? 'in-use' : 'available',
            zone: 'eu-west-1a',
            providerId: ebsVolumeId,
            ...(attached ? { attachedTo: machineId } : {}),
          },
        ]
      : [],
  };
}

async function awsMachine(t: ExecutionContext) {
  const tcp = await startTestControlPlane(t);
  const created = await tcp.user.call('createConnection', {
    body: {
      name: 'aws',
      provider: 'aws',
      settings: { volumeSizeGb: 1 },
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
  const { keys, csr } = await buildCsr();
  const build = await tcp.user.call('createBuild', {
    body: { project: project.id, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  const agent = new ScriptedAgent(tcp.client(created.token));
  await agent.sync();
  const desired = agent.fleet!.machines[0]!;
  // The cloud-agent launched it and saw its instance id; the volume is not attached yet.
  agent.observation = observe(desired.id, agent.fleet!.volumes[0]?.id, false);
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
  return { tcp, config, agent, dir, build, keys };
}

function imdsPaths(id: string, privateIp: string) {
  return {
    '/latest/dynamic/instance-identity/document': identityDocument(id),
    '/latest/dynamic/instance-identity/rsa2048': 'MIAGCSqGSIb3DQEHAqCAMIACAQEx\n',
    '/latest/meta-data/local-ipv4': privateIp,
  };
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
  const imds = await startImdsServer(t, imdsPaths(instanceId, '10.0.1.23'));
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
  const imds = await startImdsServer(t, imdsPaths('i-0fffffffffffffff0', '10.0.1.23'));
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

test('on AWS the machine formats and mounts its attached EBS volume and serves a build from it over mTLS', async (t) => {
  const device = await loopDevice(t, 1024);
  const { tcp, config, agent, dir, build, keys } = await awsMachine(t);
  // In this test the instance's private address is loopback, so the CLI can reach it.
  const imds = await startImdsServer(t, imdsPaths(instanceId, '127.0.0.1'));
  const byIdDir = path.join(dir, 'by-id');
  await mkdir(byIdDir);
  const stop = new AbortController();
  const { logger, text } = captureLogger();
  const running = runMachineAgent(config, {
    signal: stop.signal,
    logger,
    imdsUrl: imds.url,
    devicesByIdDir: byIdDir,
  });
  running.catch(() => undefined);
  // Before the loop device is detached: stop the agent, which unmounts it.
  t.teardown(async () => {
    stop.abort('test ended');
    await running.catch(() => undefined);
  });

  // The cloud-agent attaches the volume: EC2 says in-use, and udev links the NVMe device.
  const volumeId = agent.fleet!.volumes[0]!.id;
  agent.observation = observe(config.machineId, volumeId, true);
  await agent.sync();
  await symlink(
    device,
    path.join(byIdDir, `nvme-Amazon_Elastic_Block_Store_${ebsVolumeId.replace('-', '')}`),
  );

  const builder = await waitForBuilder(tcp.user, build.id).catch((err: Error) => {
    throw new Error(`${err.message}\n${text()}`);
  });
  t.is(builder.state, 'ready', builder.reason);
  t.is(builder.endpoint, `tcp://127.0.0.1:${config.buildkitPort}`);
  const mountPoint = path.join(config.stateDir, 'volumes', volumeId);
  t.like(await mountAt(mountPoint), { source: device, fsType: 'ext4' });
  const toml = await readFile(path.join(config.stateDir, 'buildkit', 'buildkitd.toml'), 'utf8');
  t.true(
    toml.includes(`root = ${JSON.stringify(mountPoint)}`),
    'BuildKit keeps its cache on the volume',
  );
  const maxUsed = Number(/maxUsedSpace = "(\d+)"/.exec(toml)![1]);
  t.true(maxUsed > 0 && maxUsed < 1024 ** 3, `GC keeps the cache within the volume (${maxUsed})`);

  const { target, client } = await buildClient(path.join(dir, 'cli'), keys, builder);
  const out = path.join(dir, 'out');
  const built = await buildctl(
    target,
    client,
    dockerfileBuildArgs(path.join(__dirname, 'fixtures', 'scratch-copy'), out),
  );
  t.is(built.code, 0, built.output);
  t.is(await readFile(path.join(out, 'hello.txt'), 'utf8'), 'hello from a slipway builder\n');
  const health = await waitFor(
    async () => {
      const { machines } = await tcp.user.call('listMachines', {});
      const h = machines[0]?.health;
      return h && h.cacheBytesTotal > 0 ? h : undefined;
    },
    { timeoutMs: 30_000, what: 'a health report with the volume usage' },
  );
  t.true(health.cacheBytesTotal <= 1024 ** 3, 'health reports the EBS volume, not the root disk');
  t.true(health.inodesTotal > 0);

  stop.abort('received SIGTERM');
  t.deepEqual(await running, { reason: 'received SIGTERM' });
  t.is(await mountAt(mountPoint), undefined, 'the volume is unmounted at shutdown');
});
