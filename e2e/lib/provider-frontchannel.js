// oidc-provider 6.x (the npm alias `oidc-provider-fc`), the last major release
// that implements OpenID Connect Front-Channel Logout (draft 04; removed in
// 7.0), for the front-channel logout scenario only. The client registers a
// `frontchannel_logout_uri` with `frontchannel_logout_session_required` and
// no back-channel logout, so only the front-channel request can end the
// session at oidc-gate.
import crypto from 'node:crypto';
import Provider from 'oidc-provider-fc';

import { freePort } from './ports.js';
import { ACCOUNTS, CLIENT_ID, serveProvider } from './provider.js';

const WATCHED_EVENTS = ['authorization.error', 'grant.error', 'grant.success', 'end_session.error', 'end_session.success', 'server_error'];

/**
 * @param {object} opts
 * @param {string} opts.publicUrl oidc-gate's PUBLIC_URL (no trailing slash)
 * @param {(line: string) => void} [opts.log]
 */
export async function startFrontchannelProvider({ publicUrl, log = () => {} }) {
  const port = await freePort();
  const issuer = `http://127.0.0.1:${port}`;
  const clientSecret = crypto.randomBytes(24).toString('base64url');
  const { privateKey } = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...privateKey.export({ format: 'jwk' }), kid: 'e2e-fc-rs256', use: 'sig', alg: 'RS256' };

  const provider = new Provider(issuer, {
    clients: [{
      client_id: CLIENT_ID,
      client_secret: clientSecret,
      grant_types: ['authorization_code'],
      response_types: ['code'],
      redirect_uris: [`${publicUrl}/callback`],
      post_logout_redirect_uris: [`${publicUrl}/`],
      frontchannel_logout_uri: `${publicUrl}/frontchannel-logout`,
      frontchannel_logout_session_required: true,
      token_endpoint_auth_method: 'client_secret_basic',
      id_token_signed_response_alg: 'RS256',
    }],
    jwks: { keys: [jwk] },
    cookies: {
      names: { session: 'fc_session', interaction: 'fc_interaction', resume: 'fc_interaction_resume', state: 'fc_state' },
      // Plain http on 127.0.0.1: browsers refuse `SameSite=None` without `Secure`.
      long: { sameSite: 'lax' },
      keys: [crypto.randomBytes(32).toString('base64url')],
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name', 'given_name', 'family_name'] },
    features: {
      devInteractions: { enabled: true },
      rpInitiatedLogout: { enabled: true },
      frontchannelLogout: { enabled: true, ack: 'draft-04' },
    },
    async findAccount(ctx, id) {
      const account = ACCOUNTS[id];
      if (!account) return undefined;
      return { accountId: id, async claims() { return { ...account }; } };
    },
  });
  const events = [];
  for (const name of WATCHED_EVENTS) {
    provider.on(name, (...args) => {
      const err = args.find((a) => a instanceof Error);
      const entry = { at: new Date().toISOString(), event: name, ...(err ? { error: `${err.name}: ${err.message}` } : {}) };
      events.push(entry);
      log(JSON.stringify(entry));
    });
  }

  // oidc-provider 6.x: `callback` is a getter.
  return serveProvider({ handler: provider.callback, port, issuer, clientSecret, provider, events });
}
