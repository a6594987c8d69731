// Cache volumes on block devices (AWS EBS): wait for the attached device, format it only when it
// is blank, mount it, and unmount it on the way out. Formatting is guarded twice: blkid must find
// no filesystem or partition table, and the device's first and last MiB must read as zeros, so a
// volume that holds anything is never formatted.
import { execFile } from 'node:child_process';
import { open, readFile, realpath, stat, mkdir } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { waitFor, DeadlineError } from '../common/wait';
import { MachineAgentError, errorMessage } from './errors';

const execFileAsync = promisify(execFile);

/** Debian keeps these in /usr/sbin and /sbin, which a minimal PATH may lack. */
const sbinPath = ['/usr/sbin', '/sbin', '/usr/bin', '/bin'];

async function run(
  command: string,
  args: string[],
  timeoutMs = 120_000,
): Promise<{ stdout: string; stderr: string }> {
  const env = { ...process.env, PATH: [process.env.PATH ?? '', ...sbinPath].join(':') };
  return execFileAsync(command, args, { timeout: timeoutMs, env, maxBuffer: 4 * 1024 * 1024 });
}

/**
 * Names udev gives an attached EBS volume under /dev/disk/by-id: on Nitro instances the NVMe
 * model and serial ("Amazon Elastic Block Store", "vol0abc..."); the serial drops the dash.
 */
export function ebsDeviceLinks(ebsVolumeId: string, byIdDir = '/dev/disk/by-id'): string[] {
  const serial = ebsVolumeId.replace('-', '');
  return [
    path.join(byIdDir, `nvme-Amazon_Elastic_Block_Store_${serial}`),
    path.join(byIdDir, `nvme-Amazon_Elastic_Block_Store_${serial}_1`),
  ];
}

/** Waits until one of `candidates` resolves (through symlinks) to a block device; returns it. */
export async function waitForBlockDevice(
  candidates: string[],
  opts: { timeoutMs: number; signal?: AbortSignal },
): Promise<string> {
  try {
    return await waitFor(
      async () => {
        for (const candidate of candidates) {
          try {
            const device = await realpath(candidate);
            if ((await stat(device)).isBlockDevice()) return device;
          } catch {
            // not there yet: the attachment is still in progress
          }
        }
        return undefined;
      },
      {
        timeoutMs: opts.timeoutMs,
        intervalMs: 100,
        what: `the volume's block device at ${candidates.join(' or ')}`,
        signal: opts.signal,
      },
    );
  } catch (err) {
    if (!(err instanceof DeadlineError)) throw err;
    throw new MachineAgentError(
      'volume_device_missing',
      `no block device appeared at ${candidates.join(' or ')} within ${Math.round(opts.timeoutMs / 1000)} s; check that the cloud-agent attached the volume to this instance`,
    );
  }
}

export interface Probe {
  /** Filesystem type (ext4, xfs...), if one was found. */
  type?: string;
  /** Partition table type (gpt, dos), if one was found. */
  partitionTable?: string;
  /** Other signatures blkid recognised (LVM, RAID members, swap...). */
  usage?: string;
}

/** blkid's low-level probe (no cache): what, if anything, is on the device. */
export async function probeDevice(device: string): Promise<Probe | undefined> {
  try {
    const { stdout } = await run('blkid', ['-p', '-o', 'export', device]);
    const fields = Object.fromEntries(
      stdout
        .split('\n')
        .filter((line) => line.includes('='))
        .map((line) => [line.slice(0, line.indexOf('=')), line.slice(line.indexOf('=') + 1)]),
    );
    return { type: fields.TYPE, partitionTable: fields.PTTYPE, usage: fields.USAGE };
  } catch (err) {
    // Exit status 2: nothing identifiable on the device. Anything else (ambiguous probe,
    // unreadable device) must not be mistaken for a blank volume.
    if ((err as { code?: number }).code === 2) return undefined;
    throw new MachineAgentError(
      'volume_unusable',
      `blkid could not probe ${device}: ${errorMessage(err)}`,
    );
  }
}

const zeroCheckBytes = 1024 * 1024;

/** True when the device's first and last MiB are all zeros, as a fresh EBS volume reads. */
export async function readsAsBlank(device: string): Promise<boolean> {
  const handle = await open(device, 'r');
  try {
    const size = await deviceSize(device);
    const buffer = Buffer.alloc(Math.min(zeroCheckBytes, size));
    for (const offset of [0, Math.max(0, size - buffer.length)]) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (buffer.subarray(0, bytesRead).some((byte) => byte !== 0)) return false;
    }
    return true;
  } finally {
    await handle.close();
  }
}

async function deviceSize(device: string): Promise<number> {
  const { stdout } = await run('blockdev', ['--getsize64', device]);
  return Number(stdout.trim());
}

interface MountEntry {
  source: string;
  mountPoint: string;
  fsType: string;
}

function unescapeMountField(field: string): string {
  return field.replace(/\\([0-7]{3})/g, (_, octal: string) =>
    String.fromCharCode(parseInt(octal, 8)),
  );
}

export async function mountAt(mountPoint: string): Promise<MountEntry | undefined> {
  const text = await readFile('/proc/self/mountinfo', 'utf8');
  let found: MountEntry | undefined;
  for (const line of text.split('\n')) {
    const [left, right] = line.split(' - ');
    if (!left || !right) continue;
    const point = unescapeMountField(left.split(' ')[4] ?? '');
    const [fsType = '', source = ''] = right.split(' ');
    // The last entry wins: a later mount on the same point hides the earlier ones.
    if (point === mountPoint) found = { source: unescapeMountField(source), mountPoint, fsType };
  }
  return found;
}

const mountableTypes = new Set(['ext4', 'ext3', 'ext2', 'xfs', 'btrfs']);

export interface MountOptions {
  device: string;
  mountPoint: string;
  /** Filesystem label for a fresh format (ext4 allows 16 bytes). */
  label: string;
  logger: Logger;
}

/**
 * Mounts `device` at `mountPoint`, formatting it with ext4 first only if it is blank. Mounting
 * again what is already mounted there is a no-op, so a restarted agent resumes.
 */
export async function mountVolume(opts: MountOptions): Promise<{ formatted: boolean }> {
  const { device, mountPoint, logger } = opts;
  await mkdir(mountPoint, { recursive: true, mode: 0o700 });
  const mounted = await mountAt(mountPoint);
  if (mounted) {
    const source = await realpath(mounted.source).catch(() => mounted.source);
    if (source === device) {
      logger.info({ device, mountPoint }, 'volume already mounted');
      return { formatted: false };
    }
    throw new MachineAgentError(
      'mount_point_busy',
      `${mountPoint} already has ${mounted.source} mounted, not ${device}; unmount it first`,
    );
  }

  let formatted = false;
  const probe = await probeDevice(device);
  if (!probe) {
    if (!(await readsAsBlank(device))) {
      throw new MachineAgentError(
        'volume_has_data',
        `${device} has no filesystem blkid recognises, but it is not blank; refusing to format a volume that holds data (inspect it, or wipe it deliberately with wipefs/dd)`,
      );
    }
    logger.info({ device }, 'volume is blank; formatting it with ext4');
    await run('mkfs.ext4', [
      '-q',
      // A cache needs no blocks reserved for root, and lazy init keeps a fresh volume fast.
      '-m',
      '0',
      '-E',
      'lazy_itable_init=1,lazy_journal_init=1',
      '-L',
      opts.label.slice(0, 16),
      device,
    ]);
    formatted = true;
  } else if (!probe.type || !mountableTypes.has(probe.type)) {
    const what =
      probe.type ??
      (probe.partitionTable
        ? `a ${probe.partitionTable} partition table`
        : (probe.usage ?? 'an unknown signature'));
    throw new MachineAgentError(
      'volume_unusable',
      `${device} holds ${what}, not a filesystem the agent mounts (${[...mountableTypes].join(', ')}); it is left untouched`,
    );
  }

  try {
    await run('mount', ['-o', 'noatime', device, mountPoint]);
  } catch (err) {
    throw new MachineAgentError(
      'mount_failed',
      `mount ${device} on ${mountPoint} failed: ${errorMessage(err)}`,
    );
  }
  logger.info({ device, mountPoint, formatted }, 'volume mounted');
  return { formatted };
}

/** Flushes the filesystem that holds `dir` to its device. */
export async function syncFilesystem(dir: string): Promise<void> {
  await run('sync', ['-f', dir], 60_000);
}

/** Syncs and unmounts; a busy mount is retried until the deadline (a process may be exiting). */
export async function unmountVolume(
  mountPoint: string,
  opts: { timeoutMs: number; logger: Logger },
): Promise<void> {
  if (!(await mountAt(mountPoint))) return;
  await syncFilesystem(mountPoint);
  let lastError = '';
  try {
    await waitFor(
      async () => {
        try {
          await run('umount', [mountPoint], 30_000);
          return true;
        } catch (err) {
          lastError = errorMessage(err);
          return !(await mountAt(mountPoint));
        }
      },
      { timeoutMs: opts.timeoutMs, intervalMs: 200, what: `unmounting ${mountPoint}` },
    );
  } catch (err) {
    if (!(err instanceof DeadlineError)) throw err;
    throw new MachineAgentError('unmount_failed', `could not unmount ${mountPoint}: ${lastError}`);
  }
  opts.logger.info({ mountPoint }, 'volume unmounted');
}
