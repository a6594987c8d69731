// Cache volumes on real loop devices, through the same code the agent runs on AWS: a fresh
// device is found through its EBS-style by-id symlink, formatted and mounted; an already
// formatted one keeps its data across a second mount; a device holding unrecognised data is
// never formatted; and another project's volume is refused.
import test from 'ava';
import { mkdir, readFile, symlink, writeFile, open } from 'node:fs/promises';
import path from 'node:path';
import { mountAt, probeDevice } from '../machine/block-volume';
import { MachineAgentError } from '../machine/errors';
import { prepareVolume, type VolumeDeps } from '../machine/volume';
import type { MachineAgentConfig } from '../common/protocol';
import { loopDevice } from './helpers/loop-device';
import { captureLogger } from './helpers/logger';
import { tempDir } from './helpers/tmp';

const awsConfig: MachineAgentConfig = {
  apiUrl: 'http://127.0.0.1:1',
  machineId: 'mch_volumetest1',
  registrationToken: `swr_${'A'.repeat(43)}`,
  provider: 'aws',
  platform: 'linux/amd64',
  stateDir: '/unused',
  listenHost: '0.0.0.0',
  buildkitPort: 8372,
};

async function awsDeps(t: Parameters<typeof tempDir>[0]): Promise<VolumeDeps> {
  const dir = await tempDir(t, 'volume');
  const byIdDir = path.join(dir, 'by-id');
  await mkdir(byIdDir);
  return {
    config: awsConfig,
    mountsDir: path.join(dir, 'mounts'),
    byIdDir,
    deviceTimeoutMs: 30_000,
    logger: captureLogger().logger,
  };
}

/** What udev makes for an attached EBS volume on a Nitro instance, pointing at our loop device. */
async function attach(deps: VolumeDeps, ebsVolumeId: string, device: string): Promise<void> {
  const link = `nvme-Amazon_Elastic_Block_Store_${ebsVolumeId.replace('-', '')}`;
  await symlink(path.relative(deps.byIdDir!, device), path.join(deps.byIdDir!, link));
}

/** Writes a DOS partition table with one Linux partition, as a disk an operator set up carries. */
async function partition(device: string): Promise<void> {
  const mbr = Buffer.alloc(512);
  const entry = 446;
  mbr[entry + 4] = 0x83; // Linux
  mbr.writeUInt32LE(2048, entry + 8); // first sector
  mbr.writeUInt32LE(32_768, entry + 12); // sectors
  mbr[510] = 0x55;
  mbr[511] = 0xaa;
  const handle = await open(device, 'r+');
  await handle.write(mbr, 0, 512, 0);
  await handle.close();
}

test('a fresh volume is found through its NVMe symlink, formatted and mounted; its data survives a second mount', async (t) => {
  const device = await loopDevice(t, 64);
  const deps = await awsDeps(t);
  const volume = { id: 'vol_cachetest01', sizeGb: 1, providerId: 'vol-0123456789abcdef0' };

  // The agent is already waiting when the attachment completes and udev makes the link.
  const preparing = prepareVolume(volume, deps);
  await attach(deps, volume.providerId, device);
  const first = await preparing;
  t.is(first.root, path.join(deps.mountsDir, volume.id));
  t.like(await mountAt(first.root), { fsType: 'ext4', source: device });
  t.is((await probeDevice(device))?.type, 'ext4');
  await writeFile(path.join(first.root, 'cache-entry'), 'layer bytes');
  await first.release(30_000);
  t.is(await mountAt(first.root), undefined, 'released means unmounted');

  const second = await prepareVolume(volume, deps);
  t.is(await readFile(path.join(second.root, 'cache-entry'), 'utf8'), 'layer bytes');
  await second.release(30_000);
});

test('a mounted volume is picked up again by a restarted agent without remounting', async (t) => {
  const device = await loopDevice(t, 64);
  const deps = await awsDeps(t);
  const volume = { id: 'vol_cachetest02', sizeGb: 1, providerId: 'vol-0aaaaaaaaaaaaaaaa' };
  await attach(deps, volume.providerId, device);
  const first = await prepareVolume(volume, deps);
  await writeFile(path.join(first.root, 'kept'), 'yes');
  const again = await prepareVolume(volume, deps);
  t.is(await readFile(path.join(again.root, 'kept'), 'utf8'), 'yes');
  await again.release(30_000);
});

test('a device with data blkid does not recognise is never formatted', async (t) => {
  const device = await loopDevice(t, 64);
  const deps = await awsDeps(t);
  const volume = { id: 'vol_cachetest03', sizeGb: 1, providerId: 'vol-0bbbbbbbbbbbbbbbb' };
  const data = Buffer.from('precious bytes that are not a filesystem');
  const handle = await open(device, 'r+');
  await handle.write(data, 0, data.length, 4096);
  await handle.close();
  await attach(deps, volume.providerId, device);

  const err = await t.throwsAsync(prepareVolume(volume, deps), { instanceOf: MachineAgentError });
  t.is(err?.code, 'volume_has_data');
  const check = Buffer.alloc(data.length);
  const reader = await open(device, 'r');
  await reader.read(check, 0, data.length, 4096);
  await reader.close();
  t.deepEqual(check, data, 'the bytes are untouched');
  t.is(await probeDevice(device), undefined);
});

test("another project's volume is refused rather than mixed into this cache", async (t) => {
  const device = await loopDevice(t, 64);
  const deps = await awsDeps(t);
  await attach(deps, 'vol-0ccccccccccccccc1', device);
  const first = await prepareVolume(
    { id: 'vol_projectaaa1', sizeGb: 1, providerId: 'vol-0ccccccccccccccc1' },
    deps,
  );
  await first.release(30_000);
  const err = await t.throwsAsync(
    prepareVolume({ id: 'vol_projectbbb2', sizeGb: 1, providerId: 'vol-0ccccccccccccccc1' }, deps),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'volume_mismatch');
  t.is(await mountAt(path.join(deps.mountsDir, 'vol_projectbbb2')), undefined, 'left unmounted');
});

test('a partition table is left alone', async (t) => {
  const device = await loopDevice(t, 64);
  const deps = await awsDeps(t);
  await partition(device);
  await attach(deps, 'vol-0ddddddddddddddd1', device);
  const err = await t.throwsAsync(
    prepareVolume({ id: 'vol_partitioned1', sizeGb: 1, providerId: 'vol-0ddddddddddddddd1' }, deps),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'volume_unusable');
  t.regex(err!.message, /dos partition table/);
});

test('a volume whose device never appears fails with the path it waited for', async (t) => {
  const deps = await awsDeps(t);
  const err = await t.throwsAsync(
    prepareVolume(
      { id: 'vol_neverthere1', sizeGb: 1, providerId: 'vol-0eeeeeeeeeeeeeee1' },
      { ...deps, deviceTimeoutMs: 300 },
    ),
    { instanceOf: MachineAgentError },
  );
  t.is(err?.code, 'volume_device_missing');
  t.regex(err!.message, /nvme-Amazon_Elastic_Block_Store_vol0eeeeeeeeeeeeeee1/);
});

test('on the local provider a volume is a directory named by its id under the volumes dir', async (t) => {
  const dir = await tempDir(t, 'local-volumes');
  const deps: VolumeDeps = {
    config: { ...awsConfig, provider: 'local', volumesDir: dir },
    mountsDir: '/unused',
    deviceTimeoutMs: 1000,
    logger: captureLogger().logger,
  };
  const volume = await prepareVolume({ id: 'vol_localcache1', sizeGb: 1 }, deps);
  t.is(volume.root, path.join(dir, 'vol_localcache1'));
  await writeFile(path.join(volume.root, 'entry'), 'x');
  await volume.release(1000);
  const again = await prepareVolume({ id: 'vol_localcache1', sizeGb: 1 }, deps);
  t.is(await readFile(path.join(again.root, 'entry'), 'utf8'), 'x');
});
