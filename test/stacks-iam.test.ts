// The cloud-agent's IAM policy, evaluated by an IAM policy simulator over a matrix of requests:
// what the fleet stacks need is allowed with the connection tag and nothing else is.
import test from 'ava';
import { agentPolicyDocument, executionPolicyDocument, keyPolicyDocument } from '../stacks/iam';
import { slipwayTags } from '../stacks/tags';
import { decide, decideAll, type SimRequest } from './helpers/iam-sim';

const account = '111122223333';
const region = 'eu-west-1';
const connectionId = 'con_AbCdEfGh1234';
const otherConnectionId = 'con_ZyXwVuTs9876';
const agentRole = `arn:aws:iam::${account}:role/slipway-agent`;
const ec2Arn = (r: string) => `arn:aws:ec2:${region}:${account}:${r}`;
const templates = {
  amd64: ec2Arn('launch-template/lt-0a1b2c3d4e5f60718'),
  arm64: ec2Arn('launch-template/lt-0f1e2d3c4b5a69788'),
  otherConnection: ec2Arn('launch-template/lt-0999999999999999a'),
};
const subnets = [
  ec2Arn('subnet/subnet-0aaaaaaaaaaaaaaa1'),
  ec2Arn('subnet/subnet-0bbbbbbbbbbbbbbb2'),
];
const securityGroup = ec2Arn('security-group/sg-0123456789abcdef0');
const builderRole = `arn:aws:iam::${account}:role/slipway-builder`;
const stateBucket = 'arn:aws:s3:::slipway-fleet-state-0a1b2c';
const kmsKey = `arn:aws:kms:${region}:${account}:key/1234abcd-12ab-34cd-56ef-1234567890ab`;

const keyPolicy = keyPolicyDocument('aws', account);

const policy = agentPolicyDocument({
  connectionId,
  partition: 'aws',
  region,
  accountId: account,
  launchTemplateArns: [templates.amd64, templates.arm64],
  subnetArns: subnets,
  builderSecurityGroupArn: securityGroup,
  builderRoleArn: builderRole,
  stateBucketArn: stateBucket,
  kmsKeyArn: kmsKey,
});

const connectionTag = slipwayTags.connection;
const requestTag = (value: string | undefined): Record<string, string | string[]> =>
  value === undefined
    ? {}
    : {
        [`aws:RequestTag/${connectionTag}`]: value,
        'aws:TagKeys': [connectionTag, slipwayTags.machine],
      };
const resourceTag = (value: string | undefined): Record<string, string> =>
  value === undefined ? {} : { [`ec2:ResourceTag/${connectionTag}`]: value };

interface Launch {
  tag?: string;
  tokens?: 'required' | 'optional' | null;
  encrypted?: 'true' | 'false';
  template?: string | null;
  imageFromTemplate?: 'true' | 'false';
  subnet?: string;
  securityGroup?: string;
}

/** One RunInstances call, as the per-resource requests EC2 authorizes for it. */
function runInstances(l: Launch = {}): SimRequest[] {
  const tag = 'tag' in l ? l.tag : connectionId;
  const tokens = l.tokens === undefined ? 'required' : l.tokens;
  const template = l.template === undefined ? templates.amd64 : l.template;
  const subnet = l.subnet ?? subnets[0]!;
  const fromTemplate: Record<string, string> = template ? { 'ec2:LaunchTemplate': template } : {};
  const requests: SimRequest[] = [
    {
      action: 'ec2:RunInstances',
      resource: ec2Arn('instance/*'),
      context: {
        ...requestTag(tag),
        ...(tokens ? { 'ec2:MetadataHttpTokens': tokens } : {}),
        ...fromTemplate,
      },
    },
    {
      action: 'ec2:RunInstances',
      resource: ec2Arn('volume/*'),
      context: { ...requestTag(tag), 'ec2:Encrypted': l.encrypted ?? 'true', ...fromTemplate },
    },
    {
      action: 'ec2:RunInstances',
      resource: `arn:aws:ec2:${region}::image/ami-0123456789abcdef0`,
      context: { 'ec2:IsLaunchTemplateResource': l.imageFromTemplate ?? 'true', ...fromTemplate },
    },
    { action: 'ec2:RunInstances', resource: subnet, context: fromTemplate },
    {
      action: 'ec2:RunInstances',
      resource: l.securityGroup ?? securityGroup,
      context: fromTemplate,
    },
    {
      action: 'ec2:RunInstances',
      resource: ec2Arn('network-interface/*'),
      context: { 'ec2:Subnet': subnet, ...fromTemplate },
    },
  ];
  if (template)
    requests.push({ action: 'ec2:RunInstances', resource: template, context: fromTemplate });
  return requests;
}

const agentDecides = (requests: SimRequest[]) => decideAll(policy, agentRole, account, requests);

const launches: [string, Launch, 'Allowed' | 'Denied'][] = [
  ['from the amd64 launch template with the connection tag', {}, 'Allowed'],
  [
    'from the arm64 launch template with the connection tag',
    { template: templates.arm64 },
    'Allowed',
  ],
  ['in the second private subnet', { subnet: subnets[1] }, 'Allowed'],
  ['without the connection tag', { tag: undefined }, 'Denied'],
  ["with another connection's tag", { tag: otherConnectionId }, 'Denied'],
  ['without IMDSv2 (tokens optional)', { tokens: 'optional' }, 'Denied'],
  ['without saying anything about IMDS tokens', { tokens: null }, 'Denied'],
  ['with an unencrypted volume', { encrypted: 'false' }, 'Denied'],
  ["from another connection's launch template", { template: templates.otherConnection }, 'Denied'],
  ['without a launch template', { template: null }, 'Denied'],
  ["with an image other than the template's", { imageFromTemplate: 'false' }, 'Denied'],
  [
    "into a subnet that is not the connection's",
    { subnet: ec2Arn('subnet/subnet-0ccccccccccccccc3') },
    'Denied',
  ],
  [
    "with a security group that is not the builders'",
    { securityGroup: ec2Arn('security-group/sg-0fedcba9876543210') },
    'Denied',
  ],
];

for (const [name, launch, expected] of launches) {
  test(`RunInstances ${name}: ${expected.toLowerCase()}`, async (t) => {
    t.is(await agentDecides(runInstances(launch)), expected);
  });
}

const ownInstance = {
  resource: ec2Arn('instance/i-0123456789abcdef0'),
  context: resourceTag(connectionId),
};
const otherInstance = {
  resource: ec2Arn('instance/i-0fffffffffffffff0'),
  context: resourceTag(otherConnectionId),
};
const untaggedInstance = { resource: ec2Arn('instance/i-0eeeeeeeeeeeeeee0'), context: {} };
const ownVolume = {
  resource: ec2Arn('volume/vol-0123456789abcdef0'),
  context: resourceTag(connectionId),
};
const otherVolume = {
  resource: ec2Arn('volume/vol-0fffffffffffffff0'),
  context: resourceTag(otherConnectionId),
};

const single: [string, SimRequest, 'Allowed' | 'Denied'][] = [
  // Volumes
  [
    'CreateVolume encrypted with the connection tag',
    {
      action: 'ec2:CreateVolume',
      resource: ec2Arn('volume/*'),
      context: { ...requestTag(connectionId), 'ec2:Encrypted': 'true' },
    },
    'Allowed',
  ],
  [
    'CreateVolume without the tag',
    {
      action: 'ec2:CreateVolume',
      resource: ec2Arn('volume/*'),
      context: { 'ec2:Encrypted': 'true' },
    },
    'Denied',
  ],
  [
    "CreateVolume with another connection's tag",
    {
      action: 'ec2:CreateVolume',
      resource: ec2Arn('volume/*'),
      context: { ...requestTag(otherConnectionId), 'ec2:Encrypted': 'true' },
    },
    'Denied',
  ],
  [
    'CreateVolume unencrypted',
    {
      action: 'ec2:CreateVolume',
      resource: ec2Arn('volume/*'),
      context: { ...requestTag(connectionId), 'ec2:Encrypted': 'false' },
    },
    'Denied',
  ],
  ['DeleteVolume on its own volume', { action: 'ec2:DeleteVolume', ...ownVolume }, 'Allowed'],
  [
    "DeleteVolume on another connection's volume",
    { action: 'ec2:DeleteVolume', ...otherVolume },
    'Denied',
  ],
  ['AttachVolume of its own volume', { action: 'ec2:AttachVolume', ...ownVolume }, 'Allowed'],
  ['AttachVolume to its own instance', { action: 'ec2:AttachVolume', ...ownInstance }, 'Allowed'],
  [
    "AttachVolume of another connection's volume",
    { action: 'ec2:AttachVolume', ...otherVolume },
    'Denied',
  ],
  [
    "AttachVolume to another connection's instance",
    { action: 'ec2:AttachVolume', ...otherInstance },
    'Denied',
  ],
  ['DetachVolume of its own volume', { action: 'ec2:DetachVolume', ...ownVolume }, 'Allowed'],
  [
    "DetachVolume of another connection's volume",
    { action: 'ec2:DetachVolume', ...otherVolume },
    'Denied',
  ],
  ['CreateSnapshot of its own volume', { action: 'ec2:CreateSnapshot', ...ownVolume }, 'Denied'],
  ['ModifyVolume on its own volume', { action: 'ec2:ModifyVolume', ...ownVolume }, 'Denied'],
  // Instances
  [
    'StartInstances on its own instance',
    { action: 'ec2:StartInstances', ...ownInstance },
    'Allowed',
  ],
  ['StopInstances on its own instance', { action: 'ec2:StopInstances', ...ownInstance }, 'Allowed'],
  [
    'TerminateInstances on its own instance',
    { action: 'ec2:TerminateInstances', ...ownInstance },
    'Allowed',
  ],
  [
    "StopInstances on another connection's instance",
    { action: 'ec2:StopInstances', ...otherInstance },
    'Denied',
  ],
  [
    "TerminateInstances on another connection's instance",
    { action: 'ec2:TerminateInstances', ...otherInstance },
    'Denied',
  ],
  [
    'TerminateInstances on an untagged instance',
    { action: 'ec2:TerminateInstances', ...untaggedInstance },
    'Denied',
  ],
  [
    'StartInstances on an untagged instance',
    { action: 'ec2:StartInstances', ...untaggedInstance },
    'Denied',
  ],
  [
    'ModifyInstanceAttribute on its own instance',
    { action: 'ec2:ModifyInstanceAttribute', ...ownInstance },
    'Denied',
  ],
  [
    'RebootInstances on its own instance',
    { action: 'ec2:RebootInstances', ...ownInstance },
    'Denied',
  ],
  // Tags
  [
    'CreateTags as part of RunInstances',
    {
      action: 'ec2:CreateTags',
      resource: ec2Arn('instance/*'),
      context: { ...requestTag(connectionId), 'ec2:CreateAction': 'RunInstances' },
    },
    'Allowed',
  ],
  [
    'CreateTags as part of CreateVolume',
    {
      action: 'ec2:CreateTags',
      resource: ec2Arn('volume/*'),
      context: { ...requestTag(connectionId), 'ec2:CreateAction': 'CreateVolume' },
    },
    'Allowed',
  ],
  [
    "CreateTags claiming another connection's instance",
    {
      action: 'ec2:CreateTags',
      resource: otherInstance.resource,
      context: { ...otherInstance.context, ...requestTag(connectionId) },
    },
    'Denied',
  ],
  [
    'CreateTags on an untagged instance',
    {
      action: 'ec2:CreateTags',
      resource: untaggedInstance.resource,
      context: requestTag(connectionId),
    },
    'Denied',
  ],
  [
    "CreateTags at creation with another connection's tag",
    {
      action: 'ec2:CreateTags',
      resource: ec2Arn('instance/*'),
      context: { ...requestTag(otherConnectionId), 'ec2:CreateAction': 'RunInstances' },
    },
    'Denied',
  ],
  ['DeleteTags on its own instance', { action: 'ec2:DeleteTags', ...ownInstance }, 'Denied'],
  // Reading
  ['DescribeInstances', { action: 'ec2:DescribeInstances', resource: '*' }, 'Allowed'],
  ['DescribeVolumes', { action: 'ec2:DescribeVolumes', resource: '*' }, 'Allowed'],
  [
    'DescribeLaunchTemplateVersions',
    { action: 'ec2:DescribeLaunchTemplateVersions', resource: '*' },
    'Allowed',
  ],
  // The network and templates stay as the connection stack made them
  [
    'CreateLaunchTemplateVersion on its own template',
    { action: 'ec2:CreateLaunchTemplateVersion', resource: templates.amd64 },
    'Denied',
  ],
  [
    "AuthorizeSecurityGroupIngress on the builders' security group",
    { action: 'ec2:AuthorizeSecurityGroupIngress', resource: securityGroup },
    'Denied',
  ],
  [
    'CreateSecurityGroup',
    { action: 'ec2:CreateSecurityGroup', resource: ec2Arn('security-group/*') },
    'Denied',
  ],
  // IAM
  [
    'PassRole of the builder role to EC2',
    {
      action: 'iam:PassRole',
      resource: builderRole,
      context: { 'iam:PassedToService': 'ec2.amazonaws.com' },
    },
    'Allowed',
  ],
  [
    'PassRole of the builder role to another service',
    {
      action: 'iam:PassRole',
      resource: builderRole,
      context: { 'iam:PassedToService': 'lambda.amazonaws.com' },
    },
    'Denied',
  ],
  [
    'PassRole of any other role',
    {
      action: 'iam:PassRole',
      resource: `arn:aws:iam::${account}:role/Admin`,
      context: { 'iam:PassedToService': 'ec2.amazonaws.com' },
    },
    'Denied',
  ],
  [
    'iam:CreateRole',
    { action: 'iam:CreateRole', resource: `arn:aws:iam::${account}:role/escalate` },
    'Denied',
  ],
  [
    'iam:PutRolePolicy on its own role',
    { action: 'iam:PutRolePolicy', resource: agentRole },
    'Denied',
  ],
  [
    'iam:AttachRolePolicy on the builder role',
    { action: 'iam:AttachRolePolicy', resource: builderRole },
    'Denied',
  ],
  [
    'sts:AssumeRole',
    { action: 'sts:AssumeRole', resource: `arn:aws:iam::${account}:role/Admin` },
    'Denied',
  ],
  // Other services
  [
    'lambda:CreateFunction',
    { action: 'lambda:CreateFunction', resource: `arn:aws:lambda:${region}:${account}:function:x` },
    'Denied',
  ],
  [
    'ssm:GetParameter',
    { action: 'ssm:GetParameter', resource: `arn:aws:ssm:${region}:${account}:parameter/any` },
    'Denied',
  ],
  [
    'secretsmanager:GetSecretValue',
    {
      action: 'secretsmanager:GetSecretValue',
      resource: `arn:aws:secretsmanager:${region}:${account}:secret:x-AbCdEf`,
    },
    'Denied',
  ],
  // Fleet state
  [
    's3:ListBucket on the state bucket',
    { action: 's3:ListBucket', resource: stateBucket },
    'Allowed',
  ],
  [
    's3:GetObject of fleet state',
    {
      action: 's3:GetObject',
      resource: `${stateBucket}/.pulumi/stacks/slipway-fleet/${connectionId}.json`,
    },
    'Allowed',
  ],
  [
    's3:PutObject of fleet state',
    { action: 's3:PutObject', resource: `${stateBucket}/.pulumi/locks/x.json` },
    'Allowed',
  ],
  [
    's3:DeleteObject of a lock',
    { action: 's3:DeleteObject', resource: `${stateBucket}/.pulumi/locks/x.json` },
    'Allowed',
  ],
  [
    's3:GetObject in another bucket',
    { action: 's3:GetObject', resource: 'arn:aws:s3:::someone-elses-bucket/secret.txt' },
    'Denied',
  ],
  [
    's3:PutBucketPolicy on the state bucket',
    { action: 's3:PutBucketPolicy', resource: stateBucket },
    'Denied',
  ],
  [
    's3:DeleteBucket on the state bucket',
    { action: 's3:DeleteBucket', resource: stateBucket },
    'Denied',
  ],
  [
    'kms:Encrypt with the state key',
    { action: 'kms:Encrypt', resource: kmsKey, resourcePolicy: keyPolicy },
    'Allowed',
  ],
  [
    'kms:Decrypt with the state key',
    { action: 'kms:Decrypt', resource: kmsKey, resourcePolicy: keyPolicy },
    'Allowed',
  ],
  [
    'kms:GenerateDataKey with the state key',
    { action: 'kms:GenerateDataKey', resource: kmsKey, resourcePolicy: keyPolicy },
    'Allowed',
  ],
  [
    'kms:Decrypt with another key',
    {
      action: 'kms:Decrypt',
      resource: `arn:aws:kms:${region}:${account}:key/ffffffff-12ab-34cd-56ef-1234567890ab`,
      resourcePolicy: keyPolicy,
    },
    'Denied',
  ],
  [
    'kms:ScheduleKeyDeletion on the state key',
    { action: 'kms:ScheduleKeyDeletion', resource: kmsKey, resourcePolicy: keyPolicy },
    'Denied',
  ],
  [
    'kms:PutKeyPolicy on the state key',
    { action: 'kms:PutKeyPolicy', resource: kmsKey, resourcePolicy: keyPolicy },
    'Denied',
  ],
];

for (const [name, request, expected] of single) {
  test(`${name}: ${expected.toLowerCase()}`, async (t) => {
    t.is(await decide(policy, agentRole, account, request), expected);
  });
}

test('the execution role reads only the token parameter, and decrypts only through SSM', async (t) => {
  const parameter = `arn:aws:ssm:${region}:${account}:parameter/slipway/${connectionId}/connection-token`;
  const execRole = `arn:aws:iam::${account}:role/slipway-agent-execution`;
  const execution = executionPolicyDocument({
    region,
    tokenParameterArn: parameter,
    kmsKeyArn: kmsKey,
  });
  const run = (r: SimRequest) => decide(execution, execRole, account, r);
  t.is(await run({ action: 'ssm:GetParameters', resource: parameter }), 'Allowed');
  t.is(
    await run({
      action: 'ssm:GetParameters',
      resource: `arn:aws:ssm:${region}:${account}:parameter/other`,
    }),
    'Denied',
  );
  t.is(
    await run({
      action: 'kms:Decrypt',
      resource: kmsKey,
      context: { 'kms:ViaService': `ssm.${region}.amazonaws.com` },
      resourcePolicy: keyPolicy,
    }),
    'Allowed',
  );
  t.is(await run({ action: 'kms:Decrypt', resource: kmsKey, resourcePolicy: keyPolicy }), 'Denied');
  t.is(await run({ action: 'ec2:RunInstances', resource: '*' }), 'Denied');
});
