// The Run page: an editor, a choice between a one-off run and a call in a session, and the output and result.
//
// A one-off run is queued with `POST /api/v1/eval/async` and followed on its events stream, so output shows up
// while the program runs. A session call (`POST /api/v1/sessions/{id}/eval`) answers only when it ends, so the
// page shows a running indicator instead. The page is built once and kept while the console is open: leaving it
// for another page and coming back finds the code, a run still going, and its output as they were.

import { AlertArea } from './alerts';
import { getJson, requestJson } from './api';
import { h, field, replace, uid } from './dom';
import { createEditor, type CodeEditor } from './editor';
import { followExecution } from './follow';
import { formatDuration } from './format';
import { renderResult } from './result_view';
import { statusBadge } from './status_badge';
import { errorLineOf } from './traceback';
import type { ExecutionList, ExecutionResult, Session, SessionList } from './types';

const NEW_SESSION = 'new';
const INITIAL_CODE = `import sys

print("Hello from Python", sys.version.split()[0])

# The value of the last expression is shown as the result.
6 * 7
`;
// Live output shown at most (characters); the execution's page has all of it.
const LIVE_OUTPUT_LIMIT = 2_000_000;

const isMac = /Mac|iPhone|iPad/.test(navigator.platform);
const RUN_SHORTCUT = isMac ? '⌘+Enter' : 'Ctrl+Enter';

interface RunningState {
  abort: AbortController;
  /** Known once the run was queued (one-off) or looked up (session call, when killing). */
  executionId?: string;
  sessionId?: string;
}

export class RunPage {
  readonly title = 'Run';
  readonly element: HTMLElement;
  private readonly alerts = new AlertArea();
  private readonly editor: CodeEditor;
  private readonly oneOffRadio: HTMLInputElement;
  private readonly sessionRadio: HTMLInputElement;
  private readonly sessionField: HTMLElement;
  private readonly sessionSelect: HTMLSelectElement;
  private readonly timeoutInput: HTMLInputElement;
  private readonly runButton: HTMLButtonElement;
  private readonly killButton: HTMLButtonElement;
  private readonly errorNote: HTMLElement;
  private readonly runStatus: HTMLElement;
  private readonly output: HTMLPreElement;
  private readonly resultArea: HTMLElement;
  private running: RunningState | null = null;
  private liveChars = 0;
  private elapsedTimer: ReturnType<typeof setInterval> | undefined;

  constructor() {
    const modeName = uid('mode');
    this.oneOffRadio = h('input', { type: 'radio', name: modeName, value: 'one-off', id: uid('mode-one-off'), checked: true,
      onchange: () => this.modeChanged() });
    this.sessionRadio = h('input', { type: 'radio', name: modeName, value: 'session', id: uid('mode-session'),
      onchange: () => this.modeChanged() });
    this.sessionSelect = h('select', { name: 'session' }, h('option', { value: NEW_SESSION }, 'New session'));
    this.sessionField = field('Session', this.sessionSelect);
    this.sessionField.hidden = true;
    this.timeoutInput = h('input', { type: 'number', name: 'timeout', min: 1, step: 1, value: 30, inputmode: 'numeric', class: 'narrow' });
    this.runButton = h('button', { type: 'submit', class: 'button button-primary', 'aria-keyshortcuts': 'Control+Enter Meta+Enter' },
      'Run', h('kbd', { 'aria-hidden': 'true' }, RUN_SHORTCUT));
    this.killButton = h('button', { type: 'button', class: 'button button-danger', hidden: true, onclick: () => void this.kill() }, 'Kill');
    this.errorNote = h('div', { class: 'error-note', role: 'status' });
    this.runStatus = h('div', { class: 'run-status', role: 'status' }, h('span', { class: 'muted' }, 'Not run yet.'));
    const outputHeading = uid('output-heading');
    this.output = h('pre', { class: 'live-output', role: 'log', 'aria-live': 'polite', 'aria-labelledby': outputHeading, tabindex: 0 });
    this.resultArea = h('div', { class: 'result-area' });

    const editorHost = h('div', { class: 'editor' });
    const form = h('form', { class: 'run-form', onsubmit: (event: Event) => { event.preventDefault(); void this.run(); } },
      h('div', { class: 'toolbar' },
        h('fieldset', { class: 'mode' },
          h('legend', null, 'Run as'),
          h('label', { for: this.oneOffRadio.id, class: 'radio' }, this.oneOffRadio, 'One-off run'),
          h('label', { for: this.sessionRadio.id, class: 'radio' }, this.sessionRadio, 'Session')),
        this.sessionField,
        field('Timeout (seconds)', this.timeoutInput),
        h('div', { class: 'actions' }, this.runButton, this.killButton)),
      h('div', { class: 'editor-label', 'aria-hidden': 'true' }, 'Code'),
      editorHost,
      h('p', { class: 'hint', id: 'editor-hint' },
        `${RUN_SHORTCUT} runs the code. Tab indents; press Escape, then Tab, to leave the editor.`),
      this.errorNote);

    this.element = h('div', { class: 'page run-page' },
      h('h1', { tabindex: -1 }, 'Run code'),
      this.alerts.element,
      h('div', { class: 'run-layout' },
        h('section', { class: 'run-input', 'aria-label': 'Code and settings' }, form),
        h('section', { class: 'run-output', 'aria-labelledby': outputHeading },
          h('h2', { id: outputHeading }, 'Output'),
          this.runStatus,
          this.output,
          this.resultArea)));
    this.editor = createEditor(editorHost, INITIAL_CODE, () => void this.run());
  }

  /** Called each time the page is shown: `#/run?session=<id>` preselects that session. */
  enter(query: URLSearchParams): void {
    const session = query.get('session');
    if (session) {
      this.sessionRadio.checked = true;
      this.modeChanged(session);
    } else if (this.sessionRadio.checked) {
      void this.loadSessions(this.sessionSelect.value);
    }
  }

  dispose(): void {
    this.running?.abort.abort();
    this.editor.view.destroy();
  }

  private modeChanged(select?: string): void {
    const session = this.sessionRadio.checked;
    this.sessionField.hidden = !session;
    if (session) void this.loadSessions(select ?? this.sessionSelect.value);
  }

  /** Fills the session choice with the live sessions, keeping `selected` chosen when it is still there. */
  private async loadSessions(selected: string): Promise<void> {
    try {
      const { sessions } = await getJson<SessionList>('/api/v1/sessions');
      const live = sessions.filter((s) => s.state !== 'ended');
      replace(this.sessionSelect,
        h('option', { value: NEW_SESSION }, 'New session'),
        live.map((s) => h('option', { value: s.session_id }, sessionLabel(s))));
      if (selected && !live.some((s) => s.session_id === selected) && selected !== NEW_SESSION) {
        // A session named by a link that is not listed (yet): keep it choosable, the call will say if it is gone.
        this.sessionSelect.append(h('option', { value: selected }, selected));
      }
      this.sessionSelect.value = selected || (live[0]?.session_id ?? NEW_SESSION);
    } catch (error) {
      this.alerts.error(error, 'Listing the sessions');
    }
  }

  private timeoutSeconds(): number | null {
    const value = Number(this.timeoutInput.value);
    return Number.isInteger(value) && value >= 1 ? value : null;
  }

  async run(): Promise<void> {
    if (this.running) return;
    const timeout = this.timeoutSeconds();
    if (timeout === null) {
      this.alerts.error(new Error('The timeout must be a whole number of seconds, at least 1.'));
      this.timeoutInput.focus();
      return;
    }
    const body = { code: this.editor.code(), eval_last_expr: true, config: { timeout_seconds: timeout } };
    this.alerts.clear();
    this.editor.markErrorLine(null);
    replace(this.errorNote);
    this.output.replaceChildren();
    this.liveChars = 0;
    this.resultArea.replaceChildren();
    const running: RunningState = { abort: new AbortController() };
    this.running = running;
    this.setBusy(true);
    try {
      const result = this.sessionRadio.checked
        ? await this.runInSession(body, running)
        : await this.runOneOff(body, running);
      this.showResult(result);
    } catch (error) {
      if (!running.abort.signal.aborted) {
        this.alerts.error(error, 'The run could not be started or followed');
        replace(this.runStatus, h('span', null, 'The run did not complete: see the message above.'));
      }
    } finally {
      this.running = null;
      this.setBusy(false);
    }
  }

  private async runOneOff(body: object, running: RunningState): Promise<ExecutionResult> {
    this.showRunning('Queued');
    const { execution_id: id } = await requestJson<{ execution_id: string }>('POST', '/api/v1/eval/async', { json: body });
    running.executionId = id;
    this.killButton.disabled = false;
    this.showRunning('Queued', id);
    return followExecution(id, {
      onStatus: (status) => this.showRunning(status === 'running' ? 'Running' : status === 'pending' ? 'Queued' : status, id),
      onOutput: (stream, data) => this.appendOutput(stream, data),
    }, running.abort.signal);
  }

  private async runInSession(body: object, running: RunningState): Promise<ExecutionResult> {
    let sessionId = this.sessionSelect.value;
    if (sessionId === NEW_SESSION) {
      this.showRunning('Starting a session');
      const session = await requestJson<Session>('POST', '/api/v1/sessions', { json: {} });
      sessionId = session.session_id;
      await this.loadSessions(sessionId);
    }
    running.sessionId = sessionId;
    this.killButton.disabled = false;
    this.showRunning(`Running in session ${sessionId}`);
    const result = await requestJson<ExecutionResult>('POST', `/api/v1/sessions/${encodeURIComponent(sessionId)}/eval`, {
      json: body,
      signal: running.abort.signal,
    });
    if (result.stdout) this.appendOutput('stdout', result.stdout);
    if (result.stderr) this.appendOutput('stderr', result.stderr);
    void this.loadSessions(sessionId);
    return result;
  }

  /** Kills the run: a one-off run by its id; a session call by looking up the session's running execution. */
  private async kill(): Promise<void> {
    const running = this.running;
    if (!running) return;
    this.killButton.disabled = true;
    try {
      let id = running.executionId;
      if (!id && running.sessionId) {
        const query = `session_id=${encodeURIComponent(running.sessionId)}&limit=5`;
        const { executions } = await getJson<ExecutionList>(`/api/v1/executions?${query}`);
        id = executions.find((e) => e.status === 'running' || e.status === 'pending')?.execution_id;
      }
      if (!id) throw new Error('The running call was not found: it may have just ended.');
      await requestJson('DELETE', `/api/v1/executions/${encodeURIComponent(id)}`);
      this.alerts.info(`Kill requested for ${id}.`);
    } catch (error) {
      this.alerts.error(error, 'Killing the run');
      this.killButton.disabled = false;
    }
  }

  private setBusy(busy: boolean): void {
    this.runButton.disabled = busy;
    this.killButton.hidden = !busy;
    this.killButton.disabled = true;
    this.element.classList.toggle('is-running', busy);
    if (!busy) clearInterval(this.elapsedTimer);
  }

  /** The running indicator: what the run is doing, its execution, and (not announced) the seconds it has taken. */
  private showRunning(what: string, executionId?: string): void {
    clearInterval(this.elapsedTimer);
    const started = Date.now();
    const elapsed = h('span', { class: 'elapsed', 'aria-hidden': 'true' }, '0 s');
    this.elapsedTimer = setInterval(() => { elapsed.textContent = `${Math.round((Date.now() - started) / 1000)} s`; }, 1000);
    replace(this.runStatus,
      h('span', { class: 'spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'running-text' }, `${what}…`),
      executionId ? [' ', h('a', { href: `#/executions/${encodeURIComponent(executionId)}` }, executionId)] : null,
      ' ', elapsed);
  }

  private appendOutput(stream: 'stdout' | 'stderr', data: string): void {
    if (this.liveChars >= LIVE_OUTPUT_LIMIT) return;
    let text = data;
    if (this.liveChars + text.length > LIVE_OUTPUT_LIMIT) {
      text = `${text.slice(0, LIVE_OUTPUT_LIMIT - this.liveChars)}\n[… more output on the execution's page]\n`;
    }
    this.liveChars += text.length;
    const atBottom = this.output.scrollTop + this.output.clientHeight >= this.output.scrollHeight - 4;
    const last = this.output.lastElementChild;
    if (last instanceof HTMLElement && last.dataset.stream === stream) {
      last.append(text);
    } else {
      this.output.append(h('span', { class: stream, 'data-stream': stream }, text));
    }
    if (atBottom) this.output.scrollTop = this.output.scrollHeight;
  }

  private showResult(result: ExecutionResult): void {
    if (this.liveChars === 0) {
      if (result.stdout) this.appendOutput('stdout', result.stdout);
      if (result.stderr) this.appendOutput('stderr', result.stderr);
    }
    if (this.liveChars === 0) this.output.append(h('span', { class: 'muted' }, '(no output)'));
    const summary = `${capitalize(result.status)}${result.duration_ms !== undefined ? ` in ${formatDuration(result.duration_ms)}` : ''}` +
      `, exit code ${result.exit_code}.`;
    replace(this.runStatus, statusBadge(result.status), ' ', h('span', null, summary), ' ',
      h('a', { href: `#/executions/${encodeURIComponent(result.execution_id)}` }, 'Execution details'));

    // A program that raised is `completed` with a non-zero exit code (it ran to its end); a timeout is `failed`.
    const line = result.exit_code === 0 && result.status === 'completed' ? null : errorLineOf(result);
    if (line !== null && this.editor.markErrorLine(line)) {
      const what = [result.error_type, result.error_message].filter(Boolean).join(': ');
      replace(this.errorNote,
        h('span', { class: 'error-note-text' }, `Error on line ${line}`, what ? `: ${what}` : ''),
        ' ',
        h('button', { type: 'button', class: 'button button-small', onclick: () => this.editor.goToLine(line) }, `Go to line ${line}`));
    }
    replace(this.resultArea, h('h2', null, 'Result'), renderResult(result, { showOutput: false, alerts: this.alerts, headingLevel: 3, factsLast: true }));
  }
}

function sessionLabel(session: Session): string {
  const calls = session.calls === 1 ? '1 call' : `${session.calls ?? 0} calls`;
  return `${session.session_id} (${session.state}, ${calls})`;
}

function capitalize(text: string): string {
  return text.charAt(0).toUpperCase() + text.slice(1);
}
