// Opens the Swagger UI of a running server in headless Chromium as a new user would: checks that the operations
// are listed, enters the API key in the Authorize dialog (when PYEXEC_DOCS_API_KEY is set), then runs
// `POST /api/v1/eval` and `GET /api/v1/executions` through "Try it out" with the values the page offers,
// unchanged, and checks the answers: node docs_try_it_out.mjs http://127.0.0.1:PORT
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node docs_try_it_out.mjs BASE_URL');
  process.exit(2);
}
const apiKey = process.env.PYEXEC_DOCS_API_KEY || '';

/** Opens an operation, presses "Try it out" and "Execute" without editing anything, and returns the answer. */
async function tryItOut(page, operationId) {
  const op = page.locator(`#${operationId}`);
  await op.waitFor({ timeout: 15000 });
  await op.locator('.opblock-summary').first().click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  await op.locator('button.execute').click();
  // The status cell appears once the answer is in (a run takes a moment).
  const status = op.locator('.live-responses-table tbody tr.response .response-col_status').first();
  await status.waitFor({ timeout: 60000 });
  const code = (await status.innerText()).trim();
  const bodyText = await op.locator('.live-responses-table tbody .response-col_description .highlight-code pre')
    .first().innerText();
  const url = (await op.locator('.request-url pre').first().innerText()).trim();
  let body;
  try {
    body = JSON.parse(bodyText);
  } catch {
    throw new Error(`${operationId}: the answer (${code}) from ${url} is not JSON:\n${bodyText}`);
  }
  if (code !== '200') {
    throw new Error(`${operationId}: ${url} answered ${code}:\n${bodyText}`);
  }
  return { body, url };
}

function expect(condition, message) {
  if (!condition) {
    throw new Error(message);
  }
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const failedRequests = [];
try {
  const page = await browser.newPage();
  page.on('requestfailed', (r) => failedRequests.push(r.url()));
  await page.goto(`${base}/docs/`, { waitUntil: 'networkidle' });
  for (const path of ['/api/v1/eval', '/api/v1/exec/sync', '/api/v1/exec/async', '/api/v1/executions',
                      '/api/v1/executions/{id}', '/api/v1/executions/{id}/events', '/api/v1/sessions', '/health']) {
    await page.locator(`[data-path="${path}"]`).first().waitFor({ timeout: 15000 });
  }
  // Swagger reports a document it cannot read (or finds invalid) in place of the operations.
  expect(await page.locator('.swagger-ui .errors-wrapper').count() === 0,
         `the UI reports errors in the document:\n${await page.locator('.swagger-ui .errors-wrapper').allInnerTexts()}`);

  if (apiKey) {
    await page.locator('.swagger-ui .auth-wrapper button.authorize').click();
    const dialog = page.locator('.swagger-ui .dialog-ux .modal-ux');
    await dialog.locator('input').first().fill(apiKey);
    // The buttons are named by their aria-labels ("Apply credentials", ...), so they are found by class.
    await dialog.locator('button.modal-btn.authorize[type="submit"]').click();
    await dialog.getByRole('button', { name: 'Remove authorization' }).waitFor({ timeout: 5000 });
    await dialog.locator('button.btn-done').click();
  }

  // The documented example body, as the page fills it in.
  const run = await tryItOut(page, 'operations-executions-eval');
  expect(run.url === `${base}/api/v1/eval`, `eval went to ${run.url}`);
  expect(run.body.status === 'completed', `the example eval did not complete: ${JSON.stringify(run.body)}`);
  expect(/^exe_/.test(run.body.execution_id), `no execution_id: ${JSON.stringify(run.body)}`);
  expect(run.body.result === '42', `the example's last expression is not 42: ${JSON.stringify(run.body)}`);
  expect(run.body.stdout.includes('hello from python-executor'), `the example's output: ${JSON.stringify(run.body)}`);

  // The list with the parameters' defaults: a query string, and the run above in the page.
  const list = await tryItOut(page, 'operations-executions-list_executions');
  expect(/\/api\/v1\/executions(\?|$)/.test(list.url) && !list.url.includes('{'),
         `the list went to ${list.url}`);
  expect(Array.isArray(list.body.executions), `no executions array: ${JSON.stringify(list.body)}`);
  const listed = list.body.executions.find((e) => e.execution_id === run.body.execution_id);
  expect(listed && listed.status === 'completed', `the list lacks ${run.body.execution_id}: ${JSON.stringify(list.body)}`);

  const external = failedRequests.filter((u) => !u.startsWith(base));
  expect(external.length === 0, `the UI tried to load from the internet: ${external.join(', ')}`);
  console.log(`ok: /docs lists the operations and ran eval and the execution list through Try it out${
    apiKey ? ' (with the key from the Authorize dialog)' : ''}`);
} finally {
  await browser.close();
}
