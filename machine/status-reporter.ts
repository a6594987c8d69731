// Sends the machine's status (BuildKit state and health) to the control plane: on an interval,
// and at once whenever something changes (a task applied, buildkitd crashed or came back). A
// failed send is retried with backoff, always with the newest status, never a stale one.
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import type { z } from 'zod';
import type { machineStatusSchema } from '../common/protocol';
import { MachineAgentError, errorMessage } from './errors';
import { backoffDelay, type BackoffPolicy } from './retry';

export type MachineStatusBody = z.input<typeof machineStatusSchema>;

export interface StatusReporterOptions {
  snapshot: () => Promise<MachineStatusBody>;
  send: (status: MachineStatusBody, signal: AbortSignal) => Promise<void>;
  intervalMs: number;
  backoff: BackoffPolicy;
  logger: Logger;
}

export class StatusReporter {
  private dirty = false;
  private wake: (() => void) | undefined;

  constructor(private readonly opts: StatusReporterOptions) {}

  /** Something changed: report it now rather than at the next interval. */
  poke(): void {
    this.dirty = true;
    this.wake?.();
  }

  private async sleep(ms: number, signal: AbortSignal): Promise<void> {
    if (this.dirty) return;
    const woken = new Promise<void>((resolve) => (this.wake = resolve));
    const timer = new AbortController();
    await Promise.race([
      woken,
      delay(ms, undefined, { signal: AbortSignal.any([signal, timer.signal]) }).catch(
        () => undefined,
      ),
    ]);
    timer.abort();
    this.wake = undefined;
  }

  /** Reports until `signal` aborts; rejects only with an error no retry can fix (token rejected). */
  async run(signal: AbortSignal): Promise<void> {
    let failures = 0;
    while (!signal.aborted) {
      this.dirty = false;
      try {
        await this.opts.send(await this.opts.snapshot(), signal);
        failures = 0;
      } catch (err) {
        if (signal.aborted) return;
        if (err instanceof MachineAgentError && err.fatal) throw err;
        const retryInMs = backoffDelay(failures++, this.opts.backoff);
        this.opts.logger.warn({ err: errorMessage(err), retryInMs }, 'could not report status');
        await this.sleep(Math.min(retryInMs, this.opts.intervalMs), signal);
        continue;
      }
      await this.sleep(this.opts.intervalMs, signal);
    }
  }

  /** One last report (at shutdown), within the caller's signal. */
  async sendNow(signal: AbortSignal): Promise<void> {
    await this.opts.send(await this.opts.snapshot(), signal);
  }
}
