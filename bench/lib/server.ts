// The control plane as users run it: `slipway server` in its own process (so the load a benchmark
// generates does not share its event loop), on a fresh data directory, with its first
// organization bootstrapped. Its request logs go to a file, as they would go to a journal.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { freePort } from '../../common/net';
import { tokenPattern } from '../../common/protocol';
import type { Scope } from './scope';

const root = path.join(__dirname, '..', '..');

export interface ServerProcess {
  url: string;
  pid: number;
  /** The bootstrapped organization's admin token. */
  token: string;
  /** From spawn to the admin token printed (listening, migrated, bootstrapped). */
  startMs: number;
  /** Resident memory of the server process, in MiB. */
  rssMiB(): Promise<number>;
}

export async function startServerProcess(scope: Scope): Promise<ServerProcess> {
  const dataDir = await scope.tempDir('server');
  const port = await freePort();
  const logFile = path.join(dataDir, 'server.log');
  const log = createWriteStream(logFile, { flags: 'a' });
  const started = performance.now();
  const child = spawn(
    process.execPath,
    [
      path.join(root, 'cli', 'slipway.js'),
      'server',
      '--data-dir',
      dataDir,
      '--listen',
      `127.0.0.1:${port}`,
      '--bootstrap-org',
      'bench',
    ],
    { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  child.stderr.pipe(log, { end: false });
  const exited = once(child, 'exit');
  scope.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    log.end();
  });
  // Watched as it is written, so the start-up time is not rounded up to a polling period.
  const token = await new Promise<string>((resolve, reject) => {
    const pattern = new RegExp(tokenPattern.source.slice(1, -1));
    let seen = '';
    const timer = setTimeout(
      () => reject(new Error(`slipway server printed no admin token within 60 s; see ${logFile}`)),
      60_000,
    );
    child.stdout.on('data', (chunk: Buffer) => {
      log.write(chunk);
      seen = (seen + chunk.toString()).slice(-4096);
      const match = pattern.exec(seen);
      if (match) {
        clearTimeout(timer);
        resolve(match[0]);
      }
    });
    void exited.then(([code]) => {
      clearTimeout(timer);
      reject(new Error(`slipway server exited with code ${String(code)}; see ${logFile}`));
    });
  });
  const startMs = performance.now() - started;
  return {
    url: `http://127.0.0.1:${port}`,
    pid: child.pid!,
    token,
    startMs,
    async rssMiB() {
      const status = await readFile(`/proc/${child.pid}/status`, 'utf8');
      const kb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
      return Math.round(kb / 1024);
    },
  };
}
