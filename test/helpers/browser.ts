// Headless Chromium for dashboard tests: Debian's chromium driven by playwright-core, with the
// background network features off (this machine has no internet; without them Chromium keeps
// calling home), and every page watched for script errors and for requests leaving the control
// plane. Playwright gives each launch a fresh temporary --user-data-dir and removes it on close.
import { existsSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import { chromium, type Browser, type Page } from 'playwright-core';

export const chromiumPath = process.env.SLIPWAY_CHROMIUM ?? '/usr/bin/chromium';
export const screenshotDir = path.join(__dirname, '..', '..', 'test-results', 'dashboard');

/** One browser for a test file; closed when the file's tests are done (t.teardown). */
export async function launchBrowser(t: ExecutionContext): Promise<Browser> {
  if (!existsSync(chromiumPath)) {
    throw new Error(
      `no Chromium at ${chromiumPath}: run npm run tools (it installs Debian's chromium) or set SLIPWAY_CHROMIUM`,
    );
  }
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
  t.teardown(() => browser.close());
  return browser;
}

export interface WatchedPage {
  page: Page;
  /** URLs the page asked for that are not on the control plane's origin. */
  foreignRequests: string[];
  /** Uncaught script errors and console errors. */
  scriptErrors: string[];
}

/** A page in its own context (own sessionStorage), watched for what a user would not want. */
export async function openPage(browser: Browser, origin: string): Promise<WatchedPage> {
  const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
  const page = await context.newPage();
  const watched: WatchedPage = { page, foreignRequests: [], scriptErrors: [] };
  page.on('request', (req) => {
    const url = new URL(req.url());
    if (url.origin !== origin && url.protocol !== 'data:') watched.foreignRequests.push(req.url());
  });
  page.on('pageerror', (err) => watched.scriptErrors.push(err.message));
  page.on('console', (msg) => {
    if (msg.type() === 'error') watched.scriptErrors.push(msg.text());
  });
  return watched;
}

/** Writes test-results/dashboard/<name>.png (the whole page) for review. */
export async function screenshot(page: Page, name: string): Promise<string> {
  await mkdir(screenshotDir, { recursive: true });
  const file = path.join(screenshotDir, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}

/** Follows a link of the header's navigation, as a user would. */
export function nav(page: Page, label: string): Promise<void> {
  return page.locator('header nav a', { hasText: label }).click();
}

/** Opens the dashboard at `url` and signs in with `token`; resolves once the header shows. */
export async function signIn(page: Page, url: string, token: string): Promise<void> {
  await page.goto(url);
  await page.fill('#token', token);
  await page.click('button[type=submit]');
  await page.getByTestId('organization').waitFor({ timeout: 15_000 });
}
