// Builds: who started them, for which platforms, how long each phase took and the result, with
// charts of acquire time (hot, warm, cold) and of build counts over time above the list.
import type { PageProps } from '../App';
import { acquirePoints, buildCounts, formatAgo, formatDuration } from '../model';
import { AcquireChart, BuildCountChart } from '../components/Charts';
import { PhaseBars, PhaseLegend, buildSpanMs } from '../components/PhaseBar';
import { href } from '../route';
import { Badge, PageState, nameOf, usePagePoll } from './common';
import { buildHistoryLimit } from '../api';

export function BuildsPage(props: PageProps) {
  const { api, now, projects } = props;
  const builds = usePagePoll(props, 'builds', (signal) => api.builds(signal));
  if (builds.data === undefined) return <PageState polled={builds} />;
  const list = builds.data;
  const scale = Math.max(1, ...list.map((b) => buildSpanMs(b, now)));
  return (
    <section>
      <h2>Builds</h2>
      <div className="charts">
        <div>
          <h3>Acquire time by path</h3>
          <AcquireChart points={acquirePoints(list)} now={now} />
        </div>
        <div>
          <h3>Builds over time</h3>
          <BuildCountChart buckets={buildCounts(list, now)} />
        </div>
      </div>
      <p className="muted small">
        Charts cover the latest {Math.min(list.length, buildHistoryLimit)} builds.
      </p>
      {list.length === 0 ? (
        <p className="muted">No builds yet: run "slipway build".</p>
      ) : (
        <>
          <PhaseLegend />
          <table data-testid="builds">
            <thead>
              <tr>
                <th>Build</th>
                <th>Status</th>
                <th>Who</th>
                <th>Project</th>
                <th>Platforms</th>
                <th className="wide">Phases</th>
                <th>Result</th>
              </tr>
            </thead>
            <tbody>
              {list.map((b) => (
                <tr key={b.id} data-build={b.id}>
                  <td>
                    <a className="mono" href={href({ page: 'build', buildId: b.id })}>
                      {b.id}
                    </a>
                    <div className="muted small">{formatAgo(b.createdAt, now)}</div>
                  </td>
                  <td>
                    <Badge value={b.status} />
                  </td>
                  <td>{b.createdBy ?? '—'}</td>
                  <td>{nameOf(projects, b.projectId)}</td>
                  <td>
                    {b.builders.map((x) => (
                      <div key={x.platform} className="small">
                        {x.platform} {x.path && <Badge value={x.path} />}
                      </div>
                    ))}
                  </td>
                  <td className="wide">
                    <PhaseBars build={b} now={now} scaleMs={scale} />
                  </td>
                  <td>
                    {b.finishedAt
                      ? `${b.status} after ${formatDuration(Date.parse(b.finishedAt) - Date.parse(b.createdAt))}`
                      : b.builders.find((x) => x.state === 'pending')?.reason || '—'}
                    {b.error && <div className="error small">{b.error}</div>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
