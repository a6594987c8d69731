// The dashboard's pages and their addresses: hash routes, so the control plane serves one
// index.html and any page can be bookmarked or reloaded.
export type Route =
  | { page: 'connections' }
  | { page: 'machines'; connectionId: string | undefined }
  | { page: 'builds' }
  | { page: 'build'; buildId: string }
  | { page: 'audit'; connectionId: string | undefined };

export function parseRoute(hash: string): Route {
  const [first, second] = hash.replace(/^#\/?/, '').split('/').map(decodeURIComponent);
  switch (first) {
    case 'machines':
      return { page: 'machines', connectionId: second || undefined };
    case 'builds':
      return second ? { page: 'build', buildId: second } : { page: 'builds' };
    case 'audit':
      return { page: 'audit', connectionId: second || undefined };
    default:
      return { page: 'connections' };
  }
}

export function href(route: Route): string {
  switch (route.page) {
    case 'connections':
      return '#/connections';
    case 'machines':
      return route.connectionId
        ? `#/machines/${encodeURIComponent(route.connectionId)}`
        : '#/machines';
    case 'builds':
      return '#/builds';
    case 'build':
      return `#/builds/${encodeURIComponent(route.buildId)}`;
    case 'audit':
      return route.connectionId ? `#/audit/${encodeURIComponent(route.connectionId)}` : '#/audit';
  }
}
