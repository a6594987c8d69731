// The cloud-agent binary: read and check the configuration, wire the logger and signals, run the
// agent until SIGTERM. Bundled to dist/cloud-agent.cjs for the agent's container image.
import pino from 'pino';
import { daemonConfig, exitFatal, runMain, stopOnSignals } from '../common/daemon';
import { cloudAgentEnv } from '../common/protocol';
import { agentVersion, runCloudAgent } from './agent';
import { AgentConfigError, loadAgentConfig, redactAgentConfig } from './config';
import { AgentFatalError } from './syncer';
import { AgentStateError } from './state';

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
  const step = await daemonConfig({
    argv: process.argv.slice(2),
    help,
    version: agentVersion,
    load: (file) => loadAgentConfig(process.env, file),
    isConfigError: (err) => err instanceof AgentConfigError,
    redact: redactAgentConfig,
  });
  if ('exit' in step) return step.exit;
  const { config } = step;
  // The engine and the machines this agent starts inherit its environment: the token stays here.
  delete process.env[cloudAgentEnv.connectionToken];
  delete process.env[cloudAgentEnv.statePassphrase];

  const logger = pino({
    name: 'slipway-cloud-agent',
    level: config.logLevel,
    redact: ['connectionToken', '*.connectionToken', 'registrationToken', '*.registrationToken'],
  });
  const signal = stopOnSignals(logger, 'signal received; stopping');
  try {
    await runCloudAgent(config, { signal, logger });
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

runMain(main);
