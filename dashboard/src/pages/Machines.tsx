// Machines per connection: state, platform, project, uptime, idle time, address and how full
// the cache volume is, from the machines' own health reports.
import { useState } from 'react';
import type { PageProps } from '../App';
import type { Machine } from '../../../common/protocol';
import { formatAgo, formatBytes, formatDuration } from '../model';
import { href } from '../route';
import { Badge, PageState, nameOf, usePagePoll } from './common';

const running = new Set<Machine['status']>(['idle', 'starting', 'ready']);

export function MachinesPage(props: PageProps & { connectionId: string | undefined }) {
  const { api, now, connections, projects, connectionId } = props;
  const [includeDeleted, setIncludeDeleted] = useState(false);
  const machines = usePagePoll(props, `machines:${includeDeleted}`, (signal) =>
    api.machines(includeDeleted, signal),
  );
  const shown = connectionId ? connections.filter((c) => c.id === connectionId) : connections;
  return (
    <section>
      <h2>Machines</h2>
      <div className="toolbar">
        <span>Connection:</span>
        <a
          href={href({ page: 'machines', connectionId: undefined })}
          className={connectionId ? '' : 'active'}
        >
          all
        </a>
        {connections.map((c) => (
          <a
            key={c.id}
            href={href({ page: 'machines', connectionId: c.id })}
            className={connectionId === c.id ? 'active' : ''}
          >
            {c.name}
          </a>
        ))}
        <label className="toggle">
          <input
            type="checkbox"
            checked={includeDeleted}
            onChange={(e) => setIncludeDeleted(e.target.checked)}
          />
          show deleted
        </label>
      </div>
      {machines.data === undefined ? (
        <PageState polled={machines} />
      ) : (
        shown.map((c) => {
          const own = machines.data!.filter((m) => m.connectionId === c.id);
          return (
            <div key={c.id} className="group" data-connection={c.name}>
              <h3>
                {c.name} <span className="muted small">{c.provider}</span>
              </h3>
              {own.length === 0 ? (
                <p className="muted">No machines.</p>
              ) : (
                <table data-testid="machines">
                  <thead>
                    <tr>
                      <th>Machine</th>
                      <th>State</th>
                      <th>Platform</th>
                      <th>Project</th>
                      <th>Uptime</th>
                      <th>Idle</th>
                      <th>Address</th>
                      <th>Cache</th>
                    </tr>
                  </thead>
                  <tbody>
                    {own.map((m) => (
                      <MachineRow
                        key={m.id}
                        machine={m}
                        now={now}
                        project={nameOf(projects, m.projectId)}
                      />
                    ))}
                  </tbody>
                </table>
              )}
            </div>
          );
        })
      )}
    </section>
  );
}

function MachineRow({
  machine: m,
  now,
  project,
}: {
  machine: Machine;
  now: number;
  project: string;
}) {
  const up = running.has(m.status) && m.registeredAt ? now - Date.parse(m.registeredAt) : null;
  const idle = m.idleSince && running.has(m.status) ? now - Date.parse(m.idleSince) : null;
  const h = m.health;
  const used = h && h.cacheBytesTotal > 0 ? h.cacheBytesUsed / h.cacheBytesTotal : null;
  return (
    <tr data-machine={m.id}>
      <td className="mono">{m.id}</td>
      <td>
        <Badge value={m.status} title={`desired: ${m.desiredState}`} />
        {h && !h.buildkitdAlive && running.has(m.status) && (
          <div className="error small">BuildKit is down</div>
        )}
        {h?.lastEvent && <div className="muted small">{h.lastEvent}</div>}
        {m.lastHealthAt && (
          <div className="muted small">health {formatAgo(m.lastHealthAt, now)}</div>
        )}
      </td>
      <td>{m.platform}</td>
      <td>{project}</td>
      <td>{up === null ? '—' : formatDuration(up)}</td>
      <td>{idle === null ? '—' : formatDuration(idle)}</td>
      <td className="mono">{m.endpoint ?? '—'}</td>
      <td>
        {h && used !== null ? (
          <div
            className="meter"
            title={`${formatBytes(h.cacheBytesUsed)} of ${formatBytes(h.cacheBytesTotal)}`}
          >
            <span
              style={{ width: `${Math.min(100, used * 100)}%` }}
              className={used > 0.9 ? 'full' : ''}
            />
            <em>
              {formatBytes(h.cacheBytesUsed)} / {formatBytes(h.cacheBytesTotal)}
            </em>
          </div>
        ) : (
          '—'
        )}
      </td>
    </tr>
  );
}
