// The control plane as its own process (`slipway server` through tsx) on a fixed loopback port and
// a data directory that outlive it, so a test can kill it with SIGKILL at any moment and start it
// again where it was. Its organization is made before the first start, straight in the database,
// so no token is ever printed; its logs (debug level) and stderr are kept in files for scanning.
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { openSync, closeSync, readFileSync } from 'node:fs';
import path from 'node:path';
import type { ExecutionContext } from 'ava';
import sqlite3 from 'sqlite3';
import { ApiClient } from '../../common/api';
import { freePort } from '../../common/net';
import { waitFor } from '../../common/wait';
import { bootstrapOrganization } from '../../control-plane/bootstrap';
import { databaseFile, openDatabase } from '../../control-plane/db';
import { tempDir } from './tmp';

const root = path.resolve(__dirname, '..', '..');

export interface ControlPlaneProcess {
  url: string;
  dataDir: string;
  /** pino JSON lines of every run so far. */
  logFile: string;
  stderrFile: string;
  userToken: string;
  organizationId: string;
  /** The organization's admin, as the CLI. */
  user: ApiClient;
  /** Without a token, as a machine registering. */
  anonymous: ApiClient;
  /** A client with another token (closed at teardown). */
  client(token?: string): ApiClient;
  running(): boolean;
  /** Starts it (again) and waits until /healthz answers. */
  start(): Promise<void>;
  /** SIGKILL, as a crash; resolves once it is gone. */
  kill(): Promise<void>;
  /** SIGTERM; resolves with its exit code. */
  stop(): Promise<number | null>;
  log(): string;
  stderr(): string;
}

export async function startControlPlaneProcess(t: ExecutionContext): Promise<ControlPlaneProcess> {
  const dataDir = await tempDir(t, 'cp-process');
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const logFile = path.join(dataDir, 'server.log');
  const stderrFile = path.join(dataDir, 'server.stderr');
  const db = await openDatabase(dataDir);
  const { organization, token } = await bootstrapOrganization(db, 'acme').finally(() =>
    db.destroy(),
  );
  let child: ChildProcess | undefined;
  let exited: Promise<[number | null, NodeJS.Signals | null]> = Promise.resolve([null, null]);
  const clients: ApiClient[] = [];
  const client = (tok?: string) => {
    const c = new ApiClient({ baseUrl: url, token: tok });
    clients.push(c);
    return c;
  };
  const running = () => !!child && child.exitCode === null && child.signalCode === null;

  const cp: ControlPlaneProcess = {
    url,
    dataDir,
    logFile,
    stderrFile,
    userToken: token,
    organizationId: organization.id,
    user: client(token),
    anonymous: client(),
    client,
    running,
    async start() {
      if (running()) throw new Error('the control plane is already running');
      const out = openSync(logFile, 'a');
      const err = openSync(stderrFile, 'a');
      try {
        child = spawn(
          process.execPath,
          [
            '--import',
            'tsx',
            'control-plane/main.ts',
            '--data-dir',
            dataDir,
            '--listen',
            `127.0.0.1:${port}`,
          ],
          {
            cwd: root,
            stdio: ['ignore', out, err],
            env: { ...process.env, SLIPWAY_LOG_LEVEL: 'debug' },
          },
        );
      } finally {
        closeSync(out);
        closeSync(err);
      }
      exited = once(child, 'exit') as Promise<[number | null, NodeJS.Signals | null]>;
      const started = child;
      await waitFor(
        async () => {
          if (started.exitCode !== null) {
            throw new Error(`the control plane exited: ${cp.stderr().slice(-2000)}`);
          }
          return (await fetch(`${url}/healthz`)).ok;
        },
        { timeoutMs: 90_000, what: 'the control plane to answer /healthz' },
      );
    },
    async kill() {
      if (!running()) return;
      child!.kill('SIGKILL');
      await exited;
    },
    async stop() {
      if (!running()) return child?.exitCode ?? null;
      child!.kill('SIGTERM');
      const [code] = await exited;
      return code;
    },
    log: () => readFileSync(logFile, 'utf8'),
    stderr: () => readFileSync(stderrFile, 'utf8'),
  };
  t.teardown(async () => {
    await Promise.all(clients.map((c) => c.close()));
    if (running()) {
      child!.kill('SIGKILL');
      await exited;
    }
  });
  await cp.start();
  return cp;
}

/** `PRAGMA integrity_check` of a control plane's SQLite file, read-only beside the server. */
export function integrityCheck(dataDir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(
      path.join(dataDir, databaseFile),
      sqlite3.OPEN_READONLY,
      (err) => {
        if (err) return reject(err);
        db.all('PRAGMA integrity_check', (queryErr, rows: Record<string, string>[]) => {
          db.close();
          if (queryErr) return reject(queryErr);
          resolve(rows.map((r) => Object.values(r)[0]).join('; '));
        });
      },
    );
  });
}

/** The tables that hold what clients wrote (migrations' own bookkeeping left out). */
export const dataTables = [
  'organizations',
  'tokens',
  'connections',
  'projects',
  'volumes',
  'machines',
  'builds',
  'builder_requests',
  'audit_records',
  'capacity_failures',
];

/**
 * Columns that change with signs of life and the passage of time, not with what a client asked:
 * a CLI's heartbeat, a machine's contact, a token's use, a timed planner pass, an agent's lease.
 */
export const volatileColumns = [
  'last_seen_at',
  'session_at',
  'last_used_at',
  'token_used_at',
  'plan_version',
  'agent_last_seen_at',
  'lease_expires_at',
  'last_health_at',
  'health',
];

/** Every row of every table, read-only beside the running server, volatile columns left out. */
export function databaseSnapshot(dataDir: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const db = new sqlite3.Database(
      path.join(dataDir, databaseFile),
      sqlite3.OPEN_READONLY,
      (err) => {
        if (err) return reject(err);
        const out: Record<string, unknown[]> = {};
        let left = dataTables.length;
        for (const table of dataTables) {
          db.all(
            `SELECT * FROM ${table} ORDER BY rowid`,
            (queryErr, rows: Record<string, unknown>[]) => {
              if (queryErr) {
                left = -1;
                db.close();
                return reject(queryErr);
              }
              out[table] = rows.map((r) => {
                for (const c of volatileColumns) delete r[c];
                return r;
              });
              if (--left === 0) {
                db.close();
                // In the tables' order, whichever query finished first.
                resolve(JSON.stringify(dataTables.map((name) => [name, out[name]])));
              }
            },
          );
        }
      },
    );
  });
}
