// The cache volume a BuildKit task names, made ready as BuildKit's root: a directory under
// SLIPWAY_VOLUMES_DIR on the local provider, the attached EBS volume mounted on AWS. A marker
// file records which volume a filesystem is, so a project's cache is never used by another.
import { mkdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import type { BuildkitTask, MachineAgentConfig } from '../common/protocol';
import { MachineAgentError } from './errors';
import {
  ebsDeviceLinks,
  mountVolume,
  syncFilesystem,
  unmountVolume,
  waitForBlockDevice,
} from './block-volume';
import { writeFileAtomic } from '../common/fs';

export interface PreparedVolume {
  id: string;
  /** BuildKit's root. */
  root: string;
  /** Syncs the cache to disk and, for block volumes, unmounts it. */
  release(timeoutMs: number): Promise<void>;
}

export interface VolumeDeps {
  config: MachineAgentConfig;
  /** AWS: where block volumes are mounted. */
  mountsDir: string;
  /** Where udev links attached disks; tests point it at their own links to a loop device. */
  byIdDir?: string;
  deviceTimeoutMs: number;
  logger: Logger;
  signal?: AbortSignal;
}

const markerName = 'slipway-volume.json';

/** First use writes the marker; later uses check it names the same volume. */
async function claim(root: string, volumeId: string): Promise<void> {
  const marker = path.join(root, markerName);
  let text: string | undefined;
  try {
    text = await readFile(marker, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  if (text === undefined) {
    await writeFileAtomic(marker, JSON.stringify({ volumeId }) + '\n', 0o644);
    return;
  }
  const found = (JSON.parse(text) as { volumeId?: string }).volumeId;
  if (found !== volumeId) {
    throw new MachineAgentError(
      'volume_mismatch',
      `the volume at ${root} is cache volume ${found}, not ${volumeId}; refusing to mix two projects' caches`,
    );
  }
}

export async function prepareVolume(
  volume: BuildkitTask['volume'],
  deps: VolumeDeps,
): Promise<PreparedVolume> {
  const { config, logger } = deps;
  if (config.provider === 'local') {
    if (!config.volumesDir) throw new Error('volumesDir is required for the local provider');
    const root = path.join(config.volumesDir, volume.id);
    try {
      await mkdir(root, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new MachineAgentError(
        'volume_unusable',
        `cannot use ${root} as cache volume ${volume.id}: ${(err as NodeJS.ErrnoException).code ?? String(err)}; check that SLIPWAY_VOLUMES_DIR is a writable directory`,
      );
    }
    await claim(root, volume.id);
    return { id: volume.id, root, release: () => syncFilesystem(root) };
  }

  if (!volume.providerId) {
    throw new MachineAgentError(
      'task_invalid',
      `the task names cache volume ${volume.id} without its EBS volume id (volume.providerId), so the attached device cannot be found`,
    );
  }
  const device = await waitForBlockDevice(ebsDeviceLinks(volume.providerId, deps.byIdDir), {
    timeoutMs: deps.deviceTimeoutMs,
    signal: deps.signal,
  });
  const mountPoint = path.join(deps.mountsDir, volume.id);
  await mountVolume({ device, mountPoint, label: 'slipway-cache', logger });
  try {
    await claim(mountPoint, volume.id);
  } catch (err) {
    await unmountVolume(mountPoint, { timeoutMs: 30_000, logger });
    throw err;
  }
  return {
    id: volume.id,
    root: mountPoint,
    release: (timeoutMs) => unmountVolume(mountPoint, { timeoutMs, logger }),
  };
}
