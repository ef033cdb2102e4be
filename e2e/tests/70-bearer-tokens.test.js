// Scenarios 70-74: bearer access tokens of API clients (SKIP_JWT_BEARER_TOKENS,
// API_AUDIENCE) issued by the real oidc-provider, asked about at oidc-gate's
// forward auth (/oauth2/auth, as nginx's auth_request asks it). The API
// client gets its tokens by the client_credentials grant for a resource
// indicator (RFC 8707): JWT access tokens (RFC 9068, RS256 by the provider's
// key) and opaque ones (checked at the provider's introspection endpoint with
// oidc-gate's own client credentials). No web server, no browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

import { startProvider, GATEWAY_ROUTES, API_CLIENT_ID } from '../lib/provider.js';
import { pickAppAddress, startApp, OUTPUT_DIR } from '../lib/app.js';
import { rawRequest } from '../lib/http.js';
import { HOOK_TIMEOUT_MS, TEST_TIMEOUT_MS } from '../lib/timeouts.js';

const API = 'api://orders';
const OTHER_API = 'api://billing';
// The same two APIs, through indicators that get opaque tokens for them.
const RESOURCES = {
  [API]: { format: 'jwt' },
  [OTHER_API]: { format: 'jwt' },
  [`${API}/opaque`]: { audience: API, format: 'opaque' },
  [`${OTHER_API}/opaque`]: { audience: OTHER_API, format: 'opaque' },
};

let provider;
let app;
let providerLog;

before(async () => {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  providerLog = fs.createWriteStream(path.join(OUTPUT_DIR, 'bearer-provider.log'));
  const address = await pickAppAddress();
  provider = await startProvider({
    publicUrl: address.publicUrl,
    routes: GATEWAY_ROUTES,
    apiResources: RESOURCES,
    log: (l) => providerLog.write(`${l}\n`),
  });
  app = await startApp({
    name: 'bearer-oidc-gate',
    address,
    healthPath: '/ping',
    oidc: {
      OIDC_ISSUER: provider.issuer,
      OIDC_CLIENT_ID: provider.clientId,
      OIDC_CLIENT_SECRET: provider.clientSecret,
    },
    env: { FORWARD_AUTH: 'true', SKIP_JWT_BEARER_TOKENS: 'true', API_AUDIENCE: API },
  });
}, { timeout: HOOK_TIMEOUT_MS });

after(async () => {
  await app?.stop();
  await provider?.close();
  providerLog?.end();
});

/** An access token for `resource`, by the API client's client_credentials grant. */
async function tokenFor(resource) {
  const basic = Buffer.from(`${encodeURIComponent(API_CLIENT_ID)}:${encodeURIComponent(provider.apiClientSecret)}`)
    .toString('base64');
  const res = await fetch(provider.discovery.token_endpoint, {
    method: 'POST',
    headers: { Authorization: `Basic ${basic}`, 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'client_credentials', resource }),
  });
  const body = await res.json();
  assert.equal(res.status, 200, `token request for ${resource}: ${JSON.stringify(body)}`);
  assert.equal(body.token_type, 'Bearer');
  return body.access_token;
}

/** Forward auth as nginx asks it for an API call to /api/orders, with `token` (if any). */
function forwardAuth(token) {
  const headers = [['X-Original-URI', '/api/orders?id=7'], ['Accept', 'application/json']];
  if (token !== undefined) headers.push(['Authorization', `Bearer ${token}`]);
  return rawRequest(app.directUrl, '/oauth2/auth', { headers });
}

/** The answer must be RFC 6750's 401 for a bad token, with `reason`. */
function expectInvalidToken(res, reason, what) {
  const context = `${what}: HTTP ${res.status} ${res.body}\n--- oidc-gate:\n${app.logTail(15)}`;
  assert.equal(res.status, 401, context);
  assert.match(res.headers['www-authenticate'] ?? '', /^Bearer .*error="invalid_token"/, context);
  assert.deepEqual(res.json(), { error: 'invalid_token', reason }, context);
  assert.equal(res.headers['x-auth-request-user'], undefined, context);
}

/** The answer must let the request through as `user`. */
function expectAdmitted(res, user, what) {
  const context = `${what}: HTTP ${res.status} ${res.body}\n--- oidc-gate:\n${app.logTail(15)}`
    + `\n--- provider events:\n${provider.events.slice(-5).map((e) => JSON.stringify(e)).join('\n')}`;
  assert.equal(res.status, 202, context);
  assert.equal(res.headers['x-auth-request-user'], user, context);
}

const part = (jwt, i) => JSON.parse(Buffer.from(jwt.split('.')[i], 'base64url').toString());

test('70. bearer: a client_credentials JWT access token for API_AUDIENCE passes forward auth as its sub', { timeout: TEST_TIMEOUT_MS }, async () => {
  const token = await tokenFor(API);
  // What the provider issued: RFC 9068, signed like its ID tokens.
  const header = part(token, 0);
  const claims = part(token, 1);
  assert.equal(header.typ, 'at+jwt');
  assert.equal(header.alg, 'RS256');
  assert.equal(claims.iss, provider.issuer);
  assert.deepEqual([claims.aud].flat(), [API]);
  // RFC 9068 §2.2: a token of no resource owner names the client.
  assert.equal(claims.sub, API_CLIENT_ID);

  expectAdmitted(await forwardAuth(token), claims.sub, 'JWT for API_AUDIENCE');
  // Again: from oidc-gate's cache, the same answer.
  expectAdmitted(await forwardAuth(token), claims.sub, 'the same JWT again');
});

test('71. bearer: a JWT access token for another API is refused (401, bearer_aud)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const token = await tokenFor(OTHER_API);
  assert.deepEqual([part(token, 1).aud].flat(), [OTHER_API]);
  expectInvalidToken(await forwardAuth(token), 'bearer_aud', 'JWT for another API');
});

test('72. bearer: a JWT access token with its signature or its claims changed is refused (401, bearer_signature)', { timeout: TEST_TIMEOUT_MS }, async () => {
  const [head, body, sig] = (await tokenFor(API)).split('.');
  // One bit of the signature flipped.
  const bytes = Buffer.from(sig, 'base64url');
  bytes[bytes.length >> 1] ^= 0x01;
  const badSig = `${head}.${body}.${bytes.toString('base64url')}`;
  expectInvalidToken(await forwardAuth(badSig), 'bearer_signature', 'signature changed');
  // The provider's signature over other claims: another subject.
  const claims = { ...JSON.parse(Buffer.from(body, 'base64url').toString()), sub: 'alice' };
  const otherClaims = `${head}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${sig}`;
  expectInvalidToken(await forwardAuth(otherClaims), 'bearer_signature', 'claims changed');
});

test('73. bearer: an opaque access token is checked by introspection: in for API_AUDIENCE, refused for another API', { timeout: TEST_TIMEOUT_MS }, async () => {
  const token = await tokenFor(`${API}/opaque`);
  // Not shaped as a JWT: only the provider's introspection can vouch for it.
  assert.ok(!token.includes('.'), `an opaque token, got ${token.slice(0, 40)}…`);
  // The client_credentials grant has no resource owner: the introspection
  // answer names the client (client_id), and no sub.
  const asked = provider.introspected.length;
  expectAdmitted(await forwardAuth(token), API_CLIENT_ID, 'opaque token for API_AUDIENCE');
  // oidc-gate asked the provider, as its own client.
  assert.deepEqual(provider.introspected.slice(asked), [{ caller: provider.clientId, client: API_CLIENT_ID }]);

  const other = await tokenFor(`${OTHER_API}/opaque`);
  assert.ok(!other.includes('.'));
  expectInvalidToken(await forwardAuth(other), 'bearer_aud', 'opaque token for another API');

  // A token the provider never issued: introspection says inactive.
  const unknown = crypto.randomBytes(32).toString('base64url');
  expectInvalidToken(await forwardAuth(unknown), 'bearer_inactive', 'unknown opaque token');
});

test('74. bearer: no token and no session is 401', { timeout: TEST_TIMEOUT_MS }, async () => {
  const res = await forwardAuth(undefined);
  assert.equal(res.status, 401, `HTTP ${res.status} ${res.body}`);
  assert.equal(res.headers['x-auth-request-user'], undefined);
});
