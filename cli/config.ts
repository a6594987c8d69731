// Where the CLI finds its control plane URL, token and project: a flag, then the environment,
// then a slipway.json found by walking up from the build context, then the user config file
// written by `slipway login`. Each value is resolved on its own and remembers its source.
import { existsSync } from 'node:fs';
import { mkdir, readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { writeFileAtomic } from '../common/fs';
import { z } from 'zod';
import { nameSchema, tokenPattern } from '../common/protocol';
import { CliError } from './errors';

export const projectFileName = 'slipway.json';

/** slipway.json is committed with the code: it names the project, never a token. */
const projectFileSchema = z
  .object({
    project: z.union([nameSchema, z.string().regex(/^prj_[A-Za-z0-9]{8,40}$/)]),
    apiUrl: z.string().url().optional(),
  })
  .strict();

const userConfigSchema = z
  .object({
    apiUrl: z.string().url().optional(),
    token: z.string().regex(tokenPattern).optional(),
    project: z.string().optional(),
    caFile: z.string().optional(),
  })
  .strict();
export type UserConfig = z.infer<typeof userConfigSchema>;

export type Source = 'flag' | 'environment' | 'slipway.json' | 'user config' | 'default';

export interface Resolved<T> {
  value: T;
  source: Source;
}

export interface ResolvedConfig {
  apiUrl: Resolved<string>;
  token: Resolved<string> | undefined;
  project: Resolved<string> | undefined;
  caFile: string | undefined;
  projectFile: string | undefined;
}

export interface ConfigInputs {
  flags: { apiUrl?: string; token?: string; project?: string };
  env: NodeJS.ProcessEnv;
  /** Directory to start the slipway.json search from (the build context, or the cwd). */
  startDir: string;
}

export const defaultApiUrl = 'http://127.0.0.1:8080';

export function userConfigPath(env: NodeJS.ProcessEnv = process.env): string {
  if (env.SLIPWAY_CONFIG) return env.SLIPWAY_CONFIG;
  const base = env.XDG_CONFIG_HOME || path.join(homedir(), '.config');
  return path.join(base, 'slipway', 'config.json');
}

async function readJson<T>(file: string, schema: z.ZodType<T>, what: string): Promise<T> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    throw new CliError(
      'config_unreadable',
      `cannot read ${what} ${file}: ${(err as Error).message}`,
    );
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new CliError('config_invalid', `${what} ${file} is not valid JSON; fix or remove it`);
  }
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    const field = issue.path.join('.') || '(top level)';
    throw new CliError('config_invalid', `${what} ${file}: field "${field}" ${issue.message}`);
  }
  return parsed.data;
}

/** The nearest slipway.json at or above `dir`. */
export function findProjectFile(dir: string): string | undefined {
  let current = path.resolve(dir);
  for (;;) {
    const candidate = path.join(current, projectFileName);
    if (existsSync(candidate)) return candidate;
    const parent = path.dirname(current);
    if (parent === current) return undefined;
    current = parent;
  }
}

export async function readUserConfig(env: NodeJS.ProcessEnv = process.env): Promise<UserConfig> {
  const file = userConfigPath(env);
  if (!existsSync(file)) return {};
  return readJson(file, userConfigSchema, 'the user config');
}

/** Writes the user config atomically with mode 0600: it holds a token. */
export async function writeUserConfig(
  config: UserConfig,
  env: NodeJS.ProcessEnv = process.env,
): Promise<string> {
  const file = userConfigPath(env);
  await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
  await writeFileAtomic(file, JSON.stringify(userConfigSchema.parse(config), null, 2) + '\n');
  return file;
}

function pick<T>(...candidates: [T | undefined, Source][]): Resolved<T> | undefined {
  for (const [value, source] of candidates) {
    if (value !== undefined && value !== '') return { value, source };
  }
  return undefined;
}

export async function resolveConfig(inputs: ConfigInputs): Promise<ResolvedConfig> {
  const { flags, env } = inputs;
  const projectFile = findProjectFile(inputs.startDir);
  const fromFile = projectFile
    ? await readJson(projectFile, projectFileSchema, 'the project file')
    : undefined;
  const user = await readUserConfig(env);
  const apiUrl = pick<string>(
    [flags.apiUrl, 'flag'],
    [env.SLIPWAY_API_URL, 'environment'],
    [fromFile?.apiUrl, 'slipway.json'],
    [user.apiUrl, 'user config'],
  ) ?? { value: defaultApiUrl, source: 'default' as const };
  const token = pick<string>(
    [flags.token, 'flag'],
    [env.SLIPWAY_TOKEN, 'environment'],
    [user.token, 'user config'],
  );
  if (token && !tokenPattern.test(token.value)) {
    throw new CliError(
      'bad_token',
      `the token from the ${token.source} is not a Slipway token (swu_...); run \`slipway login\` or fix SLIPWAY_TOKEN`,
    );
  }
  const project = pick<string>(
    [flags.project, 'flag'],
    [env.SLIPWAY_PROJECT, 'environment'],
    [fromFile?.project, 'slipway.json'],
    [user.project, 'user config'],
  );
  try {
    new URL(apiUrl.value);
  } catch {
    throw new CliError(
      'bad_api_url',
      `the control plane URL from the ${apiUrl.source} is not a URL: ${apiUrl.value}`,
    );
  }
  return { apiUrl, token, project, caFile: env.SLIPWAY_CA_FILE || user.caFile, projectFile };
}

export function requireToken(config: ResolvedConfig): string {
  if (!config.token) {
    throw new CliError(
      'no_token',
      'no token: run `slipway login --api-url URL` (or `slipway dev`, which prints one), or set SLIPWAY_TOKEN',
    );
  }
  return config.token.value;
}

export function requireProject(config: ResolvedConfig): string {
  if (!config.project) {
    throw new CliError(
      'no_project',
      `no project: pass --project NAME, set SLIPWAY_PROJECT, or add {"project": "NAME"} to a ${projectFileName} next to your code`,
    );
  }
  return config.project.value;
}
