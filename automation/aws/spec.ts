// The AWS fleet as plain data: instances from the connection's launch templates, placed in a
// subnet of their volume's zone, gp3 encrypted volumes, attachments and power states. Computed
// from the desired fleet and the zones the stack already uses, so it is tested on its own.
import { createHash } from 'node:crypto';
import type { AwsConnectionConfig, DesiredFleet, Platform } from '../../common/protocol';
import { commonFleetProblems } from '../fleet';
import type { CapacityFailure } from '../outcome';
import type { FleetInventory } from '../provider';
import { assertNoProblems } from '../spec-error';

export interface AwsInstanceSpec {
  machineId: string;
  platform: Platform;
  launchTemplateId: string;
  subnetId: string;
  zone: string;
  state: 'running' | 'stopped';
  registrationToken: string | null;
}

export interface AwsVolumeSpec {
  volumeId: string;
  projectId: string;
  platform: Platform;
  sizeGb: number;
  zone: string;
}

export interface AwsAttachmentSpec {
  volumeId: string;
  machineId: string;
  deviceName: string;
}

export interface AwsFleetSpec {
  region: string;
  buildkitPort: number;
  instances: AwsInstanceSpec[];
  volumes: AwsVolumeSpec[];
  attachments: AwsAttachmentSpec[];
  /** Machines the connection cannot launch (no launch template for their platform). */
  capacityFailures: CapacityFailure[];
}

/** Where the cache volume appears to the instance (NVMe instances rename it; the id is kept). */
export const cacheVolumeDevice = '/dev/sdf';

/** A stable choice among `options` for `id`, so machines without a zone spread over zones. */
function spread<T>(id: string, options: readonly T[]): T {
  const n = createHash('sha256').update(id).digest().readUInt32BE(0);
  return options[n % options.length] as T;
}

export function awsFleetSpec(fleet: DesiredFleet, current: FleetInventory): AwsFleetSpec {
  const problems = commonFleetProblems(fleet, 'aws');
  const aws: AwsConnectionConfig | null = fleet.aws;
  if (!aws) {
    problems.push(
      'aws: an aws fleet needs the connection settings (region, launch templates, subnets)',
    );
  }
  assertNoProblems(problems);
  const config = aws as AwsConnectionConfig;
  const zones = [...new Set(config.subnets.map((s) => s.zone))].sort();
  const subnetIn = (zone: string) => config.subnets.find((s) => s.zone === zone)?.id;

  const machineByVolume = new Map(
    fleet.machines.filter((m) => m.volumeId).map((m) => [m.volumeId as string, m]),
  );
  // A zone, once used, is kept: moving a volume or an instance would recreate it.
  const knownMachineZone = (id: string, zone: string | null) =>
    zone ?? current.machines[id]?.zone ?? null;
  const volumeZones = new Map<string, string>();
  for (const v of fleet.volumes) {
    const m = machineByVolume.get(v.id);
    volumeZones.set(
      v.id,
      v.zone ??
        current.volumes[v.id]?.zone ??
        (m && knownMachineZone(m.id, m.zone)) ??
        spread(v.id, zones),
    );
  }

  const instances: AwsInstanceSpec[] = [];
  const capacityFailures: CapacityFailure[] = [];
  const attachments: AwsAttachmentSpec[] = [];
  fleet.machines.forEach((m, i) => {
    const zone =
      knownMachineZone(m.id, m.zone) ??
      (m.volumeId ? volumeZones.get(m.volumeId) : undefined) ??
      spread(m.id, zones);
    const subnetId = subnetIn(zone);
    if (!subnetId) {
      problems.push(
        `machines[${i}].zone: ${zone} has no subnet in the connection (zones: ${zones.join(', ')})`,
      );
      return;
    }
    if (m.volumeId && volumeZones.get(m.volumeId) !== zone) {
      problems.push(
        `machines[${i}].zone: ${zone} differs from the zone of its volume ${m.volumeId} (${volumeZones.get(m.volumeId)})`,
      );
      return;
    }
    const launchTemplateId = config.launchTemplates[m.platform];
    if (!launchTemplateId) {
      capacityFailures.push({
        machineId: m.id,
        platform: m.platform,
        reason: `the connection has no launch template for ${m.platform}; add one to its connection stack`,
      });
      return;
    }
    instances.push({
      machineId: m.id,
      platform: m.platform,
      launchTemplateId,
      subnetId,
      zone,
      state: m.state,
      registrationToken: m.registrationToken,
    });
    if (m.volumeId) {
      attachments.push({ volumeId: m.volumeId, machineId: m.id, deviceName: cacheVolumeDevice });
    }
  });
  fleet.volumes.forEach((v, i) => {
    const zone = volumeZones.get(v.id) as string;
    if (!subnetIn(zone)) {
      problems.push(`volumes[${i}].zone: ${zone} has no subnet in the connection`);
    }
  });
  assertNoProblems(problems);

  const byId = <T extends { machineId?: string; volumeId?: string }>(a: T, b: T) =>
    (a.machineId ?? a.volumeId ?? '').localeCompare(b.machineId ?? b.volumeId ?? '');
  return {
    region: config.region,
    buildkitPort: config.buildkitPort,
    instances: instances.sort(byId),
    volumes: fleet.volumes
      .map((v) => ({
        volumeId: v.id,
        projectId: v.projectId,
        platform: v.platform,
        sizeGb: v.sizeGb,
        zone: volumeZones.get(v.id) as string,
      }))
      .sort(byId),
    attachments: attachments.sort((a, b) => a.volumeId.localeCompare(b.volumeId)),
    capacityFailures,
  };
}
