// Database rows as the API shows them (protocol.ts schemas): ISO times, parsed JSON, and the
// builder answer with what buildctl needs once it is ready.
import type {
  AuditRecord,
  Build,
  Builder,
  Connection,
  Machine,
  MachineHealth,
  Organization,
  Project,
  Volume,
} from '../common/protocol';
import { builderServerName } from '../common/protocol';
import { iso, isoOrNull, json, num, numOrNull } from './db';
import { awsConfigOf, connectionSettingsOf } from './reconciler';

type Row = Record<string, unknown>;
const s = (v: unknown) => String(v);
const sOrNull = (v: unknown) => (v === null || v === undefined ? null : String(v));

export function organizationView(row: Row): Organization {
  return { id: s(row.id), name: s(row.name), createdAt: iso(num(row.created_at)) };
}

export function tokenView(row: Row) {
  return {
    id: s(row.id),
    name: s(row.name),
    kind: row.kind as 'user' | 'connection',
    createdAt: iso(num(row.created_at)),
    lastUsedAt: isoOrNull(row.last_used_at),
  };
}

export function connectionView(row: Row): Connection {
  return {
    id: s(row.id),
    name: s(row.name),
    provider: row.provider as Connection['provider'],
    settings: connectionSettingsOf(row),
    aws: awsConfigOf(row),
    generation: num(row.generation),
    agent:
      row.agent_id === null || row.agent_id === undefined
        ? null
        : {
            agentId: s(row.agent_id),
            version: s(row.agent_version),
            lastSeenAt: iso(num(row.agent_last_seen_at)),
            leaseExpiresAt: iso(num(row.lease_expires_at)),
            appliedGeneration: num(row.applied_generation),
            lastApplyResult: sOrNull(row.last_apply_result) as 'succeeded' | null,
            lastError: sOrNull(row.last_error),
          },
    createdAt: iso(num(row.created_at)),
  };
}

export function projectView(row: Row): Project {
  return {
    id: s(row.id),
    name: s(row.name),
    connectionId: s(row.connection_id),
    createdAt: iso(num(row.created_at)),
  };
}

export function endpointOf(machine: Row | undefined): string | null {
  if (!machine || machine.endpoint_host === null || machine.endpoint_host === undefined)
    return null;
  const host = s(machine.endpoint_host);
  return `tcp://${host.includes(':') ? `[${host}]` : host}:${num(machine.endpoint_port)}`;
}

export function builderView(req: Row, machine: Row | undefined): Builder {
  const ready = req.state === 'ready' && machine !== undefined;
  return {
    platform: req.platform as Builder['platform'],
    state: req.state as Builder['state'],
    reason: s(req.reason),
    retryAfterMs: req.state === 'pending' ? 1000 : null,
    path: sOrNull(req.path) as Builder['path'],
    machineId: sOrNull(req.machine_id),
    endpoint: ready ? endpointOf(machine) : null,
    serverName: ready ? builderServerName(s(machine.id)) : null,
    caCertificate: ready ? sOrNull(machine.ca_certificate) : null,
    clientCertificate: ready ? sOrNull(req.client_certificate) : null,
    phases: {
      requestedAt: iso(num(req.requested_at)),
      pickedUpAt: isoOrNull(req.picked_up_at),
      machineStartedAt: isoOrNull(req.machine_started_at),
      registeredAt: isoOrNull(req.registered_at),
      readyAt: isoOrNull(req.ready_at),
      answeredAt: isoOrNull(req.answered_at),
    },
  };
}

export function buildView(build: Row, requests: Row[], machines: Map<string, Row>): Build {
  return {
    id: s(build.id),
    projectId: s(build.project_id),
    status: build.status as Build['status'],
    description: sOrNull(build.description),
    createdBy: sOrNull(build.created_by),
    createdAt: iso(num(build.created_at)),
    deadline: iso(num(build.deadline)),
    finishedAt: isoOrNull(build.finished_at),
    error: sOrNull(build.error),
    buildMs: numOrNull(build.build_ms),
    builders: requests
      .filter((r) => r.build_id === build.id)
      .sort((a, b) => s(a.platform).localeCompare(s(b.platform)))
      .map((r) => builderView(r, r.machine_id ? machines.get(s(r.machine_id)) : undefined)),
  };
}

export function machineView(row: Row): Machine {
  return {
    id: s(row.id),
    connectionId: s(row.connection_id),
    platform: row.platform as Machine['platform'],
    projectId: sOrNull(row.project_id),
    volumeId: sOrNull(row.volume_id),
    desiredState: row.desired_state as Machine['desiredState'],
    status: row.status as Machine['status'],
    endpoint: endpointOf(row),
    createdAt: iso(num(row.created_at)),
    registeredAt: isoOrNull(row.registered_at),
    readyAt: isoOrNull(row.ready_at),
    idleSince: isoOrNull(row.idle_since),
    lastHealthAt: isoOrNull(row.last_health_at),
    health: json<MachineHealth | null>(row.health, null),
  };
}

export function volumeView(row: Row, attachedTo: string | null): Volume {
  return {
    id: s(row.id),
    connectionId: s(row.connection_id),
    projectId: s(row.project_id),
    platform: row.platform as Volume['platform'],
    sizeGb: num(row.size_gb),
    status: row.status as Volume['status'],
    attachedTo,
    createdAt: iso(num(row.created_at)),
  };
}

export function auditView(row: Row): AuditRecord {
  return {
    id: s(row.id),
    connectionId: s(row.connection_id),
    kind: row.kind as AuditRecord['kind'],
    generation: numOrNull(row.generation),
    result: sOrNull(row.result) as AuditRecord['result'],
    summary: json(row.summary, {}),
    steps: json(row.steps, []),
    diff: s(row.diff),
    error: sOrNull(row.error),
    agentId: sOrNull(row.agent_id),
    createdAt: iso(num(row.created_at)),
  };
}
