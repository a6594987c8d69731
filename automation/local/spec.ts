// The local fleet as plain data: which machine processes and volume directories should exist,
// computed from the desired fleet alone, so it is tested without an engine.
import type { DesiredFleet, Platform } from '../../common/protocol';
import type { CapacityFailure } from '../outcome';
import { assertNoProblems } from '../spec-error';
import { commonFleetProblems } from '../fleet';

export interface LocalMachineSpec {
  machineId: string;
  platform: Platform;
  state: 'running' | 'stopped';
  registrationToken: string | null;
}

export interface LocalVolumeSpec {
  volumeId: string;
  projectId: string;
  platform: Platform;
  sizeGb: number;
}

export interface LocalFleetSpec {
  machines: LocalMachineSpec[];
  volumes: LocalVolumeSpec[];
  /** Machines this host cannot run, reported to the control plane instead of created. */
  capacityFailures: CapacityFailure[];
}

export function localFleetSpec(fleet: DesiredFleet, host: Platform | null): LocalFleetSpec {
  const problems = commonFleetProblems(fleet, 'local');
  assertNoProblems(problems);
  const machines: LocalMachineSpec[] = [];
  const capacityFailures: CapacityFailure[] = [];
  for (const m of [...fleet.machines].sort((a, b) => a.id.localeCompare(b.id))) {
    if (m.platform !== host) {
      capacityFailures.push({
        machineId: m.id,
        platform: m.platform,
        reason: `a local connection builds only for this host's platform (${host ?? 'none'}), not ${m.platform}`,
      });
      continue;
    }
    machines.push({
      machineId: m.id,
      platform: m.platform,
      state: m.state,
      registrationToken: m.registrationToken,
    });
  }
  const volumes = [...fleet.volumes]
    .sort((a, b) => a.id.localeCompare(b.id))
    .map((v) => ({
      volumeId: v.id,
      projectId: v.projectId,
      platform: v.platform,
      sizeGb: v.sizeGb,
    }));
  return { machines, volumes, capacityFailures };
}
