// Long-poll wake-ups across replicas on PostgreSQL: notifications go out with pg_notify on the
// `slipway` channel and come back through one LISTEN connection per replica, into the same
// in-process notifier the long-polls wait on. A replica's own notifications wake its long-polls
// at once, without the round trip.
import { randomUUID } from 'node:crypto';
import { Client } from 'pg';
import type { Logger } from 'pino';
import type { Db } from './db';
import { LocalNotifier, type Notifier, type Subscription } from './notifier';

const channel = 'slipway';
const reconnectMs = 1000;

export class PostgresNotifier implements Notifier {
  private readonly local = new LocalNotifier();
  private readonly replica = randomUUID();
  private client: Client | undefined;
  private closed = false;
  private reconnect: NodeJS.Timeout | undefined;

  private constructor(
    private readonly db: Db,
    private readonly url: string,
    private readonly log: Logger,
  ) {}

  static async start(db: Db, url: string, log: Logger): Promise<PostgresNotifier> {
    const notifier = new PostgresNotifier(db, url, log);
    await notifier.listen();
    return notifier;
  }

  notify(topics: Iterable<string>): void {
    const names = [...new Set(topics)];
    this.local.notify(names);
    // A few notifications carry every topic (names hold no spaces), under PostgreSQL's 8000-byte
    // payload limit, rather than one query per topic competing with requests for the pool.
    for (const payload of payloads(this.replica, names)) {
      this.db.raw('select pg_notify(?, ?)', [channel, payload]).catch((err: unknown) =>
        // Other replicas then find out when their long-polls end; nothing is lost, only later.
        this.log.warn(
          { err, topics: names.length },
          'could not send a wake-up to the other replicas',
        ),
      );
    }
  }

  subscribe(topics: string[]): Subscription {
    return this.local.subscribe(topics);
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.reconnect);
    await this.client?.end().catch(() => undefined);
  }

  private async listen(): Promise<void> {
    const client = new Client({ connectionString: this.url });
    client.on('notification', (msg) => {
      const [from, ...names] = (msg.payload ?? '').split(' ');
      if (from !== this.replica && names.length > 0) this.local.notify(names);
    });
    client.on('error', (err) => {
      this.log.warn({ err }, 'the LISTEN connection failed; reconnecting');
      this.client = undefined;
      client.end().catch(() => undefined);
      this.scheduleReconnect();
    });
    await client.connect();
    await client.query(`LISTEN ${channel}`);
    this.client = client;
  }

  private scheduleReconnect(): void {
    if (this.closed || this.reconnect) return;
    this.reconnect = setTimeout(() => {
      this.reconnect = undefined;
      this.listen().catch((err: unknown) => {
        this.log.warn({ err }, 'could not reconnect the LISTEN connection');
        this.scheduleReconnect();
      });
    }, reconnectMs);
    this.reconnect.unref();
  }
}

const maxPayloadBytes = 7900;

/** `<replica> <topic> <topic> ...` lines, each under the payload limit. */
function payloads(replica: string, names: string[]): string[] {
  const out: string[] = [];
  let current = replica;
  for (const name of names) {
    if (current !== replica && current.length + 1 + name.length > maxPayloadBytes) {
      out.push(current);
      current = replica;
    }
    current += ` ${name}`;
  }
  if (current !== replica) out.push(current);
  return out;
}
