// The web dashboard in a real browser (Debian's Chromium through playwright-core) against a
// real control plane: sign-in, each page with the organization's own data, live updates, and
// nothing of another organization. Screenshots of every page go to test-results/dashboard/.
import test, { type ExecutionContext } from 'ava';
import type { Browser, Page } from 'playwright-core';
import { request } from 'undici';
import { bootstrapOrganization } from '../control-plane/bootstrap';
import { launchBrowser, openPage, screenshot, type WatchedPage } from './helpers/browser';
import { buildCsr, startTestControlPlane, type TestControlPlane } from './helpers/control-plane';
import { scriptedBuild, type ScriptedBuild } from './helpers/scripted-fleet';

// Polling fast keeps the tests short; the dashboard's default is a few seconds.
const pollMs = 500;
const visible = { timeout: 15_000 };

interface World {
  tcp: TestControlPlane;
  /** The user token of the dashboard's organization, acme. */
  token: string;
  fleet: ScriptedBuild;
  browser: Browser;
  url: string;
}

/** A control plane with a finished build of the acme organization, and a browser. */
async function world(t: ExecutionContext): Promise<World> {
  const started = await startTestControlPlane(t);
  const { token } = await bootstrapOrganization(started.cp.db, 'acme');
  const tcp = { ...started, user: started.client(token) };
  const fleet = await scriptedBuild(tcp);
  const browser = await launchBrowser(t);
  return { tcp, token, fleet, browser, url: `${tcp.url}/dashboard/?poll=${pollMs}` };
}

/** Follows a link of the header's navigation, as a user would. */
const nav = (page: Page, label: string) => page.locator('header nav a', { hasText: label }).click();

async function signedIn(w: World, token = w.token): Promise<WatchedPage> {
  const watched = await openPage(w.browser, new URL(w.tcp.url).origin);
  await watched.page.goto(w.url);
  await watched.page.fill('#token', token);
  await watched.page.click('button[type=submit]');
  await watched.page.getByTestId('organization').waitFor(visible);
  return watched;
}

test.serial(
  'the control plane serves the dashboard with a policy that keeps it on its origin',
  async (t) => {
    const { url } = await startTestControlPlane(t);
    const root = await request(`${url}/`);
    t.is(root.statusCode, 302);
    t.is(root.headers.location, '/dashboard/');
    await root.body.dump();

    const index = await request(`${url}/dashboard/`);
    t.is(index.statusCode, 200);
    t.regex(String(index.headers['content-type']), /text\/html/);
    t.regex(String(index.headers['content-security-policy']), /connect-src 'self'/);
    t.is(index.headers['cache-control'], 'no-cache');
    const html = await index.body.text();
    const asset = /src="\.\/(assets\/[^"]+\.js)"/.exec(html)?.[1];
    t.truthy(asset, 'index.html loads a bundled script');
    t.notRegex(html, /https?:\/\//, 'nothing is loaded from another origin');

    const script = await request(`${url}/dashboard/${asset}`);
    t.is(script.statusCode, 200);
    t.regex(String(script.headers['cache-control']), /immutable/);
    await script.body.dump();

    for (const path of ['/dashboard/nope.js', '/dashboard/..%2fpackage.json']) {
      const missing = await request(`${url}${path}`);
      t.is(missing.statusCode, 404, path);
      t.like(await missing.body.json(), { error: { code: 'not_found' } });
    }
  },
);

test.serial(
  'sign-in refuses a wrong token with a sentence and shows the organization for a user token',
  async (t) => {
    const w = await world(t);
    const { page, foreignRequests, scriptErrors } = await openPage(
      w.browser,
      new URL(w.tcp.url).origin,
    );
    await page.goto(w.url);
    await screenshot(page, '1-sign-in');
    await page.fill('#token', 'not-a-token');
    await page.click('button[type=submit]');
    t.regex(await page.getByRole('alert').innerText(), /user tokens start with swu_/);
    await page.fill('#token', `swu_${'x'.repeat(43)}`);
    await page.click('button[type=submit]');
    await page.getByRole('alert').filter({ hasText: 'does not know this token' }).waitFor(visible);

    await page.fill('#token', w.token);
    await page.click('button[type=submit]');
    await page.getByTestId('organization').waitFor(visible);
    t.is(await page.getByTestId('organization').innerText(), 'acme');
    // A reload keeps the session of this tab.
    await page.reload();
    await page.getByTestId('organization').waitFor(visible);
    t.deepEqual(foreignRequests, []);
    // The refused tokens were answered 401, which Chromium reports as a console error.
    t.true(
      scriptErrors.every((e) => /status of 401/.test(e)),
      scriptErrors.join('\n'),
    );
  },
);

test.serial(
  'each page shows the connection, the machine, the finished build with its phases and the audit diff naming the machine',
  async (t) => {
    const w = await world(t);
    const { fleet } = w;
    const { page, foreignRequests, scriptErrors } = await signedIn(w);

    const connection = page.locator('tr[data-connection="local"]');
    await connection.filter({ hasText: 'healthy' }).waitFor(visible);
    const connectionText = await connection.innerText();
    t.regex(connectionText, /\btest\b/, 'agent version');
    t.true(connectionText.includes(fleet.agentId), 'lease holder');
    t.regex(connectionText, /1 \(1 ready\)/);
    await screenshot(page, '2-connections');

    await nav(page, 'Machines');
    const machine = page.locator(`tr[data-machine="${fleet.machineId}"]`);
    await machine.filter({ hasText: 'ready' }).waitFor(visible);
    const machineText = await machine.innerText();
    t.regex(machineText, /linux\/amd64/);
    t.regex(machineText, /hello/, 'project');
    t.regex(machineText, /127\.0\.0\.1:\d+/, 'address');
    t.regex(machineText, /\d+ (B|KiB|MiB|GiB) \/ \d+ (GiB|TiB)/, 'cache use');
    await screenshot(page, '3-machines');

    await nav(page, 'Builds');
    const build = page.locator(`tr[data-build="${fleet.buildId}"]`);
    await build.filter({ hasText: 'succeeded' }).waitFor(visible);
    t.regex(await build.innerText(), /cold/);
    const phases = await build
      .locator('[data-phase]')
      .evaluateAll((els) => els.map((e) => e.getAttribute('data-phase')));
    t.deepEqual(phases, ['queued', 'provisioning', 'booting', 'starting', 'handoff', 'build']);
    t.is(await build.locator('[data-phase="build"]').getAttribute('title'), 'building: 1.9 s');
    await page.getByTestId('acquire-chart').locator('circle.point-cold').waitFor(visible);
    await page.getByTestId('count-chart').locator('rect').first().waitFor(visible);
    await screenshot(page, '4-builds');

    await build.locator(`a[href$="${fleet.buildId}"]`).click();
    const detail = page.locator(`section[data-build="${fleet.buildId}"]`);
    await detail.waitFor(visible);
    t.true((await detail.innerText()).includes(fleet.machineId));
    t.is(await detail.locator('table.phases tr[data-phase]').count(), 6);
    await screenshot(page, '5-build');

    await nav(page, 'Audit trail');
    // The fleet's first converge: the one that created the machine.
    const converge = page.locator('article[data-kind="converge"]', { hasText: 'create 2' });
    await converge.waitFor(visible);
    t.regex(await converge.getByTestId('summary').innerText(), /create 2/);
    const diff = converge.getByTestId('diff');
    t.true((await diff.innerText()).includes(fleet.machineId), 'the diff names the machine');
    const created = await diff.locator('.diff-create').allInnerTexts();
    t.true(
      created.some((l) => l.includes('slipway:local:Machine')),
      'created resources are marked as creates',
    );
    await screenshot(page, '6-audit');

    t.deepEqual(foreignRequests, []);
    t.deepEqual(scriptErrors, []);
  },
);

test.serial(
  'a build requested while the page is open appears with why it waits, without a reload',
  async (t) => {
    const w = await world(t);
    const { page, scriptErrors } = await signedIn(w);
    await nav(page, 'Builds');
    await page.locator(`tr[data-build="${w.fleet.buildId}"]`).waitFor(visible);
    await w.tcp.user.call('createProject', { body: { name: 'second', connection: 'local' } });
    const waiting = await w.tcp.user.call('createBuild', {
      body: {
        project: 'second',
        platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
      },
    });
    const row = page.locator(`tr[data-build="${waiting.id}"]`);
    await row.filter({ hasText: 'pending' }).waitFor(visible);
    const { reason } = (await w.tcp.user.call('getBuild', { params: { buildId: waiting.id } }))
      .builders[0]!;
    t.not(reason, '');
    await row.filter({ hasText: reason }).waitFor(visible);
    t.true((await row.locator('.phase-open').count()) > 0, 'the phase it waits in is drawn open');
    await screenshot(page, '7-builds-live');
    t.deepEqual(scriptErrors, []);
  },
);

test.serial('a token of another organization sees none of it', async (t) => {
  const w = await world(t);
  const { fleet } = w;
  const { token } = await bootstrapOrganization(w.tcp.cp.db, 'other');
  const { page } = await signedIn(w, token);
  t.is(await page.getByTestId('organization').innerText(), 'other');
  const seen: string[] = [];
  const pages: Array<[string, string]> = [
    ['Connections', 'No connections yet'],
    ['Machines', 'Connection:'],
    ['Builds', 'No builds yet'],
    ['Audit trail', 'No connections yet'],
  ];
  for (const [link, shows] of pages) {
    await nav(page, link);
    await page.getByText(shows).first().waitFor(visible);
    seen.push(await page.locator('main').innerText());
  }
  for (const id of [fleet.connectionId, fleet.machineId, fleet.buildId, fleet.agentId]) {
    t.false(seen.join('\n').includes(id), `${id} is not shown`);
  }
  await screenshot(page, '8-other-organization');
  // Addresses of the first organization's objects lead nowhere.
  await page.goto(`${w.url}#/builds/${fleet.buildId}`);
  await page.getByRole('alert').filter({ hasText: 'not found' }).waitFor(visible);
  await page.goto(`${w.url}#/audit/${fleet.connectionId}`);
  await page.getByText(`No connection ${fleet.connectionId} in this organization`).waitFor(visible);
});
