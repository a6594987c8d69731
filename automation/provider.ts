// What the agent needs from a provider (local or aws) besides the shared stack machinery: the
// fleet program, an observation made outside Pulumi, and the removal of orphans (resources of
// the connection that the stack does not know).
import type { PulumiFn } from '@pulumi/pulumi/automation';
import { z } from 'zod';
import type {
  DesiredFleet,
  Observation,
  Provider,
  observedMachineSchema,
  observedVolumeSchema,
} from '../common/protocol';
import type { CapacityFailure, ConvergeOutcome } from './outcome';

export type ObservedMachine = z.infer<typeof observedMachineSchema>;
export type ObservedVolume = z.infer<typeof observedVolumeSchema>;

/** The stack outputs every fleet program returns: what the stack holds, by id. */
export const fleetOutputsSchema = z.object({
  machines: z
    .record(
      z.string(),
      z.object({
        providerId: z.string().nullish(),
        zone: z.string().nullish(),
        /** Local: BuildKit's port on 127.0.0.1. */
        port: z.number().nullish(),
        /** AWS: the power state the stack holds. */
        state: z.string().nullish(),
      }),
    )
    .default({}),
  volumes: z
    .record(
      z.string(),
      z.object({
        providerId: z.string().nullish(),
        zone: z.string().nullish(),
        /** AWS: the instance it is attached to. */
        attachedTo: z.string().nullish(),
      }),
    )
    .default({}),
});
export type FleetOutputs = z.infer<typeof fleetOutputsSchema>;

/**
 * The outputs of the last update (empty for a new stack). Unreadable outputs throw: orphan
 * removal must never mistake "unknown" for "nothing".
 */
export function parseFleetOutputs(outputs: Record<string, unknown>): FleetOutputs {
  const parsed = fleetOutputsSchema.safeParse(outputs);
  if (!parsed.success) {
    throw new Error(`the stack outputs are not a fleet: ${parsed.error.issues[0]?.message}`);
  }
  return parsed.data;
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
  current: FleetOutputs;
}

export interface FleetProvider {
  readonly kind: Provider;
  /** Environment the engine and its plugins need for this provider. */
  readonly engineEnv: Record<string, string>;
  /** Throws FleetSpecError when the fleet cannot be built. */
  program(fleet: DesiredFleet, ctx: ProgramContext): FleetProgram;
  /** Capacity failures among the errors of an update (e.g. no instance capacity in a zone). */
  capacityFailures(fleet: DesiredFleet, outcome: ConvergeOutcome): CapacityFailure[];
  /** What exists in the provider for this connection, seen without Pulumi. */
  observe(stack: FleetOutputs | null): Promise<Omit<Observation, 'observedAt'>>;
  /** Removes resources of the connection absent from the stack; returns their descriptions. */
  removeOrphans(stack: FleetOutputs): Promise<string[]>;
}
