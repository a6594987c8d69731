// One build: its builders with path, machine, endpoint, why it waited, and every phase with
// its duration.
import type { PageProps } from '../App';
import { builderSegments, formatDuration, segmentLabel } from '../model';
import { PhaseBars, PhaseLegend, buildSpanMs } from '../components/PhaseBar';
import { href } from '../route';
import { Badge, PageState, nameOf, usePagePoll } from './common';

export function BuildPage(props: PageProps & { buildId: string }) {
  const { api, now, projects, buildId } = props;
  const polled = usePagePoll(props, `build:${buildId}`, (signal) => api.build(buildId, signal));
  const b = polled.data;
  if (b === undefined) return <PageState polled={polled} />;
  return (
    <section data-build={b.id}>
      <p>
        <a href={href({ page: 'builds' })}>← all builds</a>
      </p>
      <h2>
        Build <span className="mono">{b.id}</span> <Badge value={b.status} />
      </h2>
      <dl className="facts">
        <dt>Project</dt>
        <dd>{nameOf(projects, b.projectId)}</dd>
        <dt>Who</dt>
        <dd>{b.createdBy ?? '—'}</dd>
        <dt>Description</dt>
        <dd>{b.description ?? '—'}</dd>
        <dt>Started</dt>
        <dd>{new Date(b.createdAt).toLocaleString()}</dd>
        <dt>Finished</dt>
        <dd>{b.finishedAt ? new Date(b.finishedAt).toLocaleString() : '—'}</dd>
        <dt>Build time</dt>
        <dd>{b.buildMs === null ? '—' : formatDuration(b.buildMs)}</dd>
        {b.error && (
          <>
            <dt>Error</dt>
            <dd className="error">{b.error}</dd>
          </>
        )}
      </dl>
      <PhaseLegend />
      <PhaseBars build={b} now={now} scaleMs={Math.max(1, buildSpanMs(b, now))} />
      {b.builders.map((x) => (
        <div key={x.platform} className="group" data-platform={x.platform}>
          <h3>
            {x.platform} <Badge value={x.state} /> {x.path && <Badge value={x.path} />}
          </h3>
          {x.reason && <p>{x.reason}</p>}
          <dl className="facts">
            <dt>Machine</dt>
            <dd className="mono">{x.machineId ?? '—'}</dd>
            <dt>Endpoint</dt>
            <dd className="mono">{x.endpoint ?? '—'}</dd>
          </dl>
          <table className="phases">
            <thead>
              <tr>
                <th>Phase</th>
                <th>Took</th>
              </tr>
            </thead>
            <tbody>
              {builderSegments(b, x, now).map((seg) => (
                <tr key={seg.phase} data-phase={seg.phase}>
                  <td>{segmentLabel(seg)}</td>
                  <td>
                    {formatDuration(seg.durationMs)}
                    {seg.open && ' so far'}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      ))}
    </section>
  );
}
