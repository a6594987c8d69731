// Keeps buildkitd running as the current BuildKit task says: writes its certificates and config,
// starts it, restarts it when it crashes (with backoff, counted and reported), restarts it when a
// task brings new certificates, and stops it gracefully. The cache root survives every restart.
import { createHash, createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { waitFor } from '../common/wait';
import { clearBuildkitLeftovers } from './buildkit-leftovers';
import { Buildkitd, describeExit, type BuildkitdExit } from './buildkitd';
import { renderBuildkitdConfig } from './buildkitd-config';
import { MachineAgentError, errorMessage } from './errors';
import { backoffDelay, type BackoffPolicy } from './retry';
import { writeFileAtomic } from '../common/fs';

export type BuildkitState = 'stopped' | 'starting' | 'ready' | 'failed';

/** Everything buildkitd's files are made from; the same spec never restarts a ready daemon. */
export interface BuildkitSpec {
  root: string;
  serverCertificate: string;
  clientCa: string;
  gc: { maxUsedBytes: number; minFreeBytes: number };
}

export interface SupervisorOptions {
  /** Where buildkitd.toml, certificates, pid file and log go. */
  dir: string;
  /** The server key (0600), generated at registration. */
  serverKeyFile: string;
  /** host:port of the mTLS listener. */
  listenAddress: string;
  /** Loopback host:port for buildkitd's debug and metrics server. */
  debugAddress: string;
  startTimeoutMs: number;
  stopGraceMs: number;
  /** Waits between attempts to start it again after a crash. */
  restartBackoff: BackoffPolicy;
  /** After this many failed starts in a row it is declared failed until the next task. */
  maxFailedStarts: number;
  logger: Logger;
  /** Called on every change of state, restart count or event, so it can be reported at once. */
  onChange: () => void;
}

/** Unix socket paths are limited to 108 bytes; deep state directories fall back to /tmp. */
function socketPath(dir: string): string {
  const preferred = path.join(dir, 'buildkitd.sock');
  if (Buffer.byteLength(preferred) <= 100) return preferred;
  const digest = createHash('sha256').update(dir).digest('hex').slice(0, 16);
  return path.join(tmpdir(), `slipway-buildkitd-${digest}.sock`);
}

export class BuildkitSupervisor {
  state: BuildkitState = 'stopped';
  error: string | undefined;
  restarts = 0;
  lastEvent: string | undefined;
  readonly unixSocket: string;

  private daemon: Buildkitd | undefined;
  /** Daemons being stopped on purpose: their exit is not a crash. */
  private readonly stopping = new WeakSet<Buildkitd>();
  private appliedFingerprint: string | undefined;
  /** The cache root of the current task. */
  private root: string | undefined;
  /** Serializes apply, stop and crash recovery: one change to the daemon at a time. */
  private queue: Promise<unknown> = Promise.resolve();
  /** Aborted when a newer apply or a stop takes over from the operation in progress. */
  private operation = new AbortController();
  private staleChecked = false;
  /** Set at shutdown: no task may start buildkitd again. */
  private closed = false;

  constructor(private readonly opts: SupervisorOptions) {
    this.unixSocket = socketPath(opts.dir);
  }

  get files() {
    const dir = this.opts.dir;
    return {
      config: path.join(dir, 'buildkitd.toml'),
      cert: path.join(dir, 'server.pem'),
      clientCa: path.join(dir, 'client-ca.pem'),
      pid: path.join(dir, 'buildkitd.pid'),
      log: path.join(dir, 'buildkitd.log'),
    };
  }

  get alive(): boolean {
    return this.daemon?.running ?? false;
  }

  get pid(): number | undefined {
    return this.daemon?.pid;
  }

  /** Runs `fn` after the operations before it, aborting whatever restart loop they were in. */
  private exclusive<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.operation.abort();
    const operation = new AbortController();
    this.operation = operation;
    const run = () => fn(operation.signal);
    const next = this.queue.then(run, run);
    this.queue = next.catch(() => undefined);
    return next;
  }

  private set(state: BuildkitState, event?: { error?: string; lastEvent?: string }) {
    this.state = state;
    this.error = event?.error;
    if (event?.lastEvent) this.lastEvent = event.lastEvent;
    this.opts.onChange();
  }

  /** Makes buildkitd run with `spec`; resolves when it is ready, rejects when it cannot start. */
  apply(spec: BuildkitSpec): Promise<void> {
    return this.exclusive(async (signal) => {
      if (this.closed) {
        throw new MachineAgentError('buildkitd_failed', 'the machine-agent is shutting down');
      }
      const key = await readFile(this.opts.serverKeyFile, 'utf8');
      checkCertificate(spec.serverCertificate, key);
      const config = renderBuildkitdConfig({
        root: spec.root,
        tcpAddress: this.opts.listenAddress,
        unixSocket: this.unixSocket,
        debugAddress: this.opts.debugAddress,
        tls: {
          certFile: this.files.cert,
          keyFile: this.opts.serverKeyFile,
          caFile: this.files.clientCa,
        },
        maxUsedBytes: spec.gc.maxUsedBytes,
        minFreeBytes: spec.gc.minFreeBytes,
      });
      const fingerprint = createHash('sha256')
        .update(config)
        .update(spec.serverCertificate)
        .update(spec.clientCa)
        .update(key)
        .digest('hex');
      if (fingerprint === this.appliedFingerprint && this.alive && this.state === 'ready') return;

      await this.stopDaemon();
      await writeFileAtomic(this.files.cert, spec.serverCertificate, 0o644);
      await writeFileAtomic(this.files.clientCa, spec.clientCa, 0o644);
      await writeFileAtomic(this.files.config, config, 0o600);
      this.appliedFingerprint = fingerprint;
      this.root = spec.root;
      this.set('starting');
      try {
        await this.startWithRetries(signal);
      } catch (err) {
        if (signal.aborted) throw err; // a newer task or a stop took over
        const message = `buildkitd failed to start: ${errorMessage(err)}`;
        this.set('failed', { error: message, lastEvent: message });
        throw new MachineAgentError('buildkitd_failed', message);
      }
      this.set('ready');
    });
  }

  /**
   * Shutdown has begun: no more applies, and a start or restart loop in progress is cut short
   * (its buildkitd stopped) instead of running to its own timeout. stop() still follows.
   */
  close(): void {
    this.closed = true;
    this.operation.abort();
    const daemon = this.daemon;
    if (daemon && this.state !== 'ready') {
      this.stopping.add(daemon);
      void daemon.stop(this.opts.stopGraceMs);
    }
  }

  /** Stops buildkitd gracefully (SIGKILL after the grace period); the task is forgotten. */
  stop(): Promise<void> {
    return this.exclusive(async () => {
      await this.stopDaemon();
      this.appliedFingerprint = undefined;
      if (this.state !== 'stopped') this.set('stopped');
    });
  }

  private async startWithRetries(signal: AbortSignal): Promise<void> {
    for (let attempt = 0; ; attempt++) {
      signal.throwIfAborted();
      await this.stopDaemon();
      try {
        await this.startDaemon();
        return;
      } catch (err) {
        if (attempt + 1 >= this.opts.maxFailedStarts || signal.aborted) throw err;
        const wait = backoffDelay(attempt, this.opts.restartBackoff);
        this.opts.logger.warn(
          { err: errorMessage(err), attempt: attempt + 1, retryInMs: wait },
          'buildkitd did not start; retrying',
        );
        await delay(wait, undefined, { signal });
      }
    }
  }

  private async startDaemon(): Promise<void> {
    await this.stopStale();
    // A buildkitd that died mid-build left its steps running and their rootfs mounted.
    if (this.root) await clearBuildkitLeftovers(this.root, this.opts.logger);
    const daemon = new Buildkitd({
      configFile: this.files.config,
      listeners: 2,
      unixSocket: this.unixSocket,
      logFile: this.files.log,
    });
    this.daemon = daemon;
    await daemon.start(this.opts.startTimeoutMs);
    await writeFileAtomic(this.files.pid, `${daemon.pid}\n`, 0o644);
    this.opts.logger.info(
      { buildkitdPid: daemon.pid, listen: this.opts.listenAddress },
      'buildkitd ready',
    );
    void daemon.waitExit().then((exit) => {
      if (this.daemon === daemon && !this.stopping.has(daemon)) this.onCrash(exit);
    });
  }

  private async stopDaemon(): Promise<void> {
    const daemon = this.daemon;
    if (!daemon) return;
    this.stopping.add(daemon);
    await daemon.stop(this.opts.stopGraceMs);
    this.daemon = undefined;
    await rm(this.files.pid, { force: true });
  }

  /**
   * A buildkitd left running by an agent that was killed (SIGKILL, OOM) still holds the port and
   * the cache root's lock; it is ours if its command line names our config file.
   */
  private async stopStale(): Promise<void> {
    if (this.staleChecked) return;
    this.staleChecked = true;
    const pid = Number((await readFile(this.files.pid, 'utf8').catch(() => '')).trim());
    if (!pid) return;
    const cmdline = async () => readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
    if (!(await cmdline()).split('\0').includes(this.files.config)) return;
    this.opts.logger.warn(
      { buildkitdPid: pid },
      'stopping a buildkitd left running by an earlier agent',
    );
    const gone = async () => !(await cmdline());
    process.kill(pid, 'SIGTERM');
    try {
      await waitFor(gone, { timeoutMs: this.opts.stopGraceMs, what: `buildkitd ${pid} to exit` });
    } catch {
      process.kill(pid, 'SIGKILL');
      await waitFor(gone, { timeoutMs: 10_000, what: `buildkitd ${pid} to be killed` });
    }
    await rm(this.files.pid, { force: true });
  }

  /** An exit nobody asked for: count it, say so at once, and start buildkitd again. */
  private onCrash(exit: BuildkitdExit): void {
    this.restarts += 1;
    const how = describeExit(exit);
    this.opts.logger.error(
      { exit, restarts: this.restarts, output: this.daemon?.recentOutput(3) },
      'buildkitd exited unexpectedly; restarting it',
    );
    this.set('starting', {
      lastEvent: `buildkitd exited unexpectedly (${how}); restarting it (restart ${this.restarts})`,
    });
    this.exclusive(async (signal) => {
      try {
        await this.startWithRetries(signal);
      } catch (err) {
        if (signal.aborted) return;
        const message = `buildkitd could not be restarted after it exited (${how}): ${errorMessage(err)}`;
        this.set('failed', { error: message, lastEvent: message });
        return;
      }
      this.set('ready', {
        lastEvent: `buildkitd restarted after it exited unexpectedly (${how}); ${this.restarts} restart(s) so far`,
      });
    }).catch((err: unknown) => {
      this.opts.logger.error({ err: errorMessage(err) }, 'buildkitd recovery ended');
    });
  }
}

/** A certificate for another key would make buildkitd fail with an obscure TLS error later. */
function checkCertificate(certPem: string, keyPem: string): void {
  let matches = false;
  try {
    matches = new X509Certificate(certPem).checkPrivateKey(createPrivateKey(keyPem));
  } catch (err) {
    throw new MachineAgentError(
      'task_invalid',
      `the task's server certificate cannot be read: ${errorMessage(err)}`,
    );
  }
  if (!matches) {
    throw new MachineAgentError(
      'certificate_mismatch',
      "the task's server certificate is not for this machine's server key; the control plane signed another machine's CSR",
    );
  }
}
