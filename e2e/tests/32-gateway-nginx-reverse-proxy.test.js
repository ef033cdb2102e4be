// Scenarios 19-24: nginx as a plain reverse proxy (the README's recipe,
// e2e/recipes/nginx-reverse-proxy.conf) in front of oidc-gate in reverse
// proxy mode (UPSTREAM_URL = the Node upstream).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { ACCOUNTS } from '../lib/provider.js';
import { scenario } from '../lib/flows.js';
import {
  startGateway, signInAt, upstreamEcho, reportParts, PATH_TRICKS, expectNotServedAnonymously,
  IDENTITY_HEADERS, spoofedIn, browserWsEcho,
} from '../lib/gateway.js';
import { headerValues } from '../lib/upstream.js';
import { rawRequest, cookieHeader, wsEcho } from '../lib/http.js';
import { expectReadmeShows } from '../lib/recipes.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const RECIPE = 'nginx-reverse-proxy.conf';
const alice = ACCOUNTS.alice;
let gw;

before(async () => {
  gw = await startGateway({
    name: 'gw-nginx-proxy',
    recipe: RECIPE,
    mode: 'reverse-proxy',
    env: { PUBLIC_PATHS: '/public', ALLOWED_GROUPS: 'staff' },
  });
}, { timeout: HOOK_TIMEOUT_MS });
after(() => gw?.stop());

const run = (name, fn) => scenario(gw.browser, name, fn, reportParts(gw));

test('19. nginx → oidc-gate reverse proxy: sign in from a deep link; the app gets X-Forwarded-User, -Email, -Groups', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('19-nginx-reverse-proxy-sign-in', async (page) => {
    const seen = await signInAt(page, gw, '/app/page?x=1&y=two%20words');
    assert.equal(seen.path, '/app/page');
    assert.deepEqual(seen.query, { x: '1', y: 'two words' });
    assert.deepEqual(headerValues(seen, 'x-forwarded-user'), [alice.sub]);
    assert.deepEqual(headerValues(seen, 'x-forwarded-email'), [alice.email]);
    // Comma-joined; in which order is oidc-gate's choice (the groups the rules name come first).
    assert.deepEqual(headerValues(seen, 'x-forwarded-groups').map((g) => g.split(',').sort()), [[...alice.groups].sort()]);
    assert.deepEqual(headerValues(seen, 'x-forwarded-host'), [new URL(gw.url).host]);
  });
});

test('20. nginx → oidc-gate reverse proxy: identity headers a client sends (any case, repeated, named in Connection) never reach the app', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('20-nginx-reverse-proxy-spoofed-headers', async (page) => {
    await signInAt(page, gw, '/app/first');
    await page.context().setExtraHTTPHeaders({
      'X-Forwarded-User': 'mallory', 'X-Forwarded-Email': 'mallory@evil.example',
      'X-Forwarded-Groups': 'mallory-admins', 'X-Forwarded-Preferred-Username': 'mallory',
      'X-Auth-Request-User': 'mallory',
    });
    await page.goto(`${gw.url}/app/spoofed`);
    const seen = await upstreamEcho(page);
    assert.deepEqual(spoofedIn(seen), [], 'client-sent identity reached the app (browser)');
    assert.deepEqual(headerValues(seen, 'x-forwarded-email'), [alice.email]);

    const cookie = await cookieHeader(page.context(), gw.url);
    const res = await rawRequest(gw.url, '/app/raw', {
      headers: [
        ['Cookie', cookie], ['Accept', 'application/json'],
        ['x-forwarded-user', 'mallory'], ['X-FORWARDED-USER', 'mallory2'],
        ['x-forwarded-email', 'mallory@evil.example'], ['x-forwarded-access-token', 'mallory-token'],
        ['X-Auth-Request-Email', 'mallory@evil.example'],
        ['Connection', 'keep-alive, X-Forwarded-User'],
      ],
    });
    assert.equal(res.status, 200, res.body);
    const raw = res.json();
    assert.deepEqual(spoofedIn(raw), [], 'client-sent identity reached the app (script)');
    assert.deepEqual(headerValues(raw, 'x-forwarded-user'), [alice.sub]);
  });
});

test('21. nginx → oidc-gate reverse proxy: WebSocket echo for a signed-in browser, refused without a session', { timeout: TEST_TIMEOUT_MS }, async () => {
  let cookie;
  await run('21-nginx-reverse-proxy-websocket', async (page) => {
    await signInAt(page, gw, '/app/ws-page');
    const { handshake, echo } = await browserWsEcho(page, `${gw.url.replace('http:', 'ws:')}/app/ws`, 'hello through nginx and oidc-gate');
    assert.equal(echo, 'hello through nginx and oidc-gate');
    assert.deepEqual(headerValues(handshake, 'x-forwarded-email'), [alice.email]);
    cookie = await cookieHeader(page.context(), gw.url);
  });
  // A spoofed identity on the upgrade request is removed too.
  const { handshake } = await wsEcho(`${gw.url.replace('http:', 'ws:')}/app/ws`, {
    headers: { Cookie: cookie, 'X-Forwarded-User': 'mallory' },
  });
  assert.deepEqual(spoofedIn(handshake), []);
  const before = gw.upstream.requests.length;
  await assert.rejects(wsEcho(`${gw.url.replace('http:', 'ws:')}/app/ws`), (err) => err.status >= 300);
  assert.equal(gw.upstream.requests.length, before, 'an anonymous WebSocket upgrade reached the app');
});

test('22. nginx → oidc-gate reverse proxy: a PUBLIC_PATHS page is served anonymously; /public/../private-style tricks are not', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('22-nginx-reverse-proxy-public-path', async (page) => {
    await page.context().setExtraHTTPHeaders({ 'X-Forwarded-User': 'mallory' });
    await page.goto(`${gw.url}/public/info?x=1`);
    const seen = await upstreamEcho(page);
    assert.equal(seen.path, '/public/info');
    for (const name of IDENTITY_HEADERS) assert.deepEqual(headerValues(seen, name), [], `${name} on an anonymous public request`);
  });
  const statuses = {};
  for (const target of PATH_TRICKS) statuses[target] = await expectNotServedAnonymously(gw, target);
  console.log(`path tricks through nginx → oidc-gate: ${JSON.stringify(statuses)}`);
});

test('23. nginx → oidc-gate reverse proxy: without a session, API requests get 401 and navigations a redirect straight to the provider', { timeout: TEST_TIMEOUT_MS }, async () => {
  const before = gw.upstream.requests.length;
  for (const [what, method, headers] of [
    ['JSON', 'GET', [['Accept', 'application/json']]],
    ['XHR', 'GET', [['Accept', 'text/html'], ['X-Requested-With', 'XMLHttpRequest']]],
    ['POST', 'POST', [['Accept', 'text/html']]],
  ]) {
    const res = await rawRequest(gw.url, '/api/data', { method, headers });
    assert.equal(res.status, 401, `${what}: ${res.body.slice(0, 200)}`);
  }
  const nav = await rawRequest(gw.url, '/app/deep?x=1&y=2', { headers: [['Accept', 'text/html']] });
  assert.ok([302, 303].includes(nav.status), `HTTP ${nav.status}`);
  // One redirect, to the provider's authorization endpoint (not /oauth2/start first),
  // with the login in progress in a cookie of oidc-gate's host; signInAt (19)
  // shows it comes back to the deep link.
  const location = new URL(nav.headers.location, gw.url);
  assert.equal(location.origin, new URL(gw.provider.issuer).origin, location.href);
  assert.equal(location.searchParams.get('redirect_uri'), `${gw.url}/oauth2/callback`);
  assert.equal(location.searchParams.get('code_challenge_method'), 'S256');
  for (const name of ['state', 'nonce', 'code_challenge']) assert.ok(location.searchParams.get(name), name);
  const cookies = [nav.headers['set-cookie'] ?? []].flat();
  assert.ok(cookies.some((c) => /_login_/.test(c)), `a login-in-progress cookie: ${JSON.stringify(cookies)}`);
  assert.deepEqual(gw.upstream.requests.slice(before).map((r) => r.target), [], 'anonymous requests reached the app');
});

test('24. README shows the nginx reverse proxy recipe exactly as this file runs it', () => expectReadmeShows(RECIPE));
