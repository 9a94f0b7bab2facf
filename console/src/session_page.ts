// One session: its facts, the files now in its /work (download, upload), and its calls (the executions with its
// session_id).

import { AlertArea } from './alerts';
import { encodePath, getJson, request, requestJson } from './api';
import { definitionList, field, h, replace } from './dom';
import { executionsTable } from './executions_table';
import { formatBytes, timeElement } from './format';
import type { Page } from './page';
import { filesTable } from './result_view';
import { statusBadge } from './status_badge';
import type { ExecutionList, FileList, Session } from './types';

export function sessionPage(id: string): Page {
  const alerts = new AlertArea();
  const controller = new AbortController();
  const base = `/api/v1/sessions/${encodeURIComponent(id)}`;
  const info = h('div', { 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));
  const files = h('div');
  const calls = h('div');

  const fileInput = h('input', { type: 'file', name: 'file' });
  const pathInput = h('input', { type: 'text', name: 'path', autocomplete: 'off', spellcheck: 'false', placeholder: 'data/input.csv' });
  fileInput.addEventListener('change', () => {
    const file = fileInput.files?.[0];
    if (file && !pathInput.value) pathInput.value = file.name;
  });
  const uploadButton = h('button', { type: 'submit', class: 'button' }, 'Upload');
  const uploadForm = h('form', { class: 'upload', onsubmit: (event: Event) => { event.preventDefault(); void upload(); } },
    field('File to upload', fileInput),
    field('Path in /work', pathInput, 'Relative to /work; folders are created.'),
    h('div', { class: 'actions' }, uploadButton));

  async function loadInfo(): Promise<void> {
    try {
      const session = await getJson<Session>(base, controller.signal);
      info.setAttribute('aria-busy', 'false');
      replace(info, definitionList([
        ['State', statusBadge(session.state)],
        ['Tenant', session.tenant ?? null],
        ['Python', session.python_version ?? null],
        ['Created', timeElement(session.created_at)],
        ['Last used', timeElement(session.last_used_at)],
        ['Expires', timeElement(session.expires_at)],
        ['Calls', String(session.calls ?? 0)],
        ['Restarts', String(session.restarts ?? 0)],
        ['Memory limit', session.memory_mb ? formatBytes(session.memory_mb * 1024 * 1024) : null],
        ['Disk limit', session.disk_mb ? formatBytes(session.disk_mb * 1024 * 1024) : null],
        ['Memory used', session.memory_used_bytes ? formatBytes(session.memory_used_bytes) : null],
        ['Network', session.network_disabled === undefined ? null : session.network_disabled ? 'off' : 'public internet'],
        ['Idle timeout', session.idle_timeout_seconds ? `${session.idle_timeout_seconds} s` : null],
      ]));
    } catch (error) {
      if (!controller.signal.aborted) {
        alerts.error(error, `Reading ${id}`);
        replace(info);
      }
    }
  }

  async function loadFiles(): Promise<void> {
    try {
      const list = await getJson<FileList>(`${base}/files`, controller.signal);
      replace(files, filesTable(list.files, `${base}/files`, alerts, `Files in the /work of ${id}`),
        list.truncated ? h('p', { class: 'alert alert-warning' }, 'The list is cut: /work holds more files.') : null);
    } catch (error) {
      if (!controller.signal.aborted) alerts.error(error, 'Listing the files');
    }
  }

  async function loadCalls(): Promise<void> {
    try {
      const list = await getJson<ExecutionList>(`/api/v1/executions?session_id=${encodeURIComponent(id)}&limit=50`, controller.signal);
      replace(calls, executionsTable(list.executions, `Calls of ${id}`, alerts, () => void loadCalls()),
        list.next_cursor
          ? h('p', null, h('a', { href: `#/executions?session_id=${encodeURIComponent(id)}` }, 'All calls of this session'))
          : null);
    } catch (error) {
      if (!controller.signal.aborted) alerts.error(error, 'Listing the calls');
    }
  }

  async function upload(): Promise<void> {
    const file = fileInput.files?.[0];
    const path = pathInput.value.trim().replace(/^\/work\//, '');
    if (!file || !path) {
      alerts.error(new Error('Choose a file and the path it gets in /work.'));
      return;
    }
    uploadButton.disabled = true;
    try {
      const response = await request('PUT', `${base}/files/${encodePath(path)}`, { body: file });
      const saved = (await response.json()) as { path: string; size: number };
      alerts.info(`Uploaded ${saved.path} (${formatBytes(saved.size)}).`);
      uploadForm.reset();
      await loadFiles();
    } catch (error) {
      alerts.error(error, `Uploading ${path}`);
    } finally {
      uploadButton.disabled = false;
    }
  }

  async function remove(button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      await requestJson('DELETE', base);
      location.hash = '#/sessions';
    } catch (error) {
      alerts.error(error, `Ending ${id}`);
      button.disabled = false;
    }
  }

  const refresh = (): void => {
    void loadInfo();
    void loadFiles();
    void loadCalls();
  };
  refresh();

  return {
    title: `Session ${id}`,
    element: h('div', { class: 'page' },
      h('p', { class: 'breadcrumb' }, h('a', { href: '#/sessions' }, 'Sessions')),
      h('h1', { tabindex: -1, class: 'mono-heading' }, 'Session ', h('span', { class: 'mono' }, id)),
      h('div', { class: 'actions page-actions' },
        h('a', { class: 'button button-primary', href: `#/run?session=${encodeURIComponent(id)}` }, 'Run code in this session'),
        h('button', { type: 'button', class: 'button', onclick: refresh }, 'Refresh'),
        h('button', { type: 'button', class: 'button button-danger', onclick: (e: Event) => void remove(e.currentTarget as HTMLButtonElement) }, 'Delete session')),
      alerts.element,
      info,
      h('section', null, h('h2', null, 'Files in /work'), files, h('h3', null, 'Upload a file'), uploadForm),
      h('section', null, h('h2', null, 'Calls'), calls)),
    dispose: () => controller.abort(),
  };
}
