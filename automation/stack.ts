// The inline Pulumi stack of one connection (project `slipway-fleet`, stack named after the
// connection): opened once with a stable work directory and PULUMI_HOME, then preview, up,
// refresh, drift check, cancel and crash recovery, one operation at a time.
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { mkdir, readdir, readFile, rm } from 'node:fs/promises';
import { hostname } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import {
  ConcurrentUpdateError,
  LocalWorkspace,
  PulumiCommand,
  Stack,
  type ProjectSettings,
  type PulumiFn,
} from '@pulumi/pulumi/automation';
import type { Logger } from 'pino';
import { engineEnv, toolsDir } from '../common/tools';
import { EventCollector, isFleetResource } from './events';
import { urnName, type ConvergeOutcome, type PreviewOutcome, type StackResource } from './outcome';
import { isAlive, terminateProcessesUnder } from './local/processes';
import type { ProviderPlugin } from './provider';

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
  /** Resource provider plugins the engine must take from these directories. */
  plugins?: ProviderPlugin[];
  logger: Logger;
}

export interface RecoveryOutcome {
  /** Engine and plugin processes a previous agent left running in the work directory. */
  leftoverProcesses: number[];
  /** Files of the file backend an engine that died mid-write left unreadable, now removed. */
  repairedFiles: string[];
  /** Locks removed because no live process held them. */
  staleLocks: number;
  /** Operations the crashed update left pending, e.g. `creating mch_x`. */
  pendingOperations: string[];
  /** The refresh that cleared them, when one ran. */
  refresh: PreviewOutcome | null;
  /** Every fleet resource the stack holds after the recovery (what inventory() returns). */
  resources: StackResource[];
}

export class FleetStackError extends Error {
  constructor(
    readonly code: 'stack_locked' | 'stack_operation_failed' | 'provider_plugin_missing',
    message: string,
  ) {
    super(message);
  }
}

const execFileAsync = promisify(execFile);

let pulumiCommand: Promise<PulumiCommand> | undefined;

/**
 * The file backend writes each object through a temporary file renamed into place, but its
 * `.attrs` companion in place: an engine killed at that moment leaves an empty or cut one,
 * which makes every later read fail ("failed to load checkpoint: EOF"). Without it the backend
 * uses defaults, so unreadable ones are removed, with leftover temporary files.
 */
async function repairFileBackend(dir: string): Promise<string[]> {
  const root = path.join(dir, '.pulumi');
  if (!existsSync(root)) return [];
  const removed: string[] = [];
  for (const entry of await readdir(root, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const file = path.join(entry.parentPath, entry.name);
    let broken = /\.[0-9a-f]+\.tmp$/.test(entry.name);
    if (!broken && entry.name.endsWith('.attrs')) {
      try {
        JSON.parse(await readFile(file, 'utf8'));
      } catch {
        broken = true;
      }
    }
    if (broken) {
      await rm(file, { force: true });
      removed.push(path.relative(dir, file));
    }
  }
  return removed;
}

function pluginExecutable(plugin: ProviderPlugin): string {
  return path.join(plugin.dir, `pulumi-resource-${plugin.name}`);
}

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

/** The parts of `pulumi stack export` this module reads. */
interface ExportedState {
  deployment?: {
    resources?: { urn: string; type: string; id?: string; outputs?: Record<string, unknown> }[];
    pending_operations?: { type: string; resource: { urn: string } }[];
  };
}

/** The fleet resources of an exported state. */
function fleetResources(state: ExportedState): StackResource[] {
  return (state.deployment?.resources ?? [])
    .filter((r) => isFleetResource(r.type))
    .map((r) => ({
      urn: r.urn,
      type: r.type,
      name: urnName(r.urn),
      id: r.id ?? '',
      outputs: r.outputs ?? {},
    }));
}

export class FleetStack {
  private queue: Promise<unknown> = Promise.resolve();

  private constructor(
    private readonly opts: FleetStackOptions,
    private readonly workspace: LocalWorkspace,
    private readonly stack: Stack,
    private readonly repairs: { leftoverProcesses: number[]; repairedFiles: string[] },
  ) {}

  get name(): string {
    return this.stack.name;
  }

  /**
   * Creates the stack on first use, selects it afterwards; no engine operation runs. Engine
   * processes a previous run of this agent left in the work directory are ended first (they
   * would write the state while we read it), and backend files they left half-written removed.
   */
  static async open(opts: FleetStackOptions): Promise<FleetStack> {
    const plugins = opts.plugins ?? [];
    const missing = plugins.filter((p) => !existsSync(pluginExecutable(p)));
    if (missing.length > 0) {
      throw new FleetStackError(
        'provider_plugin_missing',
        missing
          .map(
            (p) =>
              `the Pulumi ${p.name} provider plugin${p.version ? ` v${p.version}` : ''} is missing at ${pluginExecutable(p)}; install it: ${p.install}`,
          )
          .join('\n'),
      );
    }
    await mkdir(opts.workDir, { recursive: true, mode: 0o700 });
    await mkdir(opts.pulumiHome, { recursive: true, mode: 0o700 });
    // Nothing of this process works there yet: whatever does is a previous run's.
    const leftoverProcesses = await terminateProcessesUnder(opts.workDir, 10_000);
    if (leftoverProcesses.length > 0) {
      opts.logger.warn({ pids: leftoverProcesses }, 'ended engine processes of a previous run');
    }
    let repairedFiles: string[] = [];
    if (opts.backend.url.startsWith('file://')) {
      const dir = fileURLToPath(opts.backend.url);
      await mkdir(dir, { recursive: true, mode: 0o700 });
      repairedFiles = await repairFileBackend(dir);
      if (repairedFiles.length > 0) {
        opts.logger.warn({ files: repairedFiles }, 'removed half-written backend files');
      }
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
        // Not in the SDK's type, but written to Pulumi.yaml as is: the engine takes these
        // plugins from our directories and warns of none found on PATH.
        ...(plugins.length > 0
          ? {
              plugins: {
                providers: plugins.map((p) => ({
                  name: p.name,
                  path: p.dir,
                  ...(p.version ? { version: p.version } : {}),
                })),
              },
            }
          : {}),
      } as ProjectSettings,
    });
    const stack = await Stack.createOrSelect(opts.connectionId, workspace);
    // After every up and refresh the Automation API runs `pulumi stack output` twice and
    // `pulumi stack history` once for the result's outputs and summary: three more CLI starts
    // (over a second on a busy host) that hold up the next converge. This module reads both
    // from the operation's own event stream instead, so they answer at once.
    stack.outputs = () => Promise.resolve({});
    stack.info = () => Promise.resolve(undefined);
    return new FleetStack(opts, workspace, stack, { leftoverProcesses, repairedFiles });
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
          ...previewEvents.engineOptions(opts.signal),
          diff: true,
          refresh: opts.refresh,
        });
        preview = previewEvents.outcome(result.stdout, result.changeSummary);
      } catch (err) {
        return this.failed(startedAt, null, previewEvents, err, opts.signal);
      }
      const previewFinishedAt = new Date();
      if (!preview.hasChanges) {
        log.debug({ stack: this.name }, 'preview shows no change; no update');
        return {
          result: 'succeeded',
          startedAt,
          finishedAt: new Date(),
          previewFinishedAt,
          preview,
          updated: false,
          summary: preview.summary,
          steps: [],
          failedUrns: [],
          diagnostics: previewEvents.diagnostics,
          resources: null,
        };
      }
      const upEvents = new EventCollector();
      try {
        await this.stack.up({ ...upEvents.engineOptions(opts.signal), refresh: opts.refresh });
        return {
          result: 'succeeded',
          startedAt,
          finishedAt: new Date(),
          previewFinishedAt,
          preview,
          updated: true,
          summary: upEvents.summary ?? {},
          steps: upEvents.steps,
          failedUrns: [],
          diagnostics: upEvents.diagnostics,
          resources: upEvents.resources,
        };
      } catch (err) {
        return this.failed(startedAt, preview, upEvents, err, opts.signal, previewFinishedAt);
      }
    });
  }

  private async failed(
    startedAt: Date,
    preview: PreviewOutcome | null,
    events: EventCollector,
    err: unknown,
    signal: AbortSignal | undefined,
    previewFinishedAt: Date | null = null,
  ): Promise<ConvergeOutcome> {
    const canceled = signal?.aborted === true || events.canceled;
    const error =
      err instanceof ConcurrentUpdateError
        ? `the stack ${this.name} is locked by another update`
        : (events.errorText() ?? commandFailure(err));
    this.opts.logger.warn({ stack: this.name, canceled, error }, 'fleet update did not succeed');
    return {
      result: canceled ? 'canceled' : 'failed',
      startedAt,
      finishedAt: new Date(),
      previewFinishedAt,
      preview,
      updated: preview !== null,
      summary: events.summary ?? preview?.summary ?? {},
      steps: events.steps,
      error: canceled ? `canceled${error ? `: ${error}` : ''}` : error,
      failedUrns: events.failedUrns,
      diagnostics: events.diagnostics,
      resources: null,
    };
  }

  /** Reads every resource back from the provider and records what it finds. */
  private refresh(
    opts: { clearPendingCreates?: boolean; signal?: AbortSignal } = {},
  ): Promise<PreviewOutcome> {
    return this.exclusive(async () => {
      const events = new EventCollector();
      const result = await this.stack.refresh({
        ...events.engineOptions(opts.signal),
        clearPendingCreates: opts.clearPendingCreates,
      });
      return events.outcome(result.stdout);
    });
  }

  /** A refresh that changes nothing: what differs between the state and the real resources. */
  driftCheck(opts: { signal?: AbortSignal } = {}): Promise<PreviewOutcome> {
    return this.exclusive(async () => {
      const events = new EventCollector();
      const result = await this.stack.previewRefresh(events.engineOptions(opts.signal));
      return events.outcome(result.stdout, result.changeSummary);
    });
  }

  /** Removes the stack's update lock. */
  private cancel(): Promise<void> {
    return this.exclusive(() => this.stack.cancel());
  }

  /**
   * The stack state as `pulumi stack export` prints it. Unlike Stack.exportStack, secrets stay
   * encrypted: nothing here needs them.
   */
  private exportState(): Promise<ExportedState> {
    return this.exclusive(async () => {
      const { stdout } = await execFileAsync(
        this.workspace.pulumiCommand.command,
        ['stack', 'export', '--stack', this.name, '--non-interactive'],
        {
          cwd: this.opts.workDir,
          env: { ...this.workspace.envVars, PULUMI_HOME: this.opts.pulumiHome },
          maxBuffer: 512 * 1024 * 1024,
        },
      );
      return JSON.parse(stdout) as ExportedState;
    });
  }

  /** Every fleet resource the stack state holds. */
  async inventory(): Promise<StackResource[]> {
    return fleetResources(await this.exportState());
  }

  /**
   * Repairs what a crash in the middle of an update leaves (besides what open() repaired):
   * a lock nobody holds, operations recorded as pending. Pending creates
   * are dropped from the state; the provider's creates are idempotent, so the next converge
   * adopts whatever they had made. Call it once at start, before any other operation.
   */
  async recover(): Promise<RecoveryOutcome> {
    const log = this.opts.logger;
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
    const state = await this.exportState();
    const pending = (state.deployment?.pending_operations ?? []).map(
      (op) => `${op.type} ${urnName(op.resource.urn)}`,
    );
    let refresh: PreviewOutcome | null = null;
    let resources = fleetResources(state);
    if (pending.length > 0) {
      log.warn({ stack: this.name, pending }, 'the last update was interrupted; refreshing');
      refresh = await this.refresh({ clearPendingCreates: true });
      resources = await this.inventory();
    }
    return { ...this.repairs, staleLocks, pendingOperations: pending, refresh, resources };
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
}
