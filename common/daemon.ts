// What the two long-running agents' binaries (cloud-agent, machine-agent) share: their flags,
// the configuration step with its exit status, signals that stop them, and how main() ends.
import { parseArgs } from 'node:util';
import type { Logger } from 'pino';

/** sysexits' EX_CONFIG: the configuration or identity is unusable; a restart will not help. */
export const exitFatal = 78;

export interface DaemonConfigStep<C> {
  argv: string[];
  help: string;
  version: string;
  /** Reads the configuration (from the --config file when given). */
  load(configFile: string | undefined): C | Promise<C>;
  /** Errors of `load` that are the user's to fix: printed with their code, exit 78. */
  isConfigError(err: unknown): err is Error & { code: string };
  redact(config: C): unknown;
}

/**
 * Handles --help, --version and --check-config, and loads the configuration. Resolves with the
 * configuration to run with, or with the exit status when there is nothing to run.
 */
export async function daemonConfig<C>(
  step: DaemonConfigStep<C>,
): Promise<{ config: C } | { exit: number }> {
  const { values } = parseArgs({
    args: step.argv,
    options: {
      config: { type: 'string' },
      'check-config': { type: 'boolean' },
      help: { type: 'boolean' },
      version: { type: 'boolean' },
    },
    strict: true,
  });
  if (values.help) {
    process.stdout.write(step.help);
    return { exit: 0 };
  }
  if (values.version) {
    process.stdout.write(`${step.version}\n`);
    return { exit: 0 };
  }
  let config: C;
  try {
    config = await step.load(values.config);
  } catch (err) {
    if (!step.isConfigError(err)) throw err;
    process.stderr.write(`error (${err.code}): ${err.message}\n`);
    return { exit: exitFatal };
  }
  if (values['check-config']) {
    process.stdout.write(JSON.stringify(step.redact(config), null, 2) + '\n');
    return { exit: 0 };
  }
  return { config };
}

/** An abort signal raised by SIGTERM or SIGINT, each logged with `message`. */
export function stopOnSignals(logger: Logger, message: string): AbortSignal {
  const stop = new AbortController();
  for (const sig of ['SIGTERM', 'SIGINT'] as const) {
    process.on(sig, () => {
      logger.info({ signal: sig }, message);
      stop.abort(new Error(`received ${sig}`));
    });
  }
  return stop.signal;
}

/** Runs a binary's main(): its result is the exit status; an unexpected error is printed. */
export function runMain(main: () => Promise<number>): void {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`error: ${err instanceof Error ? err.message : String(err)}\n`);
      process.exitCode = 1;
    },
  );
}
