// Provider-neutral facts about a desired fleet: the checks every fleet program runs first, and
// the digest that tells whether a new generation changes anything the agent builds.
import { createHash } from 'node:crypto';
import type { DesiredFleet, Provider } from '../common/protocol';

/** Every inconsistency in the fleet, each naming its field; empty when the fleet is sound. */
export function commonFleetProblems(fleet: DesiredFleet, provider: Provider): string[] {
  const problems: string[] = [];
  if (fleet.provider !== provider) {
    problems.push(`provider: the fleet is for ${fleet.provider}, this program builds ${provider}`);
  }
  const volumes = new Map<string, DesiredFleet['volumes'][number]>();
  fleet.volumes.forEach((v, i) => {
    if (volumes.has(v.id)) problems.push(`volumes[${i}].id: ${v.id} appears twice`);
    volumes.set(v.id, v);
  });
  const machineIds = new Set<string>();
  const attachedTo = new Map<string, string>();
  fleet.machines.forEach((m, i) => {
    if (machineIds.has(m.id)) problems.push(`machines[${i}].id: ${m.id} appears twice`);
    machineIds.add(m.id);
    if (m.volumeId === null) return;
    const v = volumes.get(m.volumeId);
    if (!v) {
      problems.push(`machines[${i}].volumeId: ${m.volumeId} is not among the fleet's volumes`);
      return;
    }
    const other = attachedTo.get(m.volumeId);
    if (other) {
      problems.push(`machines[${i}].volumeId: ${m.volumeId} is already attached to ${other}`);
    }
    attachedTo.set(m.volumeId, m.id);
    if (v.platform !== m.platform) {
      problems.push(
        `machines[${i}].volumeId: ${m.volumeId} is a ${v.platform} volume, the machine is ${m.platform}`,
      );
    }
  });
  return problems;
}

/**
 * A digest of what the fleet asks the provider to build. The generation is left out (it moves
 * for changes outside the fleet) and so are registration tokens (one disappears when its
 * machine registers, which changes nothing to build): equal digests need no Pulumi run.
 */
export function fleetDigest(fleet: DesiredFleet): string {
  const canonical = {
    connectionId: fleet.connectionId,
    provider: fleet.provider,
    aws: fleet.aws,
    machines: [...fleet.machines]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((m) => ({
        id: m.id,
        platform: m.platform,
        state: m.state,
        volumeId: m.volumeId,
        zone: m.zone,
      })),
    volumes: [...fleet.volumes]
      .sort((a, b) => a.id.localeCompare(b.id))
      .map((v) => ({
        id: v.id,
        projectId: v.projectId,
        platform: v.platform,
        sizeGb: v.sizeGb,
        zone: v.zone,
      })),
  };
  return createHash('sha256').update(stableJson(canonical)).digest('hex');
}

function stableJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(stableJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => a.localeCompare(b));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${stableJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}
