// Planner inputs for tests: a connection, a ready builder of project prj_app00000, its volume,
// builds and builder requests, each with overrides.
import { connectionSettingsSchema, type ConnectionSettings } from '../../common/protocol';
import type {
  PlanBuild,
  PlanMachine,
  PlannerInput,
  PlanRequest,
  PlanVolume,
} from '../../control-plane/planner';

export const t0 = Date.parse('2026-01-01T00:00:00Z');
export const s = 1000;
export const amd = 'linux/amd64' as const;
export const arm = 'linux/arm64' as const;

export function settings(overrides: Partial<ConnectionSettings> = {}): ConnectionSettings {
  return connectionSettingsSchema.parse({ platforms: [amd], ...overrides });
}

export function ids() {
  let n = 0;
  return (kind: 'machine' | 'volume') =>
    `${kind === 'machine' ? 'mch' : 'vol'}_new${String(++n).padStart(8, '0')}`;
}

export function input(
  overrides: Partial<PlannerInput> & { settings?: Partial<ConnectionSettings> } = {},
): PlannerInput {
  const { settings: given, connection, ...rest } = overrides;
  return {
    now: t0,
    serviceStartedAt: t0 - 3600 * s,
    connection: {
      id: 'con_test0000',
      name: 'local',
      provider: 'local',
      settings: settings(given),
      zones: [],
      generation: 5,
      appliedGeneration: 5,
      agentConnected: true,
      leaseExpiresAt: t0 + 120 * s,
      lastApplyError: null,
      ...connection,
    },
    machines: [],
    volumes: [],
    builds: [],
    requests: [],
    capacityFailures: [],
    newId: ids(),
    ...rest,
  };
}

/** A registered machine serving project prj_app with BuildKit ready. */
export function machine(overrides: Partial<PlanMachine> = {}): PlanMachine {
  return {
    id: 'mch_ready000',
    platform: amd,
    zone: null,
    createdAt: t0 - 600 * s,
    projectId: 'prj_app00000',
    volumeId: 'vol_app00000',
    desiredState: 'running',
    status: 'ready',
    launchPath: 'cold',
    failure: null,
    startedAt: t0 - 600 * s,
    stoppedAt: null,
    idleSince: null,
    readyAt: t0 - 500 * s,
    removedGeneration: null,
    registeredAt: t0 - 550 * s,
    sessionAt: t0 - 5 * s,
    observedState: 'running',
    task: { kind: 'buildkit', generation: 2, projectId: 'prj_app00000', volumeId: 'vol_app00000' },
    caNotAfter: t0 + 30 * 86_400 * s,
    buildkit: { generation: 2, state: 'ready', error: null },
    ...overrides,
  };
}

export function volume(overrides: Partial<PlanVolume> = {}): PlanVolume {
  return {
    id: 'vol_app00000',
    projectId: 'prj_app00000',
    platform: amd,
    sizeGb: 50,
    zone: null,
    createdAt: t0 - 600 * s,
    observedState: 'in-use',
    observedAttachedTo: 'mch_ready000',
    ...overrides,
  };
}

export function build(id: string, overrides: Partial<PlanBuild> = {}): PlanBuild {
  return {
    id,
    projectId: 'prj_app00000',
    status: 'pending',
    deadline: t0 + 3600 * s,
    lastSeenAt: t0,
    ...overrides,
  };
}

export function request(buildId: string, overrides: Partial<PlanRequest> = {}): PlanRequest {
  return {
    buildId,
    platform: amd,
    projectId: 'prj_app00000',
    createdAt: t0,
    acquireDeadline: t0 + 300 * s,
    state: 'pending',
    reason: 'waiting for the planner',
    machineId: null,
    path: null,
    assignedAt: null,
    assignedGeneration: null,
    phases: { pickedUpAt: null, machineStartedAt: null, registeredAt: null, readyAt: null },
    ...overrides,
  };
}
