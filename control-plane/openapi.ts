// The OpenAPI document of the /v1 API, generated from the same route table the router is built
// from (common/api.ts), so the two cannot drift apart.
import { OpenAPIRegistry, OpenApiGeneratorV31 } from '@asteasolutions/zod-to-openapi';
import { z } from 'zod';
import { routes, type RouteDef } from '../common/api';
import { errorBodySchema } from '../common/protocol';

/** `/v1/builds/:buildId` as OpenAPI writes it: `/v1/builds/{buildId}`. */
export function openApiPath(path: string): string {
  return path.replace(/:([A-Za-z]+)/g, '{$1}');
}

export function openApiDocument(serverUrl: string) {
  const registry = new OpenAPIRegistry();
  registry.registerComponent('securitySchemes', 'bearer', { type: 'http', scheme: 'bearer' });
  const error = {
    description: 'An error with a stable code',
    content: { 'application/json': { schema: errorBodySchema } },
  };
  for (const [name, route] of Object.entries(routes) as [string, RouteDef][]) {
    const paramNames = [...route.path.matchAll(/:([A-Za-z]+)/g)].map((m) => m[1]!);
    registry.registerPath({
      operationId: name,
      method: route.method.toLowerCase() as 'get',
      path: openApiPath(route.path),
      summary: route.summary,
      security: route.auth === 'none' ? [] : [{ bearer: [] }],
      description: route.auth === 'none' ? undefined : `Takes a ${route.auth} token.`,
      request: {
        ...(paramNames.length
          ? { params: z.object(Object.fromEntries(paramNames.map((p) => [p, z.string()]))) }
          : {}),
        ...(route.query ? { query: route.query as z.ZodObject } : {}),
        ...(route.body
          ? { body: { content: { 'application/json': { schema: route.body } }, required: true } }
          : {}),
      },
      responses: {
        [route.status ?? 200]: {
          description: 'Success',
          content: { 'application/json': { schema: route.response } },
        },
        '4XX': error,
        '5XX': error,
      },
    });
  }
  return new OpenApiGeneratorV31(registry.definitions).generateDocument({
    openapi: '3.1.0',
    info: { title: 'Slipway control plane', version: 'v1' },
    servers: [{ url: serverUrl }],
  });
}
