// The Slipway builder machine image, one per architecture, built by EC2 Image Builder from
// Amazon Linux 2023: components, recipe, infrastructure and distribution configuration, and the
// build itself. What goes into the image (the artifact list, the component document, the
// recipe) is computed by plain functions; BuilderImage turns it into resources.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import type { Platform } from '../../common/protocol';
import { PrivateBucket } from '../../stacks/bucket';
import { imageBuildPolicyDocument, trustPolicyDocument } from '../../stacks/iam';

export const builderImageDir = __dirname;
export const repoRoot = path.resolve(__dirname, '..', '..');

/** Where the artifacts land on the build instance (a tmpfs, gone from the image). */
export const instanceArtifactsDir = '/tmp/slipway-image';

export type Arch = 'amd64' | 'arm64';
export const archOf = (platform: Platform): Arch =>
  platform === 'linux/arm64' ? 'arm64' : 'amd64';

/** The pins in versions.env, as a map. */
export function readVersions(
  file = path.join(builderImageDir, 'versions.env'),
): Record<string, string> {
  const versions: Record<string, string> = {};
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim());
    if (m) versions[m[1]!] = m[2]!;
  }
  return versions;
}

export interface ArtifactFile {
  /** Path under the artifacts directory, on S3 (below the prefix) and on the instance. */
  key: string;
  /** Absolute path of the file on this machine. */
  source: string;
}

export interface ArtifactSources {
  /** The bundled machine-agent (`npm run bundle` writes dist/machine-agent.cjs). */
  machineAgentBundle: string;
  /** The machine-agent's systemd unit. */
  machineAgentUnit: string;
}

export const defaultArtifactSources: ArtifactSources = {
  machineAgentBundle: path.join(repoRoot, 'dist', 'machine-agent.cjs'),
  machineAgentUnit: path.join(repoRoot, 'machine', 'systemd', 'slipway-machine-agent.service'),
};

/** Every file the image is made from. */
export function imageArtifacts(sources: ArtifactSources): ArtifactFile[] {
  const own = [
    'versions.env',
    'scripts/provision.sh',
    'scripts/build-tools.sh',
    'scripts/validate.sh',
    'go/buildkit/go.mod',
    'go/buildkit/go.sum',
    'go/buildkit/tools.go',
    'go/runc/go.mod',
    'go/runc/go.sum',
    'go/runc/tools.go',
    'kernel/99-slipway-buildkit.conf',
    'kernel/slipway-buildkit-modules.conf',
  ].map((key) => ({ key, source: path.join(builderImageDir, key) }));
  return [
    ...own,
    { key: 'machine/machine-agent.cjs', source: sources.machineAgentBundle },
    { key: 'machine/slipway-machine-agent.service', source: sources.machineAgentUnit },
  ];
}

export class ImageArtifactsError extends Error {
  readonly code = 'missing_image_artifacts';
  constructor(readonly missing: string[]) {
    super(
      `The builder image cannot be made; missing file(s):\n${missing.map((m) => `  - ${m}`).join('\n')}\n` +
        'Build the machine-agent bundle with `npm run bundle` (or point slipway:machineAgentBundle at it); nothing was changed.',
    );
  }
}

/** A digest of every artifact's path and content: it names what the image is made from. */
export function artifactsDigest(files: ArtifactFile[], revision: string): string {
  const missing = files.filter((f) => !existsSync(f.source)).map((f) => f.source);
  if (missing.length > 0) throw new ImageArtifactsError(missing);
  const h = createHash('sha256').update(`revision ${revision}\n`);
  for (const f of [...files].sort((a, b) => a.key.localeCompare(b.key))) {
    h.update(`${f.key} ${createHash('sha256').update(readFileSync(f.source)).digest('hex')}\n`);
  }
  return h.digest('hex').slice(0, 12);
}

interface DocumentStep {
  name: string;
  action: 'S3Download' | 'ExecuteBash';
  inputs: unknown;
}

/**
 * The Image Builder component document. JSON is valid YAML, which the service parses. Build:
 * download the artifacts, provision, validate. Test (on an instance booted from the new image):
 * validate again, so the units are checked as systemd sees them at boot.
 */
export function componentDocument(bucket: string, prefix: string, files: ArtifactFile[]): string {
  const download = (subset: ArtifactFile[]): DocumentStep => ({
    name: 'DownloadArtifacts',
    action: 'S3Download',
    inputs: subset.map((f) => ({
      source: `s3://${bucket}/${prefix}${f.key}`,
      destination: `${instanceArtifactsDir}/${f.key}`,
    })),
  });
  const run = (name: string, script: string): DocumentStep => ({
    name,
    action: 'ExecuteBash',
    inputs: {
      commands: [`bash ${instanceArtifactsDir}/scripts/${script} ${instanceArtifactsDir}`],
    },
  });
  const forValidation = files.filter(
    (f) => f.key === 'versions.env' || f.key === 'scripts/validate.sh',
  );
  return JSON.stringify(
    {
      name: 'slipway-builder',
      description:
        'Slipway builder: pinned BuildKit and runc, Node.js, the machine-agent, kernel settings',
      schemaVersion: 1.0,
      phases: [
        { name: 'build', steps: [download(files), run('Provision', 'provision.sh')] },
        { name: 'validate', steps: [run('Validate', 'validate.sh')] },
        {
          name: 'test',
          steps: [download(forValidation), run('ValidateBootedImage', 'validate.sh')],
        },
      ],
    },
    null,
    2,
  );
}

/** The AWS-managed Amazon Linux 2023 image the recipe starts from; x.x.x takes the newest. */
export function parentImageArn(partition: string, region: string, arch: Arch): string {
  const name = arch === 'arm64' ? 'amazon-linux-2023-arm64' : 'amazon-linux-2023-x86';
  return `arn:${partition}:imagebuilder:${region}:aws:image/${name}/x.x.x`;
}

/** Instance types for the image build itself (small: it compiles BuildKit and runc once). */
export const imageBuildInstanceTypes: Record<Arch, string> = {
  amd64: 'c7i.large',
  arm64: 'c7g.large',
};

export interface BuilderImageArgs {
  platforms: Platform[];
  /** A private subnet with egress, where the build instance runs. */
  subnetId: pulumi.Input<string>;
  securityGroupId: pulumi.Input<string>;
  /** Unique per account and region: Image Builder names are. */
  namePrefix: string;
  /** Changing it rebuilds the images on the newest Amazon Linux 2023. */
  revision: string;
  sources: ArtifactSources;
  tags: Record<string, string>;
}

export class BuilderImage extends pulumi.ComponentResource {
  /** The AMI id per platform. */
  readonly imageIds: Partial<Record<Platform, pulumi.Output<string>>> = {};
  readonly artifactsBucket: PrivateBucket;
  readonly digest: string;

  constructor(name: string, args: BuilderImageArgs, opts?: pulumi.ComponentResourceOptions) {
    super('slipway:aws:BuilderImage', name, {}, opts);
    const parent = { parent: this };
    const files = imageArtifacts(args.sources);
    this.digest = artifactsDigest(files, args.revision);
    const prefix = `builder/${this.digest}/`;
    const region = aws.getRegionOutput({}, parent).region;
    const partition = aws.getPartitionOutput({}, parent).partition;

    this.artifactsBucket = new PrivateBucket(
      `${name}-artifacts`,
      { namePrefix: 'slipway-image-artifacts-', tags: args.tags },
      parent,
    );
    const uploads = files.map(
      (f) =>
        new aws.s3.BucketObjectv2(
          `${name}-${f.key.replace(/[^a-zA-Z0-9]+/g, '-')}`,
          {
            bucket: this.artifactsBucket.name,
            key: `${prefix}${f.key}`,
            source: new pulumi.asset.FileAsset(f.source),
            tags: args.tags,
          },
          { parent: this.artifactsBucket },
        ),
    );

    const role = new aws.iam.Role(
      `${name}-build`,
      {
        description: 'EC2 Image Builder build instances for Slipway builder images',
        assumeRolePolicy: JSON.stringify(trustPolicyDocument('ec2.amazonaws.com')),
        tags: args.tags,
      },
      parent,
    );
    const managed = ['AmazonSSMManagedInstanceCore', 'EC2InstanceProfileForImageBuilder'];
    const attachments = managed.map(
      (policy) =>
        new aws.iam.RolePolicyAttachment(
          `${name}-build-${policy}`,
          {
            role: role.name,
            policyArn: pulumi.interpolate`arn:${partition}:iam::aws:policy/${policy}`,
          },
          { parent: role },
        ),
    );
    const artifactsAccess = new aws.iam.RolePolicy(
      `${name}-build-artifacts`,
      {
        role: role.name,
        policy: this.artifactsBucket.arn.apply((arn) =>
          JSON.stringify(
            imageBuildPolicyDocument({ artifactsBucketArn: arn, artifactsPrefix: prefix }),
          ),
        ),
      },
      { parent: role },
    );
    const profile = new aws.iam.InstanceProfile(
      `${name}-build`,
      { role: role.name, tags: args.tags },
      parent,
    );

    const component = new aws.imagebuilder.Component(
      `${name}-component`,
      {
        name: `${args.namePrefix}-builder-${this.digest}`,
        version: '1.0.0',
        platform: 'Linux',
        supportedOsVersions: ['Amazon Linux 2023'],
        description: 'Provisions and validates a Slipway builder',
        data: this.artifactsBucket.name.apply((bucket) => componentDocument(bucket, prefix, files)),
        tags: args.tags,
      },
      { parent: this, dependsOn: uploads },
    );

    for (const platform of args.platforms) {
      const arch = archOf(platform);
      const archTags = { ...args.tags, 'slipway:platform': platform };
      const recipe = new aws.imagebuilder.ImageRecipe(
        `${name}-${arch}`,
        {
          name: `${args.namePrefix}-builder-${arch}-${this.digest}`,
          version: '1.0.0',
          parentImage: pulumi
            .all([partition, region])
            .apply(([p, r]) => parentImageArn(p, r, arch)),
          components: [{ componentArn: component.arn }],
          blockDeviceMappings: [
            {
              deviceName: '/dev/xvda',
              ebs: {
                volumeSize: 20,
                volumeType: 'gp3',
                encrypted: 'true',
                deleteOnTermination: 'true',
              },
            },
          ],
          tags: archTags,
        },
        parent,
      );
      const infrastructure = new aws.imagebuilder.InfrastructureConfiguration(
        `${name}-${arch}`,
        {
          name: `${args.namePrefix}-builder-${arch}`,
          description: `Builds the Slipway ${platform} builder image`,
          instanceProfileName: profile.name,
          instanceTypes: [imageBuildInstanceTypes[arch]],
          subnetId: args.subnetId,
          securityGroupIds: [args.securityGroupId],
          terminateInstanceOnFailure: true,
          instanceMetadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 },
          resourceTags: archTags,
          tags: archTags,
        },
        { parent: this, dependsOn: [...attachments, artifactsAccess] },
      );
      const distribution = new aws.imagebuilder.DistributionConfiguration(
        `${name}-${arch}`,
        {
          name: `${args.namePrefix}-builder-${arch}`,
          distributions: [
            {
              region,
              amiDistributionConfiguration: {
                name: `${args.namePrefix}-builder-${arch}-{{ imagebuilder:buildDate }}`,
                description: `Slipway ${platform} builder (${this.digest})`,
                amiTags: archTags,
              },
            },
          ],
          tags: archTags,
        },
        parent,
      );
      const image = new aws.imagebuilder.Image(
        `${name}-${arch}`,
        {
          imageRecipeArn: recipe.arn,
          infrastructureConfigurationArn: infrastructure.arn,
          distributionConfigurationArn: distribution.arn,
          imageTestsConfiguration: { imageTestsEnabled: true, timeoutMinutes: 60 },
          tags: archTags,
        },
        { parent: this, customTimeouts: { create: '2h' } },
      );
      this.imageIds[platform] = image.outputResources.apply((r) => {
        const ami = r[0]?.amis[0]?.image;
        if (!ami)
          throw new Error(`Image Builder reported no AMI for the ${platform} builder image`);
        return ami;
      });
    }
    this.registerOutputs({ imageIds: this.imageIds, digest: this.digest });
  }
}
