// The dashboard shell: sign-in, the header with the organization and navigation, live-update
// status, and the page the address names. Every request carries the signed-in user's token, so
// every page shows that organization's data only.
import { useCallback, useEffect, useMemo, useState, type FormEvent } from 'react';
import { DashboardApiError, dashboardApi, type DashboardApi } from './api';
import { formatAgo } from './model';
import { useNow, usePoll } from './poll';
import { href, parseRoute, type Route } from './route';
import { signIn, signOut, storedToken, type Session } from './session';
import type { Connection, Project } from '../../common/protocol';
import { ConnectionsPage } from './pages/Connections';
import { MachinesPage } from './pages/Machines';
import { BuildsPage } from './pages/Builds';
import { BuildPage } from './pages/Build';
import { AuditPage } from './pages/Audit';
import { PageState } from './pages/common';

/** What every page needs: the connections and projects, for names and links. */
export interface PageProps {
  api: DashboardApi;
  now: number;
  connections: Connection[];
  projects: Project[];
  onError: (err: Error) => void;
  onUpdated: (at: number | undefined) => void;
}

function useRoute(): Route {
  const [route, setRoute] = useState(() => parseRoute(window.location.hash));
  useEffect(() => {
    const onChange = () => setRoute(parseRoute(window.location.hash));
    window.addEventListener('hashchange', onChange);
    return () => window.removeEventListener('hashchange', onChange);
  }, []);
  return route;
}

export function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [restoring, setRestoring] = useState(() => storedToken() !== null);
  const [notice, setNotice] = useState<string | null>(null);

  // A token kept from earlier in this tab is checked again before any page shows.
  useEffect(() => {
    const token = storedToken();
    if (!token) return;
    signIn(token)
      .then(setSession)
      .catch((err: Error) => {
        signOut();
        setNotice(err.message);
      })
      .finally(() => setRestoring(false));
  }, []);

  const end = useCallback((why: string | null) => {
    signOut();
    setSession(null);
    setNotice(why);
  }, []);

  if (restoring) return <p className="center muted">Signing in…</p>;
  if (!session) return <SignIn notice={notice} onSignedIn={setSession} />;
  return <Dashboard session={session} onSignOut={end} />;
}

function SignIn({
  notice,
  onSignedIn,
}: {
  notice: string | null;
  onSignedIn: (s: Session) => void;
}) {
  const [token, setToken] = useState('');
  const [error, setError] = useState<string | null>(notice);
  const [busy, setBusy] = useState(false);
  const submit = async (e: FormEvent) => {
    e.preventDefault();
    setBusy(true);
    setError(null);
    try {
      onSignedIn(await signIn(token));
    } catch (err) {
      setError(err instanceof Error ? err.message : String(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <main className="signin">
      <form onSubmit={submit} aria-label="sign in">
        <h1>Slipway</h1>
        <p className="muted">Sign in with a user token of your organization.</p>
        <label htmlFor="token">User token</label>
        <input
          id="token"
          name="token"
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder="swu_…"
          value={token}
          onChange={(e) => setToken(e.target.value)}
        />
        <button type="submit" disabled={busy || token.trim() === ''}>
          {busy ? 'Checking…' : 'Sign in'}
        </button>
        {error && (
          <p className="error" role="alert">
            {error}
          </p>
        )}
      </form>
    </main>
  );
}

const nav: Array<[Route['page'], string, Route]> = [
  ['connections', 'Connections', { page: 'connections' }],
  ['machines', 'Machines', { page: 'machines', connectionId: undefined }],
  ['builds', 'Builds', { page: 'builds' }],
  ['audit', 'Audit trail', { page: 'audit', connectionId: undefined }],
];

function Dashboard({
  session,
  onSignOut,
}: {
  session: Session;
  onSignOut: (why: string | null) => void;
}) {
  const route = useRoute();
  const now = useNow();
  const api = useMemo(() => dashboardApi(session.token), [session.token]);
  const [pageUpdatedAt, setPageUpdatedAt] = useState<number | undefined>();

  // A revoked token ends the session instead of leaving stale data on screen.
  const onError = useCallback(
    (err: Error) => {
      if (err instanceof DashboardApiError && err.status === 401) {
        onSignOut('The control plane no longer accepts this token; sign in again.');
      }
    },
    [onSignOut],
  );
  const base = usePoll(
    'base',
    async (signal) => {
      const [connections, projects] = await Promise.all([
        api.connections(signal),
        api.projects(signal),
      ]);
      return { connections, projects };
    },
    onError,
  );

  const active = route.page === 'build' ? 'builds' : route.page;
  const props: PageProps | undefined = base.data && {
    api,
    now,
    connections: base.data.connections,
    projects: base.data.projects,
    onError,
    onUpdated: setPageUpdatedAt,
  };
  const updated = [base.updatedAt, pageUpdatedAt].every((t) => t !== undefined)
    ? Math.min(base.updatedAt!, pageUpdatedAt!)
    : undefined;
  const problem = base.error;

  return (
    <>
      <header className="top">
        <a className="brand" href={href({ page: 'connections' })}>
          Slipway
        </a>
        <span className="org" data-testid="organization">
          {session.organization.name}
        </span>
        <nav>
          {nav.map(([page, label, target]) => (
            <a key={page} href={href(target)} className={active === page ? 'active' : undefined}>
              {label}
            </a>
          ))}
        </nav>
        <span className={`live${problem ? ' live-error' : ''}`} data-testid="live">
          {problem
            ? `not updating: ${problem.message}`
            : updated
              ? `live · updated ${formatAgo(new Date(updated).toISOString(), now)}`
              : 'loading…'}
        </span>
        <button className="link" onClick={() => onSignOut(null)}>
          Sign out
        </button>
      </header>
      <main className="page">
        {!props && <PageState polled={base} />}
        {props && route.page === 'connections' && <ConnectionsPage {...props} />}
        {props && route.page === 'machines' && (
          <MachinesPage
            key={route.connectionId ?? 'all'}
            {...props}
            connectionId={route.connectionId}
          />
        )}
        {props && route.page === 'builds' && <BuildsPage {...props} />}
        {props && route.page === 'build' && (
          <BuildPage key={route.buildId} {...props} buildId={route.buildId} />
        )}
        {props && route.page === 'audit' && (
          <AuditPage
            key={route.connectionId ?? 'first'}
            {...props}
            connectionId={route.connectionId}
          />
        )}
      </main>
    </>
  );
}
