// Opens the Swagger UI of a running server in headless Chromium, checks that the operations are listed, and runs
// an eval through "Try it out": node docs_try_it_out.mjs http://127.0.0.1:PORT
import { chromium } from 'playwright-core';

const base = process.argv[2];
if (!base) {
  console.error('usage: node docs_try_it_out.mjs BASE_URL');
  process.exit(2);
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
  for (const path of ['/api/v1/eval', '/api/v1/exec/sync', '/api/v1/exec/async', '/api/v1/executions/{id}',
                      '/api/v1/executions/{id}/events', '/health']) {
    await page.locator(`[data-path="${path}"]`).first().waitFor({ timeout: 15000 });
  }
  const op = page.locator('#operations-executions-eval');
  await op.locator('.opblock-summary').click();
  await op.getByRole('button', { name: 'Try it out' }).click();
  const body = op.locator('textarea.body-param__text');
  await body.fill(JSON.stringify({ code: "print('hello from the docs')\n6 * 7", eval_last_expr: true }));
  await op.locator('button.execute').click();
  const live = op.locator('.live-responses-table');
  await live.waitFor({ timeout: 30000 });
  await page.waitForFunction(
    (el) => el && el.innerText.includes('"result"'),
    await live.elementHandle(),
    { timeout: 30000 },
  );
  const text = await live.innerText();
  for (const needle of ['200', '"status": "completed"', '"result": "42"', 'hello from the docs']) {
    if (!text.includes(needle)) {
      throw new Error(`the response panel lacks ${needle}:\n${text}`);
    }
  }
  const external = failedRequests.filter((u) => !u.startsWith(base));
  if (external.length > 0) {
    throw new Error(`the UI tried to load from the internet: ${external.join(', ')}`);
  }
  console.log('ok: /docs lists the operations and ran an eval through Try it out');
} finally {
  await browser.close();
}
