// The whole of Slipway on this host as users run it: `slipway dev` in its own process (control
// plane, a local connection with its embedded cloud-agent, a project), builders as local
// machine-agent processes converged through Pulumi. Stopped with Ctrl-C's signal at the end.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { ApiClient } from '../../common/api';
import type { Scope } from './scope';

export const repoRoot = path.join(__dirname, '..', '..');
export const slipwayBin = path.join(repoRoot, 'cli', 'slipway.js');

export interface Dev {
  url: string;
  token: string;
  project: string;
  dataDir: string;
  /** The embedded cloud-agent's data directory: stacks, machines, volumes. */
  agentDir: string;
  /** Where `slipway dev` logs (control plane and cloud-agent, pino JSON lines). */
  logFile: string;
  /** What `slipway build` needs in its environment to use this dev installation. */
  env: NodeJS.ProcessEnv;
  user: ApiClient;
  /** From spawn to its export file written (control plane up, connection and project made). */
  startMs: number;
}

async function readExportFile(file: string): Promise<Record<string, string> | undefined> {
  if (!existsSync(file)) return undefined;
  const entries = (await readFile(file, 'utf8'))
    .split('\n')
    .filter((l) => l.includes('='))
    .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)] as const);
  return entries.length >= 3 ? Object.fromEntries(entries) : undefined;
}

export async function startDev(
  scope: Scope,
  opts: { project?: string; idleTimeoutSeconds?: number } = {},
): Promise<Dev> {
  const work = await scope.tempDir('dev');
  const dataDir = path.join(work, 'data');
  const exportFile = path.join(work, 'env');
  const project = opts.project ?? 'bench';
  const args = [
    slipwayBin,
    'dev',
    '--data-dir',
    dataDir,
    '--listen',
    '127.0.0.1:0',
    '--export-file',
    exportFile,
    '--project',
    project,
  ];
  if (opts.idleTimeoutSeconds) args.push('--idle-timeout', String(opts.idleTimeoutSeconds));
  const started = performance.now();
  const child = spawn(process.execPath, args, {
    cwd: repoRoot,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(-4000)));
  const exited = once(child, 'exit');
  scope.defer(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    // Ctrl-C: dev stops its agent, its builders and the control plane.
    child.kill('SIGINT');
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    await exited;
    clearTimeout(timer);
  });
  // The export file is written once the control plane, connection and project exist; polled at a
  // short fixed period so the start-up time is not rounded up by a backoff.
  let values: Record<string, string> | undefined;
  while (!(values = await readExportFile(exportFile))) {
    if (child.exitCode !== null) {
      throw new Error(`slipway dev exited with code ${child.exitCode}: ${stderr}`);
    }
    if (performance.now() - started > 120_000)
      throw new Error(`slipway dev did not start: ${stderr}`);
    scope.signal.throwIfAborted();
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const startMs = performance.now() - started;
  const user = new ApiClient({ baseUrl: values.SLIPWAY_API_URL!, token: values.SLIPWAY_TOKEN });
  scope.defer(() => user.close());
  return {
    url: values.SLIPWAY_API_URL!,
    token: values.SLIPWAY_TOKEN!,
    project,
    dataDir,
    agentDir: path.join(dataDir, 'agent'),
    logFile: path.join(dataDir, 'dev.log'),
    env: { ...process.env, ...values, SLIPWAY_CONFIG: path.join(work, 'cli-config.json') },
    user,
    startMs,
  };
}
