// What the local fleet's dynamic resources do, run inside the Pulumi engine's provider process
// (loaded there by automation/local/provider.ts). A machine is a detached machine-agent process
// whose working directory is its state directory; a volume is a directory. Every operation is
// idempotent, so a create repeated after a crash adopts what the first one left behind.
import { spawn } from 'node:child_process';
import {
  closeSync,
  existsSync,
  mkdirSync,
  openSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import type * as dynamic from '@pulumi/pulumi/dynamic';
import { freePort } from '../../common/net';
import { processesUnder, terminateProcessesUnder } from './processes';

export type MachinePowerState = 'running' | 'stopped';

/** Inputs of a local machine resource; the registration token arrives as a Pulumi secret. */
export interface LocalMachineInputs {
  machineId: string;
  platform: string;
  state: MachinePowerState;
  stateDir: string;
  volumesDir: string;
  apiUrl: string;
  /** Needed by a machine that has not registered yet; later starts reuse the stored one. */
  registrationToken: string | null;
  controlPlaneCaFile: string | null;
}

export interface LocalMachineOutputs extends LocalMachineInputs {
  /** BuildKit's port on 127.0.0.1, chosen once so a restarted machine keeps its endpoint. */
  port: number;
}

export interface LocalVolumeInputs {
  volumeId: string;
  projectId: string;
  platform: string;
  sizeGb: number;
  path: string;
}

/**
 * The engine's environment (set by automation/local/index.ts) says how to start a machine-agent,
 * so the state holds no paths of one installation and an upgraded agent starts its own.
 */
export const machineAgentCommandEnv = 'SLIPWAY_MACHINE_AGENT_COMMAND';
/** Of the provider process's environment, only these reach a machine-agent. */
const inheritedEnv = ['PATH', 'HOME', 'SLIPWAY_TOOLS_DIR', 'TMPDIR'];

/** A machine-agent stops BuildKit and exits within 30 s of SIGTERM; then it is killed. */
const stopGraceMs = 40_000;
/** Written by the provider into the state directory; the machine-agent owns everything else. */
const placementFile = 'local-machine.json';
export const machineLogFile = 'machine-agent.log';

class LocalProviderError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}

async function placement(stateDir: string): Promise<{ port: number }> {
  const file = path.join(stateDir, placementFile);
  if (existsSync(file)) return JSON.parse(readFileSync(file, 'utf8')) as { port: number };
  const chosen = { port: await freePort('127.0.0.1') };
  writeFileSync(file, JSON.stringify(chosen), { mode: 0o600 });
  return chosen;
}

function machineAgentCommand(): [string, ...string[]] {
  let argv: unknown;
  try {
    argv = JSON.parse(process.env[machineAgentCommandEnv] ?? '');
  } catch {
    argv = undefined;
  }
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) {
    throw new LocalProviderError(
      'invalid_machine_agent_command',
      `${machineAgentCommandEnv} must be a JSON array of strings (the machine-agent's argv)`,
    );
  }
  return argv as [string, ...string[]];
}

function startMachineAgent(inputs: LocalMachineInputs, port: number, token: string | null): void {
  if (processesUnder(inputs.stateDir).length > 0) return; // already running: adopt it
  if (!token) {
    throw new LocalProviderError(
      'missing_registration_token',
      `machine ${inputs.machineId} has no registration token; the control plane sends one until the machine registers`,
    );
  }
  const [file, ...args] = machineAgentCommand();
  const log = openSync(path.join(inputs.stateDir, machineLogFile), 'a', 0o600);
  try {
    const env: Record<string, string> = {};
    for (const name of inheritedEnv) {
      const value = process.env[name];
      if (value !== undefined) env[name] = value;
    }
    Object.assign(env, {
      SLIPWAY_API_URL: inputs.apiUrl,
      SLIPWAY_MACHINE_ID: inputs.machineId,
      SLIPWAY_REGISTRATION_TOKEN: token,
      SLIPWAY_PROVIDER: 'local',
      SLIPWAY_PLATFORM: inputs.platform,
      SLIPWAY_STATE_DIR: inputs.stateDir,
      SLIPWAY_LISTEN_HOST: '127.0.0.1',
      SLIPWAY_ADVERTISE_HOST: '127.0.0.1',
      SLIPWAY_BUILDKIT_PORT: String(port),
      SLIPWAY_VOLUMES_DIR: inputs.volumesDir,
    });
    if (inputs.controlPlaneCaFile) env.SLIPWAY_CONTROL_PLANE_CA_FILE = inputs.controlPlaneCaFile;
    // Detached (its own session): it outlives the engine and the agent. Its working directory
    // is how it is found again (automation/local/processes.ts).
    const child = spawn(file, args, {
      cwd: inputs.stateDir,
      detached: true,
      stdio: ['ignore', log, log],
      env,
    });
    child.on('error', () => undefined); // a failed exec shows as a machine that never registers
    child.unref();
  } finally {
    closeSync(log);
  }
}

function machineOutputs(inputs: LocalMachineInputs, port: number): LocalMachineOutputs {
  return { ...inputs, port };
}

export const machine: dynamic.ResourceProvider<LocalMachineInputs, LocalMachineOutputs> = {
  async diff(_id, olds, news) {
    const replaces = (['machineId', 'platform', 'stateDir'] as const).filter(
      (k) => olds[k] !== news[k],
    );
    // The token, command, environment and control plane address only matter at the next start.
    return {
      changes: replaces.length > 0 || olds.state !== news.state,
      replaces,
      deleteBeforeReplace: true,
    };
  },

  async create(inputs) {
    mkdirSync(inputs.stateDir, { recursive: true, mode: 0o700 });
    const { port } = await placement(inputs.stateDir);
    if (inputs.state === 'running') startMachineAgent(inputs, port, inputs.registrationToken);
    return { id: inputs.machineId, outs: machineOutputs(inputs, port) };
  },

  async read(id, props) {
    if (!props || !existsSync(props.stateDir)) return {};
    const state: MachinePowerState =
      processesUnder(props.stateDir).length > 0 ? 'running' : 'stopped';
    return { id, props: { ...props, state } };
  },

  async update(_id, olds, news) {
    const port = olds.port;
    if (news.state === 'stopped') {
      await terminateProcessesUnder(news.stateDir, stopGraceMs);
    } else {
      mkdirSync(news.stateDir, { recursive: true, mode: 0o700 });
      startMachineAgent(news, port, news.registrationToken ?? olds.registrationToken);
    }
    // Keep the token the machine was created with: a restart still needs one to pass validation.
    const registrationToken = news.registrationToken ?? olds.registrationToken;
    return { outs: machineOutputs({ ...news, registrationToken }, port) };
  },

  async delete(_id, props) {
    await terminateProcessesUnder(props.stateDir, stopGraceMs);
    rmSync(props.stateDir, { recursive: true, force: true });
  },
};

export const volume: dynamic.ResourceProvider<LocalVolumeInputs, LocalVolumeInputs> = {
  async diff(_id, olds, news) {
    const replaces = (['volumeId', 'path'] as const).filter((k) => olds[k] !== news[k]);
    return { changes: replaces.length > 0, replaces, deleteBeforeReplace: true };
  },

  async create(inputs) {
    mkdirSync(inputs.path, { recursive: true, mode: 0o700 });
    return { id: inputs.volumeId, outs: inputs };
  },

  async read(id, props) {
    if (!props || !existsSync(props.path)) return {};
    return { id, props };
  },

  async delete(_id, props) {
    rmSync(props.path, { recursive: true, force: true });
  },
};
