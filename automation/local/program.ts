// The local fleet program: a thin layer that turns the local fleet spec into dynamic resources
// (a directory per volume, a machine-agent process per machine) and reports what it holds.
import * as pulumi from '@pulumi/pulumi';
import type { PulumiFn } from '@pulumi/pulumi/automation';
import { machineDir, volumeDir, volumesDir } from '../layout';
import { LocalMachine, LocalVolume } from './provider';
import type { LocalFleetSpec } from './spec';

export interface LocalProgramContext {
  dataDir: string;
  controlPlaneUrl: string;
  controlPlaneCaFile: string | null;
}

export function localFleetProgram(spec: LocalFleetSpec, ctx: LocalProgramContext): PulumiFn {
  return async () => {
    const volumes: Record<string, LocalVolume> = {};
    for (const v of spec.volumes) {
      volumes[v.volumeId] = new LocalVolume(v.volumeId, {
        ...v,
        path: volumeDir(ctx.dataDir, v.volumeId),
      });
    }
    const machines: Record<string, pulumi.Output<{ providerId: string; port: number }>> = {};
    for (const m of spec.machines) {
      const resource = new LocalMachine(m.machineId, {
        machineId: m.machineId,
        platform: m.platform,
        state: m.state,
        stateDir: machineDir(ctx.dataDir, m.machineId),
        volumesDir: volumesDir(ctx.dataDir),
        apiUrl: ctx.controlPlaneUrl,
        registrationToken: m.registrationToken,
        controlPlaneCaFile: ctx.controlPlaneCaFile,
      });
      machines[m.machineId] = pulumi
        .all([resource.id, resource.port])
        .apply(([id, port]) => ({ providerId: id, port }));
    }
    return {
      machines,
      volumes: Object.fromEntries(
        Object.entries(volumes).map(([id, r]) => [
          id,
          r.id.apply((providerId) => ({ providerId })),
        ]),
      ),
    };
  };
}
