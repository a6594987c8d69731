// The policy pack's rules on compliant and non-compliant resources, as the policy analyzer would
// present them on the connection stack and on fleet stacks.
import test from 'ava';
import {
  bucketsPrivate,
  buildersWithoutPermissions,
  buildkitNotPublic,
  fleetResourcesTagged,
  imdsV2Required,
  slipwayPolicies,
  storageEncrypted,
} from '../stacks/policy/rules';
import { resourceViolations, stackViolations } from './helpers/policy';

const instanceType = 'aws:ec2/instance:Instance';
const volumeType = 'aws:ebs/volume:Volume';
const connectionTags = {
  'slipway:connection': 'con_AbCdEfGh1234',
  'slipway:machine': 'mch_AbCdEfGh1234',
};

/** An instance as the fleet program declares it. */
const fleetInstance = {
  launchTemplate: { id: 'lt-0123456789abcdef0', version: '$Default' },
  subnetId: 'subnet-0123456789abcdef0',
  metadataOptions: { httpTokens: 'required', httpEndpoint: 'enabled', httpPutResponseHopLimit: 1 },
  tags: connectionTags,
  volumeTags: connectionTags,
};
const fleetVolume = {
  availabilityZone: 'eu-west-1a',
  size: 50,
  type: 'gp3',
  encrypted: true,
  tags: { 'slipway:connection': 'con_AbCdEfGh1234', 'slipway:volume': 'vol_AbCdEfGh1234' },
};
const launchTemplate = {
  metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 1 },
  blockDeviceMappings: [{ deviceName: '/dev/xvda', ebs: { encrypted: 'true', volumeSize: 30 } }],
};

test('the pack holds six mandatory policies with distinct names', (t) => {
  t.is(new Set(slipwayPolicies.map((p) => p.name)).size, 6);
  t.true(slipwayPolicies.every((p) => p.enforcementLevel === 'mandatory'));
});

test('fleet instances and volumes tagged for their connection comply', async (t) => {
  t.deepEqual(
    await resourceViolations(fleetResourcesTagged, { type: instanceType, props: fleetInstance }),
    [],
  );
  t.deepEqual(
    await resourceViolations(fleetResourcesTagged, { type: volumeType, props: fleetVolume }),
    [],
  );
});

test('an instance without the connection tag, or with an untagged root volume, is refused', async (t) => {
  const untagged = await resourceViolations(fleetResourcesTagged, {
    type: instanceType,
    props: {
      ...fleetInstance,
      tags: { 'slipway:machine': 'mch_AbCdEfGh1234' },
      volumeTags: undefined,
    },
  });
  t.is(untagged.length, 1);
  t.regex(untagged[0]!, /slipway:connection tag at creation/);
  const rootUntagged = await resourceViolations(fleetResourcesTagged, {
    type: instanceType,
    props: { ...fleetInstance, volumeTags: {} },
  });
  t.deepEqual(rootUntagged.length, 1);
  t.regex(rootUntagged[0]!, /root volume must be tagged/);
  const noMachine = await resourceViolations(fleetResourcesTagged, {
    type: instanceType,
    props: { ...fleetInstance, tags: { 'slipway:connection': 'con_AbCdEfGh1234' } },
  });
  t.true(noMachine.some((v) => v.includes('slipway:machine')));
});

test('a volume without its tags is refused', async (t) => {
  const v = await resourceViolations(fleetResourcesTagged, {
    type: volumeType,
    props: { ...fleetVolume, tags: {} },
  });
  t.is(v.length, 2);
});

test('IMDSv2: required on instances, launch templates (hop limit 1) and image builds', async (t) => {
  t.deepEqual(
    await resourceViolations(imdsV2Required, { type: instanceType, props: fleetInstance }),
    [],
  );
  t.deepEqual(
    await resourceViolations(imdsV2Required, {
      type: 'aws:ec2/launchTemplate:LaunchTemplate',
      props: launchTemplate,
    }),
    [],
  );
  const optional = await resourceViolations(imdsV2Required, {
    type: instanceType,
    props: { ...fleetInstance, metadataOptions: { httpTokens: 'optional' } },
  });
  t.is(optional.length, 1);
  t.regex(optional[0]!, /IMDSv2/);
  t.is(
    (await resourceViolations(imdsV2Required, { type: instanceType, props: { tags: {} } })).length,
    1,
  );
  const hops = await resourceViolations(imdsV2Required, {
    type: 'aws:ec2/launchTemplate:LaunchTemplate',
    props: {
      ...launchTemplate,
      metadataOptions: { httpTokens: 'required', httpPutResponseHopLimit: 2 },
    },
  });
  t.is(hops.length, 1);
  t.regex(hops[0]!, /hop limit at 1/);
  const imageBuild = await resourceViolations(imdsV2Required, {
    type: 'aws:imagebuilder/infrastructureConfiguration:InfrastructureConfiguration',
    props: { instanceProfileName: 'x' },
  });
  t.is(imageBuild.length, 1);
});

test('storage: unencrypted volumes, root devices, templates and recipes are refused', async (t) => {
  t.deepEqual(
    await resourceViolations(storageEncrypted, { type: volumeType, props: fleetVolume }),
    [],
  );
  t.deepEqual(
    await resourceViolations(storageEncrypted, { type: instanceType, props: fleetInstance }),
    [],
  );
  t.deepEqual(
    await resourceViolations(storageEncrypted, {
      type: 'aws:ec2/launchTemplate:LaunchTemplate',
      props: launchTemplate,
    }),
    [],
  );
  t.is(
    (
      await resourceViolations(storageEncrypted, {
        type: volumeType,
        props: { ...fleetVolume, encrypted: false },
      })
    ).length,
    1,
  );
  t.is(
    (
      await resourceViolations(storageEncrypted, {
        type: volumeType,
        props: { ...fleetVolume, encrypted: undefined },
      })
    ).length,
    1,
  );
  t.is(
    (
      await resourceViolations(storageEncrypted, {
        type: instanceType,
        props: {
          ...fleetInstance,
          rootBlockDevice: { encrypted: false },
          ebsBlockDevices: [{ deviceName: '/dev/sdf' }],
        },
      })
    ).length,
    2,
  );
  t.is(
    (
      await resourceViolations(storageEncrypted, {
        type: 'aws:ec2/launchTemplate:LaunchTemplate',
        props: { blockDeviceMappings: [{ deviceName: '/dev/xvda', ebs: { encrypted: 'false' } }] },
      })
    ).length,
    1,
  );
  t.is(
    (
      await resourceViolations(storageEncrypted, {
        type: 'aws:imagebuilder/imageRecipe:ImageRecipe',
        props: { blockDeviceMappings: [{ deviceName: '/dev/xvda', ebs: { volumeSize: 20 } }] },
      })
    ).length,
    1,
  );
});

const ingressRule = (cidr: string, port = 8372, protocol = 'tcp') => ({
  type: 'aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule',
  props: {
    ipProtocol: protocol,
    fromPort: port,
    toPort: port,
    [cidr.includes(':') ? 'cidrIpv6' : 'cidrIpv4']: cidr,
    securityGroupId: 'sg-1',
  },
});

test('BuildKit open to named networks complies; open to the internet needs the policy config', async (t) => {
  t.deepEqual(await resourceViolations(buildkitNotPublic, ingressRule('203.0.113.0/24')), []);
  const open = await resourceViolations(buildkitNotPublic, ingressRule('0.0.0.0/0'));
  t.is(open.length, 1);
  t.regex(open[0]!, /BuildKit \(port 8372\) is open to 0\.0\.0\.0\/0/);
  t.is((await resourceViolations(buildkitNotPublic, ingressRule('::/0'))).length, 1);
  t.deepEqual(
    await resourceViolations(buildkitNotPublic, ingressRule('0.0.0.0/0'), {
      allowBuildkitFromInternet: true,
    }),
    [],
  );
  t.deepEqual(
    await resourceViolations(buildkitNotPublic, ingressRule('0.0.0.0/0', 9443), {
      allowBuildkitFromInternet: true,
      buildkitPort: 9443,
    }),
    [],
  );
});

test('anything else open to the internet is refused even when BuildKit is allowed', async (t) => {
  const ssh = await resourceViolations(buildkitNotPublic, ingressRule('0.0.0.0/0', 22), {
    allowBuildkitFromInternet: true,
  });
  t.is(ssh.length, 1);
  t.regex(ssh[0]!, /Ingress on port 22 is open to 0\.0\.0\.0\/0/);
  const all = await resourceViolations(
    buildkitNotPublic,
    {
      type: 'aws:ec2/securityGroup:SecurityGroup',
      props: { ingress: [{ protocol: '-1', fromPort: 0, toPort: 0, cidrBlocks: ['0.0.0.0/0'] }] },
    },
    { allowBuildkitFromInternet: true },
  );
  t.regex(all[0]!, /every port/);
  const legacy = await resourceViolations(buildkitNotPublic, {
    type: 'aws:ec2/securityGroupRule:SecurityGroupRule',
    props: {
      type: 'ingress',
      protocol: 'tcp',
      fromPort: 8372,
      toPort: 8372,
      ipv6CidrBlocks: ['::/0'],
      securityGroupId: 'sg-1',
    },
  });
  t.is(legacy.length, 1);
  const egress = await resourceViolations(buildkitNotPublic, {
    type: 'aws:ec2/securityGroupRule:SecurityGroupRule',
    props: {
      type: 'egress',
      protocol: '-1',
      fromPort: 0,
      toPort: 0,
      cidrBlocks: ['0.0.0.0/0'],
      securityGroupId: 'sg-1',
    },
  });
  t.deepEqual(egress, []);
});

test('rules ignore resources they are not about', async (t) => {
  for (const policy of [
    fleetResourcesTagged,
    imdsV2Required,
    storageEncrypted,
    buildkitNotPublic,
  ]) {
    t.deepEqual(await resourceViolations(policy, { type: 'aws:sqs/queue:Queue', props: {} }), []);
  }
});

const bucket = (name: string) => ({ type: 'aws:s3/bucket:Bucket', name, props: { bucket: name } });
const publicAccessBlock = (name: string, all = true) => ({
  type: 'aws:s3/bucketPublicAccessBlock:BucketPublicAccessBlock',
  props: {
    bucket: name,
    blockPublicAcls: true,
    blockPublicPolicy: true,
    ignorePublicAcls: true,
    restrictPublicBuckets: all,
  },
});
const encryption = (name: string) => ({
  type: 'aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration',
  props: {
    bucket: name,
    rules: [{ applyServerSideEncryptionByDefault: { sseAlgorithm: 'AES256' } }],
  },
});

test('buckets: private and encrypted comply; a public or unencrypted one is named', async (t) => {
  t.deepEqual(
    await stackViolations(bucketsPrivate, [
      bucket('state'),
      publicAccessBlock('state'),
      encryption('state'),
    ]),
    [],
  );
  const v = await stackViolations(bucketsPrivate, [
    bucket('state'),
    publicAccessBlock('state'),
    encryption('state'),
    bucket('leaky'),
    publicAccessBlock('leaky', false),
    bucket('plain'),
    publicAccessBlock('plain'),
  ]);
  t.deepEqual(
    v.map((x) => x.name),
    ['leaky', 'leaky', 'plain'],
  );
  t.regex(v[0]!.message, /must block all public access/);
  t.regex(v[2]!.message, /default encryption/);
});

test('the builder role must stay without permissions', async (t) => {
  const role = {
    type: 'aws:iam/role:Role',
    name: 'builders-role',
    props: { name: 'builders-role', tags: { 'slipway:role': 'builder' } },
  };
  const agentRole = { type: 'aws:iam/role:Role', name: 'agent', props: { name: 'agent' } };
  const agentPolicy = {
    type: 'aws:iam/rolePolicy:RolePolicy',
    name: 'agent-policy',
    props: { role: 'agent', policy: '{}' },
  };
  t.deepEqual(
    await stackViolations(buildersWithoutPermissions, [role, agentRole, agentPolicy]),
    [],
  );
  const granted = await stackViolations(buildersWithoutPermissions, [
    role,
    {
      type: 'aws:iam/rolePolicyAttachment:RolePolicyAttachment',
      name: 'admin',
      props: { role: 'builders-role', policyArn: 'arn:aws:iam::aws:policy/AdministratorAccess' },
    },
    {
      type: 'aws:iam/rolePolicy:RolePolicy',
      name: 'inline',
      props: { role: 'builders-role', policy: '{}' },
    },
    {
      type: 'aws:iam/policyAttachment:PolicyAttachment',
      name: 'shared',
      props: { roles: ['builders-role'], policyArn: 'arn:aws:iam::aws:policy/ReadOnlyAccess' },
    },
  ]);
  t.deepEqual(
    granted.map((v) => v.name),
    ['admin', 'inline', 'shared'],
  );
  const managed = await stackViolations(buildersWithoutPermissions, [
    {
      ...role,
      props: { ...role.props, managedPolicyArns: ['arn:aws:iam::aws:policy/ReadOnlyAccess'] },
    },
  ]);
  t.is(managed.length, 1);
});
