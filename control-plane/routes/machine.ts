// What machine-agents call: register once with the single-use registration token (and their
// CSR), long-poll their task, report BuildKit state and health, and say when they shut down.
import { isIP } from 'node:net';
import type { Knex } from 'knex';
import { parseCsr } from '../../common/pki';
import { builderServerName, type MachineTask } from '../../common/protocol';
import { checkServerCsr, CsrError } from '../ca';
import { num } from '../db';
import { HttpError, type RouteHandlers } from '../http';
import { longPoll, topics } from '../notifier';
import { connectionSettingsOf, awsConfigOf } from '../reconciler';
import { hashToken, newToken } from '../tokens';
import type { Services } from './services';

type Row = Record<string, unknown>;

/** BuildKit may fill this share of the volume, and keeps this share free. */
const gcMaxUsedShare = 0.8;
const gcMinFreeShare = 0.1;
const gib = 1024 ** 3;

function taskOf(machine: Row, volume: Row | undefined): MachineTask {
  const generation = num(machine.task_generation);
  const reason = String(machine.task_reason);
  if (machine.task_kind === 'buildkit' && volume && machine.server_certificate) {
    const bytes = num(volume.size_gb) * gib;
    return {
      kind: 'buildkit',
      generation,
      projectId: String(machine.task_project_id),
      volume: {
        id: String(volume.id),
        sizeGb: num(volume.size_gb),
        ...(volume.observed_provider_id ? { providerId: String(volume.observed_provider_id) } : {}),
      },
      serverName: builderServerName(String(machine.id)),
      serverCertificate: String(machine.server_certificate),
      clientCa: String(machine.ca_certificate),
      gc: {
        maxUsedBytes: Math.floor(bytes * gcMaxUsedShare),
        minFreeBytes: Math.floor(bytes * gcMinFreeShare),
      },
    };
  }
  return { kind: machine.task_kind === 'shutdown' ? 'shutdown' : 'idle', generation, reason };
}

/** Whether two CSRs are for the same key (their signatures prove its possession). */
async function sameCsrKey(stored: string, given: string): Promise<boolean> {
  try {
    const [a, b] = await Promise.all([parseCsr(stored), parseCsr(given)]);
    return Buffer.from(a.publicKey.rawData).equals(Buffer.from(b.publicKey.rawData));
  } catch {
    return false;
  }
}

/** What AWS says about the instance: its id and region, from the identity document. */
function identityClaims(document: string): { instanceId: string; region: string } {
  try {
    const doc = JSON.parse(document) as { instanceId?: unknown; region?: unknown };
    if (typeof doc.instanceId === 'string' && typeof doc.region === 'string') {
      return { instanceId: doc.instanceId, region: doc.region };
    }
  } catch {
    // fall through to the error below
  }
  throw new HttpError(
    400,
    'invalid_body',
    'field identity.document: must be the instance identity document (JSON with instanceId and region)',
    'identity.document',
  );
}

export function machineRoutes(
  svc: Services,
): Pick<RouteHandlers, 'machineRegister' | 'machineTask' | 'machineStatus' | 'machineShutdown'> {
  const { db } = svc;

  /** Any contact proves the machine-agent is alive; the first since a start changes its status. */
  const touch = async (machineId: string, extra: Row = {}): Promise<Row> => {
    const now = Date.now();
    const before = (await db('machines').where({ id: machineId }).first())!;
    await db('machines')
      .where({ id: machineId })
      .update({ session_at: now, ...extra });
    const wasAway =
      before.session_at === null || num(before.session_at) < num(before.started_at ?? 0);
    if (wasAway) await svc.reconciler.reconcile(String(before.connection_id));
    return before;
  };

  const loadTask = async (machineId: string) => {
    const machine = (await db('machines').where({ id: machineId }).first())!;
    const volume = machine.task_volume_id
      ? await db('volumes').where({ id: machine.task_volume_id }).first()
      : undefined;
    return taskOf(machine, volume);
  };

  return {
    async machineRegister({ body, log }) {
      const refused = new HttpError(
        401,
        'unauthorized',
        'the registration token is not valid for this machine',
        'registrationToken',
      );
      if (!svc.secrets.verifyRegistrationToken(body.machineId, body.registrationToken))
        throw refused;
      const machine = await db('machines').where({ id: body.machineId }).first();
      if (!machine) throw refused;
      // A machine-agent killed after we accepted its registration but before it stored the
      // answer (or whose answer was lost on the way) comes back with the same key: it may
      // register again as long as the token it was given has never been used. A different key,
      // or a machine that already called with its token, is refused: the token is single-use.
      const again = machine.registered_at !== null;
      if (
        again &&
        (machine.token_used_at !== null || !(await sameCsrKey(String(machine.csr), body.csr)))
      ) {
        throw new HttpError(
          409,
          'already_registered',
          `machine ${body.machineId} has already registered; its registration token cannot be used again`,
        );
      }
      if (machine.desired_state === 'deleted') {
        throw new HttpError(
          409,
          'conflict',
          `machine ${body.machineId} is being deleted (${machine.failure ?? 'no longer in the fleet'})`,
        );
      }
      if (body.platform !== machine.platform) {
        throw new HttpError(
          400,
          'invalid_body',
          `field platform: machine ${body.machineId} is a ${machine.platform} machine, not ${body.platform}`,
          'platform',
        );
      }
      const host = body.endpoint.host;
      if (
        host === '0.0.0.0' ||
        host === '::' ||
        (isIP(host) === 0 && !/^[A-Za-z0-9.-]+$/.test(host))
      ) {
        throw new HttpError(
          400,
          'invalid_body',
          `field endpoint.host: ${host} is not an address clients can reach; advertise the machine's IP or DNS name`,
          'endpoint.host',
        );
      }
      try {
        await checkServerCsr(body.csr, body.machineId, host);
      } catch (err) {
        if (err instanceof CsrError) throw new HttpError(400, 'invalid_csr', err.message, 'csr');
        throw err;
      }
      const conn = (await db('connections').where({ id: machine.connection_id }).first())!;
      let instanceId: string | null = null;
      if (conn.provider === 'aws') {
        if (!body.identity) {
          throw new HttpError(
            400,
            'invalid_body',
            'field identity: is required on AWS (the IMDSv2 instance identity document and signature)',
            'identity',
          );
        }
        const claims = identityClaims(body.identity.document);
        const aws = awsConfigOf(conn);
        const observed = machine.observed_provider_id;
        if ((aws && claims.region !== aws.region) || (observed && observed !== claims.instanceId)) {
          throw new HttpError(
            403,
            'forbidden',
            `the instance identity (${claims.instanceId} in ${claims.region}) is not machine ${body.machineId}'s`,
            'identity',
          );
        }
        instanceId = claims.instanceId;
      }
      const machineToken = newToken('machine');
      const now = Date.now();
      const stillOurs = again
        ? (q: Knex.QueryBuilder) =>
            q.where({ token_hash: machine.token_hash }).whereNull('token_used_at')
        : (q: Knex.QueryBuilder) => q.whereNull('registered_at');
      const n = await stillOurs(db('machines').where({ id: body.machineId })).update({
        registered_at: machine.registered_at ?? now,
        session_at: now,
        token_hash: hashToken(machineToken),
        csr: body.csr,
        endpoint_host: host,
        endpoint_port: body.endpoint.port,
        agent_version: body.agentVersion,
        instance_id: instanceId,
      });
      if (!n)
        throw new HttpError(
          409,
          'already_registered',
          `machine ${body.machineId} has already registered`,
        );
      log.info(
        { machineId: body.machineId, endpoint: `${host}:${body.endpoint.port}`, again },
        again ? 'machine registered again (its first answer was lost)' : 'machine registered',
      );
      await svc.reconciler.reconcile(String(machine.connection_id));
      const settings = connectionSettingsOf(conn);
      return {
        machineToken,
        healthIntervalSeconds: Math.max(5, Math.floor(settings.machineLostAfterSeconds / 3)),
      };
    },

    async machineTask({ auth, query, signal }) {
      const machine = await touch(auth.machineId);
      const conn = (await db('connections')
        .where({ id: machine.connection_id })
        .first('settings'))!;
      // A long-poll must end (and count as contact) well within the lost-machine window.
      const maxWait = Math.floor(connectionSettingsOf(conn).machineLostAfterSeconds / 3);
      const waitMs = Math.min(query.wait, maxWait) * 1000;
      const newer = async () => {
        const task = await loadTask(auth.machineId);
        return task.generation > query.generation ? task : undefined;
      };
      const task = await longPoll(
        svc.notifier,
        [topics.machine(auth.machineId)],
        waitMs,
        signal,
        newer,
        () => loadTask(auth.machineId),
      );
      await db('machines').where({ id: auth.machineId }).update({ session_at: Date.now() });
      return task;
    },

    async machineStatus({ auth, body, log }) {
      const machine = (await db('machines').where({ id: auth.machineId }).first())!;
      const current = num(machine.task_generation);
      if (body.taskGeneration > current) {
        throw new HttpError(
          409,
          'conflict',
          `field taskGeneration: task ${body.taskGeneration} does not exist (the current task is ${current})`,
          'taskGeneration',
        );
      }
      const update: Row = { last_health_at: Date.now(), health: JSON.stringify(body.health) };
      const aboutCurrent = body.taskGeneration === current;
      const changed =
        aboutCurrent &&
        (num(machine.buildkit_generation ?? -1) !== current ||
          machine.buildkit_state !== body.buildkit ||
          (machine.buildkit_error ?? null) !== (body.error ?? null));
      if (aboutCurrent) {
        Object.assign(update, {
          buildkit_generation: current,
          buildkit_state: body.buildkit,
          buildkit_error: body.error ?? null,
        });
      }
      await touch(auth.machineId, update);
      if (changed) {
        log.info(
          {
            machineId: auth.machineId,
            taskGeneration: current,
            buildkit: body.buildkit,
            error: body.error,
          },
          'machine buildkit state',
        );
        await svc.reconciler.reconcile(auth.connectionId);
      }
      return {};
    },

    async machineShutdown({ auth, body, log }) {
      const now = Date.now();
      const machine = (await db('machines').where({ id: auth.machineId }).first())!;
      // Until it is back, the machine is starting again, not silent: its clocks restart now.
      await db('machines')
        .where({ id: auth.machineId })
        .update({
          session_at: null,
          buildkit_state: 'stopped',
          buildkit_error: null,
          ...(machine.desired_state === 'running' ? { started_at: now } : {}),
        });
      log.info({ machineId: auth.machineId, reason: body.reason }, 'machine shutting down');
      await svc.reconciler.reconcile(auth.connectionId);
      return {};
    },
  };
}
