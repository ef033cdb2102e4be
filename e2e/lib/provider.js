// A real, certified OpenID Provider (panva/oidc-provider) on 127.0.0.1 with a
// confidential client registered for oidc-gate.
import http from 'node:http';
import crypto from 'node:crypto';
import Provider, { errors } from 'oidc-provider';

import { freePort } from './ports.js';

export const ACCOUNTS = {
  alice: {
    sub: 'alice',
    name: 'Alice Example',
    given_name: 'Alice',
    family_name: 'Example',
    email: 'alice@example.com',
    email_verified: true,
    groups: ['admins', 'staff'],
  },
  bob: {
    sub: 'bob',
    name: 'Bob Builder',
    given_name: 'Bob',
    family_name: 'Builder',
    email: 'bob@example.com',
    email_verified: true,
    groups: ['staff'],
  },
};

export const CLIENT_ID = 'oidc-gate';
/** The API client of `apiResources` (client_credentials grant). */
export const API_CLIENT_ID = 'api-client';

/** Where oidc-gate's provider-facing routes are, relative to its PUBLIC_URL. */
export const APP_ROUTES = { callback: '/callback', postLogout: '/', backchannel: '/backchannel-logout' };
/** The same in gateway mode (ROUTE_PREFIX /oauth2, oauth2-proxy's names). */
export const GATEWAY_ROUTES = {
  callback: '/oauth2/callback',
  postLogout: '/oauth2/sign_out',
  backchannel: '/oauth2/backchannel-logout',
};

// Events worth showing when a scenario fails (they explain most interop
// problems: rejected token requests, failed back-channel deliveries, ...).
const WATCHED_EVENTS = [
  'authorization.error',
  'grant.error',
  'grant.success',
  'userinfo.error',
  'end_session.error',
  'end_session.success',
  'backchannel.error',
  'backchannel.success',
  // Token revocation (RFC 7009) at oidc-gate's logout.
  'revocation.error',
  'access_token.destroyed',
  'refresh_token.destroyed',
  // Bearer tokens (`apiResources`): refused introspection requests.
  'introspection.error',
  'server_error',
];

/**
 * Start oidc-provider.
 * @param {object} opts
 * @param {string} opts.publicUrl oidc-gate's PUBLIC_URL (no trailing slash)
 * @param {typeof APP_ROUTES} [opts.routes] the redirect, post-logout and back-channel paths to register
 * @param {string} [opts.clientSecret]
 * @param {(line: string) => void} [opts.log]
 * @param {number} [opts.refreshWithAccessTokenTtl] issue rotating refresh tokens (without
 *   `offline_access`) and access tokens living this many seconds; refresh grants are counted
 *   in `refreshes`
 * @param {Record<string, {audience?: string, format: 'jwt'|'opaque'}>} [opts.apiResources]
 *   resource indicators (RFC 8707) the provider issues access tokens for, each with the
 *   token's `aud` (default: the indicator) and format (`jwt`: RFC 9068, RS256 like the ID
 *   tokens; `opaque`: checked at the introspection endpoint, which is then enabled). Also
 *   registers the client `API_CLIENT_ID` (secret `apiClientSecret` in the handle) for the
 *   client_credentials grant; the handle's `introspected` lists who asked about which
 *   client's valid token (only oidc-gate's client gets an answer).
 */
export async function startProvider({
  publicUrl, routes = APP_ROUTES, clientSecret = crypto.randomBytes(24).toString('base64url'), log = () => {},
  refreshWithAccessTokenTtl, apiResources,
}) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;

  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-rs256', use: 'sig', alg: 'RS256' };

  const apiClientSecret = apiResources ? crypto.randomBytes(24).toString('base64url') : undefined;
  /** The introspection requests about a valid token (`apiResources`): who asked, whose token. */
  const introspected = [];
  const configuration = {
    clients: [
      ...(apiResources ? [{
        client_id: API_CLIENT_ID,
        client_secret: apiClientSecret,
        client_name: 'API client (e2e)',
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
      }] : []),
      {
        client_id: CLIENT_ID,
        client_secret: clientSecret,
        client_name: 'oidc-gate (e2e)',
        application_type: 'web',
        grant_types: refreshWithAccessTokenTtl ? ['authorization_code', 'refresh_token'] : ['authorization_code'],
        response_types: ['code'],
        redirect_uris: [`${publicUrl}${routes.callback}`],
        post_logout_redirect_uris: [`${publicUrl}${routes.postLogout}`],
        backchannel_logout_uri: `${publicUrl}${routes.backchannel}`,
        backchannel_logout_session_required: true,
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'RS256',
      },
    ],
    jwks: { keys: [jwk] },
    cookies: {
      // oidc-gate runs on the same host (127.0.0.1, another port) and cookies
      // are not isolated by port: keep the provider's cookie names distinct.
      names: { session: 'op_session', interaction: 'op_interaction', resume: 'op_interaction_resume' },
      keys: [crypto.randomBytes(32).toString('base64url')],
    },
    claims: {
      openid: ['sub'],
      email: ['email', 'email_verified'],
      // `groups` is not a standard claim: released with `profile` so that
      // oidc-gate's GROUPS_CLAIM (default `groups`) finds it in UserInfo.
      profile: ['name', 'given_name', 'family_name', 'groups'],
    },
    scopes: ['openid', 'email', 'profile', 'offline_access'],
    // Lifetimes (seconds), set explicitly: a test run is short.
    ttl: {
      AccessToken: refreshWithAccessTokenTtl || 600,
      ClientCredentials: 600,
      AuthorizationCode: 60,
      IdToken: 600,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
    features: {
      // The login and consent pages exactly as the package ships them.
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      backchannelLogout: { enabled: true },
      revocation: { enabled: true },
      ...(apiResources ? {
        clientCredentials: { enabled: true },
        // Only oidc-gate, with its own credentials, may ask about the API
        // client's tokens; each answered question is recorded.
        introspection: {
          enabled: true,
          async allowedPolicy(ctx, caller, token) {
            introspected.push({ caller: caller.clientId, client: token.clientId });
            return caller.clientId === CLIENT_ID;
          },
        },
        resourceIndicators: {
          enabled: true,
          // A token request names its resource; none: no resource server.
          defaultResource: async () => undefined,
          async getResourceServerInfo(ctx, indicator) {
            const server = apiResources[indicator];
            if (!server) throw new errors.InvalidTarget();
            return {
              scope: 'api',
              audience: server.audience ?? indicator,
              accessTokenFormat: server.format,
              // RS256 by the provider's key, as its ID tokens.
              ...(server.format === 'jwt' ? { jwt: { sign: { alg: 'RS256' } } } : {}),
            };
          },
        },
      } : {}),
    },
    // Refresh tokens to every client allowed the grant (no `offline_access`
    // consent needed), a new one at each use.
    ...(refreshWithAccessTokenTtl ? {
      issueRefreshToken: async (ctx, client) => client.grantTypeAllowed('refresh_token'),
      rotateRefreshToken: true,
    } : {}),
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return {
        accountId: id,
        async claims() {
          return { ...account };
        },
      };
    },
    // oidc-provider guards its outgoing requests (here: the back-channel logout
    // POST) against special-use addresses such as loopback (SSRF protection).
    // In this test everything lives on 127.0.0.1, so allow exactly that host
    // and keep the guard for anything else.
    fetch(url, options) {
      if (new URL(url).hostname === '127.0.0.1') {
        const { dispatcher, ...rest } = options; // eslint-disable-line no-unused-vars
        return globalThis.fetch(url, rest);
      }
      return globalThis.fetch(url, options);
    },
    renderError(ctx, out) {
      ctx.type = 'html';
      const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
      ctx.body = `<!DOCTYPE html><html><head><title>Provider error</title></head><body><h1>Provider error</h1>${
        Object.entries(out).map(([k, v]) => `<p><strong>${esc(k)}</strong>: ${esc(v)}</p>`).join('')}</body></html>`;
    },
  };

  const provider = new Provider(issuer, configuration);
  const events = [];
  for (const name of WATCHED_EVENTS) {
    provider.on(name, (ctx, ...rest) => {
      // Event signatures differ: find the Error (if any) among the arguments.
      const err = [ctx, ...rest].find((a) => a instanceof Error);
      const clientId = [ctx, ...rest].find((a) => a && typeof a === 'object' && a.clientId)?.clientId;
      const entry = {
        at: new Date().toISOString(),
        event: name,
        ...(clientId ? { client: clientId } : {}),
        ...(err ? {
          error: `${err.name}: ${err.message}${err.error_description ? ` (${err.error_description})` : ''}`
            + `${err.cause ? ` [cause: ${err.cause.message || err.cause}]` : ''}`,
        } : {}),
      };
      events.push(entry);
      log(JSON.stringify(entry));
    });
  }

  const counts = { refreshes: 0, refreshErrors: 0 };
  provider.on('grant.success', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') counts.refreshes += 1;
  });
  provider.on('grant.error', (ctx) => {
    if (ctx.oidc?.params?.grant_type === 'refresh_token') counts.refreshErrors += 1;
  });

  const served = await serveProvider({ handler: provider.callback(), port, issuer, clientSecret, provider, events, counts });
  return apiResources ? Object.assign(served, { apiClientSecret, introspected }) : served;
}

/**
 * Serve a provider's request handler on 127.0.0.1:`port`; returns the handle
 * the scenarios use (issuer, client, discovery, events, refresh count, `close()`).
 */
export async function serveProvider({
  handler, port, issuer, clientSecret, provider, events, counts = { refreshes: 0, refreshErrors: 0 },
}) {
  const server = http.createServer(handler);
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const sockets = new Set();
  server.on('connection', (s) => { sockets.add(s); s.on('close', () => sockets.delete(s)); });

  const discovery = await (await fetch(`${issuer}/.well-known/openid-configuration`)).json();

  return {
    issuer,
    port,
    clientId: CLIENT_ID,
    clientSecret,
    discovery,
    provider,
    events,
    /** Refresh token grants answered so far. */
    get refreshes() { return counts.refreshes; },
    /** Refresh token grants refused (e.g. the grant was revoked). */
    get refreshErrors() { return counts.refreshErrors; },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => server.close(() => resolve()));
    },
  };
}
