// The database: knex over SQLite (`<dataDir>/slipway.db`, WAL, busy timeout, foreign keys) by
// default, or PostgreSQL given a URL, with the migrations in migrations.ts. Queries stay within
// what knex renders for both: times are epoch milliseconds in bigint columns, JSON is text.
import path from 'node:path';
import knex, { type Knex } from 'knex';
import { migrationSource } from './migrations';

export type Db = Knex;

export const databaseFile = 'slipway.db';

interface SqliteConnection {
  run(sql: string, cb: (err: Error | null) => void): void;
}

/** PostgreSQL when `url` is given (postgres://...), else SQLite in the data directory. */
export async function openDatabase(dataDir: string, url?: string): Promise<Db> {
  const db = url
    ? knex({ client: 'pg', connection: url, pool: { min: 0, max: 10 } })
    : sqlite(dataDir);
  try {
    await db.migrate.latest({ migrationSource });
  } catch (err) {
    await db.destroy();
    throw err;
  }
  return db;
}

function sqlite(dataDir: string): Db {
  return knex({
    client: 'sqlite3',
    connection: { filename: path.join(dataDir, databaseFile) },
    useNullAsDefault: true,
    // One connection: SQLite has a single writer anyway, and transactions then serialize in
    // process instead of failing with SQLITE_BUSY.
    pool: {
      min: 1,
      max: 1,
      afterCreate(conn: SqliteConnection, done: (err: Error | null, conn: unknown) => void) {
        const pragmas = [
          'PRAGMA journal_mode = WAL',
          'PRAGMA synchronous = NORMAL',
          'PRAGMA busy_timeout = 5000',
          'PRAGMA foreign_keys = ON',
        ];
        const next = (i: number) => {
          if (i === pragmas.length) return done(null, conn);
          conn.run(pragmas[i]!, (err) => (err ? done(err, conn) : next(i + 1)));
        };
        next(0);
      },
    },
  });
}

/** Numbers from bigint columns (PostgreSQL returns them as strings). */
/** PostgreSQL's "could not serialize access": another transaction changed what this one read. */
const serializationFailure = '40001';

/**
 * A transaction that sees one consistent state. SQLite serializes every transaction already; on
 * PostgreSQL it reads one snapshot (repeatable read) and starts over, up to `attempts` times, when
 * another transaction changed a row it writes. `fn` must be safe to run again.
 */
export async function snapshotTransaction<T>(
  db: Db,
  fn: (trx: Knex.Transaction) => Promise<T>,
  opts: { attempts?: number; onRetry?: (attempt: number) => void } = {},
): Promise<T> {
  const postgres = db.client.config.client === 'pg';
  for (let attempt = 1; ; attempt++) {
    try {
      return await db.transaction(fn, postgres ? { isolationLevel: 'repeatable read' } : undefined);
    } catch (err) {
      const conflict = (err as { code?: string }).code === serializationFailure;
      if (!conflict || attempt >= (opts.attempts ?? 5)) throw err;
      opts.onRetry?.(attempt);
    }
  }
}

export function num(value: unknown): number {
  return typeof value === 'number' ? value : Number(value);
}

export function numOrNull(value: unknown): number | null {
  return value === null || value === undefined ? null : num(value);
}

export function iso(ms: number): string {
  return new Date(ms).toISOString();
}

export function isoOrNull(ms: unknown): string | null {
  return ms === null || ms === undefined ? null : iso(num(ms));
}

export function json<T>(text: unknown, fallback: T): T {
  return typeof text === 'string' ? (JSON.parse(text) as T) : fallback;
}
