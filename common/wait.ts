// Waiting on a condition with a deadline, never on a fixed sleep.
import { setTimeout as delay } from 'node:timers/promises';

export class DeadlineError extends Error {
  readonly code = 'deadline_exceeded';
}

export interface WaitOptions {
  timeoutMs: number;
  /** First pause between checks (25 ms); it doubles after each check up to `maxIntervalMs`. */
  intervalMs?: number;
  /** Longest pause (500 ms); equal to `intervalMs` for a window that must not be missed. */
  maxIntervalMs?: number;
  /** What is being waited for, for the error message. */
  what: string;
  signal?: AbortSignal;
}

/**
 * Re-checks `condition` until it returns a value other than undefined, null or false (a lookup
 * that found nothing yet, like `.first()` or `?.registeredAt`), or the deadline.
 */
export async function waitFor<T>(
  condition: () => Promise<T | undefined | null | false> | T | undefined | null | false,
  opts: WaitOptions,
): Promise<T> {
  const deadline = performance.now() + opts.timeoutMs;
  let interval = opts.intervalMs ?? 25;
  let lastError: unknown;
  for (;;) {
    opts.signal?.throwIfAborted();
    try {
      const value = await condition();
      if (value !== undefined && value !== null && value !== false) return value;
    } catch (err) {
      lastError = err;
    }
    const left = deadline - performance.now();
    if (left <= 0) {
      const why = lastError instanceof Error ? `: ${lastError.message}` : '';
      throw new DeadlineError(
        `timed out after ${opts.timeoutMs} ms waiting for ${opts.what}${why}`,
      );
    }
    await delay(Math.min(interval, left), undefined, { signal: opts.signal });
    interval = Math.min(interval * 2, opts.maxIntervalMs ?? 500);
  }
}
