// The cloud-agent image (images/agent/Dockerfile) cannot be built here (no Docker engine, no
// registry), so what can be checked is checked: hadolint accepts the Dockerfile; its pins are the
// repository's (the Pulumi CLI of scripts/tools.sh, the AWS plugin of the locked @pulumi/aws);
// it installs the plugin where the agent looks for it and copies what `npm run bundle` writes;
// the environment the Fargate task gives it is a valid agent configuration; and an agent
// without the plugin says how to install it instead of failing inside the engine.
import test from 'ava';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { loadAgentConfig } from '../agent/config';
import { awsProviderPlugin } from '../automation/aws';
import { FleetStack, FleetStackError } from '../automation/stack';
import { toolPath } from '../common/tools';
import { agentContainerDefinitions } from '../stacks/agent';
import { tempDir } from './helpers/tmp';

const execFileAsync = promisify(execFile);
const root = path.join(__dirname, '..');
const dockerfile = path.join(root, 'images', 'agent', 'Dockerfile');

/** `ARG NAME=value` defaults of the Dockerfile. */
function argDefaults(text: string): Record<string, string> {
  return Object.fromEntries([...text.matchAll(/^ARG (\w+)=(\S+)$/gm)].map((m) => [m[1], m[2]]));
}

/** `ENV` of the final stage, written as `ENV A=1 \ B=2`. */
function finalEnv(text: string): Record<string, string> {
  const stages = text.split(/^FROM /m);
  const last = stages[stages.length - 1] ?? '';
  const env = /^ENV ((?:.*\\\n)*.*)$/m.exec(last)?.[1] ?? '';
  return Object.fromEntries([...env.matchAll(/(\w+)=(\S+)/g)].map((m) => [m[1], m[2]]));
}

test('hadolint accepts the agent Dockerfile without a finding', async (t) => {
  const { stdout } = await execFileAsync(toolPath('hadolint'), ['--format', 'json', dockerfile]);
  t.deepEqual(JSON.parse(stdout), []);
});

test("the image's versions are the repository's pins", async (t) => {
  const args = argDefaults(await readFile(dockerfile, 'utf8'));
  const tools = await readFile(path.join(root, 'scripts', 'tools.sh'), 'utf8');
  t.is(args.PULUMI_VERSION, /^PULUMI_VERSION="([^"]+)"$/m.exec(tools)?.[1], 'scripts/tools.sh');

  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as {
    engines: { node: string };
    dependencies: Record<string, string>;
  };
  const lock = JSON.parse(await readFile(path.join(root, 'package-lock.json'), 'utf8')) as {
    packages: Record<string, { version: string; dependencies?: Record<string, string> }>;
  };
  // package.json's range, resolved by the lock, installed: the plugin the SDK asks for.
  t.is(
    lock.packages['']?.dependencies?.['@pulumi/aws'],
    pkg.dependencies['@pulumi/aws'],
    'the lock resolves the @pulumi/aws of package.json',
  );
  t.is(args.PULUMI_AWS_VERSION, lock.packages['node_modules/@pulumi/aws']?.version, 'the lock');
  t.is(args.PULUMI_AWS_VERSION, awsProviderPlugin().version, 'the installed @pulumi/aws');

  const [major, minor] = (args.NODE_VERSION ?? '').split('.').map(Number);
  const [wantMajor, wantMinor] = /^>=(\d+)\.(\d+)$/.exec(pkg.engines.node)!.slice(1).map(Number);
  t.true(
    major === wantMajor && minor! >= wantMinor!,
    `Node ${args.NODE_VERSION} is not ${pkg.engines.node}`,
  );
});

test('the image puts the plugin where the agent looks and runs the bundles it builds', async (t) => {
  const text = await readFile(dockerfile, 'utf8');
  const args = argDefaults(text);
  const env = finalEnv(text);
  t.is(env.SLIPWAY_TOOLS_DIR, '/opt/slipway/tools');
  const plugin = awsProviderPlugin(env.SLIPWAY_TOOLS_DIR);
  const installed = /test -x "([^"]+)"/
    .exec(text)?.[1]
    ?.replace('${PULUMI_AWS_VERSION}', args.PULUMI_AWS_VERSION ?? '');
  t.is(installed, path.join(plugin.dir, 'pulumi-resource-aws'));
  t.regex(text, /PULUMI_HOME=\/opt\/slipway\/tools [^&]*pulumi plugin install resource aws/);
  t.regex(text, /install -D -m 0755 pulumi\/pulumi \/opt\/slipway\/tools\/bin\/pulumi/);

  // Every bundle the bundle script writes, and only those, beside the entry point.
  const pkg = JSON.parse(await readFile(path.join(root, 'package.json'), 'utf8')) as {
    scripts: { bundle: string };
  };
  const written = [...pkg.scripts.bundle.matchAll(/(\S+)=\S+\.ts/g)].map((m) => `dist/${m[1]}.cjs`);
  const copied = /cp ((?:dist\/\S+\.cjs )+)\/opt\/slipway\//.exec(text)?.[1]?.trim().split(' ');
  t.deepEqual(copied?.sort(), written.sort());
  t.regex(
    text,
    /^ENTRYPOINT \["\/usr\/bin\/tini", "--", "node", "\/opt\/slipway\/cloud-agent\.cjs"\]$/m,
  );
});

test('the environment of the Fargate task is a valid configuration of the image', async (t) => {
  const text = await readFile(dockerfile, 'utf8');
  const [container] = agentContainerDefinitions({
    image: '111122223333.dkr.ecr.eu-west-1.amazonaws.com/slipway-agent:0.1.0',
    controlPlaneUrl: 'https://slipway.example.com',
    region: 'eu-west-1',
    stateBackend: 's3://slipway-fleet-state?region=eu-west-1',
    secretsProvider: 'awskms://alias/slipway-fleet?region=eu-west-1',
    tokenParameterArn:
      'arn:aws:ssm:eu-west-1:111122223333:parameter/slipway/con_x/connection-token',
    tokenVersion: 1,
    logGroupName: '/slipway/con_x/cloud-agent',
  }) as [{ environment: { name: string; value: string }[]; secrets: { name: string }[] }];
  const env: NodeJS.ProcessEnv = { ...finalEnv(text) };
  for (const { name, value } of container.environment) env[name] = value;
  // ECS injects the token from SSM under the secret's name.
  for (const { name } of container.secrets) env[name] = `swc_${'t'.repeat(43)}`;
  const config = await loadAgentConfig(env);
  t.like(config, {
    apiUrl: 'https://slipway.example.com',
    dataDir: '/var/lib/slipway-agent',
    stateBackend: 's3://slipway-fleet-state?region=eu-west-1',
    secretsProvider: 'awskms://alias/slipway-fleet?region=eu-west-1',
  });
  t.regex(text, /install -d -o node -g node -m 0700 \/var\/lib\/slipway-agent/, 'its data dir');
});

test('an agent without the AWS provider plugin says how to install it and runs no engine', async (t) => {
  const dir = await tempDir(t, 'no-plugin');
  const plugin = awsProviderPlugin(path.join(dir, 'tools'));
  const err = await t.throwsAsync(
    FleetStack.open({
      connectionId: 'con_noplugin',
      workDir: path.join(dir, 'work'),
      pulumiHome: path.join(dir, 'home'),
      backend: {
        url: `file://${dir}/state`,
        secretsProvider: 'passphrase',
        passphrase: 'x'.repeat(16),
      },
      plugins: [plugin],
      logger: pino({ level: 'silent' }),
    }),
    { instanceOf: FleetStackError },
  );
  t.is(err?.code, 'provider_plugin_missing');
  t.true(
    err?.message.includes(
      `PULUMI_HOME=${dir}/tools pulumi plugin install resource aws v${plugin.version}`,
    ),
    err?.message,
  );
});
