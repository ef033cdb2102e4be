// Scenarios 14-18: oidc-gate in forward-auth mode (FORWARD_AUTH=true) behind
// Debian's caddy running the README's forward_auth recipe
// (e2e/recipes/caddy-forward-auth.Caddyfile), in front of the Node upstream.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { ACCOUNTS } from '../lib/provider.js';
import { scenario } from '../lib/flows.js';
import {
  startGateway, signInAt, upstreamEcho, reportParts, PATH_TRICKS, expectNotServedAnonymously,
  IDENTITY_HEADERS, spoofedIn,
} from '../lib/gateway.js';
import { headerValues } from '../lib/upstream.js';
import { rawRequest, cookieHeader, wsEcho } from '../lib/http.js';
import { expectReadmeShows } from '../lib/recipes.js';
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const RECIPE = 'caddy-forward-auth.Caddyfile';
const alice = ACCOUNTS.alice;
let gw;

// No group rule: oidc-gate has no groups to report, which is when Caddy's
// copy_headers has nothing to copy for X-Auth-Request-Groups.
before(async () => {
  gw = await startGateway({ name: 'gw-caddy', recipe: RECIPE, mode: 'forward-auth', env: { PUBLIC_PATHS: '/public' } });
}, { timeout: HOOK_TIMEOUT_MS });
after(() => gw?.stop());

const run = (name, fn) => scenario(gw.browser, name, fn, reportParts(gw));

/** Headers whose value is a Caddy placeholder that was never filled in. */
const placeholders = (seen) => seen.headers.filter(([, v]) => /\{http\./.test(v)).map(([k, v]) => `${k}: ${v}`);

test('14. caddy forward_auth: the redirect of /oauth2/auth reaches the browser, sign-in lands on the original URL; the app gets the copied headers', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('14-caddy-forward-auth-sign-in', async (page, { navigations }) => {
    const seen = await signInAt(page, gw, '/app/page?x=1&y=two%20words');
    assert.match(navigations[0], new RegExp(`^30[23] GET ${gw.url}/app/page\\?x=1`), 'the anonymous navigation got a redirect');
    assert.equal(seen.path, '/app/page');
    assert.deepEqual(seen.query, { x: '1', y: 'two words' });
    assert.deepEqual(headerValues(seen, 'x-auth-request-user'), [alice.sub]);
    assert.deepEqual(headerValues(seen, 'x-auth-request-email'), [alice.email]);
    assert.deepEqual(placeholders(seen), [], 'the app got unfilled Caddy placeholders');
    for (const name of IDENTITY_HEADERS.filter((n) => n.startsWith('x-forwarded-'))) {
      assert.deepEqual(headerValues(seen, name), [], `${name} reached the app`);
    }
  });
  // The redirect itself, as a script sees it: to PUBLIC_URL/oauth2/start with the whole original URL in rd.
  const res = await rawRequest(gw.url, '/app/page?x=1&y=2', { headers: [['Accept', 'text/html']] });
  assert.ok([302, 303].includes(res.status), `HTTP ${res.status}`);
  const location = new URL(res.headers.location);
  assert.equal(`${location.origin}${location.pathname}`, `${gw.url}/oauth2/start`);
  assert.equal(location.searchParams.get('rd'), `${gw.url}/app/page?x=1&y=2`);
});

test('15. caddy forward_auth: identity headers a signed-in client sends never reach the app', { timeout: TEST_TIMEOUT_MS }, async () => {
  await run('15-caddy-forward-auth-spoofed-headers', async (page) => {
    await signInAt(page, gw, '/app/first');
    await page.context().setExtraHTTPHeaders({
      'X-Auth-Request-User': 'mallory', 'X-Auth-Request-Email': 'mallory@evil.example',
      'X-Auth-Request-Groups': 'mallory-admins', 'X-Auth-Request-Preferred-Username': 'mallory',
      'X-Forwarded-User': 'mallory', 'X-Forwarded-Email': 'mallory@evil.example',
    });
    await page.goto(`${gw.url}/app/spoofed`);
    const seen = await upstreamEcho(page);
    assert.deepEqual(spoofedIn(seen), [], 'client-sent identity reached the app (browser)');
    assert.deepEqual(headerValues(seen, 'x-auth-request-email'), [alice.email]);

    const cookie = await cookieHeader(page.context(), gw.url);
    const res = await rawRequest(gw.url, '/app/raw', {
      headers: [
        ['Cookie', cookie], ['Accept', 'application/json'],
        ['x-auth-request-groups', 'mallory-admins'], ['X-AUTH-REQUEST-GROUPS', 'mallory-ops'],
        ['x-auth-request-user', 'mallory'], ['x-forwarded-groups', 'mallory-admins'],
      ],
    });
    assert.equal(res.status, 200, res.body);
    assert.deepEqual(spoofedIn(res.json()), [], 'client-sent identity reached the app (script)');
  });
});

test('16. caddy forward_auth: without a session API requests get 401; X-Original-URI and path tricks do not open a protected path', { timeout: TEST_TIMEOUT_MS }, async () => {
  const before = gw.upstream.requests.length;
  for (const headers of [[['Accept', 'application/json']], [['Accept', 'text/html'], ['X-Requested-With', 'XMLHttpRequest']]]) {
    const res = await rawRequest(gw.url, '/api/data', { headers });
    assert.equal(res.status, 401, `${JSON.stringify(headers)}: ${res.body.slice(0, 200)}`);
  }
  // A client claiming, in the nginx recipe's header, that it asks for a public path.
  const res = await rawRequest(gw.url, '/private', { headers: [['Accept', 'application/json'], ['X-Original-URI', '/public/x']] });
  assert.equal(res.status, 401, res.body.slice(0, 200));
  assert.deepEqual(gw.upstream.requests.slice(before).map((r) => r.target), [], 'anonymous requests reached the app');

  const open = await rawRequest(gw.url, '/public/info', { headers: [['Accept', 'application/json']] });
  assert.equal(open.status, 200, 'a public path is served anonymously');
  assert.deepEqual(headerValues(open.json(), 'x-auth-request-user'), []);
  const statuses = {};
  for (const target of PATH_TRICKS) statuses[target] = await expectNotServedAnonymously(gw, target);
  console.log(`path tricks through caddy forward_auth: ${JSON.stringify(statuses)}`);
});

test('17. caddy forward_auth: WebSocket echo for a signed-in session, refused without one', { timeout: TEST_TIMEOUT_MS }, async () => {
  let cookie;
  await run('17-caddy-forward-auth-websocket', async (page) => {
    await signInAt(page, gw, '/app/ws-page');
    cookie = await cookieHeader(page.context(), gw.url);
  });
  const wsUrl = `${gw.url.replace('http:', 'ws:')}/app/ws`;
  const { handshake, echo } = await wsEcho(wsUrl, { headers: { Cookie: cookie } });
  assert.equal(echo, 'ping');
  assert.deepEqual(headerValues(handshake, 'x-auth-request-email'), [alice.email]);
  const before = gw.upstream.requests.length;
  await assert.rejects(wsEcho(wsUrl), (err) => err.status >= 300);
  assert.equal(gw.upstream.requests.length, before, 'an anonymous WebSocket upgrade reached the app');
});

test('18. README shows the Caddy forward_auth recipe exactly as this file runs it', () => expectReadmeShows(RECIPE));
