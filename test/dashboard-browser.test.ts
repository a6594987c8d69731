// The web dashboard as the control plane serves it, in a real browser (Debian's Chromium
// through playwright-core) against a real control plane: the static files and their policy,
// sign-in, and live updates without a reload. The pages on real data from a local build are in
// dashboard-local-build.test.ts.
import test, { type ExecutionContext } from 'ava';
import { request } from 'undici';
import { bootstrapOrganization } from '../control-plane/bootstrap';
import { launchBrowser, nav, openPage, screenshot, signIn } from './helpers/browser';
import { buildCsr, startTestControlPlane } from './helpers/control-plane';

// Polling fast keeps the tests short; the dashboard's default is a few seconds.
const pollMs = 500;
const visible = { timeout: 15_000 };

/** A control plane with the acme organization, its user client and token, and a browser. */
async function world(t: ExecutionContext) {
  const started = await startTestControlPlane(t);
  const { token } = await bootstrapOrganization(started.cp.db, 'acme');
  const browser = await launchBrowser(t);
  return {
    tcp: started,
    user: started.client(token),
    token,
    browser,
    origin: new URL(started.url).origin,
    url: `${started.url}/dashboard/?poll=${pollMs}`,
  };
}

test('the control plane serves the dashboard with a policy that keeps it on its origin', async (t) => {
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
});

test('sign-in refuses a wrong token with a sentence and shows the organization for a user token', async (t) => {
  const w = await world(t);
  const { page, foreignRequests, scriptErrors } = await openPage(w.browser, w.origin);
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
  // A reload keeps the session of this tab; signing out ends it.
  await page.reload();
  await page.getByTestId('organization').waitFor(visible);
  await page.getByRole('button', { name: 'Sign out' }).click();
  await page.locator('#token').waitFor(visible);
  await page.reload();
  await page.locator('#token').waitFor(visible);
  t.deepEqual(foreignRequests, []);
  // The refused tokens were answered 401, which Chromium reports as a console error.
  t.true(
    scriptErrors.every((e) => /status of 401/.test(e)),
    scriptErrors.join('\n'),
  );
});

test('a connection and a build made while the page is open appear without a reload, with why the build waits', async (t) => {
  const w = await world(t);
  const { page, scriptErrors } = await openPage(w.browser, w.origin);
  await signIn(page, w.url, w.token);
  await page.getByText('No connections yet').waitFor(visible);

  await w.user.call('createConnection', { body: { name: 'local', provider: 'local' } });
  await w.user.call('createProject', { body: { name: 'web', connection: 'local' } });
  const connection = page.locator('tr[data-connection="local"]');
  await connection.filter({ hasText: 'no-agent' }).waitFor(visible);

  await nav(page, 'Builds');
  await page.getByText('No builds yet: run').waitFor(visible);
  const waiting = await w.user.call('createBuild', {
    body: {
      project: 'web',
      platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
    },
  });
  const row = page.locator(`tr[data-build="${waiting.id}"]`);
  await row.filter({ hasText: 'pending' }).waitFor(visible);
  const { reason } = (await w.user.call('getBuild', { params: { buildId: waiting.id } }))
    .builders[0]!;
  t.regex(reason, /agent/, 'nothing picks it up: no agent runs for the connection');
  await row.filter({ hasText: reason }).waitFor(visible);
  t.is(await row.locator('.phase-open').getAttribute('data-phase'), 'queued');
  await screenshot(page, '2-build-waiting');
  t.deepEqual(scriptErrors, []);
});
