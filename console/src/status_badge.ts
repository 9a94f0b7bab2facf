// The status of an execution or a session as a badge: the word itself is shown, so the colour is never the only
// way to tell the states apart.

import { h } from './dom';

export function statusBadge(status: string): HTMLSpanElement {
  const known = ['pending', 'running', 'completed', 'failed', 'killed', 'idle', 'busy', 'ended'];
  const kind = known.includes(status) ? status : 'unknown';
  return h('span', { class: `badge badge-${kind}` }, status);
}
