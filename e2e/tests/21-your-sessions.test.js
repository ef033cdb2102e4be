// Scenario 6b: "Your sessions" (/sessions) with two browser contexts of one
// person: the first sees both, "this device" on its own, ends the other one,
// which is signed out at its next request.
import { test, before, after } from 'node:test';

import { pickAppAddress, startApp } from '../lib/app.js';
import { launchBrowser, newPage, screenshotPath } from '../lib/browser.js';
import { scenario, expectText, waitForPage } from '../lib/flows.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

let app;
let browser;

before(async () => {
  try {
    app = await startApp({ name: 'oidc-gate-your-sessions', address: await pickAppAddress() });
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

/** Signs in through the development provider (prefilled with Ada Lovelace). */
async function signIn(page) {
  await page.goto(`${app.url}/login`);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => u.href.startsWith(app.url) && !u.pathname.startsWith('/dev-provider')
    && u.pathname !== '/callback');
}

test('6b. your sessions: two browsers of Ada, the first ends the other, which is signed out', { timeout: TEST_TIMEOUT_MS }, async () => {
  const other = await newPage(browser);
  try {
    await scenario(browser, '6b-your-sessions', async (page) => {
      await signIn(page);
      await signIn(other.page);

      await page.goto(`${app.url}/`);
      await page.getByRole('link', { name: 'Your sessions' }).click();
      await waitForPage(page, app.url, '/sessions', 'the sessions page from the index');
      await expectText(page, 'this device', { what: 'this browser is marked' });
      const ends = page.getByRole('button', { name: 'End this session' });
      if (await ends.count() !== 1) throw new Error(`expected one "End this session" button, found ${await ends.count()}`);
      await page.screenshot({ path: screenshotPath('6b-your-sessions-two'), fullPage: true });
      await ends.click();
      await waitForPage(page, app.url, '/sessions', 'back on the sessions page');
      await expectText(page, 'signed in nowhere else', { what: 'the other session is gone' });

      // The other browser is signed out at its next request.
      await other.page.goto(`${app.url}/secret`);
      await other.page.waitForURL((u) => u.pathname.startsWith('/dev-provider')).catch(() => {
        throw new Error(`the ended session should be sent to sign in, but is at ${other.page.url()}`);
      });
      // This one is not.
      await page.goto(`${app.url}/secret`);
      await expectText(page, 'Only logged in user can see this.', { what: '/secret still open here' });
    }, { app });
  } finally {
    await other.context.close().catch(() => {});
  }
});
