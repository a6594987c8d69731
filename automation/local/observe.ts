// The local provider seen from outside Pulumi: one directory per machine (running when a
// process works in it) and per volume under the agent's data directory.
import { existsSync, readdirSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import { idSchema } from '../../common/protocol';
import { machineDir, machinesDir, volumeDir, volumesDir } from '../layout';
import type { FleetInventory, ObservedMachine, ObservedVolume } from '../provider';
import { processesUnder, terminateProcessesUnder, type ProcessInfo } from './processes';

const machineId = idSchema('machine');
const volumeId = idSchema('volume');

function ids(dir: string, schema: typeof machineId): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true })
    .filter((e) => e.isDirectory() && schema.safeParse(e.name).success)
    .map((e) => e.name)
    .sort();
}

export function observeLocal(dataDir: string): {
  machines: ObservedMachine[];
  volumes: ObservedVolume[];
} {
  // One walk of the process table for every machine: grouped by the machine directory they run in.
  const root = machinesDir(dataDir);
  const byMachine = new Map<string, ProcessInfo[]>();
  for (const p of processesUnder(root)) {
    const id = path.relative(path.resolve(root), p.cwd).split(path.sep)[0]!;
    byMachine.set(id, [...(byMachine.get(id) ?? []), p]);
  }
  const machines = ids(root, machineId).map((id): ObservedMachine => {
    // The machine-agent is the root; its buildkitd shares its working directory.
    const procs = byMachine.get(id) ?? [];
    const pids = new Set(procs.map((p) => p.pid));
    const leader = procs.find((p) => !pids.has(p.ppid)) ?? procs[0];
    return leader
      ? { id, state: 'running', address: '127.0.0.1', providerId: String(leader.pid) }
      : { id, state: 'stopped', address: '127.0.0.1' };
  });
  const volumes = ids(volumesDir(dataDir), volumeId).map((id): ObservedVolume => ({
    id,
    state: 'available',
    providerId: volumeDir(dataDir, id),
  }));
  return { machines, volumes };
}

/**
 * Machines and volumes on disk that the stack does not hold, left by an update that crashed
 * before recording them: their processes are ended and their directories removed.
 */
export async function removeLocalOrphans(
  dataDir: string,
  stack: FleetInventory,
): Promise<string[]> {
  const removed: string[] = [];
  for (const id of ids(machinesDir(dataDir), machineId)) {
    if (id in stack.machines) continue;
    await terminateProcessesUnder(machineDir(dataDir, id), 20_000);
    await rm(machineDir(dataDir, id), { recursive: true, force: true });
    removed.push(`machine ${id}`);
  }
  for (const id of ids(volumesDir(dataDir), volumeId)) {
    if (id in stack.volumes) continue;
    await rm(volumeDir(dataDir, id), { recursive: true, force: true });
    removed.push(`volume ${id}`);
  }
  return removed;
}
