// Connections: each cloud account (or this host) with its agent: version, last sync, the lease
// holder and a health verdict, plus how many machines it runs.
import type { PageProps } from '../App';
import { connectionHealth, formatAgo } from '../model';
import { href } from '../route';
import { Badge, PageState, usePagePoll } from './common';

export function ConnectionsPage(props: PageProps) {
  const { api, now, connections } = props;
  const machines = usePagePoll(props, 'connections', (signal) => api.machines(false, signal));
  if (machines.data === undefined) return <PageState polled={machines} />;
  return (
    <section>
      <h2>Connections</h2>
      {connections.length === 0 ? (
        <p className="muted">No connections yet: create one with "slipway connections create".</p>
      ) : (
        <table data-testid="connections">
          <thead>
            <tr>
              <th>Name</th>
              <th>Provider</th>
              <th>Health</th>
              <th>Agent version</th>
              <th>Last seen</th>
              <th>Lease holder</th>
              <th>Machines</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {connections.map((c) => {
              const { health, why } = connectionHealth(c, now);
              const own = machines.data!.filter((m) => m.connectionId === c.id);
              const ready = own.filter((m) => m.status === 'ready').length;
              return (
                <tr key={c.id} data-connection={c.name}>
                  <td>
                    <strong>{c.name}</strong>
                    <div className="muted mono">{c.id}</div>
                  </td>
                  <td>{c.provider}</td>
                  <td>
                    <Badge value={health} />
                    <div className="muted small">{why}</div>
                  </td>
                  <td className="mono">{c.agent?.version ?? '—'}</td>
                  <td>{c.agent ? formatAgo(c.agent.lastSeenAt, now) : '—'}</td>
                  <td>
                    {c.agent ? (
                      <>
                        <span className="mono">{c.agent.agentId}</span>
                        <div className="muted small">
                          lease {Date.parse(c.agent.leaseExpiresAt) > now ? 'until' : 'ended'}{' '}
                          {new Date(c.agent.leaseExpiresAt).toLocaleTimeString()}
                        </div>
                      </>
                    ) : (
                      '—'
                    )}
                  </td>
                  <td>
                    <a href={href({ page: 'machines', connectionId: c.id })}>
                      {own.length} ({ready} ready)
                    </a>
                  </td>
                  <td>
                    <a href={href({ page: 'audit', connectionId: c.id })}>audit trail</a>
                  </td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
    </section>
  );
}
