// Serves the web dashboard (dist/dashboard/, built by `npm run build:dashboard`) under
// /dashboard/ as static files. The page talks to this origin's public /v1 API only; the
// Content-Security-Policy makes the browser refuse anything else (no CDN, no third party).
import path from 'node:path';
import { send } from '@koa/send';
import type { Middleware } from 'koa';
import type { ErrorBody } from '../common/protocol';
import type { HttpContextState } from './http';

export const dashboardPrefix = '/dashboard';
export const defaultDashboardDir = path.join(__dirname, '..', 'dist', 'dashboard');

const securityHeaders = {
  'content-security-policy': [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    "connect-src 'self'",
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; '),
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

/**
 * GET / and /dashboard redirect to /dashboard/; /dashboard/* are files of `root`. Everything
 * else goes on to the API. Built assets carry a content hash, so they are cached for good;
 * index.html is revalidated so a new build shows on the next load.
 */
export function serveDashboard(root: string = defaultDashboardDir): Middleware {
  return async (ctx, next) => {
    if (ctx.method !== 'GET' && ctx.method !== 'HEAD') return next();
    if (ctx.path === '/' || ctx.path === dashboardPrefix) {
      ctx.redirect(`${dashboardPrefix}/`);
      return;
    }
    if (!ctx.path.startsWith(`${dashboardPrefix}/`)) return next();
    // One metrics label for every file, not one per path.
    (ctx.state as HttpContextState).route = dashboardPrefix;
    const file = ctx.path.slice(dashboardPrefix.length);
    const asset = file.startsWith('/assets/');
    ctx.set(securityHeaders);
    try {
      await send(ctx, file, {
        root,
        index: 'index.html',
        immutable: asset,
        maxAge: asset ? 365 * 86_400_000 : 0,
        setHeaders: (res) => {
          if (!asset) res.setHeader('cache-control', 'no-cache');
        },
      });
    } catch (err) {
      const status = (err as { status?: number }).status ?? 500;
      if (status >= 500) throw err;
      const missingBuild = file === '/' || file === '/index.html';
      const body: ErrorBody = {
        error: {
          code: 'not_found',
          message: missingBuild
            ? 'the dashboard is not built on this control plane: run npm run build:dashboard'
            : `no dashboard file ${file}`,
        },
      };
      ctx.status = 404;
      ctx.body = body;
    }
  };
}
