// The physical floor of a builder's start: a bare buildkitd with the flags the machine-agent gives
// it (mutual TLS on a loopback port, a unix socket, the debug listener, GC limits), started and
// seen ready the way the machine-agent sees it (every listener serving, a worker answering on the
// unix socket). Nothing of Slipway runs around it.
import { mkdir } from 'node:fs/promises';
import path from 'node:path';
import { Buildkitd } from '../../machine/buildkitd';
import {
  writeMtlsBuildkitdFiles,
  type MtlsBuildkitdFiles,
} from '../../test/helpers/mtls-buildkitd';
import type { Scope } from './scope';

export interface BareBuildkitd {
  files: MtlsBuildkitdFiles;
  daemon: Buildkitd;
  /** From spawn to ready, in milliseconds. */
  startMs: number;
}

/** Starts a bare buildkitd on `root` (a new directory: a cold volume; a used one: warm). */
export async function startBareBuildkitd(
  scope: Scope,
  dir: string,
  root = path.join(dir, 'root'),
): Promise<BareBuildkitd> {
  await mkdir(dir, { recursive: true });
  const files = await writeMtlsBuildkitdFiles(dir, root);
  const daemon = new Buildkitd({
    configFile: files.configFile,
    listeners: 2,
    unixSocket: files.unixSocket,
    logFile: files.logFile,
  });
  scope.defer(() => daemon.stop(10_000));
  const started = performance.now();
  await daemon.start(60_000);
  return { files, daemon, startMs: performance.now() - started };
}

/**
 * `rounds` starts of a bare buildkitd, each stopped before the next: on a fresh root every time
 * (what a new machine with a new volume pays), or on the same root again (a stopped builder
 * started on its volume).
 */
export async function measureFloor(
  scope: Scope,
  rounds: number,
  root: 'fresh' | 'reused',
): Promise<number[]> {
  const base = await scope.tempDir('floor');
  const times: number[] = [];
  for (let i = 0; i < rounds; i++) {
    scope.signal.throwIfAborted();
    const dir = path.join(base, String(i));
    const bare = await startBareBuildkitd(
      scope,
      dir,
      root === 'fresh' ? path.join(dir, 'root') : path.join(base, 'shared-root'),
    );
    times.push(bare.startMs);
    await bare.daemon.stop(10_000);
  }
  return times;
}
