// What a buildkitd that died without cleaning up (SIGKILL, OOM) leaves on its cache root: the
// runc processes of the build steps it was running, still running in their containers, and the
// rootfs mounts they hold. A new buildkitd on the same root neither ends nor unmounts them, so
// they are ended and unmounted before it starts.
import { execFile } from 'node:child_process';
import { readdir, readFile, readlink } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { Logger } from 'pino';
import { waitFor } from '../common/wait';

const execFileAsync = promisify(execFile);

interface Proc {
  pid: number;
  ppid: number;
  /**
   * Its working directory, command line and root mount: a build step orphaned in its container
   * shows `/` and its own command, but its root is an overlay of the cache root's snapshots.
   */
  where: string;
}

async function processes(): Promise<Proc[]> {
  const found: Proc[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const [stat, cwd, cmdline, mounts] = await Promise.all([
      readFile(`/proc/${entry}/stat`, 'utf8').catch(() => ''),
      readlink(`/proc/${entry}/cwd`).catch(() => ''),
      readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => ''),
      readFile(`/proc/${entry}/mountinfo`, 'utf8').catch(() => ''),
    ]);
    const rootMount = mounts.split('\n').find((line) => line.split(' ')[4] === '/') ?? '';
    if (!stat) continue; // it ended meanwhile
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    if (fields[0] === 'Z' || fields[0] === 'X') continue;
    found.push({
      pid: Number(entry),
      ppid: Number(fields[1]),
      where: `${cwd}\0${cmdline}\0${rootMount}`,
    });
  }
  return found;
}

/** Mount points below `prefix`, from the mount table (octal escapes decoded), deepest first. */
async function mountsBelow(prefix: string): Promise<string[]> {
  const table = await readFile('/proc/self/mountinfo', 'utf8');
  return table
    .split('\n')
    .map((line) => line.split(' ')[4] ?? '')
    .map((p) => p.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((p) => p.startsWith(prefix))
    .sort((a, b) => b.length - a.length);
}

/**
 * Ends the processes working on `root` (anything whose working directory or command line names
 * it, with all their descendants) and unmounts what is mounted below it. Only call it when no
 * buildkitd of ours runs on `root`.
 */
export async function clearBuildkitLeftovers(
  root: string,
  logger: Logger,
): Promise<{ ended: number[]; unmounted: string[] }> {
  const prefix = path.resolve(root) + path.sep;
  const procs = await processes();
  const ended = new Set(procs.filter((p) => p.where.includes(prefix)).map((p) => p.pid));
  for (let grew = true; grew;) {
    grew = false;
    for (const p of procs) {
      if (ended.has(p.ppid) && !ended.has(p.pid)) {
        ended.add(p.pid);
        grew = true;
      }
    }
  }
  for (const pid of ended) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      ended.delete(pid); // it ended on its own
    }
  }
  if (ended.size > 0) {
    const alive = new Set(ended);
    await waitFor(
      async () => {
        const now = new Set((await processes()).map((p) => p.pid));
        for (const pid of alive) if (!now.has(pid)) alive.delete(pid);
        return alive.size === 0;
      },
      { timeoutMs: 10_000, intervalMs: 20, what: 'the processes of the last buildkitd to end' },
    );
  }
  const unmounted: string[] = [];
  for (const mountPoint of await mountsBelow(prefix)) {
    try {
      await execFileAsync('umount', [mountPoint]);
    } catch {
      await execFileAsync('umount', ['--lazy', mountPoint]);
    }
    unmounted.push(mountPoint);
  }
  if (ended.size > 0 || unmounted.length > 0) {
    logger.warn(
      { ended: [...ended], unmounted },
      'ended the build steps and unmounted the containers a dead buildkitd left behind',
    );
  }
  return { ended: [...ended], unmounted };
}
