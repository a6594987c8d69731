// The planner on its own: the paths (hot, warm, cold), idle and lifetime transitions, limits,
// capacity failures, lost machines and deadlines as examples, and the invariants of DESIGN.md
// section 5 as properties over arbitrary fleets.
import test from 'ava';
import fc from 'fast-check';
import { buildHeartbeatTimeoutSeconds, platforms, type Platform } from '../common/protocol';
import {
  plan,
  type PlanBuild,
  type PlanMachine,
  type PlannerInput,
  type PlannerOutput,
  type PlanRequest,
  type PlanVolume,
} from '../control-plane/planner';
import { amd, arm, build, ids, input, machine, request, s, t0, volume } from './helpers/planner';

const req0 = (out: PlannerOutput) => out.requests[0]!;
const byId = (out: PlannerOutput, id: string) => out.machines.find((m) => m.id === id)!;

test('hot path: a ready builder of the project answers at once, shared by several builds', (t) => {
  const out = plan(
    input({
      machines: [machine()],
      volumes: [volume()],
      builds: [build('bld_a0000000'), build('bld_b0000000')],
      requests: [request('bld_a0000000'), request('bld_b0000000')],
    }),
  );
  for (const r of out.requests) {
    t.is(r.state, 'ready');
    t.is(r.path, 'hot');
    t.is(r.machineId, 'mch_ready000');
  }
  t.deepEqual(
    out.builds.map((b) => b.status),
    ['running', 'running'],
  );
  t.false(byId(out, 'mch_ready000').desiredTask.changed);
  t.is(out.machines.length, 1);
});

test('warm path: the project stopped machine is started again with a new task coming', (t) => {
  const out = plan(
    input({
      machines: [
        machine({
          desiredState: 'stopped',
          status: 'stopped',
          stoppedAt: t0 - 100 * s,
          idleSince: t0 - 800 * s,
          observedState: 'stopped',
          task: { kind: 'idle', generation: 3, projectId: null, volumeId: null },
          caNotAfter: null,
        }),
      ],
      volumes: [volume()],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000')],
    }),
  );
  const m = byId(out, 'mch_ready000');
  t.is(m.desiredState, 'running');
  t.is(m.startedAt, t0);
  t.is(m.status, 'booting');
  t.is(req0(out).state, 'pending');
  t.is(req0(out).path, 'warm');
  t.regex(req0(out).reason, /mch_ready000 is booting/);
});

test('warm path: an unassigned standby is given the project and a new volume', (t) => {
  const standby = machine({
    id: 'mch_standby0',
    projectId: null,
    volumeId: null,
    status: 'idle',
    task: { kind: 'idle', generation: 1, projectId: null, volumeId: null },
    caNotAfter: null,
    buildkit: null,
  });
  const out = plan(
    input({
      settings: { warmPool: { [amd]: { running: 1, stopped: 0 } } },
      machines: [standby],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000')],
    }),
  );
  const m = byId(out, 'mch_standby0');
  t.is(m.projectId, 'prj_app00000');
  const v = out.volumes.find((x) => x.id === m.volumeId)!;
  t.true(v.created);
  t.is(v.projectId, 'prj_app00000');
  t.is(req0(out).path, 'warm');
  // The pool is refilled with a new standby.
  const fresh = out.machines.filter((x) => x.created);
  t.is(fresh.length, 1);
  t.is(fresh[0]!.projectId, null);
  t.is(fresh[0]!.desiredState, 'running');
});

test('cold path: a new machine and, for a new project, a new volume', (t) => {
  const out = plan(input({ builds: [build('bld_a0000000')], requests: [request('bld_a0000000')] }));
  t.is(out.machines.length, 1);
  t.is(out.volumes.length, 1);
  const m = out.machines[0]!;
  t.true(m.created);
  t.is(m.volumeId, out.volumes[0]!.id);
  t.is(m.status, 'creating');
  t.is(req0(out).state, 'pending');
  t.is(req0(out).path, 'cold');
  t.true(req0(out).newlyAssigned);
  t.regex(req0(out).reason, /being created by the agent/);
});

test('cold path keeps the project volume when its machine was deleted', (t) => {
  const out = plan(
    input({
      volumes: [volume({ observedState: 'available', observedAttachedTo: null })],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000')],
    }),
  );
  t.is(out.volumes.length, 1);
  t.is(out.machines[0]!.volumeId, 'vol_app00000');
});

test('the BuildKit task waits for the volume, then is handed out', (t) => {
  const fresh = machine({
    id: 'mch_fresh000',
    status: 'booting',
    task: { kind: 'idle', generation: 1, projectId: null, volumeId: null },
    caNotAfter: null,
    buildkit: null,
    registeredAt: t0 - 1 * s,
    sessionAt: t0 - 1 * s,
  });
  const waiting = plan(
    input({
      machines: [fresh],
      volumes: [volume({ observedState: 'creating', observedAttachedTo: null })],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000', { machineId: 'mch_fresh000', path: 'cold' })],
    }),
  );
  t.is(byId(waiting, 'mch_fresh000').desiredTask.kind, 'idle');
  t.regex(req0(waiting).reason, /waiting for cache volume vol_app00000 to be created/);
  const attached = plan(
    input({
      machines: [fresh],
      volumes: [volume({ observedAttachedTo: 'mch_fresh000' })],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000', { machineId: 'mch_fresh000', path: 'cold' })],
    }),
  );
  const m = byId(attached, 'mch_fresh000');
  t.is(m.desiredTask.kind, 'buildkit');
  t.true(m.desiredTask.changed);
  t.is(m.status, 'starting');
  t.regex(req0(attached).reason, /starting BuildKit/);
});

test('on AWS the volume must be observed attached to the machine itself', (t) => {
  const fresh = machine({
    task: { kind: 'idle', generation: 1, projectId: null, volumeId: null },
    caNotAfter: null,
    buildkit: null,
  });
  const out = plan(
    input({
      connection: { ...input().connection, provider: 'aws', zones: ['eu-west-1a'] },
      machines: [fresh],
      volumes: [volume({ observedState: 'available', observedAttachedTo: null })],
    }),
  );
  t.is(byId(out, 'mch_ready000').desiredTask.kind, 'idle');
  t.regex(byId(out, 'mch_ready000').desiredTask.reason, /attached to this machine/);
});

test('idle builders stop after the idle timeout and are deleted after the longer idle period', (t) => {
  const idle = machine({ idleSince: t0 - 601 * s });
  const stopped = plan(input({ machines: [idle], volumes: [volume()] }));
  const m = byId(stopped, 'mch_ready000');
  t.is(m.desiredState, 'stopped');
  t.is(m.projectId, 'prj_app00000');
  t.is(m.volumeId, 'vol_app00000', 'a stopped builder keeps its volume');
  t.is(m.desiredTask.kind, 'idle');
  t.true(m.desiredTask.changed, 'the CA goes with the task');

  const waiting = plan(
    input({ machines: [machine({ idleSince: t0 - 100 * s })], volumes: [volume()] }),
  );
  t.is(byId(waiting, 'mch_ready000').desiredState, 'running');
  t.true(waiting.nextWakeAt! <= t0 + 500 * s, 'the planner looks again by the idle timeout');

  const old = machine({
    desiredState: 'stopped',
    stoppedAt: t0 - 7 * 86_400 * s,
    idleSince: t0 - 7 * 86_400 * s,
    observedState: 'stopped',
  });
  const deleted = plan(input({ machines: [old], volumes: [volume()] }));
  const d = byId(deleted, 'mch_ready000');
  t.is(d.desiredState, 'deleted');
  t.is(d.volumeId, null);
  t.is(deleted.volumes.length, 1, 'the cache volume stays with the project');
  t.is(d.desiredTask.kind, 'shutdown');
});

test('a machine past its lifetime is replaced when idle, not while busy', (t) => {
  const old = machine({ createdAt: t0 - 15 * 86_400 * s });
  const busy = plan(
    input({
      machines: [old],
      volumes: [volume()],
      builds: [build('bld_a0000000', { status: 'running' })],
      requests: [
        request('bld_a0000000', { state: 'ready', machineId: 'mch_ready000', path: 'hot' }),
      ],
    }),
  );
  t.is(byId(busy, 'mch_ready000').desiredState, 'running');
  const idle = plan(input({ machines: [old], volumes: [volume()] }));
  t.is(byId(idle, 'mch_ready000').desiredState, 'deleted');
});

test('at the machine limit an idle stopped machine of another project makes room', (t) => {
  const other = machine({
    id: 'mch_other000',
    projectId: 'prj_other000',
    volumeId: 'vol_other000',
    desiredState: 'stopped',
    observedState: 'stopped',
    stoppedAt: t0 - 60 * s,
    idleSince: t0 - 700 * s,
    task: { kind: 'idle', generation: 3, projectId: null, volumeId: null },
    caNotAfter: null,
  });
  const out = plan(
    input({
      settings: { maxMachines: 1 },
      machines: [other],
      volumes: [
        volume({
          id: 'vol_other000',
          projectId: 'prj_other000',
          observedState: 'in-use',
          observedAttachedTo: 'mch_other000',
        }),
      ],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000')],
    }),
  );
  t.is(byId(out, 'mch_other000').desiredState, 'deleted');
  t.is(out.machines.length, 1, 'no new machine until the old one is gone');
  t.is(req0(out).state, 'pending');
  t.regex(req0(out).reason, /limit of 1 machines; deleting idle stopped machine mch_other000/);

  // Once it is gone (applied and no longer observed), the new builder is created.
  const gone = {
    ...byId(out, 'mch_other000'),
    observedState: 'missing' as const,
    status: 'deleting' as const,
  };
  const next = plan(
    input({
      connection: { ...input().connection, generation: 6, appliedGeneration: 6 },
      settings: { maxMachines: 1 },
      machines: [gone],
      volumes: [
        volume({
          id: 'vol_other000',
          projectId: 'prj_other000',
          observedState: 'available',
          observedAttachedTo: null,
        }),
      ],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000', { reason: req0(out).reason })],
    }),
  );
  t.is(byId(next, 'mch_other000').status, 'deleted');
  t.is(next.machines.filter((m) => m.created).length, 1);
  t.is(req0(next).path, 'cold');
});

test('at the machine limit with every machine busy, the request waits with a reason', (t) => {
  const out = plan(
    input({
      settings: { maxMachines: 1 },
      machines: [machine({ projectId: 'prj_other000', volumeId: 'vol_other000' })],
      volumes: [volume({ id: 'vol_other000', projectId: 'prj_other000' })],
      builds: [
        build('bld_a0000000'),
        build('bld_b0000000', { projectId: 'prj_other000', status: 'running' }),
      ],
      requests: [
        request('bld_a0000000'),
        request('bld_b0000000', {
          projectId: 'prj_other000',
          state: 'ready',
          machineId: 'mch_ready000',
          path: 'hot',
        }),
      ],
    }),
  );
  const r = out.requests.find((x) => x.buildId === 'bld_a0000000')!;
  t.is(r.state, 'pending');
  t.regex(r.reason, /limit of 1 machines, none of them idle and stopped/);
  t.is(out.machines.length, 1);
});

test('a capacity failure fails the machine and its request waits with the provider reason', (t) => {
  const creating = machine({
    id: 'mch_cap00000',
    status: 'creating',
    registeredAt: null,
    sessionAt: null,
    observedState: 'missing',
    task: { kind: 'idle', generation: 1, projectId: null, volumeId: null },
    caNotAfter: null,
    buildkit: null,
    startedAt: t0 - 20 * s,
    createdAt: t0 - 20 * s,
  });
  const out = plan(
    input({
      machines: [creating],
      volumes: [volume({ observedState: 'available', observedAttachedTo: null })],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000', { machineId: 'mch_cap00000', path: 'cold' })],
      capacityFailures: [
        {
          machineId: 'mch_cap00000',
          platform: amd,
          zone: null,
          reason: 'InsufficientInstanceCapacity',
          at: t0 - 1 * s,
        },
      ],
    }),
  );
  const m = byId(out, 'mch_cap00000');
  t.is(m.status, 'failed');
  t.is(m.desiredState, 'deleted');
  t.is(req0(out).state, 'pending');
  t.regex(
    req0(out).reason,
    /no linux\/amd64 capacity in connection local: InsufficientInstanceCapacity/,
  );
  t.is(out.machines.length, 1, 'no new machine during the backoff');
  t.truthy(out.nextWakeAt);
});

test('a capacity failure in one zone fails over to another for a new project', (t) => {
  const out = plan(
    input({
      connection: { ...input().connection, provider: 'aws', zones: ['eu-west-1a', 'eu-west-1b'] },
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000')],
      capacityFailures: [
        {
          machineId: 'mch_gone0000',
          platform: amd,
          zone: 'eu-west-1a',
          reason: 'no capacity',
          at: t0 - 1 * s,
        },
      ],
    }),
  );
  t.is(out.machines[0]!.zone, 'eu-west-1b');
  t.is(out.volumes[0]!.zone, 'eu-west-1b');
});

test('a silent machine is lost, its CA destroyed, and its pending request fails over', (t) => {
  const silent = machine({
    sessionAt: t0 - 91 * s,
    registeredAt: t0 - 500 * s,
    buildkit: { generation: 2, state: 'starting', error: null },
  });
  const out = plan(
    input({
      machines: [silent],
      volumes: [volume()],
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000', { machineId: 'mch_ready000', path: 'cold' })],
    }),
  );
  const m = byId(out, 'mch_ready000');
  t.is(m.status, 'lost');
  t.is(m.desiredTask.kind, 'shutdown');
  t.true(m.desiredTask.changed);
  const replacement = out.machines.find((x) => x.created)!;
  t.is(req0(out).machineId, replacement.id);
  t.is(replacement.volumeId, 'vol_app00000', 'the volume moves to the replacement');
});

test('a ready build whose machine is lost fails', (t) => {
  const out = plan(
    input({
      machines: [machine({ sessionAt: t0 - 200 * s })],
      volumes: [volume()],
      builds: [build('bld_a0000000', { status: 'running' })],
      requests: [
        request('bld_a0000000', { state: 'ready', machineId: 'mch_ready000', path: 'hot' }),
      ],
    }),
  );
  t.is(req0(out).state, 'failed');
  t.is(out.builds[0]!.status, 'failed');
  t.regex(out.builds[0]!.error!, /went away/);
});

test('a request past the acquire deadline fails with its last reason', (t) => {
  const out = plan(
    input({
      now: t0 + 301 * s,
      builds: [build('bld_a0000000', { lastSeenAt: t0 + 300 * s })],
      requests: [request('bld_a0000000', { reason: 'machine mch_x is booting' })],
    }),
  );
  t.is(req0(out).state, 'failed');
  t.regex(req0(out).reason, /acquire deadline of 300 s; last: machine mch_x is booting/);
  t.is(out.builds[0]!.status, 'failed');
});

test('a platform the connection cannot serve fails at once', (t) => {
  const out = plan(
    input({
      builds: [build('bld_a0000000')],
      requests: [request('bld_a0000000', { platform: arm })],
    }),
  );
  t.is(req0(out).state, 'failed');
  t.regex(req0(out).reason, /does not build for linux\/arm64/);
  t.is(out.machines.length, 0);
});

test('builds whose CLI stops heartbeating or that pass their deadline fail and free the builder', (t) => {
  const lapsed = plan(
    input({
      machines: [machine()],
      volumes: [volume()],
      builds: [
        build('bld_a0000000', {
          status: 'running',
          lastSeenAt: t0 - (buildHeartbeatTimeoutSeconds + 1) * s,
        }),
      ],
      requests: [
        request('bld_a0000000', { state: 'ready', machineId: 'mch_ready000', path: 'hot' }),
      ],
    }),
  );
  t.is(lapsed.builds[0]!.status, 'failed');
  t.regex(lapsed.builds[0]!.error!, /no heartbeat/);
  t.is(req0(lapsed).state, 'released');
  t.is(byId(lapsed, 'mch_ready000').idleSince, t0, 'the builder is idle from now');

  const late = plan(
    input({
      builds: [build('bld_a0000000', { deadline: t0 - 1 })],
      requests: [request('bld_a0000000')],
    }),
  );
  t.regex(late.builds[0]!.error!, /deadline/);
  t.is(late.machines.length, 0);
});

test('a restarted control plane gives reports a fresh window', (t) => {
  const out = plan(
    input({
      serviceStartedAt: t0 - 10 * s,
      machines: [machine({ sessionAt: t0 - 3600 * s })],
      volumes: [volume()],
      builds: [build('bld_a0000000', { lastSeenAt: t0 - 3600 * s })],
      requests: [request('bld_a0000000')],
    }),
  );
  t.is(byId(out, 'mch_ready000').status, 'ready');
  t.is(out.builds[0]!.status, 'running');
});

test('warm pools keep running and stopped standbys per platform within the limit', (t) => {
  const out = plan(
    input({
      settings: {
        platforms: [amd, arm],
        maxMachines: 4,
        warmPool: { [amd]: { running: 2, stopped: 1 }, [arm]: { running: 1, stopped: 1 } },
      },
    }),
  );
  t.is(out.machines.length, 4);
  const count = (p: Platform, state: string) =>
    out.machines.filter((m) => m.platform === p && m.desiredState === state).length;
  t.is(count(amd, 'running'), 2);
  t.is(count(amd, 'stopped'), 1);
  t.is(count(arm, 'running'), 1);
  t.is(count(arm, 'stopped'), 0, 'the limit stops the pool from growing');
});

// ---------------------------------------------------------------------------------------------
// Properties

const projectIds = ['prj_p0000000', 'prj_p1000000', 'prj_p2000000'];
const timeArb = fc.integer({ min: -20_000, max: 2_000 }).map((x) => t0 + x * s);
const optTime = fc.option(timeArb, { nil: null });

const machineArb = fc.record({
  platform: fc.constantFrom(...platforms),
  project: fc.option(fc.constantFrom(...projectIds), { nil: null }),
  desiredState: fc.constantFrom('running', 'stopped', 'deleted'),
  failed: fc.boolean(),
  createdAt: timeArb,
  startedAt: optTime,
  stoppedAt: optTime,
  idleSince: optTime,
  registeredAt: optTime,
  sessionAt: optTime,
  observedState: fc.option(
    fc.constantFrom('pending', 'running', 'stopping', 'stopped', 'terminated', 'missing'),
    { nil: null },
  ),
  taskKind: fc.constantFrom('buildkit', 'idle', 'shutdown'),
  buildkit: fc.option(fc.constantFrom('stopped', 'starting', 'ready', 'failed'), { nil: null }),
  hasCa: fc.boolean(),
});

const requestArb = fc.record({
  project: fc.constantFrom(...projectIds),
  platform: fc.constantFrom(...platforms),
  createdAt: timeArb,
  ready: fc.boolean(),
  machineIndex: fc.option(fc.nat(9), { nil: null }),
  reason: fc.string({ minLength: 1, maxLength: 20 }),
  lastSeenAt: timeArb,
  deadline: fc.integer({ min: -100, max: 5_000 }).map((x) => t0 + x * s),
});

const worldArb = fc.record({
  maxMachines: fc.integer({ min: 1, max: 6 }),
  platforms: fc.subarray([...platforms], { minLength: 1 }),
  warmRunning: fc.nat(3),
  warmStopped: fc.nat(3),
  machines: fc.array(machineArb, { maxLength: 10 }),
  requests: fc.array(requestArb, { maxLength: 8 }),
  failures: fc.array(fc.record({ index: fc.nat(9), ago: fc.nat(900) }), { maxLength: 3 }),
  applied: fc.boolean(),
  zones: fc.boolean(),
});

/** A consistent world: one live machine per project and platform, one per volume. */
type World = typeof worldArb extends fc.Arbitrary<infer W> ? W : never;

function worldInput(w: World): PlannerInput {
  const zones = w.zones ? ['z-a', 'z-b'] : [];
  const volumes: PlanVolume[] = [];
  const machines: PlanMachine[] = [];
  const taken = new Set<string>();
  w.machines.forEach((g, i) => {
    const id = `mch_m${String(i).padStart(7, '0')}`;
    const live = !g.failed && g.desiredState !== 'deleted';
    let project = g.project;
    const key = `${project}/${g.platform}`;
    if (project && live && taken.has(key)) project = null;
    if (project && live) taken.add(key);
    let volumeId: string | null = null;
    if (project && live) {
      let v = volumes.find((x) => x.projectId === project && x.platform === g.platform);
      if (!v) {
        v = volume({
          id: `vol_v${String(volumes.length).padStart(7, '0')}`,
          projectId: project,
          platform: g.platform,
          zone: zones[0] ?? null,
          observedAttachedTo: id,
        });
        volumes.push(v);
      }
      volumeId = v.id;
    }
    machines.push(
      machine({
        id,
        platform: g.platform,
        zone: zones[i % 2] ?? null,
        projectId: project,
        volumeId,
        desiredState: g.failed ? 'deleted' : (g.desiredState as PlanMachine['desiredState']),
        status: g.failed ? 'lost' : g.desiredState === 'deleted' ? 'deleting' : 'idle',
        failure: g.failed ? 'lost' : null,
        removedGeneration: g.failed || g.desiredState === 'deleted' ? 5 : null,
        createdAt: g.createdAt,
        startedAt: g.startedAt,
        stoppedAt: g.stoppedAt,
        idleSince: g.idleSince,
        registeredAt: g.registeredAt,
        sessionAt: g.sessionAt,
        observedState: g.observedState,
        task: { kind: g.taskKind as 'idle', generation: 3, projectId: project, volumeId },
        caNotAfter: g.hasCa ? t0 + 30 * 86_400 * s : null,
        buildkit: g.buildkit ? { generation: 3, state: g.buildkit as 'ready', error: null } : null,
      }),
    );
  });
  const builds: PlanBuild[] = [];
  const requests: PlanRequest[] = [];
  w.requests.forEach((g, i) => {
    const id = `bld_b${String(i).padStart(7, '0')}`;
    const m = g.machineIndex === null ? undefined : machines[g.machineIndex];
    const fits = m && m.projectId === g.project && m.platform === g.platform;
    builds.push(
      build(id, {
        projectId: g.project,
        lastSeenAt: g.lastSeenAt,
        deadline: g.deadline,
        status: g.ready && fits ? 'running' : 'pending',
      }),
    );
    requests.push(
      request(id, {
        projectId: g.project,
        platform: g.platform,
        createdAt: g.createdAt,
        acquireDeadline: g.createdAt + 300 * s,
        reason: g.reason,
        state: g.ready && fits ? 'ready' : 'pending',
        machineId: fits ? m.id : null,
        path: fits ? 'cold' : null,
      }),
    );
  });
  const base = input({
    settings: {
      maxMachines: w.maxMachines,
      platforms: w.platforms,
      warmPool: Object.fromEntries(
        w.platforms.map((p) => [p, { running: w.warmRunning, stopped: w.warmStopped }]),
      ),
    },
  });
  return {
    ...base,
    connection: {
      ...base.connection,
      zones,
      provider: w.zones ? 'aws' : 'local',
      appliedGeneration: w.applied ? 5 : 4,
    },
    machines,
    volumes,
    builds,
    requests,
    capacityFailures: w.failures
      .filter((f) => machines[f.index])
      .map((f) => ({
        machineId: machines[f.index]!.id,
        platform: machines[f.index]!.platform,
        zone: machines[f.index]!.zone,
        reason: 'InsufficientInstanceCapacity',
        at: t0 - f.ago * s,
      }))
      .sort((a, b) => a.at - b.at),
  };
}

const occupying = (machines: { status: string }[]) =>
  machines.filter((m) => m.status !== 'deleted').length;
const live = (m: PlanMachine) => m.failure === null && m.desiredState !== 'deleted';

test('property: never above the machine limit', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const inp = worldInput(w);
      // Machines gone before this pass (deleted, applied, no longer observed) free their slot.
      const before = occupying(plan({ ...inp, newId: ids() }).machines.filter((m) => !m.created));
      const out = plan(inp);
      const after = occupying(out.machines);
      if (before <= w.maxMachines) return after <= w.maxMachines;
      // Over the limit already (it was lowered): nothing new is created.
      return out.machines.every((m) => !m.created);
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: a volume is never attached to two machines', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const out = plan(worldInput(w));
      const holders = out.machines
        .filter(live)
        .map((m) => m.volumeId)
        .filter((v) => v !== null);
      return new Set(holders).size === holders.length;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('phases: a machine start reported after the builder got ready is still recorded, no later than its registration', (t) => {
  const ready = (overrides: Partial<PlanRequest>) =>
    request('bld_a0000000', {
      state: 'ready',
      reason: 'ready on machine mch_ready000',
      machineId: 'mch_ready000',
      path: 'cold',
      assignedAt: t0 - 30 * s,
      assignedGeneration: 6,
      phases: {
        pickedUpAt: t0 - 29 * s,
        machineStartedAt: null,
        registeredAt: t0 - 20 * s,
        readyAt: t0 - 10 * s,
      },
      ...overrides,
    });
  const world = (r: PlanRequest, appliedGeneration: number) =>
    plan(
      input({
        connection: { ...input().connection, generation: 6, appliedGeneration },
        machines: [machine()],
        volumes: [volume()],
        builds: [build('bld_a0000000', { status: 'running' })],
        requests: [r],
      }),
    );
  // The agent's report of generation 6 arrives after the machine registered and got ready.
  const late = req0(world(ready({}), 6));
  t.is(late.state, 'ready');
  t.is(late.phases.machineStartedAt, t0 - 20 * s, 'the machine had started by its registration');
  // Not reported yet: unknown for now.
  t.is(req0(world(ready({}), 5)).phases.machineStartedAt, null);
  // A hot request's machine was not started for it.
  t.is(req0(world(ready({ path: 'hot' }), 6)).phases.machineStartedAt, null);
  // A pending request whose machine has not registered gets the time of the pass.
  const pending = req0(
    plan(
      input({
        connection: { ...input().connection, generation: 6, appliedGeneration: 6 },
        machines: [
          machine({
            status: 'booting',
            startedAt: t0 - 30 * s,
            registeredAt: null,
            sessionAt: null,
            task: { kind: 'idle', generation: 1, projectId: null, volumeId: null },
            caNotAfter: null,
            buildkit: null,
          }),
        ],
        volumes: [volume()],
        builds: [build('bld_a0000000')],
        requests: [
          ready({
            state: 'pending',
            reason: 'new machine mch_ready000 is booting',
            phases: {
              pickedUpAt: t0 - 29 * s,
              machineStartedAt: null,
              registeredAt: null,
              readyAt: null,
            },
          }),
        ],
      }),
    ),
  );
  t.is(pending.state, 'pending');
  t.is(pending.phases.machineStartedAt, t0);
});

test('property: one builder per project and platform', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const out = plan(worldInput(w));
      const keys = out.machines
        .filter((m) => live(m) && m.projectId)
        .map((m) => `${m.projectId}/${m.platform}`);
      return new Set(keys).size === keys.length;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: every pending request has a reason, every ready one a ready builder', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const out = plan(worldInput(w));
      for (const r of out.requests) {
        if (r.state === 'pending' && r.reason.trim() === '') return false;
        if (r.state === 'ready') {
          const m = out.machines.find((x) => x.id === r.machineId);
          if (
            !m ||
            m.status !== 'ready' ||
            m.projectId !== r.projectId ||
            m.platform !== r.platform
          )
            return false;
        }
      }
      return true;
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: a project volume is never deleted', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const inp = worldInput(w);
      const out = plan(inp);
      return inp.volumes.every((v) =>
        out.volumes.some((o) => o.id === v.id && o.status !== 'deleted'),
      );
    }),
    { numRuns: 300 },
  );
  t.pass();
});

test('property: a request past the acquire deadline fails with its last reason', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const inp = worldInput(w);
      const out = plan(inp);
      return inp.requests.every((r) => {
        const o = out.requests.find((x) => x.buildId === r.buildId)!;
        if (r.state !== 'pending' || inp.now < r.acquireDeadline) return true;
        return (
          o.state === 'released' ||
          (o.state === 'failed' &&
            (o.reason.includes(r.reason) ||
              !inp.connection.settings.platforms.includes(r.platform)))
        );
      });
    }),
    { numRuns: 500 },
  );
  t.pass();
});

test('property: the planner is deterministic and settles', (t) => {
  fc.assert(
    fc.property(worldArb, (w) => {
      const a = plan(worldInput(w));
      const b = plan(worldInput(w));
      return (
        JSON.stringify(a) === JSON.stringify(b) && (a.nextWakeAt === null || a.nextWakeAt > t0)
      );
    }),
    { numRuns: 200 },
  );
  t.pass();
});
