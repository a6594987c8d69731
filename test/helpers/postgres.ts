// A real PostgreSQL server for a test: initdb into a temporary directory, postgres on a free
// loopback port (as the postgres user when the test runs as root, which PostgreSQL refuses to),
// stopped when the test ends. Uses the server binaries of the Debian packages.
import { spawn, execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { chown } from 'node:fs/promises';
import path from 'node:path';
import { promisify } from 'node:util';
import type { ExecutionContext } from 'ava';
import knex from 'knex';
import { freePort } from '../../common/net';
import { waitFor } from '../../common/wait';
import { tempDir } from './tmp';

const execFileAsync = promisify(execFile);

function binDir(): string {
  const root = '/usr/lib/postgresql';
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  const dir = versions
    .map((v) => path.join(root, v, 'bin'))
    .find((d) => existsSync(path.join(d, 'initdb')));
  if (!dir)
    throw new Error(
      'PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)',
    );
  return dir;
}

/** The postgres system user when we are root; ourselves otherwise. */
function runAs(): { uid: number; gid: number } | undefined {
  if (process.getuid?.() !== 0) return undefined;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (!line) throw new Error('running as root needs the postgres user to start PostgreSQL');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

export interface TestPostgres {
  /** A new empty database on the server. */
  database(name: string): Promise<string>;
}

export async function startPostgres(t: ExecutionContext): Promise<TestPostgres> {
  const bin = binDir();
  const dir = await tempDir(t, 'pg');
  const user = runAs();
  if (user) await chown(dir, user.uid, user.gid);
  const data = path.join(dir, 'data');
  await execFileAsync(
    path.join(bin, 'initdb'),
    ['-D', data, '-U', 'slipway', '--auth=trust', '--no-sync'],
    {
      ...user,
      cwd: dir,
    },
  );
  const port = await freePort();
  const server = spawn(
    path.join(bin, 'postgres'),
    [
      '-D',
      data,
      '-p',
      String(port),
      '-k',
      dir,
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'fsync=off',
    ],
    { ...user, cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let log = '';
  server.stderr!.on('data', (d) => (log = (log + d).slice(-4000)));
  const exited = new Promise<void>((resolve) => server.once('exit', () => resolve()));
  t.teardown(async () => {
    server.kill('SIGINT');
    await exited;
  });
  const admin = `postgres://slipway@127.0.0.1:${port}/postgres`;
  const quiet = () => undefined;
  // Refused connections while the server starts are expected; the wait below reports its own.
  const db = knex({
    client: 'pg',
    connection: admin,
    pool: { min: 0, max: 1 },
    log: { warn: quiet, error: quiet, debug: quiet, deprecate: quiet },
  });
  t.teardown(() => db.destroy());
  await waitFor(
    async () => {
      if (server.exitCode !== null) throw new Error(`postgres exited: ${log}`);
      await db.raw('select 1');
      return true;
    },
    { timeoutMs: 30_000, what: 'PostgreSQL to accept connections' },
  );
  return {
    async database(name) {
      await db.raw('create database ??', [name]);
      return `postgres://slipway@127.0.0.1:${port}/${name}`;
    },
  };
}
