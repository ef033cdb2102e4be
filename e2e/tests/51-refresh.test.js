// Scenarios 50-51: token refresh against the real oidc-provider (rotating
// refresh tokens, 4-second access tokens): the app behind two oidc-gate
// instances in reverse-proxy mode sharing PostgreSQL gets a fresh access
// token after each expiry, and 50 requests at expiry spread over both
// instances cause exactly one refresh grant at the provider.
import { test, before, after } from 'node:test';
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
import { TEST_TIMEOUT_MS, HOOK_TIMEOUT_MS } from '../lib/timeouts.js';

const DATABASE_URL = process.env.TEST_DATABASE_URL;
const SCHEMA = `e2e_refresh_${crypto.randomBytes(4).toString('hex')}`;
const TTL = 4;
const parts = {};

before(async () => {
  if (!DATABASE_URL) return;
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const providerLog = fs.createWriteStream(path.join(OUTPUT_DIR, 'refresh-provider.log'));
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
      DATABASE_SCHEMA: SCHEMA,
    },
    publicUrl: a.publicUrl,
    healthPath: '/ping',
  };
  // Both behind one PUBLIC_URL (A's): the browser's cookie is for the host, so B takes it too.
  parts.a = await startApp({ name: 'refresh-a', address: a, ...settings });
  parts.b = await startApp({ name: 'refresh-b', address: b, ...settings });
  parts.browser = await launchBrowser();
}, { timeout: HOOK_TIMEOUT_MS });

after(async () => {
  await parts.browser?.close().catch(() => {});
  await parts.a?.stop().catch(() => {});
  await parts.b?.stop().catch(() => {});
  await parts.provider?.close().catch(() => {});
  await parts.upstream?.close().catch(() => {});
  if (DATABASE_URL) {
    try {
      execFileSync('psql', [DATABASE_URL, '-qc', `DROP SCHEMA IF EXISTS "${SCHEMA}" CASCADE`]);
    } catch { /* left for the next cleanup */ }
  }
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The access token the app got on `GET path` at `base` with the session `cookie`. */
async function tokenAt(base, cookie, pathname = '/api') {
  const r = await fetch(`${base}${pathname}`, { headers: { cookie, accept: 'application/json' }, redirect: 'manual' });
  assert.equal(r.status, 200, `GET ${pathname} at ${base}: ${r.status}`);
  const seen = await r.json();
  const tokens = headerValues(seen, 'x-forwarded-access-token');
  assert.equal(tokens.length, 1, 'one access token passed');
  return tokens[0];
}

test('50-51. refresh with the real oidc-provider: a session outlives several access tokens; 50 requests at expiry over two instances refresh once', { timeout: TEST_TIMEOUT_MS }, async (t) => {
  if (!DATABASE_URL) {
    t.skip('TEST_DATABASE_URL is not set');
    return;
  }
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
  await context.close();
});
