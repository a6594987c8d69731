// The AWS connection stack under Pulumi mocks, in both network modes: the resources it declares,
// their tags and conditions, and the outputs the control plane and the agent read.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { awsConnectionConfigSchema } from '../common/protocol';
import type { ArtifactSources } from '../images/builder/image';
import { parseStackConfig, type StackConfig } from '../stacks/config';
import { SlipwayConnection } from '../stacks/connection';
import { NetworkError, resolveNetwork } from '../stacks/network';
import { slipwayTags } from '../stacks/tags';
import {
  AwsMocks,
  mockAccount,
  settled,
  valueOf,
  type RecordedResource,
} from './helpers/aws-mocks';
import { decide } from './helpers/iam-sim';
import { tempDir } from './helpers/tmp';

const mocks = new AwsMocks();
const connectionId = 'con_AbCdEfGh1234';
const token = `swc_${'a'.repeat(43)}`;

test.before(async () => {
  await mocks.install();
});

async function sources(t: Parameters<typeof tempDir>[0]): Promise<ArtifactSources> {
  const dir = await tempDir(t, 'stack-artifacts');
  const machineAgentBundle = path.join(dir, 'machine-agent.cjs');
  const machineAgentUnit = path.join(dir, 'slipway-machine-agent.service');
  await writeFile(machineAgentBundle, '"use strict";\n');
  await writeFile(
    machineAgentUnit,
    '[Service]\nExecStart=/usr/bin/node /opt/slipway/machine-agent.cjs\n',
  );
  return { machineAgentBundle, machineAgentUnit };
}

const base = {
  controlPlaneUrl: 'https://slipway.example.com',
  buildkitIngressCidrs: '["203.0.113.0/24"]',
};

function config(raw: Record<string, string>): StackConfig {
  return parseStackConfig({ ...base, ...raw }, new Set(['connectionToken']));
}

async function deploy(t: Parameters<typeof tempDir>[0], name: string, c: StackConfig) {
  const connection = new SlipwayConnection(name, {
    config: c,
    network: await resolveNetwork(c.network),
    sources: await sources(t),
    project: 'slipway-connection',
    stack: name,
  });
  const outputs = await valueOf(connection.outputs);
  await settled();
  return { outputs: outputs as Record<string, unknown>, resources: () => mocks.under(name) };
}

const byType = (rs: RecordedResource[], type: string) => rs.filter((r) => r.type === type);
const one = (rs: RecordedResource[], type: string) => {
  const found = byType(rs, type);
  if (found.length !== 1) throw new Error(`expected one ${type}, found ${found.length}`);
  return found[0]!;
};

test.serial('new VPC with a connection: network, templates, agent and outputs', async (t) => {
  const { outputs, resources } = await deploy(
    t,
    'newvpc',
    config({
      connectionId,
      connectionToken: token,
      agentImage: 'ghcr.io/example/slipway-agent:1.0.0',
      platforms: '["linux/amd64","linux/arm64"]',
      availabilityZones: '2',
    }),
  );
  const rs = resources();

  // The VPC comes from awsx: private subnets for builders, a single NAT gateway by default.
  const vpc = one(rs, 'awsx:ec2:Vpc');
  t.is(vpc.inputs.cidrBlock, '10.80.0.0/16');
  t.is(vpc.inputs.numberOfAvailabilityZones, 2);
  t.deepEqual(vpc.inputs.natGateways, { strategy: 'Single' });
  // Per zone (a /17 of the /16): half for builders, a quarter for the NAT gateway's subnet.
  t.deepEqual(vpc.inputs.subnetSpecs, [
    { type: 'Private', name: 'builders', cidrMask: 18 },
    { type: 'Public', name: 'nat', cidrMask: 19 },
  ]);

  // What the control plane stores for the connection, exactly in its schema.
  const awsConnection = awsConnectionConfigSchema.parse(outputs.awsConnection);
  t.is(awsConnection.region, 'eu-west-1');
  t.is(awsConnection.buildkitPort, 8372);
  t.deepEqual(awsConnection.subnets, [
    { id: 'subnet-0aaaaaaaaaaaaaaa1', zone: 'eu-west-1a' },
    { id: 'subnet-0bbbbbbbbbbbbbbb2', zone: 'eu-west-1b' },
  ]);
  const templates = byType(rs, 'aws:ec2/launchTemplate:LaunchTemplate');
  t.is(templates.length, 2);
  t.deepEqual(
    Object.values(awsConnection.launchTemplates).sort(),
    templates.map((lt) => lt.id).sort(),
  );

  // Fleet state for the agent's Pulumi backend and secrets provider.
  const bucket = rs.find((r) => r.type === 'aws:s3/bucket:Bucket' && r.name === 'newvpc-state')!;
  const key = one(rs, 'aws:kms/key:Key');
  t.is(outputs.fleetStateBackendUrl, `s3://${String(bucket.state.bucket)}?region=eu-west-1`);
  t.is(outputs.fleetSecretsProvider, `awskms://${key.id}?region=eu-west-1`);
  t.is(outputs.agentLogGroup, `/slipway/${connectionId}/cloud-agent`);
  t.is(outputs.connectionTokenParameter, `/slipway/${connectionId}/connection-token`);
  t.true(outputs.agentDeployed as boolean);
});

test.serial(
  'launch templates require IMDSv2 with hop limit 1 and encrypt the root volume',
  async (t) => {
    const { resources } = await deploy(
      t,
      'lt',
      config({ platforms: '["linux/amd64","linux/arm64"]' }),
    );
    const rs = resources();
    const sg = rs.find((r) => r.name === 'lt-network-builders')!;
    const profile = rs.find((r) => r.name === 'lt-builders-profile')!;
    const images = byType(rs, 'aws:imagebuilder/image:Image');
    for (const lt of byType(rs, 'aws:ec2/launchTemplate:LaunchTemplate')) {
      const i = lt.inputs as unknown as {
        metadataOptions: Record<string, unknown>;
        blockDeviceMappings: { ebs: Record<string, unknown> }[];
        vpcSecurityGroupIds: string[];
        iamInstanceProfile: { arn: string };
        imageId: string;
      };
      t.like(i.metadataOptions, {
        httpTokens: 'required',
        httpPutResponseHopLimit: 1,
        httpEndpoint: 'enabled',
      });
      t.like(i.blockDeviceMappings[0]!.ebs, {
        encrypted: 'true',
        volumeType: 'gp3',
        volumeSize: 30,
      });
      t.deepEqual(i.vpcSecurityGroupIds, [sg.id]);
      t.is(i.iamInstanceProfile.arn, String(profile.state.arn));
      const amis = images.map(
        (img) => (img.state.outputResources as { amis: { image: string }[] }[])[0]!.amis[0]!.image,
      );
      t.true(amis.includes(i.imageId));
    }
    const types = byType(rs, 'aws:ec2/launchTemplate:LaunchTemplate').map(
      (lt) => lt.inputs.instanceType,
    );
    t.deepEqual(types.sort(), ['c7g.xlarge', 'c7i.xlarge']);
  },
);

test.serial('the builder security group opens BuildKit only to the named CIDRs', async (t) => {
  const { resources } = await deploy(
    t,
    'sg',
    config({ buildkitIngressCidrs: '["203.0.113.0/24","2001:db8::/48"]', buildkitPort: '9443' }),
  );
  const ingress = byType(resources(), 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule');
  t.deepEqual(
    ingress.map((r) => [
      r.name,
      r.inputs.fromPort,
      r.inputs.toPort,
      r.inputs.cidrIpv4 ?? r.inputs.cidrIpv6,
    ]),
    [
      ['sg-network-builders-in-0', 9443, 9443, '203.0.113.0/24'],
      ['sg-network-builders-in-1', 9443, 9443, '2001:db8::/48'],
    ],
  );
  // Egress: web ports and the control plane, nothing else by default.
  const builderEgress = byType(
    resources(),
    'aws:vpc/securityGroupEgressRule:SecurityGroupEgressRule',
  )
    .filter((r) => r.name.startsWith('sg-network-builders-out'))
    .map((r) => r.inputs.fromPort);
  t.deepEqual([...new Set(builderEgress)].sort(), [443, 80]);
});

test.serial('builders get a role with no permissions at all', async (t) => {
  const { resources } = await deploy(
    t,
    'role',
    config({ connectionId, connectionToken: token, agentImage: 'example/agent:1' }),
  );
  const rs = resources();
  const builderRole = rs.find((r) => r.name === 'role-builders-role')!;
  t.is((builderRole.inputs.tags as Record<string, string>)[slipwayTags.role], 'builder');
  t.is(builderRole.inputs.inlinePolicies, undefined);
  t.is(builderRole.inputs.managedPolicyArns, undefined);
  const grants = rs.filter(
    (r) =>
      [
        'aws:iam/rolePolicy:RolePolicy',
        'aws:iam/rolePolicyAttachment:RolePolicyAttachment',
      ].includes(r.type) && r.inputs.role === builderRole.state.name,
  );
  t.deepEqual(grants, []);
});

test.serial(
  "the agent's task role policy is the connection's, and the simulator agrees",
  async (t) => {
    const { resources } = await deploy(
      t,
      'agent',
      config({ connectionId, connectionToken: token, agentImage: 'example/agent:1' }),
    );
    const rs = resources();
    const taskRole = rs.find(
      (r) => r.name === 'agent-agent-task' && r.type === 'aws:iam/role:Role',
    )!;
    t.true(String(taskRole.inputs.assumeRolePolicy).includes('ecs-tasks.amazonaws.com'));
    const policy = JSON.parse(
      String(
        rs.find(
          (r) =>
            r.type === 'aws:iam/rolePolicy:RolePolicy' && r.inputs.role === taskRole.state.name,
        )!.inputs.policy,
      ),
    );
    const lt = byType(rs, 'aws:ec2/launchTemplate:LaunchTemplate')[0]!;
    const principal = String(taskRole.state.arn);
    const launch = (tag: string) =>
      decide(policy, principal, mockAccount, {
        action: 'ec2:RunInstances',
        resource: `arn:aws:ec2:eu-west-1:${mockAccount}:instance/*`,
        context: {
          [`aws:RequestTag/${slipwayTags.connection}`]: tag,
          'ec2:MetadataHttpTokens': 'required',
          'ec2:LaunchTemplate': String(lt.state.arn),
        },
      });
    t.is(await launch(connectionId), 'Allowed');
    t.is(await launch('con_SomeoneElse1'), 'Denied');
    const builderRole = rs.find((r) => r.name === 'agent-builders-role')!;
    t.is(
      await decide(policy, principal, mockAccount, {
        action: 'iam:PassRole',
        resource: String(builderRole.state.arn),
        context: { 'iam:PassedToService': 'ec2.amazonaws.com' },
      }),
      'Allowed',
    );
  },
);

test.serial('the connection token lives only in SSM as a SecureString', async (t) => {
  const { resources } = await deploy(
    t,
    'token',
    config({ connectionId, connectionToken: token, agentImage: 'example/agent:1' }),
  );
  const rs = resources();
  const parameter = one(rs, 'aws:ssm/parameter:Parameter');
  const key = one(rs, 'aws:kms/key:Key');
  t.is(parameter.inputs.type, 'SecureString');
  t.is(parameter.inputs.keyId, key.state.arn);
  const taskDefinition = one(rs, 'aws:ecs/taskDefinition:TaskDefinition');
  const definitions = String(taskDefinition.inputs.containerDefinitions);
  t.false(definitions.includes(token));
  const [container] = JSON.parse(definitions);
  t.deepEqual(container.secrets, [
    { name: 'SLIPWAY_CONNECTION_TOKEN', valueFrom: parameter.state.arn },
  ]);
  const env = Object.fromEntries(
    container.environment.map((e: { name: string; value: string }) => [e.name, e.value]),
  );
  t.like(env, {
    SLIPWAY_API_URL: 'https://slipway.example.com',
    SLIPWAY_DATA_DIR: '/var/lib/slipway-agent',
    AWS_REGION: 'eu-west-1',
    SLIPWAY_CONNECTION_TOKEN_VERSION: '1',
  });
  t.regex(env.SLIPWAY_STATE_BACKEND, /^s3:\/\/slipway-fleet-state-.*\?region=eu-west-1$/);
  t.regex(env.SLIPWAY_SECRETS_PROVIDER, /^awskms:\/\/.*\?region=eu-west-1$/);
  t.like(taskDefinition.inputs, { cpu: '512', memory: '2048', networkMode: 'awsvpc' });
  const service = one(rs, 'aws:ecs/service:Service');
  t.like(service.inputs, { desiredCount: 1, launchType: 'FARGATE', deploymentMaximumPercent: 100 });
  t.false((service.inputs.networkConfiguration as { assignPublicIp: boolean }).assignPublicIp);
});

test.serial(
  'the fleet state bucket is private, versioned and encrypted with the stack key',
  async (t) => {
    const { resources } = await deploy(t, 'state', config({}));
    const rs = resources();
    const key = one(rs, 'aws:kms/key:Key');
    t.true(key.inputs.enableKeyRotation as boolean);
    const stateParts = rs.filter((r) => r.name.startsWith('state-state'));
    const pab = stateParts.find(
      (r) => r.type === 'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock',
    )!;
    t.like(pab.inputs, {
      blockPublicAcls: true,
      blockPublicPolicy: true,
      ignorePublicAcls: true,
      restrictPublicBuckets: true,
    });
    const sse = stateParts.find(
      (r) =>
        r.type ===
        'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration',
    )!;
    const [rule] = sse.inputs.rules as { applyServerSideEncryptionByDefault: unknown }[];
    t.deepEqual(rule!.applyServerSideEncryptionByDefault, {
      sseAlgorithm: 'aws:kms',
      kmsMasterKeyId: key.state.arn,
    });
    const versioning = stateParts.find(
      (r) => r.type === 'aws:s3/bucketVersioning:BucketVersioning',
    )!;
    t.deepEqual(versioning.inputs.versioningConfiguration, { status: 'Enabled' });
    const policy = stateParts.find((r) => r.type === 'aws:s3/bucketPolicy:BucketPolicy')!;
    t.regex(String(policy.inputs.policy), /aws:SecureTransport/);
  },
);

test.serial(
  'each platform gets an Image Builder recipe, build and AMI from pinned artifacts',
  async (t) => {
    const { outputs, resources } = await deploy(
      t,
      'img',
      config({ platforms: '["linux/amd64","linux/arm64"]' }),
    );
    const rs = resources();
    const recipes = byType(rs, 'aws:imagebuilder/imageRecipe:ImageRecipe');
    t.deepEqual(recipes.map((r) => r.inputs.parentImage).sort(), [
      'arn:aws:imagebuilder:eu-west-1:aws:image/amazon-linux-2023-arm64/x.x.x',
      'arn:aws:imagebuilder:eu-west-1:aws:image/amazon-linux-2023-x86/x.x.x',
    ]);
    for (const infra of byType(
      rs,
      'aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration',
    )) {
      t.like(infra.inputs, {
        terminateInstanceOnFailure: true,
        instanceMetadataOptions: { httpTokens: 'required' },
      });
    }
    const component = one(rs, 'aws:imagebuilder/component:Component');
    const document = JSON.parse(String(component.inputs.data));
    t.deepEqual(
      document.phases.map((p: { name: string }) => p.name),
      ['build', 'validate', 'test'],
    );
    // Every artifact the document downloads was uploaded under the digest's prefix.
    const uploaded = new Set(
      byType(rs, 'aws:s3/bucketObjectv2:BucketObjectv2').map((o) => o.inputs.key),
    );
    for (const input of document.phases[0].steps[0].inputs) {
      t.true(uploaded.has(String(input.source).replace(/^s3:\/\/[^/]+\//, '')), input.source);
    }
    t.is(byType(rs, 'aws:imagebuilder/image:Image').length, 2);
    t.deepEqual(Object.keys(outputs.builderImageIds as object).sort(), [
      'linux/amd64',
      'linux/arm64',
    ]);
  },
);

test.serial(
  'existing VPC before the connection exists: no VPC, no agent, subnets with zones',
  async (t) => {
    const { outputs, resources } = await deploy(
      t,
      'existing',
      config({
        vpcId: 'vpc-0aaaabbbbccccdddd',
        privateSubnetIds: '["subnet-0bbbbbbbbbbbbbbb2"]',
      }),
    );
    const rs = resources();
    t.deepEqual(byType(rs, 'awsx:ec2:Vpc'), []);
    t.deepEqual(
      rs.filter((r) => r.type.startsWith('aws:ecs/') || r.type === 'aws:ssm/parameter:Parameter'),
      [],
    );
    t.false(outputs.agentDeployed as boolean);
    const awsConnection = awsConnectionConfigSchema.parse(outputs.awsConnection);
    t.deepEqual(awsConnection.subnets, [{ id: 'subnet-0bbbbbbbbbbbbbbb2', zone: 'eu-west-1b' }]);
    for (const sg of byType(rs, 'aws:ec2/securityGroup:SecurityGroup')) {
      t.is(sg.inputs.vpcId, 'vpc-0aaaabbbbccccdddd');
    }
  },
);

test.serial('wrong existing subnets are all refused before anything is declared', async (t) => {
  mocks.subnets.set('subnet-0eeeeeeeeeeeeeee5', {
    id: 'subnet-0eeeeeeeeeeeeeee5',
    availabilityZone: 'eu-west-1c',
    vpcId: 'vpc-0ffffffffffffffff',
    mapPublicIpOnLaunch: false,
  });
  mocks.subnets.set('subnet-0fffffffffffffff6', {
    id: 'subnet-0fffffffffffffff6',
    availabilityZone: 'eu-west-1a',
    vpcId: 'vpc-0aaaabbbbccccdddd',
    mapPublicIpOnLaunch: true,
  });
  const declared = mocks.resources.length;
  const error = await t.throwsAsync(
    deploy(
      t,
      'badnet',
      config({
        vpcId: 'vpc-0aaaabbbbccccdddd',
        privateSubnetIds:
          '["subnet-0eeeeeeeeeeeeeee5","subnet-0fffffffffffffff6","subnet-0123456789abcdef0"]',
      }),
    ),
    { instanceOf: NetworkError },
  );
  t.is(error.code, 'invalid_network');
  t.deepEqual(error.problems, [
    'slipway:privateSubnetIds[0] subnet-0eeeeeeeeeeeeeee5 is in vpc-0ffffffffffffffff, not in slipway:vpcId vpc-0aaaabbbbccccdddd',
    'slipway:privateSubnetIds[1] subnet-0fffffffffffffff6 gives instances public addresses; builders belong in private subnets (with a NAT gateway for egress)',
    'slipway:privateSubnetIds[2] subnet-0123456789abcdef0 was not found in this account and region',
  ]);
  t.is(mocks.resources.length, declared);
});

test.serial(
  'every taggable resource of the connection stack says which stack made it',
  async (t) => {
    const { resources } = await deploy(
      t,
      'tags',
      config({ connectionId, connectionToken: token, agentImage: 'example/agent:1' }),
    );
    const untagged = resources()
      .filter((r) => 'tags' in r.inputs || r.type === 'awsx:ec2:Vpc')
      .filter(
        (r) =>
          (r.inputs.tags as Record<string, string> | undefined)?.[slipwayTags.stack] !==
          'slipway-connection/tags',
      )
      .map((r) => `${r.type} ${r.name}`);
    t.deepEqual(untagged, []);
    // Resources that take tags but were declared without them would slip past the filter above.
    const taggable = resources().filter((r) =>
      [
        'aws:iam/role:Role',
        'aws:ec2/securityGroup:SecurityGroup',
        'aws:s3/bucket:Bucket',
        'aws:ecs/service:Service',
      ].includes(r.type),
    );
    t.true(taggable.every((r) => 'tags' in r.inputs));
  },
);
