// Self-check of the harness, independent of oidc-gate: the provider starts and
// publishes its discovery document, Chromium starts and renders the
// provider's login page. When this fails, the other failures are about the
// environment, not about oidc-gate.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startProvider, CLIENT_ID } from '../lib/provider.js';
import { launchBrowser } from '../lib/browser.js';
import { OUTPUT_DIR } from '../lib/app.js';
import { scenario, expectProviderLoginForm } from '../lib/flows.js';
import { TEST_TIMEOUT_MS } from '../lib/timeouts.js';

let provider;
let browser;
after(async () => {
  await browser?.close();
  await provider?.close();
});

test('harness: oidc-provider serves discovery and Chromium renders its login page', { timeout: TEST_TIMEOUT_MS }, async () => {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const publicUrl = 'http://127.0.0.1:9'; // nothing listens there; the flow stops at the login form
  const log = fs.createWriteStream(path.join(OUTPUT_DIR, 'harness-provider.log'));
  provider = await startProvider({ publicUrl, log: (l) => log.write(`${l}\n`) });

  const d = provider.discovery;
  assert.equal(d.issuer, provider.issuer);
  for (const key of ['authorization_endpoint', 'token_endpoint', 'userinfo_endpoint', 'jwks_uri', 'end_session_endpoint']) {
    assert.ok(d[key]?.startsWith(`${provider.issuer}/`), `discovery has ${key}`);
  }
  assert.equal(d.backchannel_logout_supported, true);
  assert.equal(d.backchannel_logout_session_supported, true);
  assert.ok(d.scopes_supported.includes('email') && d.scopes_supported.includes('profile'));

  browser = await launchBrowser();
  await scenario(browser, '0-harness-provider-login', async (page) => {
    const auth = new URL(d.authorization_endpoint);
    auth.search = new URLSearchParams({
      client_id: CLIENT_ID,
      response_type: 'code',
      scope: 'openid email profile',
      redirect_uri: `${publicUrl}/callback`,
      state: 'harness-check',
      nonce: 'harness-check',
    }).toString();
    await page.goto(auth.href);
    await expectProviderLoginForm(page, provider);
  }, { provider });
});
