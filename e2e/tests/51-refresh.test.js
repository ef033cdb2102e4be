// Scenarios 50-53: token refresh against the real oidc-provider (rotating
// refresh tokens, 4-second access tokens): the app behind two oidc-gate
// instances in reverse-proxy mode gets a fresh access token after each
// expiry, 50 requests at expiry spread over both instances cause exactly one
// refresh grant at the provider, and once the grant is revoked at the
// provider the session ends on both instances at the next refresh, with one
// refused attempt in all; signing out revokes the refresh token at the
// provider. Run with the sessions in PostgreSQL, then in Redis
// (users in PostgreSQL).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { startProvider, GATEWAY_ROUTES } from '../lib/provider.js';
import { pickAppAddress, startApp, OUTPUT_DIR } from '../lib/app.js';
import { startUpstream, headerValues } from '../lib/upstream.js';
import { launchBrowser, newPage } from '../lib/browser.js';
import { providerSignIn, providerConsent, waitForPage } from '../lib/flows.js';
import { cookieHeader } from '../lib/http.js';
import { TEST_TIMEOUT_MS } from '../lib/timeouts.js';

const DATABASE_URL = process.env.TEST_DATABASE_URL;
const REDIS_URL = process.env.TEST_REDIS_URL;
const TTL = 4;
const schemas = [];

after(() => {
  for (const schema of schemas) {
    try {
      execFileSync('psql', [DATABASE_URL, '-qc', `DROP SCHEMA IF EXISTS "${schema}" CASCADE`]);
    } catch { /* left for the next cleanup */ }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `GET path` at `base` with the session `cookie`, as an API client. */
function apiGet(base, cookie, pathname) {
  return fetch(`${base}${pathname}`, { headers: { cookie, accept: 'application/json' }, redirect: 'manual' });
}

/** The access token the app got on `GET path` at `base` with the session `cookie`. */
async function tokenAt(base, cookie, pathname = '/api') {
  const r = await apiGet(base, cookie, pathname);
  assert.equal(r.status, 200, `GET ${pathname} at ${base}: ${r.status}`);
  const seen = await r.json();
  const tokens = headerValues(seen, 'x-forwarded-access-token');
  assert.equal(tokens.length, 1, 'one access token passed');
  return tokens[0];
}

/** The provider, the upstream and two oidc-gate instances sharing `store`'s sessions. */
async function start(store) {
  const parts = {};
  const name = store.name.toLowerCase();
  const schema = `e2e_refresh_${name}_${crypto.randomBytes(4).toString('hex')}`;
  schemas.push(schema);
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const providerLog = fs.createWriteStream(path.join(OUTPUT_DIR, `refresh-${name}-provider.log`));
  parts.upstream = await startUpstream();
  const [a, b] = [await pickAppAddress(), await pickAppAddress()];
  parts.provider = await startProvider({
    publicUrl: a.publicUrl, routes: GATEWAY_ROUTES, log: (l) => providerLog.write(`${l}\n`),
    refreshWithAccessTokenTtl: TTL,
  });
  const settings = {
    oidc: {
      OIDC_ISSUER: parts.provider.issuer,
      OIDC_CLIENT_ID: parts.provider.clientId,
      OIDC_CLIENT_SECRET: parts.provider.clientSecret,
    },
    env: {
      UPSTREAM_URL: parts.upstream.url,
      PASS_ACCESS_TOKEN: 'true',
      DATABASE_URL,
      DATABASE_SCHEMA: schema,
      ...store.env,
    },
    publicUrl: a.publicUrl,
    healthPath: '/ping',
  };
  // Both behind one PUBLIC_URL (A's): the browser's cookie is for the host, so B takes it too.
  parts.a = await startApp({ name: `refresh-${name}-a`, address: a, ...settings });
  parts.b = await startApp({ name: `refresh-${name}-b`, address: b, ...settings });
  parts.browser = await launchBrowser();
  return parts;
}

async function stop(parts) {
  await parts.browser?.close().catch(() => {});
  await parts.a?.stop().catch(() => {});
  await parts.b?.stop().catch(() => {});
  await parts.provider?.close().catch(() => {});
  await parts.upstream?.close().catch(() => {});
}

const STORES = [
  { name: 'PostgreSQL', scenarios: '50-51', env: {}, needs: [] },
  { name: 'Redis', scenarios: '52-53', env: { SESSION_STORE_URL: REDIS_URL }, needs: [['TEST_REDIS_URL', REDIS_URL]] },
];

for (const store of STORES) {
  test(`${store.scenarios}. refresh with the real oidc-provider, sessions in ${store.name}: a session outlives several access tokens; 50 requests at expiry over two instances refresh once; a grant revoked at the provider ends the session on both; sign-out revokes the refresh token`, { timeout: TEST_TIMEOUT_MS }, async (t) => {
    const missing = [['TEST_DATABASE_URL', DATABASE_URL], ...store.needs].filter(([, v]) => !v).map(([k]) => k);
    if (missing.length) {
      t.skip(`${missing.join(', ')} not set`);
      return;
    }
    const parts = await start(store);
    try {
      const { page, context } = await newPage(parts.browser);
      await page.goto(`${parts.a.url}/app`);
      await providerSignIn(page, parts.provider);
      await providerConsent(page);
      await waitForPage(page, parts.a.url, '/app', 'back from the provider');
      const cookie = await cookieHeader(context, parts.a.url);

      const first = await tokenAt(parts.a.directUrl, cookie);
      assert.equal(await tokenAt(parts.b.directUrl, cookie), first, 'not due: the same token, on both');
      assert.equal(parts.provider.refreshes, 0);

      // Several access tokens: each expiry brings a new one, from one refresh.
      const seen = [first];
      for (let round = 1; round <= 2; round += 1) {
        await sleep(TTL * 1000);
        const token = await tokenAt(round % 2 ? parts.a.directUrl : parts.b.directUrl, cookie);
        assert.ok(!seen.includes(token), `round ${round}: a new access token`);
        assert.equal(parts.provider.refreshes, round);
        seen.push(token);
      }

      // 50 requests at expiry, spread over both instances.
      await sleep(TTL * 1000);
      const bases = [parts.a.directUrl, parts.b.directUrl];
      const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => tokenAt(bases[i % 2], cookie, `/api/${i}`)));
      assert.equal(parts.provider.refreshes, 3, 'exactly one more refresh grant at the provider');
      assert.equal(new Set(tokens).size, 1, 'every request used its result');
      assert.ok(!seen.includes(tokens[0]));

      // The grant revoked at the provider (the user disabled, consent
      // withdrawn): at the next refresh the session ends on both instances,
      // after one refused attempt, never a second one from the other instance.
      const { AccessToken, Grant } = parts.provider.provider;
      const grant = await Grant.find((await AccessToken.find(tokens[0])).grantId);
      assert.ok(grant, 'the grant behind the session');
      await grant.destroy();
      assert.equal(parts.provider.refreshErrors, 0);
      await sleep(TTL * 1000);
      const onA = await apiGet(parts.a.directUrl, cookie, '/api/after-revocation');
      assert.equal(onA.status, 401, 'the session ended at the refused refresh');
      assert.equal(parts.provider.refreshErrors, 1, 'one refused refresh');
      const onB = await apiGet(parts.b.directUrl, cookie, '/api/after-revocation');
      assert.equal(onB.status, 401, 'and on the other instance');
      assert.equal(parts.provider.refreshErrors, 1, 'no second attempt from the other instance');
      assert.equal(parts.provider.refreshes, 3);
      await context.close();

      // Signed in again, then signed out: the refresh token itself is
      // revoked at the provider (RFC 7009), and the access token too.
      const again = await newPage(parts.browser);
      await again.page.goto(`${parts.a.url}/app/again`);
      await providerSignIn(again.page, parts.provider);
      await providerConsent(again.page);
      await waitForPage(again.page, parts.a.url, '/app/again', 'signed in again');
      const accessToken = await tokenAt(parts.a.directUrl, await cookieHeader(again.context, parts.a.url));
      assert.ok(await AccessToken.find(accessToken), 'the access token is valid before sign-out');
      const beforeLogout = parts.provider.events.length;
      await again.page.goto(`${parts.a.url}/oauth2/sign_out`);
      const form = again.page.locator('form[method="post" i]');
      await form.waitFor({ state: 'visible', timeout: 5_000 });
      await form.getByRole('button', { name: 'Sign out' }).click();
      // Revoking the refresh token ends its grant at oidc-provider, with
      // the access token; the access token's own revocation may then find
      // it gone already. What counts: both are dead at the provider.
      const refreshRevoked = () => parts.provider.events.slice(beforeLogout).some((e) => e.event === 'refresh_token.destroyed');
      const deadline = Date.now() + 5_000;
      while (!(refreshRevoked() && !(await AccessToken.find(accessToken))) && Date.now() < deadline) await sleep(100);
      assert.ok(refreshRevoked(), `the refresh token revoked at logout: ${JSON.stringify(parts.provider.events.slice(beforeLogout))}`);
      assert.equal(await AccessToken.find(accessToken), undefined, 'the access token revoked at logout');
      await again.context.close();
    } finally {
      await stop(parts);
    }
  });
}
