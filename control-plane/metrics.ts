// Prometheus metrics of one control plane: requests by route and status, request durations,
// builder requests pending, and how long acquiring a builder took on each path.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { acquirePaths } from '../common/protocol';

export interface Metrics {
  registry: Registry;
  httpRequests: Counter<'method' | 'route' | 'status'>;
  httpDuration: Histogram<'method' | 'route'>;
  acquireSeconds: Histogram<'path'>;
}

export function createMetrics(opts: {
  pendingBuilders: () => Promise<number>;
  processMetrics: boolean;
}): Metrics {
  const registry = new Registry();
  if (opts.processMetrics) collectDefaultMetrics({ register: registry });
  const httpRequests = new Counter({
    name: 'slipway_http_requests_total',
    help: 'HTTP requests by method, route and status',
    labelNames: ['method', 'route', 'status'] as const,
    registers: [registry],
  });
  const httpDuration = new Histogram({
    name: 'slipway_http_request_duration_seconds',
    help: 'HTTP request duration (long-polls included) by method and route',
    labelNames: ['method', 'route'] as const,
    buckets: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30],
    registers: [registry],
  });
  new Gauge({
    name: 'slipway_pending_builders',
    help: 'Builder requests waiting for a builder',
    registers: [registry],
    async collect() {
      this.set(await opts.pendingBuilders());
    },
  });
  const acquireSeconds = new Histogram({
    name: 'slipway_builder_acquire_seconds',
    help: 'Time from a builder request to its builder being ready, by path (hot, warm, cold)',
    labelNames: ['path'] as const,
    buckets: [0.01, 0.05, 0.1, 0.5, 1, 5, 15, 30, 60, 120, 300],
    registers: [registry],
  });
  for (const path of acquirePaths) acquireSeconds.zero({ path });
  return { registry, httpRequests, httpDuration, acquireSeconds };
}
