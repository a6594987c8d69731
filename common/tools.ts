// Where the engines Slipway drives live (built by `npm run tools`), and the environment every
// Pulumi engine process gets: our tools first on PATH, no update checks, no plugin downloads.
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import path from 'node:path';

/** moto_server (the EC2 emulator the AWS tests run) and hadolint come from PyPI (scripts/tools.sh). */
export type ToolName = 'pulumi' | 'buildkitd' | 'buildctl' | 'moto_server' | 'hadolint';

export class ToolMissingError extends Error {
  readonly code = 'tool_missing';
  constructor(tool: string, where: string) {
    super(`${tool} was not found at ${where}; run \`npm run tools\` to build it`);
  }
}

/** The per-user tools cache; `SLIPWAY_TOOLS_DIR` overrides it (scripts/tools.sh agrees). */
export function toolsDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SLIPWAY_TOOLS_DIR) return env.SLIPWAY_TOOLS_DIR;
  const cache = env.XDG_CACHE_HOME || path.join(homedir(), '.cache');
  return path.join(cache, 'slipway', 'tools');
}

export function toolsBinDir(env: NodeJS.ProcessEnv = process.env): string {
  return path.join(toolsDir(env), 'bin');
}

export function toolPath(tool: ToolName, env: NodeJS.ProcessEnv = process.env): string {
  const file = path.join(toolsBinDir(env), tool);
  if (!existsSync(file)) throw new ToolMissingError(tool, file);
  return file;
}

/** The folder of the installed @pulumi/pulumi package, where `pulumi-resource-pulumi-nodejs` ships. */
export function pulumiNodeSdkDir(): string {
  return path.dirname(require.resolve('@pulumi/pulumi/package.json'));
}

/**
 * Our launcher of the dynamic-provider plugin (pulumi-plugin/), ahead of the SDK's on the
 * engine's PATH: it starts in about half the time. Absent where this file is bundled.
 */
const launcherDir = path.join(__dirname, 'pulumi-plugin');
/** Our launcher's folder when it is there (it is fixed for an installation: checked once). */
const pluginLauncherDir = existsSync(path.join(launcherDir, 'pulumi-resource-pulumi-nodejs'))
  ? launcherDir
  : undefined;

/**
 * Where the engine should take `pulumi-resource-pulumi-nodejs` from: our launcher when this file
 * runs from source, else the SDK's own.
 */
export function dynamicProviderPluginDir(): string {
  return pluginLauncherDir ?? pulumiNodeSdkDir();
}

/**
 * Environment for the Pulumi CLI and the plugins it starts. The dynamic-provider plugin script
 * resolves `@pulumi/pulumi` from its working directory, which is a stack's work directory outside
 * this tree, so NODE_PATH points at the node_modules that holds it.
 */
export function engineEnv(base: NodeJS.ProcessEnv = process.env): Record<string, string> {
  const sdkDir = pulumiNodeSdkDir();
  const nodeModules = path.resolve(sdkDir, '..', '..');
  const env: Record<string, string> = {};
  for (const [k, v] of Object.entries(base)) if (v !== undefined) env[k] = v;
  env.PATH = [
    toolsBinDir(base),
    pluginLauncherDir ?? '',
    sdkDir,
    path.dirname(process.execPath),
    base.PATH ?? '',
  ]
    .filter(Boolean)
    .join(path.delimiter);
  env.SLIPWAY_DYNAMIC_PROVIDER = require.resolve('@pulumi/pulumi/cmd/dynamic-provider');
  env.NODE_PATH = [nodeModules, base.NODE_PATH ?? ''].filter(Boolean).join(path.delimiter);
  env.PULUMI_SKIP_UPDATE_CHECK = 'true';
  env.PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION = 'true';
  return env;
}
