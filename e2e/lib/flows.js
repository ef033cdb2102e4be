// Steps shared by the scenarios, and the per-scenario wrapper that saves a
// screenshot and explains failures.
import { newPage, visibleText, screenshotPath } from './browser.js';

export const PASSWORD = 'correct horse battery staple';

/** Wait until the page's visible text contains `text` (string or RegExp). */
export async function expectText(page, text, { timeout = 5_000, what } = {}) {
  const deadline = Date.now() + timeout;
  let body = '';
  while (true) {
    body = await visibleText(page);
    if (typeof text === 'string' ? body.includes(text) : text.test(body)) return body;
    if (Date.now() > deadline) {
      throw new Error(`${what ? `${what}: ` : ''}expected the page to show ${JSON.stringify(String(text))}`);
    }
    await page.waitForTimeout(100);
  }
}

/** The page's visible text must NOT contain `text`. */
export async function expectNoText(page, text, what) {
  const body = await visibleText(page);
  if (typeof text === 'string' ? body.includes(text) : text.test(body)) {
    throw new Error(`${what ? `${what}: ` : ''}the page unexpectedly shows ${JSON.stringify(String(text))}`);
  }
}

function sameOrigin(url, base) {
  return new URL(url).origin === new URL(base).origin;
}

/**
 * Wait for the main frame to be on `base` (an origin) at `pathAndQuery`: an
 * exact path+query string, a RegExp tested against path+query, or undefined
 * for any path.
 */
export async function waitForPage(page, base, pathAndQuery, what) {
  const matches = (pq) => pathAndQuery === undefined
    || (pathAndQuery instanceof RegExp ? pathAndQuery.test(pq) : pq === pathAndQuery);
  try {
    await page.waitForURL((u) => sameOrigin(u.href, base) && matches(`${u.pathname}${u.search}`));
  } catch (err) {
    throw new Error(`${what || 'navigation'}: expected to arrive at ${base}${pathAndQuery ?? '/…'}, `
      + `but the browser is at ${page.url()} (${err.message.split('\n')[0]})`);
  }
}

/** The provider's (devInteractions) login form is shown. */
export async function expectProviderLoginForm(page, provider, what = 'provider login form') {
  try {
    await page.waitForURL((u) => u.href.startsWith(`${provider.issuer}/interaction/`));
  } catch {
    throw new Error(`${what}: expected the provider's login page (${provider.issuer}/interaction/…), `
      + `but the browser is at ${page.url()}`);
  }
  await expectText(page, 'Sign-in', { what });
  await page.locator('input[name="login"]').waitFor({ state: 'visible', timeout: 5_000 })
    .catch(() => { throw new Error(`${what}: the provider page has no login field (is it the consent page?)`); });
}

/** Type credentials into the provider's login form and submit it; the consent page follows. */
export async function providerSignIn(page, provider, account = 'alice') {
  await expectProviderLoginForm(page, provider);
  await page.locator('input[name="login"]').fill(account);
  await page.locator('input[name="password"]').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign-in' }).click();
  await expectProviderConsent(page, provider);
}

export async function expectProviderConsent(page, provider) {
  await page.waitForURL((u) => u.href.startsWith(`${provider.issuer}/interaction/`));
  await expectText(page, 'Authorize', { what: 'provider consent page' });
  await page.getByRole('button', { name: 'Continue' }).waitFor({ state: 'visible' });
}

/** Approve on the consent page. */
export async function providerConsent(page) {
  await page.getByRole('button', { name: 'Continue' }).click();
}

/** On the provider's "Do you want to sign-out" page: answer yes. */
export async function providerConfirmLogout(page, provider) {
  await page.waitForURL((u) => sameOrigin(u.href, provider.issuer), { timeout: 5_000 }).catch(() => {
    throw new Error(`expected the provider's sign-out confirmation page (${provider.issuer}/session/end…), but the browser is at ${page.url()}`);
  });
  await expectText(page, 'Do you want to sign-out', { what: 'provider logout confirmation' });
  await page.getByRole('button', { name: 'Yes, sign me out' }).click();
}

/** Full login for a fresh browser: /secret → provider login → consent → back on /secret. */
export async function loginThroughSecret(page, app, provider, account = 'alice') {
  await page.goto(`${app.url}/secret`);
  await providerSignIn(page, provider, account);
  await providerConsent(page);
  await waitForPage(page, app.url, '/secret', 'back from the provider');
  await expectText(page, 'Only logged in user can see this.', { what: '/secret after login' });
}

/**
 * Run one scenario in a fresh browser context. Always saves
 * test-output/<name>.png; on failure adds the page URL, its visible text, the
 * navigation history and the app's/provider's recent output to the error.
 */
export async function scenario(browser, name, fn, { app, provider, extra } = {}) {
  const { context, page, blocked, navigations } = await newPage(browser);
  try {
    await fn(page, { navigations });
  } catch (err) {
    const lines = [
      `--- scenario ${name} failed at ${page.url()}`,
      '--- visible text of the page:',
      await visibleText(page),
      '--- navigations (status method url):',
      ...navigations,
    ];
    if (blocked.length) lines.push('--- blocked non-loopback requests:', ...new Set(blocked));
    if (provider) lines.push('--- provider events:', ...provider.events.slice(-15).map((e) => JSON.stringify(e)));
    if (app) lines.push(`--- oidc-gate output (last lines; full log ${app.logPath}):`, app.logTail(30));
    if (extra) lines.push(...extra());
    // A new Error, so the report shows the whole text (Playwright's errors keep
    // their original stack text even when the message is changed).
    const where = (err.stack || '').split('\n').filter((l) => /^\s+at /.test(l)).join('\n');
    const wrapped = new Error(`${err.message}\n${lines.join('\n')}`);
    wrapped.stack = `Error: ${wrapped.message}\n${where}`;
    throw wrapped;
  } finally {
    await page.screenshot({ path: screenshotPath(name), fullPage: true }).catch((e) => {
      console.error(`screenshot for ${name} failed: ${e.message}`);
    });
    await context.close().catch(() => {});
  }
}
