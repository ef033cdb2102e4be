// Scenarios 60-61: step-up (CONFIG_FILE [[paths]] max_age / acr_values)
// through nginx in front of oidc-gate's reverse proxy, against the real
// oidc-provider: max_age=0 makes the provider ask for the password again
// and keeps the user signed in; an acr the provider does not deliver is
// refused, and the user stays signed in as before.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { ACCOUNTS } from '../lib/provider.js';
import { scenario, expectProviderLoginForm, expectText, waitForPage, PASSWORD } from '../lib/flows.js';
import { startGateway, signInAt, upstreamEcho, reportParts } from '../lib/gateway.js';
import { headerValues } from '../lib/upstream.js';
import { OUTPUT_DIR } from '../lib/app.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const alice = ACCOUNTS.alice;
let gw;

before(async () => {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const config = path.join(OUTPUT_DIR, 'step-up.toml');
  fs.writeFileSync(config, [
    '[[paths]]', 'prefix = "/app/admin"', 'max_age = "0s"', '',
    '[[paths]]', 'prefix = "/app/vault"', 'acr_values = ["mfa"]', '',
  ].join('\n'));
  gw = await startGateway({
    name: 'gw-step-up',
    recipe: 'nginx-reverse-proxy.conf',
    mode: 'reverse-proxy',
    // A max_age=0 sign-in counts as made for the request for
    // max(OIDC_CLOCK_SKEW, 30 s): 5 s of skew makes that 30 s.
    env: { CONFIG_FILE: config, OIDC_CLOCK_SKEW: '5s' },
  });
}, { timeout: HOOK_TIMEOUT_MS });
after(() => gw?.stop());

const run = (name, fn) => scenario(gw.browser, name, fn, reportParts(gw));

/** The provider's login form again; after it, its consent page if it asks. */
async function signInAgain(page, account = 'alice') {
  await expectProviderLoginForm(page, gw.provider, 'the provider asks for the password again');
  await page.locator('input[name="login"]').fill(account);
  await page.locator('input[name="password"]').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign-in' }).click();
  // The consent page, unless the provider remembers the grant.
  await page.waitForLoadState();
  const consent = page.getByRole('button', { name: 'Continue' });
  if (await consent.isVisible().catch(() => false)) await consent.click();
}

// A sign-in counts as made for a max_age=0 request for 30 seconds here (the
// way back from the provider): the test waits that out before asking for /app/admin.
const FRESH_MS = 31_000;

test('60. step-up max_age=0: /app/admin makes the real provider ask for the password again, and the user stays signed in', { timeout: TEST_TIMEOUT_MS + FRESH_MS }, async () => {
  await run('60-step-up-max-age', async (page) => {
    const first = await signInAt(page, gw, '/app/page');
    assert.deepEqual(headerValues(first, 'x-forwarded-user'), [alice.sub]);
    await new Promise((resolve) => setTimeout(resolve, FRESH_MS));
    const before = gw.upstream.requests.length;
    await page.goto(`${gw.url}/app/admin?x=1`);
    await signInAgain(page);
    await waitForPage(page, gw.url, '/app/admin?x=1', 'back from the second sign-in');
    const seen = await upstreamEcho(page);
    assert.deepEqual(headerValues(seen, 'x-forwarded-user'), [alice.sub]);
    assert.deepEqual(
      gw.upstream.requests.slice(before).map((r) => r.target),
      ['/app/admin?x=1'],
      'the app saw /app/admin before the new sign-in, or more than once',
    );
    // Other paths still work with the session, without another sign-in.
    await page.goto(`${gw.url}/app/other`);
    assert.deepEqual(headerValues(await upstreamEcho(page), 'x-forwarded-user'), [alice.sub]);
  });
});

test('61. step-up acr_values: an acr the provider does not deliver is refused (acr_not_satisfied); the user stays signed in', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('61-step-up-acr-refused', async (page) => {
    await signInAt(page, gw, '/app/page');
    const before = gw.upstream.requests.length;
    await page.goto(`${gw.url}/app/vault`);
    // oidc-provider signs alice in without the asked-for acr ("mfa"): with
    // its session it may not even show a form.
    await expectText(page, 'acr_not_satisfied', { what: 'the refusal page', timeout: 10_000 });
    assert.deepEqual(gw.upstream.requests.slice(before).map((r) => r.target), [], 'the app saw /app/vault');
    await page.goto(`${gw.url}/app/after-refusal`);
    assert.deepEqual(headerValues(await upstreamEcho(page), 'x-forwarded-user'), [alice.sub]);
  });
});
