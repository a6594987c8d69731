// Runs one buildkitd process: start it with a config, know when it listens, confirm it answers
// through the unix socket, stop it gracefully within a deadline.
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { createWriteStream, type WriteStream } from 'node:fs';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { toolPath } from '../common/tools';

const execFileAsync = promisify(execFile);

export class BuildkitdError extends Error {
  constructor(
    readonly code: 'buildkitd_exited' | 'buildkitd_not_ready' | 'buildkitd_unhealthy',
    message: string,
  ) {
    super(message);
  }
}

export interface BuildkitdOptions {
  configFile: string;
  /** Number of listeners in the config; ready means each logged "running server on". */
  listeners: number;
  unixSocket: string;
  /** buildkitd's own output is appended here. */
  logFile: string;
  env?: NodeJS.ProcessEnv;
}

export interface BuildkitdExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export function describeExit(exit: BuildkitdExit): string {
  return exit.signal ? `killed by ${exit.signal}` : `exit code ${exit.code}`;
}

export class Buildkitd {
  private child: ChildProcess | undefined;
  private log: WriteStream | undefined;
  private exited: Promise<BuildkitdExit> | undefined;
  private lastLines: string[] = [];

  constructor(private readonly opts: BuildkitdOptions) {}

  get running(): boolean {
    return !!this.child && this.child.exitCode === null && this.child.signalCode === null;
  }

  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }

  /** Resolves once every listener is serving and a worker answers on the unix socket. */
  async start(timeoutMs: number): Promise<void> {
    if (this.running) throw new Error('buildkitd is already running');
    this.log = createWriteStream(this.opts.logFile, { flags: 'a', mode: 0o600 });
    const child = spawn(toolPath('buildkitd'), ['--config', this.opts.configFile], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: this.opts.env ?? process.env,
    });
    this.child = child;
    this.lastLines = [];
    this.exited = once(child, 'exit').then(([code, signal]) => ({
      code: code as number | null,
      signal: signal as NodeJS.Signals | null,
    }));
    let serving = 0;
    let onServing: () => void = () => undefined;
    const allServing = new Promise<void>((resolve) => (onServing = resolve));
    for (const stream of [child.stdout!, child.stderr!]) {
      stream.pipe(this.log, { end: false });
      createInterface({ input: stream }).on('line', (line) => {
        this.lastLines.push(line);
        if (this.lastLines.length > 20) this.lastLines.shift();
        if (line.includes('running server on') && ++serving >= this.opts.listeners) onServing();
      });
    }
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () =>
          reject(
            new BuildkitdError(
              'buildkitd_not_ready',
              `buildkitd did not start listening within ${timeoutMs} ms`,
            ),
          ),
        timeoutMs,
      );
    });
    const exitedEarly = this.exited.then((exit) => {
      throw new BuildkitdError(
        'buildkitd_exited',
        `buildkitd ended while starting (${describeExit(exit)}): ${this.lastLines.slice(-5).join(' | ')}`,
      );
    });
    try {
      await Promise.race([allServing, timeout, exitedEarly]);
      await Promise.race([this.checkWorkers(), timeout, exitedEarly]);
    } catch (err) {
      await this.stop(5000);
      throw err;
    } finally {
      clearTimeout(timer);
      exitedEarly.catch(() => undefined);
    }
  }

  /** `buildctl debug workers` through the unix socket: BuildKit answers and has a worker. */
  async checkWorkers(): Promise<void> {
    const { stdout } = await execFileAsync(
      toolPath('buildctl'),
      ['--addr', `unix://${this.opts.unixSocket}`, 'debug', 'workers', '--format', '{{json .}}'],
      { timeout: 10_000 },
    );
    const workers = JSON.parse(stdout) as unknown[];
    if (!Array.isArray(workers) || workers.length === 0) {
      throw new BuildkitdError('buildkitd_unhealthy', 'buildkitd answered but has no worker');
    }
  }

  /** Resolves with how the process ended, on its own or stopped. */
  waitExit(): Promise<BuildkitdExit> {
    return this.exited ?? Promise.resolve({ code: null, signal: null });
  }

  /** Its last lines of output, for error reports. */
  recentOutput(lines = 5): string {
    return this.lastLines.slice(-lines).join(' | ');
  }

  /** SIGTERM, then SIGKILL if it has not exited within `deadlineMs`. */
  async stop(deadlineMs: number): Promise<void> {
    const child = this.child;
    if (!child || !this.running) return this.closeLog();
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), deadlineMs);
    await this.exited;
    clearTimeout(timer);
    await this.closeLog();
  }

  private async closeLog(): Promise<void> {
    const log = this.log;
    this.log = undefined;
    if (log) await new Promise<void>((resolve) => log.end(resolve));
  }
}
