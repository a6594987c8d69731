// The real machine-agent as a process (`node --import tsx machine/main.ts`), started the way the
// local provider starts it, and the CLI's side of a build: wait for the builder, write the build's
// key and certificates, run buildctl against the builder's mTLS listener.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, open, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import type { ApiClient } from '../../common/api';
import * as pki from '../../common/pki';
import type { Builder } from '../../common/protocol';
import { waitFor } from '../../common/wait';
import type { BuildkitTarget, ClientFiles } from './mtls-buildkitd';

const root = path.join(__dirname, '..', '..');

export interface AgentSettings {
  apiUrl: string;
  machineId: string;
  registrationToken: string;
  stateDir: string;
  volumesDir: string;
  buildkitPort: number;
}

export function agentEnv(s: AgentSettings): NodeJS.ProcessEnv {
  return {
    PATH: process.env.PATH,
    HOME: process.env.HOME,
    SLIPWAY_TOOLS_DIR: process.env.SLIPWAY_TOOLS_DIR,
    SLIPWAY_API_URL: s.apiUrl,
    SLIPWAY_MACHINE_ID: s.machineId,
    SLIPWAY_REGISTRATION_TOKEN: s.registrationToken,
    SLIPWAY_PROVIDER: 'local',
    SLIPWAY_PLATFORM: 'linux/amd64',
    SLIPWAY_STATE_DIR: s.stateDir,
    SLIPWAY_VOLUMES_DIR: s.volumesDir,
    SLIPWAY_LISTEN_HOST: '127.0.0.1',
    SLIPWAY_BUILDKIT_PORT: String(s.buildkitPort),
    SLIPWAY_LOG_LEVEL: 'debug',
  };
}

const agentArgs = ['--import', 'tsx', path.join(root, 'machine', 'main.ts')];

export interface AgentProcess {
  pid: number;
  logFile: string;
  log(): Promise<string>;
  /** Whether the process still runs (a zombie left for init counts as ended). */
  running(): Promise<boolean>;
}

export interface ChildAgent extends AgentProcess {
  child: ChildProcess;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

async function isRunning(pid: number): Promise<boolean> {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => '');
  // The state follows the command name in parentheses; Z is a zombie nobody reaped yet.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return stat !== '' && state !== 'Z' && state !== 'X';
}

function withLog(pid: number, logFile: string): AgentProcess {
  return {
    pid,
    logFile,
    log: () => readFile(logFile, 'utf8').catch(() => ''),
    running: () => isRunning(pid),
  };
}

/**
 * Stops an agent the test started if it still runs, and waits for it to end; a buildkitd it
 * left behind (if it had to be killed) is stopped too, by the pid file in its state directory.
 */
function stopAtTeardown(t: ExecutionContext, agent: AgentProcess, env: NodeJS.ProcessEnv) {
  t.teardown(async () => {
    if (await agent.running()) {
      process.kill(agent.pid, 'SIGTERM');
      await waitFor(async () => !(await agent.running()), {
        timeoutMs: 60_000,
        what: `machine-agent ${agent.pid} to stop`,
      }).catch(() => process.kill(agent.pid, 'SIGKILL'));
    }
    const pidFile = path.join(env.SLIPWAY_STATE_DIR!, 'buildkit', 'buildkitd.pid');
    const buildkitd = Number((await readFile(pidFile, 'utf8').catch(() => '')).trim());
    const cmdline = await readFile(`/proc/${buildkitd}/cmdline`, 'utf8').catch(() => '');
    if (buildkitd && cmdline.includes('buildkitd') && (await isRunning(buildkitd))) {
      process.kill(buildkitd, 'SIGKILL');
    }
  });
}

/** The agent as a direct child, for tests that need its exit status. */
export async function startAgentChild(
  t: ExecutionContext,
  env: NodeJS.ProcessEnv,
  logFile: string,
): Promise<ChildAgent> {
  await mkdir(path.dirname(logFile), { recursive: true });
  const out = await open(logFile, 'a');
  const child = spawn(process.execPath, agentArgs, {
    env,
    cwd: root,
    stdio: ['ignore', out.fd, out.fd],
  });
  await out.close();
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  const agent = { ...withLog(child.pid!, logFile), child, exited };
  stopAtTeardown(t, agent, env);
  return agent;
}

/**
 * The agent as the local provider starts it: by a parent that spawns it detached, with its
 * output in a file, and exits at once. The agent must carry on without it.
 */
export async function startAgentDetached(
  t: ExecutionContext,
  env: NodeJS.ProcessEnv,
  logFile: string,
): Promise<AgentProcess> {
  await mkdir(path.dirname(logFile), { recursive: true });
  const launcher = `
    const { spawn } = require('node:child_process');
    const fs = require('node:fs');
    const out = fs.openSync(${JSON.stringify(logFile)}, 'a');
    const child = spawn(process.execPath, ${JSON.stringify(agentArgs)}, {
      env: process.env, cwd: ${JSON.stringify(root)}, detached: true, stdio: ['ignore', out, out],
    });
    child.unref();
    process.stdout.write(String(child.pid));
  `;
  const parent = spawn(process.execPath, ['-e', launcher], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let pid = '';
  parent.stdout!.on('data', (chunk: Buffer) => (pid += chunk.toString()));
  const [code] = (await once(parent, 'exit')) as [number | null];
  if (code !== 0 || !pid) throw new Error(`the launcher failed with code ${code}`);
  const agent = withLog(Number(pid), logFile);
  stopAtTeardown(t, agent, env);
  return agent;
}

/** The CLI's long-poll for one platform's builder, until it is ready (or failed). */
export async function waitForBuilder(
  user: ApiClient,
  buildId: string,
  timeoutMs = 180_000,
): Promise<Builder> {
  const deadline = performance.now() + timeoutMs;
  for (;;) {
    const builder = await user.call('waitBuilder', {
      params: { buildId },
      query: { platform: 'linux/amd64', wait: 25 },
    });
    if (builder.state !== 'pending') return builder;
    if (performance.now() > deadline) {
      throw new Error(`builder still pending after ${timeoutMs} ms: ${builder.reason}`);
    }
  }
}

/** The build's key and the certificates its ready builder came with, as buildctl reads them. */
export async function buildClient(
  dir: string,
  keys: pki.KeyPair,
  builder: Builder,
): Promise<{ target: BuildkitTarget; client: ClientFiles }> {
  await mkdir(dir, { recursive: true });
  const client = {
    caFile: path.join(dir, 'ca.pem'),
    certFile: path.join(dir, 'cert.pem'),
    keyFile: path.join(dir, 'key.pem'),
  };
  await writeFile(client.caFile, builder.caCertificate!);
  await writeFile(client.certFile, builder.clientCertificate!);
  await writeFile(client.keyFile, await pki.privateKeyToPem(keys.privateKey), { mode: 0o600 });
  return {
    target: { address: builder.endpoint!, serverName: builder.serverName!, caFile: client.caFile },
    client,
  };
}
