// `slipway dev`: the whole of Slipway on this machine in one command. It starts the control plane
// on a data directory, makes sure of an organization, a local connection and a project, and runs
// the cloud-agent of that connection in the same process; builders are local machine-agent
// processes converged by the same Pulumi code as on AWS. Safe to run again on the same directory.
import { closeSync, existsSync, openSync, writeSync } from 'node:fs';
import { mkdir, readFile, rename, rm } from 'node:fs/promises';
import path from 'node:path';
import { writeFileAtomic } from '../common/fs';
import pino from 'pino';
import { ApiClient, ApiError } from '../common/api';
import { hostPlatform, tokenPattern, type Connection } from '../common/protocol';
import { ensureDevOrganization } from '../control-plane/bootstrap';
import { startControlPlane } from '../control-plane/server';
import { runCloudAgent } from '../agent/agent';
import { machinesDir } from '../automation/layout';
import { isAlive, terminateProcessesUnder } from '../automation/local/processes';
import { CliError } from './errors';

export interface DevOptions {
  dataDir: string;
  listen: { host: string; port: number };
  organization: string;
  connection: string;
  project: string;
  /** Seconds a ready builder may sit idle before it is stopped. */
  idleTimeoutSeconds?: number;
  keepBuilders: boolean;
  /** Write SLIPWAY_API_URL, SLIPWAY_TOKEN and SLIPWAY_PROJECT here (0600) for scripts. */
  exportFile?: string;
  verbose: boolean;
  out: NodeJS.WriteStream;
  signal: AbortSignal;
}

/** One `slipway dev` per data directory: a pid file, taken over when its process is gone. */
async function lockDataDir(dataDir: string): Promise<() => Promise<void>> {
  const file = path.join(dataDir, 'dev.pid');
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      const fd = openSync(file, 'wx', 0o600);
      writeSync(fd, `${process.pid}\n`);
      closeSync(fd);
      return () => rm(file, { force: true });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const pid = Number((await readFile(file, 'utf8').catch(() => '')).trim());
      if (pid && pid !== process.pid && isAlive(pid)) {
        throw new CliError(
          'dev_running',
          `slipway dev is already running on ${dataDir} (pid ${pid}); stop it or pass another --data-dir`,
        );
      }
      await rm(file, { force: true }); // left by a process that died
    }
  }
  throw new CliError('dev_running', `could not take ${file}`);
}

async function writePrivate(file: string, content: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, content); // read by scripts as soon as it exists
}

/** The local connection, created on first use; its agent token kept 0600 beside the agent. */
async function ensureConnection(
  user: ApiClient,
  opts: DevOptions,
  tokenFile: string,
): Promise<{ connection: Connection; token: string }> {
  const platform = hostPlatform() ?? 'linux/amd64';
  const settings = {
    platforms: [platform],
    ...(opts.idleTimeoutSeconds ? { idleTimeoutSeconds: opts.idleTimeoutSeconds } : {}),
  };
  const { connections } = await user.call('listConnections', {});
  let connection = connections.find((c) => c.name === opts.connection);
  if (!connection) {
    const created = await user.call('createConnection', {
      body: { name: opts.connection, provider: 'local', settings },
    });
    await writePrivate(tokenFile, created.token + '\n');
    return { connection: created.connection, token: created.token };
  }
  if (connection.provider !== 'local') {
    throw new CliError(
      'bad_connection',
      `connection ${opts.connection} is not a local one; pass --connection NAME`,
    );
  }
  if (
    opts.idleTimeoutSeconds &&
    connection.settings.idleTimeoutSeconds !== opts.idleTimeoutSeconds
  ) {
    connection = await user.call('updateConnection', {
      params: { connectionId: connection.id },
      body: { settings },
    });
  }
  const saved = existsSync(tokenFile) ? (await readFile(tokenFile, 'utf8')).trim() : '';
  if (tokenPattern.test(saved)) return { connection, token: saved };
  // The token file is gone: the old token is unknowable, so replace it.
  const rotated = await user.call('rotateConnectionToken', {
    params: { connectionId: connection.id },
  });
  await writePrivate(tokenFile, rotated.token + '\n');
  return { connection: rotated.connection, token: rotated.token };
}

async function ensureProject(user: ApiClient, name: string, connectionId: string): Promise<void> {
  const { projects } = await user.call('listProjects', {});
  const found = projects.find((p) => p.name === name);
  if (found && found.connectionId !== connectionId) {
    throw new CliError(
      'bad_project',
      `project ${name} belongs to another connection; pass --project NAME`,
    );
  }
  if (!found) await user.call('createProject', { body: { name, connection: connectionId } });
}

/**
 * The machine-agent bundled from this tree's sources into the data directory, as machines get it
 * (`npm run bundle`): a local builder's agent then starts in a third of the time its TypeScript
 * takes through tsx, on every cold and warm start. Made again at every start, so never stale;
 * without esbuild (an installation without dev dependencies) the agent's default command serves.
 */
async function bundleMachineAgent(dataDir: string): Promise<string[] | undefined> {
  const entry = path.join(__dirname, '..', 'machine', 'main.ts');
  if (!existsSync(entry)) return undefined;
  let esbuild: typeof import('esbuild');
  try {
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    esbuild = require('esbuild') as typeof import('esbuild');
  } catch {
    return undefined;
  }
  const outfile = path.join(dataDir, 'machine-agent.cjs');
  const tmp = `${outfile}.${process.pid}.tmp`;
  await esbuild.build({
    entryPoints: [entry],
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    external: ['@pulumi/pulumi'],
    logLevel: 'warning',
    outfile: tmp,
  });
  // Renamed into place, so a builder starting meanwhile never reads half a file.
  await rename(tmp, outfile);
  return [process.execPath, outfile];
}

export async function runDev(opts: DevOptions): Promise<void> {
  const dataDir = path.resolve(opts.dataDir);
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const unlock = await lockDataDir(dataDir);
  const logFile = path.join(dataDir, 'dev.log');
  const logger = opts.verbose
    ? pino({ level: 'info' })
    : pino({ level: 'info' }, pino.destination({ dest: logFile, mkdir: true, sync: false }));
  const agentDir = path.join(dataDir, 'agent');
  // esbuild works in its own process: the bundle is made while the control plane starts.
  const bundling = bundleMachineAgent(dataDir);
  bundling.catch(() => undefined);
  const cp = await startControlPlane({
    dataDir: path.join(dataDir, 'control-plane'),
    listen: opts.listen,
    logger: logger.child({ component: 'control-plane' }),
  });
  const stopping = new AbortController();
  const user = new ApiClient({ baseUrl: cp.url, userAgent: 'slipway-dev' });
  let agentRun: Promise<void> | undefined;
  try {
    const org = await ensureDevOrganization({
      db: cp.db,
      dataDir: path.join(dataDir, 'control-plane'),
      name: opts.organization,
    });
    const client = user.withToken(org.token);
    const { connection, token } = await ensureConnection(
      client,
      opts,
      path.join(agentDir, 'connection-token'),
    );
    await ensureProject(client, opts.project, connection.id);
    await client.close();

    const machineAgentCommand = await bundling;
    agentRun = runCloudAgent(
      {
        apiUrl: cp.url,
        connectionToken: token,
        dataDir: agentDir,
        secretsProvider: 'passphrase',
        driftCheckSeconds: 600,
        logLevel: 'info',
        ...(machineAgentCommand ? { machineAgentCommand } : {}),
      },
      { signal: stopping.signal, logger: logger.child({ component: 'cloud-agent' }) },
    );
    agentRun.catch(() => undefined);

    if (opts.exportFile) {
      await writePrivate(
        opts.exportFile,
        `SLIPWAY_API_URL=${cp.url}\nSLIPWAY_TOKEN=${org.token}\nSLIPWAY_PROJECT=${opts.project}\n`,
      );
    }
    opts.out.write(
      [
        'Slipway dev is running. Stop it with Ctrl-C.',
        `  control plane  ${cp.url}  (dashboard ${cp.url}/dashboard/)`,
        `  organization   ${org.organization.name}`,
        `  connection     ${connection.name} (${connection.id}), local builders, embedded cloud-agent`,
        `  project        ${opts.project}`,
        `  token          ${org.token}`,
        `  data           ${dataDir} (logs in ${opts.verbose ? 'this terminal' : logFile})`,
        '',
        'In another terminal:',
        `  export SLIPWAY_API_URL=${cp.url} SLIPWAY_TOKEN=${org.token} SLIPWAY_PROJECT=${opts.project}`,
        '  slipway build examples/hello',
        '',
      ].join('\n'),
    );

    // Runs until Ctrl-C, or until the agent stops on its own (a fatal error).
    await Promise.race([
      new Promise<void>((resolve) =>
        opts.signal.addEventListener('abort', () => resolve(), { once: true }),
      ),
      agentRun,
    ]);
  } finally {
    opts.out.write('stopping: cloud-agent');
    stopping.abort();
    const agentError = await agentRun?.then(
      () => undefined,
      (err: unknown) => err,
    );
    if (!opts.keepBuilders) {
      opts.out.write(', builders');
      await terminateProcessesUnder(machinesDir(agentDir), 15_000);
    }
    opts.out.write(', control plane\n');
    await user.close();
    await cp.close();
    logger.flush();
    await unlock();
    if (agentError && !opts.signal.aborted) {
      const message =
        agentError instanceof ApiError || agentError instanceof Error
          ? agentError.message
          : String(agentError);
      throw new CliError('agent_failed', `the cloud-agent stopped: ${message} (see ${logFile})`);
    }
  }
}
