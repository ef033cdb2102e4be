// Scenario 6: oidc-gate with no OIDC_* configuration uses its embedded
// development provider (PUBLIC_URL/dev-provider).
import { test, before, after } from 'node:test';

import { pickAppAddress, startApp } from '../lib/app.js';
import { launchBrowser } from '../lib/browser.js';
import { scenario, expectText, waitForPage } from '../lib/flows.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

let app;
let browser;

before(async () => {
  try {
    app = await startApp({ name: 'oidc-gate-dev-provider', address: await pickAppAddress() });
    browser = await launchBrowser();
  } catch (err) {
    await app?.stop().catch(() => {});
    throw err;
  }
}, { timeout: HOOK_TIMEOUT_MS });

after(async () => {
  await browser?.close().catch(() => {});
  await app?.stop().catch(() => {});
});

test('6. development provider: index → "login from here" → sign in as Ada Lovelace → /secret', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '6-dev-provider', async (page) => {
    await page.goto(`${app.url}/`);
    await page.getByRole('link', { name: 'login from here' }).click();

    await page.waitForURL((u) => u.href.startsWith(`${app.url}/dev-provider`)).catch(() => {
      throw new Error(`expected the development provider's page under ${app.url}/dev-provider, but the browser is at ${page.url()}`);
    });
    const values = await page.$$eval('input', (is) => is.map((i) => i.value));
    for (const v of ['Ada Lovelace', 'ada@example.com']) {
      if (!values.includes(v)) throw new Error(`the development provider's form is not prefilled with ${v} (input values: ${JSON.stringify(values)})`);
    }
    await page.getByRole('button', { name: 'Sign in' }).click();
    await page.waitForURL((u) => u.href.startsWith(app.url) && !u.pathname.startsWith('/dev-provider')
      && u.pathname !== '/callback').catch(() => {
      throw new Error(`expected to be back on oidc-gate after signing in, but the browser is at ${page.url()}`);
    });

    await page.goto(`${app.url}/`);
    await expectText(page, 'Ada Lovelace', { what: 'index shows the development user' });
    await page.goto(`${app.url}/secret`);
    await waitForPage(page, app.url, '/secret', '/secret when logged in');
    await expectText(page, 'Only logged in user can see this.', { what: '/secret' });
  }, { app });
});
