// The cloud-agent's one call, sync: it takes (or keeps) the connection's lease, records what the
// agent observed and the results of its applies (audit records, capacity failures), lets the
// planner react, and answers with the desired fleet, holding the call open while nothing changes.
import { agentLeaseSeconds, type ApplyReport, type SyncRequest } from '../../common/protocol';
import { num, type Db } from '../db';
import type { RouteHandlers } from '../http';
import { newId } from '../ids';
import { longPoll, topics } from '../notifier';
import { existing, loadFleet } from '../reconciler';
import type { Services } from './services';

type Row = Record<string, unknown>;

async function insertAudit(trx: Db, record: Row): Promise<void> {
  await trx('audit_records').insert(record).onConflict(['connection_id', 'dedupe_key']).ignore();
}

/** Observed machines and volumes onto their rows; what the observation lacks is missing. */
async function recordObservation(
  trx: Db,
  connectionId: string,
  body: SyncRequest,
  log: Services['log'],
) {
  const seenMachines = new Map(body.observation.machines.map((m) => [m.id, m]));
  const machines = await existing(trx, 'machines', connectionId);
  for (const row of machines) {
    const o = seenMachines.get(String(row.id));
    seenMachines.delete(String(row.id));
    const next = {
      observed_state: o?.state ?? 'missing',
      observed_address: o?.address ?? null,
      observed_zone: o?.zone ?? null,
      observed_provider_id: o?.providerId ?? null,
    };
    if (Object.entries(next).some(([k, v]) => (row[k] ?? null) !== v)) {
      await trx('machines').where({ id: row.id }).update(next);
    }
  }
  if (seenMachines.size > 0) {
    log.warn(
      { connectionId, machines: [...seenMachines.keys()].slice(0, 20) },
      'the agent observed machines this connection does not know',
    );
  }
  const seenVolumes = new Map(body.observation.volumes.map((v) => [v.id, v]));
  const volumes = await existing(trx, 'volumes', connectionId);
  for (const row of volumes) {
    const o = seenVolumes.get(String(row.id));
    const next = {
      observed_state: o?.state ?? 'missing',
      observed_attached_to: o?.attachedTo ?? null,
      observed_provider_id: o?.providerId ?? null,
    };
    if (Object.entries(next).some(([k, v]) => (row[k] ?? null) !== v)) {
      await trx('volumes').where({ id: row.id }).update(next);
    }
  }
}

async function recordApply(
  trx: Db,
  connectionId: string,
  agentId: string,
  apply: ApplyReport,
  now: number,
) {
  await insertAudit(trx, {
    id: newId('audit'),
    connection_id: connectionId,
    kind: apply.kind,
    generation: apply.generation,
    result: apply.result,
    summary: JSON.stringify(apply.summary),
    steps: JSON.stringify(apply.steps),
    diff: apply.diff,
    error: apply.error ?? null,
    agent_id: agentId,
    created_at: now,
    dedupe_key: `${apply.kind}:${apply.generation}:${apply.startedAt}`,
  });
  if (apply.orphansRemoved.length > 0) {
    await insertAudit(trx, {
      id: newId('audit'),
      connection_id: connectionId,
      kind: 'orphans',
      generation: apply.generation,
      result: apply.result,
      summary: JSON.stringify({ delete: apply.orphansRemoved.length }),
      steps: JSON.stringify(
        apply.orphansRemoved.map((urn) => ({ op: 'delete', urn, type: '', name: urn })),
      ),
      diff: apply.orphansRemoved.join('\n'),
      error: null,
      agent_id: agentId,
      created_at: now,
      dedupe_key: `orphans:${apply.generation}:${apply.startedAt}`,
    });
  }
  const at = Date.parse(apply.finishedAt);
  for (const f of apply.capacityFailures) {
    const machine = await trx('machines')
      .where({ id: f.machineId, connection_id: connectionId })
      .first('zone');
    if (!machine) continue;
    await trx('capacity_failures')
      .insert({
        connection_id: connectionId,
        machine_id: f.machineId,
        platform: f.platform,
        zone: machine.zone,
        reason: f.reason,
        at,
      })
      .onConflict(['connection_id', 'machine_id', 'at'])
      .ignore();
  }
  const conn = (await trx('connections').where({ id: connectionId }).first('applied_generation'))!;
  await trx('connections')
    .where({ id: connectionId })
    .update({
      last_apply_result: apply.result,
      last_error: apply.error ?? null,
      ...(apply.result === 'succeeded' && apply.generation > num(conn.applied_generation)
        ? { applied_generation: apply.generation }
        : {}),
    });
}

export function agentRoutes(svc: Services): Pick<RouteHandlers, 'agentSync'> {
  const { db } = svc;
  return {
    async agentSync({ auth, body, query, signal, log }) {
      const connectionId = auth.connectionId;
      const now = Date.now();
      const waitMs = query.wait * 1000;
      const leaseExpiresAt = now + waitMs + agentLeaseSeconds * 1000;
      const taken = await db.transaction(async (trx) => {
        // The lease: the holder (or anyone, once it lapsed) renews it in the same statement that
        // checks it, so two agents cannot both win.
        const n = await trx('connections')
          .where({ id: connectionId })
          .andWhere((w) =>
            w
              .whereNull('agent_id')
              .orWhere('agent_id', body.agentId)
              .orWhere('lease_expires_at', '<=', now),
          )
          .update({
            agent_id: body.agentId,
            agent_version: body.agentVersion,
            agent_last_seen_at: now,
            lease_expires_at: leaseExpiresAt,
          });
        if (!n) return false;
        await recordObservation(trx, connectionId, body, log);
        for (const apply of body.applies)
          await recordApply(trx, connectionId, body.agentId, apply, now);
        if (body.drift) {
          await insertAudit(trx, {
            id: newId('audit'),
            connection_id: connectionId,
            kind: 'drift',
            generation: null,
            result: 'previewed',
            summary: JSON.stringify(body.drift.summary),
            steps: JSON.stringify(body.drift.steps),
            diff: body.drift.diff,
            error: null,
            agent_id: body.agentId,
            created_at: now,
            dedupe_key: `drift:${body.drift.checkedAt}`,
          });
        }
        return true;
      });
      if (!taken) {
        const conn = (await db('connections')
          .where({ id: connectionId })
          .first('agent_id', 'lease_expires_at'))!;
        const until = num(conn.lease_expires_at);
        return {
          lease: 'wait' as const,
          retryAfterMs: Math.max(1000, until - now),
          reason: `agent ${conn.agent_id} holds the lease on this connection until ${new Date(until).toISOString()}`,
        };
      }
      if (body.applies.some((a) => a.result === 'failed')) {
        log.warn(
          { connectionId, errors: body.applies.filter((a) => a.error).map((a) => a.error) },
          'the agent reported a failed apply',
        );
      }
      await svc.reconciler.reconcile(connectionId);

      const read = async () => (await loadFleet(db, connectionId, svc.secrets))!;
      const newer = async () => {
        const f = await read();
        return f.fleet.generation > body.knownGeneration ? f : undefined;
      };
      const { fleet, settings } = await longPoll(
        svc.notifier,
        [topics.connection(connectionId)],
        waitMs,
        signal,
        newer,
        read,
      );
      // The agent now holds a fleet that serves the requests assigned up to this generation.
      await db('builder_requests')
        .where({ connection_id: connectionId, state: 'pending' })
        .whereNull('picked_up_at')
        .whereNotNull('assigned_generation')
        .where('assigned_generation', '<=', fleet.generation)
        .update({ picked_up_at: Date.now() });
      return {
        lease: 'held' as const,
        // Taken until the lease period after the end of the wait; answering early keeps it longer.
        leaseExpiresAt: new Date(leaseExpiresAt).toISOString(),
        fleet,
        settings,
        controlPlaneUrl: svc.publicUrl,
      };
    },
  };
}
