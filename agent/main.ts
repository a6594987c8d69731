// The cloud-agent binary: read and check the configuration, wire the logger and signals, run the
// agent until SIGTERM. Bundled to dist/cloud-agent.cjs for the agent's container image.
import { parseArgs } from 'node:util';
import pino from 'pino';
import { cloudAgentEnv, type CloudAgentConfig } from '../common/protocol';
import { agentVersion, runCloudAgent } from './agent';
import { AgentConfigError, loadAgentConfig, redactAgentConfig } from './config';
import { AgentFatalError } from './syncer';
import { AgentStateError } from './state';

/** sysexits' EX_CONFIG: the configuration or credentials are wrong; a restart will not help. */
const exitFatal = 78;

const help = `slipway cloud-agent ${agentVersion}

Holds the lease of one Slipway connection, long-polls the control plane for the desired fleet
and converges it with the Pulumi Automation API (preview, audit record, up), observing and
cleaning up what exists in the provider.

Usage:
  cloud-agent [--config FILE] [--check-config]

Options:
  --config FILE    read the configuration from a JSON file (the environment overrides it)
  --check-config   validate the configuration, print it (secrets redacted) and exit
  --version        print the version
  --help           this text

Environment:
${Object.entries(cloudAgentEnv)
  .map(([field, variable]) => `  ${variable.padEnd(32)}${field}`)
  .join('\n')}

Exit status: 0 after SIGTERM, ${exitFatal} when the configuration or token is unusable, 1 otherwise.
`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string' },
      'check-config': { type: 'boolean' },
      help: { type: 'boolean' },
      version: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(help);
    return 0;
  }
  if (values.version) {
    process.stdout.write(`${agentVersion}\n`);
    return 0;
  }
  let config: CloudAgentConfig;
  try {
    config = await loadAgentConfig(process.env, values.config);
  } catch (err) {
    if (!(err instanceof AgentConfigError)) throw err;
    process.stderr.write(`error (${err.code}): ${err.message}\n`);
    return exitFatal;
  }
  if (values['check-config']) {
    process.stdout.write(JSON.stringify(redactAgentConfig(config), null, 2) + '\n');
    return 0;
  }
  // The engine and the machines this agent starts inherit its environment: the token stays here.
  delete process.env[cloudAgentEnv.connectionToken];
  delete process.env[cloudAgentEnv.statePassphrase];

  const logger = pino({
    name: 'slipway-cloud-agent',
    level: config.logLevel,
    redact: ['connectionToken', '*.connectionToken', 'registrationToken', '*.registrationToken'],
  });
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      logger.info({ signal: sig }, 'signal received; stopping');
      stop.abort(new Error(`received ${sig}`));
    });
  }
  try {
    await runCloudAgent(config, { signal: stop.signal, logger });
    return 0;
  } catch (err) {
    const fatal = err instanceof AgentFatalError || err instanceof AgentStateError;
    logger.fatal(
      {
        code: (err as { code?: string }).code ?? 'internal',
        err: err instanceof Error ? err.message : String(err),
      },
      'cloud-agent failed',
    );
    return fatal ? exitFatal : 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  },
);
