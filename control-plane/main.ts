// `slipway server`: parse the flags, start the control plane, bootstrap the first organization
// if asked, and stop cleanly on SIGINT/SIGTERM. Run directly with `npx tsx control-plane/main.ts`.
import os from 'node:os';
import path from 'node:path';
import { Command, InvalidArgumentError } from 'commander';
import pino from 'pino';
import { logLevelSchema, nameSchema } from '../common/protocol';
import { bootstrapOrganization, OrganizationExistsError } from './bootstrap';
import { startControlPlane } from './server';
import { parseHostPort } from '../common/net';

function parseListen(value: string): { host: string; port: number } {
  const listen = parseHostPort(value);
  if (!listen) throw new InvalidArgumentError('use host:port, e.g. 127.0.0.1:8420 or [::]:8420');
  return listen;
}

function parseUrl(value: string): string {
  try {
    const url = new URL(value);
    if (url.protocol === 'http:' || url.protocol === 'https:') return value;
  } catch {
    // reported below
  }
  throw new InvalidArgumentError('use an http:// or https:// URL');
}

function parseDatabaseUrl(value: string): string {
  if (/^postgres(ql)?:\/\//.test(value)) return value;
  throw new InvalidArgumentError('use a postgres:// URL');
}

function parseName(value: string): string {
  const parsed = nameSchema.safeParse(value);
  if (!parsed.success) throw new InvalidArgumentError(parsed.error.issues[0]!.message);
  return value;
}

/** SLIPWAY_LOG_LEVEL, as the agents read it; info by default. */
function logLevel(value: string | undefined): string {
  const parsed = logLevelSchema.safeParse(value || undefined);
  if (!parsed.success) {
    throw new InvalidArgumentError(
      `SLIPWAY_LOG_LEVEL ${value}: ${parsed.error.issues[0]!.message}`,
    );
  }
  return parsed.data;
}

/** `argv` are the arguments after the command name (`slipway server ...`). */
export async function main(argv: string[]): Promise<void> {
  const program = new Command('slipway server')
    .description('Run the Slipway control plane')
    .option(
      '--data-dir <dir>',
      'database and server secret',
      process.env.SLIPWAY_DATA_DIR ?? path.join(os.homedir(), '.slipway', 'server'),
    )
    .option(
      '--database-url <url>',
      'PostgreSQL (postgres://...) instead of SQLite in the data directory',
      parseDatabaseUrl,
      process.env.SLIPWAY_DATABASE_URL,
    )
    .option('--listen <host:port>', 'address to listen on', parseListen, {
      host: '127.0.0.1',
      port: 8420,
    })
    .option('--public-url <url>', 'URL machines and CLIs use to reach this server', parseUrl)
    .option('--tls-cert <file>', 'serve HTTPS with this certificate (PEM)')
    .option('--tls-key <file>', 'and this private key (PEM)')
    .option(
      '--bootstrap-org <name>',
      'create this organization and print its admin token once',
      parseName,
    )
    // Errors are thrown to the caller, which prints them once in its own words.
    .configureOutput({ outputError: () => undefined })
    .exitOverride();
  program.parse(argv, { from: 'user' });
  const opts = program.opts<{
    dataDir: string;
    databaseUrl?: string;
    listen: { host: string; port: number };
    publicUrl?: string;
    tlsCert?: string;
    tlsKey?: string;
    bootstrapOrg?: string;
  }>();
  if (Boolean(opts.tlsCert) !== Boolean(opts.tlsKey)) {
    throw new InvalidArgumentError('--tls-cert and --tls-key go together');
  }
  const log = pino({
    name: 'slipway-control-plane',
    level: logLevel(process.env.SLIPWAY_LOG_LEVEL),
  });
  const cp = await startControlPlane({
    dataDir: path.resolve(opts.dataDir),
    databaseUrl: opts.databaseUrl,
    listen: opts.listen,
    publicUrl: opts.publicUrl,
    tls: opts.tlsCert && opts.tlsKey ? { certFile: opts.tlsCert, keyFile: opts.tlsKey } : undefined,
    logger: log,
    processMetrics: true,
  });
  if (opts.bootstrapOrg) {
    try {
      const { organization, token } = await bootstrapOrganization(cp.db, opts.bootstrapOrg);
      process.stdout.write(
        `Organization ${organization.name} (${organization.id}) created.\n` +
          `Its admin token, shown only this once:\n\n  ${token}\n\n`,
      );
    } catch (err) {
      if (!(err instanceof OrganizationExistsError)) throw err;
      log.info({ organization: opts.bootstrapOrg }, err.message);
    }
  }
  const stop = (signal: string) => {
    log.info({ signal }, 'stopping');
    cp.close().then(
      () => process.exit(0),
      (err) => {
        log.error({ err }, 'stopping failed');
        process.exit(1);
      },
    );
  };
  process.once('SIGINT', () => stop('SIGINT'));
  process.once('SIGTERM', () => stop('SIGTERM'));
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((err: unknown) => {
    const e = err as { code?: string; message?: string; exitCode?: number };
    if (e.code === 'commander.helpDisplayed' || e.code === 'commander.version') process.exit(0);
    process.stderr.write(`slipway server: ${e.message ?? String(err)}\n`);
    process.exit(typeof e.exitCode === 'number' ? e.exitCode : 1);
  });
}
