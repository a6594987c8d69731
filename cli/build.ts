// `slipway build`: request a builder per platform from the control plane, wait for each while
// saying why, then build on it directly with buildctl over mutual TLS. Keys are made here and
// never leave this machine; the build data never passes through the control plane.
import { spawn } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { ApiClient, ApiError } from '../common/api';
import * as pki from '../common/pki';
import {
  defaultLongPollSeconds,
  type Build,
  type Builder,
  type Platform,
} from '../common/protocol';
import { toolPath } from '../common/tools';
import { buildctlArgs, type BuildSpec, type BuilderConnection } from './build-spec';
import { CliError, describeApiError } from './errors';
import type { Reporter } from './reporter';

export interface BuildOptions {
  client: ApiClient;
  project: string;
  spec: BuildSpec;
  reporter: Reporter;
  signal: AbortSignal;
  /** Give up waiting for builders after this long even if the control plane says nothing. */
  acquireTimeoutMs: number;
  heartbeatIntervalMs?: number;
  description?: string;
}

export interface BuildOutcome {
  exitCode: number;
  build: Build | undefined;
  buildMs: number;
  /** Why it failed, when the CLI knows better than buildctl's exit code (a silent builder). */
  failure?: string;
}

interface PlatformKey {
  platform: Platform;
  keys: pki.KeyPair;
  csr: string;
}

async function makeKeys(platforms: Platform[]): Promise<PlatformKey[]> {
  return Promise.all(
    platforms.map(async (platform) => {
      const keys = await pki.generateKeyPair();
      const csr = await pki.createCsr(keys, { commonName: `slipway-cli ${platform}` });
      return { platform, keys, csr };
    }),
  );
}

/** Long-polls one platform's builder until it is ready or failed. Retries a lost control plane. */
async function waitForBuilder(
  opts: BuildOptions,
  buildId: string,
  platform: Platform,
  startedAt: number,
): Promise<Builder> {
  const deadline = startedAt + opts.acquireTimeoutMs;
  let failures = 0;
  for (;;) {
    opts.signal.throwIfAborted();
    if (performance.now() > deadline) {
      throw new CliError(
        'acquire_timeout',
        `no ${platform} builder after ${Math.round(opts.acquireTimeoutMs / 1000)} s; the control plane last said it was still pending`,
      );
    }
    let builder: Builder;
    try {
      builder = await opts.client.call('waitBuilder', {
        params: { buildId },
        query: { platform, wait: defaultLongPollSeconds },
        signal: opts.signal,
      });
      failures = 0;
    } catch (err) {
      if (opts.signal.aborted) throw err;
      if (controlPlaneDown(err) && failures < 8) {
        failures++;
        opts.reporter.waiting(
          platform,
          `control plane unreachable, retrying (${err.message})`,
          performance.now() - startedAt,
        );
        await delay(backoffMs(failures) * (0.5 + Math.random() / 2), undefined, {
          signal: opts.signal,
        });
        continue;
      }
      throw err instanceof ApiError
        ? describeApiError(err, `waiting for the ${platform} builder`)
        : err;
    }
    if (builder.state === 'ready') return builder;
    if (builder.state === 'failed' || builder.state === 'released') {
      throw new CliError('builder_failed', `no ${platform} builder: ${builder.reason}`);
    }
    opts.reporter.waiting(platform, builder.reason, performance.now() - startedAt);
  }
}

async function writeTlsFiles(
  dir: string,
  builder: Builder,
  key: pki.KeyPair,
): Promise<BuilderConnection> {
  if (
    !builder.endpoint ||
    !builder.serverName ||
    !builder.caCertificate ||
    !builder.clientCertificate
  ) {
    throw new CliError(
      'bad_builder',
      'the control plane called the builder ready but sent no endpoint or certificates',
    );
  }
  const files = {
    caFile: path.join(dir, 'ca.pem'),
    certFile: path.join(dir, 'cert.pem'),
    keyFile: path.join(dir, 'key.pem'),
  };
  await writeFile(files.caFile, builder.caCertificate, { mode: 0o600 });
  await writeFile(files.certFile, builder.clientCertificate, { mode: 0o600 });
  await writeFile(files.keyFile, await pki.privateKeyToPem(key.privateKey), { mode: 0o600 });
  return { endpoint: builder.endpoint, serverName: builder.serverName, ...files };
}

/** An answer that says the control plane is away (restarting, unreachable), not that it refused. */
function controlPlaneDown(err: unknown): err is ApiError {
  return err instanceof ApiError && (err.code === 'unreachable' || err.status >= 500);
}

/** The pause before the n-th retry: 0.5 s doubling to 5 s. */
const backoffMs = (attempt: number) => Math.min(250 * 2 ** attempt, 5000);

/** Runs buildctl, streaming its progress through the reporter; resolves with its exit code. */
function runBuildctl(
  args: string[],
  platform: Platform,
  opts: BuildOptions,
  passthrough: boolean,
): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(toolPath('buildctl'), args, {
      stdio: ['ignore', passthrough ? 'inherit' : 'pipe', passthrough ? 'inherit' : 'pipe'],
    });
    const onAbort = () => child.kill('SIGINT'); // buildctl cancels the build on the builder
    opts.signal.addEventListener('abort', onAbort, { once: true });
    if (!passthrough) {
      for (const stream of [child.stdout!, child.stderr!]) {
        createInterface({ input: stream }).on('line', (line) => opts.reporter.line(platform, line));
      }
    }
    child.on('error', (err) => {
      opts.signal.removeEventListener('abort', onAbort);
      reject(
        new CliError(
          'buildctl_failed',
          `could not run buildctl: ${err.message}; run \`npm run tools\``,
        ),
      );
    });
    child.on('close', (code, sig) => {
      opts.signal.removeEventListener('abort', onAbort);
      resolve(code ?? (sig ? 130 : 1));
    });
  });
}

/**
 * Whether the builder still accepts connections, asked only after buildctl failed: a machine that
 * died after the control plane last heard from it is still handed out as ready until it is
 * declared lost, and buildctl's own words for that ("connection refused" deep in a gRPC error)
 * do not say what happened. Resolves with the reason when nothing answers.
 */
async function builderUnreachable(endpoint: string): Promise<string | undefined> {
  let host: string;
  let port: number;
  try {
    const url = new URL(endpoint);
    host = url.hostname.replace(/^\[|\]$/g, '');
    port = Number(url.port);
  } catch {
    return undefined; // not a tcp:// address: nothing to probe
  }
  if (!port) return undefined;
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, timeout: 5000 });
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(`no answer from ${host}:${port} within 5 s`);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => {
      resolve(`${host}:${port}: ${err.code ?? err.message}`);
    });
  });
}

export async function runBuild(opts: BuildOptions): Promise<BuildOutcome> {
  const { client, spec, reporter } = opts;
  const keys = await makeKeys(spec.platforms);
  const startedAt = performance.now();
  let build: Build;
  try {
    build = await client.call('createBuild', {
      body: {
        project: opts.project,
        platforms: keys.map((k) => ({ platform: k.platform, csr: k.csr })),
        description: opts.description,
      },
      signal: opts.signal,
    });
  } catch (err) {
    throw err instanceof ApiError ? describeApiError(err, 'requesting builders') : err;
  }
  reporter.created(build);
  for (const b of build.builders) {
    if (b.state === 'pending')
      reporter.waiting(b.platform, b.reason, performance.now() - startedAt);
  }

  const tlsDir = await mkdtemp(path.join(tmpdir(), 'slipway-build-'));
  let heartbeat: NodeJS.Timeout | undefined;
  let result: 'succeeded' | 'failed' | 'canceled' = 'failed';
  let error: string | undefined;
  let buildMs = 0;
  let exitCode = 1;
  const unreachable: string[] = [];
  try {
    heartbeat = setInterval(() => {
      client
        .call('heartbeatBuild', { params: { buildId: build.id }, body: {} })
        .catch((err: unknown) => {
          reporter.warn(`heartbeat failed: ${(err as Error).message}`);
        });
    }, opts.heartbeatIntervalMs ?? 10_000);
    heartbeat.unref();

    const multi = spec.platforms.length > 1;
    const passthrough = !multi && spec.progress !== 'quiet';
    const progress = multi || spec.progress === 'quiet' ? 'plain' : spec.progress;
    const codes = await Promise.all(
      keys.map(async (k) => {
        const builder = await waitForBuilder(opts, build.id, k.platform, startedAt);
        reporter.ready(k.platform, builder, performance.now() - startedAt);
        const dir = path.join(tlsDir, k.platform.replace('/', '-'));
        await mkdir(dir, { mode: 0o700 });
        const conn = await writeTlsFiles(dir, builder, k.keys);
        const started = performance.now();
        const code = await runBuildctl(
          buildctlArgs(spec, k.platform, conn, progress),
          k.platform,
          opts,
          passthrough,
        );
        buildMs = Math.max(buildMs, Math.round(performance.now() - started));
        if (code !== 0 && !opts.signal.aborted) {
          const why = await builderUnreachable(conn.endpoint);
          if (why) {
            unreachable.push(
              `the ${k.platform} builder (machine ${builder.machineId ?? '?'}) does not answer (${why}): ` +
                `BuildKit or its machine went down. Run the build again: the control plane replaces a ` +
                `machine that stays silent`,
            );
          }
        }
        return code;
      }),
    );
    exitCode = codes.find((c) => c !== 0) ?? 0;
    if (opts.signal.aborted) {
      result = 'canceled';
      exitCode = 130;
    } else if (exitCode === 0) {
      result = 'succeeded';
    } else {
      error =
        unreachable.length > 0 ? unreachable.join('; ') : `buildctl exited with code ${exitCode}`;
    }
  } catch (err) {
    if (opts.signal.aborted) {
      result = 'canceled';
      exitCode = 130;
      error = 'canceled by the user';
    } else {
      error = err instanceof Error ? err.message : String(err);
      clearInterval(heartbeat);
      await finish(client, reporter, build.id, 'failed', error, buildMs);
      await rm(tlsDir, { recursive: true, force: true });
      throw err;
    }
  } finally {
    clearInterval(heartbeat);
  }
  await rm(tlsDir, { recursive: true, force: true });
  const finished = await finish(client, reporter, build.id, result, error, buildMs);
  return {
    exitCode,
    build: finished,
    buildMs,
    ...(unreachable.length > 0 ? { failure: unreachable.join('; ') } : {}),
  };
}

/**
 * Reports the build's result. A control plane that is restarting or unreachable is retried for a
 * minute (ten seconds after Ctrl-C): otherwise a build that ran would be failed later for want of
 * heartbeats, its result lost.
 */
async function finish(
  client: ApiClient,
  reporter: Reporter,
  buildId: string,
  result: 'succeeded' | 'failed' | 'canceled',
  error: string | undefined,
  buildMs: number,
): Promise<Build | undefined> {
  const deadline = performance.now() + (result === 'canceled' ? 10_000 : 60_000);
  for (let attempt = 1; ; attempt++) {
    try {
      return await client.call('finishBuild', {
        params: { buildId },
        body: { result, ...(error ? { error: error.slice(0, 4000) } : {}), buildMs },
        timeoutMs: 10_000,
      });
    } catch (err) {
      if (!controlPlaneDown(err) || performance.now() >= deadline) {
        // The build's heartbeats stop now: the control plane ends it on its own.
        reporter.warn(`could not report the result (${(err as Error).message})`);
        return undefined;
      }
      if (attempt === 1) reporter.warn(`reporting the result failed, retrying (${err.message})`);
      await delay(backoffMs(attempt));
    }
  }
}
