// `npm run bench -- api`: the control plane on SQLite under the load of many long-polling
// clients, in its own process (`slipway server`) as users run it.
//
// 1. Throughput: autocannon keeps 100 (then 1000) clients busy on each of the calls the CLI,
//    cloud-agents and machine-agents make most, answered at once as a long-poll is when there is
//    news: requests per second and latency percentiles.
// 2. Wake-ups with that many idle long-polls held open (one cloud-agent per connection, each
//    waiting on its sync): how soon a build request wakes its agent (pickup, goal under 50 ms),
//    and how long a build on a ready builder waits for its answer (hot path, goal p95 under
//    100 ms); the server's memory with them all held.
import { parseArgs } from 'node:util';
import autocannon from 'autocannon';
import { ApiClient } from '../common/api';
import { buildCsr, ScriptedAgent, ScriptedMachine } from '../test/helpers/control-plane';
import { progress, Report, summaryRows } from './lib/report';
import type { Scope } from './lib/scope';
import { startServerProcess, type ServerProcess } from './lib/server';
import { summarize, type Summary } from './lib/stats';
import { table } from '../cli/table';

interface Options {
  clients: number[];
  durationSeconds: number;
  rounds: number;
}

function options(argv: string[]): Options {
  const { values } = parseArgs({
    args: argv,
    options: {
      clients: { type: 'string', default: '100,1000' },
      duration: { type: 'string', default: '10' },
      rounds: { type: 'string', default: '30' },
    },
    strict: true,
  });
  return {
    clients: values.clients.split(',').map(Number),
    durationSeconds: Number(values.duration),
    rounds: Number(values.rounds),
  };
}

/** A cloud connection of the organization with its agent: the unit of the load. */
interface Tenant {
  connectionId: string;
  agent: ScriptedAgent;
  token: string;
  projects: number;
}

interface LoadResult {
  call: string;
  clients: number;
  requestsPerSecond: number;
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  requests: number;
  errors: number;
  non2xx: number;
}

async function load(
  url: string,
  call: string,
  clients: number,
  durationSeconds: number,
  request: autocannon.Request,
  signal: AbortSignal,
): Promise<LoadResult> {
  progress(`${call}: ${clients} clients for ${durationSeconds} s`);
  let instance: autocannon.Instance | undefined;
  const finished = new Promise<autocannon.Result>((resolve, reject) => {
    instance = autocannon(
      {
        url,
        connections: clients,
        duration: durationSeconds,
        requests: [request],
        // Long-poll calls answer at once here; anything slower than this is an error, not a wait.
        timeout: 30,
      },
      (err, result) => (err ? reject(err) : resolve(result)),
    );
  });
  const stop = () => instance?.stop();
  signal.addEventListener('abort', stop, { once: true });
  const r = await finished;
  signal.removeEventListener('abort', stop);
  return {
    call,
    clients,
    requestsPerSecond: Math.round(r.requests.average),
    latencyMs: { p50: r.latency.p50, p90: r.latency.p90, p99: r.latency.p99, max: r.latency.max },
    requests: r.requests.total,
    errors: r.errors + r.timeouts,
    non2xx: r.non2xx,
  };
}

/** Connections, their agents (one lease each) and a project per connection, made through the API. */
async function createTenants(
  server: ServerProcess,
  user: ApiClient,
  count: number,
  scope: Scope,
): Promise<Tenant[]> {
  const tenants: Tenant[] = [];
  const batch = 20;
  for (let i = 0; i < count; i += batch) {
    const made = await Promise.all(
      Array.from({ length: Math.min(batch, count - i) }, async (_, j) => {
        const created = await user.call('createConnection', {
          body: {
            name: `c${i + j}`,
            provider: 'local',
            settings: { platforms: ['linux/amd64'], maxMachines: 1000 },
          },
        });
        const api = new ApiClient({ baseUrl: server.url, token: created.token });
        scope.defer(() => api.close());
        return {
          connectionId: created.connection.id,
          agent: new ScriptedAgent(api),
          token: created.token,
          projects: 0,
        };
      }),
    );
    tenants.push(...made);
  }
  return tenants;
}

/**
 * A project whose builder is registered and ready, made the way the real components make it: a
 * build asks for it, the agent reports the machine running, the machine registers and reports
 * BuildKit ready.
 */
async function hotBuilder(server: ServerProcess, user: ApiClient, scope: Scope) {
  const created = await user.call('createConnection', {
    body: { name: 'hot', provider: 'local', settings: { platforms: ['linux/amd64'] } },
  });
  const project = await user.call('createProject', {
    body: { name: 'hot', connection: created.connection.id },
  });
  const clients: ApiClient[] = [];
  const client = (token?: string) => {
    const c = new ApiClient({ baseUrl: server.url, token });
    clients.push(c);
    return c;
  };
  scope.defer(() => Promise.all(clients.map((c) => c.close())));
  const agent = new ScriptedAgent(client(created.token));
  const first = await user.call('createBuild', {
    body: {
      project: project.id,
      platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
    },
  });
  await agent.sync();
  const machine = ScriptedMachine.fromFleet({ anonymous: client(), client }, agent.fleet!);
  await machine.register();
  await agent.applyFleet();
  await machine.task();
  await machine.report('ready');
  const builder = await user.call('waitBuilder', {
    params: { buildId: first.id },
    query: { platform: 'linux/amd64', wait: 10 },
  });
  if (builder.state !== 'ready')
    throw new Error(`the hot builder is ${builder.state}: ${builder.reason}`);
  await user.call('finishBuild', { params: { buildId: first.id }, body: { result: 'succeeded' } });
  return { project, machineToken: machine.token!, connectionToken: created.token };
}

/** Each tenant's agent long-polling its sync, re-polling as soon as it is answered. */
class IdlePolls {
  private readonly controller = new AbortController();
  private readonly waiters = new Map<Tenant, (at: number) => void>();
  private readonly loops: Promise<void>[] = [];
  inFlight = 0;

  constructor(tenants: Tenant[]) {
    for (const tenant of tenants) this.loops.push(this.loop(tenant));
  }

  private async loop(tenant: Tenant): Promise<void> {
    const signal = this.controller.signal;
    while (!signal.aborted) {
      this.inFlight++;
      try {
        await tenant.agent.sync({ wait: 25, signal });
      } catch (err) {
        if (signal.aborted) return;
        throw err;
      } finally {
        this.inFlight--;
      }
      const at = performance.now();
      this.waiters.get(tenant)?.(at);
      this.waiters.delete(tenant);
    }
  }

  /** When the tenant's agent next gets an answer. */
  nextAnswer(tenant: Tenant): Promise<number> {
    return new Promise((resolve) => this.waiters.set(tenant, resolve));
  }

  async stop(): Promise<void> {
    this.controller.abort();
    await Promise.allSettled(this.loops);
  }
}

async function untilHeld(polls: IdlePolls, count: number, signal: AbortSignal): Promise<void> {
  const deadline = performance.now() + 60_000;
  while (polls.inFlight < count) {
    signal.throwIfAborted();
    if (performance.now() > deadline)
      throw new Error(`only ${polls.inFlight} of ${count} polls held`);
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  // The last requests sent still need the server to reach their wait; let it catch up.
  await new Promise((resolve) => setTimeout(resolve, 1000));
}

interface WakeResult {
  clients: number;
  pickup: Summary;
  hot: Summary;
  serverRssMiB: number;
}

async function wakeUps(
  server: ServerProcess,
  user: ApiClient,
  tenants: Tenant[],
  hotProject: string,
  rounds: number,
  scope: Scope,
): Promise<WakeResult> {
  progress(`wake-ups: ${tenants.length} idle long-polls, ${rounds} rounds`);
  for (const t of tenants) await t.agent.sync();
  const polls = new IdlePolls(tenants);
  try {
    await untilHeld(polls, tenants.length, scope.signal);
    const serverRssMiB = await server.rssMiB();
    const pickup: number[] = [];
    const hot: number[] = [];
    for (let i = 0; i < rounds; i++) {
      scope.signal.throwIfAborted();
      // A new project's first build adds a machine and a volume: the fleet changes, the agent wakes.
      const tenant = tenants[i % tenants.length]!;
      const project = await user.call('createProject', {
        body: { name: `p${tenant.projects++}-${i}`, connection: tenant.connectionId },
      });
      const csr = (await buildCsr()).csr;
      const answered = polls.nextAnswer(tenant);
      const started = performance.now();
      await user.call('createBuild', {
        body: { project: project.id, platforms: [{ platform: 'linux/amd64', csr }] },
      });
      pickup.push((await answered) - started);

      const hotCsr = (await buildCsr()).csr;
      const hotStarted = performance.now();
      const build = await user.call('createBuild', {
        body: { project: hotProject, platforms: [{ platform: 'linux/amd64', csr: hotCsr }] },
      });
      const builder = await user.call('waitBuilder', {
        params: { buildId: build.id },
        query: { platform: 'linux/amd64', wait: 25 },
      });
      hot.push(performance.now() - hotStarted);
      if (builder.state !== 'ready' || builder.path !== 'hot') {
        throw new Error(`the hot build got ${builder.state} (${builder.path}): ${builder.reason}`);
      }
      await user.call('finishBuild', {
        params: { buildId: build.id },
        body: { result: 'succeeded' },
      });
    }
    return {
      clients: tenants.length,
      pickup: summarize(pickup),
      hot: summarize(hot),
      serverRssMiB,
    };
  } finally {
    await polls.stop();
  }
}

export default async function api(scope: Scope, argv: string[]): Promise<void> {
  const opts = options(argv);
  const report = new Report('api');
  const maxClients = Math.max(...opts.clients);
  progress('starting slipway server');
  const server = await startServerProcess(scope);
  const user = new ApiClient({ baseUrl: server.url, token: server.token });
  scope.defer(() => user.close());
  progress(`creating ${maxClients} connections`);
  const tenants = await createTenants(server, user, maxClients, scope);
  const hot = await hotBuilder(server, user, scope);
  const idleRssMiB = await server.rssMiB();

  const loads: LoadResult[] = [];
  const wakes: WakeResult[] = [];
  for (const clients of opts.clients) {
    const build = await user.call('createBuild', {
      body: {
        project: hot.project.id,
        platforms: [{ platform: 'linux/amd64', csr: (await buildCsr()).csr }],
      },
    });
    loads.push(
      await load(
        server.url,
        'CLI waits for its ready builder (GET builds/:id/builder)',
        clients,
        opts.durationSeconds,
        {
          method: 'GET',
          path: `/v1/builds/${build.id}/builder?platform=linux/amd64&wait=25`,
          headers: { authorization: `Bearer ${server.token}` },
        },
        scope.signal,
      ),
    );
    await user.call('finishBuild', {
      params: { buildId: build.id },
      body: { result: 'succeeded' },
    });

    let next = 0;
    const syncBodies = tenants.slice(0, clients).map((t) =>
      JSON.stringify({
        agentId: t.agent.agentId,
        agentVersion: 'bench',
        knownGeneration: 0,
        observation: { observedAt: new Date().toISOString(), machines: [], volumes: [] },
      }),
    );
    loads.push(
      await load(
        server.url,
        'cloud-agent reports and syncs (POST agent/sync)',
        clients,
        opts.durationSeconds,
        {
          method: 'POST',
          path: '/v1/agent/sync?wait=0',
          // One lease per connection: each request speaks for the next connection's agent.
          setupRequest: (req) => {
            const i = next++ % syncBodies.length;
            return {
              ...req,
              headers: {
                'content-type': 'application/json',
                authorization: `Bearer ${tenants[i]!.token}`,
              },
              body: syncBodies[i]!,
            };
          },
        },
        scope.signal,
      ),
    );

    loads.push(
      await load(
        server.url,
        'machine-agent asks for its task (GET machine/task)',
        clients,
        opts.durationSeconds,
        {
          method: 'GET',
          path: '/v1/machine/task?generation=0&wait=25',
          headers: { authorization: `Bearer ${hot.machineToken}` },
        },
        scope.signal,
      ),
    );

    wakes.push(
      await wakeUps(server, user, tenants.slice(0, clients), hot.project.id, opts.rounds, scope),
    );
  }

  report.section(
    'Throughput: every client asks again as soon as it is answered',
    table(
      ['call', 'clients', 'req/s', 'p50', 'p90', 'p99', 'max', 'errors'],
      loads.map((l) => [
        l.call,
        l.clients,
        l.requestsPerSecond,
        `${l.latencyMs.p50} ms`,
        `${l.latencyMs.p90} ms`,
        `${l.latencyMs.p99} ms`,
        `${l.latencyMs.max} ms`,
        l.errors + l.non2xx,
      ]),
    ),
  );
  for (const w of wakes) {
    report.section(
      `Wake-ups with ${w.clients} idle agent long-polls held (server RSS ${w.serverRssMiB} MiB, ${idleRssMiB} MiB before)`,
      summaryRows([
        ['agent pickup after a build request', w.pickup],
        ['hot path: request to ready answer', w.hot],
      ]),
    );
  }
  report.section(
    'Start-up',
    `slipway server to its first token printed: ${server.startMs.toFixed(0)} ms`,
  );
  report.finish({
    serverStartMs: Math.round(server.startMs),
    serverIdleRssMiB: idleRssMiB,
    load: loads,
    wakeUps: wakes.map((w) => ({
      clients: w.clients,
      pickupMs: w.pickup,
      hotPathMs: w.hot,
      serverRssMiB: w.serverRssMiB,
    })),
    goals: {
      pickupP50UnderMs50: wakes.every((w) => w.pickup.p50 < 50),
      hotPathP95UnderMs100: wakes.every((w) => w.hot.p95 < 100),
    },
  });
}
