// The OpenAPI document served at /v1/openapi.json describes exactly the routes the server
// registers: same paths, same methods, a request body where the route takes one.
import test from 'ava';
import { routes } from '../common/api';
import { openApiPath } from '../control-plane/openapi';
import { startTestControlPlane } from './helpers/control-plane';

type Doc = {
  openapi: string;
  paths: Record<
    string,
    Record<string, { operationId: string; requestBody?: unknown; security?: unknown[] }>
  >;
};

test('the OpenAPI document and the router agree on every route', async (t) => {
  const tcp = await startTestControlPlane(t);
  const res = await fetch(`${tcp.url}/v1/openapi.json`);
  t.is(res.status, 200);
  const doc = (await res.json()) as Doc;
  t.is(doc.openapi, '3.1.0');

  const documented = Object.entries(doc.paths)
    .flatMap(([path, ops]) => Object.keys(ops).map((m) => `${m.toUpperCase()} ${path}`))
    .sort();
  const served = tcp.cp.routes
    .filter((r) => r.path.startsWith('/v1/') && r.path !== '/v1/openapi.json')
    .map((r) => `${r.method} ${openApiPath(r.path)}`)
    .sort();
  t.deepEqual(served, documented);
  t.is(served.length, Object.keys(routes).length);

  for (const [name, route] of Object.entries(routes)) {
    const op = doc.paths[openApiPath(route.path)]?.[route.method.toLowerCase()];
    t.is(op?.operationId, name);
    t.is(Boolean(op?.requestBody), 'body' in route, `${name} request body`);
    t.is(op?.security?.length ?? 0, route.auth === 'none' ? 0 : 1, `${name} security`);
  }
});
