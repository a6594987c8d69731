// The imperative shell around the planner: for one connection, read the rows, run plan(), write
// what changed in one transaction (new machines and volumes, tasks with freshly minted CAs, client
// certificates for requests that became ready, the fleet generation), then wake the long-polls
// that care and arm a timer for the planner's next wake-up. Passes for one connection run one
// at a time; a change that arrives during a pass triggers one more.
import { createHash } from 'node:crypto';
import type { Logger } from 'pino';
import {
  connectionSettingsSchema,
  awsConnectionConfigSchema,
  type AwsConnectionConfig,
  type ConnectionSettings,
  type DesiredFleet,
  type Platform,
  type Provider,
} from '../common/protocol';
import { mintMachineCa, signClientCertificate } from './ca';
import { json, num, numOrNull, snapshotTransaction, type Db } from './db';
import { newId } from './ids';
import type { Metrics } from './metrics';
import { topics, type Notifier } from './notifier';
import {
  plan,
  type PlanMachine,
  type PlannedMachine,
  type PlannerInput,
  type PlannerOutput,
} from './planner';
import type { ServerSecrets } from './secrets';

type Row = Record<string, unknown>;

/** Capacity failures older than this no longer affect the planner. */
const capacityMemoryMs = 10 * 60_000;
/** Timers further out than this are re-armed by the pass they trigger. */
const maxTimerMs = 60 * 60_000;
const retryAfterFailureMs = 1000;
/** CA and server certificate outlive the machine's lifetime by the longest build deadline. */
const caSlackMs = 2 * 86_400_000;

export function connectionSettingsOf(row: Row): ConnectionSettings {
  return connectionSettingsSchema.parse(json(row.settings, {}));
}

export function awsConfigOf(row: Row): AwsConnectionConfig | null {
  const aws = json<unknown>(row.aws, null);
  return aws === null ? null : awsConnectionConfigSchema.parse(aws);
}

function str(v: unknown): string | null {
  return v === null || v === undefined ? null : String(v);
}

export function machineFromRow(row: Row): PlanMachine {
  return {
    id: String(row.id),
    platform: row.platform as Platform,
    zone: str(row.zone),
    createdAt: num(row.created_at),
    projectId: str(row.project_id),
    volumeId: str(row.volume_id),
    desiredState: row.desired_state as PlanMachine['desiredState'],
    status: row.status as PlanMachine['status'],
    launchPath: str(row.launch_path) as PlanMachine['launchPath'],
    failure: str(row.failure),
    startedAt: numOrNull(row.started_at),
    stoppedAt: numOrNull(row.stopped_at),
    idleSince: numOrNull(row.idle_since),
    readyAt: numOrNull(row.ready_at),
    removedGeneration: numOrNull(row.removed_generation),
    registeredAt: numOrNull(row.registered_at),
    sessionAt: numOrNull(row.session_at),
    observedState: str(row.observed_state) as PlanMachine['observedState'],
    task: {
      kind: row.task_kind as PlanMachine['task']['kind'],
      generation: num(row.task_generation),
      projectId: str(row.task_project_id),
      volumeId: str(row.task_volume_id),
    },
    caNotAfter: numOrNull(row.ca_not_after),
    buildkit:
      row.buildkit_state === null || row.buildkit_state === undefined
        ? null
        : {
            generation: num(row.buildkit_generation),
            state: row.buildkit_state as 'ready',
            error: str(row.buildkit_error),
          },
  };
}

/** The desired fleet as the agent receives it; registration tokens until machines register. */
export function fleetOf(
  connection: {
    id: string;
    provider: Provider;
    generation: number;
    aws: AwsConnectionConfig | null;
  },
  machines: Row[],
  volumes: Row[],
  secrets: ServerSecrets,
): DesiredFleet {
  return {
    connectionId: connection.id,
    provider: connection.provider,
    generation: connection.generation,
    machines: machines
      .filter((m) => m.desired_state !== 'deleted')
      .sort((a, b) => String(a.id).localeCompare(String(b.id)))
      .map((m) => ({
        id: String(m.id),
        platform: m.platform as Platform,
        state: m.desired_state as 'running' | 'stopped',
        volumeId: str(m.volume_id),
        registrationToken:
          m.registered_at === null ? secrets.registrationToken(String(m.id)) : null,
        zone: str(m.zone),
      })),
    volumes: volumes
      .filter((v) => v.status !== 'deleted')
      .sort((a, b) => String(a.id).localeCompare(String(b.id)))
      .map((v) => ({
        id: String(v.id),
        projectId: String(v.project_id),
        platform: v.platform as Platform,
        sizeGb: num(v.size_gb),
        zone: str(v.zone),
      })),
    aws: connection.aws,
  };
}

/** The fleet's content without its generation: a change of it is a new generation. */
function fleetHash(fleet: DesiredFleet, settings: ConnectionSettings): string {
  const content = { ...fleet, generation: 0 };
  return createHash('sha256').update(JSON.stringify({ content, settings })).digest('hex');
}

/** A connection's machines or volumes that are not deleted yet. */
export function existing(db: Db, table: 'machines' | 'volumes', connectionId: string) {
  return db(table).where({ connection_id: connectionId }).whereNot({ status: 'deleted' });
}

export async function loadFleet(db: Db, connectionId: string, secrets: ServerSecrets) {
  const conn = await db('connections').where({ id: connectionId }).first();
  if (!conn) return undefined;
  const machines = await existing(db, 'machines', connectionId);
  const volumes = await existing(db, 'volumes', connectionId);
  const fleet = fleetOf(
    {
      id: connectionId,
      provider: conn.provider as Provider,
      generation: num(conn.generation),
      aws: awsConfigOf(conn),
    },
    machines,
    volumes,
    secrets,
  );
  return { conn, fleet, settings: connectionSettingsOf(conn) };
}

export interface ReconcilerOptions {
  db: Db;
  secrets: ServerSecrets;
  notifier: Notifier;
  log: Logger;
  metrics: Metrics;
  startedAt: number;
}

interface Effects {
  topics: Set<string>;
  nextWakeAt: number | null;
  acquired: { path: string; seconds: number }[];
}

export class Reconciler {
  private readonly running = new Map<string, Promise<void>>();
  private readonly again = new Set<string>();
  private readonly timers = new Map<string, { at: number; timer: NodeJS.Timeout }>();
  private closed = false;

  constructor(private readonly o: ReconcilerOptions) {}

  /** Plans the connection now (or right after the pass in progress) and resolves when done. */
  reconcile(connectionId: string): Promise<void> {
    if (this.closed) return Promise.resolve();
    const inFlight = this.running.get(connectionId);
    if (inFlight) {
      this.again.add(connectionId);
      return inFlight.then(() => this.running.get(connectionId));
    }
    const run = (async () => {
      try {
        do {
          this.again.delete(connectionId);
          await this.pass(connectionId);
        } while (this.again.has(connectionId) && !this.closed);
      } catch (err) {
        // Nothing of a failed pass was written; try again soon rather than at the next event.
        this.arm(connectionId, Date.now() + retryAfterFailureMs);
        throw err;
      } finally {
        this.running.delete(connectionId);
      }
    })();
    this.running.set(connectionId, run);
    return run;
  }

  async reconcileAll(): Promise<void> {
    const rows = await this.o.db('connections').select('id');
    await Promise.all(rows.map((r) => this.reconcile(String(r.id))));
  }

  async close(): Promise<void> {
    this.closed = true;
    for (const { timer } of this.timers.values()) clearTimeout(timer);
    this.timers.clear();
    await Promise.allSettled([...this.running.values()]);
  }

  private arm(connectionId: string, at: number | null): void {
    const existing = this.timers.get(connectionId);
    if (existing && (at === null || existing.at !== at)) {
      clearTimeout(existing.timer);
      this.timers.delete(connectionId);
    }
    if (at === null || this.closed || this.timers.has(connectionId)) return;
    const delay = Math.min(Math.max(0, at - Date.now()), maxTimerMs);
    const timer = setTimeout(() => {
      this.timers.delete(connectionId);
      this.reconcile(connectionId).catch((err) =>
        this.o.log.error({ err, connectionId }, 'timed planner pass failed'),
      );
    }, delay);
    timer.unref();
    this.timers.set(connectionId, { at, timer });
  }

  private async pass(connectionId: string): Promise<void> {
    const { db, log } = this.o;
    // The planner must see one consistent state; taking the connection's row first serializes
    // passes (the write lock in SQLite, the row lock in PostgreSQL).
    const effects = await snapshotTransaction(
      db,
      async (trx) => {
        const out: Effects = { topics: new Set(), nextWakeAt: null, acquired: [] };
        const locked = await trx('connections')
          .where({ id: connectionId })
          .increment('plan_version', 1);
        if (!locked) return out;
        const now = Date.now();
        const conn = await trx('connections').where({ id: connectionId }).first();
        const input = await this.loadInput(trx, conn, now);
        const output = plan(input);
        await this.write(trx, conn, input, output, now, out);
        return out;
      },
      {
        onRetry: (attempt) =>
          log.debug({ connectionId, attempt }, 'planner pass met a concurrent change; again'),
      },
    );
    this.o.notifier.notify(effects.topics);
    for (const a of effects.acquired)
      this.o.metrics.acquireSeconds.observe({ path: a.path }, a.seconds);
    this.arm(connectionId, effects.nextWakeAt);
    log.debug({ connectionId, nextWakeAt: effects.nextWakeAt }, 'planned');
  }

  private async loadInput(trx: Db, conn: Row, now: number): Promise<PlannerInput> {
    const connectionId = String(conn.id);
    const settings = connectionSettingsOf(conn);
    const aws = awsConfigOf(conn);
    const zones = aws ? [...new Set(aws.subnets.map((s) => s.zone))] : [];
    // One after the other: a transaction is one connection, which runs one query at a time.
    const machines = await existing(trx, 'machines', connectionId);
    const volumes = await existing(trx, 'volumes', connectionId);
    const builds = await trx('builds')
      .where({ connection_id: connectionId })
      .whereIn('status', ['pending', 'running']);
    const requests = await trx('builder_requests')
      .where({ connection_id: connectionId })
      .whereIn('state', ['pending', 'ready']);
    const failures = await trx('capacity_failures')
      .where({ connection_id: connectionId })
      .where('at', '>', now - capacityMemoryMs)
      .orderBy('at');
    const leaseExpiresAt = numOrNull(conn.lease_expires_at);
    return {
      now,
      serviceStartedAt: this.o.startedAt,
      connection: {
        id: connectionId,
        name: String(conn.name),
        provider: conn.provider as Provider,
        settings,
        zones,
        generation: num(conn.generation),
        appliedGeneration: num(conn.applied_generation),
        agentConnected: leaseExpiresAt !== null && leaseExpiresAt > now,
        leaseExpiresAt,
        lastApplyError: conn.last_apply_result === 'failed' ? str(conn.last_error) : null,
      },
      machines: machines.map(machineFromRow),
      volumes: volumes.map((v) => ({
        id: String(v.id),
        projectId: String(v.project_id),
        platform: v.platform as Platform,
        sizeGb: num(v.size_gb),
        zone: str(v.zone),
        createdAt: num(v.created_at),
        observedState: str(v.observed_state) as PlannerInput['volumes'][number]['observedState'],
        observedAttachedTo: str(v.observed_attached_to),
      })),
      builds: builds.map((b) => ({
        id: String(b.id),
        projectId: String(b.project_id),
        status: b.status as 'pending' | 'running',
        deadline: num(b.deadline),
        lastSeenAt: num(b.last_seen_at),
      })),
      requests: requests.map((r) => ({
        buildId: String(r.build_id),
        platform: r.platform as Platform,
        projectId: String(r.project_id),
        createdAt: num(r.requested_at),
        acquireDeadline: num(r.acquire_deadline),
        state: r.state as 'pending' | 'ready',
        reason: String(r.reason),
        machineId: str(r.machine_id),
        path: str(r.path) as PlannerInput['requests'][number]['path'],
        assignedAt: numOrNull(r.assigned_at),
        assignedGeneration: numOrNull(r.assigned_generation),
        phases: {
          pickedUpAt: numOrNull(r.picked_up_at),
          machineStartedAt: numOrNull(r.machine_started_at),
          registeredAt: numOrNull(r.registered_at),
          readyAt: numOrNull(r.ready_at),
        },
      })),
      capacityFailures: failures.map((f) => ({
        machineId: String(f.machine_id),
        platform: f.platform as Platform,
        zone: str(f.zone),
        reason: String(f.reason),
        at: num(f.at),
      })),
      newId,
    };
  }

  private async write(
    trx: Db,
    conn: Row,
    input: PlannerInput,
    out: PlannerOutput,
    now: number,
    effects: Effects,
  ): Promise<void> {
    const connectionId = String(conn.id);
    const settings = input.connection.settings;
    const machineRows = new Map<string, Row>(
      (await existing(trx, 'machines', connectionId)).map((r) => [String(r.id), r]),
    );

    const volumeStatus = new Map(
      (await trx('volumes').where({ connection_id: connectionId }).select('id', 'status')).map(
        (r) => [String(r.id), String(r.status)],
      ),
    );
    for (const v of out.volumes) {
      if (v.created) {
        await trx('volumes').insert({
          id: v.id,
          connection_id: connectionId,
          project_id: v.projectId,
          platform: v.platform,
          size_gb: v.sizeGb,
          zone: v.zone,
          status: v.status,
          created_at: v.createdAt,
        });
      } else if (volumeStatus.get(v.id) !== v.status) {
        await trx('volumes').where({ id: v.id }).update({ status: v.status });
      }
    }

    for (const m of out.machines) {
      const row = machineRows.get(m.id);
      const fields = machineFields(m);
      if (m.created) {
        await trx('machines').insert({
          id: m.id,
          organization_id: conn.organization_id,
          connection_id: connectionId,
          platform: m.platform,
          created_at: m.createdAt,
          ...fields,
          task_kind: m.desiredTask.kind,
          task_generation: 1,
          task_reason: m.desiredTask.reason,
        });
        continue;
      }
      if (!row) continue;
      const update: Row = {};
      for (const [k, v] of Object.entries(fields)) if (!sameValue(row[k], v)) update[k] = v;
      if (m.desiredTask.changed) {
        Object.assign(update, await this.taskUpdate(m, row, settings, now));
        effects.topics.add(topics.machine(m.id));
      } else if (row.task_reason !== m.desiredTask.reason) {
        update.task_reason = m.desiredTask.reason;
      }
      if (m.status === 'deleted' && row.token_hash !== null) update.token_hash = null;
      if (Object.keys(update).length > 0) {
        await trx('machines').where({ id: m.id }).update(update);
        if (update.status !== undefined) {
          this.o.log.info(
            { connectionId, machineId: m.id, from: row.status, to: m.status, failure: m.failure },
            'machine status',
          );
        }
      }
    }

    const buildRows = new Map<string, Row>();
    for (const r of out.requests) {
      const before = input.requests.find(
        (x) => x.buildId === r.buildId && x.platform === r.platform,
      )!;
      const update: Row = {};
      if (r.state !== before.state) update.state = r.state;
      if (r.reason !== before.reason) update.reason = r.reason;
      if (r.machineId !== before.machineId) update.machine_id = r.machineId;
      if (r.path !== before.path) update.path = r.path;
      if (r.newlyAssigned) update.assigned_at = r.assignedAt;
      const phases: [keyof typeof r.phases, string][] = [
        ['pickedUpAt', 'picked_up_at'],
        ['machineStartedAt', 'machine_started_at'],
        ['registeredAt', 'registered_at'],
        ['readyAt', 'ready_at'],
      ];
      for (const [k, column] of phases)
        if (r.phases[k] !== before.phases[k]) update[column] = r.phases[k];
      if (r.state === 'ready' && before.state !== 'ready') {
        let build = buildRows.get(r.buildId);
        if (!build) {
          build = await trx('builds').where({ id: r.buildId }).first();
          buildRows.set(r.buildId, build!);
        }
        const machine = (await trx('machines').where({ id: r.machineId }).first())!;
        const request = (await trx('builder_requests')
          .where({ build_id: r.buildId, platform: r.platform })
          .first())!;
        update.client_certificate = await signClientCertificate({
          secrets: this.o.secrets,
          machineId: String(machine.id),
          caCertificate: String(machine.ca_certificate),
          sealedKey: String(machine.ca_key_sealed),
          caNotAfter: num(machine.ca_not_after),
          csr: String(request.csr),
          buildId: r.buildId,
          organizationId: String(build!.organization_id),
          now,
          deadline: num(build!.deadline),
        });
        effects.acquired.push({ path: r.path ?? 'cold', seconds: (now - r.createdAt) / 1000 });
      }
      if (Object.keys(update).length > 0) {
        await trx('builder_requests')
          .where({ build_id: r.buildId, platform: r.platform })
          .update(update);
        effects.topics.add(topics.build(r.buildId));
      }
    }

    for (const b of out.builds) {
      const before = input.builds.find((x) => x.id === b.id)!;
      if (b.status === before.status) continue;
      await trx('builds')
        .where({ id: b.id })
        .update(
          b.status === 'failed'
            ? { status: 'failed', error: b.error, finished_at: now }
            : { status: b.status },
        );
      effects.topics.add(topics.build(b.id));
      if (b.status === 'failed') this.o.log.info({ buildId: b.id, error: b.error }, 'build failed');
    }

    // The fleet: a new generation whenever its content changes.
    const machines = await existing(trx, 'machines', connectionId);
    const volumes = await existing(trx, 'volumes', connectionId);
    const fleet = fleetOf(
      {
        id: connectionId,
        provider: input.connection.provider,
        generation: 0,
        aws: awsConfigOf(conn),
      },
      machines,
      volumes,
      this.o.secrets,
    );
    const hash = fleetHash(fleet, settings);
    let generation = num(conn.generation);
    if (hash !== conn.fleet_hash) {
      generation += 1;
      await trx('connections').where({ id: connectionId }).update({ generation, fleet_hash: hash });
      effects.topics.add(topics.connection(connectionId));
    }
    // Requests assigned in this pass are served from this generation of the fleet on.
    for (const r of out.requests.filter((x) => x.newlyAssigned)) {
      await trx('builder_requests')
        .where({ build_id: r.buildId, platform: r.platform })
        .update({ assigned_generation: generation });
    }
    effects.nextWakeAt = out.nextWakeAt;
  }

  /** A new task generation; a buildkit task gets a new CA, any other destroys the CA. */
  private async taskUpdate(
    m: PlannedMachine,
    row: Row,
    settings: ConnectionSettings,
    now: number,
  ): Promise<Row> {
    const base = {
      task_kind: m.desiredTask.kind,
      task_generation: num(row.task_generation) + 1,
      task_reason: m.desiredTask.reason,
      task_project_id: m.desiredTask.projectId,
      task_volume_id: m.desiredTask.volumeId,
    };
    if (m.desiredTask.kind !== 'buildkit') {
      return {
        ...base,
        ca_certificate: null,
        ca_key_sealed: null,
        ca_not_after: null,
        server_certificate: null,
      };
    }
    const ca = await mintMachineCa({
      secrets: this.o.secrets,
      machineId: m.id,
      csr: String(row.csr),
      advertisedHost: String(row.endpoint_host),
      now,
      lifetimeMs: settings.maxMachineLifetimeSeconds * 1000 + caSlackMs,
    });
    return {
      ...base,
      ca_certificate: ca.certificate,
      ca_key_sealed: ca.sealedKey,
      ca_not_after: ca.notAfter,
      server_certificate: ca.serverCertificate,
    };
  }
}

function machineFields(m: PlannedMachine): Row {
  return {
    zone: m.zone,
    project_id: m.projectId,
    volume_id: m.volumeId,
    desired_state: m.desiredState,
    status: m.status,
    launch_path: m.launchPath,
    failure: m.failure,
    started_at: m.startedAt,
    stopped_at: m.stoppedAt,
    idle_since: m.idleSince,
    ready_at: m.readyAt,
    removed_generation: m.removedGeneration,
  };
}

function sameValue(a: unknown, b: unknown): boolean {
  if (a === null || a === undefined) return b === null || b === undefined;
  if (b === null || b === undefined) return false;
  return typeof b === 'number' ? num(a) === b : a === b;
}
