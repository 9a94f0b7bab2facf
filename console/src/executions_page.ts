// The Executions page: `GET /api/v1/executions` with its filters (status; tenant for admins; session) and its
// cursor pages. The filters live in the page's link (`#/executions?status=failed`), so a filtered list can be
// bookmarked and the browser's Back button returns to the previous filter.

import { AlertArea } from './alerts';
import { getJson } from './api';
import { field, h, replace } from './dom';
import { executionsTable } from './executions_table';
import type { Page, PageContext } from './page';
import { link } from './router';
import { EXECUTION_STATUSES, type ExecutionList } from './types';

const PAGE_SIZE = 50;

export function executionsPage(query: URLSearchParams, context: PageContext): Page {
  const alerts = new AlertArea();
  const status = query.get('status') ?? '';
  // Only admins may narrow the list to a tenant (docs/tenants.md); others see their own tenant's only.
  const tenant = context.identity.admin ? (query.get('tenant') ?? '') : '';
  const session = query.get('session_id') ?? '';
  const cursor = query.get('cursor') ?? '';

  const statusSelect = h('select', { name: 'status' },
    h('option', { value: '' }, 'Any'),
    EXECUTION_STATUSES.map((s) => h('option', { value: s }, s)));
  statusSelect.value = status;
  const tenantInput = context.identity.admin
    ? h('input', { type: 'text', name: 'tenant', value: tenant, autocomplete: 'off', spellcheck: 'false', placeholder: 'every tenant' })
    : null;
  const sessionInput = h('input', { type: 'text', name: 'session_id', value: session, autocomplete: 'off', spellcheck: 'false', placeholder: 'ses_…' });

  const filters = (): Record<string, string> => ({
    status: statusSelect.value,
    tenant: tenantInput?.value.trim() ?? '',
    session_id: sessionInput.value.trim(),
  });
  const apply = (): void => {
    location.hash = link('/executions', filters());
  };
  // The status choice applies at once; the text fields when the form is submitted.
  statusSelect.addEventListener('change', apply);

  const form = h('form', { class: 'filters', role: 'search', 'aria-label': 'Filter executions',
    onsubmit: (event: Event) => { event.preventDefault(); apply(); } },
    field('Status', statusSelect),
    tenantInput ? field('Tenant', tenantInput) : null,
    field('Session', sessionInput),
    h('div', { class: 'actions' },
      h('button', { type: 'submit', class: 'button' }, 'Apply filters'),
      h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh')));

  const listArea = h('div', { class: 'list-area', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const pager = h('nav', { class: 'pager', 'aria-label': 'Pages of executions', hidden: true });
  const controller = new AbortController();

  async function load(): Promise<void> {
    const params = new URLSearchParams({ limit: String(PAGE_SIZE) });
    for (const [key, value] of Object.entries({ status, tenant, session_id: session, cursor })) {
      if (value) params.set(key, value);
    }
    listArea.setAttribute('aria-busy', 'true');
    try {
      const list = await getJson<ExecutionList>(`/api/v1/executions?${params}`, controller.signal);
      replace(listArea, executionsTable(list.executions, 'Executions, newest first', alerts, () => void load()));
      pager.hidden = !cursor && !list.next_cursor;
      replace(pager,
        cursor ? h('a', { class: 'button', href: link('/executions', { status, tenant, session_id: session }) }, 'First page') : null,
        list.next_cursor
          ? h('a', { class: 'button', href: link('/executions', { status, tenant, session_id: session, cursor: list.next_cursor }) }, 'Next page')
          : null);
    } catch (error) {
      if (!controller.signal.aborted) {
        alerts.error(error, 'Listing the executions');
        replace(listArea);
      }
    } finally {
      listArea.setAttribute('aria-busy', 'false');
    }
  }
  void load();

  const described = [status && `status ${status}`, tenant && `tenant ${tenant}`, session && `session ${session}`].filter(Boolean);
  return {
    title: 'Executions',
    element: h('div', { class: 'page' },
      h('h1', { tabindex: -1 }, 'Executions'),
      h('p', { class: 'lead' }, described.length ? `Showing executions with ${described.join(', ')}.` : 'Every execution you can see, newest first.',
        cursor ? ' (a later page)' : ''),
      form,
      alerts.element,
      listArea,
      pager),
    dispose: () => controller.abort(),
  };
}
