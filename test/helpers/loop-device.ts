// A real block device for volume tests: a sparse file attached to a free loop device, detached
// (and unmounted, if a test left it mounted) when the test ends. Needs root and losetup, as
// the machine-agent itself does on a builder.
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import { tempDir } from './tmp';

const execFileAsync = promisify(execFile);

export async function loopDevice(t: ExecutionContext, sizeMb: number): Promise<string> {
  const dir = await tempDir(t, 'loop');
  const image = path.join(dir, 'volume.img');
  await execFileAsync('truncate', ['-s', `${sizeMb}M`, image]);
  const { stdout } = await execFileAsync('losetup', ['--find', '--show', image]);
  const device = stdout.trim();
  t.teardown(async () => {
    const mounts = await readFile('/proc/self/mountinfo', 'utf8');
    for (const line of mounts.split('\n')) {
      const fields = line.split(' - ')[1]?.split(' ');
      if (fields?.[1] === device) {
        await execFileAsync('umount', [line.split(' ')[4]!]).catch(() => undefined);
      }
    }
    await execFileAsync('losetup', ['-d', device]);
  });
  return device;
}
