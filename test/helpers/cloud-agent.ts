// The cloud-agent as its own process (agent/main.ts through tsx, or a bundle), on a data
// directory that outlives it, so tests can stop it, kill it with SIGKILL mid-update and start it
// again. The local machines it starts are detached on purpose; the teardown ends them (every
// process working under the data directory) before the directory is removed.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type { ExecutionContext } from 'ava';
import type { ApiClient } from '../../common/api';
import type { Builder } from '../../common/protocol';
import { waitFor } from '../../common/wait';
import { machineLogFile } from '../../automation/local/provider-impl';
import { terminateProcessesUnder } from '../../automation/local/processes';
import { cloudAgentEnv } from '../../common/protocol';
import { buildCsr } from './control-plane';
import { tempDir } from './tmp';

const repoRoot = path.resolve(__dirname, '..', '..');

export interface AgentProcess {
  child: ChildProcess;
  /** Its log (pino JSON lines) so far. */
  output(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export interface AgentSettings {
  apiUrl: string;
  connectionToken: string;
  dataDir: string;
  env?: Record<string, string>;
  /** The agent's argv after node, and its working directory; default: agent/main.ts via tsx. */
  args?: string[];
  cwd?: string;
}

/** Started in its own process group, so a test can also kill it with the engine it runs. */
export function startAgentProcess(settings: AgentSettings): AgentProcess {
  const tsx = pathToFileURL(require.resolve('tsx')).href;
  const args = settings.args ?? [`--import=${tsx}`, path.join(repoRoot, 'agent/main.ts')];
  const child = spawn(process.execPath, args, {
    cwd: settings.cwd ?? repoRoot,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env,
      [cloudAgentEnv.apiUrl]: settings.apiUrl,
      [cloudAgentEnv.connectionToken]: settings.connectionToken,
      [cloudAgentEnv.dataDir]: settings.dataDir,
      [cloudAgentEnv.logLevel]: 'debug',
      ...settings.env,
    },
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const exited = once(child, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }));
  return { child, output: () => out, exited };
}

/** Stops an agent process if it still runs: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopAgentProcess(agent: AgentProcess, graceMs = 30_000) {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return agent.exited;
  agent.child.kill('SIGTERM');
  const timer = setTimeout(() => agent.child.kill('SIGKILL'), graceMs);
  try {
    return await agent.exited;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Registers the end of everything the agents of this test leave running under `dataDir`:
 * machine-agents (with their buildkitd) and engine processes. On failure, their logs are shown.
 */
export function cleanUpLocalFleet(
  t: ExecutionContext,
  dataDir: string,
  agents: () => AgentProcess[],
): void {
  t.teardown(async () => {
    for (const agent of agents()) await stopAgentProcess(agent, 10_000);
    if (!t.passed) {
      for (const agent of agents()) t.log(`cloud-agent log:\n${agent.output().slice(-20_000)}`);
      const machines = path.join(dataDir, 'machines');
      for (const id of existsSync(machines) ? readdirSync(machines) : []) {
        const log = path.join(machines, id, machineLogFile);
        if (existsSync(log)) t.log(`${id} log:\n${readFileSync(log, 'utf8').slice(-10_000)}`);
      }
    }
    await terminateProcessesUnder(dataDir, 40_000);
  });
}

/**
 * A data directory of this test's own and the agents it starts on it, all ended (with every
 * process they left under the directory) when the test ends.
 */
export async function localAgents(
  t: ExecutionContext,
  base: Omit<AgentSettings, 'dataDir'>,
  prefix = 'agent',
) {
  const dataDir = await tempDir(t, prefix);
  const agents: AgentProcess[] = [];
  cleanUpLocalFleet(t, dataDir, () => agents);
  const start = (settings: Partial<AgentSettings> = {}): AgentProcess => {
    const agent = startAgentProcess({ ...base, dataDir, ...settings });
    agents.push(agent);
    return agent;
  };
  return { dataDir, start };
}

/**
 * Waits until the connection's agent has reported a successful apply of the current fleet
 * generation: a builder can be ready before the update that started it has finished.
 */
export async function agentCaughtUp(user: ApiClient, connectionId: string, timeoutMs = 120_000) {
  await waitFor(
    async () => {
      const c = await user.call('getConnection', { params: { connectionId } });
      return c.agent?.lastApplyResult === 'succeeded' && c.agent.appliedGeneration === c.generation;
    },
    { timeoutMs, what: `the agent of ${connectionId} to apply the current fleet` },
  );
}

/** Asks for a linux/amd64 builder for `project`, as `slipway build` does. */
export async function requestBuilder(user: ApiClient, project: string) {
  const { csr } = await buildCsr();
  return user.call('createBuild', {
    body: { project, platforms: [{ platform: 'linux/amd64', csr }] },
  });
}

/** Long-polls the build's builder until it is ready; fails with its last reason. */
export async function builderReady(
  user: ApiClient,
  buildId: string,
  timeoutMs: number,
): Promise<Builder> {
  let last: Builder | undefined;
  return waitFor(
    async () => {
      last = await user.call('waitBuilder', {
        params: { buildId },
        query: { platform: 'linux/amd64', wait: 20 },
      });
      if (last.state === 'failed') throw new Error(`builder failed: ${last.reason}`);
      return last.state === 'ready' ? last : undefined;
    },
    { timeoutMs, what: `the builder of ${buildId} (last: ${last?.reason})` },
  );
}
