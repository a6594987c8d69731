// The `slipway` command tree: build, login, listings and creation of projects and connections.
// Each action resolves configuration, calls the API through the shared client and prints for
// people (tables) or scripts (--json).
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import { Command, Option } from 'commander';
import { ApiClient, ApiError } from '../common/api';
import { parseHostPort } from '../common/net';
import { awsConnectionConfigSchema, type AwsConnectionConfig } from '../common/protocol';
import { version } from '../package.json';
import { runBuild } from './build';
import { parseBuildFlags, type BuildFlags } from './build-spec';
import {
  readUserConfig,
  requireProject,
  requireToken,
  resolveConfig,
  writeUserConfig,
  type ResolvedConfig,
} from './config';
import { CliError, describeApiError } from './errors';
import { StreamReporter, formatTimings } from './reporter';
import { ago, table } from './table';

export interface CliIo {
  stdout: NodeJS.WriteStream;
  stderr: NodeJS.WriteStream;
  env: NodeJS.ProcessEnv;
  cwd: string;
  /** Aborted on Ctrl-C. */
  signal: AbortSignal;
  setExitCode(code: number): void;
}

interface GlobalFlags {
  apiUrl?: string;
  token?: string;
  project?: string;
}

const collect = (value: string, previous: string[]) => [...previous, value];

interface DevFlags {
  dataDir: string;
  listen: string;
  organization: string;
  connection: string;
  project: string;
  idleTimeout?: string;
  keepBuilders?: boolean;
  exportFile?: string;
  verbose?: boolean;
}

function defaultDevDirFor(env: NodeJS.ProcessEnv): string {
  return env.SLIPWAY_DEV_DIR || path.join(homedir(), '.slipway', 'dev');
}

async function clientFor(config: ResolvedConfig): Promise<ApiClient> {
  const token = requireToken(config);
  const ca = config.caFile ? await readFile(config.caFile, 'utf8') : undefined;
  return new ApiClient({ baseUrl: config.apiUrl.value, token, ca, userAgent: 'slipway-cli' });
}

async function withApi<T>(what: string, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    if (err instanceof ApiError) throw describeApiError(err, what);
    throw err;
  }
}

function printJson(io: CliIo, value: unknown): void {
  io.stdout.write(JSON.stringify(value, null, 2) + '\n');
}

export function buildProgram(io: CliIo): Command {
  const program = new Command('slipway')
    .description('Container builds on cache-warm BuildKit builders in your own cloud account')
    .version(version, '-V, --version', 'print the version of slipway')
    .option('--api-url <url>', 'control plane URL (env SLIPWAY_API_URL)')
    .option('--token <token>', 'user token (env SLIPWAY_TOKEN; prefer `slipway login`)')
    .showHelpAfterError()
    .configureOutput({
      writeOut: (s) => io.stdout.write(s),
      writeErr: (s) => io.stderr.write(s),
    })
    .exitOverride();

  /** An API client for the command's configuration, closed when `fn` is done. */
  const withClient = async <T>(cmd: Command, fn: (client: ApiClient) => Promise<T>): Promise<T> => {
    const client = await clientFor(await config(cmd));
    try {
      return await fn(client);
    } finally {
      await client.close();
    }
  };

  const config = (cmd: Command, startDir = io.cwd) => {
    const g = cmd.optsWithGlobals<GlobalFlags>();
    return resolveConfig({
      flags: { apiUrl: g.apiUrl, token: g.token, project: g.project },
      env: io.env,
      startDir,
    });
  };

  program
    .command('build')
    .description('Build a Dockerfile on a Slipway builder (flags as in docker buildx build)')
    .argument('[path]', 'build context', '.')
    .option('-f, --file <path>', 'Dockerfile (default: PATH/Dockerfile)')
    .option('-t, --tag <name>', 'image name and tag (repeatable)', collect, [])
    .option(
      '--platform <platform>',
      'target platform, e.g. linux/amd64 (repeatable or comma-separated)',
      collect,
      [],
    )
    .option('--build-arg <key=value>', 'build-time variable (repeatable)', collect, [])
    .option('--target <stage>', 'build stage to stop at')
    .option(
      '-o, --output <spec>',
      'output, e.g. type=oci,dest=out.tar or a directory (repeatable)',
      collect,
      [],
    )
    .option('--push', 'push the image named by -t to its registry')
    .addOption(
      new Option('--progress <mode>', 'progress output')
        .choices(['auto', 'plain', 'tty', 'quiet'])
        .default('auto'),
    )
    .option('--no-cache', 'do not use the cache for this build')
    .option(
      '--secret <spec>',
      'secret to expose, id=NAME,src=FILE or id=NAME,env=VAR (repeatable)',
      collect,
      [],
    )
    .option('--project <name>', 'Slipway project (env SLIPWAY_PROJECT, or slipway.json)')
    .option('--acquire-timeout <seconds>', 'give up waiting for a builder after this long', '900')
    .option('--metadata-file <file>', 'write the build, its builders and phase timings as JSON')
    .action(
      async (
        contextArg: string,
        flags: BuildFlags & { project?: string; acquireTimeout: string; metadataFile?: string },
        cmd: Command,
      ) => {
        const spec = parseBuildFlags(contextArg, flags, io.cwd, io.env);
        const cfg = await config(cmd, spec.contextDir);
        const project = requireProject(cfg);
        const client = await clientFor(cfg);
        const acquireTimeoutSeconds = Number(flags.acquireTimeout);
        if (!Number.isFinite(acquireTimeoutSeconds) || acquireTimeoutSeconds <= 0) {
          throw new CliError(
            'bad_flag',
            `--acquire-timeout ${flags.acquireTimeout}: give a number of seconds`,
          );
        }
        const interactive = Boolean(io.stderr.isTTY) && spec.progress !== 'plain';
        const reporter = new StreamReporter(io.stderr, interactive, spec.progress === 'quiet');
        try {
          const outcome = await runBuild({
            client,
            project,
            spec,
            reporter,
            signal: io.signal,
            acquireTimeoutMs: acquireTimeoutSeconds * 1000,
            description: spec.contextDir,
          });
          if (outcome.build && spec.progress !== 'quiet')
            io.stderr.write(formatTimings(outcome.build, outcome.buildMs));
          if (flags.metadataFile && outcome.build) {
            const { writeFile } = await import('node:fs/promises');
            await writeFile(
              flags.metadataFile,
              JSON.stringify({ build: outcome.build, buildMs: outcome.buildMs }, null, 2) + '\n',
            );
          }
          if (outcome.exitCode === 130) io.stderr.write('build canceled\n');
          else if (outcome.exitCode !== 0)
            io.stderr.write(
              `build failed (exit code ${outcome.exitCode})${outcome.failure ? `: ${outcome.failure}` : ''}\n`,
            );
          io.setExitCode(outcome.exitCode);
        } finally {
          await client.close();
        }
      },
    );

  // Listed for --help; cli/main.ts hands `server` to control-plane/main.ts before parsing.
  program
    .command('server')
    .description('Run the control plane (see `slipway server --help`)')
    .allowUnknownOption()
    .helpOption(false)
    .argument('[args...]');

  program
    .command('dev')
    .description(
      'Run Slipway on this machine: control plane, a local connection with its cloud-agent, a project',
    )
    .option(
      '--data-dir <dir>',
      'where everything is kept (env SLIPWAY_DEV_DIR)',
      defaultDevDirFor(io.env),
    )
    .option(
      '--listen <host:port>',
      'control plane address (port 0: any free port)',
      '127.0.0.1:8420',
    )
    .option('--organization <name>', 'organization to use or create', 'dev')
    .option('--connection <name>', 'local connection to use or create', 'local')
    .option('--project <name>', 'project to use or create', 'default')
    .option('--idle-timeout <seconds>', 'stop a builder after this long without builds')
    .option('--keep-builders', 'leave builder processes running when dev stops')
    .option(
      '--export-file <file>',
      'write SLIPWAY_API_URL, SLIPWAY_TOKEN and SLIPWAY_PROJECT here (0600)',
    )
    .option('--verbose', 'log to the terminal instead of DATA_DIR/dev.log')
    .action(async (flags: DevFlags) => {
      const listen = parseHostPort(flags.listen);
      if (!listen) {
        throw new CliError(
          'bad_flag',
          `--listen ${flags.listen}: use host:port, e.g. 127.0.0.1:8420`,
        );
      }
      const idle = flags.idleTimeout === undefined ? undefined : Number(flags.idleTimeout);
      if (idle !== undefined && (!Number.isInteger(idle) || idle < 10)) {
        throw new CliError(
          'bad_flag',
          `--idle-timeout ${flags.idleTimeout}: give whole seconds, at least 10`,
        );
      }
      // Loaded lazily: the control plane, agent and Pulumi modules are heavy for everyday commands.
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      const dev = require('./dev') as typeof import('./dev');
      await dev.runDev({
        dataDir: flags.dataDir,
        listen,
        organization: flags.organization,
        connection: flags.connection,
        project: flags.project,
        idleTimeoutSeconds: idle,
        keepBuilders: Boolean(flags.keepBuilders),
        exportFile: flags.exportFile,
        verbose: Boolean(flags.verbose),
        out: io.stderr,
        signal: io.signal,
      });
    });

  program
    .command('login')
    .description('Store the control plane URL and a user token in the user config file (0600)')
    .addHelpText(
      'after',
      '\nGive the URL with the global --api-url; the token with --token, SLIPWAY_TOKEN or on stdin.',
    )
    .action(async (_flags: unknown, cmd: Command) => {
      const flags = cmd.optsWithGlobals<GlobalFlags>();
      if (!flags.apiUrl)
        throw new CliError('bad_flag', 'give the control plane URL: slipway --api-url URL login');
      let token = flags.token ?? io.env.SLIPWAY_TOKEN;
      if (!token && !process.stdin.isTTY) token = (await readStdin()).trim();
      if (!token)
        throw new CliError('no_token', 'give the token with --token, SLIPWAY_TOKEN or on stdin');
      const cfg = await resolveConfig({
        flags: { apiUrl: flags.apiUrl, token },
        env: io.env,
        startDir: io.cwd,
      });
      const client = await clientFor(cfg);
      try {
        const org = await withApi('checking the token', () => client.call('getOrganization', {}));
        const existing = await readUserConfig(io.env);
        const file = await writeUserConfig(
          { ...existing, apiUrl: cfg.apiUrl.value, token },
          io.env,
        );
        io.stderr.write(
          `logged in to ${cfg.apiUrl.value} as organization ${org.name}; saved to ${file}\n`,
        );
      } finally {
        await client.close();
      }
    });

  const listing = <T>(
    name: string,
    description: string,
    fetch: (client: ApiClient, opts: Record<string, string | boolean | undefined>) => Promise<T[]>,
    render: (items: T[]) => string,
    extra: (cmd: Command) => Command = (c) => c,
  ) =>
    extra(
      new Command(name).description(description).option('--json', 'print JSON for scripts'),
    ).action(async (opts: Record<string, string | boolean | undefined>, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const items = await withApi(`listing ${name}`, () => fetch(client, opts));
        if (opts.json) printJson(io, items);
        else io.stdout.write(items.length ? render(items) : `no ${name}\n`);
      });
    });

  const projects = program.command('projects').description('List or create projects');
  projects.addCommand(
    listing(
      'list',
      'List projects',
      async (c) => (await c.call('listProjects', {})).projects,
      (items) =>
        table(
          ['name', 'id', 'connection', 'created'],
          items.map((p) => [p.name, p.id, p.connectionId, ago(p.createdAt)]),
        ),
    ),
    { isDefault: true },
  );
  projects
    .command('create')
    .description('Create a project bound to a connection')
    .argument('<name>')
    .requiredOption('--connection <name-or-id>', 'the connection whose builders serve it')
    .option('--json', 'print JSON for scripts')
    .action(async (name: string, opts: { connection: string; json?: boolean }, cmd: Command) => {
      await withClient(cmd, async (client) => {
        const project = await withApi('creating the project', () =>
          client.call('createProject', { body: { name, connection: opts.connection } }),
        );
        if (opts.json) printJson(io, project);
        else io.stdout.write(`created project ${project.name} (${project.id})\n`);
      });
    });

  const connections = program.command('connections').description('List or create connections');
  connections.addCommand(
    listing(
      'list',
      'List connections and their agents',
      async (c) => (await c.call('listConnections', {})).connections,
      (items) =>
        table(
          ['name', 'id', 'provider', 'agent', 'last seen', 'generation'],
          items.map((c) => [
            c.name,
            c.id,
            c.provider,
            c.agent?.version,
            ago(c.agent?.lastSeenAt),
            `${c.agent?.appliedGeneration ?? 0}/${c.generation}`,
          ]),
        ),
    ),
    { isDefault: true },
  );
  connections
    .command('create')
    .description('Create a connection; prints its agent token once')
    .argument('<name>')
    .addOption(
      new Option('--provider <provider>', 'where builders run')
        .choices(['local', 'aws'])
        .makeOptionMandatory(),
    )
    .option('--aws-config <file>', 'JSON from the connection stack outputs (provider aws)')
    .option('--json', 'print JSON for scripts')
    .action(
      async (
        name: string,
        opts: { provider: 'local' | 'aws'; awsConfig?: string; json?: boolean },
        cmd: Command,
      ) => {
        let aws: AwsConnectionConfig | undefined;
        if (opts.provider === 'aws') {
          if (!opts.awsConfig)
            throw new CliError(
              'bad_flag',
              '--provider aws needs --aws-config FILE (the connection stack outputs)',
            );
          const parsed = awsConnectionConfigSchema.safeParse(
            JSON.parse(await readFile(opts.awsConfig, 'utf8')),
          );
          if (!parsed.success) {
            const issue = parsed.error.issues[0]!;
            throw new CliError(
              'bad_flag',
              `--aws-config ${opts.awsConfig}: field "${issue.path.join('.')}" ${issue.message}`,
            );
          }
          aws = parsed.data;
        }
        await withClient(cmd, async (client) => {
          const created = await withApi('creating the connection', () =>
            client.call('createConnection', {
              body: { name, provider: opts.provider, ...(aws ? { aws } : {}) },
            }),
          );
          if (opts.json) printJson(io, created);
          else {
            io.stdout.write(
              `created connection ${created.connection.name} (${created.connection.id})\n`,
            );
            io.stdout.write(`agent token (shown once, store it now): ${created.token}\n`);
          }
        });
      },
    );

  program.addCommand(
    listing(
      'machines',
      'List builder machines',
      async (c, o) =>
        (
          await c.call('listMachines', {
            query: { connection: o.connection as string | undefined },
          })
        ).machines,
      (items) =>
        table(
          ['id', 'status', 'platform', 'project', 'endpoint', 'idle since', 'cache used'],
          items.map((m) => [
            m.id,
            m.status,
            m.platform,
            m.projectId,
            m.endpoint,
            ago(m.idleSince),
            m.health
              ? `${Math.round((m.health.cacheBytesUsed / 1024 ** 2) * 10) / 10} MiB`
              : undefined,
          ]),
        ),
      (c) => c.option('--connection <name-or-id>', 'only this connection'),
    ),
  );
  program.addCommand(
    listing(
      'builds',
      'List builds, newest first',
      async (c, o) =>
        (
          await c.call('listBuilds', {
            query: { project: o.project as string | undefined, limit: Number(o.limit ?? 20) },
          })
        ).builds,
      (items) =>
        table(
          ['id', 'status', 'project', 'platforms', 'created', 'build time', 'error'],
          items.map((b) => [
            b.id,
            b.status,
            b.projectId,
            b.builders.map((x) => `${x.platform}${x.path ? `(${x.path})` : ''}`).join(' '),
            ago(b.createdAt),
            b.buildMs === null ? undefined : `${(b.buildMs / 1000).toFixed(1)}s`,
            b.error?.slice(0, 60),
          ]),
        ),
      (c) =>
        c
          .option('--project <name-or-id>', 'only this project')
          .option('--limit <n>', 'at most this many', '20'),
    ),
  );
  program
    .command('audit')
    .description("A connection's audit records: each converge's change summary and preview diff")
    .argument('<connection>', 'connection id or name')
    .option('--limit <n>', 'at most this many', '20')
    .option('--diff', 'print each record with its full preview diff')
    .option('--json', 'print JSON for scripts')
    .action(
      async (
        connection: string,
        opts: { limit: string; diff?: boolean; json?: boolean },
        cmd: Command,
      ) => {
        await withClient(cmd, async (client) => {
          const id = await withApi('finding the connection', () =>
            resolveConnectionId(client, connection),
          );
          const { records } = await withApi('listing audit records', () =>
            client.call('listAudit', {
              params: { connectionId: id },
              query: { limit: Number(opts.limit) },
            }),
          );
          if (opts.json) return printJson(io, records);
          if (!records.length) return void io.stdout.write('no audit records\n');
          if (!opts.diff) {
            io.stdout.write(
              table(
                ['id', 'kind', 'generation', 'result', 'changes', 'when'],
                records.map((r) => [
                  r.id,
                  r.kind,
                  r.generation,
                  r.result,
                  Object.entries(r.summary)
                    .filter(([k]) => k !== 'same')
                    .map(([k, v]) => `${k}:${v}`)
                    .join(' '),
                  ago(r.createdAt),
                ]),
              ),
            );
            return;
          }
          for (const r of records) {
            io.stdout.write(
              `== ${r.id} ${r.kind} generation ${r.generation ?? '-'} ${r.result ?? ''} ${r.createdAt}\n`,
            );
            if (r.error) io.stdout.write(`error: ${r.error}\n`);
            io.stdout.write(r.diff.endsWith('\n') ? r.diff : r.diff + '\n');
          }
        });
      },
    );

  return program;
}

async function resolveConnectionId(client: ApiClient, nameOrId: string): Promise<string> {
  if (nameOrId.startsWith('con_')) return nameOrId;
  const { connections } = await client.call('listConnections', {});
  const found = connections.find((c) => c.name === nameOrId);
  if (!found)
    throw new CliError('not_found', `no connection named ${nameOrId}; see \`slipway connections\``);
  return found.id;
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks).toString('utf8');
}
