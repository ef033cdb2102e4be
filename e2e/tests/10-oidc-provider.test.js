// Scenarios 1-5: oidc-gate against a real OpenID Provider (oidc-provider),
// driven through headless Chromium like a person would.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startProvider, ACCOUNTS } from '../lib/provider.js';
import { screenshotPath } from '../lib/browser.js';
import { startProviderAppBrowser } from '../lib/setup.js';
import {
  scenario, expectText, expectNoText, waitForPage, loginThroughSecret,
  providerSignIn, providerConsent, providerConfirmLogout, expectProviderLoginForm,
  expectProviderConsent,
} from '../lib/flows.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const SECRET = 'Only logged in user can see this.';
const alice = ACCOUNTS.alice;

let provider;
let app;
let browser;
let running;

before(async () => {
  running = await startProviderAppBrowser({ startProvider, name: 'oidc-gate', providerLog: 'provider.log' });
  ({ provider, app, browser } = running);
}, { timeout: HOOK_TIMEOUT_MS });

after(() => running?.stop());

const ctx = () => ({ app, provider });

test('1. anonymous /secret → provider login form → consent → back on /secret; index shows the user', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '1-login-secret', async (page) => {
    // The page loads oidc-gate's host asks for: /secret redirects straight to
    // the provider (one redirect, no /login in between).
    const ours = [];
    page.on('request', (r) => {
      const url = new URL(r.url());
      if (r.isNavigationRequest() && url.origin === new URL(app.url).origin) ours.push(url.pathname);
    });
    await page.goto(`${app.url}/secret`);
    await providerSignIn(page, provider, 'alice');
    await providerConsent(page);
    await waitForPage(page, app.url, '/secret', 'back from the provider');
    await expectText(page, SECRET, { what: '/secret after login' });
    assert.deepEqual(ours, ['/secret', '/callback', '/secret'], 'the sign-in from /secret, as oidc-gate saw it');

    await page.goto(`${app.url}/`);
    await expectText(page, alice.name, { what: 'index shows the user name' });
    await expectText(page, alice.email, { what: 'index shows the user email' });
  }, ctx());
});

test('2. RP-initiated logout: "Log out" on the index ends the oidc-gate and the provider session', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '2-rp-initiated-logout', async (page, { navigations }) => {
    await loginThroughSecret(page, app, provider, 'alice');
    await page.goto(`${app.url}/`);
    await expectText(page, alice.name, { what: 'index before logout' });

    const beforeLogout = provider.events.length;
    await page.getByRole('button', { name: 'Log out' }).click();
    // Before the provider's own logout ends the grant (at the confirmation
    // below), oidc-gate has revoked the session's access token at the
    // revocation endpoint (in the background).
    const deadline = Date.now() + 5_000;
    const revoked = () => provider.events.slice(beforeLogout).filter((e) => e.event.startsWith('access_token.destroyed'));
    while (!revoked().length && Date.now() < deadline) await page.waitForTimeout(100);
    const errors = provider.events.slice(beforeLogout).filter((e) => e.event === 'revocation.error');
    if (!revoked().length || errors.length) {
      throw new Error(`expected oidc-gate to revoke the access token at logout; provider events: ${JSON.stringify(provider.events.slice(beforeLogout))}`);
    }
    // oidc-provider's end_session endpoint asks for confirmation.
    await providerConfirmLogout(page, provider);
    await waitForPage(page, app.url, /^\/(\?.*)?$/, 'post_logout_redirect_uri');
    await expectText(page, 'login from here', { what: 'index after logout' });
    await expectNoText(page, alice.name, 'index after logout');

    // /secret must ask to log in again, and the provider must ask for credentials
    // again (its session is gone too), rather than signing in silently.
    const from = navigations.length;
    await page.goto(`${app.url}/secret`);
    await page.waitForURL((u) => u.href.startsWith(`${provider.issuer}/interaction/`)
      || (u.href.startsWith(app.url) && u.pathname === '/secret'));
    if (page.url().startsWith(app.url)) {
      const viaProvider = navigations.slice(from).some((n) => n.includes(` ${provider.issuer}/`));
      throw new Error(viaProvider
        ? 'after logout, /secret went to the provider and came back signed in without a login form: the provider session survived (was end_session called and confirmed?)'
        : 'after logout, /secret was served without a new login: the oidc-gate session survived');
    }
    await expectProviderLoginForm(page, provider,
      'after logout the provider should show its login form (its session should be gone)');
  }, ctx());
});

test('3. back-channel logout: ending the session at the provider logs the user out of oidc-gate', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '3-backchannel-logout', async (page) => {
    await loginThroughSecret(page, app, provider, 'alice');
    await page.goto(`${app.url}/`);
    await expectText(page, alice.name, { what: 'index before logout' });

    const seen = provider.events.length;
    await page.goto(provider.discovery.end_session_endpoint);
    await providerConfirmLogout(page, provider);
    await expectText(page, 'Sign-out Success', { what: "provider's end_session success page" });
    // oidc-provider delivers the logout token before answering the confirmation.
    const delivery = provider.events.slice(seen).filter((e) => e.event.startsWith('backchannel.'));

    await page.goto(`${app.url}/`);
    try {
      await expectText(page, 'login from here', { what: 'index after back-channel logout', timeout: 3_000 });
      await expectNoText(page, alice.name, 'index after back-channel logout');
    } catch (err) {
      err.message += `\nback-channel delivery seen by the provider: ${JSON.stringify(delivery)}`;
      throw err;
    }
    if (!delivery.some((e) => e.event === 'backchannel.success')) {
      throw new Error(`the provider did not report a successful back-channel logout delivery: ${JSON.stringify(delivery)}`);
    }
    await page.goto(`${app.url}/secret`);
    await expectProviderLoginForm(page, provider, '/secret after back-channel logout');
  }, ctx());
});

test('4. deep link: anonymous /secret?x=1 → login → back on exactly /secret?x=1', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '4-deep-link', async (page) => {
    await page.goto(`${app.url}/secret?x=1`);
    await providerSignIn(page, provider, 'bob');
    await providerConsent(page);
    await waitForPage(page, app.url, '/secret?x=1', 'back from the provider');
    await expectText(page, SECRET, { what: '/secret?x=1 after login' });
  }, ctx());
});

test('5. cancel at the consent page → oidc-gate error page (4xx) with a working "try again" link', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '5-cancel-at-consent', async (page) => {
    // Remember the last oidc-gate document response (the error page's status).
    let lastAppDoc = null;
    page.on('response', (res) => {
      if (res.request().isNavigationRequest() && res.frame() === page.mainFrame() && res.url().startsWith(app.url)) {
        lastAppDoc = res;
      }
    });

    await page.goto(`${app.url}/secret`);
    await providerSignIn(page, provider, 'alice');
    await page.getByRole('link', { name: '[ Cancel ]' }).click();
    await waitForPage(page, app.url, undefined, 'back from the provider after cancelling');
    await page.waitForLoadState('load');
    const status = lastAppDoc?.status();
    if (!(status >= 400 && status < 500)) {
      throw new Error(`expected a 4xx error page from oidc-gate after the cancelled sign-in, got HTTP ${status} at ${lastAppDoc?.url()}`);
    }
    await expectText(page, /cancel|denied|abort/i, { what: 'error page explains the cancelled sign-in' });
    await expectNoText(page, SECRET, 'error page');
    await page.screenshot({ path: screenshotPath('5-cancel-at-consent-error-page'), fullPage: true });

    // "Try again" link to /login.
    const links = await page.$$eval('a[href]', (as) => as.map((a) => a.href));
    const retry = links.find((h) => { const u = new URL(h); return u.origin === new URL(app.url).origin && u.pathname === '/login'; });
    if (!retry) throw new Error(`the error page has no link to ${app.url}/login (links: ${JSON.stringify(links)})`);
    await page.locator(`a[href="${new URL(retry).pathname}${new URL(retry).search}"], a[href="${retry}"]`).first().click();

    // A new login starts; the provider still knows the user (the sign-in itself
    // succeeded before the consent was cancelled), so it may go straight to consent.
    await page.waitForURL((u) => u.href.startsWith(`${provider.issuer}/interaction/`));
    if (await page.locator('input[name="login"]').count()) {
      await providerSignIn(page, provider, 'alice');
    } else {
      await expectProviderConsent(page, provider);
    }
    await providerConsent(page);
    await waitForPage(page, app.url, undefined, 'back from the provider after retrying');
    await page.goto(`${app.url}/`);
    await expectText(page, alice.name, { what: 'index after the retried login' });
    await page.goto(`${app.url}/secret`);
    await expectText(page, SECRET, { what: '/secret after the retried login' });
  }, ctx());
});
