// The whole AWS connection as one component: network, fleet state (bucket and key), builder
// images and launch templates, and, once the connection exists in the control plane, its
// cloud-agent. Its outputs are what the control plane and the agent need.
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import {
  awsConnectionConfigSchema,
  type AwsConnectionConfig,
  type Platform,
} from '../common/protocol';
import { BuilderImage, type ArtifactSources } from '../images/builder/image';
import { CloudAgent } from './agent';
import { PrivateBucket } from './bucket';
import type { StackConfig } from './config';
import { keyPolicyDocument } from './iam';
import { BuilderLaunchTemplates } from './launch-templates';
import { Network, type ResolvedNetwork, type SubnetPlacement } from './network';
import { slipwayTags } from './tags';

/** The connection settings the control plane stores (`aws` of a connection), checked here. */
export function awsConnectionConfig(p: {
  region: string;
  launchTemplateIds: Partial<Record<Platform, string>>;
  subnets: SubnetPlacement[];
  buildkitPort: number;
}): AwsConnectionConfig {
  return awsConnectionConfigSchema.parse({
    region: p.region,
    launchTemplates: p.launchTemplateIds,
    subnets: p.subnets,
    buildkitPort: p.buildkitPort,
  });
}

/** Where the fleet stacks keep their state, and how they encrypt secrets, in Pulumi's URL forms. */
export function fleetBackend(p: { bucket: string; keyId: string; region: string }) {
  return {
    backendUrl: `s3://${p.bucket}?region=${p.region}`,
    secretsProvider: `awskms://${p.keyId}?region=${p.region}`,
  };
}

/** A name prefix unique to this stack, for AWS names that must be unique per account. */
export function stackNamePrefix(project: string, stack: string): string {
  const clean = `${project}-${stack}`
    .toLowerCase()
    .replace(/[^a-z0-9-]+/g, '-')
    .replace(/-+/g, '-');
  return `slipway-${clean}`.slice(0, 48).replace(/-$/, '');
}

export interface SlipwayConnectionArgs {
  config: StackConfig;
  /** The configured network with existing subnets looked up (resolveNetwork). */
  network: ResolvedNetwork;
  sources: ArtifactSources;
  project: string;
  stack: string;
}

export class SlipwayConnection extends pulumi.ComponentResource {
  readonly outputs: Record<string, pulumi.Input<unknown>>;

  constructor(name: string, args: SlipwayConnectionArgs, opts?: pulumi.ComponentResourceOptions) {
    super('slipway:aws:Connection', name, {}, opts);
    const parent = { parent: this };
    const c = args.config;
    const tags = { [slipwayTags.stack]: `${args.project}/${args.stack}` };
    const identity = aws.getCallerIdentityOutput({}, parent);
    const partition = aws.getPartitionOutput({}, parent).partition;
    const region = aws.getRegionOutput({}, parent).region;

    const network = new Network(
      `${name}-network`,
      {
        network: args.network,
        buildkitPort: c.buildkit.port,
        buildkitIngressCidrs: c.buildkit.ingressCidrs,
        builderEgress: c.builderEgress,
        controlPlaneUrl: c.controlPlaneUrl,
        tags,
      },
      parent,
    );
    const subnetIds = network.privateSubnets.apply((s) => s.map((x) => x.id));

    const stateKey = new aws.kms.Key(
      `${name}-state`,
      {
        description: 'Slipway fleet state and secrets',
        enableKeyRotation: true,
        deletionWindowInDays: 30,
        policy: pulumi
          .all([partition, identity.accountId])
          .apply(([p, account]) => JSON.stringify(keyPolicyDocument(p, account))),
        tags,
      },
      parent,
    );
    const state = new PrivateBucket(
      `${name}-state`,
      {
        namePrefix: 'slipway-fleet-state-',
        kmsKeyArn: stateKey.arn,
        noncurrentVersionDays: 90,
        tags,
      },
      parent,
    );
    const backend = pulumi
      .all([state.name, stateKey.keyId, region])
      .apply(([bucket, keyId, r]) => fleetBackend({ bucket, keyId, region: r }));

    const image = new BuilderImage(
      `${name}-image`,
      {
        platforms: c.platforms,
        subnetId: subnetIds.apply((ids) => ids[0]!),
        securityGroupId: network.imageBuildSecurityGroup.id,
        namePrefix: stackNamePrefix(args.project, args.stack),
        revision: c.imageRevision,
        sources: args.sources,
        tags,
      },
      parent,
    );
    const templates = new BuilderLaunchTemplates(
      `${name}-builders`,
      {
        platforms: c.platforms,
        instanceTypes: c.instanceTypes,
        imageIds: image.imageIds,
        securityGroupId: network.builderSecurityGroup.id,
        rootVolumeGb: c.rootVolumeGb,
        tags,
      },
      parent,
    );
    const templateIds = pulumi.all(
      Object.fromEntries(c.platforms.map((p) => [p, templates.templates[p]!.id])),
    ) as pulumi.Output<Partial<Record<Platform, string>>>;

    const awsConnection = pulumi
      .all([region, templateIds, network.privateSubnets])
      .apply(([r, launchTemplateIds, subnets]) =>
        awsConnectionConfig({
          region: r,
          launchTemplateIds,
          subnets,
          buildkitPort: c.buildkit.port,
        }),
      );

    this.outputs = {
      awsConnection,
      fleetStateBackendUrl: backend.backendUrl,
      fleetSecretsProvider: backend.secretsProvider,
      fleetStateBucket: state.name,
      fleetStateKmsKeyArn: stateKey.arn,
      vpcId: network.vpcId,
      builderSecurityGroupId: network.builderSecurityGroup.id,
      builderImageIds: image.imageIds,
      builderImageDigest: image.digest,
      agentDeployed: c.connection !== undefined,
    };

    if (c.connection) {
      const agent = new CloudAgent(
        `${name}-agent`,
        {
          connectionId: c.connection.id,
          connectionToken: pulumi.secret(c.connection.token),
          image: c.connection.agentImage,
          controlPlaneUrl: c.controlPlaneUrl,
          cpu: c.agent.cpu,
          memory: c.agent.memory,
          architecture: c.agent.architecture,
          logRetentionDays: c.logRetentionDays,
          subnetIds,
          securityGroupId: network.agentSecurityGroup.id,
          kmsKeyArn: stateKey.arn,
          pulumiBackendUrl: backend.backendUrl,
          pulumiSecretsProvider: backend.secretsProvider,
          policy: pulumi
            .output({
              partition,
              region,
              accountId: identity.accountId,
              launchTemplateArns: pulumi.all(c.platforms.map((p) => templates.templates[p]!.arn)),
              subnets: network.privateSubnets,
              builderSecurityGroupArn: network.builderSecurityGroup.arn,
              builderRoleArn: templates.role.arn,
              stateBucketArn: state.arn,
              kmsKeyArn: stateKey.arn,
            })
            .apply(({ subnets, ...p }) => ({
              ...p,
              subnetArns: subnets.map(
                (s) => `arn:${p.partition}:ec2:${p.region}:${p.accountId}:subnet/${s.id}`,
              ),
            })),
          tags,
        },
        parent,
      );
      Object.assign(this.outputs, {
        agentCluster: agent.cluster.name,
        agentService: agent.service.name,
        agentLogGroup: agent.logGroup.name,
        connectionTokenParameter: agent.tokenParameter.name,
      });
    } else {
      pulumi.log.info(
        'No slipway:connectionId yet: create the connection in the control plane with the awsConnection output, ' +
          'then set slipway:connectionId, slipway:connectionToken (--secret) and slipway:agentImage and run `pulumi up` again (docs/aws.md).',
        this,
      );
    }
    this.registerOutputs(this.outputs);
  }
}
