// The agent's converge loop for its connection: level-triggered, it compares the latest desired
// fleet with what it last applied and converges when they differ, always with the newest fleet
// (fleets that arrive during an update are batched into the next one). It recovers the stack
// after a crash, removes orphans, checks for drift, and queues every outcome as a report.
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { createAwsProvider } from '../automation/aws';
import { resolveBackend } from '../automation/backend';
import { fleetDigest } from '../automation/fleet';
import { stackLayout } from '../automation/layout';
import { createLocalProvider } from '../automation/local';
import { emptyInventory, type FleetInventory, type FleetProvider } from '../automation/provider';
import { FleetSpecError } from '../automation/spec-error';
import { FleetStack } from '../automation/stack';
import type { CloudAgentConfig, DesiredFleet, Observation } from '../common/protocol';
import {
  convergeReport,
  driftReport,
  recoveryReport,
  failedReport,
  orphansReport,
  unchangedReport,
} from './reports';
import type { AgentStateStore } from './state';
import type { HeldLease } from './syncer';

export interface FleetReconcilerOptions {
  config: CloudAgentConfig;
  store: AgentStateStore;
  /** Called when a report waits for delivery. */
  onReport: () => void;
  logger: Logger;
}

/** Retry a failed update after 2 s, doubling to 5 minutes, unless a new fleet comes first. */
function retryDelayMs(failures: number): number {
  return Math.min(2000 * 2 ** Math.max(0, failures - 1), 300_000);
}

/** The longest timer Node keeps (about 24.8 days): an endless sleep is one of these. */
const maxTimerMs = 2 ** 31 - 1;

const emptyObservation = (): Observation => ({
  observedAt: new Date().toISOString(),
  machines: [],
  volumes: [],
});

interface Connection {
  id: string;
  provider: FleetProvider;
  stack: FleetStack;
}

export class FleetReconciler {
  private latest: HeldLease | undefined;
  private connection: Connection | undefined;
  /** What the stack holds, as of the last operation that succeeded. */
  private inventory: FleetInventory = emptyInventory();
  /** How many fleet resources the stack holds, as of the last operation that succeeded. */
  private stackResources: number | undefined;
  /** Look for orphans after the next successful update: at start and after failures. */
  private orphanCheckDue = true;
  /** Converge even when the fleet digest matches: after recovery or drift. */
  private force = false;
  private refreshNext = false;
  private failures = 0;
  private failedGeneration = -1;
  private retryAt = 0;
  /** A fleet generation refused as unbuildable; retried only when a newer one comes. */
  private refusedGeneration: number | undefined;
  private lastDriftCheck = performance.now();
  private converging: AbortController | undefined;
  private wake: () => void = () => undefined;
  private lastObservation: Observation = emptyObservation();

  constructor(private readonly opts: FleetReconcilerOptions) {}

  /** The newest desired fleet from a sync; wakes the loop when it changes anything. */
  setDesired(held: HeldLease): void {
    const previous = this.latest;
    this.latest = held;
    if (!previous || previous.fleet.generation !== held.fleet.generation) this.wake();
  }

  /** Another agent holds the lease: stop changing anything until it is ours again. */
  leaseLost(): void {
    this.latest = undefined;
    this.converging?.abort(new Error('the connection lease was lost'));
  }

  /**
   * What exists in the provider; the previous observation again when it cannot be made now
   * (the sync must still go out to keep the lease).
   */
  async observe(): Promise<Observation> {
    const provider = this.connection?.provider ?? this.providerFromState();
    if (!provider) return emptyObservation();
    try {
      const seen = await provider.observe(this.inventory);
      this.lastObservation = { observedAt: new Date().toISOString(), ...seen };
    } catch (err) {
      this.opts.logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'observation failed; sending the previous one',
      );
    }
    return this.lastObservation;
  }

  private stateProvider: FleetProvider | undefined;
  /** Before the first fleet arrives: the provider of the connection served last time. */
  private providerFromState(): FleetProvider | undefined {
    const known = this.opts.store.connection;
    if (!known) return undefined;
    this.stateProvider ??= this.makeProvider(known.id, known.provider, known.region);
    return this.stateProvider;
  }

  private makeProvider(
    connectionId: string,
    kind: DesiredFleet['provider'],
    region: string | null,
  ): FleetProvider {
    const { config, logger } = this.opts;
    if (kind === 'local') {
      return createLocalProvider({
        dataDir: config.dataDir,
        ...(config.machineAgentCommand ? { machineAgentCommand: config.machineAgentCommand } : {}),
        controlPlaneCaFile: config.controlPlaneCaFile ?? null,
      });
    }
    return createAwsProvider({
      connectionId,
      region: region ?? 'us-east-1',
      logger,
      ...(config.ec2Endpoint ? { ec2Endpoint: config.ec2Endpoint } : {}),
    });
  }

  /** Opens the connection's stack once and repairs what a crash left. */
  private async connect(fleet: DesiredFleet): Promise<Connection> {
    if (this.connection?.id === fleet.connectionId) return this.connection;
    const { config, store, logger } = this.opts;
    const region = fleet.aws?.region ?? null;
    await store.setConnection({ id: fleet.connectionId, provider: fleet.provider, region });
    const provider = this.makeProvider(fleet.connectionId, fleet.provider, region);
    const layout = stackLayout(config.dataDir, fleet.connectionId);
    const stack = await FleetStack.open({
      connectionId: fleet.connectionId,
      workDir: layout.workDir,
      pulumiHome: layout.pulumiHome,
      backend: await resolveBackend(config, layout),
      env: provider.engineEnv,
      plugins: provider.plugins,
      logger,
    });
    const startedAt = new Date();
    const recovery = await stack.recover();
    const repaired: string[] = [];
    if (recovery.leftoverProcesses.length > 0) {
      repaired.push(
        `ended ${recovery.leftoverProcesses.length} engine process(es) of a previous run`,
      );
    }
    if (recovery.staleLocks > 0)
      repaired.push(`removed ${recovery.staleLocks} stale stack lock(s)`);
    if (recovery.pendingOperations.length > 0) {
      repaired.push(
        `cleared the interrupted operations (${recovery.pendingOperations.join(', ')}) with a refresh`,
      );
    }
    if (repaired.length > 0) {
      logger.warn({ repaired }, 'recovered the stack after an interrupted run');
      await store.addApply(
        recoveryReport(
          store.applied?.generation ?? 0,
          startedAt,
          `Recovered the stack: ${repaired.join('; ')}.`,
          recovery.refresh,
        ),
      );
      this.opts.onReport();
      this.force = true;
    }
    this.inventory = provider.inventory(recovery.resources);
    this.stackResources = recovery.resources.length;
    this.connection = { id: fleet.connectionId, provider, stack };
    return this.connection;
  }

  private needsApply(fleet: DesiredFleet): boolean {
    const applied = this.opts.store.applied;
    if (this.refusedGeneration === fleet.generation) return false;
    const waitingToRetry = this.failures > 0 && performance.now() < this.retryAt;
    if (waitingToRetry && fleet.generation === this.failedGeneration) return false;
    return (
      this.force ||
      this.failures > 0 ||
      !applied ||
      applied.digest !== fleetDigest(fleet) ||
      applied.generation < fleet.generation
    );
  }

  async run(signal: AbortSignal): Promise<void> {
    const { config } = this.opts;
    const driftEveryMs = config.driftCheckSeconds * 1000;
    const onAbort = () => this.converging?.abort(signal.reason);
    signal.addEventListener('abort', onAbort);
    try {
      while (!signal.aborted) {
        const desired = this.latest;
        if (desired && this.needsApply(desired.fleet)) {
          try {
            await this.apply(desired, signal);
          } catch (err) {
            await this.failed(desired.fleet.generation, err);
          }
          continue;
        }
        const now = performance.now();
        if (
          desired &&
          this.connection &&
          driftEveryMs > 0 &&
          now - this.lastDriftCheck >= driftEveryMs
        ) {
          await this.checkDrift(signal);
          continue;
        }
        // Sleep until a new fleet, a retry or the next drift check.
        const until = [
          this.failures > 0 ? this.retryAt : Infinity,
          driftEveryMs > 0 ? this.lastDriftCheck + driftEveryMs : Infinity,
        ];
        const sleepMs = Math.max(0, Math.min(...until) - now);
        // One controller per sleep, so nothing (listener, timer) outlives an early wake-up.
        const woke = new AbortController();
        this.wake = () => woke.abort();
        await delay(Math.min(sleepMs, maxTimerMs), undefined, {
          signal: AbortSignal.any([signal, woke.signal]),
        }).catch(() => undefined);
      }
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async apply(held: HeldLease, signal: AbortSignal): Promise<void> {
    const { store, logger } = this.opts;
    const fleet = held.fleet;
    const digest = fleetDigest(fleet);
    const connection = await this.connect(fleet);
    if (signal.aborted) return;
    const applied = store.applied;
    // An empty fleet on a stack that holds nothing (a new connection): the preview could only
    // show the stack itself, and a Pulumi run would hold up the first build by seconds.
    const nothingEither =
      fleet.machines.length === 0 && fleet.volumes.length === 0 && this.stackResources === 0;
    if (!this.force && this.failures === 0 && (applied?.digest === digest || nothingEither)) {
      // A new generation with nothing to build (e.g. a registration consumed a token).
      await store.setApplied({ generation: fleet.generation, digest });
      await store.addApply(unchangedReport(fleet.generation, new Date()));
      this.opts.onReport();
      return;
    }
    let program;
    try {
      program = connection.provider.program(fleet, {
        controlPlaneUrl: held.controlPlaneUrl,
        current: this.inventory,
      });
    } catch (err) {
      if (!(err instanceof FleetSpecError)) throw err;
      logger.error(
        { generation: fleet.generation, problems: err.problems },
        'the desired fleet cannot be built',
      );
      this.refusedGeneration = fleet.generation;
      await store.addApply(failedReport(fleet.generation, err.message, new Date()));
      this.opts.onReport();
      return;
    }
    this.converging = new AbortController();
    const abort = AbortSignal.any([signal, this.converging.signal]);
    logger.info({ generation: fleet.generation, refresh: this.refreshNext }, 'converging');
    const outcome = await connection.stack.converge(program.program, {
      signal: abort,
      refresh: this.refreshNext,
    });
    this.converging = undefined;
    const capacityFailures = [
      ...program.capacityFailures,
      ...connection.provider.capacityFailures(fleet, outcome),
    ];
    let orphansRemoved: string[] = [];
    if (outcome.result === 'succeeded') {
      if (outcome.resources) {
        this.inventory = connection.provider.inventory(outcome.resources);
        this.stackResources = outcome.resources.length;
      }
      if (this.orphanCheckDue) orphansRemoved = await this.removeOrphans(connection);
      this.failures = 0;
      this.force = false;
      this.refreshNext = false;
      await store.setApplied({ generation: fleet.generation, digest });
    } else {
      this.backOff(fleet.generation);
    }
    logger.info(
      {
        generation: fleet.generation,
        result: outcome.result,
        updated: outcome.updated,
        summary: outcome.summary,
        ms: outcome.finishedAt.getTime() - outcome.startedAt.getTime(),
        ...(outcome.previewFinishedAt
          ? { previewMs: outcome.previewFinishedAt.getTime() - outcome.startedAt.getTime() }
          : {}),
        ...(orphansRemoved.length > 0 ? { orphansRemoved } : {}),
        ...(capacityFailures.length > 0 ? { capacityFailures: capacityFailures.length } : {}),
      },
      'converge finished',
    );
    await store.addApply(
      convergeReport(fleet.generation, outcome, { capacityFailures, orphansRemoved }),
    );
    this.opts.onReport();
  }

  /**
   * Resources of the connection the stack does not hold, left by an update that crashed or
   * failed between making them and recording them. Called with an inventory read after a
   * successful operation only: the next update would adopt a crashed update's resources.
   */
  private async removeOrphans(connection: Connection): Promise<string[]> {
    try {
      const removed = await connection.provider.removeOrphans(this.inventory);
      this.orphanCheckDue = false;
      if (removed.length > 0) this.opts.logger.warn({ removed }, 'removed orphans');
      return removed;
    } catch (err) {
      this.opts.logger.error(
        { err: err instanceof Error ? err.message : String(err) },
        'orphan removal failed; trying again after the next update',
      );
      return [];
    }
  }

  /** With the drift check: orphans against the state as exported now, reported if any. */
  private async periodicOrphanCheck(connection: Connection): Promise<void> {
    const applied = this.opts.store.applied;
    if (this.failures > 0 || !applied) return;
    const startedAt = new Date();
    const resources = await connection.stack.inventory();
    this.inventory = connection.provider.inventory(resources);
    this.stackResources = resources.length;
    const removed = await this.removeOrphans(connection);
    if (removed.length === 0) return;
    await this.opts.store.addApply(orphansReport(applied.generation, startedAt, removed));
    this.opts.onReport();
  }

  /** After a failure, the same fleet is tried again later; a newer one at once. */
  private backOff(generation: number): void {
    this.failures += 1;
    this.orphanCheckDue = true;
    this.failedGeneration = generation;
    this.retryAt = performance.now() + retryDelayMs(this.failures);
    // What the engine saw may not match what exists: read it back before the next try.
    this.refreshNext = true;
  }

  /** An error outside the engine's own reporting (opening or recovering the stack, I/O). */
  private async failed(generation: number, err: unknown): Promise<void> {
    const message = err instanceof Error ? err.message : String(err);
    this.opts.logger.error({ generation, err: message }, 'converge could not run');
    this.backOff(generation);
    await this.opts.store.addApply(failedReport(generation, message, new Date()));
    this.opts.onReport();
  }

  private async checkDrift(signal: AbortSignal): Promise<void> {
    const connection = this.connection;
    if (!connection) return;
    this.lastDriftCheck = performance.now();
    const checkedAt = new Date();
    let preview;
    try {
      preview = await connection.stack.driftCheck({ signal });
    } catch (err) {
      this.opts.logger.warn(
        { err: err instanceof Error ? err.message : String(err) },
        'drift check failed',
      );
      return;
    }
    if (!preview.hasChanges) {
      await this.periodicOrphanCheck(connection);
      return;
    }
    this.opts.logger.warn({ summary: preview.summary }, 'drift found; converging with a refresh');
    await this.opts.store.setDrift(driftReport(preview, checkedAt));
    this.opts.onReport();
    // Level-triggered: what drifted from the desired fleet is put back at once.
    this.force = true;
    this.refreshNext = true;
  }
}
