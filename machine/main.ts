// The machine-agent binary: read and check the configuration, wire the logger and signals, run
// the agent until SIGTERM or a shutdown task. Bundled to dist/machine-agent.cjs for machines.
import { parseArgs } from 'node:util';
import pino from 'pino';
import { machineAgentEnv, type MachineAgentConfig } from '../common/protocol';
import { agentVersion, runMachineAgent } from './agent';
import { configFromEnv, configFromFile, redactConfig } from './config';
import { MachineAgentError, errorMessage } from './errors';

/** sysexits' EX_CONFIG: systemd's RestartPreventExitStatus keeps it from restarting in vain. */
const exitFatal = 78;

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

  let config: MachineAgentConfig;
  try {
    config = values.config ? await configFromFile(values.config) : configFromEnv(process.env);
  } catch (err) {
    if (!(err instanceof MachineAgentError)) throw err;
    process.stderr.write(`error (${err.code}): ${err.message}\n`);
    return exitFatal;
  }
  if (values['check-config']) {
    process.stdout.write(JSON.stringify(redactConfig(config), null, 2) + '\n');
    return 0;
  }

  const logger = pino({
    name: 'slipway-machine-agent',
    level: process.env.SLIPWAY_LOG_LEVEL ?? 'info',
    base: { machineId: config.machineId, pid: process.pid },
    redact: ['registrationToken', 'machineToken', '*.registrationToken', '*.machineToken'],
  });
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      logger.info({ signal: sig }, 'signal received; shutting down');
      stop.abort(`received ${sig}`);
    });
  }
  // Started detached by the local provider, it must outlive the terminal or parent it came from.
  process.on('SIGHUP', () => logger.info('ignoring SIGHUP'));

  logger.info({ version: agentVersion, provider: config.provider }, 'machine-agent starting');
  try {
    const exit = await runMachineAgent(config, { signal: stop.signal, logger });
    logger.info({ reason: exit.reason }, 'machine-agent stopped');
    return 0;
  } catch (err) {
    const code = err instanceof MachineAgentError ? err.code : 'internal';
    logger.fatal({ code, err: errorMessage(err) }, 'machine-agent failed');
    return err instanceof MachineAgentError && err.fatal ? exitFatal : 1;
  }
}

main().then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`error: ${errorMessage(err)}\n`);
    process.exitCode = 1;
  },
);
