// The inline Pulumi stack of one connection (project `slipway-fleet`, stack named after the
// connection): opened once with a stable work directory and PULUMI_HOME, then preview, up,
// refresh, drift check, cancel and crash recovery, one operation at a time.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  ConcurrentUpdateError,
  LocalWorkspace,
  PulumiCommand,
  Stack,
  type OutputMap,
  type PulumiFn,
} from '@pulumi/pulumi/automation';
import type { Logger } from 'pino';
import { engineEnv, toolsDir } from '../common/tools';
import { EventCollector, summaryHasChanges } from './events';
import type { ConvergeOutcome, PreviewOutcome } from './outcome';
import { isAlive, processesUnder, terminateProcessesUnder } from './local/processes';

export const fleetProjectName = 'slipway-fleet';

export interface BackendConfig {
  /** `file:///absolute/dir` or `s3://bucket?region=...`. */
  url: string;
  /** `passphrase`, or a cloud secrets provider such as `awskms://alias/slipway-state?region=...`. */
  secretsProvider: string;
  /** The passphrase, when secretsProvider is `passphrase`. */
  passphrase?: string;
}

export interface FleetStackOptions {
  connectionId: string;
  /** Where Pulumi.yaml and the stack settings live; the engine runs with it as cwd. */
  workDir: string;
  pulumiHome: string;
  backend: BackendConfig;
  /** Extra environment for the engine and the plugins it starts. */
  env?: Record<string, string>;
  logger: Logger;
}

export interface RecoveryOutcome {
  /** Engine and plugin processes a previous agent left running in the work directory. */
  leftoverProcesses: number[];
  /** Locks removed because no live process held them. */
  staleLocks: number;
  /** Operations the crashed update left pending, e.g. `creating mch_x`. */
  pendingOperations: string[];
  /** The refresh that cleared them, when one ran. */
  refresh: PreviewOutcome | null;
}

export class FleetStackError extends Error {
  constructor(
    readonly code: 'stack_locked' | 'stack_operation_failed',
    message: string,
  ) {
    super(message);
  }
}

let pulumiCommand: Promise<PulumiCommand> | undefined;

/** The Pulumi CLI from `npm run tools` (or SLIPWAY_TOOLS_DIR), resolved once per process. */
function pulumiCli(): Promise<PulumiCommand> {
  pulumiCommand ??= PulumiCommand.get({ root: toolsDir() }).catch((err: unknown) => {
    pulumiCommand = undefined;
    throw err;
  });
  return pulumiCommand;
}

/** The last lines of a failed CLI run: the engine prints its reason at the end of stderr. */
function commandFailure(err: unknown): string {
  const result = (err as { commandResult?: { stderr?: string; stdout?: string } }).commandResult;
  const text = (result?.stderr || result?.stdout || (err instanceof Error ? err.message : ''))
    .trim()
    .split('\n')
    .filter((l) => l.trim())
    .slice(-8)
    .join('\n');
  return text || String(err);
}

function plainOutputs(outputs: OutputMap): Record<string, unknown> {
  return Object.fromEntries(Object.entries(outputs).map(([k, v]) => [k, v.value]));
}

export class FleetStack {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: FleetStackOptions,
    private readonly workspace: LocalWorkspace,
    private readonly stack: Stack,
  ) {}

  get name(): string {
    return this.stack.name;
  }

  /** Creates the stack on first use, selects it afterwards. No engine operation runs. */
  static async open(opts: FleetStackOptions): Promise<FleetStack> {
    await mkdir(opts.workDir, { recursive: true, mode: 0o700 });
    await mkdir(opts.pulumiHome, { recursive: true, mode: 0o700 });
    if (opts.backend.url.startsWith('file://')) {
      await mkdir(fileURLToPath(opts.backend.url), { recursive: true, mode: 0o700 });
    }
    const env: Record<string, string> = {
      ...engineEnv(),
      // A work directory lost with its container (Fargate) still finds the stack's secrets
      // manager in the state.
      PULUMI_FALLBACK_TO_STATE_SECRETS_MANAGER: 'true',
      ...opts.env,
    };
    if (opts.backend.passphrase !== undefined) {
      env.PULUMI_CONFIG_PASSPHRASE = opts.backend.passphrase;
    }
    const workspace = await LocalWorkspace.create({
      workDir: opts.workDir,
      pulumiHome: opts.pulumiHome,
      pulumiCommand: await pulumiCli(),
      envVars: env,
      secretsProvider: opts.backend.secretsProvider,
      projectSettings: {
        name: fleetProjectName,
        runtime: 'nodejs',
        description: 'The builders and cache volumes of one Slipway connection',
        backend: { url: opts.backend.url },
      },
    });
    const stack = await Stack.createOrSelect(opts.connectionId, workspace);
    return new FleetStack(opts, workspace, stack);
  }

  /** Runs operations one after the other: the engine allows one per stack. */
  private exclusive<T>(op: () => Promise<T>): Promise<T> {
    const run = this.queue.then(op, op);
    this.queue = run.catch(() => undefined);
    return run;
  }

  /** Preview, then (when anything changes) up, with the program of the desired fleet. */
  converge(
    program: PulumiFn,
    opts: { signal?: AbortSignal; refresh?: boolean } = {},
  ): Promise<ConvergeOutcome> {
    return this.exclusive(async () => {
      const startedAt = new Date();
      const log = this.opts.logger;
      this.workspace.program = program;
      const previewEvents = new EventCollector();
      let preview: PreviewOutcome;
      try {
        const result = await this.stack.preview({
          diff: true,
          color: 'never',
          suppressProgress: true,
          refresh: opts.refresh,
          onEvent: previewEvents.onEvent,
          signal: opts.signal,
        });
        const summary = previewEvents.summary ?? result.changeSummary;
        preview = {
          summary,
          steps: previewEvents.steps,
          diff: result.stdout,
          hasChanges: summaryHasChanges(summary),
        };
      } catch (err) {
        return this.failed(startedAt, null, previewEvents, err, opts.signal);
      }
      if (!preview.hasChanges) {
        log.debug({ stack: this.name }, 'preview shows no change; no update');
        return {
          result: 'succeeded',
          startedAt,
          finishedAt: new Date(),
          preview,
          updated: false,
          summary: preview.summary,
          steps: [],
          failedUrns: [],
          diagnostics: previewEvents.diagnostics,
          outputs: plainOutputs(await this.stack.outputs()),
        };
      }
      const upEvents = new EventCollector();
      try {
        const up = await this.stack.up({
          color: 'never',
          suppressProgress: true,
          refresh: opts.refresh,
          onEvent: upEvents.onEvent,
          signal: opts.signal,
        });
        return {
          result: 'succeeded',
          startedAt,
          finishedAt: new Date(),
          preview,
          updated: true,
          summary: upEvents.summary ?? (up.summary.resourceChanges as Record<string, number>) ?? {},
          steps: upEvents.steps,
          failedUrns: [],
          diagnostics: upEvents.diagnostics,
          outputs: plainOutputs(up.outputs),
        };
      } catch (err) {
        return this.failed(startedAt, preview, upEvents, err, opts.signal);
      }
    });
  }

  private async failed(
    startedAt: Date,
    preview: PreviewOutcome | null,
    events: EventCollector,
    err: unknown,
    signal: AbortSignal | undefined,
  ): Promise<ConvergeOutcome> {
    const canceled = signal?.aborted === true || events.canceled;
    const error =
      err instanceof ConcurrentUpdateError
        ? `the stack ${this.name} is locked by another update`
        : (events.errorText() ?? commandFailure(err));
    this.opts.logger.warn({ stack: this.name, canceled, error }, 'fleet update did not succeed');
    let outputs: Record<string, unknown> = {};
    try {
      outputs = plainOutputs(await this.stack.outputs());
    } catch {
      // The outputs of a stack whose update failed may be unreadable; the report has the error.
    }
    return {
      result: canceled ? 'canceled' : 'failed',
      startedAt,
      finishedAt: new Date(),
      preview,
      updated: preview !== null,
      summary: events.summary ?? preview?.summary ?? {},
      steps: events.steps,
      error: canceled ? `canceled${error ? `: ${error}` : ''}` : error,
      failedUrns: events.failedUrns,
      diagnostics: events.diagnostics,
      outputs,
    };
  }

  /** Reads every resource back from the provider and records what it finds. */
  refresh(
    opts: { clearPendingCreates?: boolean; signal?: AbortSignal } = {},
  ): Promise<PreviewOutcome> {
    return this.exclusive(async () => {
      const events = new EventCollector();
      const result = await this.stack.refresh({
        color: 'never',
        suppressProgress: true,
        clearPendingCreates: opts.clearPendingCreates,
        onEvent: events.onEvent,
        signal: opts.signal,
      });
      const summary =
        events.summary ?? (result.summary.resourceChanges as Record<string, number>) ?? {};
      return {
        summary,
        steps: events.steps,
        diff: result.stdout,
        hasChanges: summaryHasChanges(summary),
      };
    });
  }

  /** A refresh that changes nothing: what differs between the state and the real resources. */
  driftCheck(opts: { signal?: AbortSignal } = {}): Promise<PreviewOutcome> {
    return this.exclusive(async () => {
      const events = new EventCollector();
      const result = await this.stack.previewRefresh({
        color: 'never',
        suppressProgress: true,
        onEvent: events.onEvent,
        signal: opts.signal,
      });
      const summary = events.summary ?? result.changeSummary;
      return {
        summary,
        steps: events.steps,
        diff: result.stdout,
        hasChanges: summaryHasChanges(summary),
      };
    });
  }

  /** Removes the stack's update lock. */
  cancel(): Promise<void> {
    return this.exclusive(() => this.stack.cancel());
  }

  outputs(): Promise<Record<string, unknown>> {
    return this.exclusive(async () => plainOutputs(await this.stack.outputs()));
  }

  /**
   * Repairs what a crash in the middle of an update leaves: engine processes of the previous
   * agent still running, a lock nobody holds, operations recorded as pending. Pending creates
   * are dropped from the state; the provider's creates are idempotent, so the next converge
   * adopts whatever they had made. Call it once at start, before any other operation.
   */
  async recover(): Promise<RecoveryOutcome> {
    const log = this.opts.logger;
    // Processes working in our work directory are an engine and its plugins from a previous
    // run of this agent (this process started none yet); they must not race the next update.
    const leftoverProcesses = await terminateProcessesUnder(this.opts.workDir, 10_000);
    if (leftoverProcesses.length > 0) {
      log.warn({ pids: leftoverProcesses }, 'ended engine processes left by a previous agent run');
    }
    const locks = this.lockHolders();
    let staleLocks = 0;
    if (locks === undefined || locks.length > 0) {
      const live = (locks ?? []).filter((l) => l.hostname === hostname() && isAlive(l.pid));
      if (live.length > 0) {
        throw new FleetStackError(
          'stack_locked',
          `the stack ${this.name} is locked by a live process (pid ${live.map((l) => l.pid).join(', ')}); stop the other agent of this connection`,
        );
      }
      await this.cancel();
      staleLocks = locks?.length ?? 0;
      if (staleLocks > 0) log.warn({ stack: this.name, staleLocks }, 'removed stale stack locks');
    }
    const deployment = await this.exclusive(() => this.stack.exportStack());
    const pending = (
      (deployment.deployment?.pending_operations ?? []) as {
        type: string;
        resource: { urn: string };
      }[]
    ).map((op) => `${op.type} ${op.resource.urn.slice(op.resource.urn.lastIndexOf('::') + 2)}`);
    let refresh: PreviewOutcome | null = null;
    if (pending.length > 0) {
      log.warn({ stack: this.name, pending }, 'the last update was interrupted; refreshing');
      refresh = await this.refresh({ clearPendingCreates: true });
    }
    return { leftoverProcesses, staleLocks, pendingOperations: pending, refresh };
  }

  /**
   * Holders of the stack's locks in a file backend, read from the lock files themselves;
   * undefined for other backends, where the lock is simply cancelled: the lease of the
   * control plane guarantees one agent per connection.
   */
  private lockHolders(): { pid: number; hostname: string }[] | undefined {
    if (!this.opts.backend.url.startsWith('file://')) return undefined;
    const dir = path.join(
      fileURLToPath(this.opts.backend.url),
      '.pulumi',
      'locks',
      'organization',
      fleetProjectName,
      this.name,
    );
    if (!existsSync(dir)) return [];
    return readdirSync(dir)
      .filter((f) => f.endsWith('.json'))
      .map((f) => {
        try {
          const lock = JSON.parse(readFileSync(path.join(dir, f), 'utf8')) as {
            pid?: number;
            hostname?: string;
          };
          return { pid: lock.pid ?? 0, hostname: lock.hostname ?? '' };
        } catch {
          return { pid: 0, hostname: '' };
        }
      });
  }

  /** Engine processes currently working for this stack (for tests and diagnostics). */
  engineProcesses(): number[] {
    return processesUnder(this.opts.workDir).map((p) => p.pid);
  }
}
