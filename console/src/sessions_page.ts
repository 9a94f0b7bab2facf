// The Sessions page: the caller's live sessions (`GET /api/v1/sessions`), starting one (`POST`, optionally with
// a Python version and requirements) and ending one (`DELETE`).

import { AlertArea } from './alerts';
import { getJson, requestJson } from './api';
import { field, h, replace } from './dom';
import { formatBytes, timeElement } from './format';
import type { Page } from './page';
import { statusBadge } from './status_badge';
import type { Health, Session, SessionList } from './types';

export function sessionsPage(): Page {
  const alerts = new AlertArea();
  const controller = new AbortController();
  const listArea = h('div', { class: 'list-area', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));

  const versionSelect = h('select', { name: 'python_version' }, h('option', { value: '' }, 'Server default'));
  const requirements = h('textarea', { name: 'requirements_txt', rows: 3, spellcheck: 'false', placeholder: 'pandas\nmatplotlib' });
  const createButton = h('button', { type: 'submit', class: 'button button-primary' }, 'New session');
  const form = h('form', { class: 'new-session', onsubmit: (event: Event) => { event.preventDefault(); void create(); } },
    h('div', { class: 'actions' }, createButton),
    h('details', null,
      h('summary', null, 'Options for the new session'),
      h('div', { class: 'options' },
        field('Python version', versionSelect),
        field('Requirements (requirements.txt lines)', requirements, 'Installed once, when the session starts.'))));

  async function create(): Promise<void> {
    createButton.disabled = true;
    alerts.info('Starting a session…');
    const body: Record<string, string> = {};
    if (versionSelect.value) body.python_version = versionSelect.value;
    if (requirements.value.trim()) body.requirements_txt = requirements.value;
    try {
      const session = await requestJson<Session>('POST', '/api/v1/sessions', { json: body });
      alerts.info(`Started ${session.session_id}.`);
      await load();
    } catch (error) {
      alerts.error(error, 'Starting a session');
    } finally {
      createButton.disabled = false;
    }
  }

  async function remove(id: string, button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await requestJson('DELETE', `/api/v1/sessions/${encodeURIComponent(id)}`);
      alerts.info(`Ended ${id}.`);
      await load();
    } catch (error) {
      alerts.error(error, `Ending ${id}`);
      button.disabled = false;
    }
  }

  async function load(): Promise<void> {
    listArea.setAttribute('aria-busy', 'true');
    try {
      const { sessions } = await getJson<SessionList>('/api/v1/sessions', controller.signal);
      replace(listArea, sessionsTable(sessions, remove));
    } catch (error) {
      if (!controller.signal.aborted) alerts.error(error, 'Listing the sessions');
    } finally {
      listArea.setAttribute('aria-busy', 'false');
    }
  }

  // The interpreters to choose from come from /health.
  void getJson<Health>('/health', controller.signal).then((health) => {
    for (const version of health.python_versions ?? []) versionSelect.append(h('option', { value: version }, version));
  }, () => {});
  void load();

  return {
    title: 'Sessions',
    element: h('div', { class: 'page' },
      h('h1', { tabindex: -1 }, 'Sessions'),
      h('p', { class: 'lead' }, 'A session is an interpreter that keeps its variables, imports and files in /work between calls.'),
      form,
      alerts.element,
      h('div', { class: 'actions' }, h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh')),
      listArea),
    dispose: () => controller.abort(),
  };
}

function sessionsTable(sessions: Session[], remove: (id: string, button: HTMLButtonElement) => Promise<void>): HTMLElement {
  if (!sessions.length) return h('p', { class: 'muted empty' }, 'No live sessions.');
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Live sessions', tabindex: 0 },
    h('table', null,
      h('caption', { class: 'sr-only' }, 'Live sessions, newest first'),
      h('thead', null, h('tr', null,
        ['Session', 'State', 'Python', 'Created', 'Last used', 'Expires', 'Calls', 'Restarts', 'Memory limit'].map((name) =>
          h('th', { scope: 'col', class: ['Calls', 'Restarts', 'Memory limit'].includes(name) ? 'num' : null }, name)),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', null, sessions.map((session) => {
        const id = session.session_id;
        return h('tr', { 'data-session-id': id },
          h('td', null, h('a', { href: `#/sessions/${encodeURIComponent(id)}`, class: 'mono' }, id)),
          h('td', null, statusBadge(session.state)),
          h('td', null, session.python_version ?? ''),
          h('td', null, timeElement(session.created_at)),
          h('td', null, timeElement(session.last_used_at)),
          h('td', null, timeElement(session.expires_at)),
          h('td', { class: 'num' }, String(session.calls ?? 0)),
          h('td', { class: 'num' }, String(session.restarts ?? 0)),
          h('td', { class: 'num' }, session.memory_mb ? `${formatBytes(session.memory_mb * 1024 * 1024)}` : ''),
          h('td', null, h('div', { class: 'row-actions' },
            h('a', { class: 'button button-small', href: `#/run?session=${encodeURIComponent(id)}`, 'aria-label': `Run code in ${id}` }, 'Run code'),
            h('button', { type: 'button', class: 'button button-small button-danger', 'aria-label': `Delete ${id}`,
              onclick: (e: Event) => void remove(id, e.currentTarget as HTMLButtonElement) }, 'Delete'))));
      }))));
}
