// Turns `docker buildx build`-style flags into a validated build spec, and a spec into the
// buildctl command line for one platform's builder. Pure functions: tested on their own.
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { hostPlatform, platforms, type Platform } from '../common/protocol';
import { CliError } from './errors';

export type ProgressMode = 'auto' | 'plain' | 'tty' | 'quiet';

export interface BuildFlags {
  file?: string;
  tag: string[];
  platform: string[];
  buildArg: string[];
  target?: string;
  output: string[];
  progress: string;
  cache: boolean; // commander's --no-cache sets this to false
  secret: string[];
  push?: boolean;
}

export interface OutputSpec {
  /** buildctl's --output value, e.g. type=oci,dest=/abs/out.tar */
  attrs: Record<string, string>;
}

export interface BuildSpec {
  contextDir: string;
  dockerfileDir: string;
  dockerfileName: string;
  platforms: Platform[];
  tags: string[];
  buildArgs: Record<string, string>;
  target?: string;
  outputs: OutputSpec[];
  progress: ProgressMode;
  noCache: boolean;
  secrets: string[];
}

const shortPlatforms: Record<string, Platform> = {
  amd64: 'linux/amd64',
  'linux/amd64': 'linux/amd64',
  'linux/x86_64': 'linux/amd64',
  arm64: 'linux/arm64',
  'linux/arm64': 'linux/arm64',
  'linux/arm64/v8': 'linux/arm64',
  'linux/aarch64': 'linux/arm64',
};

function parsePlatforms(values: string[]): Platform[] {
  const list = values
    .flatMap((v) => v.split(','))
    .map((v) => v.trim())
    .filter(Boolean);
  if (list.length === 0) return [hostPlatform() ?? 'linux/amd64'];
  const out: Platform[] = [];
  for (const item of list) {
    const platform = shortPlatforms[item.toLowerCase()];
    if (!platform) {
      throw new CliError(
        'bad_platform',
        `--platform ${item} is not supported; use one of ${platforms.join(', ')}`,
      );
    }
    if (!out.includes(platform)) out.push(platform);
  }
  return out;
}

function parseBuildArgs(values: string[], env: NodeJS.ProcessEnv): Record<string, string> {
  const args: Record<string, string> = {};
  for (const item of values) {
    const eq = item.indexOf('=');
    const key = eq === -1 ? item : item.slice(0, eq);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new CliError(
        'bad_build_arg',
        `--build-arg ${item}: "${key}" is not a valid argument name`,
      );
    }
    if (eq === -1) {
      // Like docker: a bare name takes its value from the environment, or is skipped.
      const fromEnv = env[key];
      if (fromEnv !== undefined) args[key] = fromEnv;
    } else {
      args[key] = item.slice(eq + 1);
    }
  }
  return args;
}

/** Parses one --output value: `type=oci,dest=out.tar`, or a bare path meaning type=local. */
export function parseOutput(value: string, cwd: string): OutputSpec {
  if (value === '-') {
    throw new CliError(
      'bad_output',
      '--output -: writing to stdout is not supported; give a file or directory',
    );
  }
  const attrs: Record<string, string> = {};
  if (!value.includes('=')) {
    attrs.type = 'local';
    attrs.dest = path.resolve(cwd, value);
    return { attrs };
  }
  for (const part of value.split(',')) {
    const eq = part.indexOf('=');
    if (eq <= 0) throw new CliError('bad_output', `--output ${value}: "${part}" is not key=value`);
    attrs[part.slice(0, eq).trim()] = part.slice(eq + 1).trim();
  }
  const type = attrs.type;
  const known = ['local', 'tar', 'oci', 'docker', 'image', 'registry'];
  if (!type || !known.includes(type)) {
    throw new CliError('bad_output', `--output ${value}: type must be one of ${known.join(', ')}`);
  }
  if (type === 'registry') {
    attrs.type = 'image';
    attrs.push = 'true';
  }
  if (['local', 'tar', 'oci', 'docker'].includes(attrs.type!)) {
    if (!attrs.dest)
      throw new CliError('bad_output', `--output ${value}: type=${type} needs dest=PATH`);
    attrs.dest = path.resolve(cwd, attrs.dest);
  }
  return { attrs };
}

export function parseBuildFlags(
  contextArg: string | undefined,
  flags: BuildFlags,
  cwd: string,
  env: NodeJS.ProcessEnv,
): BuildSpec {
  const contextDir = path.resolve(cwd, contextArg ?? '.');
  if (!existsSync(contextDir) || !statSync(contextDir).isDirectory()) {
    throw new CliError('bad_context', `build context ${contextDir} is not a directory`);
  }
  const dockerfile = flags.file
    ? path.resolve(cwd, flags.file)
    : path.join(contextDir, 'Dockerfile');
  if (!existsSync(dockerfile) || !statSync(dockerfile).isFile()) {
    throw new CliError(
      'no_dockerfile',
      flags.file
        ? `--file ${flags.file}: no such file`
        : `no Dockerfile in ${contextDir}; pass -f/--file PATH`,
    );
  }
  const progress = flags.progress as ProgressMode;
  if (!['auto', 'plain', 'tty', 'quiet'].includes(progress)) {
    throw new CliError(
      'bad_progress',
      `--progress ${flags.progress}: use auto, plain, tty or quiet`,
    );
  }
  for (const tag of flags.tag) {
    if (!/^[a-z0-9]+([._/:@-][A-Za-z0-9_.-]+)*$/.test(tag) || tag.length > 255) {
      throw new CliError('bad_tag', `-t ${tag} is not a valid image reference`);
    }
  }
  for (const secret of flags.secret) {
    if (!/(^|,)id=[^,]+/.test(secret)) {
      throw new CliError(
        'bad_secret',
        `--secret ${secret}: needs id=NAME (and src=FILE or env=VAR)`,
      );
    }
  }
  const outputs = flags.output.map((o) => parseOutput(o, cwd));
  if (flags.push) outputs.push({ attrs: { type: 'image', push: 'true' } });
  for (const out of outputs) {
    if (out.attrs.type === 'image' && !out.attrs.name && flags.tag.length === 0) {
      throw new CliError('bad_output', 'pushing an image needs a name: add -t REGISTRY/NAME:TAG');
    }
  }
  return {
    contextDir,
    dockerfileDir: path.dirname(dockerfile),
    dockerfileName: path.basename(dockerfile),
    platforms: parsePlatforms(flags.platform),
    tags: flags.tag,
    buildArgs: parseBuildArgs(flags.buildArg, env),
    target: flags.target,
    outputs,
    progress,
    noCache: !flags.cache,
    secrets: flags.secret,
  };
}

/** With several platforms, each builder writes its own file or directory: out.tar -> out.linux-arm64.tar */
export function destForPlatform(dest: string, platform: Platform, platformCount: number): string {
  if (platformCount <= 1) return dest;
  const suffix = platform.replace('/', '-');
  const ext = path.extname(dest);
  return ext ? `${dest.slice(0, -ext.length)}.${suffix}${ext}` : `${dest}.${suffix}`;
}

export interface BuilderConnection {
  endpoint: string;
  serverName: string;
  caFile: string;
  certFile: string;
  keyFile: string;
}

export function buildctlArgs(
  spec: BuildSpec,
  platform: Platform,
  builder: BuilderConnection,
  progress: 'auto' | 'plain' | 'tty' | 'quiet',
): string[] {
  const args = [
    '--addr',
    builder.endpoint,
    '--tlsservername',
    builder.serverName,
    '--tlscacert',
    builder.caFile,
    '--tlscert',
    builder.certFile,
    '--tlskey',
    builder.keyFile,
    'build',
    '--frontend',
    'dockerfile.v0',
    '--local',
    `context=${spec.contextDir}`,
    '--local',
    `dockerfile=${spec.dockerfileDir}`,
    '--opt',
    `filename=${spec.dockerfileName}`,
    '--opt',
    `platform=${platform}`,
    '--progress',
    progress,
  ];
  if (spec.target) args.push('--opt', `target=${spec.target}`);
  for (const [k, v] of Object.entries(spec.buildArgs)) args.push('--opt', `build-arg:${k}=${v}`);
  if (spec.noCache) args.push('--no-cache');
  for (const s of spec.secrets) args.push('--secret', s);
  for (const out of spec.outputs) {
    const attrs = { ...out.attrs };
    if (attrs.dest) attrs.dest = destForPlatform(attrs.dest, platform, spec.platforms.length);
    if (!attrs.name && spec.tags.length && ['image', 'oci', 'docker'].includes(attrs.type!)) {
      attrs.name = spec.tags.join(',');
    }
    const value = Object.entries(attrs)
      .map(([k, v]) => (v.includes(',') ? `"${k}=${v}"` : `${k}=${v}`))
      .join(',');
    args.push('--output', value);
  }
  return args;
}
