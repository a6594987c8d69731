// The promises Slipway makes about what it creates in an AWS account, as Pulumi policies that
// run on the connection stack and on every fleet stack: fleet resources carry their connection's
// tags, instances use IMDSv2, storage is encrypted, BuildKit is not open to the internet unless
// allowed, buckets are private, and builders hold no permissions.
import * as aws from '@pulumi/aws';
import {
  validateResourceOfType,
  type ReportViolation,
  type ResourceValidationPolicy,
  type StackValidationPolicy,
} from '@pulumi/policy';
import { slipwayTags } from '../tags';

type Tags = Record<string, string> | undefined;
const has = (tags: Tags, key: string) => typeof tags?.[key] === 'string' && tags[key] !== '';
const report = (violations: string[], reportViolation: ReportViolation) => {
  for (const v of violations) reportViolation(v);
};

// ---------------------------------------------------------------------------------------------
// Tags

export function instanceTagViolations(p: { tags?: Tags; volumeTags?: Tags }): string[] {
  const v: string[] = [];
  if (!has(p.tags, slipwayTags.connection)) {
    v.push(`An instance must carry the ${slipwayTags.connection} tag at creation (tags).`);
  }
  if (!has(p.tags, slipwayTags.machine)) {
    v.push(`An instance must carry the ${slipwayTags.machine} tag at creation (tags).`);
  }
  if (p.volumeTags?.[slipwayTags.connection] !== p.tags?.[slipwayTags.connection]) {
    v.push(
      `An instance's root volume must be tagged for the same connection at launch (volumeTags.${slipwayTags.connection}); the agent may not create untagged volumes.`,
    );
  }
  return v;
}

export function volumeTagViolations(p: { tags?: Tags }): string[] {
  const v: string[] = [];
  for (const key of [slipwayTags.connection, slipwayTags.volume]) {
    if (!has(p.tags, key)) v.push(`A cache volume must carry the ${key} tag at creation (tags).`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// IMDSv2

interface MetadataOptions {
  httpTokens?: string;
  httpPutResponseHopLimit?: number;
}

export function metadataViolations(
  what: string,
  m: MetadataOptions | undefined,
  requireHopLimit: boolean,
): string[] {
  const v: string[] = [];
  if (m?.httpTokens !== 'required')
    v.push(`${what} must require IMDSv2 (metadataOptions.httpTokens: "required").`);
  const hop = m?.httpPutResponseHopLimit;
  if (requireHopLimit ? hop !== 1 : hop !== undefined && hop > 1) {
    v.push(
      `${what} must keep the IMDS hop limit at 1, so build containers cannot reach it (httpPutResponseHopLimit: 1).`,
    );
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Encryption

interface EbsSettings {
  encrypted?: boolean | string;
}

const isTrue = (v: boolean | string | undefined) => v === true || v === 'true';

export function blockDeviceViolations(
  what: string,
  devices: { deviceName?: string; ebs?: EbsSettings }[] | undefined,
): string[] {
  return (devices ?? [])
    .filter((d) => d.ebs && !isTrue(d.ebs.encrypted))
    .map((d) =>
      `${what}: the EBS volume ${d.deviceName ?? ''} must be encrypted (ebs.encrypted: true).`.replace(
        '  ',
        ' ',
      ),
    );
}

export function instanceStorageViolations(p: {
  rootBlockDevice?: EbsSettings;
  ebsBlockDevices?: (EbsSettings & { deviceName?: string })[];
}): string[] {
  const v: string[] = [];
  // Without rootBlockDevice the launch template's (encrypted) mapping applies.
  if (p.rootBlockDevice && p.rootBlockDevice.encrypted === false) {
    v.push('An instance root volume must be encrypted (rootBlockDevice.encrypted).');
  }
  for (const d of p.ebsBlockDevices ?? []) {
    if (!isTrue(d.encrypted))
      v.push(`An instance EBS volume ${d.deviceName ?? ''} must be encrypted.`);
  }
  return v;
}

// ---------------------------------------------------------------------------------------------
// Ingress from the whole internet

export interface IngressConfig {
  allowBuildkitFromInternet: boolean;
  buildkitPort: number;
}

export interface IngressRule {
  protocol: string;
  fromPort?: number;
  toPort?: number;
  cidrs: string[];
}

const wholeInternet = (cidr: string) => /\/0+$/.test(cidr.trim());

export function ingressViolations(rules: IngressRule[], config: IngressConfig): string[] {
  const v: string[] = [];
  for (const rule of rules) {
    for (const cidr of rule.cidrs.filter(wholeInternet)) {
      const onlyBuildkit =
        ['tcp', '6'].includes(rule.protocol) &&
        rule.fromPort === config.buildkitPort &&
        rule.toPort === config.buildkitPort;
      if (config.allowBuildkitFromInternet && onlyBuildkit) continue;
      const ports =
        rule.fromPort === rule.toPort
          ? `port ${rule.fromPort}`
          : `ports ${rule.fromPort}-${rule.toPort}`;
      v.push(
        onlyBuildkit
          ? `BuildKit (${ports}) is open to ${cidr}; name the CLI's network, or set this policy's allowBuildkitFromInternet to true.`
          : `Ingress on ${rule.protocol === '-1' ? 'every port' : ports} is open to ${cidr}; builders accept only BuildKit from named networks.`,
      );
    }
  }
  return v;
}

const ingressConfigSchema = {
  properties: {
    allowBuildkitFromInternet: {
      type: 'boolean' as const,
      default: false,
      description: 'Allow the BuildKit port (mutual TLS) from 0.0.0.0/0 and ::/0.',
    },
    buildkitPort: { type: 'integer' as const, default: 8372, description: 'The BuildKit port.' },
  },
};

// ---------------------------------------------------------------------------------------------
// The policies

export const fleetResourcesTagged: ResourceValidationPolicy = {
  name: 'slipway-fleet-resources-tagged',
  description: "Builder instances and cache volumes carry their connection's tags from creation.",
  enforcementLevel: 'mandatory',
  validateResource: [
    validateResourceOfType(aws.ec2.Instance, (i, _args, r) => report(instanceTagViolations(i), r)),
    validateResourceOfType(aws.ebs.Volume, (vol, _args, r) => report(volumeTagViolations(vol), r)),
  ],
};

export const imdsV2Required: ResourceValidationPolicy = {
  name: 'slipway-imdsv2-required',
  description:
    'Instances, launch templates and image builds require IMDSv2 (hop limit 1 for builders).',
  enforcementLevel: 'mandatory',
  validateResource: [
    validateResourceOfType(aws.ec2.Instance, (i, _a, r) =>
      report(metadataViolations('An instance', i.metadataOptions, false), r),
    ),
    validateResourceOfType(aws.ec2.LaunchTemplate, (lt, _a, r) =>
      report(metadataViolations('A launch template', lt.metadataOptions, true), r),
    ),
    validateResourceOfType(aws.imagebuilder.InfrastructureConfiguration, (ic, _a, r) =>
      report(metadataViolations('An image build', ic.instanceMetadataOptions, false), r),
    ),
  ],
};

export const storageEncrypted: ResourceValidationPolicy = {
  name: 'slipway-storage-encrypted',
  description: 'Every EBS volume Slipway creates is encrypted.',
  enforcementLevel: 'mandatory',
  validateResource: [
    validateResourceOfType(aws.ebs.Volume, (vol, _a, r) => {
      if (vol.encrypted !== true) r('A cache volume must be encrypted (encrypted: true).');
    }),
    validateResourceOfType(aws.ec2.Instance, (i, _a, r) => report(instanceStorageViolations(i), r)),
    validateResourceOfType(aws.ec2.LaunchTemplate, (lt, _a, r) =>
      report(blockDeviceViolations('A launch template', lt.blockDeviceMappings), r),
    ),
    validateResourceOfType(aws.imagebuilder.ImageRecipe, (recipe, _a, r) =>
      report(blockDeviceViolations('An image recipe', recipe.blockDeviceMappings), r),
    ),
  ],
};

export const buildkitNotPublic: ResourceValidationPolicy = {
  name: 'slipway-buildkit-not-public',
  description:
    'No security group rule admits the whole internet, except BuildKit when explicitly allowed.',
  enforcementLevel: 'mandatory',
  configSchema: ingressConfigSchema,
  validateResource: [
    validateResourceOfType(aws.ec2.SecurityGroup, (sg, args, r) =>
      report(
        ingressViolations(
          (sg.ingress ?? []).map((i) => ({
            protocol: i.protocol,
            fromPort: i.fromPort,
            toPort: i.toPort,
            cidrs: [...(i.cidrBlocks ?? []), ...(i.ipv6CidrBlocks ?? [])],
          })),
          args.getConfig<IngressConfig>(),
        ),
        r,
      ),
    ),
    validateResourceOfType(aws.ec2.SecurityGroupRule, (rule, args, r) => {
      if (rule.type !== 'ingress') return;
      const cidrs = [...(rule.cidrBlocks ?? []), ...(rule.ipv6CidrBlocks ?? [])];
      report(
        ingressViolations(
          [{ protocol: rule.protocol, fromPort: rule.fromPort, toPort: rule.toPort, cidrs }],
          args.getConfig<IngressConfig>(),
        ),
        r,
      );
    }),
    validateResourceOfType(aws.vpc.SecurityGroupIngressRule, (rule, args, r) => {
      const cidrs = [rule.cidrIpv4, rule.cidrIpv6].filter(
        (c): c is string => typeof c === 'string',
      );
      report(
        ingressViolations(
          [{ protocol: rule.ipProtocol, fromPort: rule.fromPort, toPort: rule.toPort, cidrs }],
          args.getConfig<IngressConfig>(),
        ),
        r,
      );
    }),
  ],
};

interface StackResource {
  type: string;
  urn: string;
  props: Record<string, unknown>;
}

const bucketType = 'aws:s3/bucket:Bucket';

/** Buckets whose public access is not fully blocked, or that have no default encryption. */
export function bucketViolations(resources: StackResource[]): { urn: string; message: string }[] {
  const forBucket = (type: string, bucket: unknown) =>
    resources.filter((r) => r.type === type && r.props.bucket === bucket);
  const v: { urn: string; message: string }[] = [];
  for (const b of resources.filter((r) => r.type === bucketType)) {
    const name = b.props.bucket;
    const blocks = forBucket('aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock', name);
    const fullyBlocked = blocks.some((p) =>
      ['blockPublicAcls', 'blockPublicPolicy', 'ignorePublicAcls', 'restrictPublicBuckets'].every(
        (k) => p.props[k] === true,
      ),
    );
    if (!fullyBlocked)
      v.push({
        urn: b.urn,
        message: `Bucket ${String(name)} must block all public access (a BucketPublicAccessBlock with all four settings true).`,
      });
    const encryption = forBucket(
      'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration',
      name,
    );
    if (encryption.length === 0)
      v.push({
        urn: b.urn,
        message: `Bucket ${String(name)} must have default encryption (a BucketServerSideEncryptionConfiguration).`,
      });
  }
  return v;
}

/** Builder roles (tagged slipway:role=builder) that were given any permission. */
export function builderRoleViolations(
  resources: StackResource[],
): { urn: string; message: string }[] {
  const v: { urn: string; message: string }[] = [];
  const roles = resources.filter(
    (r) =>
      r.type === 'aws:iam/role:Role' && (r.props.tags as Tags)?.[slipwayTags.role] === 'builder',
  );
  for (const role of roles) {
    const name = role.props.name;
    const inline = role.props.inlinePolicies as unknown[] | undefined;
    const managed = role.props.managedPolicyArns as unknown[] | undefined;
    if ((inline?.length ?? 0) > 0 || (managed?.length ?? 0) > 0) {
      v.push({ urn: role.urn, message: `The builder role ${String(name)} must have no policies.` });
    }
    for (const grant of resources) {
      const grants =
        ([
          'aws:iam/rolePolicy:RolePolicy',
          'aws:iam/rolePolicyAttachment:RolePolicyAttachment',
        ].includes(grant.type) &&
          grant.props.role === name) ||
        (grant.type === 'aws:iam/policyAttachment:PolicyAttachment' &&
          ((grant.props.roles as unknown[] | undefined) ?? []).includes(name));
      if (grants) {
        v.push({
          urn: grant.urn,
          message: `The builder role ${String(name)} must have no policies; remove this grant.`,
        });
      }
    }
  }
  return v;
}

export const bucketsPrivate: StackValidationPolicy = {
  name: 'slipway-buckets-private',
  description: 'Buckets block all public access and are encrypted by default.',
  enforcementLevel: 'mandatory',
  validateStack: (args, reportViolation) => {
    for (const v of bucketViolations(args.resources)) reportViolation(v.message, v.urn);
  },
};

export const buildersWithoutPermissions: StackValidationPolicy = {
  name: 'slipway-builders-without-permissions',
  description: 'The builder role grants nothing: builders have no AWS permissions at all.',
  enforcementLevel: 'mandatory',
  validateStack: (args, reportViolation) => {
    for (const v of builderRoleViolations(args.resources)) reportViolation(v.message, v.urn);
  },
};

export const slipwayPolicies = [
  fleetResourcesTagged,
  imdsV2Required,
  storageEncrypted,
  buildkitNotPublic,
  bucketsPrivate,
  buildersWithoutPermissions,
];
