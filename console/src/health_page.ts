// The Health page: `GET /health` (open without a key) as readable lists: the backend, interpreters, isolation
// (its level, and what is missing for full isolation, set apart), dependency installs, the queue and warm pools.

import { AlertArea } from './alerts';
import { getJson } from './api';
import { definitionList, h, replace, type Child } from './dom';
import { formatBytes } from './format';
import type { Page } from './page';
import type { Health } from './types';

export function healthPage(): Page {
  const alerts = new AlertArea();
  const controller = new AbortController();
  const body = h('div', { class: 'health', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));

  async function load(): Promise<void> {
    body.setAttribute('aria-busy', 'true');
    try {
      const health = await getJson<Health>('/health', controller.signal);
      replace(body, renderHealth(health));
    } catch (error) {
      if (!controller.signal.aborted) alerts.error(error, 'Reading /health');
    } finally {
      body.setAttribute('aria-busy', 'false');
    }
  }
  void load();

  return {
    title: 'Health',
    element: h('div', { class: 'page' },
      h('h1', { tabindex: -1 }, 'Health'),
      h('div', { class: 'actions page-actions' }, h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh')),
      alerts.element,
      body),
    dispose: () => controller.abort(),
  };
}

function renderHealth(health: Health): Child[] {
  const shown = new Set(['status', 'version', 'backend', 'python_versions', 'default_python_version', 'isolation', 'dependencies', 'queue', 'warm_pools']);
  const sections: Child[] = [
    h('section', { class: 'card' }, h('h2', null, 'Server'), definitionList([
      ['Status', h('span', { class: `badge badge-${health.status === 'ok' ? 'completed' : 'failed'}` }, health.status)],
      ['Version', health.version ?? null],
      ['Backend', health.backend ?? null],
      ['Python versions', (health.python_versions ?? []).join(', ') || 'none'],
      ['Default Python version', health.default_python_version ?? 'none'],
    ])),
  ];
  if (health.queue) {
    const q = health.queue;
    sections.push(h('section', { class: 'card' }, h('h2', null, 'Queue'), definitionList([
      ['Running', `${q.running} of ${q.max_concurrent} slots`],
      ['Waiting', `${q.pending} of at most ${q.max_queue}`],
    ])));
  }
  if (health.dependencies) {
    sections.push(h('section', { class: 'card' }, h('h2', null, 'Dependencies'), valueView(health.dependencies)));
  }
  if (health.isolation) sections.push(isolationSection(health.isolation));
  sections.push(warmPoolsSection(health.warm_pools));
  const rest = Object.entries(health).filter(([key]) => !shown.has(key));
  if (rest.length) sections.push(h('section', { class: 'card' }, h('h2', null, 'Other'), valueView(Object.fromEntries(rest))));
  sections.push(h('details', { class: 'raw' }, h('summary', null, 'The answer as JSON'),
    h('pre', { class: 'code-block' }, JSON.stringify(health, null, 2))));
  return sections;
}

function isolationSection(isolation: Record<string, unknown>): HTMLElement {
  const level = String(isolation.level ?? 'unknown');
  const missing = [isolation.warnings, isolation.missing]
    .flatMap((value) => (Array.isArray(value) ? value : []))
    .map(String);
  const others = Object.fromEntries(Object.entries(isolation).filter(([key]) => !['level', 'warnings', 'missing'].includes(key)));
  return h('section', { class: 'card card-wide' }, h('h2', null, 'Isolation'),
    h('p', { class: 'isolation-level' }, 'Level: ',
      h('span', { class: `badge badge-${level === 'full' || level === 'kubernetes' ? 'completed' : 'killed'}` }, level)),
    missing.length
      ? h('div', { class: 'alert alert-warning' }, h('h3', null, 'Missing for full isolation'),
          h('ul', null, missing.map((m) => h('li', null, m))))
      : h('p', null, 'Nothing is missing.'),
    valueView(others));
}

/** Warm pools: the counters, then one table row per pool (what it serves, how many sandboxes wait). */
function warmPoolsSection(warm: unknown): HTMLElement {
  const card = h('section', { class: 'card card-wide' }, h('h2', null, 'Warm pools'));
  if (warm === null || warm === undefined) {
    card.append(h('p', { class: 'muted' }, 'This backend keeps no warm sandboxes.'));
    return card;
  }
  if (typeof warm !== 'object' || Array.isArray(warm) || !Array.isArray((warm as { pools?: unknown }).pools)) {
    card.append(valueView(warm));
    return card;
  }
  const { pools, ...counters } = warm as { pools: Record<string, unknown>[] } & Record<string, unknown>;
  card.append(valueView(counters));
  if (!pools.length) return card;
  const columns = [...new Set(pools.flatMap((pool) => Object.keys(pool)))];
  const cell = (value: unknown, column: string): string =>
    column.endsWith('_bytes') && typeof value === 'number' ? formatBytes(value) : String(scalarText(value));
  card.append(h('div', { class: 'table-wrap', role: 'region', 'aria-label': 'Warm pools', tabindex: 0 },
    h('table', null,
      h('caption', { class: 'sr-only' }, 'Warm pools'),
      h('thead', null, h('tr', null, columns.map((c) => h('th', { scope: 'col' }, humanize(c.replace(/_bytes$/, '')))))),
      h('tbody', null, pools.map((pool) => h('tr', null, columns.map((c) => h('td', null, cell(pool[c], c)))))))));
  return card;
}

function scalarText(value: unknown): string {
  if (value === null || value === undefined) return '';
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

/** Any JSON value as nested lists: objects as definition lists, arrays of objects as lists of them. */
export function valueView(value: unknown): HTMLElement {
  if (value === null || value === undefined) return h('span', { class: 'muted' }, 'none');
  if (Array.isArray(value)) {
    if (!value.length) return h('span', { class: 'muted' }, 'none');
    if (value.every((v) => typeof v !== 'object' || v === null)) return h('span', null, value.map(String).join(', '));
    return h('ul', { class: 'value-list' }, value.map((v) => h('li', null, valueView(v))));
  }
  if (typeof value === 'object') {
    return definitionList(Object.entries(value as Record<string, unknown>).map(([key, v]) => [humanize(key), scalarOrView(v)]), 'facts nested');
  }
  return h('span', null, String(value));
}

function scalarOrView(value: unknown): Child {
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  if (typeof value === 'string' || typeof value === 'number') return String(value);
  return valueView(value);
}

function humanize(key: string): string {
  const text = key.replace(/_/g, ' ');
  return text.charAt(0).toUpperCase() + text.slice(1);
}
