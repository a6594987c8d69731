// EC2 observation and orphan removal against moto's EC2 API on loopback: what the agent reports
// for a connection (only its tagged builders and cache volumes, with states, addresses, zones,
// attachments) and how it removes what the stack does not hold, leaving everything else alone.
import test, { type ExecutionContext } from 'ava';
import {
  AttachVolumeCommand,
  CreateVolumeCommand,
  DescribeInstancesCommand,
  DescribeSubnetsCommand,
  DescribeVolumesCommand,
  EC2Client,
  RunInstancesCommand,
  StopInstancesCommand,
  type Tag,
} from '@aws-sdk/client-ec2';
import pino from 'pino';
import { Ec2Fleet } from '../automation/aws/observe';
import { startMoto, type Moto } from './helpers/moto';

const region = 'eu-west-1';
const logger = pino({ level: 'silent' });

function tags(pairs: Record<string, string>): Tag[] {
  return Object.entries(pairs).map(([Key, Value]) => ({ Key, Value }));
}

let moto: Moto;
let endpoint: string;
test.before(async () => {
  moto = await startMoto();
  endpoint = moto.endpoint;
});
test.after.always(() => moto?.stop());

async function setup(t: ExecutionContext) {
  const ec2 = new EC2Client({ region, endpoint });
  t.teardown(() => ec2.destroy());
  // Any AMI id will do for moto (listing its catalogue takes seconds).
  const image = 'ami-12c6146b';
  const subnets = (await ec2.send(new DescribeSubnetsCommand({}))).Subnets ?? [];
  const subnet = subnets.find((s) => s.AvailabilityZone === `${region}a`)!;

  async function instance(tagPairs: Record<string, string>): Promise<string> {
    const res = await ec2.send(
      new RunInstancesCommand({
        ImageId: image,
        InstanceType: 't3.micro',
        MinCount: 1,
        MaxCount: 1,
        SubnetId: subnet.SubnetId,
        TagSpecifications: [{ ResourceType: 'instance', Tags: tags(tagPairs) }],
      }),
    );
    return res.Instances?.[0]?.InstanceId as string;
  }
  async function ebs(tagPairs: Record<string, string>): Promise<string> {
    const res = await ec2.send(
      new CreateVolumeCommand({
        AvailabilityZone: `${region}a`,
        Size: 10,
        VolumeType: 'gp3',
        Encrypted: true,
        TagSpecifications: [{ ResourceType: 'volume', Tags: tags(tagPairs) }],
      }),
    );
    return res.VolumeId as string;
  }
  const fleet = (connectionId: string) => {
    const f = new Ec2Fleet({ connectionId, region, endpoint, logger });
    t.teardown(() => f.close());
    return f;
  };
  return { ec2, instance, ebs, fleet };
}

test('observation reports only the connection tagged builders and cache volumes, with state, address, zone and attachment', async (t) => {
  const { ec2, instance, ebs, fleet } = await setup(t);
  const running = await instance({
    'slipway:connection': 'con_mine0001',
    'slipway:machine': 'mch_running1',
  });
  const stopped = await instance({
    'slipway:connection': 'con_mine0001',
    'slipway:machine': 'mch_stopped1',
  });
  await ec2.send(new StopInstancesCommand({ InstanceIds: [stopped] }));
  await instance({ 'slipway:connection': 'con_other001', 'slipway:machine': 'mch_others01' });
  await instance({ Name: 'not-slipway' });
  const attached = await ebs({
    'slipway:connection': 'con_mine0001',
    'slipway:volume': 'vol_attached',
  });
  await ec2.send(
    new AttachVolumeCommand({ VolumeId: attached, InstanceId: running, Device: '/dev/sdf' }),
  );
  const free = await ebs({
    'slipway:connection': 'con_mine0001',
    'slipway:volume': 'vol_freevol1',
  });
  await ebs({ 'slipway:connection': 'con_mine0001' }); // e.g. a root volume: not a cache volume
  await ebs({ 'slipway:connection': 'con_other001', 'slipway:volume': 'vol_others01' });

  const seen = await fleet('con_mine0001').observe();
  const machines = [...seen.machines].sort((a, b) => a.id.localeCompare(b.id));
  t.is(machines.length, 2);
  t.like(machines[0], {
    id: 'mch_running1',
    state: 'running',
    providerId: running,
    zone: `${region}a`,
  });
  t.regex(machines[0]?.address ?? '', /^\d+\.\d+\.\d+\.\d+$/, 'its private address');
  t.like(machines[1], { id: 'mch_stopped1', state: 'stopped', providerId: stopped });
  const volumes = [...seen.volumes].sort((a, b) => a.id.localeCompare(b.id));
  t.deepEqual(volumes, [
    {
      id: 'vol_attached',
      state: 'in-use',
      zone: `${region}a`,
      attachedTo: 'mch_running1',
      providerId: attached,
    },
    { id: 'vol_freevol1', state: 'available', zone: `${region}a`, providerId: free },
  ]);
});

test('orphans (tagged for the connection, absent from the stack) are terminated and deleted, nothing else is', async (t) => {
  const { ec2, instance, ebs, fleet } = await setup(t);
  const kept = await instance({
    'slipway:connection': 'con_mine0002',
    'slipway:machine': 'mch_kept0001',
  });
  // A crash between launch and the state write leaves a second instance for the same machine.
  const duplicate = await instance({
    'slipway:connection': 'con_mine0002',
    'slipway:machine': 'mch_kept0001',
  });
  const orphan = await instance({
    'slipway:connection': 'con_mine0002',
    'slipway:machine': 'mch_orphan01',
  });
  const foreign = await instance({
    'slipway:connection': 'con_other002',
    'slipway:machine': 'mch_others01',
  });
  const keptVolume = await ebs({
    'slipway:connection': 'con_mine0002',
    'slipway:volume': 'vol_kept0001',
  });
  const orphanVolume = await ebs({
    'slipway:connection': 'con_mine0002',
    'slipway:volume': 'vol_orphan01',
  });
  await ec2.send(
    new AttachVolumeCommand({ VolumeId: orphanVolume, InstanceId: orphan, Device: '/dev/sdf' }),
  );
  const foreignVolume = await ebs({
    'slipway:connection': 'con_other002',
    'slipway:volume': 'vol_others01',
  });

  const mine = fleet('con_mine0002');
  const stack = {
    machines: { mch_kept0001: { providerId: kept } },
    volumes: { vol_kept0001: { providerId: keptVolume } },
  };
  const before = await mine.observe(stack);
  t.is(
    before.machines.find((m) => m.id === 'mch_kept0001')?.providerId,
    kept,
    'of two instances for one machine, the one in the stack is reported',
  );

  const removed = await mine.removeOrphans(stack);
  t.deepEqual(
    [...removed].sort(),
    [
      `instance ${duplicate} (mch_kept0001)`,
      `instance ${orphan} (mch_orphan01)`,
      `volume ${orphanVolume} (vol_orphan01)`,
    ].sort(),
  );

  const instances = (await ec2.send(new DescribeInstancesCommand({}))).Reservations?.flatMap(
    (r) => r.Instances ?? [],
  );
  const stateOf = (id: string) => instances?.find((i) => i.InstanceId === id)?.State?.Name;
  t.is(stateOf(kept), 'running');
  t.is(stateOf(foreign), 'running', "another connection's builder is untouched");
  t.true(['shutting-down', 'terminated'].includes(stateOf(duplicate) ?? ''));
  t.true(['shutting-down', 'terminated'].includes(stateOf(orphan) ?? ''));
  const volumeIds = (await ec2.send(new DescribeVolumesCommand({}))).Volumes?.map(
    (v) => v.VolumeId,
  );
  t.true(volumeIds?.includes(keptVolume));
  t.true(volumeIds?.includes(foreignVolume));
  t.false(volumeIds?.includes(orphanVolume), 'the attached orphan volume was detached and deleted');

  const after = await mine.observe(stack);
  t.deepEqual(
    after.machines.map((m) => m.id),
    ['mch_kept0001'],
  );
  t.deepEqual(await mine.removeOrphans(stack), [], 'a second pass finds nothing');
});
