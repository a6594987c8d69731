// Proves the Pulumi engine built by `npm run tools` runs an inline Automation API program with a
// dynamic-provider resource against a file:// backend, offline, through its whole life cycle.
import test from 'ava';
import { mkdir, mkdtemp, readFile, rm } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import * as pulumi from '@pulumi/pulumi';
import { LocalWorkspace, PulumiCommand } from '@pulumi/pulumi/automation';
import { engineEnv, toolsDir } from '../common/tools';

// A dynamic provider that owns one file. It runs inside the engine's provider process, so it
// may only use what it requires itself.
/* eslint-disable @typescript-eslint/no-require-imports */
const fileProvider: pulumi.dynamic.ResourceProvider = {
  async create(inputs: { path: string; content: string }) {
    const fs = require('node:fs');
    fs.writeFileSync(inputs.path, inputs.content);
    return { id: inputs.path, outs: inputs };
  },
  async diff(_id: string, olds: { content: string }, news: { content: string }) {
    return { changes: olds.content !== news.content };
  },
  async update(_id: string, _olds: unknown, news: { path: string; content: string }) {
    const fs = require('node:fs');
    fs.writeFileSync(news.path, news.content);
    return { outs: news };
  },
  async delete(id: string) {
    const fs = require('node:fs');
    fs.rmSync(id, { force: true });
  },
};

/* eslint-enable @typescript-eslint/no-require-imports */

class ManagedFile extends pulumi.dynamic.Resource {
  constructor(name: string, args: { path: string; content: string }) {
    super(fileProvider, name, args, {});
  }
}

test('inline program with a dynamic resource: preview, up, idempotent up, destroy on a file backend', async (t) => {
  const dir = await mkdtemp(path.join(tmpdir(), 'slipway-pulumi-proof-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const target = path.join(dir, 'managed.txt');
  const env = {
    ...engineEnv(),
    PULUMI_CONFIG_PASSPHRASE: 'proof-passphrase',
    PULUMI_HOME: path.join(dir, 'home'),
  };
  await mkdir(path.join(dir, 'work'));
  await mkdir(path.join(dir, 'state'));
  const pulumiCommand = await PulumiCommand.get({ root: toolsDir() });
  const stack = await LocalWorkspace.createOrSelectStack(
    {
      stackName: 'proof',
      projectName: 'slipway-toolchain-proof',
      program: async () => {
        new ManagedFile('managed', { path: target, content: 'hello from the engine' });
      },
    },
    {
      workDir: path.join(dir, 'work'),
      pulumiCommand,
      envVars: env,
      projectSettings: {
        name: 'slipway-toolchain-proof',
        runtime: 'nodejs',
        backend: { url: `file://${path.join(dir, 'state')}` },
      },
      secretsProvider: 'passphrase',
    },
  );

  const preview = await stack.preview();
  t.is(preview.changeSummary.create, 2, 'the stack and the file are to be created');
  t.false(existsSync(target), 'preview changes nothing');

  const up = await stack.up();
  t.is(up.summary.result, 'succeeded');
  t.is(up.summary.resourceChanges?.create, 2);
  t.is(await readFile(target, 'utf8'), 'hello from the engine');

  const again = await stack.up();
  t.is(again.summary.result, 'succeeded');
  t.is(again.summary.resourceChanges?.create ?? 0, 0, 'a second up creates nothing');
  t.is(again.summary.resourceChanges?.same, 2, 'a second up leaves everything the same');

  const destroyed = await stack.destroy();
  t.is(destroyed.summary.result, 'succeeded');
  t.false(existsSync(target), 'destroy ran the dynamic provider delete');
  t.true(existsSync(path.join(dir, 'state', '.pulumi')), 'state lives in the file backend');
});
