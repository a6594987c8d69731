// The wire protocol of Slipway (DESIGN.md section 3), defined once and used by the control
// plane, the cloud-agent, the machine-agent and the CLI. JSON over HTTPS under /v1; every body,
// query and config that crosses a process boundary is parsed with one of these schemas.
import { z } from 'zod';

export const apiVersion = 'v1';

// ---------------------------------------------------------------------------------------------
// Identifiers, names, tokens

/** Resource ids are a kind prefix and random base62: `prj_4f9Kx...`. */
export const idPrefixes = {
  organization: 'org',
  token: 'tok',
  connection: 'con',
  project: 'prj',
  build: 'bld',
  machine: 'mch',
  volume: 'vol',
  audit: 'aud',
} as const;
export type IdKind = keyof typeof idPrefixes;

export const idSchema = (kind: IdKind) =>
  z.string().regex(new RegExp(`^${idPrefixes[kind]}_[A-Za-z0-9]{8,40}$`), {
    message: `must be a ${kind} id (${idPrefixes[kind]}_...)`,
  });

/** Names people type: connections, projects, organizations, tokens. */
export const nameSchema = z.string().regex(/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/, {
  message:
    'must be 1-63 lowercase letters, digits or dashes, starting and ending with a letter or digit',
});

/**
 * Bearer tokens: a kind prefix and 32 random bytes in base64url. Only their SHA-256 hash is
 * stored. Registration tokens are single-use, one per machine.
 */
export const tokenPrefixes = {
  user: 'swu_',
  connection: 'swc_',
  machine: 'swm_',
  registration: 'swr_',
} as const;
export type TokenKind = keyof typeof tokenPrefixes;
export const tokenPattern = /^sw[ucmr]_[A-Za-z0-9_-]{43}$/;

export const logLevels = ['trace', 'debug', 'info', 'warn', 'error'] as const;
/** SLIPWAY_LOG_LEVEL of every Slipway process; info by default. */
export const logLevelSchema = z
  .enum(logLevels, { message: `must be one of ${logLevels.join(', ')}` })
  .default('info');

export const platforms = ['linux/amd64', 'linux/arm64'] as const;
/** The platform this host builds natively, from Node's `process.arch`; null for any other. */
export function hostPlatform(arch: string = process.arch): Platform | null {
  if (arch === 'x64') return 'linux/amd64';
  if (arch === 'arm64') return 'linux/arm64';
  return null;
}

export const platformSchema = z.enum(platforms, {
  message: `must be one of ${platforms.join(', ')}`,
});
export type Platform = z.infer<typeof platformSchema>;

export const providers = ['local', 'aws'] as const;
export const providerSchema = z.enum(providers, { message: 'must be local or aws' });
export type Provider = z.infer<typeof providerSchema>;

const isoDate = z.string().datetime({ offset: true });

/** PEM text of one PKCS#10 request; the control plane parses and verifies it. */
export const csrSchema = z
  .string()
  .max(8192, { message: 'must be at most 8192 bytes' })
  .refine((s) => s.trimStart().startsWith('-----BEGIN CERTIFICATE REQUEST-----'), {
    message: 'must be a PEM certificate request (-----BEGIN CERTIFICATE REQUEST-----)',
  });

/** Long-poll wait in seconds (query `?wait=`); 0 answers at once. */
export const waitSecondsSchema = z.coerce.number().int().min(0).max(30).default(0);
export const defaultLongPollSeconds = 25;

// ---------------------------------------------------------------------------------------------
// Errors: a stable code and a sentence a user can act on; 4xx for anything the client sent.

export const errorCodes = [
  'invalid_body',
  'invalid_query',
  'invalid_header',
  /** Not HTTP/1.1 the server can parse (answered before any route). */
  'invalid_request',
  /** The request was not received in full in time (a slow or stalled client). */
  'request_timeout',
  'invalid_csr',
  'payload_too_large',
  'unsupported_media_type',
  'unauthorized',
  'forbidden',
  'not_found',
  'conflict',
  'already_exists',
  'already_registered',
  'lease_held',
  'unsupported_platform',
  'build_finished',
  'rate_limited',
  'internal',
] as const;
export type ErrorCode = (typeof errorCodes)[number];

export const errorBodySchema = z.object({
  error: z.object({
    code: z.enum(errorCodes),
    message: z.string(),
    /** The offending field as a dotted path, when one field is to blame. */
    field: z.string().optional(),
  }),
});
export type ErrorBody = z.infer<typeof errorBodySchema>;

// ---------------------------------------------------------------------------------------------
// Organizations and user tokens

export const organizationSchema = z.object({
  id: idSchema('organization'),
  name: nameSchema,
  createdAt: isoDate,
});
export type Organization = z.infer<typeof organizationSchema>;

export const tokenCreateSchema = z.object({ name: nameSchema }).strict();
export const tokenInfoSchema = z.object({
  id: idSchema('token'),
  name: nameSchema,
  kind: z.enum(['user', 'connection']),
  createdAt: isoDate,
  lastUsedAt: isoDate.nullable(),
});
export const tokenCreatedSchema = z.object({
  token: tokenInfoSchema,
  /** The secret itself, shown once. */
  secret: z.string().regex(tokenPattern),
});

// ---------------------------------------------------------------------------------------------
// Connections: one cloud account (or this host) and its agent

export const warmPoolSchema = z
  .object({
    /** Unassigned machines kept running, registered and waiting for a project. */
    running: z.number().int().min(0).max(50).default(0),
    /** Unassigned machines kept created but stopped (disk kept, no compute cost). */
    stopped: z.number().int().min(0).max(50).default(0),
  })
  .strict();

export const connectionSettingsSchema = z
  .object({
    /** Platforms this connection can build for; a request for another fails at once. */
    platforms: z.array(platformSchema).min(1).default(['linux/amd64']),
    /** A ready builder with no build for this long is stopped (its disk and volume kept). */
    idleTimeoutSeconds: z.number().int().min(10).max(86_400).default(600),
    /** A stopped builder idle for this long is deleted (its cache volume kept). */
    deleteAfterIdleSeconds: z
      .number()
      .int()
      .min(60)
      .max(90 * 86_400)
      .default(7 * 86_400),
    /** A machine older than this is replaced when it next goes idle. */
    maxMachineLifetimeSeconds: z
      .number()
      .int()
      .min(600)
      .max(365 * 86_400)
      .default(14 * 86_400),
    /** Never more machines than this in the connection, in any state but deleted. */
    maxMachines: z.number().int().min(1).max(1000).default(10),
    /** A builder request still pending after this fails with its last reason. */
    acquireDeadlineSeconds: z.number().int().min(5).max(3600).default(300),
    /** A machine that sends no health report for this long is declared lost. */
    machineLostAfterSeconds: z.number().int().min(10).max(3600).default(90),
    /** Size of a new project cache volume. */
    volumeSizeGb: z.number().int().min(1).max(16_384).default(50),
    warmPool: z.partialRecord(platformSchema, warmPoolSchema).default({}),
  })
  .strict();
export type ConnectionSettings = z.infer<typeof connectionSettingsSchema>;

/** Settings an AWS connection needs from its connection stack's outputs. */
export const awsConnectionConfigSchema = z
  .object({
    region: z
      .string()
      .regex(/^[a-z]{2}(-[a-z]+)+-\d$/, { message: 'must be an AWS region such as eu-west-1' }),
    /** Launch template id per platform, from the connection stack. */
    launchTemplates: z.partialRecord(platformSchema, z.string().regex(/^lt-[0-9a-f]{8,17}$/)),
    /** Private subnets (with their zones) builders may be placed in. */
    subnets: z
      .array(z.object({ id: z.string().regex(/^subnet-[0-9a-f]{8,17}$/), zone: z.string().min(3) }))
      .min(1),
    /** The BuildKit port the builder security group opens to the CLI's network. */
    buildkitPort: z.number().int().min(1).max(65_535).default(8372),
  })
  .strict();
export type AwsConnectionConfig = z.infer<typeof awsConnectionConfigSchema>;

export const connectionCreateSchema = z
  .object({
    name: nameSchema,
    provider: providerSchema,
    settings: connectionSettingsSchema.partial().optional(),
    aws: awsConnectionConfigSchema.optional(),
  })
  .strict()
  .superRefine((c, ctx) => {
    if (c.provider === 'aws' && !c.aws) {
      ctx.addIssue({
        code: 'custom',
        path: ['aws'],
        message: 'is required for provider aws (from the connection stack outputs)',
      });
    }
    if (c.provider === 'local' && c.aws) {
      ctx.addIssue({ code: 'custom', path: ['aws'], message: 'is only for provider aws' });
    }
  });
export const connectionUpdateSchema = z
  .object({
    settings: connectionSettingsSchema.partial(),
    aws: awsConnectionConfigSchema.optional(),
  })
  .strict();

export const agentInfoSchema = z.object({
  agentId: z.string(),
  version: z.string(),
  lastSeenAt: isoDate,
  leaseExpiresAt: isoDate,
  /** Generation of the desired fleet the agent last applied successfully. */
  appliedGeneration: z.number().int(),
  lastApplyResult: z.enum(['succeeded', 'failed', 'canceled']).nullable(),
  lastError: z.string().nullable(),
});

export const connectionSchema = z.object({
  id: idSchema('connection'),
  name: nameSchema,
  provider: providerSchema,
  settings: connectionSettingsSchema,
  aws: awsConnectionConfigSchema.nullable(),
  /** Generation of the desired fleet; it increases whenever the fleet changes. */
  generation: z.number().int(),
  agent: agentInfoSchema.nullable(),
  createdAt: isoDate,
});
export type Connection = z.infer<typeof connectionSchema>;
export const connectionCreatedSchema = z.object({
  connection: connectionSchema,
  /** The connection token for the cloud-agent, shown once. */
  token: z.string().regex(tokenPattern),
});

// ---------------------------------------------------------------------------------------------
// Projects: a cache and a builder per platform, bound to one connection

export const projectCreateSchema = z
  .object({
    name: nameSchema,
    /** Connection id or name. */
    connection: z.union([idSchema('connection'), nameSchema]),
  })
  .strict();
export const projectSchema = z.object({
  id: idSchema('project'),
  name: nameSchema,
  connectionId: idSchema('connection'),
  createdAt: isoDate,
});
export type Project = z.infer<typeof projectSchema>;

// ---------------------------------------------------------------------------------------------
// Builds and builders

export const buildCreateSchema = z
  .object({
    /** Project id or name. */
    project: z.union([idSchema('project'), nameSchema]),
    /** One entry per platform, each with the CSR of a key the CLI keeps to itself. */
    platforms: z
      .array(z.object({ platform: platformSchema, csr: csrSchema }).strict())
      .min(1)
      .max(platforms.length)
      .refine((p) => new Set(p.map((x) => x.platform)).size === p.length, {
        message: 'must not name a platform twice',
      }),
    /** The build must finish within this; client certificates expire with it. */
    deadlineSeconds: z.number().int().min(60).max(86_400).default(3600),
    /** Free text shown in listings (context path, tags). */
    description: z.string().max(500).optional(),
  })
  .strict();

export const acquirePaths = ['hot', 'warm', 'cold'] as const;
export type AcquirePath = (typeof acquirePaths)[number];

/** Milestones of one builder request, for the phase timings users see. */
export const builderPhasesSchema = z.object({
  requestedAt: isoDate,
  /** The agent received a fleet that serves this request. */
  pickedUpAt: isoDate.nullable(),
  /** The agent's apply that started the machine finished. */
  machineStartedAt: isoDate.nullable(),
  registeredAt: isoDate.nullable(),
  readyAt: isoDate.nullable(),
  /** The CLI received the ready answer. */
  answeredAt: isoDate.nullable(),
});

export const builderStates = ['pending', 'ready', 'failed', 'released'] as const;
export const builderSchema = z.object({
  platform: platformSchema,
  state: z.enum(builderStates),
  /** Why it is pending or failed, in words ("starting machine mch_..."); never empty then. */
  reason: z.string(),
  /** When pending: ask again after this long (long-polls make it mostly irrelevant). */
  retryAfterMs: z.number().int().nullable(),
  path: z.enum(acquirePaths).nullable(),
  machineId: idSchema('machine').nullable(),
  /** When ready: what buildctl needs. */
  endpoint: z.string().nullable(),
  serverName: z.string().nullable(),
  caCertificate: z.string().nullable(),
  clientCertificate: z.string().nullable(),
  phases: builderPhasesSchema,
});
export type Builder = z.infer<typeof builderSchema>;

export const buildStatuses = ['pending', 'running', 'succeeded', 'failed', 'canceled'] as const;
export const buildSchema = z.object({
  id: idSchema('build'),
  projectId: idSchema('project'),
  status: z.enum(buildStatuses),
  description: z.string().nullable(),
  createdBy: z.string().nullable(),
  createdAt: isoDate,
  deadline: isoDate,
  finishedAt: isoDate.nullable(),
  error: z.string().nullable(),
  /** Milliseconds the build itself took, as reported by the CLI. */
  buildMs: z.number().int().nullable(),
  builders: z.array(builderSchema),
});
export type Build = z.infer<typeof buildSchema>;

export const buildFinishSchema = z
  .object({
    result: z.enum(['succeeded', 'failed', 'canceled']),
    error: z.string().max(4096).optional(),
    buildMs: z.number().int().min(0).optional(),
  })
  .strict();
export const buildHeartbeatSchema = z.object({}).strict();
/**
 * A build whose CLI neither heartbeats nor long-polls its builders for this long fails and frees
 * its builders; heartbeat at least every third of it.
 */
export const buildHeartbeatTimeoutSeconds = 60;

// ---------------------------------------------------------------------------------------------
// Machines and volumes, as users see them

export const machineStatuses = [
  'creating', // in the desired fleet, not yet created by the agent
  'booting', // created and running, not yet registered
  'idle', // registered, no task (warm standby)
  'starting', // BuildKit task handed out, not yet ready
  'ready', // BuildKit answering over mTLS
  'stopping',
  'stopped',
  'deleting',
  'deleted',
  'lost', // stopped reporting health
  'failed', // could not be created (capacity, errors)
] as const;
export type MachineStatus = (typeof machineStatuses)[number];

export const machineHealthSchema = z
  .object({
    buildkitdAlive: z.boolean(),
    buildkitdRestarts: z.number().int().min(0),
    cacheBytesUsed: z.number().int().min(0),
    cacheBytesTotal: z.number().int().min(0),
    inodesUsed: z.number().int().min(0),
    inodesTotal: z.number().int().min(0),
    /** A sentence about the last problem (a restart, a full disk). */
    lastEvent: z.string().max(1000).optional(),
  })
  .strict();
export type MachineHealth = z.infer<typeof machineHealthSchema>;

export const machineSchema = z.object({
  id: idSchema('machine'),
  connectionId: idSchema('connection'),
  platform: platformSchema,
  projectId: idSchema('project').nullable(),
  volumeId: idSchema('volume').nullable(),
  desiredState: z.enum(['running', 'stopped', 'deleted']),
  status: z.enum(machineStatuses),
  endpoint: z.string().nullable(),
  createdAt: isoDate,
  registeredAt: isoDate.nullable(),
  readyAt: isoDate.nullable(),
  idleSince: isoDate.nullable(),
  lastHealthAt: isoDate.nullable(),
  health: machineHealthSchema.nullable(),
});
export type Machine = z.infer<typeof machineSchema>;

export const volumeSchema = z.object({
  id: idSchema('volume'),
  connectionId: idSchema('connection'),
  projectId: idSchema('project'),
  platform: platformSchema,
  sizeGb: z.number().int(),
  status: z.enum(['creating', 'available', 'in-use', 'deleting', 'deleted']),
  attachedTo: idSchema('machine').nullable(),
  createdAt: isoDate,
});
export type Volume = z.infer<typeof volumeSchema>;

// ---------------------------------------------------------------------------------------------
// Audit records: every converge's preview diff, drift reports, orphan removals

export const changeSummarySchema = z.record(z.string(), z.number().int());
export const resourceStepSchema = z.object({
  op: z.string(),
  urn: z.string(),
  type: z.string(),
  name: z.string(),
  /** Properties that differ, for updates and replaces. */
  diffs: z.array(z.string()).optional(),
});

export const auditKinds = ['converge', 'drift', 'orphans', 'recovery'] as const;
export const auditRecordSchema = z.object({
  id: idSchema('audit'),
  connectionId: idSchema('connection'),
  kind: z.enum(auditKinds),
  generation: z.number().int().nullable(),
  result: z.enum(['succeeded', 'failed', 'canceled', 'previewed']).nullable(),
  summary: changeSummarySchema,
  steps: z.array(resourceStepSchema),
  /** The Pulumi preview diff as text; secrets are masked by the engine. */
  diff: z.string(),
  error: z.string().nullable(),
  agentId: z.string().nullable(),
  createdAt: isoDate,
});
export type AuditRecord = z.infer<typeof auditRecordSchema>;

// ---------------------------------------------------------------------------------------------
// The cloud-agent's sync call: POST /v1/agent/sync?wait=25

export const observedMachineSchema = z
  .object({
    id: idSchema('machine'),
    state: z.enum(['pending', 'running', 'stopping', 'stopped', 'terminated', 'missing']),
    /** Where its BuildKit will listen (private IP on AWS, 127.0.0.1 locally). */
    address: z.string().max(255).optional(),
    zone: z.string().max(64).optional(),
    /** EC2 instance id or local process id. */
    providerId: z.string().max(128).optional(),
  })
  .strict();
export const observedVolumeSchema = z
  .object({
    id: idSchema('volume'),
    state: z.enum(['creating', 'available', 'in-use', 'deleting', 'missing']),
    zone: z.string().max(64).optional(),
    attachedTo: idSchema('machine').optional(),
    providerId: z.string().max(128).optional(),
  })
  .strict();
export const observationSchema = z
  .object({
    observedAt: isoDate,
    machines: z.array(observedMachineSchema).max(5000),
    volumes: z.array(observedVolumeSchema).max(5000),
  })
  .strict();
export type Observation = z.infer<typeof observationSchema>;

export const capacityFailureSchema = z
  .object({
    machineId: idSchema('machine'),
    platform: platformSchema,
    /** The provider's words, e.g. "InsufficientInstanceCapacity in eu-west-1a". */
    reason: z.string().max(2000),
  })
  .strict();

export const applyReportSchema = z
  .object({
    generation: z.number().int().min(0),
    kind: z.enum(['converge', 'recovery']).default('converge'),
    result: z.enum(['succeeded', 'failed', 'canceled']),
    startedAt: isoDate,
    finishedAt: isoDate,
    summary: changeSummarySchema,
    steps: z.array(resourceStepSchema).max(10_000),
    diff: z.string().max(2_000_000),
    error: z.string().max(20_000).optional(),
    capacityFailures: z.array(capacityFailureSchema).max(1000).default([]),
    /** Resources tagged for the connection but absent from the stack, which the agent removed. */
    orphansRemoved: z.array(z.string().max(256)).max(1000).default([]),
  })
  .strict();
export type ApplyReport = z.infer<typeof applyReportSchema>;

export const driftReportSchema = z
  .object({
    checkedAt: isoDate,
    summary: changeSummarySchema,
    steps: z.array(resourceStepSchema).max(10_000),
    diff: z.string().max(2_000_000),
  })
  .strict();

export const syncRequestSchema = z
  .object({
    /** Stable per agent installation (kept in its data directory), so a restart keeps the lease. */
    agentId: z.string().uuid(),
    agentVersion: z.string().max(64),
    /** Generation of the last fleet the agent received; the call returns at once when newer. */
    knownGeneration: z.number().int().min(0),
    observation: observationSchema,
    /** Reports since the last sync, oldest first: an apply (preview diff included) or drift. */
    applies: z.array(applyReportSchema).max(20).default([]),
    drift: driftReportSchema.optional(),
  })
  .strict();
export type SyncRequest = z.infer<typeof syncRequestSchema>;

export const desiredMachineSchema = z.object({
  id: idSchema('machine'),
  platform: platformSchema,
  state: z.enum(['running', 'stopped']),
  /** The cache volume attached to it, if assigned to a project. */
  volumeId: idSchema('volume').nullable(),
  /**
   * Single-use secret the machine registers with, present until it has registered. The fleet
   * program passes it to the machine as a Pulumi secret.
   */
  registrationToken: z.string().regex(tokenPattern).nullable(),
  /** AWS: the zone to place it in (that of its volume). */
  zone: z.string().nullable(),
});
export type DesiredMachine = z.infer<typeof desiredMachineSchema>;

export const desiredVolumeSchema = z.object({
  id: idSchema('volume'),
  projectId: idSchema('project'),
  platform: platformSchema,
  sizeGb: z.number().int(),
  zone: z.string().nullable(),
});
export type DesiredVolume = z.infer<typeof desiredVolumeSchema>;

export const desiredFleetSchema = z.object({
  connectionId: idSchema('connection'),
  provider: providerSchema,
  generation: z.number().int(),
  machines: z.array(desiredMachineSchema),
  volumes: z.array(desiredVolumeSchema),
  aws: awsConnectionConfigSchema.nullable(),
});
export type DesiredFleet = z.infer<typeof desiredFleetSchema>;

/**
 * An agent's lease on its connection lasts this long after each sync ends; an agent keeps it by
 * syncing (also with `wait=0` during a long apply). Another agent is told to wait until it lapses.
 */
export const agentLeaseSeconds = 120;

export const syncResponseSchema = z.discriminatedUnion('lease', [
  z.object({
    lease: z.literal('held'),
    leaseExpiresAt: isoDate,
    fleet: desiredFleetSchema,
    settings: connectionSettingsSchema,
    /** The control plane's URL for machine-agents, as it wants machines to reach it. */
    controlPlaneUrl: z.string().url(),
  }),
  z.object({
    lease: z.literal('wait'),
    /** Another agent holds the connection; try again after this. */
    retryAfterMs: z.number().int(),
    reason: z.string(),
  }),
]);
export type SyncResponse = z.infer<typeof syncResponseSchema>;

// ---------------------------------------------------------------------------------------------
// The machine-agent: register, task long-poll, status, shutdown

export const instanceIdentitySchema = z
  .object({
    /**
     * The IMDSv2 instance identity document (JSON text) and its PKCS#7 signature, base64 as IMDS
     * serves it from /latest/dynamic/instance-identity/rsa2048 (RSA-SHA256, verified with AWS's
     * per-region RSA certificate).
     */
    document: z.string().max(8192),
    signature: z.string().max(8192),
  })
  .strict();

/** The TLS server name of a machine's BuildKit, which clients pass as --tlsservername. */
export function builderServerName(machineId: string): string {
  return `${machineId}.builders.slipway.internal`;
}

export const machineRegisterSchema = z
  .object({
    machineId: idSchema('machine'),
    registrationToken: z
      .string()
      .regex(tokenPattern, { message: 'must be a registration token (swr_...)' }),
    platform: platformSchema,
    /** Where clients reach its BuildKit: host (IP or name) and TCP port. */
    endpoint: z
      .object({ host: z.string().min(1).max(255), port: z.number().int().min(1).max(65_535) })
      .strict(),
    /** CSR for the BuildKit server key, generated on the machine. */
    csr: csrSchema,
    agentVersion: z.string().max(64),
    identity: instanceIdentitySchema.optional(),
  })
  .strict();
export const machineRegisteredSchema = z.object({
  machineToken: z.string().regex(tokenPattern),
  /** Send a status report at least this often, or be declared lost. */
  healthIntervalSeconds: z.number().int(),
});

export const buildkitTaskSchema = z.object({
  kind: z.literal('buildkit'),
  /** Increases with every new task; the agent restarts BuildKit when it changes. */
  generation: z.number().int(),
  projectId: idSchema('project'),
  volume: z.object({
    id: idSchema('volume'),
    sizeGb: z.number().int(),
    /**
     * AWS: the EBS volume id (vol-0abc...), as the cloud-agent observed it. The machine finds the
     * attached device by it (/dev/disk/by-id/nvme-Amazon_Elastic_Block_Store_vol0abc...).
     */
    providerId: z.string().max(128).optional(),
  }),
  serverName: z.string(),
  serverCertificate: z.string(),
  /** The machine's CA, which signs each build's client certificate. */
  clientCa: z.string(),
  gc: z.object({ maxUsedBytes: z.number().int(), minFreeBytes: z.number().int() }),
});
export const machineTaskSchema = z.discriminatedUnion('kind', [
  buildkitTaskSchema,
  z.object({ kind: z.literal('idle'), generation: z.number().int(), reason: z.string() }),
  z.object({ kind: z.literal('shutdown'), generation: z.number().int(), reason: z.string() }),
]);
export type MachineTask = z.infer<typeof machineTaskSchema>;
export type BuildkitTask = z.infer<typeof buildkitTaskSchema>;

export const machineStatusSchema = z
  .object({
    /** The task generation this report is about. */
    taskGeneration: z.number().int().min(0),
    buildkit: z.enum(['stopped', 'starting', 'ready', 'failed']),
    error: z.string().max(4000).optional(),
    health: machineHealthSchema,
  })
  .strict();
export const machineShutdownSchema = z.object({ reason: z.string().max(1000) }).strict();

// ---------------------------------------------------------------------------------------------
// How a machine-agent is configured (environment or a JSON file written by user data)

export const machineAgentConfigSchema = z
  .object({
    apiUrl: z.string().url(),
    machineId: idSchema('machine'),
    registrationToken: z.string().regex(tokenPattern),
    provider: providerSchema,
    platform: platformSchema,
    /** Where the agent keeps its key, token, certificates and buildkitd config. */
    stateDir: z.string().min(1),
    /** Address BuildKit listens on, and the one advertised to clients. */
    listenHost: z.string().default('0.0.0.0'),
    advertiseHost: z.string().optional(),
    buildkitPort: z.number().int().min(1).max(65_535).default(8372),
    /** Local provider: the directory that holds one directory per volume id. */
    volumesDir: z.string().optional(),
    /** PEM bundle to trust for the control plane's HTTPS, if not a public CA. */
    controlPlaneCaFile: z.string().optional(),
  })
  .strict();
export type MachineAgentConfig = z.infer<typeof machineAgentConfigSchema>;

/** The environment variables that map to MachineAgentConfig fields. */
export const machineAgentEnv = {
  apiUrl: 'SLIPWAY_API_URL',
  machineId: 'SLIPWAY_MACHINE_ID',
  registrationToken: 'SLIPWAY_REGISTRATION_TOKEN',
  provider: 'SLIPWAY_PROVIDER',
  platform: 'SLIPWAY_PLATFORM',
  stateDir: 'SLIPWAY_STATE_DIR',
  listenHost: 'SLIPWAY_LISTEN_HOST',
  advertiseHost: 'SLIPWAY_ADVERTISE_HOST',
  buildkitPort: 'SLIPWAY_BUILDKIT_PORT',
  volumesDir: 'SLIPWAY_VOLUMES_DIR',
  controlPlaneCaFile: 'SLIPWAY_CONTROL_PLANE_CA_FILE',
} as const satisfies Record<keyof MachineAgentConfig, string>;

// ---------------------------------------------------------------------------------------------
// How the cloud-agent is configured (environment, or a JSON file with --config)

export const cloudAgentConfigSchema = z
  .object({
    apiUrl: z.string().url(),
    connectionToken: z
      .string()
      .regex(tokenPattern, { message: 'must be a connection token (swc_...)' })
      .startsWith(tokenPrefixes.connection, { message: 'must be a connection token (swc_...)' }),
    /** Stacks, the agent's identity and reports; for the local provider, machines and volumes. */
    dataDir: z.string().min(1),
    /** PEM bundle to trust for the control plane's HTTPS, if not a public CA. */
    controlPlaneCaFile: z.string().min(1).optional(),
    /** Pulumi backend: file:// under the data directory unless set (s3://bucket?region=... on AWS). */
    stateBackend: z
      .string()
      .regex(/^(file|s3):\/\/.+/, { message: 'must be a file:// or s3:// URL' })
      .optional(),
    /** `passphrase` (local) or a KMS key such as `awskms://alias/slipway-state?region=eu-west-1`. */
    secretsProvider: z
      .string()
      .regex(/^(passphrase|awskms:\/\/.+)$/, { message: 'must be passphrase or awskms://...' })
      .default('passphrase'),
    /** The passphrase of a passphrase secrets provider; generated into the data directory if unset. */
    statePassphrase: z.string().min(16).optional(),
    /** How often the stack is compared with what really exists (a refresh preview); 0: never. */
    driftCheckSeconds: z.coerce.number().int().min(0).max(86_400).default(600),
    /** Local provider: the machine-agent's argv as a JSON array; defaults to this installation's. */
    machineAgentCommand: z.array(z.string().min(1)).min(1).optional(),
    /** AWS: an EC2 endpoint other than AWS's own (an emulator). */
    ec2Endpoint: z.string().url().optional(),
    logLevel: logLevelSchema,
  })
  .strict();
export type CloudAgentConfig = z.infer<typeof cloudAgentConfigSchema>;

/** The environment variables that map to CloudAgentConfig fields. */
export const cloudAgentEnv = {
  apiUrl: 'SLIPWAY_API_URL',
  connectionToken: 'SLIPWAY_CONNECTION_TOKEN',
  dataDir: 'SLIPWAY_DATA_DIR',
  controlPlaneCaFile: 'SLIPWAY_CONTROL_PLANE_CA_FILE',
  stateBackend: 'SLIPWAY_STATE_BACKEND',
  secretsProvider: 'SLIPWAY_SECRETS_PROVIDER',
  statePassphrase: 'SLIPWAY_STATE_PASSPHRASE',
  driftCheckSeconds: 'SLIPWAY_DRIFT_CHECK_SECONDS',
  machineAgentCommand: 'SLIPWAY_MACHINE_AGENT_COMMAND',
  ec2Endpoint: 'SLIPWAY_EC2_ENDPOINT',
  logLevel: 'SLIPWAY_LOG_LEVEL',
} as const satisfies Record<keyof CloudAgentConfig, string>;
