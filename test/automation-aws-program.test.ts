// The AWS fleet program under Pulumi mocks (no AWS provider plugin or account here): what it
// asks @pulumi/aws to create for a desired fleet: tags at creation, IMDSv2, gp3 encrypted
// volumes in the instance's zone, attachments, power states, the registration token a secret.
import test from 'ava';
import * as pulumi from '@pulumi/pulumi';
import { awsFleetProgram } from '../automation/aws/program';
import { awsFleetSpec, cacheVolumeDevice } from '../automation/aws/spec';
import { machineEnvFile } from '../automation/aws/user-data';
import { awsConfig, connectionId, fleet, machine, volume } from './helpers/fleet';

interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  provider: string | undefined;
}

const registered: Registered[] = [];

/** Secrets reach mocks wrapped in Pulumi's secret signature. */
function isSecretValue(v: unknown): boolean {
  return (
    typeof v === 'object' &&
    v !== null &&
    (v as Record<string, unknown>)[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig
  );
}
function unwrap(v: unknown): unknown {
  return isSecretValue(v) ? (v as { value: unknown }).value : v;
}

test.before(async () => {
  await pulumi.runtime.setMocks(
    {
      newResource(args) {
        registered.push({
          type: args.type,
          name: args.name,
          inputs: args.inputs as Record<string, unknown>,
          provider: args.provider,
        });
        const ids: Record<string, string> = {
          'aws:ec2/instance:Instance': `i-${args.name.slice(4)}`,
          'aws:ebs/volume:Volume': `vol-${args.name.slice(4)}`,
        };
        const state: Record<string, unknown> = { ...args.inputs };
        if (args.type === 'aws:ec2/instance:Instance') {
          const subnet = awsConfig.subnets.find((s) => s.id === args.inputs.subnetId);
          state.availabilityZone = subnet?.zone;
        }
        return { id: ids[args.type] ?? `${args.name}-id`, state };
      },
      call: (args) => args.inputs,
    },
    'slipway-fleet',
    connectionId,
    false,
  );
});

function resolve<T>(output: pulumi.Output<T>): Promise<T> {
  return new Promise((r) => output.apply((v) => r(v)));
}

test('the aws program builds tagged IMDSv2 instances, encrypted gp3 volumes, attachments and power states', async (t) => {
  const token = 'swr_' + 'T'.repeat(43);
  const desired = fleet({
    provider: 'aws',
    machines: [
      machine('mch_aaaaaaaa', { volumeId: 'vol_aaaaaaaa', registrationToken: token }),
      machine('mch_bbbbbbbb', { platform: 'linux/arm64', state: 'stopped' }),
    ],
    volumes: [volume('vol_aaaaaaaa', { zone: 'eu-west-1b', sizeGb: 100 })],
  });
  const spec = awsFleetSpec(desired, { machines: {}, volumes: {} });
  const program = awsFleetProgram(spec, {
    connectionId,
    controlPlaneUrl: 'https://slipway.example.com',
  });
  const outputs = (await program()) as Record<string, Record<string, pulumi.Output<unknown>>>;
  const machines = await resolve(pulumi.output(outputs.machines));
  const volumes = await resolve(pulumi.output(outputs.volumes));

  const of = (type: string) => registered.filter((r) => r.type === type);
  const provider = of('pulumi:providers:aws');
  t.is(provider.length, 1);
  t.is(provider[0]?.inputs.region, 'eu-west-1');

  const instances = of('aws:ec2/instance:Instance');
  t.deepEqual(instances.map((i) => i.name).sort(), ['mch_aaaaaaaa', 'mch_bbbbbbbb']);
  const a = instances.find((i) => i.name === 'mch_aaaaaaaa')!;
  const b = instances.find((i) => i.name === 'mch_bbbbbbbb')!;
  t.true(a.provider?.includes('pulumi:providers:aws::aws'), 'through the region-pinned provider');
  const expectedTags = {
    'slipway:connection': connectionId,
    'slipway:machine': 'mch_aaaaaaaa',
    Name: 'slipway-mch_aaaaaaaa',
  };
  t.deepEqual(a.inputs.tags, expectedTags, 'tagged at creation');
  t.deepEqual(a.inputs.volumeTags, expectedTags, 'its root volume too');
  t.like(a.inputs.metadataOptions as object, { httpTokens: 'required', httpEndpoint: 'enabled' });
  t.deepEqual(a.inputs.launchTemplate, {
    id: awsConfig.launchTemplates['linux/amd64'],
    version: '$Default',
  });
  t.deepEqual(b.inputs.launchTemplate, {
    id: awsConfig.launchTemplates['linux/arm64'],
    version: '$Default',
  });
  t.is(a.inputs.subnetId, 'subnet-0bbbbbbbbbbbbbbb2', 'in the subnet of its volume zone');

  t.true(isSecretValue(a.inputs.userData), 'the user data (with the token) is a Pulumi secret');
  const userData = unwrap(a.inputs.userData) as string;
  t.is(
    userData,
    [
      '#cloud-config',
      '# Slipway builder: the machine-agent configuration, read by slipway-machine-agent.service.',
      'write_files:',
      `  - path: ${machineEnvFile}`,
      "    owner: 'root:root'",
      "    permissions: '0600'",
      '    content: |',
      '      SLIPWAY_API_URL=https://slipway.example.com',
      '      SLIPWAY_MACHINE_ID=mch_aaaaaaaa',
      `      SLIPWAY_REGISTRATION_TOKEN=${token}`,
      '      SLIPWAY_PLATFORM=linux/amd64',
      '      SLIPWAY_BUILDKIT_PORT=8372',
      '',
    ].join('\n'),
    'cloud-config writes the root-only environment file before the machine-agent unit starts',
  );

  const ebs = of('aws:ebs/volume:Volume');
  t.is(ebs.length, 1);
  t.like(ebs[0]?.inputs as object, {
    availabilityZone: 'eu-west-1b',
    size: 100,
    type: 'gp3',
    encrypted: true,
  });
  t.deepEqual(ebs[0]?.inputs.tags, {
    'slipway:connection': connectionId,
    'slipway:volume': 'vol_aaaaaaaa',
    'slipway:project': 'prj_testproject01',
    Name: 'slipway-vol_aaaaaaaa',
  });

  const attachments = of('aws:ec2/volumeAttachment:VolumeAttachment');
  t.is(attachments.length, 1);
  t.like(attachments[0]?.inputs as object, {
    instanceId: 'i-aaaaaaaa',
    volumeId: 'vol-aaaaaaaa',
    deviceName: cacheVolumeDevice,
    stopInstanceBeforeDetaching: true,
  });

  const power = of('aws:ec2transitgateway/instanceState:InstanceState');
  t.deepEqual(power.map((p) => [p.name, p.inputs.instanceId, p.inputs.state]).sort(), [
    ['mch_aaaaaaaa', 'i-aaaaaaaa', 'running'],
    ['mch_bbbbbbbb', 'i-bbbbbbbb', 'stopped'],
  ]);

  t.deepEqual(machines, {
    mch_aaaaaaaa: { providerId: 'i-aaaaaaaa', zone: 'eu-west-1b', state: 'running' },
    mch_bbbbbbbb: { providerId: 'i-bbbbbbbb', zone: spec.instances[1]?.zone, state: 'stopped' },
  });
  t.deepEqual(volumes, {
    vol_aaaaaaaa: { providerId: 'vol-aaaaaaaa', zone: 'eu-west-1b', attachedTo: 'i-aaaaaaaa' },
  });
});
