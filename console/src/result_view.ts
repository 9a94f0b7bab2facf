// Renders an execution's result: its facts, the value of the last expression, the error, plots and other
// display outputs, and the files it left in /work. Used by the Run page and the execution detail page.

import { encodePath } from './api';
import { AlertArea } from './alerts';
import { definitionList, h, type Child } from './dom';
import { downloadFromApi } from './download';
import { baseName, formatBytes, formatDuration, timeElement } from './format';
import { statusBadge } from './status_badge';
import type { DisplayOutput, ExecutionResult, FileEntry } from './types';

export interface ResultViewOptions {
  /** Show stdout and stderr (the Run page shows them live in its own output panel instead). */
  showOutput: boolean;
  /** Where the result's alerts go (a failed download). */
  alerts: AlertArea;
  /** Heading level of the sections, to keep the page's outline (h2 under a page's h1). */
  headingLevel?: 2 | 3;
  /** Put the facts (status, times, ids) after the value, error, plots and files rather than first: the Run page
   * already says the status and duration above the output, and what the code produced matters more there. */
  factsLast?: boolean;
}

export function renderResult(result: ExecutionResult, options: ResultViewOptions): HTMLElement {
  const heading = (text: string): HTMLElement => h(options.headingLevel === 3 ? 'h3' : 'h2', null, text);
  const sections: Child[] = [];

  const facts = definitionList([
      ['Status', statusBadge(result.status)],
      ['Exit code', String(result.exit_code)],
      ['Duration', formatDuration(result.duration_ms)],
      ['Execution', h('a', { href: `#/executions/${encodeURIComponent(result.execution_id)}`, class: 'mono' }, result.execution_id), true],
      ['Session', result.session_id
        ? h('a', { href: `#/sessions/${encodeURIComponent(result.session_id)}`, class: 'mono' }, result.session_id)
        : null, true],
      ['Tenant', result.tenant ?? null],
      ['Started', timeElement(result.started_at)],
      ['Finished', timeElement(result.finished_at)],
      ['Memory used', result.memory_used_bytes ? formatBytes(result.memory_used_bytes) : null],
  ]);
  if (!options.factsLast) sections.push(facts);

  const warnings: string[] = [];
  if (result.session_restarted) {
    warnings.push("The session's interpreter was restarted: variables, imports and files of earlier calls are lost.");
  }
  if (result.oom_killed) warnings.push('The memory limit was reached: the program was killed.');
  if (result.stdout_truncated) warnings.push('stdout went over the output cap and was cut.');
  if (result.stderr_truncated) warnings.push('stderr went over the output cap and was cut.');
  if (warnings.length) {
    sections.push(h('div', { class: 'alert alert-warning' }, h('ul', null, warnings.map((w) => h('li', null, w)))));
  }

  if (result.result !== undefined && result.result !== '') {
    sections.push(h('section', { class: 'result-value' }, heading('Value of the last expression'),
      h('pre', { class: 'code-block' }, result.result)));
  }

  if (result.error || result.error_type || result.error_message) {
    const summary = [result.error_type, result.error_message].filter(Boolean).join(': ');
    sections.push(h('section', { class: 'result-error' }, heading('Error'),
      summary ? h('p', { class: 'error-summary' }, summary) : null,
      result.error && result.error !== summary ? h('pre', { class: 'code-block traceback' }, result.error) : null));
  }

  if (options.showOutput) {
    sections.push(outputSection(heading, 'stdout', result.stdout, false));
    sections.push(outputSection(heading, 'stderr', result.stderr, true));
  }

  if (result.outputs?.length) {
    sections.push(h('section', { class: 'display-outputs' }, heading('Display outputs'),
      h('div', { class: 'outputs' }, result.outputs.map((output, index) => displayOutput(output, index + 1)))));
  }

  if (result.files?.length || result.files_truncated) {
    // A session call's files are kept with its execution too: as the call left them, even if a later call
    // changed them in the session's /work.
    const base = `/api/v1/executions/${encodeURIComponent(result.execution_id)}/files`;
    sections.push(h('section', { class: 'result-files' }, heading('Files'),
      filesTable(result.files ?? [], base, options.alerts, 'Files the run left in /work'),
      result.files_truncated
        ? h('p', { class: 'alert alert-warning' }, 'Some files were not kept: they went over the files limits.')
        : null));
  }

  if (result.skipped_packages?.length) {
    sections.push(h('section', null, heading('Packages not installed'),
      h('ul', null, result.skipped_packages.map((p) => h('li', null, h('code', null, p.name), `: ${p.reason}`)))));
  }
  if (result.installed_packages?.length) {
    sections.push(h('details', { class: 'packages' },
      h('summary', null, `Installed packages (${result.installed_packages.length})`),
      h('ul', { class: 'package-list' }, result.installed_packages.map((p) => h('li', null, h('code', null, p))))));
  }
  if (result.pre_commands_output) {
    sections.push(h('section', null, heading('pre_commands output'), h('pre', { class: 'code-block' }, result.pre_commands_output)));
  }
  if (options.factsLast) sections.push(h('section', null, heading('Details'), facts));
  return h('div', { class: 'result' }, sections);
}

function outputSection(heading: (text: string) => HTMLElement, name: string, text: string | undefined, isError: boolean): Child {
  return h('section', { class: 'stream' }, heading(name),
    text ? h('pre', { class: `code-block ${isError ? 'stderr' : 'stdout'}` }, text) : h('p', { class: 'muted' }, `No ${name}.`));
}

/** One display item: images as <img> (data: URLs, allowed by the page's policy), HTML in a sandboxed frame. */
export function displayOutput(output: DisplayOutput, number: number): HTMLElement {
  if (output.type === 'image/png') {
    return h('figure', null, h('img', { src: `data:image/png;base64,${output.data}`, alt: `Plot ${number}` }));
  }
  if (output.type === 'image/svg+xml') {
    // As an image, an SVG's scripts never run.
    return h('figure', null, h('img', { src: `data:image/svg+xml;charset=utf-8,${encodeURIComponent(output.data)}`, alt: `Plot ${number}` }));
  }
  if (output.type === 'text/html') {
    // sandbox="" runs no script and gives the frame an origin of its own: the HTML an untrusted program produced
    // can neither read the console nor act as it.
    const frame = h('iframe', { sandbox: '', title: `HTML output ${number}`, class: 'html-output' });
    frame.srcdoc = output.data;
    return h('figure', null, frame);
  }
  return h('pre', { class: 'code-block' }, output.data);
}

/** A table of files with a download button each; `base` is the files endpoint they come from. */
export function filesTable(files: FileEntry[], base: string, alerts: AlertArea, caption: string): HTMLElement {
  if (!files.length) return h('p', { class: 'muted' }, 'No files.');
  return h('div', { class: 'table-wrap' },
    h('table', null,
      h('caption', { class: 'sr-only' }, caption),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Path'),
        h('th', { scope: 'col', class: 'num' }, 'Size'),
        h('th', { scope: 'col' }, 'SHA-256'),
        h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Actions')))),
      h('tbody', null, files.map((file) => h('tr', null,
        h('td', null, h('code', null, file.path)),
        h('td', { class: 'num' }, formatBytes(file.size)),
        h('td', null, file.sha256 ? h('code', { class: 'hash', title: file.sha256 }, file.sha256.slice(0, 12)) : ''),
        h('td', null, h('button', {
          type: 'button',
          class: 'button button-small',
          'aria-label': `Download ${file.path}`,
          'data-download': file.path,
          onclick: async () => {
            try {
              await downloadFromApi(`${base}/${encodePath(file.path)}`, baseName(file.path));
            } catch (error) {
              alerts.error(error, `Downloading ${file.path}`);
            }
          },
        }, 'Download')))))));
}
