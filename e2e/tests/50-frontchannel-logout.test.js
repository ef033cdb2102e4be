// Scenario 25: front-channel logout through a real provider that sends it
// (oidc-provider 6.x, the last release with Front-Channel Logout). Alice is
// signed in on two devices (two browser contexts, two provider sessions);
// signing out at the provider on one loads oidc-gate's
// /frontchannel-logout?iss=…&sid=… in a hidden frame, which ends that
// device's session only.
import { test, before, after } from 'node:test';

import { startFrontchannelProvider } from '../lib/provider-frontchannel.js';
import { newPage } from '../lib/browser.js';
import { startProviderAppBrowser } from '../lib/setup.js';
import {
  scenario, expectText, loginThroughSecret, providerConfirmLogout, expectProviderLoginForm,
} from '../lib/flows.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const SECRET = 'Only logged in user can see this.';

let provider;
let app;
let browser;
let running;

before(async () => {
  running = await startProviderAppBrowser({
    startProvider: startFrontchannelProvider, name: 'fc-oidc-gate', providerLog: 'fc-provider.log',
  });
  ({ provider, app, browser } = running);
}, { timeout: HOOK_TIMEOUT_MS });

after(() => running?.stop());

test('25. front-channel logout: signing out at the provider ends that device\'s session only', { timeout: TEST_TIMEOUT_MS }, async () => {
  if (!provider.discovery.frontchannel_logout_session_supported) {
    throw new Error(`the provider does not advertise front-channel logout: ${JSON.stringify(provider.discovery)}`);
  }
  const other = await newPage(browser);
  try {
    await scenario(browser, '25-frontchannel-logout', async (page) => {
      await loginThroughSecret(page, app, provider, 'alice');
      await loginThroughSecret(other.page, app, provider, 'alice');

      // What the provider's hidden frame got from oidc-gate.
      const frames = [];
      page.on('response', (res) => {
        if (res.url().startsWith(`${app.url}/frontchannel-logout`)) frames.push(res);
      });
      const refused = [];
      page.on('console', (m) => { if (/frame|Content Security Policy/i.test(m.text())) refused.push(m.text()); });

      await page.goto(provider.discovery.end_session_endpoint);
      await providerConfirmLogout(page, provider);
      // The provider's page loads the frames, then goes on to its success page.
      await expectText(page, /Sign-out Success|signed out/i, { what: "the provider's page after the frames", timeout: 10_000 });
      if (frames.length !== 1) throw new Error(`expected one front-channel request to oidc-gate, saw ${frames.length}`);
      const frame = frames[0];
      const query = new URL(frame.url()).searchParams;
      if (query.get('iss') !== provider.issuer || !query.get('sid')) {
        throw new Error(`the provider's front-channel request lacks iss or sid: ${frame.url()}`);
      }
      const headers = await frame.allHeaders();
      if (frame.status() !== 200) throw new Error(`/frontchannel-logout answered ${frame.status()}`);
      if (!(headers['content-security-policy'] || '').includes(`frame-ancestors ${provider.issuer}`)) {
        throw new Error(`the page may not be framed by the provider: ${headers['content-security-policy']}`);
      }
      if (headers['cache-control'] !== 'no-store') throw new Error(`cache-control: ${headers['cache-control']}`);
      if (refused.length) throw new Error(`the browser refused the frame: ${refused.join(' | ')}`);

      // This device is signed out of oidc-gate (and of the provider) …
      await page.goto(`${app.url}/`);
      await expectText(page, 'login from here', { what: 'index after front-channel logout' });
      await page.goto(`${app.url}/secret`);
      await expectProviderLoginForm(page, provider, '/secret after front-channel logout');
      // … the other one is not.
      await other.page.goto(`${app.url}/secret`);
      await expectText(other.page, SECRET, { what: "the other device's /secret" });
    }, { app, provider });
  } finally {
    await other.context.close().catch(() => {});
  }
});
