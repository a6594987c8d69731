// Wake-ups for long-polls. A handler subscribes to topics, re-reads its rows, and only then
// waits, so a change that lands in between is never missed. The in-process implementation serves
// one replica; PostgreSQL LISTEN/NOTIFY can implement the same interface for several.
import { EventEmitter } from 'node:events';

export const topics = {
  connection: (id: string) => `connection:${id}`,
  build: (id: string) => `build:${id}`,
  machine: (id: string) => `machine:${id}`,
};

export type WaitResult = 'changed' | 'timeout' | 'aborted';

export interface Subscription {
  /** Resolves at the first notification since subscribing (at once if one already came). */
  wait(timeoutMs: number, signal?: AbortSignal): Promise<WaitResult>;
  close(): void;
}

export interface Notifier {
  notify(topics: Iterable<string>): void;
  subscribe(topics: string[]): Subscription;
  close(): Promise<void>;
}

export class LocalNotifier implements Notifier {
  private readonly emitter = new EventEmitter();

  constructor() {
    // Every open long-poll listens; thousands are normal.
    this.emitter.setMaxListeners(0);
  }

  notify(names: Iterable<string>): void {
    for (const name of new Set(names)) this.emitter.emit(name);
  }

  async close(): Promise<void> {
    this.emitter.removeAllListeners();
  }

  subscribe(names: string[]): Subscription {
    let fired = false;
    let wake: (() => void) | undefined;
    const onEvent = () => {
      fired = true;
      wake?.();
    };
    for (const name of names) this.emitter.on(name, onEvent);
    const close = () => {
      for (const name of names) this.emitter.off(name, onEvent);
    };
    return {
      close,
      wait(timeoutMs, signal) {
        if (fired) return Promise.resolve('changed');
        if (signal?.aborted) return Promise.resolve('aborted');
        return new Promise<WaitResult>((resolve) => {
          const finish = (result: WaitResult) => {
            clearTimeout(timer);
            signal?.removeEventListener('abort', onAbort);
            wake = undefined;
            resolve(result);
          };
          const onAbort = () => finish('aborted');
          const timer = setTimeout(() => finish('timeout'), Math.max(0, timeoutMs));
          signal?.addEventListener('abort', onAbort, { once: true });
          wake = () => finish('changed');
        });
      },
    };
  }
}

/**
 * Re-reads `check` until it yields a value, a notification-free wait of `waitMs` passes, or
 * `signal` aborts; then returns the last reading of `current`.
 */
export async function longPoll<T>(
  notifier: Notifier,
  names: string[],
  waitMs: number,
  signal: AbortSignal,
  check: () => Promise<T | undefined>,
  current: () => Promise<T>,
): Promise<T> {
  const deadline = performance.now() + waitMs;
  for (;;) {
    const sub = notifier.subscribe(names);
    try {
      const value = await check();
      if (value !== undefined) return value;
      const left = deadline - performance.now();
      if (left <= 0 || signal.aborted) break;
      const result = await sub.wait(left, signal);
      if (result !== 'changed') break;
    } finally {
      sub.close();
    }
  }
  return current();
}
