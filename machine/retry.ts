// Retrying with jittered exponential backoff under a deadline: no tight loops (every retry waits),
// no silent waits (every failure is logged with its reason), no endless ones (a deadline ends it
// with the last reason).
import { setTimeout as delay } from 'node:timers/promises';
import type { Logger } from 'pino';
import { MachineAgentError, errorMessage, type MachineAgentErrorCode } from './errors';

export interface BackoffPolicy {
  initialMs: number;
  maxMs: number;
}

export const defaultBackoff: BackoffPolicy = { initialMs: 500, maxMs: 30_000 };

/**
 * The wait before retry number `attempt` (0-based): half of an exponentially growing ceiling is
 * fixed, the other half random, so a fleet of machines that lost the control plane together
 * does not come back in lockstep, and no retry follows another at once.
 */
export function backoffDelay(
  attempt: number,
  policy: BackoffPolicy,
  random: () => number = Math.random,
): number {
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** Math.min(attempt, 30));
  return Math.round(ceiling / 2 + (random() * ceiling) / 2);
}

export interface RetryOptions {
  /** What is being attempted, for logs and the final error ("register with the control plane"). */
  what: string;
  deadlineMs: number;
  /** Code of the error thrown when the deadline passes. */
  code: MachineAgentErrorCode;
  policy?: BackoffPolicy;
  signal?: AbortSignal;
  logger: Logger;
  /** Errors for which another attempt cannot help are thrown at once. */
  retryable: (err: unknown) => boolean;
}

export async function retrying<T>(
  fn: (attempt: number) => Promise<T>,
  opts: RetryOptions,
): Promise<T> {
  const policy = opts.policy ?? defaultBackoff;
  const started = performance.now();
  for (let attempt = 0; ; attempt++) {
    opts.signal?.throwIfAborted();
    try {
      return await fn(attempt);
    } catch (err) {
      if (opts.signal?.aborted || !opts.retryable(err)) throw err;
      const elapsed = performance.now() - started;
      const wait = backoffDelay(attempt, policy);
      if (elapsed + wait > opts.deadlineMs) {
        throw new MachineAgentError(
          opts.code,
          `gave up trying to ${opts.what} after ${Math.round(elapsed / 1000)} s and ${attempt + 1} attempts: ${errorMessage(err)}`,
        );
      }
      opts.logger.warn(
        { attempt: attempt + 1, retryInMs: wait, err: errorMessage(err) },
        `could not ${opts.what}; retrying`,
      );
      await delay(wait, undefined, { signal: opts.signal });
    }
  }
}
