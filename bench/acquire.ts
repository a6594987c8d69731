// `npm run bench -- acquire`: the time from a build request to the CLI holding a ready builder,
// on the local provider of `slipway dev`, for each path, split into phases, against the floor (a
// bare buildkitd with the same flags, started and seen ready) measured in the same run.
//
// - hot: the project's builder is ready; the agent is not involved.
// - warm-stopped: the project's builder was stopped by the idle timeout; it is started again on
//   its volume.
// - warm-standby: a running standby machine of the warm pool is given to a new project.
// - cold: a new project: a new machine and a new volume.
// - first: the first build on a `slipway dev` started a moment before (what `npm run demo` and a
//   new user see): a new stack as well as a new machine and volume; a new dev every round.
//
// Each round starts from a settled fleet (nothing converging, every machine in a resting state),
// so the rounds do not pay for each other's background work. Requests are made through the API
// exactly as the CLI makes them; the CLI's own start-up is measured on its own (`slipway build`
// on the hot builder, spawn to request).
import { copyFile, cp } from 'node:fs/promises';
import path from 'node:path';
import { parseArgs } from 'node:util';
import type { ApiClient } from '../common/api';
import type { Builder, Machine } from '../common/protocol';
import { waitFor } from '../common/wait';
import { table } from '../cli/table';
import { buildCsr } from '../test/helpers/control-plane';
import { startDev, type Dev } from './lib/dev';
import { measureFloor } from './lib/floor';
import { agentConverges, machineMilestones } from './lib/logs';
import { progress, Report, summaryRows } from './lib/report';
import { Scope } from './lib/scope';
import { slipwayBuild } from './lib/slipway-build';
import { summarize, type Summary } from './lib/stats';

const paths = ['hot', 'warm-stopped', 'warm-standby', 'cold', 'first'] as const;
type PathName = (typeof paths)[number];

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      rounds: { type: 'string', default: '20' },
      'first-rounds': { type: 'string', default: '5' },
      paths: { type: 'string', default: paths.join(',') },
    },
    strict: true,
  });
  const chosen = values.paths.split(',') as PathName[];
  for (const p of chosen) {
    if (!paths.includes(p)) throw new Error(`--paths: ${p} is not one of ${paths.join(', ')}`);
  }
  return {
    rounds: Number(values.rounds),
    firstRounds: Number(values['first-rounds']),
    paths: chosen,
  };
}

/** Milliseconds from the request, per phase; undefined where the path has no such phase. */
interface Round {
  path: string;
  /** The control plane answered the build request. */
  acceptedMs: number;
  pickedUpMs?: number;
  /** The agent's converge (Pulumi preview and up) that served the request. */
  convergeStartMs?: number;
  /** Its preview ended and the update began. */
  previewEndMs?: number;
  convergeEndMs?: number;
  /** The machine-agent process logged its first line (Node started, code loaded). */
  machineProcessMs?: number;
  registeredMs?: number;
  buildkitdReadyMs?: number;
  readyMs?: number;
  /** The CLI received the ready answer (its own clock). */
  answeredMs: number;
}

const settledStatuses: Machine['status'][] = ['idle', 'ready', 'stopped', 'deleted', 'failed'];

/**
 * The fleet is at rest: the agent applied the newest generation, no machine is on its way
 * somewhere, and `extra` holds (e.g. a standby machine idle).
 */
async function settled(
  dev: Dev,
  signal: AbortSignal,
  extra: (machines: Machine[]) => boolean = () => true,
): Promise<Machine[]> {
  return waitFor(
    async () => {
      const { connections } = await dev.user.call('listConnections', {});
      const conn = connections[0]!;
      if (!conn.agent || conn.agent.appliedGeneration < conn.generation) return undefined;
      const { machines } = await dev.user.call('listMachines', { query: { connection: conn.id } });
      if (!machines.every((m) => settledStatuses.includes(m.status))) return undefined;
      return extra(machines) ? machines : undefined;
    },
    { timeoutMs: 300_000, intervalMs: 100, what: 'the fleet to settle', signal },
  );
}

/** The CLI's part: request a builder, long-poll until it is ready. */
async function acquire(
  user: ApiClient,
  project: string,
): Promise<{ builder: Builder; startedAt: number; acceptedAt: number; answeredAt: number }> {
  const csr = (await buildCsr()).csr;
  const startedAt = Date.now();
  const build = await user.call('createBuild', {
    body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
  });
  const acceptedAt = Date.now();
  for (;;) {
    const builder = await user.call('waitBuilder', {
      params: { buildId: build.id },
      query: { platform: 'linux/amd64', wait: 25 },
    });
    if (builder.state === 'ready') {
      const answeredAt = Date.now();
      await user.call('finishBuild', {
        params: { buildId: build.id },
        body: { result: 'succeeded' },
      });
      return { builder, startedAt, acceptedAt, answeredAt };
    }
    if (builder.state !== 'pending') throw new Error(`builder ${builder.state}: ${builder.reason}`);
  }
}

async function measureRound(dev: Dev, project: string): Promise<Round> {
  const { builder, startedAt, acceptedAt, answeredAt } = await acquire(dev.user, project);
  const at = (iso: string | null) => (iso ? Date.parse(iso) - startedAt : undefined);
  const round: Round = {
    path: builder.path ?? 'unknown',
    acceptedMs: acceptedAt - startedAt,
    answeredMs: answeredAt - startedAt,
    readyMs: at(builder.phases.readyAt),
  };
  if (builder.path === 'hot') return round;
  round.pickedUpMs = at(builder.phases.pickedUpAt);
  round.registeredMs = at(builder.phases.registeredAt);
  const machine = await machineMilestones(dev.agentDir, builder.machineId!, startedAt);
  round.machineProcessMs = machine.processStartedAt && machine.processStartedAt - startedAt;
  round.buildkitdReadyMs = machine.buildkitdReadyAt && machine.buildkitdReadyAt - startedAt;
  // The converge that served the request: the last one begun before the machine-agent started
  // (on a new dev, one for the empty fleet may come first). Its last line can land just after
  // the answer.
  const converge = await waitFor(
    async () => {
      const after = (await agentConverges(dev.logFile)).filter((c) => c.startedAt >= startedAt);
      const before = machine.processStartedAt
        ? after.filter((c) => c.startedAt <= machine.processStartedAt!)
        : after;
      return before.at(-1) ?? after[0];
    },
    { timeoutMs: 10_000, intervalMs: 20, what: 'the converge in the agent log' },
  ).catch(() => undefined);
  if (converge) {
    round.convergeStartMs = converge.startedAt - startedAt;
    round.convergeEndMs = converge.finishedAt - startedAt;
    if (converge.previewFinishedAt) round.previewEndMs = converge.previewFinishedAt - startedAt;
  }
  return round;
}

let projects = 0;
async function newProject(dev: Dev, prefix: string): Promise<string> {
  const { connections } = await dev.user.call('listConnections', {});
  const p = await dev.user.call('createProject', {
    body: { name: `${prefix}-${++projects}`, connection: connections[0]!.id },
  });
  return p.id;
}

async function setWarmPool(dev: Dev, running: number): Promise<void> {
  const { connections } = await dev.user.call('listConnections', {});
  await dev.user.call('updateConnection', {
    params: { connectionId: connections[0]!.id },
    body: { settings: { warmPool: { 'linux/amd64': { running, stopped: 0 } } } },
  });
}

interface PathResult {
  path: PathName;
  rounds: Round[];
  /** first: each round's slipway dev, from spawn to ready. */
  devStartMs?: number[];
  floorFresh?: number[];
  floorReused?: number[];
}

async function runPath(
  dev: Dev,
  scope: Scope,
  name: PathName,
  rounds: number,
  idleTimeoutSeconds: number,
): Promise<PathResult> {
  progress(`${name}: ${rounds} rounds`);
  const result: PathResult = { path: name, rounds: [] };
  const signal = scope.signal;
  switch (name) {
    case 'hot': {
      const project = await newProject(dev, 'hot');
      await measureRound(dev, project);
      for (let i = 0; i < rounds; i++) result.rounds.push(await measureRound(dev, project));
      break;
    }
    case 'warm-stopped': {
      const project = await newProject(dev, 'stopped');
      await measureRound(dev, project);
      for (let i = 0; i < rounds; i++) {
        progress(`  round ${i + 1}: waiting ${idleTimeoutSeconds} s for the builder to stop`);
        await settled(dev, signal, (ms) =>
          ms.every((m) => m.projectId !== project || m.status === 'stopped'),
        );
        result.rounds.push(await measureRound(dev, project));
      }
      break;
    }
    case 'warm-standby': {
      await setWarmPool(dev, 1);
      const standbyIdle = (ms: Machine[]) =>
        ms.some((m) => m.projectId === null && m.status === 'idle');
      for (let i = 0; i < rounds; i++) {
        const project = await newProject(dev, 'standby');
        await settled(dev, signal, standbyIdle);
        const round = await measureRound(dev, project);
        // The standby registered before the request: its registration is no phase of this one.
        round.registeredMs = undefined;
        result.rounds.push(round);
      }
      await setWarmPool(dev, 0);
      break;
    }
    case 'first': {
      result.devStartMs = [];
      for (let i = 0; i < rounds; i++) {
        // Its own scope: this round's dev and its builder are stopped before the next round.
        const round = new Scope();
        const onAbort = () => round.abort('interrupted');
        signal.addEventListener('abort', onAbort, { once: true });
        try {
          const fresh = await startDev(round, { idleTimeoutSeconds });
          result.devStartMs.push(fresh.startMs);
          result.rounds.push(await measureRound(fresh, fresh.project));
        } finally {
          signal.removeEventListener('abort', onAbort);
          await round.close();
        }
      }
      break;
    }
    case 'cold': {
      result.floorFresh = [];
      result.floorReused = [];
      for (let i = 0; i < rounds; i++) {
        const project = await newProject(dev, 'cold');
        await settled(dev, signal);
        // The floor, on the same settled host, right before the round it is compared with.
        result.floorFresh.push(...(await measureFloor(scope, 1, 'fresh')));
        result.floorReused.push(...(await measureFloor(scope, 1, 'reused')));
        result.rounds.push(await measureRound(dev, project));
      }
      break;
    }
  }
  return result;
}

const phaseNames: [keyof Round, string][] = [
  ['acceptedMs', 'request accepted'],
  ['pickedUpMs', 'agent picked it up'],
  ['convergeStartMs', 'Pulumi preview and up began'],
  ['previewEndMs', 'Pulumi preview done, up began'],
  ['convergeEndMs', 'Pulumi preview and up done'],
  ['machineProcessMs', 'machine-agent process up'],
  ['registeredMs', 'machine registered'],
  ['buildkitdReadyMs', 'buildkitd ready (machine)'],
  ['readyMs', 'builder ready (control plane)'],
  ['answeredMs', 'CLI answered'],
];

function phaseSummaries(rounds: Round[]): Record<string, Summary> {
  const out: Record<string, Summary> = {};
  for (const [key] of phaseNames) {
    const values = rounds.map((r) => r[key]).filter((v): v is number => typeof v === 'number');
    if (values.length > 0) out[key] = summarize(values);
  }
  return out;
}

/** Durations between milestones: where the time goes. */
function spans(rounds: Round[]): [string, Summary][] {
  const span = (
    label: string,
    from: (r: Round) => number | undefined,
    to: (r: Round) => number | undefined,
  ) => {
    const values = rounds
      .map((r) => {
        const a = from(r);
        const b = to(r);
        return a === undefined || b === undefined ? undefined : b - a;
      })
      .filter((v): v is number => v !== undefined);
    return values.length > 0 ? ([label, summarize(values)] as [string, Summary]) : undefined;
  };
  return [
    span(
      'request to pickup',
      () => 0,
      (r) => r.pickedUpMs,
    ),
    span(
      'pickup to converge start',
      (r) => r.pickedUpMs,
      (r) => r.convergeStartMs,
    ),
    span(
      'Pulumi preview and up',
      (r) => r.convergeStartMs,
      (r) => r.convergeEndMs,
    ),
    span(
      '  of it, the preview',
      (r) => r.convergeStartMs,
      (r) => r.previewEndMs,
    ),
    span(
      '  up began to agent process up',
      (r) => r.previewEndMs,
      (r) => r.machineProcessMs,
    ),
    span(
      'converge start to agent process up',
      (r) => r.convergeStartMs,
      (r) => r.machineProcessMs,
    ),
    span(
      'agent process up to buildkitd ready',
      (r) => r.machineProcessMs,
      (r) => r.buildkitdReadyMs,
    ),
    span(
      'buildkitd ready to CLI answered',
      (r) => r.buildkitdReadyMs,
      (r) => r.answeredMs,
    ),
    span(
      'converge end to CLI answered',
      (r) => r.convergeEndMs,
      (r) => r.answeredMs,
    ),
    span(
      'total: request to CLI answered',
      () => 0,
      (r) => r.answeredMs,
    ),
  ].filter((x): x is [string, Summary] => x !== undefined);
}

export default async function acquireBench(scope: Scope, argv: string[]): Promise<void> {
  const opts = options(argv);
  const report = new Report('acquire');
  // The shortest idle timeout the connection allows: stopped builders for the warm rounds.
  const idleTimeoutSeconds = 10;
  progress('starting slipway dev');
  const dev = await startDev(scope, { idleTimeoutSeconds });
  const { connections } = await dev.user.call('listConnections', {});
  await dev.user.call('updateConnection', {
    params: { connectionId: connections[0]!.id },
    body: { settings: { maxMachines: 1000 } },
  });

  const results: PathResult[] = [];
  for (const name of opts.paths) {
    const rounds = name === 'first' ? opts.firstRounds : opts.rounds;
    results.push(await runPath(dev, scope, name, rounds, idleTimeoutSeconds));
  }

  // The CLI's own start-up before its request: `slipway build` of the small Dockerfile, hot.
  progress(`CLI start-up: ${opts.rounds} slipway build runs on a hot builder`);
  const work = await scope.tempDir('acquire-cli');
  const contextDir = path.join(work, 'small');
  await cp(path.join(__dirname, 'dockerfiles', 'small'), contextDir, { recursive: true });
  await copyFile('/bin/busybox', path.join(contextDir, 'busybox'));
  await slipwayBuild(dev, contextDir, path.join(work, 'warmup.tar'), path.join(work, 'warmup.log'));
  const cliRuns = [];
  for (let i = 0; i < opts.rounds; i++) {
    cliRuns.push(
      await slipwayBuild(dev, contextDir, path.join(work, `${i}.tar`), path.join(work, `${i}.log`)),
    );
  }
  const cliStart = summarize(cliRuns.map((r) => r.cliStartMs));
  const cliAcquire = summarize(cliRuns.map((r) => r.acquireMs));

  for (const r of results) {
    const seen = [...new Set(r.rounds.map((x) => x.path))].join('/');
    const phases = phaseSummaries(r.rounds);
    report.section(
      `${r.path} (the control plane called it ${seen}): milestones, ms after the request`,
      summaryRows(phaseNames.filter(([k]) => phases[k]).map(([k, label]) => [label, phases[k]!])),
    );
    if (r.path !== 'hot') {
      const rows = spans(r.rounds);
      if (r.devStartMs) rows.push(['before it: slipway dev start', summarize(r.devStartMs)]);
      report.section(`${r.path}: where the time goes`, summaryRows(rows));
    }
  }
  const cold = results.find((r) => r.path === 'cold');
  const floorFresh = cold?.floorFresh ? summarize(cold.floorFresh) : undefined;
  const floorReused = cold?.floorReused ? summarize(cold.floorReused) : undefined;
  if (floorFresh && floorReused) {
    report.section(
      'Floor: a bare buildkitd with the same flags, started and seen ready',
      summaryRows([
        ['new root (a new volume)', floorFresh],
        ['used root (a stopped builder)', floorReused],
      ]),
    );
  }
  report.section(
    'The CLI (slipway build, hot builder)',
    summaryRows([
      ['CLI start-up: spawn to request', cliStart],
      ['request to ready answer', cliAcquire],
    ]),
  );

  const total = (r: PathResult) => summarize(r.rounds.map((x) => x.answeredMs));
  const hot = results.find((r) => r.path === 'hot');
  // The goal is about an agent that is running and waiting: the first build on a fresh dev is
  // picked up by an agent that is still starting, so it is reported on its own.
  const pickupsOf = (r: PathResult) =>
    r.rounds.map((x) => x.pickedUpMs).filter((v): v is number => v !== undefined);
  const pickups = results.filter((r) => r.path !== 'first').flatMap(pickupsOf);
  const pickupP95Ms = Object.fromEntries(
    results
      .filter((r) => pickupsOf(r).length > 0)
      .map((r) => [r.path, Math.round(summarize(pickupsOf(r)).p95)]),
  );
  // The same span as the table's, rounds without a converge left out.
  const coldConverge = cold && new Map(spans(cold.rounds)).get('Pulumi preview and up');
  const goals: Record<string, unknown> = {};
  if (hot) goals.hotP95UnderMs100 = total(hot).p95 < 100;
  if (pickups.length) goals.pickupP95UnderMs50 = summarize(pickups).p95 < 50;
  goals.pickupP95Ms = pickupP95Ms;
  if (cold && floorFresh && coldConverge) {
    // Within 2x the floor plus one Pulumi run of preview and up (the converge as the agent runs it).
    const budget = 2 * floorFresh.p50 + coldConverge.p50;
    goals.coldBudgetMs = Math.round(budget);
    goals.coldP50WithinBudget = total(cold).p50 <= budget;
  }
  report.section(
    'Totals: request to CLI answered',
    table(
      ['path', 'n', 'p50', 'p95'],
      results.map((r) => {
        const t = total(r);
        return [r.path, t.n, `${t.p50.toFixed(0)} ms`, `${t.p95.toFixed(0)} ms`];
      }),
    ),
  );
  report.finish({
    rounds: opts.rounds,
    paths: Object.fromEntries(
      results.map((r) => [
        r.path,
        {
          totalMs: total(r),
          phasesMs: phaseSummaries(r.rounds),
          spansMs: Object.fromEntries(spans(r.rounds)),
          ...(r.devStartMs ? { devStartMs: summarize(r.devStartMs) } : {}),
        },
      ]),
    ),
    floorMs: floorFresh && floorReused ? { newRoot: floorFresh, usedRoot: floorReused } : undefined,
    cli: { startMs: cliStart, acquireMs: cliAcquire },
    devStartMs: Math.round(dev.startMs),
    goals,
  });
}
