// Pieces the pages share: polling that reports to the header, names for ids, status badges.
import { useEffect, useEffectEvent } from 'react';
import type { PageProps } from '../App';
import { usePoll, type Polled } from '../poll';

/** usePoll for a page: failures reach the shell (sign-out on 401), freshness the header. */
export function usePagePoll<T>(
  props: PageProps,
  key: string,
  load: (signal: AbortSignal) => Promise<T>,
): Polled<T> {
  const polled = usePoll(key, load, props.onError);
  const report = useEffectEvent((at: number | undefined) => props.onUpdated(at));
  useEffect(() => report(polled.updatedAt), [polled.updatedAt]);
  useEffect(() => () => report(undefined), []);
  return polled;
}

export function nameOf(items: Array<{ id: string; name: string }>, id: string | null): string {
  if (id === null) return '—';
  return items.find((x) => x.id === id)?.name ?? id;
}

export function Badge({ value, title }: { value: string; title?: string }) {
  return (
    <span className={`badge badge-${value}`} title={title}>
      {value}
    </span>
  );
}

export function PageState({ polled, empty }: { polled: Polled<unknown>; empty?: string }) {
  if (polled.error && polled.data === undefined) {
    return (
      <p className="error" role="alert">
        {polled.error.message}
      </p>
    );
  }
  if (polled.data === undefined) return <p className="muted">Loading…</p>;
  return empty ? <p className="muted">{empty}</p> : null;
}
