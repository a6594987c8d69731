// The machine-agent binary: read and check the configuration, wire the logger and signals, run
// the agent until SIGTERM or a shutdown task. Bundled to dist/machine-agent.cjs for machines.
import pino from 'pino';
import { daemonConfig, exitFatal, runMain, stopOnSignals } from '../common/daemon';
import { machineAgentEnv } from '../common/protocol';
import { agentVersion, runMachineAgent } from './agent';
import { configFromEnv, configFromFile, redactConfig } from './config';
import { MachineAgentError, errorMessage } from './errors';

const help = `slipway machine-agent ${agentVersion}

Registers this machine with the Slipway control plane, runs BuildKit with mutual TLS on the
cache volume it is given, and reports health until SIGTERM or a shutdown task.

Usage:
  machine-agent [--config FILE] [--check-config]

Options:
  --config FILE    read the configuration from a JSON file instead of the environment
  --check-config   validate the configuration, print it (secrets redacted) and exit
  --version        print the version
  --help           this text

Environment (when no --config is given):
${Object.entries(machineAgentEnv)
  .map(([field, variable]) => `  ${variable.padEnd(32)}${field}`)
  .join('\n')}
  SLIPWAY_LOG_LEVEL               trace, debug, info (default), warn, error

Exit status: 0 after a clean shutdown, ${exitFatal} when the configuration or this machine's
identity is unusable (restarting will not help), 1 otherwise.
`;

async function main(): Promise<number> {
  const step = await daemonConfig({
    argv: process.argv.slice(2),
    help,
    version: agentVersion,
    load: (file) => (file ? configFromFile(file) : configFromEnv(process.env)),
    isConfigError: (err) => err instanceof MachineAgentError,
    redact: redactConfig,
  });
  if ('exit' in step) return step.exit;
  const { config } = step;

  const logger = pino({
    name: 'slipway-machine-agent',
    level: process.env.SLIPWAY_LOG_LEVEL ?? 'info',
    base: { machineId: config.machineId, pid: process.pid },
    redact: ['registrationToken', 'machineToken', '*.registrationToken', '*.machineToken'],
  });
  const signal = stopOnSignals(logger, 'signal received; shutting down');
  // Started detached by the local provider, it must outlive the terminal or parent it came from.
  process.on('SIGHUP', () => logger.info('ignoring SIGHUP'));

  logger.info({ version: agentVersion, provider: config.provider }, 'machine-agent starting');
  try {
    const exit = await runMachineAgent(config, { signal, logger });
    logger.info({ reason: exit.reason }, 'machine-agent stopped');
    return 0;
  } catch (err) {
    const code = err instanceof MachineAgentError ? err.code : 'internal';
    logger.fatal({ code, err: errorMessage(err) }, 'machine-agent failed');
    return err instanceof MachineAgentError && err.fatal ? exitFatal : 1;
  }
}

runMain(main);
