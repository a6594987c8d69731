// The policy pack run over everything the connection stack declares (under Pulumi mocks): the
// stack keeps every promise it enforces, and opening BuildKit to the internet is caught unless
// the pack is told it is allowed.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ResourceValidationPolicy, StackValidationPolicy } from '@pulumi/policy';
import { parseStackConfig } from '../stacks/config';
import { SlipwayConnection } from '../stacks/connection';
import { resolveNetwork } from '../stacks/network';
import { slipwayPolicies } from '../stacks/policy/rules';
import { AwsMocks, settled, valueOf, type RecordedResource } from './helpers/aws-mocks';
import { resourceViolations, stackViolations } from './helpers/policy';
import { tempDir } from './helpers/tmp';

const mocks = new AwsMocks();
test.before(() => mocks.install());

async function declare(
  t: Parameters<typeof tempDir>[0],
  name: string,
  raw: Record<string, string>,
) {
  const dir = await tempDir(t, 'policy-artifacts');
  const bundle = path.join(dir, 'machine-agent.cjs');
  const unit = path.join(dir, 'slipway-machine-agent.service');
  await writeFile(bundle, '"use strict";\n');
  await writeFile(unit, '[Service]\n');
  const config = parseStackConfig(
    { controlPlaneUrl: 'https://slipway.example.com', ...raw },
    new Set(['connectionToken']),
  );
  const connection = new SlipwayConnection(name, {
    config,
    network: await resolveNetwork(config.network),
    sources: { machineAgentBundle: bundle, machineAgentUnit: unit },
    project: 'slipway-connection',
    stack: name,
  });
  await valueOf(connection.outputs);
  await settled();
  return mocks.under(name);
}

const isResourcePolicy = (p: unknown): p is ResourceValidationPolicy =>
  typeof (p as ResourceValidationPolicy).validateResource !== 'undefined';

async function allViolations(resources: RecordedResource[], config: Record<string, unknown> = {}) {
  const found: string[] = [];
  for (const policy of slipwayPolicies) {
    if (isResourcePolicy(policy)) {
      for (const r of resources) {
        for (const v of await resourceViolations(
          policy,
          { type: r.type, name: r.name, props: r.inputs },
          config,
        )) {
          found.push(`${policy.name} ${r.name}: ${v}`);
        }
      }
    } else {
      const stackPolicy = policy as StackValidationPolicy;
      const inputs = resources.map((r) => ({ type: r.type, name: r.name, props: r.state }));
      for (const v of await stackViolations(stackPolicy, inputs))
        found.push(`${stackPolicy.name} ${v.name}: ${v.message}`);
    }
  }
  return found;
}

test.serial(
  'the connection stack, with its agent and both platforms, passes every policy',
  async (t) => {
    const resources = await declare(t, 'full', {
      buildkitIngressCidrs: '["203.0.113.0/24"]',
      platforms: '["linux/amd64","linux/arm64"]',
      connectionId: 'con_AbCdEfGh1234',
      connectionToken: `swc_${'b'.repeat(43)}`,
      agentImage: 'example/agent:1',
    });
    t.true(resources.length > 40);
    t.deepEqual(await allViolations(resources), []);
  },
);

test.serial('BuildKit opened to the internet is caught unless the pack allows it', async (t) => {
  const resources = await declare(t, 'open', {
    buildkitIngressCidrs: '["0.0.0.0/0"]',
    allowBuildkitFromInternet: 'true',
  });
  const flagged = await allViolations(resources);
  t.is(flagged.length, 1);
  t.regex(
    flagged[0]!,
    /^slipway-buildkit-not-public open-network-builders-in-0: BuildKit \(port 8372\) is open to 0\.0\.0\.0\/0/,
  );
  t.deepEqual(await allViolations(resources, { allowBuildkitFromInternet: true }), []);
});
