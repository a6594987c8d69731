// The `slipway` binary: wires the process (arguments, streams, Ctrl-C, exit codes) to the
// command tree in commands.ts. Nothing else lives here.
import { CommanderError } from 'commander';
import { buildProgram } from './commands';
import { CliError } from './errors';

/**
 * Runs the command; resolves with the exit code, or undefined when the command keeps serving
 * (`slipway server`) and ends the process itself.
 */
export async function main(argv: string[]): Promise<number | undefined> {
  if (argv[0] === 'server') {
    // The control plane owns its flags, signals and shutdown. Loaded lazily so that the
    // everyday commands don't pay for the server's modules at start.
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const server = require('../control-plane/main') as typeof import('../control-plane/main');
    try {
      await server.main(argv.slice(1));
      return undefined;
    } catch (err) {
      if (err instanceof CommanderError) return err.exitCode;
      process.stderr.write(`error: slipway server: ${(err as Error).message}\n`);
      return 1;
    }
  }
  const controller = new AbortController();
  let interrupts = 0;
  const onSignal = (sig: NodeJS.Signals) => {
    interrupts++;
    if (interrupts > 1) process.exit(130); // a second Ctrl-C does not wait for cleanup
    process.stderr.write(`\n${sig}: stopping (press Ctrl-C again to quit at once)\n`);
    controller.abort(new CliError('canceled', 'canceled by the user', 130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  let exitCode = 0;
  const program = buildProgram({
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    signal: controller.signal,
    setExitCode: (code) => (exitCode = code),
  });
  try {
    await program.parseAsync(argv, { from: 'user' });
    return exitCode;
  } catch (err) {
    if (err instanceof CommanderError) return err.exitCode === 0 ? 0 : 2;
    if (err instanceof CliError) {
      process.stderr.write(`error: ${err.message}\n`);
      return err.exitCode;
    }
    if (controller.signal.aborted) {
      process.stderr.write('canceled\n');
      return 130;
    }
    process.stderr.write(
      `error: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`,
    );
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => code !== undefined && process.exit(code),
    (err: unknown) => {
      process.stderr.write(`error: ${String(err)}\n`);
      process.exit(1);
    },
  );
}
