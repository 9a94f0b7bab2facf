// One execution: every field of `GET /api/v1/executions/{id}`, its output, display outputs and files. While it
// is pending or running the page follows its events stream, showing output as it comes, then the final result.

import { AlertArea } from './alerts';
import { getJson, requestJson } from './api';
import { h, replace } from './dom';
import { downloadFromApi } from './download';
import { followExecution } from './follow';
import type { Page } from './page';
import { renderResult } from './result_view';
import { isActive, type ExecutionResult } from './types';

export function executionPage(id: string): Page {
  const alerts = new AlertArea();
  const path = `/api/v1/executions/${encodeURIComponent(id)}`;
  const controller = new AbortController();
  const actions = h('div', { class: 'actions page-actions' });
  const body = h('div', { class: 'detail', 'aria-busy': 'true' }, h('p', { class: 'muted' }, 'Loading…'));

  function show(result: ExecutionResult, liveOutput?: HTMLElement): void {
    body.setAttribute('aria-busy', 'false');
    replace(body, liveOutput ?? null, renderResult(result, { showOutput: !liveOutput, alerts }));
    replace(actions,
      isActive(result.status)
        ? h('button', { type: 'button', class: 'button button-danger', onclick: (e: Event) => void kill(e.currentTarget as HTMLButtonElement) }, 'Kill')
        : null,
      result.files?.length
        ? h('button', { type: 'button', class: 'button', onclick: () => void downloadAll() }, 'Download all files (tar)')
        : null,
      h('button', { type: 'button', class: 'button', onclick: () => void load() }, 'Refresh'),
      result.session_id
        ? h('a', { class: 'button', href: `#/sessions/${encodeURIComponent(result.session_id)}` }, 'Open its session')
        : null);
  }

  /** While the execution runs, its output as it arrives, in the place the final result's output will take. */
  let following = false;
  function showLive(result: ExecutionResult): void {
    if (following) return;
    following = true;
    // The follower first receives what was printed so far, so the live panel starts empty.
    const live = h('pre', { class: 'live-output', role: 'log', 'aria-live': 'polite', 'aria-label': 'Live output', tabindex: 0 });
    show(result, h('section', { class: 'stream' }, h('h2', null, 'Live output'), live));
    void followExecution(id, {
      onOutput: (stream, data) => live.append(h('span', { class: stream }, data)),
    }, controller.signal).then((final) => show(final), (error) => {
      if (!controller.signal.aborted) alerts.error(error, 'Following the execution');
    }).finally(() => { following = false; });
  }

  async function load(): Promise<void> {
    try {
      const result = await getJson<ExecutionResult>(path, controller.signal);
      if (isActive(result.status)) showLive(result);
      else show(result);
    } catch (error) {
      if (!controller.signal.aborted) {
        alerts.error(error, `Reading ${id}`);
        body.setAttribute('aria-busy', 'false');
        replace(body);
      }
    }
  }

  async function kill(button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      const answer = await requestJson<{ status: string }>('DELETE', path);
      alerts.info(`Kill requested: the execution is ${answer.status}.`);
    } catch (error) {
      alerts.error(error, `Killing ${id}`);
      button.disabled = false;
    }
  }

  async function downloadAll(): Promise<void> {
    try {
      await downloadFromApi(`${path}/files?format=tar`, `${id}-files.tar`);
    } catch (error) {
      alerts.error(error, 'Downloading the files');
    }
  }

  void load();
  return {
    title: `Execution ${id}`,
    element: h('div', { class: 'page' },
      h('p', { class: 'breadcrumb' }, h('a', { href: '#/executions' }, 'Executions')),
      h('h1', { tabindex: -1, class: 'mono-heading' }, 'Execution ', h('span', { class: 'mono' }, id)),
      actions,
      alerts.element,
      body),
    dispose: () => controller.abort(),
  };
}
