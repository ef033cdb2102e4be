// Scenarios 11a-11c: one oidc-gate with two real OpenID Providers
// (two oidc-provider instances, two issuers) listed in CONFIG_FILE's
// [[providers]]: the chooser page, sign-in through each, and a rule of one
// provider refusing an account the other admits.
import { test, before, after } from 'node:test';
import fs from 'node:fs';
import path from 'node:path';

import { startProvider, ACCOUNTS, APP_ROUTES } from '../lib/provider.js';
import { pickAppAddress, startApp, OUTPUT_DIR } from '../lib/app.js';
import { launchBrowser, screenshotPath } from '../lib/browser.js';
import {
  scenario, expectText, expectNoText, waitForPage, providerSignIn, providerConsent,
} from '../lib/flows.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const SECRET = 'Only logged in user can see this.';
const { alice, bob } = ACCOUNTS;

let staff;
let partner;
let app;
let browser;
let log;

before(async () => {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  log = fs.createWriteStream(path.join(OUTPUT_DIR, 'providers-two.log'));
  const address = await pickAppAddress();
  const start = (id) => startProvider({
    publicUrl: address.publicUrl,
    // Each provider has its own redirect URI.
    routes: { ...APP_ROUTES, callback: `/callback/${id}` },
    log: (l) => log.write(`${id}: ${l}\n`),
  });
  staff = await start('staff');
  partner = await start('partner');
  const config = path.join(OUTPUT_DIR, 'providers-two.toml');
  const entry = (id, name, p, extra = []) => [
    '[[providers]]', `id = "${id}"`, `name = "${name}"`, `issuer = "${p.issuer}"`,
    `client_id = "${p.clientId}"`, `client_secret = "${p.clientSecret}"`, ...extra, '',
  ];
  fs.writeFileSync(config, [
    ...entry('staff', 'Example staff', staff),
    // The partner's accounts: only Bob.
    ...entry('partner', 'Partner company', partner, ['allowed_emails = ["bob@example.com"]']),
  ].join('\n'));
  app = await startApp({ name: 'oidc-gate-providers', address, env: { CONFIG_FILE: config } });
  browser = await launchBrowser();
}, { timeout: HOOK_TIMEOUT_MS });

after(async () => {
  await browser?.close().catch(() => {});
  await app?.stop().catch(() => {});
  await staff?.close().catch(() => {});
  await partner?.close().catch(() => {});
  log?.end();
});

/** /secret → the chooser (screenshot `shot`) → the button of `name`. */
async function choose(page, name, shot) {
  await page.goto(`${app.url}/secret`);
  await waitForPage(page, app.url, '/login?next=/secret', 'the chooser');
  await expectText(page, 'Sign in with Example staff', { what: 'the chooser lists the staff provider' });
  await expectText(page, 'Sign in with Partner company', { what: 'the chooser lists the partner provider' });
  if (shot) await page.screenshot({ path: screenshotPath(shot), fullPage: true });
  await page.getByRole('link', { name: `Sign in with ${name}` }).click();
}

test('11a. two providers: /secret shows the chooser; staff signs Alice in and back on /secret', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '11a-sign-in-staff', async (page) => {
    await choose(page, 'Example staff', '11-chooser');
    await providerSignIn(page, staff, 'alice');
    await providerConsent(page);
    await waitForPage(page, app.url, '/secret', 'back from the staff provider');
    await expectText(page, SECRET, { what: '/secret after signing in at staff' });
    await page.goto(`${app.url}/`);
    await expectText(page, alice.email, { what: 'index shows Alice' });
  }, { app, provider: staff });
});

test('11b. two providers: the partner signs Bob in through its own redirect URI', { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '11b-sign-in-partner', async (page, { navigations }) => {
    await choose(page, 'Partner company');
    await providerSignIn(page, partner, 'bob');
    await providerConsent(page);
    await waitForPage(page, app.url, '/secret', 'back from the partner provider');
    await expectText(page, SECRET, { what: '/secret after signing in at the partner' });
    if (!navigations.some((n) => n.includes(`${app.url}/callback/partner?`))) {
      throw new Error(`the partner's code did not come back to /callback/partner: ${navigations.join('\n')}`);
    }
    await page.goto(`${app.url}/`);
    await expectText(page, bob.email, { what: 'index shows Bob' });
  }, { app, provider: partner });
});

test("11c. a provider's own rule: the partner may not sign Alice in (403), whom staff admits (11a)", { timeout: TEST_TIMEOUT_MS }, async () => {
  await scenario(browser, '11c-partner-rule-refuses', async (page) => {
    await choose(page, 'Partner company');
    await providerSignIn(page, partner, 'alice');
    await providerConsent(page);
    await expectText(page, 'This account may not use this site', { what: 'the refusal page' });
    await expectText(page, 'email_not_allowed', { what: 'its reason' });
    await page.screenshot({ path: screenshotPath('11c-partner-rule-refusal-page'), fullPage: true });
    await page.goto(`${app.url}/secret`);
    await expectNoText(page, SECRET, '/secret after the refusal');
  }, { app, provider: partner });
});
