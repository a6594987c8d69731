// Live updates: re-runs a loader against the API on an interval while the page is visible,
// keeping the last good data on screen when one poll fails.
import { useEffect, useEffectEvent, useState } from 'react';

/** How often pages refresh; `?poll=<ms>` in the address overrides it (tests, slow links). */
export const pollIntervalMs = (() => {
  const asked = Number(new URLSearchParams(window.location.search).get('poll'));
  return Number.isFinite(asked) && asked >= 250 ? asked : 3000;
})();

export interface Polled<T> {
  data: T | undefined;
  error: Error | undefined;
  updatedAt: number | undefined;
}

/**
 * Polls `load` until the component unmounts or `key` changes (a new key starts afresh, e.g.
 * another connection's audit trail). `onError` sees every failed poll (sign-out on 401).
 */
export function usePoll<T>(
  key: string,
  load: (signal: AbortSignal) => Promise<T>,
  onError?: (err: Error) => void,
): Polled<T> {
  const [state, setState] = useState<Polled<T> & { key: string }>({
    key,
    data: undefined,
    error: undefined,
    updatedAt: undefined,
  });
  const loadNow = useEffectEvent(load);
  const failed = useEffectEvent((err: Error) => onError?.(err));

  useEffect(() => {
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      if (document.visibilityState === 'visible') {
        try {
          const data = await loadNow(controller.signal);
          if (controller.signal.aborted) return;
          setState({ key, data, error: undefined, updatedAt: Date.now() });
        } catch (err) {
          if (controller.signal.aborted) return;
          const error = err instanceof Error ? err : new Error(String(err));
          setState((s) => (s.key === key ? { ...s, error } : { key, ...empty, error }));
          failed(error);
        }
      }
      timer = setTimeout(tick, pollIntervalMs);
    };
    void tick();
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [key]);
  // Data of a previous key is never shown under a new one.
  return state.key === key ? state : empty;
}

const empty = { data: undefined, error: undefined, updatedAt: undefined };

/** The current time, re-read every second so "5 s ago" keeps counting between polls. */
export function useNow(): number {
  const [now, setNow] = useState(() => Date.now());
  useEffect(() => {
    const timer = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(timer);
  }, []);
  return now;
}
