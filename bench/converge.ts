// `npm run bench -- converge`: the cloud-agent's cost as the fleet grows. The agent's own converge
// loop (FleetReconciler, with its state store, the local provider and the real Pulumi engine on a
// file backend) is handed desired fleets as a sync would hand them; a pass is timed from the new
// fleet to the agent recording it as applied.
//
// - adding one machine (and its volume) to a fleet of 1, 10 and 50 machines, and removing it again;
// - a pass where nothing changed (a new generation with the same fleet): it must start no Pulumi
//   operation, checked by the agent's log and by the processes under the stack's work directory.
//
// Machines here run `sleep` in place of the machine-agent: what is measured is the agent's
// converge, not 50 machine-agents starting on a 2-core host. The provider starts, finds and stops
// them exactly as it does machine-agents.
import { EventEmitter, once } from 'node:events';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import pino from 'pino';
import { FleetReconciler } from '../agent/reconciler';
import { AgentStateStore } from '../agent/state';
import type { HeldLease } from '../agent/syncer';
import { stackLayout, machinesDir } from '../automation/layout';
import { processesUnder, terminateProcessesUnder } from '../automation/local/processes';
import {
  cloudAgentConfigSchema,
  connectionSettingsSchema,
  type DesiredFleet,
} from '../common/protocol';
import { table } from '../cli/table';
import { newId } from '../control-plane/ids';
import { progress, Report, summaryRows } from './lib/report';
import type { Scope } from './lib/scope';
import { summarize, type Summary } from './lib/stats';

function options(argv: string[]) {
  const { values } = parseArgs({
    args: argv,
    options: {
      sizes: { type: 'string', default: '1,10,50' },
      rounds: { type: 'string', default: '5' },
    },
    strict: true,
  });
  return { sizes: values.sizes.split(',').map(Number), rounds: Number(values.rounds) };
}

/** The agent's log records, kept to count its Pulumi runs. */
class LogCapture extends Writable {
  readonly records: { msg: string; generation?: number }[] = [];
  override _write(chunk: Buffer, _enc: string, done: () => void): void {
    for (const line of chunk.toString().split('\n')) {
      if (line.startsWith('{')) this.records.push(JSON.parse(line) as { msg: string });
    }
    done();
  }
  count(msg: string): number {
    return this.records.filter((r) => r.msg === msg).length;
  }
}

class Fleet {
  readonly connectionId = newId('connection');
  private generation = 0;
  private readonly machines: DesiredFleet['machines'] = [];
  private readonly volumes: DesiredFleet['volumes'] = [];

  get size(): number {
    return this.machines.length;
  }

  add(count: number): void {
    for (let i = 0; i < count; i++) {
      const volume = newId('volume');
      this.volumes.push({
        id: volume,
        projectId: newId('project'),
        platform: 'linux/amd64',
        sizeGb: 1,
        zone: null,
      });
      this.machines.push({
        id: newId('machine'),
        platform: 'linux/amd64',
        state: 'running',
        volumeId: volume,
        // As the control plane sends it until the machine registers (these never do).
        registrationToken: `swr_${'x'.repeat(43)}`,
        zone: null,
      });
    }
  }

  removeLast(): void {
    this.machines.pop();
    this.volumes.pop();
  }

  /** The next generation, as a sync answer carries it. */
  held(): HeldLease {
    return {
      lease: 'held',
      leaseExpiresAt: new Date(Date.now() + 120_000).toISOString(),
      fleet: {
        connectionId: this.connectionId,
        provider: 'local',
        generation: ++this.generation,
        machines: this.machines.map((m) => ({ ...m })),
        volumes: this.volumes.map((v) => ({ ...v })),
        aws: null,
      },
      settings: connectionSettingsSchema.parse({ maxMachines: 1000 }),
      // Never called: the stand-in machines do not register.
      controlPlaneUrl: 'http://127.0.0.1:9',
    };
  }
}

export default async function converge(scope: Scope, argv: string[]): Promise<void> {
  const opts = options(argv);
  const report = new Report('converge');
  const dataDir = await scope.tempDir('converge');
  const config = cloudAgentConfigSchema.parse({
    apiUrl: 'http://127.0.0.1:9',
    connectionToken: `swc_${'x'.repeat(43)}`,
    dataDir,
    driftCheckSeconds: 0,
    machineAgentCommand: ['/bin/sleep', 'infinity'],
  });
  const logs = new LogCapture();
  const logger = pino({ level: 'info' }, logs);
  const store = await AgentStateStore.open(dataDir);
  // The agent calls onReport once it has recorded a pass (applied, or failed): the bench wakes on
  // it. Polling the store instead rounded every time up to the poll's period (waitFor backs off to
  // 500 ms), which is where the 500 ms steps of earlier runs came from.
  const reports = new EventEmitter();
  const reconciler = new FleetReconciler({
    config,
    store,
    onReport: () => reports.emit('report'),
    logger,
  });
  const stop = new AbortController();
  const running = reconciler.run(stop.signal);
  scope.defer(async () => {
    stop.abort();
    await running.catch(() => undefined);
    await terminateProcessesUnder(machinesDir(dataDir), 10_000);
  });
  const fleet = new Fleet();
  const workDir = stackLayout(dataDir, fleet.connectionId).workDir;

  /** Hands the agent the next generation; resolves with the time until it is applied. */
  const pass = async (): Promise<number> => {
    const held = fleet.held();
    const generation = held.fleet.generation;
    const started = performance.now();
    const signal = AbortSignal.any([scope.signal, AbortSignal.timeout(600_000)]);
    reconciler.setDesired(held);
    // The agent records a pass before it reports it, and the store is read before every wait: a
    // report is never missed.
    while ((store.applied?.generation ?? 0) < generation) {
      await once(reports, 'report', { signal });
    }
    const failed = logs.records.find((r) => r.msg === 'converge could not run');
    if (failed) throw new Error(`the converge failed: ${JSON.stringify(failed)}`);
    return performance.now() - started;
  };

  // The first converge opens the stack (and creates it): measured, but apart from the rest.
  progress('first converge: creating the stack with one machine');
  fleet.add(1);
  const firstMs = await pass();

  const adds: { size: number; add: Summary; remove: Summary }[] = [];
  for (const size of opts.sizes) {
    if (fleet.size < size) {
      progress(`growing the fleet to ${size} machines`);
      fleet.add(size - fleet.size);
      await pass();
    }
    progress(`fleet of ${size}: ${opts.rounds} rounds of adding and removing one machine`);
    const add: number[] = [];
    const remove: number[] = [];
    for (let i = 0; i < opts.rounds; i++) {
      fleet.add(1);
      add.push(await pass());
      fleet.removeLast();
      remove.push(await pass());
    }
    adds.push({ size, add: summarize(add), remove: summarize(remove) });
  }

  // Nothing changed: a new generation with the same machines and volumes.
  progress(`${opts.rounds * 4} passes where nothing changed`);
  const convergesBefore = logs.count('converging');
  let enginePeak = 0;
  const unchanged: number[] = [];
  const sampler = setInterval(() => {
    enginePeak = Math.max(enginePeak, processesUnder(workDir).length);
  }, 2);
  try {
    for (let i = 0; i < opts.rounds * 4; i++) unchanged.push(await pass());
  } finally {
    clearInterval(sampler);
  }
  const unchangedConverges = logs.count('converging') - convergesBefore;

  report.section(
    'One converge (Pulumi preview and up), from the new fleet to the agent recording it applied',
    summaryRows([
      ['first: create the stack and 1 machine', summarize([firstMs])],
      ...adds.flatMap(({ size, add, remove }): [string, Summary][] => [
        [`add 1 machine to ${size}`, add],
        [`remove it again (back to ${size})`, remove],
      ]),
    ]),
  );
  report.section(
    'A pass where nothing changed (new generation, same fleet)',
    summaryRows([['no change', summarize(unchanged)]]) +
      table(
        ['Pulumi operations started', 'engine processes seen'],
        [[unchangedConverges, enginePeak]],
      ),
  );
  report.finish({
    rounds: opts.rounds,
    firstMs: Math.round(firstMs),
    addOneMs: Object.fromEntries(adds.map((a) => [String(a.size), a.add])),
    removeOneMs: Object.fromEntries(adds.map((a) => [String(a.size), a.remove])),
    unchangedMs: summarize(unchanged),
    unchangedPulumiOperations: unchangedConverges,
    unchangedEngineProcesses: enginePeak,
    goals: { unchangedStartsNoPulumi: unchangedConverges === 0 && enginePeak === 0 },
  });
}
