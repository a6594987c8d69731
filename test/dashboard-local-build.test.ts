// The dashboard on real data from a local build: a real control plane, the cloud-agent process
// converging the local fleet with the real Pulumi engine, a machine-agent with its buildkitd,
// and `slipway build` building examples/hello on it over mutual TLS. In Chromium the signed-in
// user sees the connection, the machine, the finished build with its phases and the audit record
// whose preview diff names the created machine; another organization's token sees none of it.
// Screenshots of every page go to test-results/dashboard/.
import test from 'ava';
import { copyFile, cp, readFile } from 'node:fs/promises';
import path from 'node:path';
import { buildSchema } from '../common/protocol';
import { phaseLabels } from '../dashboard/src/model';
import { bootstrapOrganization } from '../control-plane/bootstrap';
import { launchBrowser, nav, openPage, screenshot, signIn } from './helpers/browser';
import { runCli } from './helpers/cli';
import { cleanUpLocalFleet, startAgentProcess, type AgentProcess } from './helpers/cloud-agent';
import { startTestControlPlane } from './helpers/control-plane';
import { tempDir } from './helpers/tmp';

const visible = { timeout: 15_000 };
const repoRoot = path.join(__dirname, '..');

const pick = (env: NodeJS.ProcessEnv, names: string[]): Record<string, string> =>
  Object.fromEntries(names.flatMap((n) => (env[n] ? [[n, env[n]]] : [])));

test('a local build shows on every page of its organization and on none of another', async (t) => {
  const started = await startTestControlPlane(t);
  const { token } = await bootstrapOrganization(started.cp.db, 'acme');
  const user = started.client(token);
  const created = await user.call('createConnection', {
    body: { name: 'local', provider: 'local' },
  });
  await user.call('createProject', { body: { name: 'hello', connection: 'local' } });
  const agentDir = await tempDir(t, 'agent');
  const agents: AgentProcess[] = [];
  cleanUpLocalFleet(t, agentDir, () => agents);
  agents.push(
    startAgentProcess({ apiUrl: started.url, connectionToken: created.token, dataDir: agentDir }),
  );

  // examples/hello, with the static busybox its Dockerfile starts from (no registry here).
  const work = await tempDir(t, 'hello');
  const context = path.join(work, 'hello');
  await cp(path.join(repoRoot, 'examples', 'hello'), context, { recursive: true });
  await copyFile('/bin/busybox', path.join(context, 'busybox'));
  const metadataFile = path.join(work, 'build.json');
  const cli = await runCli(
    [
      'build',
      context,
      '--project',
      'hello',
      '--progress',
      'plain',
      '--output',
      `type=local,dest=${path.join(work, 'out')}`,
      '--metadata-file',
      metadataFile,
    ],
    {
      env: {
        SLIPWAY_API_URL: started.url,
        SLIPWAY_TOKEN: token,
        SLIPWAY_CONFIG: path.join(work, 'config.json'),
        // buildctl comes from the tools cache, wherever this run keeps it.
        ...pick(process.env, ['SLIPWAY_TOOLS_DIR', 'XDG_CACHE_HOME']),
      },
      timeoutMs: 240_000,
    },
  );
  t.is(cli.code, 0, cli.stderr);
  const { build } = JSON.parse(await readFile(metadataFile, 'utf8')) as { build: unknown };
  const buildId = buildSchema.parse(build).id;
  const { machines } = await user.call('listMachines', {});
  const machineId = machines[0]!.id;

  const browser = await launchBrowser(t);
  const origin = new URL(started.url).origin;
  const { page, foreignRequests, scriptErrors } = await openPage(browser, origin);
  const dashboard = `${started.url}/dashboard/?poll=500`;
  await signIn(page, dashboard, token);
  t.is(await page.getByTestId('organization').innerText(), 'acme');

  const connection = page.locator('tr[data-connection="local"]');
  await connection.waitFor(visible);
  const agent = (
    await user.call('getConnection', { params: { connectionId: created.connection.id } })
  ).agent!;
  const connectionText = await connection.innerText();
  t.true(connectionText.includes(agent.version), 'agent version');
  t.true(connectionText.includes(agent.agentId), 'lease holder');
  await screenshot(page, 'local-1-connections');

  await nav(page, 'Machines');
  const machine = page.locator(`tr[data-machine="${machineId}"]`);
  await machine.waitFor(visible);
  const machineText = await machine.innerText();
  t.regex(machineText, /linux\/amd64/);
  t.regex(machineText, /hello/, 'its project');
  t.regex(machineText, /127\.0\.0\.1:\d+/, 'its address');
  await screenshot(page, 'local-2-machines');

  await nav(page, 'Builds');
  const row = page.locator(`tr[data-build="${buildId}"]`);
  await row.filter({ hasText: 'succeeded' }).waitFor(visible);
  t.regex(await row.innerText(), /cold/);
  // A cold build went through every phase; one the control plane did not time on its own (the
  // machine registered before the agent reported its apply) shares a bar with the next.
  const titles = await row
    .locator('[data-phase]')
    .evaluateAll((els) => els.map((e) => e.getAttribute('title') ?? ''));
  t.regex(titles[0]!, /^waiting for the agent: /);
  t.regex(titles.at(-1)!, /^building: /);
  for (const label of Object.values(phaseLabels)) {
    t.true(
      titles.some((title) => title.includes(label)),
      label,
    );
  }
  await page.getByTestId('acquire-chart').locator('circle.point-cold').waitFor(visible);
  await screenshot(page, 'local-3-builds');

  await row.locator(`a[href$="${buildId}"]`).click();
  const detail = page.locator(`section[data-build="${buildId}"]`);
  await detail.waitFor(visible);
  t.true((await detail.innerText()).includes(machineId));
  await screenshot(page, 'local-4-build');

  await nav(page, 'Audit trail');
  // The converge that created the machine, its preview diff shown.
  const record = page.locator('article[data-kind="converge"]', { hasText: machineId });
  await record.first().waitFor(visible);
  const diff = record.first().getByTestId('diff');
  t.true((await diff.innerText()).includes(machineId), 'the diff names the created machine');
  t.true(
    (await diff.locator('.diff-create').allInnerTexts()).some((l) => /\(create\)/.test(l)),
    'creates are marked',
  );
  await screenshot(page, 'local-5-audit');
  t.deepEqual(foreignRequests, []);
  t.deepEqual(scriptErrors, []);

  // Another organization on the same control plane sees none of it.
  const other = await bootstrapOrganization(started.cp.db, 'other');
  const { page: otherPage } = await openPage(browser, origin);
  await signIn(otherPage, dashboard, other.token);
  t.is(await otherPage.getByTestId('organization').innerText(), 'other');
  const seen: string[] = [];
  const pages: Array<[string, string]> = [
    ['Connections', 'No connections yet'],
    ['Machines', 'Connection:'],
    ['Builds', 'No builds yet'],
    ['Audit trail', 'No connections yet'],
  ];
  for (const [link, shows] of pages) {
    await nav(otherPage, link);
    await otherPage.getByText(shows).first().waitFor(visible);
    seen.push(await otherPage.locator('main').innerText());
  }
  for (const id of [created.connection.id, machineId, buildId, agent.agentId]) {
    t.false(seen.join('\n').includes(id), `${id} is not shown`);
  }
  await screenshot(otherPage, 'local-6-other-organization');
  await otherPage.goto(`${dashboard}#/builds/${buildId}`);
  await otherPage.getByRole('alert').filter({ hasText: 'not found' }).waitFor(visible);
});
