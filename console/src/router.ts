// Hash routes (`#/run`, `#/executions/<id>`, ...): the server serves one index.html under /ui/, and the part
// after `#` never reaches it, so every page of the console is a link that can be bookmarked or shared.

export type RouteName = 'run' | 'executions' | 'execution' | 'sessions' | 'session' | 'health' | 'not-found';

export interface Route {
  name: RouteName;
  /** The execution or session id of a detail page. */
  id?: string;
  query: URLSearchParams;
}

export function parseRoute(hash: string): Route {
  const text = hash.replace(/^#/, '');
  const [pathPart, queryPart = ''] = text.split('?', 2) as [string, string?];
  const query = new URLSearchParams(queryPart);
  const parts = pathPart.split('/').filter(Boolean).map((p) => {
    try {
      return decodeURIComponent(p);
    } catch {
      return p;
    }
  });
  if (parts.length === 0) return { name: 'run', query };
  const [first, second] = parts;
  if (parts.length === 1) {
    if (first === 'run' || first === 'executions' || first === 'sessions' || first === 'health') {
      return { name: first, query };
    }
  } else if (parts.length === 2 && second) {
    if (first === 'executions') return { name: 'execution', id: second, query };
    if (first === 'sessions') return { name: 'session', id: second, query };
  }
  return { name: 'not-found', query };
}

/** A hash link with its query, leaving out empty values: `link('/executions', {status: 'failed'})`. */
export function link(path: string, query: Record<string, string | undefined> = {}): string {
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value) params.set(key, value);
  }
  const text = params.toString();
  return `#${path}${text ? `?${text}` : ''}`;
}
