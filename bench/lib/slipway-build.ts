// `slipway build` as a user runs it (the real executable in its own process), timed from spawn to
// exit, with the phases of its builder from the metadata file the CLI writes: its own start-up,
// the acquire (request to ready answer), buildctl on the builder, and reporting and exiting.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { open, readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import { z } from 'zod';
import { buildSchema, type Builder } from '../../common/protocol';
import { repoRoot, slipwayBin, type Dev } from './dev';

const metadataSchema = z.object({ build: buildSchema, buildMs: z.number() });

/** Runs a command with its output to `logFile`; resolves with its wall time, throws on failure. */
export async function timedCommand(
  argv: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = process.env,
): Promise<number> {
  const log = await open(logFile, 'w');
  try {
    const started = performance.now();
    const child = spawn(argv[0]!, argv.slice(1), {
      cwd: repoRoot,
      env,
      stdio: ['ignore', log.fd, log.fd],
    });
    const [code] = (await once(child, 'exit')) as [number | null];
    const ms = performance.now() - started;
    if (code !== 0) {
      const tail = (await readFile(logFile, 'utf8')).split('\n').slice(-15).join('\n');
      throw new Error(`${path.basename(argv[1] ?? argv[0]!)} exited with ${code}:\n${tail}`);
    }
    return ms;
  } finally {
    await log.close();
  }
}

export interface SlipwayBuildRun {
  totalMs: number;
  /** From spawn to the control plane recording the request: the CLI's own start-up. */
  cliStartMs: number;
  /** From the request to the CLI's ready answer. */
  acquireMs: number;
  /** buildctl inside the CLI. */
  buildctlMs: number;
  /** Reporting the result and exiting. */
  finishMs: number;
  builder: Builder;
}

/** `slipway build CONTEXT -o type=oci,dest=OUT` on the dev installation's project. */
export async function slipwayBuild(
  dev: Dev,
  contextDir: string,
  out: string,
  logFile: string,
  project = dev.project,
): Promise<SlipwayBuildRun> {
  const metadataFile = `${out}.json`;
  const spawnedAt = Date.now();
  const totalMs = await timedCommand(
    [
      process.execPath,
      slipwayBin,
      'build',
      contextDir,
      '--progress',
      'plain',
      '--output',
      `type=oci,dest=${out}`,
      '--metadata-file',
      metadataFile,
    ],
    logFile,
    { ...dev.env, SLIPWAY_PROJECT: project },
  );
  const meta = metadataSchema.parse(JSON.parse(await readFile(metadataFile, 'utf8')));
  await rm(out, { force: true });
  await rm(metadataFile, { force: true });
  const builder = meta.build.builders[0]!;
  const requestedAt = Date.parse(builder.phases.requestedAt);
  const answeredAt = Date.parse(builder.phases.answeredAt ?? builder.phases.readyAt!);
  const cliStartMs = requestedAt - spawnedAt;
  const acquireMs = answeredAt - requestedAt;
  return {
    totalMs,
    cliStartMs,
    acquireMs,
    buildctlMs: meta.buildMs,
    finishMs: totalMs - cliStartMs - acquireMs - meta.buildMs,
    builder,
  };
}
