// Scenarios 7-13: oidc-gate in forward-auth mode (FORWARD_AUTH=true) behind
// Debian's nginx running the README's auth_request recipe
// (e2e/recipes/nginx-auth-request.conf), in front of the Node upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { ACCOUNTS } from '../lib/provider.js';
import { screenshotPath } from '../lib/browser.js';
import { scenario, expectText, waitForPage, providerConfirmLogout, expectProviderLoginForm } from '../lib/flows.js';
import {
  startGateway, signInAt, upstreamEcho, reportParts, PATH_TRICKS, expectNotServedAnonymously,
  IDENTITY_HEADERS, spoofedIn, browserWsEcho,
} from '../lib/gateway.js';
import { headerValues } from '../lib/upstream.js';
import { rawRequest, cookieHeader, wsEcho } from '../lib/http.js';
import { expectReadmeShows } from '../lib/recipes.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const RECIPE = 'nginx-auth-request.conf';
const alice = ACCOUNTS.alice;
let gw;

before(async () => {
  gw = await startGateway({
    name: 'gw-nginx-auth',
    recipe: RECIPE,
    mode: 'forward-auth',
    env: { PUBLIC_PATHS: '/public', ALLOWED_GROUPS: 'staff' },
  });
}, { timeout: HOOK_TIMEOUT_MS });
after(() => gw?.stop());

const run = (name, fn) => scenario(gw.browser, name, fn, reportParts(gw));

test('7. nginx auth_request: anonymous deep link → provider → back on the same URL and query; the app gets X-User, X-Email, X-Groups', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('7-nginx-auth-request-sign-in', async (page, { navigations }) => {
    const seen = await signInAt(page, gw, '/app/page?x=1&y=two%20words');
    assert.match(navigations[0], new RegExp(`^30[23] GET ${gw.url}/app/page\\?x=1`), 'nginx answered the anonymous navigation with a redirect');
    assert.equal(seen.path, '/app/page');
    assert.deepEqual(seen.query, { x: '1', y: 'two words' });
    assert.deepEqual(headerValues(seen, 'x-user'), [alice.sub]);
    assert.deepEqual(headerValues(seen, 'x-email'), [alice.email]);
    // Comma-joined; in which order is oidc-gate's choice (the groups the rules name come first).
    assert.deepEqual(headerValues(seen, 'x-groups').map((g) => g.split(',').sort()), [[...alice.groups].sort()]);
    for (const name of IDENTITY_HEADERS) assert.deepEqual(headerValues(seen, name), [], `${name} reached the app`);
  });
});

test('8. nginx auth_request: identity headers a signed-in client sends (any case, repeated) never reach the app', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('8-nginx-auth-request-spoofed-headers', async (page) => {
    await signInAt(page, gw, '/app/first');
    // The browser itself sends them on every request from now on.
    const spoofs = {
      'X-User': 'mallory', 'X-Email': 'mallory@evil.example', 'X-Groups': 'mallory-admins',
      'X-Auth-Request-Email': 'mallory@evil.example', 'X-Auth-Request-User': 'mallory',
      'X-Forwarded-User': 'mallory', 'X-Forwarded-Email': 'mallory@evil.example', 'X-Forwarded-Groups': 'mallory-admins',
    };
    await page.context().setExtraHTTPHeaders(spoofs);
    await page.goto(`${gw.url}/app/spoofed`);
    const seen = await upstreamEcho(page);
    assert.deepEqual(spoofedIn(seen), [], 'client-sent identity reached the app (browser)');
    assert.deepEqual(headerValues(seen, 'x-email'), [alice.email]);

    // A script: odd cases and repeated names, on the same session.
    const cookie = await cookieHeader(page.context(), gw.url);
    const res = await rawRequest(gw.url, '/app/raw', {
      headers: [
        ['Cookie', cookie], ['Accept', 'application/json'],
        ['x-email', 'mallory@evil.example'], ['X-EMAIL', 'mallory2@evil.example'],
        ['x-user', 'mallory'], ['X-User', 'mallory'],
        ['x-auth-request-user', 'mallory'], ['X-Auth-Request-User', 'mallory'],
        ['x-forwarded-user', 'mallory'], ['X-FORWARDED-EMAIL', 'mallory@evil.example'],
        ['Connection', 'keep-alive, X-Email'],
      ],
    });
    assert.equal(res.status, 200, res.body);
    const raw = res.json();
    assert.deepEqual(spoofedIn(raw), [], 'client-sent identity reached the app (script)');
    assert.deepEqual(headerValues(raw, 'x-email'), [alice.email]);
    assert.deepEqual(headerValues(raw, 'x-user'), [alice.sub]);
  });
});

test('9. nginx auth_request: without a session, API requests get 401, browser navigations a redirect to /oauth2/start; nothing reaches the app', { timeout: TEST_TIMEOUT_MS }, async () => {
  const before = gw.upstream.requests.length;
  const spoof = [['X-Email', 'mallory@evil.example'], ['X-Forwarded-User', 'mallory']];
  const cases = [
    { what: 'JSON', headers: [['Accept', 'application/json'], ...spoof] },
    { what: 'XHR', headers: [['Accept', 'text/html'], ['X-Requested-With', 'XMLHttpRequest']] },
    { what: 'POST', method: 'POST', headers: [['Accept', 'text/html']] },
    { what: 'fetch() in a page', headers: [['Accept', '*/*'], ['Sec-Fetch-Mode', 'cors']] },
    { what: 'browser navigation', headers: [['Accept', 'text/html,application/xhtml+xml'], ...spoof], redirect: true },
  ];
  for (const c of cases) {
    const res = await rawRequest(gw.url, '/api/data?q=1&r=2', { method: c.method, headers: c.headers });
    if (!c.redirect) {
      assert.equal(res.status, 401, `${c.what}: ${res.body.slice(0, 200)}`);
      continue;
    }
    assert.ok([302, 303].includes(res.status), `${c.what}: HTTP ${res.status}`);
    const location = new URL(res.headers.location);
    assert.equal(`${location.origin}${location.pathname}`, `${gw.url}/oauth2/start`, c.what);
    assert.equal(location.searchParams.get('rd'), `${gw.url}/api/data?q=1&r=2`, `${c.what}: the whole URL in rd`);
  }
  assert.deepEqual(gw.upstream.requests.slice(before).map((r) => r.target), [], 'anonymous requests reached the app');
});

test('10. nginx auth_request: PUBLIC_PATHS are served anonymously (without identity), and no path trick reaches the app', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('10-nginx-auth-request-public-path', async (page) => {
    await page.goto(`${gw.url}/public/info?x=1`);
    const seen = await upstreamEcho(page);
    assert.equal(seen.path, '/public/info');
    for (const name of ['x-user', 'x-email', 'x-groups', ...IDENTITY_HEADERS]) {
      assert.deepEqual(headerValues(seen, name), [], `${name} on an anonymous public request`);
    }
  });
  const spoofed = await rawRequest(gw.url, '/public/info', { headers: [['X-Email', 'mallory@evil.example'], ['X-Auth-Request-User', 'mallory']] });
  assert.deepEqual(spoofedIn(spoofed.json()), [], 'client-sent identity reached the app on a public path');
  const statuses = {};
  for (const target of PATH_TRICKS) statuses[target] = await expectNotServedAnonymously(gw, target);
  console.log(`path tricks through nginx auth_request: ${JSON.stringify(statuses)}`);
});

test('11. nginx auth_request: WebSocket echo through nginx for a signed-in browser, refused without a session', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('11-nginx-auth-request-websocket', async (page) => {
    await signInAt(page, gw, '/app/ws-page');
    const { handshake, echo } = await browserWsEcho(page, `${gw.url.replace('http:', 'ws:')}/app/ws`, 'hello through nginx');
    assert.equal(echo, 'hello through nginx');
    assert.deepEqual(headerValues(handshake, 'x-email'), [alice.email]);
    await expectText(page, 'Upstream app');
  });
  const before = gw.upstream.requests.length;
  await assert.rejects(wsEcho(`${gw.url.replace('http:', 'ws:')}/app/ws`), (err) => err.status >= 300);
  assert.equal(gw.upstream.requests.length, before, 'an anonymous WebSocket upgrade reached the app');
});

test('12. nginx auth_request: /oauth2/sign_out confirm page → provider sign-out → back on rd, signed out', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('12-nginx-auth-request-sign-out', async (page) => {
    await signInAt(page, gw, '/app/before-sign-out');
    await page.goto(`${gw.url}/oauth2/sign_out?rd=/public/signed-out`);
    await waitForPage(page, gw.url, /^\/oauth2\/sign_out/, 'the sign-out confirm page');
    const form = page.locator('form[method="post" i]');
    await form.waitFor({ state: 'visible', timeout: 5_000 });
    await page.screenshot({ path: screenshotPath('12-nginx-auth-request-sign-out-confirm'), fullPage: true });
    await form.getByRole('button', { name: 'Sign out' }).click();
    await providerConfirmLogout(page, gw.provider);
    await waitForPage(page, gw.url, '/public/signed-out', 'rd after sign-out');
    const seen = await upstreamEcho(page);
    assert.deepEqual(headerValues(seen, 'x-email'), [], 'the page after sign-out still had an identity');

    await page.goto(`${gw.url}/app/after-sign-out`);
    await expectProviderLoginForm(page, gw.provider, 'after sign-out the app asks to sign in again, at the provider');
  });
});

test('13. README shows the nginx auth_request recipe exactly as this file runs it', () => expectReadmeShows(RECIPE));
