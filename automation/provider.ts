// What the agent needs from a provider (local or aws) besides the shared stack machinery: the
// fleet program, reading the stack's resources as machines and volumes, an observation made
// outside Pulumi, and the removal of orphans (resources of the connection the stack lacks).
import type { PulumiFn } from '@pulumi/pulumi/automation';
import type { z } from 'zod';
import type {
  DesiredFleet,
  Observation,
  Provider,
  observedMachineSchema,
  observedVolumeSchema,
} from '../common/protocol';
import type { CapacityFailure, ConvergeOutcome, StackResource } from './outcome';

export type ObservedMachine = z.infer<typeof observedMachineSchema>;
export type ObservedVolume = z.infer<typeof observedVolumeSchema>;

/** The machines and volumes the stack state holds, by Slipway id. */
export interface FleetInventory {
  machines: Record<string, { providerId: string; zone?: string }>;
  volumes: Record<string, { providerId: string; zone?: string }>;
}

export const emptyInventory = (): FleetInventory => ({ machines: {}, volumes: {} });

/** Sorts stack resources into machines and volumes by their resource type. */
export function inventoryOf(
  resources: StackResource[],
  types: { machine: string; volume: string },
): FleetInventory {
  const inventory = emptyInventory();
  for (const r of resources) {
    const zone =
      typeof r.outputs.availabilityZone === 'string' ? r.outputs.availabilityZone : undefined;
    const entry = { providerId: r.id, ...(zone ? { zone } : {}) };
    if (r.type === types.machine) inventory.machines[r.name] = entry;
    else if (r.type === types.volume) inventory.volumes[r.name] = entry;
  }
  return inventory;
}

export interface FleetProgram {
  program: PulumiFn;
  /** Machines the provider cannot build at all, reported without an update. */
  capacityFailures: CapacityFailure[];
}

export interface ProgramContext {
  /** The control plane's URL for machine-agents, from the sync answer. */
  controlPlaneUrl: string;
  /** What the stack holds now (zones chosen earlier are kept). */
  current: FleetInventory;
}

/**
 * A resource provider plugin the engine loads from a directory of this installation (Pulumi.yaml
 * `plugins.providers`), never from its plugin cache (a stack's own PULUMI_HOME) or PATH.
 */
export interface ProviderPlugin {
  name: string;
  /** The version the SDK asks for; any when absent. */
  version?: string;
  /** Holds the executable `pulumi-resource-<name>`. */
  dir: string;
  /** How to install it when it is missing. */
  install: string;
}

export interface FleetProvider {
  readonly kind: Provider;
  /** Environment the engine and its plugins need for this provider. */
  readonly engineEnv: Record<string, string>;
  readonly plugins: ProviderPlugin[];
  /** Throws FleetSpecError when the fleet cannot be built. */
  program(fleet: DesiredFleet, ctx: ProgramContext): FleetProgram;
  /** The stack's resources as machines and volumes. */
  inventory(resources: StackResource[]): FleetInventory;
  /** Capacity failures among the errors of an update (e.g. no instance capacity in a zone). */
  capacityFailures(fleet: DesiredFleet, outcome: ConvergeOutcome): CapacityFailure[];
  /** What exists in the provider for this connection, seen without Pulumi. */
  observe(stack: FleetInventory): Promise<Omit<Observation, 'observedAt'>>;
  /**
   * Removes resources of the connection that the stack does not hold; returns what it removed.
   * Only safe on an inventory read after an update that succeeded: a crashed update's resources
   * are adopted by the next update, not removed.
   */
  removeOrphans(stack: FleetInventory): Promise<string[]>;
}
