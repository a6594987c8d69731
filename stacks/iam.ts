// The IAM documents of a connection, as pure functions of ARNs and ids: the cloud-agent's policy
// (it may touch only what carries its connection tag), the builders' role (no permissions at
// all), the Fargate execution role and the trust policies. Tested with an IAM simulator.
import { slipwayTags } from './tags';

export interface PolicyStatement {
  Sid: string;
  Effect: 'Allow' | 'Deny';
  Action: string[];
  Resource: string[];
  Condition?: Record<string, Record<string, string | string[]>>;
}

export interface PolicyDocument {
  Version: '2012-10-17';
  Statement: PolicyStatement[];
}

export interface AgentPolicyInput {
  connectionId: string;
  partition: string;
  region: string;
  accountId: string;
  /** ARNs of the connection's launch templates, one per platform. */
  launchTemplateArns: string[];
  /** ARNs of the private subnets builders run in. */
  subnetArns: string[];
  builderSecurityGroupArn: string;
  builderRoleArn: string;
  stateBucketArn: string;
  kmsKeyArn: string;
}

const connectionTag = slipwayTags.connection;

/**
 * The cloud-agent's policy. It creates instances and volumes only with its connection tag in the
 * request, tags only as part of those creates, acts on instances and volumes only when they
 * carry the tag, launches only from its own launch templates (and the image they name) into its
 * own subnets and security group, passes only the builder role, requires IMDSv2 and encrypted
 * volumes, reads EC2 freely, and uses the fleet state bucket and key. Everything else (IAM,
 * other services, other connections' resources) is implicitly denied.
 */
export function agentPolicyDocument(p: AgentPolicyInput): PolicyDocument {
  const ec2 = (resource: string, account = p.accountId) =>
    `arn:${p.partition}:ec2:${p.region}:${account}:${resource}`;
  const tagged = { [`ec2:ResourceTag/${connectionTag}`]: p.connectionId };
  const requestTagged = { [`aws:RequestTag/${connectionTag}`]: p.connectionId };
  const fromOwnTemplates = { 'ec2:LaunchTemplate': p.launchTemplateArns };

  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ReadEc2',
        Effect: 'Allow',
        Action: ['ec2:Describe*'],
        Resource: ['*'],
      },
      {
        Sid: 'LaunchTaggedImdsV2InstancesFromOwnTemplates',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [ec2('instance/*')],
        Condition: {
          StringEquals: { ...requestTagged, 'ec2:MetadataHttpTokens': 'required' },
          ArnEquals: fromOwnTemplates,
        },
      },
      {
        Sid: 'LaunchWithTaggedEncryptedVolumes',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [ec2('volume/*')],
        Condition: { StringEquals: requestTagged, Bool: { 'ec2:Encrypted': 'true' } },
      },
      {
        Sid: 'LaunchOnlyTheTemplatesImage',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [`arn:${p.partition}:ec2:${p.region}::image/*`],
        Condition: {
          Bool: { 'ec2:IsLaunchTemplateResource': 'true' },
          ArnEquals: fromOwnTemplates,
        },
      },
      {
        Sid: 'LaunchFromOwnTemplatesIntoOwnNetwork',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [...p.launchTemplateArns, ...p.subnetArns, p.builderSecurityGroupArn],
      },
      {
        Sid: 'LaunchNetworkInterfacesInOwnSubnets',
        Effect: 'Allow',
        Action: ['ec2:RunInstances'],
        Resource: [ec2('network-interface/*')],
        Condition: { ArnEquals: { 'ec2:Subnet': p.subnetArns } },
      },
      {
        Sid: 'CreateTaggedEncryptedVolumes',
        Effect: 'Allow',
        Action: ['ec2:CreateVolume'],
        Resource: [ec2('volume/*')],
        Condition: { StringEquals: requestTagged, Bool: { 'ec2:Encrypted': 'true' } },
      },
      {
        Sid: 'TagOnlyWhileCreating',
        Effect: 'Allow',
        Action: ['ec2:CreateTags'],
        Resource: [ec2('instance/*'), ec2('volume/*'), ec2('network-interface/*')],
        Condition: {
          StringEquals: { ...requestTagged, 'ec2:CreateAction': ['RunInstances', 'CreateVolume'] },
        },
      },
      {
        Sid: 'OperateOwnInstances',
        Effect: 'Allow',
        Action: ['ec2:StartInstances', 'ec2:StopInstances', 'ec2:TerminateInstances'],
        Resource: [ec2('instance/*')],
        Condition: { StringEquals: tagged },
      },
      {
        Sid: 'AttachOwnVolumesToOwnInstances',
        Effect: 'Allow',
        Action: ['ec2:AttachVolume', 'ec2:DetachVolume'],
        Resource: [ec2('instance/*'), ec2('volume/*')],
        Condition: { StringEquals: tagged },
      },
      {
        Sid: 'DeleteOwnVolumes',
        Effect: 'Allow',
        Action: ['ec2:DeleteVolume'],
        Resource: [ec2('volume/*')],
        Condition: { StringEquals: tagged },
      },
      {
        Sid: 'PassOnlyTheBuilderRoleToEc2',
        Effect: 'Allow',
        Action: ['iam:PassRole'],
        Resource: [p.builderRoleArn],
        Condition: { StringEquals: { 'iam:PassedToService': 'ec2.amazonaws.com' } },
      },
      {
        Sid: 'ListFleetState',
        Effect: 'Allow',
        Action: ['s3:ListBucket', 's3:GetBucketLocation'],
        Resource: [p.stateBucketArn],
      },
      {
        Sid: 'ReadWriteFleetState',
        Effect: 'Allow',
        Action: ['s3:GetObject', 's3:PutObject', 's3:DeleteObject'],
        Resource: [`${p.stateBucketArn}/*`],
      },
      {
        Sid: 'UseFleetStateKey',
        Effect: 'Allow',
        Action: ['kms:Encrypt', 'kms:Decrypt', 'kms:GenerateDataKey'],
        Resource: [p.kmsKeyArn],
      },
    ],
  };
}

/**
 * The state key's policy: the account's IAM policies decide who uses it (AWS's default key
 * policy), so the agent's and execution role's policies above are what grant access.
 */
export function keyPolicyDocument(partition: string, accountId: string): Record<string, unknown> {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'EnableIamPolicies',
        Effect: 'Allow',
        Principal: { AWS: `arn:${partition}:iam::${accountId}:root` },
        Action: 'kms:*',
        Resource: '*',
      },
    ],
  };
}

/** Who may assume a role: one AWS service principal. */
export function trustPolicyDocument(service: string): Record<string, unknown> {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Effect: 'Allow',
        Principal: { Service: service },
        Action: 'sts:AssumeRole',
      },
    ],
  };
}

export interface ExecutionPolicyInput {
  region: string;
  tokenParameterArn: string;
  kmsKeyArn: string;
}

/**
 * What ECS itself needs beyond AmazonECSTaskExecutionRolePolicy to start the agent: read the
 * connection token parameter and decrypt it, through SSM only.
 */
export function executionPolicyDocument(p: ExecutionPolicyInput): PolicyDocument {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ReadConnectionToken',
        Effect: 'Allow',
        Action: ['ssm:GetParameters'],
        Resource: [p.tokenParameterArn],
      },
      {
        Sid: 'DecryptConnectionTokenThroughSsm',
        Effect: 'Allow',
        Action: ['kms:Decrypt'],
        Resource: [p.kmsKeyArn],
        Condition: { StringEquals: { 'kms:ViaService': `ssm.${p.region}.amazonaws.com` } },
      },
    ],
  };
}

export interface ImageBuildPolicyInput {
  artifactsBucketArn: string;
  artifactsPrefix: string;
}

/** The Image Builder build instance reads the provisioning artifacts, nothing else of ours. */
export function imageBuildPolicyDocument(p: ImageBuildPolicyInput): PolicyDocument {
  return {
    Version: '2012-10-17',
    Statement: [
      {
        Sid: 'ReadImageArtifacts',
        Effect: 'Allow',
        Action: ['s3:GetObject'],
        Resource: [`${p.artifactsBucketArn}/${p.artifactsPrefix}*`],
      },
    ],
  };
}
