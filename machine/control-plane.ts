// The machine-agent's side of the /v1 machine routes: calls through ApiClient, retried with
// backoff while the control plane is unreachable or overloaded, and turned into fatal errors
// when it says this machine's credentials are no good.
import type { Logger } from 'pino';
import { ApiClient, ApiError, type CallOptions, type ResponseOf } from '../common/api';
import { MachineAgentError, type MachineAgentErrorCode } from './errors';
import { retrying, type BackoffPolicy } from './retry';

/** Failures another attempt may cure: no answer, or the server's own trouble. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof ApiError)) return false;
  return err.status === 0 || err.status === 429 || err.status >= 500;
}

type MachineRoute = 'machineRegister' | 'machineTask' | 'machineStatus' | 'machineShutdown';

export interface ControlPlaneOptions {
  client: ApiClient;
  logger: Logger;
  signal?: AbortSignal;
  backoff?: BackoffPolicy;
}

export class ControlPlane {
  constructor(private readonly opts: ControlPlaneOptions) {}

  get url(): string {
    return this.opts.client.baseUrl;
  }

  withToken(token: string): ControlPlane {
    return new ControlPlane({ ...this.opts, client: this.opts.client.withToken(token) });
  }

  /** One call, retried on transient failures until `deadlineMs`, then `code`. */
  async call<N extends MachineRoute>(
    name: N,
    options: CallOptions<N>,
    retry: {
      what: string;
      deadlineMs: number;
      code?: MachineAgentErrorCode;
      signal?: AbortSignal;
      /**
       * Let a request already sent run to its end when the signal aborts (no new attempt starts):
       * for calls whose answer must not be lost, like registration's single-use token.
       */
      finishInFlight?: boolean;
    },
  ): Promise<ResponseOf<N>> {
    const signal = retry.signal ?? this.opts.signal;
    const requestSignal = retry.finishInFlight ? undefined : signal;
    try {
      return await retrying(
        () => this.opts.client.call(name, { ...options, signal: requestSignal }),
        {
          what: retry.what,
          deadlineMs: retry.deadlineMs,
          code: retry.code ?? 'control_plane_unreachable',
          policy: this.opts.backoff,
          signal,
          logger: this.opts.logger,
          retryable: isTransient,
        },
      );
    } catch (err) {
      if (err instanceof ApiError && err.status === 401 && name !== 'machineRegister') {
        throw new MachineAgentError(
          'machine_token_rejected',
          `the control plane at ${this.url} no longer accepts this machine's token (${err.message}); the machine was deleted or its state directory belongs to another control plane, so it must be replaced`,
        );
      }
      throw err;
    }
  }

  async close(): Promise<void> {
    await this.opts.client.close();
  }
}
