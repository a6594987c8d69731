// The audit trail of one connection: every converge with its change summary, the resources it
// touched and the Pulumi preview diff, plus drift reports, orphan removals and recoveries.
import { useState } from 'react';
import type { PageProps } from '../App';
import { auditKinds, type AuditRecord } from '../../../common/protocol';
import { formatAgo, summaryChanges } from '../model';
import { DiffView } from '../components/DiffView';
import { href } from '../route';
import { Badge, PageState, usePagePoll } from './common';

export function AuditPage(props: PageProps & { connectionId: string | undefined }) {
  const { api, now, connections } = props;
  const connection = props.connectionId
    ? connections.find((c) => c.id === props.connectionId)
    : connections[0];
  const [kind, setKind] = useState<AuditRecord['kind'] | ''>('');
  const records = usePagePoll(props, `audit:${connection?.id}:${kind}`, (signal) =>
    connection ? api.audit(connection.id, kind, signal) : Promise.resolve([]),
  );
  if (!connection) {
    return (
      <section>
        <h2>Audit trail</h2>
        <p className="muted">
          {props.connectionId
            ? `No connection ${props.connectionId} in this organization.`
            : 'No connections yet.'}
        </p>
      </section>
    );
  }
  return (
    <section>
      <h2>Audit trail</h2>
      <div className="toolbar">
        <span>Connection:</span>
        {connections.map((c) => (
          <a
            key={c.id}
            href={href({ page: 'audit', connectionId: c.id })}
            className={c.id === connection.id ? 'active' : ''}
          >
            {c.name}
          </a>
        ))}
        <label>
          Kind{' '}
          <select
            value={kind}
            onChange={(e) => setKind(e.target.value as AuditRecord['kind'] | '')}
          >
            <option value="">all</option>
            {auditKinds.map((k) => (
              <option key={k} value={k}>
                {k}
              </option>
            ))}
          </select>
        </label>
      </div>
      {records.data === undefined || records.data.length === 0 ? (
        <PageState
          polled={records}
          empty="No audit records yet: they appear when the agent converges."
        />
      ) : (
        records.data.map((r) => <AuditEntry key={r.id} record={r} now={now} />)
      )}
    </section>
  );
}

const kindTitles: Record<AuditRecord['kind'], string> = {
  converge: 'Converge',
  drift: 'Drift detected',
  orphans: 'Orphans removed',
  recovery: 'Recovery after a crash',
};

function AuditEntry({ record: r, now }: { record: AuditRecord; now: number }) {
  const changes = summaryChanges(r);
  // Diffs of changes and failures are what a reader came for; no-change runs stay folded.
  const open = changes.length > 0 || r.error !== null;
  return (
    <article className="audit" data-audit={r.id} data-kind={r.kind}>
      <header>
        <strong>{kindTitles[r.kind]}</strong>
        {r.generation !== null && <span className="muted">generation {r.generation}</span>}
        {r.result && <Badge value={r.result} />}
        <span className="muted" title={new Date(r.createdAt).toLocaleString()}>
          {formatAgo(r.createdAt, now)}
        </span>
        {r.agentId && <span className="muted mono small">agent {r.agentId}</span>}
      </header>
      <div className="summary" data-testid="summary">
        {changes.length === 0 ? (
          <span className="chip">no changes</span>
        ) : (
          changes.map(([op, n]) => (
            <span key={op} className={`chip chip-${op}`}>
              {op} {n}
            </span>
          ))
        )}
        {(r.summary.same ?? 0) > 0 && <span className="chip">unchanged {r.summary.same}</span>}
      </div>
      {r.error && <p className="error">{r.error}</p>}
      {r.steps.length > 0 && (
        <table className="steps">
          <thead>
            <tr>
              <th>Change</th>
              <th>Type</th>
              <th>Resource</th>
              <th>Properties</th>
            </tr>
          </thead>
          <tbody>
            {r.steps.map((s) => (
              <tr key={`${s.op}-${s.urn}`}>
                <td>
                  <span className={`chip chip-${s.op}`}>{s.op}</span>
                </td>
                <td className="mono small">{s.type}</td>
                <td className="mono">{s.name}</td>
                <td className="small">{s.diffs?.join(', ') ?? ''}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <details open={open}>
        <summary>Preview diff</summary>
        <DiffView diff={r.diff} />
      </details>
    </article>
  );
}
