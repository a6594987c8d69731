// The machine-agent: register once, then follow the task the control plane long-polls to it
// (BuildKit on a cache volume, idle, or shutdown), report status and health, and shut down
// cleanly (buildkitd stopped, cache synced and unmounted, control plane told) within a deadline.
import { readFile } from 'node:fs/promises';
import type { Logger } from 'pino';
import { ApiClient } from '../common/api';
import { freePort } from '../common/net';
import {
  defaultLongPollSeconds,
  machineAgentEnv,
  type BuildkitTask,
  type MachineAgentConfig,
  type MachineTask,
} from '../common/protocol';
import { version as agentVersion } from '../package.json';
import { BuildkitSupervisor } from './buildkit-supervisor';
import { gcLimits } from './buildkitd-config';
import { ControlPlane } from './control-plane';
import { MachineAgentError, errorMessage } from './errors';
import { cacheUsage, noCache } from './health';
import { ImdsClient } from './imds';
import { ensureRegistered } from './registration';
import { backoffDelay, defaultBackoff, type BackoffPolicy } from './retry';
import { StateDir } from './state';
import { StatusReporter, type MachineStatusBody } from './status-reporter';
import { prepareVolume, type PreparedVolume } from './volume';

export { agentVersion };

export interface AgentTiming {
  longPollSeconds: number;
  /** Registration keeps retrying an unreachable control plane this long. */
  registerDeadlineMs: number;
  /** Without any answer from the control plane this long, the agent shuts down. */
  controlPlaneLostAfterMs: number;
  /** How long an attached volume's device may take to appear. */
  deviceTimeoutMs: number;
  buildkitdStartTimeoutMs: number;
  buildkitdStopGraceMs: number;
  /** Everything at shutdown (buildkitd, unmount, telling the control plane) fits in this. */
  shutdownDeadlineMs: number;
  maxFailedStarts: number;
  backoff: BackoffPolicy;
  /** Overrides the health interval the control plane asked for at registration. */
  healthIntervalMs?: number;
}

export const defaultTiming: AgentTiming = {
  longPollSeconds: defaultLongPollSeconds,
  registerDeadlineMs: 5 * 60_000,
  controlPlaneLostAfterMs: 15 * 60_000,
  deviceTimeoutMs: 5 * 60_000,
  buildkitdStartTimeoutMs: 60_000,
  buildkitdStopGraceMs: 10_000,
  shutdownDeadlineMs: 30_000,
  maxFailedStarts: 5,
  backoff: defaultBackoff,
};

export interface MachineAgentOptions {
  /** Aborting it (SIGTERM) shuts the agent down cleanly. */
  signal: AbortSignal;
  logger: Logger;
  timing?: Partial<AgentTiming>;
  /** AWS: the instance metadata service (tests run their own). */
  imdsUrl?: string;
  /** AWS: where udev links attached disks (tests link their loop devices elsewhere). */
  devicesByIdDir?: string;
}

export interface AgentExit {
  /** Why the agent stopped: the shutdown task's reason or the signal. */
  reason: string;
}

function defaultAdvertiseHost(config: MachineAgentConfig): string | undefined {
  if (config.advertiseHost) return config.advertiseHost;
  if (config.provider === 'aws') return undefined; // the instance's private address, from IMDS
  return ['0.0.0.0', '::'].includes(config.listenHost) ? '127.0.0.1' : config.listenHost;
}

function abortReason(signal: AbortSignal): string {
  const reason: unknown = signal.reason;
  if (typeof reason === 'string') return reason;
  return reason instanceof Error ? reason.message : 'stopped';
}

async function readCaFile(file: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (err) {
    throw new MachineAgentError(
      'invalid_config',
      `cannot read ${machineAgentEnv.controlPlaneCaFile} ${file} (${(err as NodeJS.ErrnoException).code ?? errorMessage(err)}); point it at the PEM CA bundle of the control plane's HTTPS certificate`,
    );
  }
}

/** Whether `err` is the signal's abort itself (as thrown by a call or a delay it cancelled). */
function isAbort(err: unknown, signal: AbortSignal): boolean {
  return signal.aborted && (err === signal.reason || (err as Error)?.name === 'AbortError');
}

export async function runMachineAgent(
  config: MachineAgentConfig,
  options: MachineAgentOptions,
): Promise<AgentExit> {
  const timing = { ...defaultTiming, ...options.timing };
  const logger = options.logger;
  const signal = options.signal;
  const state = await StateDir.open(config.stateDir);
  const ca = config.controlPlaneCaFile ? await readCaFile(config.controlPlaneCaFile) : undefined;
  const client = new ApiClient({
    baseUrl: config.apiUrl,
    ca,
    userAgent: `slipway-machine-agent/${agentVersion}`,
  });
  const controlPlane = new ControlPlane({ client, logger, signal, backoff: timing.backoff });
  const imds =
    config.provider === 'aws'
      ? new ImdsClient({ baseUrl: options.imdsUrl, logger, signal })
      : undefined;

  let machine: ControlPlane | undefined;
  try {
    const identity = await ensureRegistered({
      config,
      state,
      controlPlane,
      imds,
      endpoint: async () => ({
        host: defaultAdvertiseHost(config) ?? (await imds!.privateIpv4()),
        port: config.buildkitPort,
      }),
      agentVersion,
      deadlineMs: timing.registerDeadlineMs,
      logger,
    });
    machine = controlPlane.withToken(identity.machineToken);
    const session = new Session({
      config,
      state,
      machine,
      timing,
      options,
      healthIntervalSeconds: identity.healthIntervalSeconds,
      debugAddress: `127.0.0.1:${await freePort()}`,
    });
    return await session.run();
  } catch (err) {
    // SIGTERM before the session began (during registration): a clean stop, nothing to undo.
    if (isAbort(err, signal)) return { reason: abortReason(signal) };
    throw err;
  } finally {
    await machine?.close();
    await controlPlane.close();
  }
}

interface SessionDeps {
  config: MachineAgentConfig;
  state: StateDir;
  machine: ControlPlane;
  timing: AgentTiming;
  options: MachineAgentOptions;
  healthIntervalSeconds: number;
  /** Loopback address of buildkitd's debug and metrics server. */
  debugAddress: string;
}

/** One run of a registered machine: the task loop, the reporter and the shutdown. */
class Session {
  private readonly supervisor: BuildkitSupervisor;
  private readonly reporter: StatusReporter;
  private volume: PreparedVolume | undefined;
  /** The task generation being applied or last applied. */
  private generation = 0;
  /** Why the current task could not be applied, if it could not. */
  private taskError: string | undefined;
  private readonly logger: Logger;
  /** Ends the task loop and the reporter: SIGTERM, or an error the reporter cannot get past. */
  private readonly running = new AbortController();

  private readonly config: MachineAgentConfig;
  private readonly state: StateDir;
  private readonly machine: ControlPlane;
  private readonly timing: AgentTiming;
  private readonly options: MachineAgentOptions;

  constructor(deps: SessionDeps) {
    const { config, state, timing } = deps;
    this.config = config;
    this.state = state;
    this.machine = deps.machine;
    this.timing = timing;
    this.options = deps.options;
    this.logger = deps.options.logger;
    this.supervisor = new BuildkitSupervisor({
      dir: state.buildkitDir,
      serverKeyFile: state.serverKeyFile,
      listenAddress: `${config.listenHost}:${config.buildkitPort}`,
      debugAddress: deps.debugAddress,
      startTimeoutMs: timing.buildkitdStartTimeoutMs,
      stopGraceMs: timing.buildkitdStopGraceMs,
      restartBackoff: { initialMs: 1000, maxMs: 30_000 },
      maxFailedStarts: timing.maxFailedStarts,
      logger: this.logger,
      onChange: () => this.reporter.poke(),
    });
    this.reporter = new StatusReporter({
      snapshot: () => this.status(),
      send: (body, signal) =>
        this.machine
          .call('machineStatus', { body }, { what: 'report status', deadlineMs: 0, signal })
          .then(() => undefined),
      intervalMs: timing.healthIntervalMs ?? deps.healthIntervalSeconds * 1000,
      backoff: timing.backoff,
      logger: this.logger,
    });
  }

  private async status(): Promise<MachineStatusBody> {
    const s = this.supervisor;
    let usage = noCache;
    if (this.volume) {
      usage = await cacheUsage(this.volume.root).catch((err: unknown) => {
        this.logger.warn({ err: errorMessage(err) }, 'could not read the cache volume usage');
        return noCache;
      });
    }
    const error = this.taskError ?? s.error;
    return {
      taskGeneration: this.generation,
      buildkit: this.taskError ? 'failed' : s.state,
      ...(error ? { error: error.slice(0, 4000) } : {}),
      health: {
        buildkitdAlive: s.alive,
        buildkitdRestarts: s.restarts,
        ...usage,
        ...(s.lastEvent ? { lastEvent: s.lastEvent.slice(0, 1000) } : {}),
      },
    };
  }

  async run(): Promise<AgentExit> {
    const { signal } = this.options;
    this.running.signal.addEventListener('abort', () => this.supervisor.close(), { once: true });
    const onAbort = () => this.running.abort(signal.reason);
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
    const reporting = this.reporter.run(this.running.signal).catch((err: unknown) => {
      this.running.abort(err);
      throw err;
    });
    let outcome: AgentExit | undefined;
    let failure: unknown;
    try {
      outcome = await this.taskLoop();
    } catch (err) {
      if (signal.aborted) outcome = { reason: abortReason(signal) };
      else failure = this.running.signal.aborted ? this.running.signal.reason : err;
    } finally {
      signal.removeEventListener('abort', onAbort);
      this.running.abort();
    }
    await reporting.catch(() => undefined);
    const reason = outcome?.reason ?? errorMessage(failure);
    // A control plane that refused our token or stopped answering is told nothing more.
    const unreachable =
      failure instanceof MachineAgentError &&
      ['machine_token_rejected', 'control_plane_lost'].includes(failure.code);
    try {
      await this.shutdown(reason, !unreachable);
    } catch (err) {
      // Already logged by shutdown(); the error that ended the session matters more.
      if (!failure) throw err;
    }
    if (failure) throw failure;
    return outcome!;
  }

  private async taskLoop(): Promise<AgentExit> {
    const signal = this.running.signal;
    // Generation 0 answers at once with the current task: a restarted agent picks up where the
    // machine was, whatever it was doing.
    let known = 0;
    let applied: number | undefined;
    let failures = 0;
    for (;;) {
      // After a failed apply, the same task comes back after a backoff (or a newer one sooner).
      const wait =
        failures === 0
          ? this.timing.longPollSeconds
          : Math.min(
              this.timing.longPollSeconds,
              Math.ceil(backoffDelay(failures - 1, this.timing.backoff) / 1000),
            );
      const task = await this.machine.call(
        'machineTask',
        { query: { generation: known, wait } },
        {
          what: 'receive a task from the control plane',
          deadlineMs: this.timing.controlPlaneLostAfterMs,
          code: 'control_plane_lost',
          signal,
        },
      );
      if (task.generation === applied) continue;
      known = task.generation;
      if (task.kind === 'shutdown') {
        this.logger.info({ generation: task.generation, reason: task.reason }, 'shutdown task');
        return { reason: task.reason };
      }
      try {
        await this.apply(task);
        applied = task.generation;
        failures = 0;
      } catch (err) {
        signal.throwIfAborted();
        this.taskError = errorMessage(err);
        this.reporter.poke();
        this.logger.error({ generation: task.generation, err: this.taskError }, 'task failed');
        // Retrying cannot fix a volume that holds foreign data; a newer task can.
        if (err instanceof MachineAgentError && err.fatal) applied = task.generation;
        else failures++;
      }
    }
  }

  private async apply(task: Exclude<MachineTask, { kind: 'shutdown' }>): Promise<void> {
    this.generation = task.generation;
    this.taskError = undefined;
    this.reporter.poke();
    if (task.kind === 'idle') {
      this.logger.info({ generation: task.generation, reason: task.reason }, 'idle task');
      await this.supervisor.stop();
      await this.releaseVolume();
      return;
    }
    await this.applyBuildkit(task);
  }

  private async applyBuildkit(task: BuildkitTask): Promise<void> {
    this.logger.info(
      { generation: task.generation, projectId: task.projectId, volumeId: task.volume.id },
      'BuildKit task',
    );
    if (this.volume && this.volume.id !== task.volume.id) {
      await this.supervisor.stop();
      await this.releaseVolume();
    }
    if (!this.volume) {
      this.volume = await prepareVolume(task.volume, {
        config: this.config,
        mountsDir: this.state.mountsDir,
        byIdDir: this.options.devicesByIdDir,
        deviceTimeoutMs: this.timing.deviceTimeoutMs,
        logger: this.logger,
        signal: this.running.signal,
      });
    }
    const filesystemBytes =
      this.config.provider === 'aws'
        ? (await cacheUsage(this.volume.root)).cacheBytesTotal
        : undefined;
    await this.supervisor.apply({
      root: this.volume.root,
      serverCertificate: task.serverCertificate,
      clientCa: task.clientCa,
      gc: gcLimits(task.gc, task.volume.sizeGb, filesystemBytes),
    });
  }

  private async releaseVolume(timeoutMs = 60_000): Promise<void> {
    const volume = this.volume;
    if (!volume) return;
    await volume.release(timeoutMs);
    this.volume = undefined;
  }

  /**
   * Stops buildkitd, syncs and releases the volume, then tells the control plane, all within the
   * hard deadline; past it, buildkitd is killed and the agent ends regardless.
   */
  private async shutdown(reason: string, tellControlPlane: boolean): Promise<void> {
    const deadline = AbortSignal.timeout(this.timing.shutdownDeadlineMs);
    const started = performance.now();
    const left = () => Math.max(0, this.timing.shutdownDeadlineMs - (performance.now() - started));
    this.logger.info({ reason, deadlineMs: this.timing.shutdownDeadlineMs }, 'shutting down');
    let step = 'stopping buildkitd';
    const steps = (async () => {
      await this.supervisor.stop();
      step = 'releasing the cache volume';
      await this.releaseVolume(left());
      if (!tellControlPlane) return;
      step = 'telling the control plane';
      await this.reporter.sendNow(deadline).catch((err: unknown) => {
        this.logger.warn({ err: errorMessage(err) }, 'could not send the final status');
      });
      await this.machine.call(
        'machineShutdown',
        { body: { reason: reason.slice(0, 1000) } },
        { what: 'tell the control plane about the shutdown', deadlineMs: left(), signal: deadline },
      );
    })();
    const timedOut = new Promise<'timeout'>((resolve) =>
      deadline.addEventListener('abort', () => resolve('timeout'), { once: true }),
    );
    try {
      if ((await Promise.race([steps, timedOut])) === 'timeout') {
        steps.catch(() => undefined);
        const pid = this.supervisor.pid;
        if (pid) process.kill(pid, 'SIGKILL');
        throw new MachineAgentError(
          'shutdown_deadline',
          `shutdown did not finish within ${this.timing.shutdownDeadlineMs} ms (still ${step})`,
        );
      }
      this.logger.info({ ms: Math.round(performance.now() - started) }, 'shut down cleanly');
    } catch (err) {
      this.logger.error({ err: errorMessage(err), step }, 'shutdown was not clean');
      throw err;
    }
  }
}
