// The agent's side of POST /v1/agent/sync: an endless loop that carries the observation and the
// undelivered reports, long-polls for the desired fleet (the control plane answers at once when
// a newer generation exists) and keeps the connection's lease, also while an update runs.
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { ApiError, type ApiClient } from '../common/api';
import { defaultLongPollSeconds, type Observation, type SyncResponse } from '../common/protocol';
import type { AgentStateStore } from './state';

export type HeldLease = Extract<SyncResponse, { lease: 'held' }>;

export class AgentFatalError extends Error {
  constructor(
    readonly code: 'unauthorized' | 'invalid_config' | 'invalid_state',
    message: string,
  ) {
    super(message);
  }
}

export interface SyncerOptions {
  api: ApiClient;
  store: AgentStateStore;
  agentVersion: string;
  /** What exists now; called before every sync. */
  observe: () => Promise<Observation>;
  onFleet: (held: HeldLease) => void;
  /** Another agent holds the connection. */
  onLeaseLost: (reason: string) => void;
  logger: Logger;
  longPollSeconds?: number;
}

/** Backoff after a failed sync: 0.5 s doubling to 30 s. */
function backoffMs(failures: number): number {
  return Math.min(500 * 2 ** Math.max(0, failures - 1), 30_000);
}

export class Syncer {
  private knownGeneration = 0;
  private inFlight: AbortController | undefined;

  constructor(private readonly opts: SyncerOptions) {}

  /** Sends at once: a report is waiting, or the observation changed. */
  kick(): void {
    // The control plane ignores reports it already recorded, so a cut call is simply repeated.
    this.inFlight?.abort();
  }

  /** One sync call; the long-poll is skipped while reports wait for delivery. */
  async syncOnce(signal: AbortSignal, wait?: number): Promise<SyncResponse> {
    const { api, store } = this.opts;
    const sent = store.pending();
    const observation = await this.opts.observe();
    const waitSeconds =
      wait ?? (store.hasPending() ? 0 : (this.opts.longPollSeconds ?? defaultLongPollSeconds));
    const res = await api.call('agentSync', {
      query: { wait: waitSeconds },
      body: {
        agentId: store.agentId,
        agentVersion: this.opts.agentVersion,
        knownGeneration: this.knownGeneration,
        observation,
        applies: sent.applies,
        ...(sent.drift ? { drift: sent.drift } : {}),
      },
      signal,
    });
    await store.delivered(sent);
    if (res.lease === 'held') {
      this.knownGeneration = Math.max(this.knownGeneration, res.fleet.generation);
    }
    return res;
  }

  async run(signal: AbortSignal): Promise<void> {
    const log = this.opts.logger;
    let failures = 0;
    while (!signal.aborted) {
      const call = new AbortController();
      this.inFlight = call;
      const callSignal = AbortSignal.any([signal, call.signal]);
      try {
        const res = await this.syncOnce(callSignal);
        failures = 0;
        if (res.lease === 'held') {
          this.opts.onFleet(res);
        } else {
          log.warn({ reason: res.reason, retryAfterMs: res.retryAfterMs }, 'waiting for the lease');
          this.opts.onLeaseLost(res.reason);
          await delay(res.retryAfterMs, undefined, { signal }).catch(() => undefined);
        }
      } catch (err) {
        if (signal.aborted) break;
        if (call.signal.aborted) continue;
        if (err instanceof ApiError && (err.code === 'unauthorized' || err.code === 'forbidden')) {
          throw new AgentFatalError(
            'unauthorized',
            `the control plane refused the connection token (${err.message}); set a valid SLIPWAY_CONNECTION_TOKEN`,
          );
        }
        failures += 1;
        const wait = backoffMs(failures);
        log.warn(
          { err: err instanceof Error ? err.message : String(err), retryInMs: wait },
          'sync failed',
        );
        // A kick (a report to deliver) cuts the wait short.
        await delay(wait, undefined, { signal: callSignal }).catch(() => undefined);
      } finally {
        this.inFlight = undefined;
      }
    }
  }
}
