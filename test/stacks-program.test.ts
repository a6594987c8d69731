// The stack program itself (Pulumi.yaml's main), run under Pulumi mocks with configuration set
// the way `pulumi config set` does: bad settings stop it before anything is declared.
import test from 'ava';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { awsConnectionConfigSchema } from '../common/protocol';
import { ImageArtifactsError } from '../images/builder/image';
import { StackConfigError } from '../stacks/config';
import program from '../stacks/index';
import { AwsMocks, settled } from './helpers/aws-mocks';
import { tempDir } from './helpers/tmp';

const mocks = new AwsMocks();
test.before(() => mocks.install('slipway-connection', 'dev'));

function configure(values: Record<string, string>, secret: string[] = []) {
  pulumi.runtime.setAllConfig(
    Object.fromEntries(Object.entries(values).map(([k, v]) => [`slipway:${k}`, v])),
    secret.map((k) => `slipway:${k}`),
  );
}

test.serial(
  'bad configuration stops the program with every problem and declares nothing',
  async (t) => {
    configure({
      controlPlaneUrl: 'ftp://nowhere',
      connectionToken: `swc_${'c'.repeat(43)}`,
      buildkitIngressCidrs: '["0.0.0.0/0"]',
    });
    const before = mocks.resources.length;
    const error = await t.throwsAsync(program(), { instanceOf: StackConfigError });
    t.deepEqual(error.problems.map((p) => p.key).sort(), [
      'slipway:buildkitIngressCidrs[0]',
      'slipway:connectionId',
      'slipway:connectionToken',
      'slipway:controlPlaneUrl',
    ]);
    t.false(error.message.includes('c'.repeat(43)), 'the token never appears in the error');
    t.is(mocks.resources.length, before);
  },
);

test.serial(
  'a missing machine-agent bundle stops the program before anything is declared',
  async (t) => {
    configure({
      controlPlaneUrl: 'https://slipway.example.com',
      buildkitIngressCidrs: '["10.0.0.0/8"]',
      machineAgentBundle: 'dist/no-such-bundle.cjs',
    });
    const before = mocks.resources.length;
    const error = await t.throwsAsync(program(), { instanceOf: ImageArtifactsError });
    t.regex(error.message, /dist\/no-such-bundle\.cjs/);
    t.regex(error.message, /npm run bundle/);
    t.is(mocks.resources.length, before);
  },
);

test.serial('a good configuration declares the connection and returns its outputs', async (t) => {
  const bundle = path.join(await tempDir(t, 'program'), 'machine-agent.cjs');
  await writeFile(bundle, '"use strict";\n');
  configure(
    {
      controlPlaneUrl: 'https://slipway.example.com',
      buildkitIngressCidrs: '["10.0.0.0/8"]',
      machineAgentBundle: bundle,
      connectionId: 'con_AbCdEfGh1234',
      connectionToken: `swc_${'d'.repeat(43)}`,
      agentImage: 'example/agent:1',
    },
    ['connectionToken'],
  );
  const outputs = (await program()) as Record<string, pulumi.Input<unknown>>;
  const awsConnection = await (
    pulumi.output(outputs.awsConnection) as unknown as { promise(): Promise<unknown> }
  ).promise();
  await settled();
  t.is(awsConnectionConfigSchema.parse(awsConnection).region, 'eu-west-1');
  t.true(outputs.agentDeployed as boolean);
  t.true(mocks.under('slipway').some((r) => r.type === 'aws:ecs/service:Service'));
});
