// A table of executions (the Executions page, a session's calls), with a Kill button for those still going.

import { AlertArea } from './alerts';
import { requestJson } from './api';
import { h } from './dom';
import { firstLine, formatDuration, timeElement } from './format';
import { statusBadge } from './status_badge';
import { isActive, type ExecutionResult } from './types';

export function executionsTable(
  executions: ExecutionResult[],
  caption: string,
  alerts: AlertArea,
  afterKill: () => void,
): HTMLElement {
  if (!executions.length) return h('p', { class: 'muted empty' }, 'No executions.');
  return h('div', { class: 'table-wrap', role: 'region', 'aria-label': caption, tabindex: 0 },
    h('table', { class: 'executions' },
      h('caption', { class: 'sr-only' }, caption),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Execution'),
        h('th', { scope: 'col' }, 'Status'),
        h('th', { scope: 'col', class: 'num' }, 'Exit code'),
        h('th', { scope: 'col' }, 'Tenant'),
        h('th', { scope: 'col' }, 'Started'),
        h('th', { scope: 'col' }, 'Finished'),
        h('th', { scope: 'col', class: 'num' }, 'Duration'),
        h('th', { scope: 'col' }, 'Output'),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', null, executions.map((execution) => row(execution, alerts, afterKill)))));
}

function row(execution: ExecutionResult, alerts: AlertArea, afterKill: () => void): HTMLTableRowElement {
  const id = execution.execution_id;
  const kill = isActive(execution.status)
    ? h('button', {
        type: 'button',
        class: 'button button-small button-danger',
        'aria-label': `Kill ${id}`,
        onclick: async (event: Event) => {
          const button = event.currentTarget as HTMLButtonElement;
          button.disabled = true;
          try {
            await requestJson('DELETE', `/api/v1/executions/${encodeURIComponent(id)}`);
            alerts.info(`Killed ${id}.`);
            afterKill();
          } catch (error) {
            alerts.error(error, `Killing ${id}`);
            button.disabled = false;
          }
        },
      }, 'Kill')
    : null;
  return h('tr', { 'data-execution-id': id, 'data-status': execution.status },
    h('td', null, h('a', { href: `#/executions/${encodeURIComponent(id)}`, class: 'mono' }, id)),
    h('td', { class: 'status-cell' }, statusBadge(execution.status)),
    // A program that raised is `completed` with a non-zero exit code: the code tells it from a clean run.
    h('td', { class: `num${execution.exit_code ? ' nonzero' : ''}` }, String(execution.exit_code)),
    h('td', null, execution.tenant ?? ''),
    h('td', null, timeElement(execution.started_at)),
    h('td', null, timeElement(execution.finished_at)),
    h('td', { class: 'num' }, formatDuration(execution.duration_ms)),
    h('td', { class: 'output-cell' }, h('code', null, firstLine(execution.stdout))),
    h('td', null, kill));
}
