// The planner (DESIGN.md section 5): a pure function from one connection's settings, machines,
// volumes, builds, builder requests, capacity failures and the time, to what the fleet should
// be, which machine serves which request, each machine's task, every request's state with its
// reason, and when to look again. It is level-triggered: it decides from the current rows every
// time and never from having seen an event, so running it twice on the same input agrees.
import type {
  AcquirePath,
  ConnectionSettings,
  MachineStatus,
  Observation,
  Platform,
  Provider,
} from '../common/protocol';
import { buildHeartbeatTimeoutSeconds } from '../common/protocol';

export type DesiredState = 'running' | 'stopped' | 'deleted';
export type ObservedMachineState = Observation['machines'][number]['state'];
export type ObservedVolumeState = Observation['volumes'][number]['state'];
export type TaskKind = 'buildkit' | 'idle' | 'shutdown';
export type BuildkitState = 'stopped' | 'starting' | 'ready' | 'failed';

export interface PlanMachine {
  id: string;
  platform: Platform;
  zone: string | null;
  createdAt: number;
  projectId: string | null;
  volumeId: string | null;
  desiredState: DesiredState;
  status: MachineStatus;
  /** How the machine was last started for its project (hot never starts one). */
  launchPath: AcquirePath | null;
  /** Set when the machine failed or was lost; it is then on its way out. */
  failure: string | null;
  /** When the desired state last became running / stopped. */
  startedAt: number | null;
  stoppedAt: number | null;
  idleSince: number | null;
  readyAt: number | null;
  /** The fleet generation from which the machine is no longer in the desired fleet. */
  removedGeneration: number | null;
  registeredAt: number | null;
  /** The machine-agent's last contact (task poll or report). */
  sessionAt: number | null;
  observedState: ObservedMachineState | null;
  task: { kind: TaskKind; generation: number; projectId: string | null; volumeId: string | null };
  /** The task's CA expires then; null when the CA was destroyed or never made. */
  caNotAfter: number | null;
  buildkit: { generation: number; state: BuildkitState; error: string | null } | null;
}

export interface PlanVolume {
  id: string;
  projectId: string;
  platform: Platform;
  sizeGb: number;
  zone: string | null;
  createdAt: number;
  observedState: ObservedVolumeState | null;
  observedAttachedTo: string | null;
}

export interface PlanBuild {
  id: string;
  projectId: string;
  status: 'pending' | 'running';
  deadline: number;
  /** The CLI's last heartbeat or long-poll. */
  lastSeenAt: number;
}

export interface RequestPhases {
  pickedUpAt: number | null;
  machineStartedAt: number | null;
  registeredAt: number | null;
  readyAt: number | null;
}

export interface PlanRequest {
  buildId: string;
  platform: Platform;
  projectId: string;
  createdAt: number;
  acquireDeadline: number;
  state: 'pending' | 'ready';
  reason: string;
  machineId: string | null;
  path: AcquirePath | null;
  assignedAt: number | null;
  assignedGeneration: number | null;
  phases: RequestPhases;
}

export interface PlanCapacityFailure {
  machineId: string;
  platform: Platform;
  zone: string | null;
  reason: string;
  at: number;
}

export interface PlannerInput {
  now: number;
  /** When this control plane started: clocks waiting for others' reports start no earlier. */
  serviceStartedAt: number;
  connection: {
    id: string;
    name: string;
    provider: Provider;
    settings: ConnectionSettings;
    /** AWS: the zones of the connection's subnets, in order; empty for local. */
    zones: string[];
    generation: number;
    appliedGeneration: number;
    agentConnected: boolean;
    leaseExpiresAt: number | null;
    lastApplyError: string | null;
  };
  machines: PlanMachine[];
  volumes: PlanVolume[];
  builds: PlanBuild[];
  requests: PlanRequest[];
  /** Recent capacity failures reported by the agent, oldest first. */
  capacityFailures: PlanCapacityFailure[];
  newId(kind: 'machine' | 'volume'): string;
}

export interface PlannedMachine extends PlanMachine {
  created: boolean;
  /** The task the machine should have; `changed` means a new generation (and CA) is due. */
  desiredTask: {
    kind: TaskKind;
    reason: string;
    projectId: string | null;
    volumeId: string | null;
    changed: boolean;
  };
}

export interface PlannedVolume extends PlanVolume {
  created: boolean;
  status: 'creating' | 'available' | 'in-use' | 'deleting' | 'deleted';
}

export interface PlannedRequest extends Omit<PlanRequest, 'state'> {
  state: 'pending' | 'ready' | 'failed' | 'released';
  retryAfterMs: number | null;
  /** Assigned to its machine in this pass (the shell records the fleet generation). */
  newlyAssigned: boolean;
}

export interface PlannedBuild {
  id: string;
  status: 'pending' | 'running' | 'failed';
  error: string | null;
}

export interface PlannerOutput {
  machines: PlannedMachine[];
  volumes: PlannedVolume[];
  requests: PlannedRequest[];
  builds: PlannedBuild[];
  /** When something will change by the clock alone; null when nothing will. */
  nextWakeAt: number | null;
}

/** Backoff after a capacity failure: 5 s, doubling per recent failure, at most a minute. */
const capacityBackoffMs = (failures: number) => Math.min(60_000, 5_000 * 2 ** (failures - 1));
const capacityWindowMs = 10 * 60_000;
/** How long a CA must still be valid to accept one more build on its machine. */
const caMarginMs = 25 * 3600_000;
const pendingRetryMs = 1000;

interface Work extends PlannedMachine {
  /** The CA is gone or the task moves to another project: a buildkit task must be re-minted. */
  retireReason: string | null;
}

export function plan(input: PlannerInput): PlannerOutput {
  const { now, connection: conn } = input;
  const s = conn.settings;
  const ms = (seconds: number) => seconds * 1000;
  let nextWakeAt: number | null = null;
  const wakeAt = (t: number) => {
    if (t > now && (nextWakeAt === null || t < nextWakeAt)) nextWakeAt = t;
  };
  const nextGeneration = conn.generation + 1;

  const machines: Work[] = input.machines.map((m) => ({
    ...m,
    task: { ...m.task },
    buildkit: m.buildkit && { ...m.buildkit },
    created: false,
    retireReason: null,
    desiredTask: { kind: 'idle', reason: '', projectId: null, volumeId: null, changed: false },
  }));
  const volumes: PlannedVolume[] = input.volumes.map((v) => ({
    ...v,
    created: false,
    status: 'creating',
  }));
  const byId = new Map(machines.map((m) => [m.id, m]));
  const isLive = (m: Work) => m.failure === null && m.desiredState !== 'deleted';
  const isGone = (m: Work) =>
    m.observedState === null || m.observedState === 'missing' || m.observedState === 'terminated';
  /** Machines count against maxMachines in every state but deleted. */
  const occupying = () =>
    machines.filter(
      (m) =>
        !(
          m.desiredState === 'deleted' &&
          isGone(m) &&
          conn.appliedGeneration >= (m.removedGeneration ?? 0)
        ),
    ).length;
  /** Up and talking to us since it was last started. */
  const connected = (m: Work) =>
    m.registeredAt !== null && Math.max(m.sessionAt ?? 0, m.registeredAt) >= (m.startedAt ?? 0);
  const pastLifetime = (m: Work) => now >= m.createdAt + ms(s.maxMachineLifetimeSeconds);

  const retire = (m: Work, reason: string) => {
    m.desiredState = 'deleted';
    m.volumeId = null;
    m.removedGeneration = nextGeneration;
    m.retireReason = reason;
    m.idleSince = null;
  };
  const fail = (m: Work, reason: string, status: 'lost' | 'failed') => {
    retire(m, reason);
    m.failure = reason;
    m.status = status;
  };
  const start = (m: Work, path: AcquirePath) => {
    m.desiredState = 'running';
    m.startedAt = now;
    m.stoppedAt = null;
    m.launchPath = path;
  };
  const stop = (m: Work) => {
    m.desiredState = 'stopped';
    m.stoppedAt = now;
  };

  // 1. Machines that failed: capacity errors from the agent, then machines that went silent.
  for (const f of input.capacityFailures) {
    const m = byId.get(f.machineId);
    if (m && isLive(m) && f.at >= (m.startedAt ?? m.createdAt)) {
      fail(m, `the provider could not start it: ${f.reason}`, 'failed');
    }
  }
  for (const m of machines) {
    if (!isLive(m) || m.desiredState !== 'running') continue;
    if (connected(m)) {
      const last = Math.max(m.sessionAt ?? 0, m.registeredAt ?? 0, input.serviceStartedAt);
      const lostAt = last + ms(s.machineLostAfterSeconds);
      if (now >= lostAt) {
        fail(m, `no report from the machine for ${s.machineLostAfterSeconds} s`, 'lost');
      } else wakeAt(lostAt);
    } else {
      const since = Math.max(m.startedAt ?? m.createdAt, input.serviceStartedAt);
      const limit = s.acquireDeadlineSeconds + s.machineLostAfterSeconds;
      const giveUpAt = since + ms(limit);
      if (now >= giveUpAt) {
        fail(
          m,
          `the machine did not come up within ${limit} s of being started`,
          m.registeredAt === null ? 'failed' : 'lost',
        );
      } else wakeAt(giveUpAt);
    }
  }

  // 2. Builds whose CLI went away or whose deadline passed end as failed.
  const builds = new Map<string, PlannedBuild>();
  for (const b of input.builds) {
    const out: PlannedBuild = { id: b.id, status: b.status, error: null };
    const lapseAt =
      Math.max(b.lastSeenAt, input.serviceStartedAt) + ms(buildHeartbeatTimeoutSeconds);
    if (now >= b.deadline) {
      out.status = 'failed';
      out.error = `the build passed its deadline (${new Date(b.deadline).toISOString()})`;
    } else if (now >= lapseAt) {
      out.status = 'failed';
      out.error = `the CLI sent no heartbeat for ${buildHeartbeatTimeoutSeconds} s`;
    } else {
      wakeAt(b.deadline);
      wakeAt(lapseAt);
    }
    builds.set(b.id, out);
  }

  const requests: PlannedRequest[] = input.requests.map((r) => ({
    ...r,
    phases: { ...r.phases },
    retryAfterMs: null,
    newlyAssigned: false,
  }));
  /** A failed build frees its builders at once (its failed request keeps its reason). */
  const failBuild = (buildId: string, error: string) => {
    const b = builds.get(buildId);
    if (b && b.status !== 'failed') {
      b.status = 'failed';
      b.error = error;
    }
    for (const r of requests) {
      if (r.buildId === buildId && (r.state === 'pending' || r.state === 'ready')) {
        r.state = 'released';
        r.reason = `the build ended: ${error}`;
        r.retryAfterMs = null;
      }
    }
  };
  for (const r of requests) {
    const b = builds.get(r.buildId);
    if (!b) {
      r.state = 'released';
      r.reason = 'the build has ended';
    } else if (b.status === 'failed') failBuild(b.id, b.error!);
  }

  /** Ready to serve builds now, from the rows as they were (before this pass's task changes). */
  const servingNow = (m: Work) =>
    isLive(m) &&
    m.desiredState === 'running' &&
    connected(m) &&
    m.task.kind === 'buildkit' &&
    m.caNotAfter !== null &&
    m.buildkit !== null &&
    m.buildkit.generation === m.task.generation &&
    m.buildkit.state === 'ready';

  // 3. Ready requests whose machine went away cannot be served any more.
  for (const r of requests) {
    if (r.state !== 'ready') continue;
    const m = r.machineId ? byId.get(r.machineId) : undefined;
    if (!m || !servingNow(m)) {
      r.state = 'failed';
      r.reason = `builder ${r.machineId ?? ''} went away: ${m?.failure ?? 'it is no longer ready'}`;
      failBuild(r.buildId, `the ${r.platform} builder: ${r.reason}`);
    }
  }

  // 4. Pending requests: deadline, platform, then a machine for each project and platform.
  const pending = requests
    .filter((r) => r.state === 'pending')
    .sort((a, b) => a.createdAt - b.createdAt || a.buildId.localeCompare(b.buildId));
  for (const r of pending) {
    if (builds.get(r.buildId)?.status === 'failed') {
      r.state = 'released';
      r.reason = 'the build has ended';
    } else if (!s.platforms.includes(r.platform)) {
      r.state = 'failed';
      r.reason = `connection ${conn.name} does not build for ${r.platform} (it builds for ${s.platforms.join(', ')})`;
    } else if (now >= r.acquireDeadline) {
      r.state = 'failed';
      r.reason = `no builder within the acquire deadline of ${Math.round((r.acquireDeadline - r.createdAt) / 1000)} s; last: ${r.reason}`;
    } else {
      wakeAt(r.acquireDeadline);
      continue;
    }
    if (r.state === 'failed') failBuild(r.buildId, `the ${r.platform} builder: ${r.reason}`);
  }

  const volumeOf = (projectId: string, platform: Platform) =>
    volumes.find((v) => v.projectId === projectId && v.platform === platform);
  const newVolume = (projectId: string, platform: Platform, zone: string | null) => {
    const v: PlannedVolume = {
      id: input.newId('volume'),
      projectId,
      platform,
      sizeGb: s.volumeSizeGb,
      zone,
      createdAt: now,
      observedState: null,
      observedAttachedTo: null,
      created: true,
      status: 'creating',
    };
    volumes.push(v);
    return v;
  };
  const newMachine = (platform: Platform, zone: string | null, state: 'running' | 'stopped') => {
    const m: Work = {
      id: input.newId('machine'),
      platform,
      zone,
      createdAt: now,
      projectId: null,
      volumeId: null,
      desiredState: state,
      status: 'creating',
      launchPath: null,
      failure: null,
      startedAt: state === 'running' ? now : null,
      stoppedAt: state === 'stopped' ? now : null,
      idleSince: null,
      readyAt: null,
      removedGeneration: null,
      registeredAt: null,
      sessionAt: null,
      observedState: null,
      task: { kind: 'idle', generation: 0, projectId: null, volumeId: null },
      caNotAfter: null,
      buildkit: null,
      created: true,
      retireReason: null,
      desiredTask: { kind: 'idle', reason: '', projectId: null, volumeId: null, changed: false },
    };
    machines.push(m);
    byId.set(m.id, m);
    return m;
  };

  const recentFailures = input.capacityFailures.filter((f) => f.at > now - capacityWindowMs);
  /** The capacity backoff in force for a platform in a zone, if any. */
  const backoff = (platform: Platform, zone: string | null) => {
    const here = recentFailures.filter((f) => f.platform === platform && f.zone === zone);
    const last = here[here.length - 1];
    if (!last) return undefined;
    const until = last.at + capacityBackoffMs(here.length);
    if (until <= now) return undefined;
    return { until, reason: last.reason };
  };
  /** A zone for a new machine: not backed off, fewest machines; null on providers without zones. */
  const chooseZone = (platform: Platform): string | null => {
    if (conn.zones.length === 0) return null;
    const load = (z: string) => machines.filter((m) => isLive(m) && m.zone === z).length;
    const open = conn.zones.filter((z) => !backoff(platform, z));
    const pool = open.length > 0 ? open : conn.zones;
    return [...pool].sort((a, b) => load(a) - load(b) || pool.indexOf(a) - pool.indexOf(b))[0]!;
  };
  const caUsable = (m: Work) => m.caNotAfter === null || m.caNotAfter - now > caMarginMs;

  /** The live machine that serves a project and platform, if any. */
  const builderOf = (projectId: string, platform: Platform) =>
    machines.find((m) => isLive(m) && m.projectId === projectId && m.platform === platform);
  const standbys = (platform: Platform) =>
    machines.filter((m) => isLive(m) && m.projectId === null && m.platform === platform);
  /** A machine serves a build while a ready or pending request of a live build names it. */
  const busy = {
    has: (id: string) =>
      requests.some((r) => r.machineId === id && (r.state === 'ready' || r.state === 'pending')),
  };
  /** Machines on their way out that still count against the limit: each frees a slot soon. */
  let roomBeingMade =
    machines.filter((m) => m.desiredState === 'deleted').length - (machines.length - occupying());

  type Outcome = { machine: Work; path: AcquirePath } | { reason: string; retryAt?: number };
  const ensureBuilder = (projectId: string, platform: Platform): Outcome => {
    let m = builderOf(projectId, platform);
    if (m && (pastLifetime(m) || !caUsable(m)) && !busy.has(m.id)) {
      retire(m, 'replaced: older than the maximum machine lifetime');
      m = undefined;
    }
    if (m) {
      if (m.desiredState === 'stopped') start(m, 'warm');
      return { machine: m, path: servingNow(m) ? 'hot' : (m.launchPath ?? 'warm') };
    }
    const volume = volumeOf(projectId, platform);
    const candidates = standbys(platform)
      .filter(
        (c) => !pastLifetime(c) && (!volume || volume.zone === null || c.zone === volume.zone),
      )
      .sort(
        (a, b) =>
          standbyRank(a) - standbyRank(b) || b.createdAt - a.createdAt || a.id.localeCompare(b.id),
      );
    const standby = candidates[0];
    if (standby) {
      standby.projectId = projectId;
      standby.volumeId = (volume ?? newVolume(projectId, platform, standby.zone)).id;
      standby.idleSince = null;
      // A running standby keeps running (and its session); a stopped one is started.
      if (standby.desiredState === 'stopped') start(standby, 'warm');
      else standby.launchPath = 'warm';
      return { machine: standby, path: 'warm' };
    }
    const zone = volume ? volume.zone : chooseZone(platform);
    const blocked = backoff(platform, zone);
    if (blocked) {
      return {
        reason: `no ${platform} capacity in connection ${conn.name}${zone ? ` (zone ${zone})` : ''}: ${blocked.reason}; trying again at ${new Date(blocked.until).toISOString()}`,
        retryAt: blocked.until,
      };
    }
    if (occupying() < s.maxMachines) {
      const fresh = newMachine(platform, zone, 'running');
      fresh.projectId = projectId;
      fresh.volumeId = (volume ?? newVolume(projectId, platform, zone)).id;
      fresh.launchPath = 'cold';
      return { machine: fresh, path: 'cold' };
    }
    const limit = `connection ${conn.name} is at its limit of ${s.maxMachines} machines`;
    if (roomBeingMade > 0) {
      roomBeingMade--;
      return { reason: `${limit}; waiting for an idle machine to be deleted to make room` };
    }
    const victim = machines
      .filter(
        (v) =>
          isLive(v) && v.desiredState === 'stopped' && !busy.has(v.id) && v.projectId !== projectId,
      )
      .sort(
        (a, b) =>
          (a.stoppedAt ?? a.createdAt) - (b.stoppedAt ?? b.createdAt) || a.id.localeCompare(b.id),
      )[0];
    if (victim) {
      retire(victim, `deleted to make room for project ${projectId}`);
      return { reason: `${limit}; deleting idle stopped machine ${victim.id} to make room` };
    }
    return { reason: `${limit}, none of them idle and stopped; waiting for one to become free` };
  };
  const standbyRank = (m: Work) => (m.desiredState === 'running' ? (connected(m) ? 0 : 1) : 2);

  const outcomes = new Map<string, Outcome>();
  for (const r of pending) {
    if (r.state !== 'pending') continue;
    const key = `${r.projectId}\u0000${r.platform}`;
    let outcome = outcomes.get(key);
    if (!outcome) {
      outcome = ensureBuilder(r.projectId, r.platform);
      outcomes.set(key, outcome);
    }
    if ('machine' in outcome) {
      if (r.machineId !== outcome.machine.id) {
        r.machineId = outcome.machine.id;
        r.path = outcome.path;
        r.assignedAt = now;
        r.newlyAssigned = true;
        r.phases = { pickedUpAt: null, machineStartedAt: null, registeredAt: null, readyAt: null };
      }
    } else {
      r.machineId = null;
      r.path = null;
      r.reason = outcome.reason;
      if (outcome.retryAt) wakeAt(outcome.retryAt);
      r.retryAfterMs = outcome.retryAt
        ? Math.max(pendingRetryMs, outcome.retryAt - now)
        : pendingRetryMs;
    }
  }

  // 5. Idle machines stop after the idle timeout and are deleted after a longer idle period or
  // past their lifetime; their cache volumes stay with the project.
  for (const m of machines) {
    if (!isLive(m) || m.created) continue;
    if (busy.has(m.id)) {
      m.idleSince = null;
      continue;
    }
    m.idleSince ??= now;
    const lifetimeEnd = m.createdAt + ms(s.maxMachineLifetimeSeconds);
    if (m.projectId === null) {
      if (pastLifetime(m)) retire(m, 'standby older than the maximum machine lifetime');
      else if (!s.platforms.includes(m.platform))
        retire(m, `the connection no longer builds for ${m.platform}`);
      else wakeAt(lifetimeEnd);
      continue;
    }
    if (pastLifetime(m) || !caUsable(m)) {
      retire(m, 'idle and older than the maximum machine lifetime');
    } else if (m.desiredState === 'running') {
      const stopAt = m.idleSince + ms(s.idleTimeoutSeconds);
      if (now >= stopAt) stop(m);
      else wakeAt(stopAt);
      wakeAt(lifetimeEnd);
    } else {
      const deleteAt = (m.stoppedAt ?? m.idleSince) + ms(s.deleteAfterIdleSeconds);
      if (now >= deleteAt) retire(m, `stopped and idle for ${s.deleteAfterIdleSeconds} s`);
      else wakeAt(deleteAt);
      wakeAt(lifetimeEnd);
    }
  }

  // 6. Warm pools: unassigned machines kept running or stopped per platform.
  for (const platform of s.platforms) {
    const want = s.warmPool[platform] ?? { running: 0, stopped: 0 };
    const pool = standbys(platform).sort(
      (a, b) => a.createdAt - b.createdAt || a.id.localeCompare(b.id),
    );
    const running = pool.filter((m) => m.desiredState === 'running');
    const stopped = pool.filter((m) => m.desiredState === 'stopped');
    while (running.length > want.running) {
      const m = running.pop()!;
      if (stopped.length < want.stopped) {
        stop(m);
        stopped.push(m);
      } else retire(m, 'more standby machines than the warm pool asks for');
    }
    while (running.length < want.running) {
      const m = stopped.pop();
      if (m) start(m, 'warm');
      else {
        const zone = chooseZone(platform);
        if (occupying() >= s.maxMachines || backoff(platform, zone)) break;
        running.push(newMachine(platform, zone, 'running'));
        continue;
      }
      running.push(m);
    }
    while (stopped.length > want.stopped)
      retire(stopped.pop()!, 'more stopped standby machines than the warm pool asks for');
    while (stopped.length < want.stopped) {
      const zone = chooseZone(platform);
      if (occupying() >= s.maxMachines || backoff(platform, zone)) break;
      stopped.push(newMachine(platform, zone, 'stopped'));
    }
  }
  for (const f of recentFailures) wakeAt(f.at + capacityBackoffMs(1));

  // 7. Volumes as users see them.
  for (const v of volumes) {
    v.status =
      v.observedState === null || v.observedState === 'missing' || v.observedState === 'creating'
        ? 'creating'
        : v.observedState;
  }
  const volumeById = new Map(volumes.map((v) => [v.id, v]));
  const volumeReady = (m: Work, v: PlannedVolume) => {
    if (conn.provider === 'aws')
      return v.observedState === 'in-use' && v.observedAttachedTo === m.id;
    return (
      (v.observedState === 'available' || v.observedState === 'in-use') &&
      (v.observedAttachedTo === null || v.observedAttachedTo === m.id)
    );
  };

  // 8. Tasks, then statuses.
  for (const m of machines) {
    const t = desiredTask(m);
    const sameTask =
      t.kind === m.task.kind &&
      (t.kind !== 'buildkit' ||
        (m.task.projectId === t.projectId &&
          m.task.volumeId === t.volumeId &&
          m.caNotAfter !== null));
    m.desiredTask = { ...t, changed: !sameTask };
  }
  function desiredTask(m: Work): Omit<PlannedMachine['desiredTask'], 'changed'> {
    const idle = (reason: string) => ({
      kind: 'idle' as const,
      reason,
      projectId: null,
      volumeId: null,
    });
    if (m.failure !== null)
      return { kind: 'shutdown', reason: m.failure, projectId: null, volumeId: null };
    if (m.desiredState === 'deleted') {
      return {
        kind: 'shutdown',
        reason: `this machine is being deleted: ${m.retireReason ?? 'no longer in the fleet'}`,
        projectId: null,
        volumeId: null,
      };
    }
    if (m.desiredState === 'stopped') return idle('this machine is being stopped');
    if (m.registeredAt === null) return idle('waiting for the machine to register');
    if (m.projectId === null || m.volumeId === null) return idle('standby: waiting for a project');
    const v = volumeById.get(m.volumeId);
    if (!v || !volumeReady(m, v)) {
      return idle(
        `waiting for cache volume ${m.volumeId} to be ${v && v.status !== 'creating' ? 'attached to this machine' : 'created'}`,
      );
    }
    return {
      kind: 'buildkit',
      reason: `BuildKit for project ${m.projectId}`,
      projectId: m.projectId,
      volumeId: m.volumeId,
    };
  }
  const readyAfterPass = (m: Work) =>
    servingNow(m) && !m.desiredTask.changed && m.desiredTask.kind === 'buildkit';
  for (const m of machines) {
    const before = m.status;
    if (m.desiredState === 'deleted') {
      if (isGone(m) && conn.appliedGeneration >= (m.removedGeneration ?? 0)) m.status = 'deleted';
      else if (m.failure === null) m.status = 'deleting';
    } else if (m.desiredState === 'stopped') {
      m.status = m.observedState === 'stopped' ? 'stopped' : isGone(m) ? 'creating' : 'stopping';
    } else if (!connected(m)) {
      m.status = isGone(m) ? 'creating' : 'booting';
    } else if (m.desiredTask.kind === 'buildkit') {
      m.status = readyAfterPass(m) ? 'ready' : 'starting';
    } else {
      m.status = 'idle';
    }
    if (m.status === 'ready' && before !== 'ready') m.readyAt = now;
  }

  // 9. Request states and reasons, from the machines as they now are.
  const agentNote = () =>
    !conn.agentConnected
      ? `; no agent is connected to connection ${conn.name}`
      : conn.lastApplyError
        ? `; the agent's last apply failed: ${conn.lastApplyError}`
        : '';
  const waitingOn = (m: Work): string => {
    const what = m.launchPath === 'cold' ? `new machine ${m.id}` : `machine ${m.id}`;
    switch (m.status) {
      case 'creating':
        return `${what} is being created by the agent of connection ${conn.name}${agentNote()}`;
      case 'booting':
        return `${what} is booting (${m.observedState ?? 'not yet observed'})${agentNote()}`;
      case 'idle':
        return `${what} is ${m.desiredTask.reason}`;
      case 'starting':
        return m.buildkit?.state === 'failed' &&
          m.buildkit.generation === m.task.generation &&
          !m.desiredTask.changed
          ? `BuildKit failed on ${what}: ${m.buildkit.error ?? 'no detail'}; waiting for it to recover`
          : `starting BuildKit on ${what}`;
      default:
        return `${what} is ${m.status}`;
    }
  };
  for (const r of requests) {
    if (r.state !== 'pending' || !r.machineId) continue;
    const m = byId.get(r.machineId)!;
    if (m.status === 'ready') {
      r.state = 'ready';
      r.reason = `ready on machine ${m.id}`;
      r.retryAfterMs = null;
      r.phases.readyAt = now;
      continue;
    }
    r.reason = waitingOn(m);
    r.retryAfterMs = pendingRetryMs;
    if (r.phases.registeredAt === null && connected(m)) r.phases.registeredAt = now;
  }
  // The agent reports the update that started a request's machine once the whole update has
  // finished, often after the machine registered and BuildKit got ready: the milestone is
  // recorded when the report comes, ready or not, and never later than the milestones that
  // cannot have come before it. A hot request's machine was not started for it.
  for (const r of requests) {
    if ((r.state !== 'pending' && r.state !== 'ready') || !r.machineId || r.path === 'hot')
      continue;
    if (r.phases.machineStartedAt !== null || r.assignedGeneration === null) continue;
    const m = byId.get(r.machineId);
    if (!m || isGone(m) || conn.appliedGeneration < r.assignedGeneration) continue;
    r.phases.machineStartedAt = Math.min(
      now,
      r.phases.registeredAt ?? now,
      r.phases.readyAt ?? now,
    );
  }
  if (!conn.agentConnected && conn.leaseExpiresAt !== null) wakeAt(conn.leaseExpiresAt);

  // 10. A build runs once every builder is ready; a failed builder fails it and frees the rest.
  for (const b of builds.values()) {
    const own = requests.filter((r) => r.buildId === b.id);
    const failed = own.find((r) => r.state === 'failed');
    if (failed) failBuild(b.id, `the ${failed.platform} builder: ${failed.reason}`);
    if (b.status !== 'failed' && own.length > 0 && own.every((r) => r.state === 'ready')) {
      b.status = 'running';
    }
  }

  return {
    machines: machines.map((m) => {
      const out: Partial<Work> = { ...m };
      delete out.retireReason;
      return out as PlannedMachine;
    }),
    volumes,
    requests,
    builds: [...builds.values()],
    nextWakeAt,
  };
}
