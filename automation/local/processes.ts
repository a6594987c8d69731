// The process table as the local provider sees it: a process belongs to a directory when its
// working directory is inside it. Local machines are started with their state directory as
// working directory, and the Pulumi engine and its plugins run in the stack's work directory, so
// both are found again after a restart without trusting a pid file (pids are reused).
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import path from 'node:path';
import { DeadlineError, waitFor } from '../../common/wait';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  cwd: string;
}

/** Fields of /proc/<pid>/stat after the command name, which may itself contain spaces. */
function readStat(pid: number): { state: string; ppid: number } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: fields[0] ?? '?', ppid: Number(fields[1]) };
}

/** True when the process exists and is not a zombie waiting to be reaped. */
export function isAlive(pid: number): boolean {
  const stat = readStat(pid);
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X';
}

/** Live processes whose working directory is `dir` or below it. */
export function processesUnder(dir: string): ProcessInfo[] {
  const root = path.resolve(dir);
  const found: ProcessInfo[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const pid = Number(entry);
    if (pid === process.pid) continue;
    let cwd: string;
    try {
      cwd = readlinkSync(`/proc/${pid}/cwd`);
    } catch {
      continue; // gone meanwhile, or not ours to inspect
    }
    if (cwd !== root && !cwd.startsWith(root + path.sep)) continue;
    const stat = readStat(pid);
    if (!stat || stat.state === 'Z' || stat.state === 'X') continue;
    found.push({ pid, ppid: stat.ppid, cwd });
  }
  return found;
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

/**
 * Ends every process under `dir`. Only the roots (those whose parent is not among them, e.g. a
 * machine-agent) get SIGTERM, so they can stop their children in order (a machine-agent stops
 * its buildkitd and syncs the cache); roots that appear meanwhile get theirs too. After
 * `graceMs` whatever is left gets SIGKILL. Returns the pids that were found.
 */
export async function terminateProcessesUnder(dir: string, graceMs: number): Promise<number[]> {
  const found = new Set<number>();
  const termed = new Set<number>();
  const gone = () => {
    const procs = processesUnder(dir);
    const pids = new Set(procs.map((p) => p.pid));
    for (const p of procs) {
      found.add(p.pid);
      if (pids.has(p.ppid) || termed.has(p.pid)) continue;
      signal(p.pid, 'SIGTERM');
      termed.add(p.pid);
    }
    return procs.length === 0;
  };
  const poll = { intervalMs: 20, maxIntervalMs: 200 };
  try {
    await waitFor(gone, { ...poll, timeoutMs: graceMs, what: `processes under ${dir} to end` });
  } catch (err) {
    if (!(err instanceof DeadlineError)) throw err;
    for (const p of processesUnder(dir)) {
      found.add(p.pid);
      signal(p.pid, 'SIGKILL');
    }
    // SIGKILL cannot be refused; what remains are exits still being processed.
    await waitFor(() => processesUnder(dir).length === 0, {
      intervalMs: 20,
      maxIntervalMs: 20,
      timeoutMs: 5000,
      what: `killed processes under ${dir} to be reaped`,
    }).catch(() => undefined);
  }
  return [...found];
}
