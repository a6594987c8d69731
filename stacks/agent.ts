// The cloud-agent of one connection as an ECS Fargate service: cluster, task definition, log
// group, its task role (the agent policy of iam.ts) and execution role, and the connection token
// in SSM Parameter Store as a SecureString. The container definition is a plain function.
import * as aws from '@pulumi/aws';
import * as pulumi from '@pulumi/pulumi';
import { cloudAgentEnv } from '../common/protocol';
import {
  agentPolicyDocument,
  executionPolicyDocument,
  trustPolicyDocument,
  type AgentPolicyInput,
} from './iam';
import { slipwayTags } from './tags';

/** Changes when the token parameter changes, so ECS replaces the task with one that reads it. */
export const tokenVersionEnv = 'SLIPWAY_CONNECTION_TOKEN_VERSION';

export const agentContainerName = 'cloud-agent';

export interface AgentContainerInput {
  image: string;
  controlPlaneUrl: string;
  region: string;
  stateBackend: string;
  secretsProvider: string;
  tokenParameterArn: string;
  tokenVersion: number;
  logGroupName: string;
}

/**
 * The container's environment uses the cloud-agent's own variable names (cloudAgentEnv); the
 * token comes from SSM, everything else is plain configuration.
 */
export function agentContainerDefinitions(p: AgentContainerInput): Record<string, unknown>[] {
  const environment: Record<string, string> = {
    [cloudAgentEnv.apiUrl]: p.controlPlaneUrl,
    [cloudAgentEnv.dataDir]: '/var/lib/slipway-agent',
    [cloudAgentEnv.stateBackend]: p.stateBackend,
    [cloudAgentEnv.secretsProvider]: p.secretsProvider,
    // The AWS SDK and the Pulumi AWS provider in the agent default to this region.
    AWS_REGION: p.region,
    [tokenVersionEnv]: String(p.tokenVersion),
  };
  return [
    {
      name: agentContainerName,
      image: p.image,
      essential: true,
      environment: Object.entries(environment).map(([name, value]) => ({ name, value })),
      // ECS reads the token from SSM when the task starts; it never appears in the task definition.
      secrets: [{ name: cloudAgentEnv.connectionToken, valueFrom: p.tokenParameterArn }],
      logConfiguration: {
        logDriver: 'awslogs',
        options: {
          'awslogs-group': p.logGroupName,
          'awslogs-region': p.region,
          'awslogs-stream-prefix': 'agent',
        },
      },
      // Time for the agent to finish or cancel a Pulumi update (Fargate's maximum).
      stopTimeout: 120,
    },
  ];
}

export interface CloudAgentArgs {
  connectionId: string;
  connectionToken: pulumi.Input<string>;
  image: string;
  controlPlaneUrl: string;
  cpu: number;
  memory: number;
  architecture: 'X86_64' | 'ARM64';
  logRetentionDays: number;
  subnetIds: pulumi.Input<string[]>;
  securityGroupId: pulumi.Input<string>;
  kmsKeyArn: pulumi.Input<string>;
  pulumiBackendUrl: pulumi.Input<string>;
  pulumiSecretsProvider: pulumi.Input<string>;
  /** Everything of the agent policy but the ids known here. */
  policy: pulumi.Input<Omit<AgentPolicyInput, 'connectionId'>>;
  tags: Record<string, string>;
}

export class CloudAgent extends pulumi.ComponentResource {
  readonly cluster: aws.ecs.Cluster;
  readonly service: aws.ecs.Service;
  readonly logGroup: aws.cloudwatch.LogGroup;
  readonly tokenParameter: aws.ssm.Parameter;
  readonly taskRole: aws.iam.Role;

  constructor(name: string, args: CloudAgentArgs, opts?: pulumi.ComponentResourceOptions) {
    super('slipway:aws:CloudAgent', name, {}, opts);
    const parent = { parent: this };
    const tags = { ...args.tags, [slipwayTags.connection]: args.connectionId };
    const region = aws.getRegionOutput({}, parent).region;

    this.tokenParameter = new aws.ssm.Parameter(
      `${name}-token`,
      {
        name: `/slipway/${args.connectionId}/connection-token`,
        description: "The Slipway cloud-agent's connection token",
        type: 'SecureString',
        value: pulumi.secret(args.connectionToken),
        keyId: args.kmsKeyArn,
        tags,
      },
      parent,
    );
    this.logGroup = new aws.cloudwatch.LogGroup(
      `${name}-logs`,
      {
        name: `/slipway/${args.connectionId}/cloud-agent`,
        retentionInDays: args.logRetentionDays,
        tags,
      },
      parent,
    );

    this.taskRole = new aws.iam.Role(
      `${name}-task`,
      {
        description: `Slipway cloud-agent of ${args.connectionId}: only resources tagged for it`,
        assumeRolePolicy: JSON.stringify(trustPolicyDocument('ecs-tasks.amazonaws.com')),
        tags,
      },
      parent,
    );
    new aws.iam.RolePolicy(
      `${name}-task`,
      {
        role: this.taskRole.name,
        policy: pulumi
          .output(args.policy)
          .apply((p) =>
            JSON.stringify(agentPolicyDocument({ ...p, connectionId: args.connectionId })),
          ),
      },
      { parent: this.taskRole },
    );

    const executionRole = new aws.iam.Role(
      `${name}-execution`,
      {
        description: `Starts the Slipway cloud-agent of ${args.connectionId}`,
        assumeRolePolicy: JSON.stringify(trustPolicyDocument('ecs-tasks.amazonaws.com')),
        tags,
      },
      parent,
    );
    const partition = aws.getPartitionOutput({}, parent).partition;
    new aws.iam.RolePolicyAttachment(
      `${name}-execution-managed`,
      {
        role: executionRole.name,
        policyArn: pulumi.interpolate`arn:${partition}:iam::aws:policy/service-role/AmazonECSTaskExecutionRolePolicy`,
      },
      { parent: executionRole },
    );
    new aws.iam.RolePolicy(
      `${name}-execution-token`,
      {
        role: executionRole.name,
        policy: pulumi
          .all([region, this.tokenParameter.arn, args.kmsKeyArn])
          .apply(([r, tokenParameterArn, kmsKeyArn]) =>
            JSON.stringify(executionPolicyDocument({ region: r, tokenParameterArn, kmsKeyArn })),
          ),
      },
      { parent: executionRole },
    );

    this.cluster = new aws.ecs.Cluster(
      `${name}-cluster`,
      { settings: [{ name: 'containerInsights', value: 'disabled' }], tags },
      parent,
    );
    const taskDefinition = new aws.ecs.TaskDefinition(
      `${name}-task`,
      {
        family: `slipway-agent-${args.connectionId}`,
        requiresCompatibilities: ['FARGATE'],
        networkMode: 'awsvpc',
        cpu: String(args.cpu),
        memory: String(args.memory),
        runtimePlatform: { operatingSystemFamily: 'LINUX', cpuArchitecture: args.architecture },
        executionRoleArn: executionRole.arn,
        taskRoleArn: this.taskRole.arn,
        containerDefinitions: pulumi
          .all([
            region,
            args.pulumiBackendUrl,
            args.pulumiSecretsProvider,
            this.tokenParameter.arn,
            this.tokenParameter.version,
            this.logGroup.name,
          ])
          .apply(([r, backend, secrets, tokenArn, tokenVersion, logGroupName]) =>
            JSON.stringify(
              agentContainerDefinitions({
                image: args.image,
                controlPlaneUrl: args.controlPlaneUrl,
                region: r,
                stateBackend: backend,
                secretsProvider: secrets,
                tokenParameterArn: tokenArn,
                tokenVersion,
                logGroupName,
              }),
            ),
          ),
        tags,
      },
      parent,
    );
    // One agent at a time: the old task stops before the new one starts (the control plane's
    // lease would make a second one wait anyway).
    this.service = new aws.ecs.Service(
      `${name}-service`,
      {
        cluster: this.cluster.arn,
        taskDefinition: taskDefinition.arn,
        desiredCount: 1,
        launchType: 'FARGATE',
        deploymentMinimumHealthyPercent: 0,
        deploymentMaximumPercent: 100,
        deploymentCircuitBreaker: { enable: true, rollback: true },
        networkConfiguration: {
          subnets: args.subnetIds,
          securityGroups: [args.securityGroupId],
          assignPublicIp: false,
        },
        propagateTags: 'SERVICE',
        tags,
      },
      parent,
    );
    this.registerOutputs({});
  }
}
