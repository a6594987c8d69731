// Reads the machine-agent's configuration from the SLIPWAY_* environment or a JSON file written
// by user data, and validates it once. Every problem is listed, naming the variable (or field)
// and how to fix it; secrets are never echoed.
import { readFile } from 'node:fs/promises';
import type { z } from 'zod';
import {
  machineAgentConfigSchema,
  machineAgentEnv,
  type MachineAgentConfig,
} from '../common/protocol';
import { MachineAgentError } from './errors';

type Field = keyof MachineAgentConfig;

/** What to set, per field, when it is missing or wrong. */
const fixes: Record<Field, string> = {
  apiUrl: 'set it to the control plane URL the machine reaches, e.g. https://slipway.example.com',
  machineId: 'set it to the machine id the cloud-agent created this machine for (mch_...)',
  registrationToken:
    'set it to the single-use registration token the control plane issued for this machine (swr_...)',
  provider: 'set it to local or aws',
  platform: 'set it to linux/amd64 or linux/arm64, the platform this machine builds for',
  stateDir: 'set it to a directory the agent owns, e.g. /var/lib/slipway',
  listenHost: 'set it to the address BuildKit listens on, e.g. 0.0.0.0 or 127.0.0.1',
  advertiseHost: 'set it to the address clients reach BuildKit at, or leave it unset',
  buildkitPort: 'set it to a TCP port number (1-65535) for the BuildKit mTLS listener',
  volumesDir: 'set it to the directory that holds the local cache volumes',
  controlPlaneCaFile: "set it to a PEM file with the CA of the control plane's HTTPS certificate",
};

const numericFields = new Set<Field>(['buildkitPort']);

function describeIssues(
  issues: z.core.$ZodIssue[],
  raw: unknown,
  name: (field: string) => string,
  source: string,
): MachineAgentError {
  const given = (raw ?? {}) as Record<string, unknown>;
  const lines = issues.map((issue) => {
    const field = String(issue.path[0] ?? '');
    const where = field ? name(field) : source;
    const missing = field !== '' && given[field] === undefined;
    const fix = fixes[field as Field];
    if (issue.code === 'unrecognized_keys') {
      return `  ${where}: unknown field(s) ${issue.keys.join(', ')}; remove them`;
    }
    return `  ${where}: ${missing ? 'is missing' : issue.message}${fix ? `; ${fix}` : ''}`;
  });
  return new MachineAgentError(
    'invalid_config',
    `invalid machine-agent configuration (${source}):\n${lines.join('\n')}`,
  );
}

/** Rules that involve more than one field, checked after the schema. */
function checkCombination(
  config: MachineAgentConfig,
  name: (field: string) => string,
  source: string,
) {
  if (config.provider === 'local' && !config.volumesDir) {
    throw new MachineAgentError(
      'invalid_config',
      `invalid machine-agent configuration (${source}):\n  ${name('volumesDir')}: is required for provider local; ${fixes.volumesDir}`,
    );
  }
}

export function configFromEnv(env: NodeJS.ProcessEnv): MachineAgentConfig {
  const raw: Record<string, unknown> = {};
  for (const [field, variable] of Object.entries(machineAgentEnv)) {
    const value = env[variable];
    if (value === undefined || value === '') continue;
    raw[field] =
      numericFields.has(field as Field) && /^\d+$/.test(value.trim()) ? Number(value) : value;
  }
  const name = (field: string) => machineAgentEnv[field as Field] ?? field;
  const source = 'from the environment';
  const parsed = machineAgentConfigSchema.safeParse(raw);
  if (!parsed.success) throw describeIssues(parsed.error.issues, raw, name, source);
  checkCombination(parsed.data, name, source);
  return parsed.data;
}

export async function configFromFile(file: string): Promise<MachineAgentConfig> {
  const source = `in ${file}`;
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch (err) {
    const why = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new MachineAgentError(
      'invalid_config',
      `cannot read the machine-agent configuration file ${file} (${why}); check --config`,
    );
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new MachineAgentError(
      'invalid_config',
      `the machine-agent configuration file ${file} is not valid JSON: ${(err as Error).message}`,
    );
  }
  const name = (field: string) => field;
  const parsed = machineAgentConfigSchema.safeParse(raw);
  if (!parsed.success) throw describeIssues(parsed.error.issues, raw, name, source);
  checkCombination(parsed.data, name, source);
  return parsed.data;
}

/** The configuration with its secret replaced, for logs and `--check-config`. */
export function redactConfig(config: MachineAgentConfig): Record<string, unknown> {
  return { ...config, registrationToken: '[redacted]' };
}
