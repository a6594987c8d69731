// The local provider: builders are machine-agent processes on this host, cache volumes are
// directories, all under the agent's data directory and converged by the same stack code as AWS.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { dynamicProviderPluginDir, toolsDir } from '../../common/tools';
import { inventoryOf, type FleetProvider } from '../provider';
import { observeLocal, removeLocalOrphans } from './observe';
import { localFleetProgram } from './program';
import { LocalMachine, LocalVolume, providerModuleEnv, providerModulePath } from './provider';
import { machineAgentCommandEnv } from './provider-impl';
import { hostPlatform } from '../../common/protocol';
import { localFleetSpec } from './spec';

export interface LocalProviderOptions {
  dataDir: string;
  /** argv that starts a machine-agent; defaults to this installation's. */
  machineAgentCommand?: string[];
  /** PEM file the machine-agents trust for the control plane's HTTPS. */
  controlPlaneCaFile?: string | null;
}

/** This installation's machine-agent: the TypeScript source through tsx, or the bundle. */
export function defaultMachineAgentCommand(): string[] {
  if (__filename.endsWith('.ts')) {
    const tsx = pathToFileURL(require.resolve('tsx')).href;
    return [process.execPath, `--import=${tsx}`, path.resolve(__dirname, '../../machine/main.ts')];
  }
  return [process.execPath, path.join(__dirname, 'machine-agent.cjs')];
}

export function createLocalProvider(opts: LocalProviderOptions): FleetProvider {
  const dataDir = path.resolve(opts.dataDir);
  const command = opts.machineAgentCommand ?? defaultMachineAgentCommand();
  const host = hostPlatform();
  return {
    kind: 'local',
    engineEnv: {
      [providerModuleEnv]: providerModulePath(),
      [machineAgentCommandEnv]: JSON.stringify(command),
      SLIPWAY_TOOLS_DIR: toolsDir(),
    },
    // The dynamic-provider plugin: our launcher, or the SDK's from the @pulumi/pulumi it runs.
    plugins: [
      {
        name: 'pulumi-nodejs',
        dir: dynamicProviderPluginDir(),
        install: 'npm ci (it ships in @pulumi/pulumi)',
      },
    ],
    program(fleet, ctx) {
      const spec = localFleetSpec(fleet, host);
      return {
        program: localFleetProgram(spec, {
          dataDir,
          controlPlaneUrl: ctx.controlPlaneUrl,
          controlPlaneCaFile: opts.controlPlaneCaFile ?? null,
        }),
        capacityFailures: spec.capacityFailures,
      };
    },
    inventory: (resources) =>
      inventoryOf(resources, {
        machine: LocalMachine.resourceType,
        volume: LocalVolume.resourceType,
      }),
    capacityFailures: () => [],
    observe: async () => observeLocal(dataDir),
    removeOrphans: (stack) => removeLocalOrphans(dataDir, stack),
  };
}
