// Drives the web console at /ui/ of a running server in headless Chromium, as a person would: signs in (a wrong
// key first), runs code and watches its output arrive live, sees an error's line marked in the editor, a
// matplotlib plot, a file downloaded from the files list (and all files as a tar), a session keeping a variable
// between two calls, a long run killed, the executions list filtered by status, an execution's page, the sessions
// page, a file uploaded into a session and downloaded back, and the health page.
// Every main page is checked with axe-core (WCAG 2 A/AA: no serious or critical violation) and screenshotted; the
// keyboard alone reaches the Run button, and Ctrl+Enter in the editor runs the code. Any console error, CSP
// violation, uncaught exception or request to another origin fails the run.
//
//   PYEXEC_CONSOLE_API_KEY=alice-key PYEXEC_CONSOLE_SCREENSHOTS=screenshots node console_test.mjs http://127.0.0.1:PORT
//
// PYEXEC_CONSOLE_API_KEY: a key of the server (omit it for a server without API keys: then there is no sign-in).
// PYEXEC_CONSOLE_SCREENSHOTS: a folder for the PNG screenshots (none are taken without it).
// The plot step needs matplotlib, which the server installs from its package index: on a server whose /health
// says installs are unavailable it is skipped with a message, unless PYEXEC_CONSOLE_REQUIRE_PLOT=1.
import { chromium } from 'playwright-core';
import { mkdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const base = (process.argv[2] || '').replace(/\/+$/, '');
if (!base) {
  console.error('usage: node console_test.mjs BASE_URL');
  process.exit(2);
}
const apiKey = process.env.PYEXEC_CONSOLE_API_KEY || '';
const screenshots = process.env.PYEXEC_CONSOLE_SCREENSHOTS || '';
const requirePlot = process.env.PYEXEC_CONSOLE_REQUIRE_PLOT === '1';
const serverHost = new URL(base).host;
const axeSource = readFileSync(createRequire(import.meta.url).resolve('axe-core/axe.min.js'), 'utf8');

function expect(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

function passed(step) {
  console.log(`ok: ${step}`);
}

// What the page reports that it should not: console errors, uncaught exceptions, CSP violations, requests that
// leave the server. Checked after every step, so a failure names the step that caused it.
const problems = [];
let allowWhoami401 = true;

function watch(page) {
  page.on('console', (message) => {
    if (message.type() !== 'error') return;
    const text = message.text();
    const url = message.location()?.url || '';
    // Chromium logs every non-2xx answer as "Failed to load resource". Two are expected: the console asks
    // /api/v1/whoami without a key to find out whether the server wants one, and the wrong key is refused.
    if (allowWhoami401 && /status of 401/.test(text) && url.endsWith('/api/v1/whoami')) return;
    problems.push(`console error: ${text}${url ? ` (${url})` : ''}`);
  });
  page.on('pageerror', (error) => problems.push(`uncaught exception: ${error.message}`));
  page.on('request', (request) => {
    const url = new URL(request.url());
    if (['data:', 'blob:', 'about:'].includes(url.protocol)) return;
    if (url.host !== serverHost) problems.push(`request outside the server: ${request.url()}`);
  });
}

function checkProblems(step) {
  expect(problems.length === 0, `${step}:\n  ${problems.join('\n  ')}`);
}

/** Runs axe-core on the page as it is; fails on any serious or critical WCAG 2 A/AA violation. */
async function checkAccessibility(page, name) {
  await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'), null, { timeout: 15000 });
  // page.evaluate runs outside the page's Content-Security-Policy (an added <script> would be refused).
  await page.evaluate(axeSource);
  const violations = await page.evaluate(async () => {
    const results = await globalThis.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'wcag22aa'] },
      resultTypes: ['violations'],
      iframes: false,
    });
    return results.violations
      .filter((v) => v.impact === 'serious' || v.impact === 'critical')
      .map((v) => `${v.id} (${v.impact}): ${v.help}\n      ${v.nodes.slice(0, 5).map((n) => `${n.target.join(' ')}: ${n.failureSummary.replace(/\n/g, ' ')}`).join('\n      ')}`);
  });
  expect(violations.length === 0, `accessibility of the ${name} page:\n    ${violations.join('\n    ')}`);
  passed(`axe-core finds no serious or critical violation on the ${name} page`);
}

async function screenshot(page, name) {
  if (!screenshots) return;
  // The screenshots illustrate docs/console.md: host paths the server reports (its cgroup) are covered.
  const hostPaths = page.locator('dd').filter({ hasText: /\/sys\/fs\/cgroup|\/var\/lib\/|\/home\// });
  await page.screenshot({ path: path.join(screenshots, `console-${name}.png`), mask: [hostPaths], maskColor: '#d0d7de' });
}

/** The editor's text, line by line as CodeMirror shows it. */
async function editorText(page) {
  const lines = await page.locator('.cm-content .cm-line').allInnerTexts();
  return lines.map((l) => l.replace(/\n$/, '')).join('\n');
}

/** Replaces the editor's code the way a paste would (typing would auto-indent and close brackets). */
async function setCode(page, code) {
  const content = page.locator('.cm-content');
  await content.click();
  await page.keyboard.press('ControlOrMeta+a');
  await page.keyboard.press('Delete');
  await content.evaluate((element, text) => {
    const data = new DataTransfer();
    data.setData('text/plain', text);
    element.dispatchEvent(new ClipboardEvent('paste', { clipboardData: data, bubbles: true, cancelable: true }));
  }, code);
  const shown = await editorText(page);
  expect(shown === code, `the editor holds:\n${shown}\ninstead of:\n${code}`);
}

/** The execution id the Run page's status links to (null before the first run). */
async function shownExecutionId(page) {
  const links = page.locator('.run-status a[href^="#/executions/"]');
  if ((await links.count()) === 0) return null;
  return decodeURIComponent((await links.first().getAttribute('href')).replace('#/executions/', ''));
}

/** Starts a run with `start`, waits for its result, and returns the status the page shows and the id. */
async function runAndWait(page, start, timeout = 60000) {
  const before = await shownExecutionId(page);
  await start();
  await page.waitForFunction((previous) => {
    const status = document.querySelector('.run-status');
    const badge = status?.querySelector('.badge');
    const link = status?.querySelector('a[href^="#/executions/"]');
    return badge && link && decodeURIComponent(link.getAttribute('href').replace('#/executions/', '')) !== previous;
  }, before, { timeout });
  return {
    status: (await page.locator('.run-status .badge').innerText()).trim(),
    id: await shownExecutionId(page),
  };
}

const runButton = (page) => page.locator('.run-form button[type="submit"]');
const output = (page) => page.locator('.run-output .live-output');

if (screenshots) mkdirSync(screenshots, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
  // The page's own report of a blocked script, style, image or frame, whatever Chromium logs about it.
  await context.addInitScript(() => {
    document.addEventListener('securitypolicyviolation', (event) => {
      console.error(`CSP violation: ${event.violatedDirective} blocked ${event.blockedURI || 'inline'}`);
    });
  });
  const page = await context.newPage();
  watch(page);
  const health = await (await page.request.get(`${base}/health`)).json();

  // Sign-in, with a wrong key first.
  await page.goto(`${base}/ui/`, { waitUntil: 'load' });
  if (apiKey) {
    const keyField = page.getByLabel('API key');
    await keyField.waitFor({ timeout: 15000 });
    await screenshot(page, 'signin');
    await checkAccessibility(page, 'sign-in');
    await keyField.fill(`${apiKey}-wrong`);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const alert = page.getByRole('alert');
    await alert.waitFor({ timeout: 10000 });
    expect(/not accepted/i.test(await alert.innerText()), `the wrong key's message: ${await alert.innerText()}`);
    expect(await page.evaluate(() => sessionStorage.length) === 0, 'a refused key was kept in sessionStorage');
    passed('a wrong API key is refused with a clear message');
    await keyField.fill(apiKey);
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.locator('.identity .tenant').waitFor({ timeout: 10000 });
    const stored = await page.evaluate(() => Object.values(sessionStorage));
    expect(stored.includes(apiKey), 'the key is not in sessionStorage');
    expect(await page.evaluate(() => localStorage.length) === 0, 'something was written to localStorage');
    passed(`signed in as ${await page.locator('.identity .tenant').innerText()}; the key is in sessionStorage only`);
  } else {
    await page.locator('.run-form').waitFor({ timeout: 15000 });
    passed('a server without API keys opens the console without a sign-in');
  }
  allowWhoami401 = false;
  await page.locator('.cm-content').waitFor();
  expect(await page.locator('.cm-content').getAttribute('aria-label') === 'Code', 'the editor is not labelled "Code"');
  checkProblems('signing in');

  // The keyboard alone reaches the Run button.
  await page.locator('h1').first().focus();
  let reached = false;
  for (let i = 0; i < 30 && !reached; i += 1) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => {
      const element = document.activeElement;
      return element instanceof HTMLButtonElement && element.type === 'submit' && element.closest('.run-form') !== null;
    });
  }
  expect(reached, 'Tab never reached the Run button');
  passed('Tab reaches the Run button');

  // Live output: "first" is on the page while the program still sleeps before printing "second".
  await setCode(page, 'import time\nprint("first", flush=True)\ntime.sleep(3)\nprint("second", flush=True)');
  const liveRunStart = Date.now();
  await runButton(page).click();
  await page.waitForFunction(() => document.querySelector('.run-output .live-output')?.textContent.includes('first'),
    null, { timeout: 30000, polling: 50 });
  const early = await output(page).innerText();
  expect(!early.includes('second'), `"second" arrived with "first": ${early}`);
  expect(await page.getByRole('button', { name: 'Kill' }).isVisible(), 'no Kill button while running');
  await page.waitForFunction(() => document.querySelector('.run-status .badge'), null, { timeout: 30000 });
  expect((await output(page).innerText()).includes('second'), 'the run ended without "second"');
  expect((await page.locator('.run-status .badge').innerText()).trim() === 'completed', 'the run did not complete');
  passed(`output appears live: "first" was shown before "second" (run took ${Date.now() - liveRunStart} ms)`);

  // An exception: its line is marked in the editor, and Ctrl+Enter in the editor runs the code.
  await setCode(page, 'def divide(a, b):\n    return a / b\n\nx = 1\nprint(divide(x, 0))');
  await page.locator('.cm-content').click();
  const failed = await runAndWait(page, () => page.keyboard.press('Control+Enter'));
  passed('Ctrl+Enter in the editor runs the code');
  const stderr = await output(page).innerText();
  const frames = [...stderr.matchAll(/File "\/work\/main\.py", line (\d+)/g)];
  expect(frames.length > 0 && /ZeroDivisionError/.test(stderr), `no traceback in the output (${failed.status}): ${stderr}`);
  const tracebackLine = Number(frames[frames.length - 1][1]);
  const marked = await page.locator('.cm-content .cm-line').evaluateAll((lines) =>
    lines.map((line, index) => (line.classList.contains('cm-error-line') ? index + 1 : 0)).filter(Boolean));
  expect(marked.length === 1 && marked[0] === tracebackLine,
    `marked lines ${JSON.stringify(marked)}, the traceback's last frame is line ${tracebackLine}`);
  const gutter = (await page.locator('.cm-lineNumbers .cm-error-gutter').innerText()).trim();
  expect(gutter === String(tracebackLine), `the gutter marks line ${gutter}`);
  expect((await page.locator('.error-note').innerText()).includes(`Error on line ${tracebackLine}`), 'no "Error on line" note');
  passed(`the error's line (${tracebackLine}, the traceback's last frame) is highlighted in the editor`);
  checkProblems('running code');

  // A matplotlib plot, shown as an image.
  let plotId = null;
  if (health.dependencies?.available || requirePlot) {
    await setCode(page, 'import matplotlib.pyplot as plt\nplt.plot([1, 2, 3])\nplt.show()');
    await page.getByLabel('Timeout (seconds)').fill('240');
    // The first run installs matplotlib into a cached environment (a minute or two).
    const plot = await runAndWait(page, () => runButton(page).click(), 300000);
    const image = page.locator('.run-output img[alt="Plot 1"]');
    expect(await image.count() === 1, `no plot (${plot.status}): ${await page.locator('.run-output').innerText()}`);
    await page.waitForFunction(() => document.querySelector('.run-output img[alt="Plot 1"]')?.complete);
    const size = await image.evaluate((img) => [img.naturalWidth, img.naturalHeight]);
    expect(size[0] > 0 && size[1] > 0, `the plot image is empty: ${size}`);
    plotId = plot.id;
    passed(`a matplotlib plot renders as an image (${size[0]}x${size[1]})`);
  } else {
    console.log(`SKIPPED: plot: the server cannot install matplotlib (${health.dependencies?.unavailable_reason || 'installs unavailable'})`);
    await page.getByLabel('Timeout (seconds)').fill('60');
  }
  await page.evaluate(() => window.scrollTo(0, 0));
  await screenshot(page, 'run');
  await checkAccessibility(page, 'run');

  // A file written to /work, downloaded through the files list.
  const csv = 'a,b\n1,2\n';
  await setCode(page, `with open("/work/out.csv", "w") as f:\n    f.write(${JSON.stringify(csv)})`);
  const wrote = await runAndWait(page, () => runButton(page).click());
  expect(wrote.status === 'completed', `writing the file: ${wrote.status}`);
  const [download] = await Promise.all([
    page.waitForEvent('download', { timeout: 15000 }),
    page.getByRole('button', { name: 'Download out.csv' }).click(),
  ]);
  expect(download.suggestedFilename() === 'out.csv', `the download is named ${download.suggestedFilename()}`);
  const downloaded = readFileSync(await download.path(), 'utf8');
  expect(downloaded === csv, `the downloaded file holds ${JSON.stringify(downloaded)}`);
  passed('a file the run wrote to /work downloads from the files list with its content');
  await page.locator('.run-status').getByRole('link', { name: 'Execution details' }).click();
  await page.locator('h1', { hasText: wrote.id }).waitFor({ timeout: 15000 });
  const [tar] = await Promise.all([
    page.waitForEvent('download', { timeout: 15000 }),
    page.getByRole('button', { name: 'Download all files (tar)' }).click(),
  ]);
  const tarBytes = readFileSync(await tar.path());
  expect(tar.suggestedFilename().endsWith('.tar') && tarBytes.includes('out.csv') && tarBytes.includes(csv),
    `the tar download (${tar.suggestedFilename()}, ${tarBytes.length} bytes) lacks out.csv`);
  passed("the execution's page downloads all its files as a tar");
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Run' }).click();
  await page.locator('.run-form').waitFor();
  expect((await editorText(page)).includes('/work/out.csv'), 'the Run page lost its code on the way back');
  checkProblems('files');

  // A session keeps its state between two calls.
  await page.locator('label.radio', { hasText: 'Session' }).click();
  const sessionSelect = page.locator('.run-form select[name="session"]');
  await sessionSelect.waitFor({ state: 'visible' });
  await sessionSelect.selectOption('new');
  await setCode(page, 'x = 41');
  const first = await runAndWait(page, () => runButton(page).click());
  expect(first.status === 'completed', `the first session call: ${first.status}`);
  const sessionId = await sessionSelect.inputValue();
  expect(/^ses_/.test(sessionId), `no session chosen after the first call: ${sessionId}`);
  await setCode(page, 'x + 1');
  const second = await runAndWait(page, () => runButton(page).click());
  const value = (await page.locator('.result-value pre').innerText()).trim();
  expect(second.status === 'completed' && value === '42', `the second call answered ${value} (${second.status})`);
  passed(`a session keeps x between two calls (x + 1 = 42 in ${sessionId})`);

  // A long run, killed from the console.
  await page.locator('label.radio', { hasText: 'One-off run' }).click();
  await setCode(page, 'import time\nprint("started", flush=True)\ntime.sleep(60)');
  const killed = await runAndWait(page, async () => {
    await runButton(page).click();
    await page.waitForFunction(() => document.querySelector('.run-output .live-output')?.textContent.includes('started'),
      null, { timeout: 30000 });
    await page.getByRole('button', { name: 'Kill' }).click();
  }, 30000);
  expect(killed.status === 'killed', `the long run ended ${killed.status}`);
  passed('a long run is killed from the console (status killed)');
  checkProblems('sessions and kill');

  // The executions list, filtered by status.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Executions' }).click();
  await page.locator('table.executions').waitFor({ timeout: 15000 });
  await screenshot(page, 'executions');
  await checkAccessibility(page, 'executions');
  for (const status of ['killed', 'completed']) {
    await page.getByLabel('Status').selectOption(status);
    await page.waitForFunction((s) => location.hash.includes(`status=${s}`), status);
    await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
    const statuses = await page.locator('table.executions tbody tr').evaluateAll((rows) => rows.map((r) => r.dataset.status));
    const shown = await page.locator('table.executions tbody .status-cell').allInnerTexts();
    expect(statuses.length > 0, `no ${status} execution listed`);
    expect(statuses.every((s) => s === status) && shown.every((s) => s.trim() === status),
      `filtering by ${status} lists ${JSON.stringify(shown)}`);
  }
  passed('the executions list filtered by status shows only that status');

  // An execution's page (the plot's, when there is one).
  const detailId = plotId || killed.id;
  await page.getByRole('link', { name: detailId, exact: true }).click();
  await page.locator('h1', { hasText: detailId }).waitFor({ timeout: 15000 });
  await page.waitForFunction(() => !document.querySelector('[aria-busy="true"]'));
  const facts = await page.locator('.detail dl.facts').first().innerText();
  expect(/Status/.test(facts) && /Exit code/.test(facts), `the execution's facts: ${facts}`);
  if (plotId) {
    await page.locator('.detail img[alt="Plot 1"]').waitFor();
    expect(await page.locator('.detail img[alt="Plot 1"]').evaluate((img) => img.naturalWidth) > 0, 'no plot on the detail page');
  }
  passed(`the detail page of ${detailId} shows its fields${plotId ? ' and its plot' : ''}`);
  await screenshot(page, 'execution');
  await checkAccessibility(page, 'execution detail');
  checkProblems('executions');

  // Sessions, and the session of the two calls.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Sessions' }).click();
  await page.locator(`tr[data-session-id="${sessionId}"]`).waitFor({ timeout: 15000 });
  await screenshot(page, 'sessions');
  await checkAccessibility(page, 'sessions');
  await page.getByRole('link', { name: sessionId, exact: true }).click();
  await page.locator('h1', { hasText: sessionId }).waitFor({ timeout: 15000 });
  await page.waitForFunction(() => document.querySelectorAll('table.executions tbody tr').length >= 2, null, { timeout: 15000 });
  passed(`the sessions page lists ${sessionId}, and its page lists its calls`);
  const upload = 'uploaded through the console\n';
  await page.getByLabel('File to upload').setInputFiles({ name: 'input.txt', mimeType: 'text/plain', buffer: Buffer.from(upload) });
  expect(await page.getByLabel('Path in /work').inputValue() === 'input.txt', 'the path is not taken from the file name');
  await page.getByRole('button', { name: 'Upload', exact: true }).click();
  const uploadedButton = page.getByRole('button', { name: 'Download input.txt' });
  await uploadedButton.waitFor({ timeout: 15000 });
  const [uploaded] = await Promise.all([page.waitForEvent('download', { timeout: 15000 }), uploadedButton.click()]);
  expect(readFileSync(await uploaded.path(), 'utf8') === upload, 'the uploaded file does not download as it was sent');
  passed("a file uploads into the session's /work and downloads back");
  await screenshot(page, 'session');
  await checkAccessibility(page, 'session detail');
  checkProblems('sessions');

  // Health.
  await page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Health' }).click();
  await page.getByRole('heading', { name: 'Isolation' }).waitFor({ timeout: 15000 });
  const level = (await page.locator('.isolation-level .badge').innerText()).trim();
  expect(level === String(health.isolation.level), `the page shows isolation ${level}, /health says ${health.isolation.level}`);
  passed(`the health page shows the backend's isolation (${level}) and queue`);
  await screenshot(page, 'health');
  await checkAccessibility(page, 'health');

  checkProblems('the whole run');
  passed('no console error, CSP violation or request outside the server');
  console.log('ok: console');
} finally {
  await browser.close();
}
