// The cloud-agent's configuration: the SLIPWAY_* environment (cloudAgentEnv), or a JSON file
// given with --config and overridden by the environment. It is validated once; every problem
// is listed with the variable or field to blame and what to set, and the token is never echoed.
import { readFile } from 'node:fs/promises';
import { cloudAgentConfigSchema, cloudAgentEnv, type CloudAgentConfig } from '../common/protocol';

type Field = keyof CloudAgentConfig;

export class AgentConfigError extends Error {
  readonly code = 'invalid_config';
}

/** What to set, per field, when it is missing or wrong. */
const fixes: Record<Field, string> = {
  apiUrl: 'set it to the control plane URL, e.g. https://slipway.example.com',
  connectionToken: 'set it to the token shown once when the connection was created (swc_...)',
  dataDir: 'set it to a directory the agent owns, e.g. /var/lib/slipway-agent',
  controlPlaneCaFile: "set it to a PEM file with the CA of the control plane's certificate",
  stateBackend: 'leave it unset for a file backend, or set s3://<bucket>?region=<region>',
  secretsProvider: 'set passphrase, or awskms://<key id or alias>?region=<region>',
  statePassphrase: 'set at least 16 characters, or leave it unset to generate one',
  driftCheckSeconds: 'set a number of seconds between 0 (never) and 86400',
  machineAgentCommand:
    'set a JSON array such as ["/usr/bin/node","/opt/slipway/machine-agent.cjs"]',
  ec2Endpoint: 'leave it unset for AWS itself, or set the URL of an EC2-compatible endpoint',
  logLevel: 'set trace, debug, info, warn or error',
};

/** Values from the environment, parsed where a field is not a string. */
function fromEnv(env: NodeJS.ProcessEnv, problems: string[]): Record<string, unknown> {
  const raw: Record<string, unknown> = {};
  for (const [field, variable] of Object.entries(cloudAgentEnv) as [Field, string][]) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    if (field === 'machineAgentCommand') {
      try {
        raw[field] = JSON.parse(value);
      } catch {
        problems.push(`${variable}: is not JSON; ${fixes[field]}`);
      }
      continue;
    }
    raw[field] = value;
  }
  return raw;
}

async function fromFile(file: string): Promise<Record<string, unknown>> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new AgentConfigError(
      `cannot read the configuration file ${file} (${why}); check --config`,
    );
  }
  try {
    const raw: unknown = JSON.parse(text);
    if (raw && typeof raw === 'object' && !Array.isArray(raw))
      return raw as Record<string, unknown>;
  } catch (err) {
    throw new AgentConfigError(`${file} is not valid JSON: ${(err as Error).message}`);
  }
  throw new AgentConfigError(`${file} must hold a JSON object of configuration fields`);
}

/**
 * The configuration from `file` (if given) with the environment on top. Throws an
 * AgentConfigError listing every problem; the environment variable is named when it supplied
 * the value, the file's field otherwise.
 */
export async function loadAgentConfig(
  env: NodeJS.ProcessEnv,
  file?: string,
): Promise<CloudAgentConfig> {
  const problems: string[] = [];
  const fileValues = file ? await fromFile(file) : {};
  const envValues = fromEnv(env, problems);
  const raw = { ...fileValues, ...envValues };
  const source = (field: string) =>
    field in envValues || !file
      ? (cloudAgentEnv[field as Field] ?? field)
      : `${field} (in ${file})`;
  const parsed = cloudAgentConfigSchema.safeParse(raw);
  if (!parsed.success) {
    for (const issue of parsed.error.issues) {
      if (issue.code === 'unrecognized_keys') {
        problems.push(
          `${file ?? 'configuration'}: unknown field(s) ${issue.keys.join(', ')}; remove them`,
        );
        continue;
      }
      const field = String(issue.path[0] ?? '');
      const missing = raw[field] === undefined;
      const fix = fixes[field as Field];
      problems.push(
        `${source(field)}: ${missing ? 'is missing' : issue.message}${fix ? `; ${fix}` : ''}`,
      );
    }
  }
  if (
    parsed.success &&
    parsed.data.secretsProvider === 'passphrase' &&
    parsed.data.stateBackend?.startsWith('s3://')
  ) {
    problems.push(
      `${source('secretsProvider')}: an s3:// backend needs a KMS key (awskms://...) to encrypt secrets; ${fixes.secretsProvider}`,
    );
  }
  if (problems.length > 0 || !parsed.success) {
    throw new AgentConfigError(
      `invalid cloud-agent configuration:\n${problems.map((p) => `  ${p}`).join('\n')}`,
    );
  }
  return parsed.data;
}

/** The configuration without its secrets, for logs and --check-config. */
export function redactAgentConfig(config: CloudAgentConfig): Record<string, unknown> {
  return {
    ...config,
    connectionToken: '[redacted]',
    ...(config.statePassphrase ? { statePassphrase: '[redacted]' } : {}),
  };
}
