// The connection stack's configuration (`pulumi config set slipway:...`), parsed once from the
// raw strings Pulumi hands the program. Every problem is collected and reported in one error that
// names each key and the command that fixes it, before any resource is declared.
import * as pulumi from '@pulumi/pulumi';
import { z } from 'zod';
import { idSchema, platformSchema, platforms, type Platform } from '../common/protocol';

export const configNamespace = 'slipway';
const defaultVpcCidr = '10.80.0.0/16';
const defaultAvailabilityZones = 2;

const cidrV4 = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})\/(\d{1,2})$/;
const cidrV6 = /^[0-9a-fA-F:]+\/(\d{1,3})$/;

function isCidr(value: string): boolean {
  const v4 = cidrV4.exec(value);
  if (v4) return v4.slice(1, 5).every((o) => Number(o) <= 255) && Number(v4[5]) <= 32;
  const v6 = cidrV6.exec(value);
  return v6 !== null && value.includes(':') && Number(v6[1]) <= 128;
}

/** True when a CIDR is the whole IPv4 or IPv6 internet (any address with prefix length 0). */
export function isWholeInternet(cidr: string): boolean {
  return /\/0+$/.test(cidr.trim());
}

const cidrSchema = z
  .string()
  .refine(isCidr, { message: 'must be a CIDR block such as 10.0.0.0/8' });

/** Graviton instance families carry a `g` right after the generation digit (c7g, m8g, t4g). */
export function isGravitonInstanceType(instanceType: string): boolean {
  return /^[a-z]+\d+g[a-z-]*\./.test(instanceType);
}

const instanceTypeSchema = z
  .string()
  .regex(/^[a-z][a-z0-9-]*\d+[a-z-]*\.[a-z0-9]+$/, { message: 'must be an EC2 instance type' });

/** Task sizes Fargate accepts: CPU units and the memory (MiB) allowed with each. */
export const fargateSizes: Record<number, { min: number; max: number; step: number }> = {
  256: { min: 512, max: 2048, step: 512 },
  512: { min: 1024, max: 4096, step: 1024 },
  1024: { min: 2048, max: 8192, step: 1024 },
  2048: { min: 4096, max: 16384, step: 1024 },
  4096: { min: 8192, max: 30720, step: 1024 },
};

const logRetentionValues = [
  1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288,
  3653,
] as const;

export const defaultInstanceTypes: Record<Platform, string> = {
  'linux/amd64': 'c7i.xlarge',
  'linux/arm64': 'c7g.xlarge',
};

/** The raw schema: types and ranges of each key on its own. */
const rawSchema = z
  .object({
    controlPlaneUrl: z
      .string()
      .url({ message: 'must be a URL' })
      .refine((u) => u.startsWith('https://'), {
        message: 'must be an https:// URL (the agent and builders reach it over TLS)',
      }),
    connectionId: idSchema('connection').optional(),
    connectionToken: z
      .string()
      .regex(/^swc_[A-Za-z0-9_-]{43}$/, { message: 'must be a connection token (swc_...)' })
      .optional(),
    agentImage: z
      .string()
      .regex(/^[a-z0-9][a-zA-Z0-9._/:@-]*$/, {
        message: 'must be a container image reference such as ghcr.io/you/slipway-agent:1.0',
      })
      .optional(),
    platforms: z
      .array(platformSchema)
      .min(1, { message: 'must name at least one platform' })
      .refine((p) => new Set(p).size === p.length, { message: 'must not name a platform twice' })
      .default(['linux/amd64']),
    vpcId: z
      .string()
      .regex(/^vpc-[0-9a-f]{8,17}$/, { message: 'must be a VPC id (vpc-...)' })
      .optional(),
    privateSubnetIds: z
      .array(z.string().regex(/^subnet-[0-9a-f]{8,17}$/, { message: 'must be a subnet id' }))
      .min(1, { message: 'must name at least one subnet' })
      .optional(),
    vpcCidr: cidrSchema
      .refine(
        (c) => cidrV4.test(c) && Number(c.split('/')[1]) >= 16 && Number(c.split('/')[1]) <= 22,
        {
          message: 'must be an IPv4 CIDR block between /16 and /22',
        },
      )
      .optional(),
    availabilityZones: z
      .number()
      .int()
      .min(1, { message: 'must be 1-6' })
      .max(6, { message: 'must be 1-6' })
      .optional(),
    natGateways: z
      .enum(['single', 'onePerAz'], { message: 'must be single or onePerAz' })
      .optional(),
    buildkitIngressCidrs: z.array(cidrSchema).min(1, { message: 'must name at least one CIDR' }),
    allowBuildkitFromInternet: z.boolean().default(false),
    buildkitPort: z
      .number()
      .int()
      .min(1024, { message: 'must be a port from 1024 to 65535' })
      .max(65_535, { message: 'must be a port from 1024 to 65535' })
      .default(8372),
    builderEgress: z.enum(['web', 'all'], { message: 'must be web or all' }).default('web'),
    instanceTypes: z.partialRecord(platformSchema, instanceTypeSchema).default({}),
    rootVolumeGb: z
      .number()
      .int()
      .min(20, { message: 'must be 20-1000 (GiB)' })
      .max(1000, { message: 'must be 20-1000 (GiB)' })
      .default(30),
    agentCpu: z
      .number()
      .int()
      .refine((c) => c in fargateSizes, { message: 'must be 256, 512, 1024, 2048 or 4096' })
      .default(512),
    agentMemory: z.number().int().default(2048),
    agentArchitecture: z
      .enum(['X86_64', 'ARM64'], { message: 'must be X86_64 or ARM64' })
      .default('X86_64'),
    logRetentionDays: z
      .number()
      .int()
      .refine((d) => (logRetentionValues as readonly number[]).includes(d), {
        message: `must be one of ${logRetentionValues.join(', ')}`,
      })
      .default(30),
    imageRevision: z
      .string()
      .regex(/^[a-z0-9-]{1,32}$/, { message: 'must be 1-32 lowercase letters, digits or dashes' })
      .default('1'),
    machineAgentBundle: z.string().min(1).default('dist/machine-agent.cjs'),
  })
  .strict();

type RawConfig = z.infer<typeof rawSchema>;

export type NetworkConfig =
  | { mode: 'new'; cidr: string; availabilityZones: number; natGateways: 'single' | 'onePerAz' }
  | { mode: 'existing'; vpcId: string; privateSubnetIds: string[] };

export interface StackConfig {
  controlPlaneUrl: string;
  /** Present once the connection exists in the control plane (the second `pulumi up`). */
  connection?: { id: string; token: string; agentImage: string };
  platforms: Platform[];
  network: NetworkConfig;
  buildkit: { port: number; ingressCidrs: string[]; allowFromInternet: boolean };
  builderEgress: 'web' | 'all';
  instanceTypes: Record<Platform, string>;
  rootVolumeGb: number;
  agent: { cpu: number; memory: number; architecture: 'X86_64' | 'ARM64' };
  logRetentionDays: number;
  imageRevision: string;
  machineAgentBundle: string;
}

/** Keys whose values are JSON (arrays, objects, numbers, booleans) rather than plain strings. */
const jsonKeys = new Set([
  'platforms',
  'privateSubnetIds',
  'availabilityZones',
  'buildkitIngressCidrs',
  'allowBuildkitFromInternet',
  'buildkitPort',
  'instanceTypes',
  'rootVolumeGb',
  'agentCpu',
  'agentMemory',
  'logRetentionDays',
]);

const knownKeys = Object.keys(rawSchema.shape);

/** An example command per key, shown next to every problem with that key. */
const fixes: Record<string, string> = {
  controlPlaneUrl: 'pulumi config set slipway:controlPlaneUrl https://slipway.example.com',
  connectionId:
    'pulumi config set slipway:connectionId con_... (printed when you created the connection)',
  connectionToken: 'pulumi config set --secret slipway:connectionToken swc_...',
  agentImage: 'pulumi config set slipway:agentImage <registry>/slipway-agent:<version>',
  platforms: "pulumi config set --path 'slipway:platforms[0]' linux/amd64",
  vpcId: 'pulumi config set slipway:vpcId vpc-0123456789abcdef0',
  privateSubnetIds:
    "pulumi config set --path 'slipway:privateSubnetIds[0]' subnet-0123456789abcdef0",
  vpcCidr: 'pulumi config set slipway:vpcCidr 10.80.0.0/16',
  availabilityZones: 'pulumi config set slipway:availabilityZones 2',
  natGateways: 'pulumi config set slipway:natGateways single',
  buildkitIngressCidrs:
    "pulumi config set --path 'slipway:buildkitIngressCidrs[0]' 203.0.113.0/24 (the network your CLI connects from)",
  allowBuildkitFromInternet: 'pulumi config set slipway:allowBuildkitFromInternet true',
  buildkitPort: 'pulumi config set slipway:buildkitPort 8372',
  builderEgress: 'pulumi config set slipway:builderEgress web',
  instanceTypes: 'pulumi config set --path \'slipway:instanceTypes["linux/arm64"]\' c7g.xlarge',
  rootVolumeGb: 'pulumi config set slipway:rootVolumeGb 30',
  agentCpu: 'pulumi config set slipway:agentCpu 512',
  agentMemory: 'pulumi config set slipway:agentMemory 2048',
  agentArchitecture: 'pulumi config set slipway:agentArchitecture X86_64',
  logRetentionDays: 'pulumi config set slipway:logRetentionDays 30',
  imageRevision: 'pulumi config set slipway:imageRevision 2',
  machineAgentBundle: 'npm run bundle (or pulumi config set slipway:machineAgentBundle <path>)',
};

export interface ConfigProblem {
  key: string;
  message: string;
  fix?: string;
}

export class StackConfigError extends Error {
  readonly code = 'invalid_stack_config';
  constructor(readonly problems: ConfigProblem[]) {
    const lines = problems.map(
      (p) => `  - ${p.key}: ${p.message}${p.fix ? `\n      fix: ${p.fix}` : ''}`,
    );
    super(
      `The Slipway stack configuration has ${problems.length} problem${problems.length === 1 ? '' : 's'}; nothing was changed:\n${lines.join('\n')}`,
    );
  }
}

function problem(key: string, message: string): ConfigProblem {
  const bare = key.split(/[.[]/)[0] ?? key;
  return { key: `${configNamespace}:${key}`, message, fix: fixes[bare] };
}

function levenshtein(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function suggest(key: string): string {
  const best = knownKeys
    .map((k) => ({ k, d: levenshtein(key.toLowerCase(), k.toLowerCase()) }))
    .sort((x, y) => x.d - y.d)[0];
  return best && best.d <= 3 ? `; did you mean slipway:${best.k}?` : '';
}

/** Pulumi hands the program strings; arrays, objects, numbers and booleans arrive as JSON text. */
function decode(key: string, text: string, problems: ConfigProblem[]): unknown {
  if (!jsonKeys.has(key)) return text;
  try {
    return JSON.parse(text);
  } catch {
    problems.push(problem(key, `is not valid here: ${JSON.stringify(text)}`));
    return undefined;
  }
}

/**
 * Parses the `slipway:` keys of the stack configuration. `raw` maps bare keys (no namespace) to
 * the strings Pulumi stores; `secretKeys` are the bare keys set with `--secret`.
 */
export function parseStackConfig(
  raw: Record<string, string>,
  secretKeys: ReadonlySet<string> = new Set(),
): StackConfig {
  const problems: ConfigProblem[] = [];
  const decoded: Record<string, unknown> = {};
  for (const [key, text] of Object.entries(raw)) {
    if (!knownKeys.includes(key)) {
      problems.push({
        key: `${configNamespace}:${key}`,
        message: `is not a Slipway setting${suggest(key)}`,
        fix: `pulumi config rm ${configNamespace}:${key}`,
      });
      continue;
    }
    const value = decode(key, text, problems);
    if (value !== undefined) decoded[key] = value;
  }

  const parsed = rawSchema.safeParse(decoded);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      const path = issue.path.map((p) => (typeof p === 'number' ? `[${p}]` : String(p)));
      const key = path.join('.').replace(/\.\[/g, '[');
      const missing = issue.code === 'invalid_type' && decoded[String(issue.path[0])] === undefined;
      problems.push(problem(key, missing ? 'is required' : issue.message));
    }
  }
  crossCheck(validFields(decoded), decoded, secretKeys, problems);
  if (problems.length > 0 || !parsed.success) throw new StackConfigError(problems);
  return normalize(parsed.data);
}

/** Each key that is valid on its own (defaults applied), so rules across keys still run. */
function validFields(decoded: Record<string, unknown>): Partial<RawConfig> {
  const valid: Record<string, unknown> = {};
  for (const [key, schema] of Object.entries(rawSchema.shape)) {
    const result = (schema as z.ZodType).safeParse(decoded[key]);
    if (result.success && result.data !== undefined) valid[key] = result.data;
  }
  return valid as Partial<RawConfig>;
}

/** Rules that involve more than one key. */
function crossCheck(
  c: Partial<RawConfig>,
  decoded: Record<string, unknown>,
  secretKeys: ReadonlySet<string>,
  problems: ConfigProblem[],
): void {
  if (c.vpcId && !c.privateSubnetIds) {
    problems.push(
      problem('privateSubnetIds', "is required with slipway:vpcId (the builders' subnets)"),
    );
  }
  if (c.privateSubnetIds && !c.vpcId) {
    problems.push(
      problem('vpcId', 'is required with slipway:privateSubnetIds (the VPC they are in)'),
    );
  }
  if (c.vpcId) {
    for (const key of ['vpcCidr', 'availabilityZones', 'natGateways'] as const) {
      if (decoded[key] !== undefined) {
        problems.push(problem(key, 'only applies to a new VPC; remove it or remove slipway:vpcId'));
      }
    }
  }

  if (c.connectionId && !c.connectionToken) {
    problems.push(problem('connectionToken', 'is required with slipway:connectionId'));
  }
  if (c.connectionToken && !c.connectionId) {
    problems.push(problem('connectionId', 'is required with slipway:connectionToken'));
  }
  if (c.connectionId && !c.agentImage) {
    problems.push(problem('agentImage', 'is required to run the cloud-agent for the connection'));
  }
  if (c.connectionToken && !secretKeys.has('connectionToken')) {
    problems.push(
      problem('connectionToken', 'must be stored as a secret (set it again with --secret)'),
    );
  }

  // Read from the raw list, so a neighbouring bad entry does not hide this one.
  const cidrs = Array.isArray(decoded.buildkitIngressCidrs) ? decoded.buildkitIngressCidrs : [];
  cidrs.forEach((cidr, i) => {
    if (typeof cidr === 'string' && isWholeInternet(cidr) && !c.allowBuildkitFromInternet) {
      problems.push(
        problem(
          `buildkitIngressCidrs[${i}]`,
          `${cidr} opens BuildKit to the whole internet; name your network instead, or set slipway:allowBuildkitFromInternet true to accept that (mutual TLS still applies)`,
        ),
      );
    }
  });

  for (const [platform, type] of Object.entries(c.instanceTypes ?? {}) as [Platform, string][]) {
    const graviton = isGravitonInstanceType(type);
    if (platform === 'linux/arm64' && !graviton) {
      problems.push(
        problem(`instanceTypes["${platform}"]`, `${type} is not an arm64 (Graviton) instance type`),
      );
    }
    if (platform === 'linux/amd64' && graviton) {
      problems.push(
        problem(`instanceTypes["${platform}"]`, `${type} is an arm64 (Graviton) instance type`),
      );
    }
  }

  const size = c.agentCpu === undefined ? undefined : fargateSizes[c.agentCpu];
  if (size && c.agentMemory !== undefined) {
    const m = c.agentMemory;
    if (m < size.min || m > size.max || (m - size.min) % size.step !== 0) {
      problems.push(
        problem(
          'agentMemory',
          `${m} MiB does not fit ${c.agentCpu} CPU units on Fargate: choose ${size.min}-${size.max} in steps of ${size.step}`,
        ),
      );
    }
  }
}

function normalize(c: RawConfig): StackConfig {
  const network: NetworkConfig =
    c.vpcId && c.privateSubnetIds
      ? { mode: 'existing', vpcId: c.vpcId, privateSubnetIds: c.privateSubnetIds }
      : {
          mode: 'new',
          cidr: c.vpcCidr ?? defaultVpcCidr,
          availabilityZones: c.availabilityZones ?? defaultAvailabilityZones,
          natGateways: c.natGateways ?? 'single',
        };
  const instanceTypes = { ...defaultInstanceTypes };
  for (const p of platforms) {
    const chosen = c.instanceTypes[p];
    if (chosen) instanceTypes[p] = chosen;
  }
  return {
    controlPlaneUrl: c.controlPlaneUrl,
    connection:
      c.connectionId && c.connectionToken && c.agentImage
        ? { id: c.connectionId, token: c.connectionToken, agentImage: c.agentImage }
        : undefined,
    platforms: c.platforms,
    network,
    buildkit: {
      port: c.buildkitPort,
      ingressCidrs: c.buildkitIngressCidrs,
      allowFromInternet: c.allowBuildkitFromInternet,
    },
    builderEgress: c.builderEgress,
    instanceTypes,
    rootVolumeGb: c.rootVolumeGb,
    agent: { cpu: c.agentCpu, memory: c.agentMemory, architecture: c.agentArchitecture },
    logRetentionDays: c.logRetentionDays,
    imageRevision: c.imageRevision,
    machineAgentBundle: c.machineAgentBundle,
  };
}

/**
 * Reads the `slipway:` keys from the running Pulumi program. The SDK keeps which keys are
 * secret in an internal function; without it the `--secret` check is skipped, not failed.
 */
export function readStackConfig(): StackConfig {
  const prefix = `${configNamespace}:`;
  const raw: Record<string, string> = {};
  const secretKeys = new Set<string>();
  const runtime = pulumi.runtime as unknown as { isConfigSecret?: (key: string) => boolean };
  for (const [key, value] of Object.entries(pulumi.runtime.allConfig())) {
    if (!key.startsWith(prefix)) continue;
    const bare = key.slice(prefix.length);
    raw[bare] = value;
    if (runtime.isConfigSecret ? runtime.isConfigSecret(key) : true) secretKeys.add(bare);
  }
  return parseStackConfig(raw, secretKeys);
}
