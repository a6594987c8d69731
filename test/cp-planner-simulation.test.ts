// The planner against a simulated world, many passes in a row: an agent that applies the fleet
// (or reports no capacity), machines that register, take their task and report BuildKit ready,
// CLIs that request and finish builds, and a clock that moves. Across every pass the invariants
// hold, and once the world behaves, every request ends ready or failed: none waits forever.
import { createHash } from 'node:crypto';
import test from 'ava';
import fc from 'fast-check';
import { connectionSettingsSchema, type Platform } from '../common/protocol';
import {
  plan,
  type PlanBuild,
  type PlanCapacityFailure,
  type PlanMachine,
  type PlannerOutput,
  type PlanRequest,
  type PlanVolume,
} from '../control-plane/planner';
import { request } from './helpers/planner';

const t0 = Date.parse('2026-01-01T00:00:00Z');

type Action =
  | { kind: 'request'; project: number; platform: Platform }
  | { kind: 'apply' }
  | { kind: 'capacity' }
  | { kind: 'boot' }
  | { kind: 'finish' }
  | { kind: 'tick'; seconds: number };

const actionArb: fc.Arbitrary<Action> = fc.oneof(
  fc.record({
    kind: fc.constant('request' as const),
    project: fc.nat(3),
    platform: fc.constantFrom<Platform>('linux/amd64', 'linux/arm64'),
  }),
  fc.constant({ kind: 'apply' as const }),
  fc.constant({ kind: 'capacity' as const }),
  fc.constant({ kind: 'boot' as const }),
  fc.constant({ kind: 'finish' as const }),
  fc.record({ kind: fc.constant('tick' as const), seconds: fc.integer({ min: 1, max: 400 }) }),
);

/** The rows of one connection and the world's behaviour around them. */
class World {
  now = t0;
  generation = 0;
  applied = 0;
  fleetHash = '';
  machines: PlanMachine[] = [];
  volumes: PlanVolume[] = [];
  builds: PlanBuild[] = [];
  requests: PlanRequest[] = [];
  failures: PlanCapacityFailure[] = [];
  ended = new Map<string, string>();
  finished = 0;
  private ids = 0;
  last: PlannerOutput | undefined;

  constructor(readonly settings = connectionSettingsSchema.parse({})) {}

  pass(): PlannerOutput {
    const out = plan({
      now: this.now,
      serviceStartedAt: t0,
      connection: {
        id: 'con_sim00000',
        name: 'sim',
        provider: 'local',
        settings: this.settings,
        zones: [],
        generation: this.generation,
        appliedGeneration: this.applied,
        agentConnected: true,
        leaseExpiresAt: this.now + 120_000,
        lastApplyError: null,
      },
      machines: this.machines,
      volumes: this.volumes,
      builds: this.builds,
      requests: this.requests,
      capacityFailures: this.failures.filter((f) => f.at > this.now - 600_000),
      newId: (kind) =>
        `${kind === 'machine' ? 'mch' : 'vol'}_sim${String(++this.ids).padStart(8, '0')}`,
    });
    // Written back as the reconciler does: tasks get a new generation (and CA) when they change.
    this.machines = out.machines
      .filter((m) => m.status !== 'deleted')
      .map((m) => {
        const { created: _c, desiredTask, ...row } = m;
        void _c;
        if (!desiredTask.changed && !m.created) return row;
        return {
          ...row,
          task: {
            kind: desiredTask.kind,
            generation: m.task.generation + 1,
            projectId: desiredTask.projectId,
            volumeId: desiredTask.volumeId,
          },
          caNotAfter: desiredTask.kind === 'buildkit' ? this.now + 16 * 86_400_000 : null,
        };
      });
    this.volumes = out.volumes.map(({ created: _c, status: _s, ...v }) => (void _c, void _s, v));
    for (const b of out.builds) if (b.status === 'failed') this.ended.set(b.id, b.error!);
    this.builds = out.builds
      .filter((b) => b.status !== 'failed')
      .map((b) => ({
        ...this.builds.find((x) => x.id === b.id)!,
        status: b.status as 'pending' | 'running',
      }));
    this.requests = out.requests
      .filter((r) => r.state === 'pending' || r.state === 'ready')
      .map(({ retryAfterMs: _r, newlyAssigned, ...r }) => {
        void _r;
        return {
          ...r,
          state: r.state as 'pending' | 'ready',
          assignedGeneration: newlyAssigned ? this.generation + 1 : r.assignedGeneration,
        };
      });
    const fleet = JSON.stringify([
      this.machines
        .filter((m) => m.desiredState !== 'deleted')
        .map((m) => [m.id, m.desiredState, m.volumeId, m.registeredAt === null]),
      this.volumes.map((v) => v.id),
    ]);
    const hash = createHash('sha256').update(fleet).digest('hex');
    if (hash !== this.fleetHash) {
      this.generation++;
      this.fleetHash = hash;
    }
    this.last = out;
    return out;
  }

  act(a: Action): void {
    switch (a.kind) {
      case 'request': {
        const id = `bld_sim${String(++this.ids).padStart(8, '0')}`;
        const projectId = `prj_sim${a.project}0000`;
        this.builds.push({
          id,
          projectId,
          status: 'pending',
          deadline: this.now + 3_600_000,
          lastSeenAt: this.now,
        });
        this.requests.push(
          request(id, {
            platform: a.platform,
            projectId,
            createdAt: this.now,
            acquireDeadline: this.now + this.settings.acquireDeadlineSeconds * 1000,
          }),
        );
        break;
      }
      case 'apply': {
        // The agent converges: machines in their desired state, volumes on their machines.
        for (const m of this.machines) {
          m.observedState = m.desiredState === 'deleted' ? 'missing' : m.desiredState;
        }
        for (const v of this.volumes) {
          const user = this.machines.find(
            (m) => m.volumeId === v.id && m.desiredState !== 'deleted',
          );
          v.observedState = user ? 'in-use' : 'available';
          v.observedAttachedTo = user?.id ?? null;
        }
        this.applied = this.generation;
        break;
      }
      case 'capacity': {
        const m = this.machines.find(
          (x) => x.observedState === null && x.desiredState === 'running',
        );
        if (m)
          this.failures.push({
            machineId: m.id,
            platform: m.platform,
            zone: null,
            reason: 'InsufficientInstanceCapacity',
            at: this.now,
          });
        break;
      }
      case 'boot': {
        // Running machines register, poll their task and report on it.
        for (const m of this.machines) {
          if (m.observedState !== 'running' || m.desiredState !== 'running') continue;
          m.registeredAt ??= this.now;
          m.sessionAt = this.now;
          if (m.task.kind === 'buildkit')
            m.buildkit = { generation: m.task.generation, state: 'ready', error: null };
        }
        break;
      }
      case 'finish': {
        const done = this.builds.find((b) => b.status === 'running');
        if (done) {
          this.finished++;
          this.builds = this.builds.filter((b) => b !== done);
          this.requests = this.requests.filter((r) => r.buildId !== done.id);
        }
        break;
      }
      case 'tick':
        this.now += a.seconds * 1000;
        // CLIs keep heartbeating while they wait or build.
        for (const b of this.builds) b.lastSeenAt = this.now;
        break;
    }
  }

  check(): string | undefined {
    const out = this.last!;
    const live = out.machines.filter((m) => m.failure === null && m.desiredState !== 'deleted');
    const counted = out.machines.filter((m) => m.status !== 'deleted').length;
    if (counted > this.settings.maxMachines) return `${counted} machines over the limit`;
    const volumes = live.map((m) => m.volumeId).filter((v) => v !== null);
    if (new Set(volumes).size !== volumes.length) return 'a volume on two machines';
    const builders = live.filter((m) => m.projectId).map((m) => `${m.projectId}/${m.platform}`);
    if (new Set(builders).size !== builders.length)
      return 'two builders for one project and platform';
    for (const r of out.requests) {
      if (r.state === 'pending' && !r.reason.trim())
        return `pending without a reason: ${r.buildId}`;
      if (r.state === 'ready' && out.machines.find((m) => m.id === r.machineId)?.status !== 'ready')
        return `ready on a machine that is not: ${r.buildId}`;
    }
    return undefined;
  }
}

test('property: invariants hold pass after pass, and every request ends', (t) => {
  let finished = 0;
  fc.assert(
    fc.property(
      fc.record({
        maxMachines: fc.integer({ min: 1, max: 4 }),
        warm: fc.nat(2),
        actions: fc.array(actionArb, { minLength: 1, maxLength: 60 }),
      }),
      ({ maxMachines, warm, actions }) => {
        const world = new World(
          connectionSettingsSchema.parse({
            platforms: ['linux/amd64', 'linux/arm64'],
            maxMachines,
            warmPool: { 'linux/amd64': { running: warm, stopped: 0 } },
          }),
        );
        const requested: string[] = [];
        for (const a of actions) {
          world.act(a);
          if (a.kind === 'request') requested.push(world.builds[world.builds.length - 1]!.id);
          world.pass();
          const broken = world.check();
          if (broken) throw new Error(broken);
        }
        // From here the world behaves: the agent applies, machines boot, builds finish, time runs.
        for (let round = 0; round < 60; round++) {
          for (const a of [
            { kind: 'apply' },
            { kind: 'boot' },
            { kind: 'finish' },
            { kind: 'tick', seconds: 20 },
          ] as Action[]) {
            world.act(a);
            world.pass();
            const broken = world.check();
            if (broken) throw new Error(broken);
          }
        }
        const stuck = world.requests.filter((r) => r.state === 'pending');
        if (stuck.length > 0)
          throw new Error(
            `still pending: ${stuck.map((r) => `${r.buildId} (${r.reason})`).join('; ')}`,
          );
        for (const id of requested) {
          const error = world.ended.get(id);
          // A build either ran (and was finished) or failed for a reason a user can read.
          if (error !== undefined && !/deadline|does not build|went away/.test(error))
            throw new Error(`${id} failed: ${error}`);
        }
        finished += world.finished;
        return true;
      },
    ),
    { numRuns: 200 },
  );
  t.true(finished > 100, `${finished} builds got a builder and finished`);
});
