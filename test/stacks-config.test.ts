// The connection stack's configuration: defaults a user can start from, and bad settings
// reported all at once, each with its key and the command that fixes it.
import test from 'ava';
import { parseStackConfig, StackConfigError } from '../stacks/config';

const minimal = {
  controlPlaneUrl: 'https://slipway.example.com',
  buildkitIngressCidrs: '["203.0.113.0/24"]',
};
const token = `swc_${'Z'.repeat(43)}`;

test('a minimal configuration gets a new VPC and safe defaults', (t) => {
  const c = parseStackConfig(minimal);
  t.deepEqual(c.network, {
    mode: 'new',
    cidr: '10.80.0.0/16',
    availabilityZones: 2,
    natGateways: 'single',
  });
  t.deepEqual(c.platforms, ['linux/amd64']);
  t.deepEqual(c.buildkit, {
    port: 8372,
    ingressCidrs: ['203.0.113.0/24'],
    allowFromInternet: false,
  });
  t.is(c.builderEgress, 'web');
  t.deepEqual(c.instanceTypes, { 'linux/amd64': 'c7i.xlarge', 'linux/arm64': 'c7g.xlarge' });
  t.deepEqual(c.agent, { cpu: 512, memory: 2048, architecture: 'X86_64' });
  t.is(c.connection, undefined);
  t.is(c.machineAgentBundle, 'dist/machine-agent.cjs');
});

test('an existing VPC and a connection are read as such', (t) => {
  const c = parseStackConfig(
    {
      ...minimal,
      vpcId: 'vpc-0123456789abcdef0',
      privateSubnetIds: '["subnet-0123456789abcdef0","subnet-0fedcba9876543210"]',
      connectionId: 'con_AbCdEfGh1234',
      connectionToken: token,
      agentImage: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/slipway-agent:1.2.3',
      platforms: '["linux/arm64"]',
      instanceTypes: '{"linux/arm64":"m7g.2xlarge"}',
      agentCpu: '1024',
      agentMemory: '3072',
    },
    new Set(['connectionToken']),
  );
  t.deepEqual(c.network, {
    mode: 'existing',
    vpcId: 'vpc-0123456789abcdef0',
    privateSubnetIds: ['subnet-0123456789abcdef0', 'subnet-0fedcba9876543210'],
  });
  t.deepEqual(c.connection, {
    id: 'con_AbCdEfGh1234',
    token,
    agentImage: '123456789012.dkr.ecr.eu-west-1.amazonaws.com/slipway-agent:1.2.3',
  });
  t.is(c.instanceTypes['linux/arm64'], 'm7g.2xlarge');
  t.deepEqual(c.agent, { cpu: 1024, memory: 3072, architecture: 'X86_64' });
});

test('opening BuildKit to the internet needs an explicit yes', (t) => {
  const open = { ...minimal, buildkitIngressCidrs: '["0.0.0.0/0","::/0"]' };
  const error = t.throws(() => parseStackConfig(open), { instanceOf: StackConfigError });
  t.deepEqual(
    error.problems.map((p) => p.key),
    ['slipway:buildkitIngressCidrs[0]', 'slipway:buildkitIngressCidrs[1]'],
  );
  t.regex(error.message, /allowBuildkitFromInternet true/);
  const c = parseStackConfig({ ...open, allowBuildkitFromInternet: 'true' });
  t.true(c.buildkit.allowFromInternet);
});

test('every problem is reported at once, with its key and a fix', (t) => {
  const error = t.throws(
    () =>
      parseStackConfig({
        controlPlaneUrl: 'http://slipway.example.com',
        buildkitIngressCidrs: '["10.0.0.0/33","0.0.0.0/0"]',
        vpcId: 'vpc-0123456789abcdef0',
        vpcCidr: '10.0.0.0/16',
        connectionId: 'con_AbCdEfGh1234',
        platforms: '["linux/arm64","linux/riscv64"]',
        instanceTypes: '{"linux/arm64":"c7i.large","linux/amd64":"c7g.large"}',
        agentMemory: '1000',
        buildkitIngressCidr: '["10.0.0.0/8"]',
        rootVolumeGb: 'lots',
      }),
    { instanceOf: StackConfigError },
  );
  t.is(error.code, 'invalid_stack_config');
  const byKey = new Map(error.problems.map((p) => [p.key, p]));
  const keys = [...byKey.keys()];
  for (const key of [
    'slipway:controlPlaneUrl',
    'slipway:buildkitIngressCidrs[0]',
    'slipway:buildkitIngressCidrs[1]',
    'slipway:privateSubnetIds',
    'slipway:vpcCidr',
    'slipway:connectionToken',
    'slipway:agentImage',
    'slipway:platforms[1]',
    'slipway:instanceTypes["linux/arm64"]',
    'slipway:instanceTypes["linux/amd64"]',
    'slipway:agentMemory',
    'slipway:buildkitIngressCidr',
    'slipway:rootVolumeGb',
  ]) {
    t.true(keys.includes(key), `${key} missing from ${keys.join(', ')}`);
  }
  t.regex(byKey.get('slipway:controlPlaneUrl')!.message, /https/);
  t.regex(
    byKey.get('slipway:buildkitIngressCidr')!.message,
    /did you mean slipway:buildkitIngressCidrs\?/,
  );
  t.regex(byKey.get('slipway:agentMemory')!.message, /1024-4096 in steps of 1024/);
  t.regex(byKey.get('slipway:connectionToken')!.fix!, /--secret/);
  t.regex(error.message, /nothing was changed/);
  // One line per problem, each with the key first.
  for (const p of error.problems) t.true(error.message.includes(`- ${p.key}: ${p.message}`));
});

test('required settings are named when missing', (t) => {
  const error = t.throws(() => parseStackConfig({}), { instanceOf: StackConfigError });
  t.deepEqual(
    error.problems.map((p) => [p.key, p.message]),
    [
      ['slipway:controlPlaneUrl', 'is required'],
      ['slipway:buildkitIngressCidrs', 'is required'],
    ],
  );
  t.regex(error.problems[1]!.fix!, /pulumi config set --path 'slipway:buildkitIngressCidrs\[0\]'/);
});

test('a connection token set without --secret is refused', (t) => {
  const raw = {
    ...minimal,
    connectionId: 'con_AbCdEfGh1234',
    connectionToken: token,
    agentImage: 'example/agent:1',
  };
  const error = t.throws(() => parseStackConfig(raw, new Set()), { instanceOf: StackConfigError });
  t.deepEqual(
    error.problems.map((p) => p.key),
    ['slipway:connectionToken'],
  );
  t.regex(error.problems[0]!.message, /secret/);
  t.false(error.message.includes(token));
});
