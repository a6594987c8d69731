// The pure spec functions behind the fleet programs: what each provider builds from a desired
// fleet, which fleets are refused (every problem named at once), and when a new generation
// needs no Pulumi run at all.
import test from 'ava';
import { awsFleetSpec, cacheVolumeDevice } from '../automation/aws/spec';
import { fleetDigest } from '../automation/fleet';
import { hostPlatform } from '../common/protocol';
import { localFleetSpec } from '../automation/local/spec';
import { FleetSpecError } from '../automation/spec-error';
import { awsConfig, fleet, machine, volume } from './helpers/fleet';

const empty = { machines: {}, volumes: {} };

test('local spec: machines on the host platform are built, others are capacity failures', (t) => {
  const spec = localFleetSpec(
    fleet({
      machines: [
        machine('mch_bbbbbbbb', { volumeId: 'vol_aaaaaaaa' }),
        machine('mch_aaaaaaaa', { state: 'stopped' }),
        machine('mch_cccccccc', { platform: 'linux/arm64' }),
      ],
      volumes: [volume('vol_aaaaaaaa')],
    }),
    'linux/amd64',
  );
  t.deepEqual(
    spec.machines.map((m) => [m.machineId, m.state]),
    [
      ['mch_aaaaaaaa', 'stopped'],
      ['mch_bbbbbbbb', 'running'],
    ],
    'sorted by id, power state kept',
  );
  t.deepEqual(
    spec.volumes.map((v) => v.volumeId),
    ['vol_aaaaaaaa'],
  );
  t.is(spec.capacityFailures.length, 1);
  t.is(spec.capacityFailures[0]?.machineId, 'mch_cccccccc');
  t.regex(spec.capacityFailures[0]?.reason ?? '', /only for this host's platform \(linux\/amd64\)/);
});

test('local spec: the host platform follows the CPU architecture', (t) => {
  t.is(hostPlatform('x64'), 'linux/amd64');
  t.is(hostPlatform('arm64'), 'linux/arm64');
  t.is(hostPlatform('ppc64'), null);
});

test('a fleet with several problems is refused with all of them named', (t) => {
  const bad = fleet({
    provider: 'aws',
    machines: [
      machine('mch_aaaaaaaa', { volumeId: 'vol_missing1' }),
      machine('mch_aaaaaaaa'),
      machine('mch_bbbbbbbb', { volumeId: 'vol_aaaaaaaa' }),
      machine('mch_cccccccc', { volumeId: 'vol_aaaaaaaa', platform: 'linux/arm64' }),
    ],
    volumes: [volume('vol_aaaaaaaa')],
  });
  const err = t.throws(() => localFleetSpec(bad, 'linux/amd64'), { instanceOf: FleetSpecError });
  t.is(err?.code, 'invalid_fleet');
  t.deepEqual(err?.problems, [
    'provider: the fleet is for aws, this program builds local',
    "machines[0].volumeId: vol_missing1 is not among the fleet's volumes",
    'machines[1].id: mch_aaaaaaaa appears twice',
    'machines[3].volumeId: vol_aaaaaaaa is already attached to mch_bbbbbbbb',
    'machines[3].volumeId: vol_aaaaaaaa is a linux/amd64 volume, the machine is linux/arm64',
  ]);
  t.regex(err?.message ?? '', /cannot be converged \(5 problems\)/);
});

test('aws spec: a machine follows its volume into one zone, subnet and launch template of its platform', (t) => {
  const spec = awsFleetSpec(
    fleet({
      provider: 'aws',
      machines: [
        machine('mch_aaaaaaaa', { volumeId: 'vol_aaaaaaaa' }),
        machine('mch_bbbbbbbb', { platform: 'linux/arm64', state: 'stopped' }),
      ],
      volumes: [volume('vol_aaaaaaaa', { zone: 'eu-west-1b', sizeGb: 100 })],
    }),
    empty,
  );
  const [a, b] = spec.instances;
  t.is(a?.zone, 'eu-west-1b', 'placed in the zone of its volume');
  t.is(a?.subnetId, 'subnet-0bbbbbbbbbbbbbbb2');
  t.is(a?.launchTemplateId, awsConfig.launchTemplates['linux/amd64']);
  t.is(b?.launchTemplateId, awsConfig.launchTemplates['linux/arm64']);
  t.is(b?.state, 'stopped');
  t.deepEqual(spec.volumes, [
    {
      volumeId: 'vol_aaaaaaaa',
      projectId: 'prj_testproject01',
      platform: 'linux/amd64',
      sizeGb: 100,
      zone: 'eu-west-1b',
    },
  ]);
  t.deepEqual(spec.attachments, [
    { volumeId: 'vol_aaaaaaaa', machineId: 'mch_aaaaaaaa', deviceName: cacheVolumeDevice },
  ]);
  t.is(spec.region, 'eu-west-1');
  t.deepEqual(spec.capacityFailures, []);
});

test('aws spec: zones already in the stack are kept, new ones spread deterministically', (t) => {
  const desired = fleet({
    provider: 'aws',
    machines: [machine('mch_aaaaaaaa', { volumeId: 'vol_aaaaaaaa' })],
    volumes: [volume('vol_aaaaaaaa')],
  });
  const first = awsFleetSpec(desired, empty);
  t.is(first.instances[0]?.zone, first.volumes[0]?.zone, 'machine and volume share a zone');
  t.deepEqual(awsFleetSpec(desired, empty), first, 'the same fleet gives the same placement');
  const other = first.volumes[0]?.zone === 'eu-west-1a' ? 'eu-west-1b' : 'eu-west-1a';
  const kept = awsFleetSpec(desired, {
    machines: { mch_aaaaaaaa: { providerId: 'i-0123456789abcdef0', zone: other } },
    volumes: { vol_aaaaaaaa: { providerId: 'vol-0123456789abcdef0', zone: other } },
  });
  t.is(kept.volumes[0]?.zone, other, 'the volume stays where it was created');
  t.is(kept.instances[0]?.zone, other);
});

test('aws spec: a platform without launch template is a capacity failure, a zone without subnet a problem', (t) => {
  const noArm = { ...awsConfig, launchTemplates: { 'linux/amd64': 'lt-0123456789abcdef0' } };
  const spec = awsFleetSpec(
    fleet({
      provider: 'aws',
      aws: noArm,
      machines: [machine('mch_aaaaaaaa', { platform: 'linux/arm64' })],
    }),
    empty,
  );
  t.deepEqual(spec.instances, []);
  t.is(spec.capacityFailures[0]?.machineId, 'mch_aaaaaaaa');
  t.regex(spec.capacityFailures[0]?.reason ?? '', /no launch template for linux\/arm64/);

  const err = t.throws(
    () =>
      awsFleetSpec(
        fleet({
          provider: 'aws',
          machines: [machine('mch_aaaaaaaa', { zone: 'eu-west-1c', volumeId: 'vol_aaaaaaaa' })],
          volumes: [volume('vol_aaaaaaaa', { zone: 'eu-west-1a' })],
        }),
        empty,
      ),
    { instanceOf: FleetSpecError },
  );
  t.deepEqual(err?.problems, [
    'machines[0].zone: eu-west-1c has no subnet in the connection (zones: eu-west-1a, eu-west-1b)',
  ]);
  const mismatch = t.throws(
    () =>
      awsFleetSpec(
        fleet({
          provider: 'aws',
          machines: [machine('mch_aaaaaaaa', { zone: 'eu-west-1b', volumeId: 'vol_aaaaaaaa' })],
          volumes: [volume('vol_aaaaaaaa', { zone: 'eu-west-1a' })],
        }),
        empty,
      ),
    { instanceOf: FleetSpecError },
  );
  t.regex(
    mismatch?.message ?? '',
    /differs from the zone of its volume vol_aaaaaaaa \(eu-west-1a\)/,
  );
  t.throws(() => awsFleetSpec(fleet({ provider: 'aws', aws: null }), empty), {
    message: /aws: an aws fleet needs the connection settings/,
  });
});

test('fleet digest: a new generation or a consumed registration token changes nothing to build', (t) => {
  const base = fleet({ machines: [machine('mch_aaaaaaaa'), machine('mch_bbbbbbbb')] });
  const digest = fleetDigest(base);
  t.is(fleetDigest({ ...base, generation: 7 }), digest);
  t.is(
    fleetDigest({
      ...base,
      machines: [...base.machines].reverse().map((m) => ({ ...m, registrationToken: null })),
    }),
    digest,
    'order and tokens do not matter',
  );
  t.not(
    fleetDigest({
      ...base,
      machines: [{ ...base.machines[0]!, state: 'stopped' }, base.machines[1]!],
    }),
    digest,
    'a power state does',
  );
  t.not(fleetDigest({ ...base, volumes: [volume('vol_aaaaaaaa')] }), digest, 'a new volume does');
});
