// One gateway set-up per test file: the Node upstream, oidc-provider, the
// oidc-gate binary in gateway mode and a web server (nginx or caddy) in
// front running one of the README's recipes; PUBLIC_URL is the web server's
// URL. Plus the steps the gateway scenarios share.
import fs from 'node:fs';
import path from 'node:path';

import { startProvider, GATEWAY_ROUTES } from './provider.js';
import { pickAppAddress, startApp, OUTPUT_DIR } from './app.js';
import { startUpstream } from './upstream.js';
import { startNginx, startCaddy } from './webservers.js';
import { recipeFor } from './recipes.js';
import { freePort } from './ports.js';
import { rawRequest } from './http.js';
import { launchBrowser } from './browser.js';
import { providerSignIn, providerConsent, waitForPage, expectText } from './flows.js';

/**
 * @param {object} opts
 * @param {string} opts.name    prefix of the log files
 * @param {string} opts.recipe  file in e2e/recipes/ (.conf: nginx, .Caddyfile: caddy)
 * @param {Record<string,string>} opts.env  the gateway settings (FORWARD_AUTH or UPSTREAM_URL is added by `mode`)
 * @param {'forward-auth'|'reverse-proxy'} opts.mode
 */
export async function startGateway({ name, recipe, mode, env = {} }) {
  const parts = {};
  const providerLog = fs.createWriteStream(path.join(OUTPUT_DIR, `${name}-provider.log`));
  parts.stop = async () => {
    await parts.browser?.close().catch(() => {});
    await parts.server?.stop().catch(() => {});
    await parts.app?.stop().catch(() => {});
    await parts.provider?.close().catch(() => {});
    await parts.upstream?.close().catch(() => {});
    providerLog.end();
  };
  try {
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    parts.upstream = await startUpstream();
    const gate = await pickAppAddress();
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    parts.url = url;
    parts.provider = await startProvider({
      publicUrl: url, routes: GATEWAY_ROUTES, log: (l) => providerLog.write(`${l}\n`),
    });
    parts.app = await startApp({
      name: `${name}-oidc-gate`,
      address: gate,
      publicUrl: url,
      healthPath: '/ping',
      oidc: {
        OIDC_ISSUER: parts.provider.issuer,
        OIDC_CLIENT_ID: parts.provider.clientId,
        OIDC_CLIENT_SECRET: parts.provider.clientSecret,
      },
      env: {
        ...(mode === 'forward-auth' ? { FORWARD_AUTH: 'true' } : { UPSTREAM_URL: parts.upstream.url }),
        ...env,
      },
    });
    const config = recipeFor(recipe, { gate: gate.listen, app: parts.upstream.host, port });
    parts.server = recipe.endsWith('.Caddyfile')
      ? await startCaddy({ name: `${name}-caddy`, port, site: config })
      : await startNginx({ name: `${name}-nginx`, port, httpConf: config });
    parts.browser = await launchBrowser();
  } catch (err) {
    await parts.stop();
    throw err;
  }
  return parts;
}

/** What the upstream page (lib/upstream.js) shows it received. */
export async function upstreamEcho(page) {
  await expectText(page, 'Upstream app', { what: 'the upstream app page' });
  return JSON.parse(await page.locator('#echo').textContent());
}

/**
 * A fresh browser opens `pathAndQuery` through the web server, signs in at
 * the provider and must land back on exactly that URL, served by the app.
 * Returns what the app received.
 */
export async function signInAt(page, gw, pathAndQuery, account = 'alice') {
  await page.goto(`${gw.url}${pathAndQuery}`);
  await providerSignIn(page, gw.provider, account);
  await providerConsent(page);
  await waitForPage(page, gw.url, pathAndQuery, 'back from the provider');
  return upstreamEcho(page);
}

/** Scenario context for failure reports: the app log, provider events, web server log. */
export function reportParts(gw) {
  return {
    app: gw.app,
    provider: gw.provider,
    extra: () => [`--- ${gw.server.name} output (last lines; full log ${gw.server.logPath}):`, gw.server.logTail(15)],
  };
}

/**
 * Request targets that name a protected path while starting with the public
 * prefix /public (or looking like it): dot segments, percent-encoded dots and
 * slashes, doubled slashes, a backslash (which WHATWG URL parsers, such as
 * the upstream's, read as a slash), a different case, a longer segment, a
 * detour through the gateway's own prefix.
 */
export const PATH_TRICKS = [
  '/public/../private',
  '/public/./../private',
  '/public/%2e%2e/private',
  '/public/%2E%2E/private',
  '/public/.%2e/private',
  '/public%2F..%2Fprivate',
  '/public/..%2Fprivate',
  '//public/../private',
  '/public//../../private',
  '/public/..\\private',
  '/PUBLIC/private',
  '/publicity',
  '/oauth2/../private',
];

/**
 * An anonymous request for `target` (sent byte for byte) must not reach the
 * upstream at all. Returns the status the client got.
 */
export async function expectNotServedAnonymously(gw, target) {
  const before = gw.upstream.requests.length;
  const res = await rawRequest(gw.url, target, { headers: [['Accept', 'text/html']] });
  const reached = gw.upstream.requests.slice(before);
  if (reached.length) {
    throw new Error(`anonymous ${target} reached the upstream as ${JSON.stringify(reached.map((r) => r.target))} `
      + `(the client got HTTP ${res.status})`);
  }
  if (res.status === 200) throw new Error(`anonymous ${target} answered 200: ${res.body.slice(0, 200)}`);
  return res.status;
}

/** The identity headers of oidc-gate and oauth2-proxy: a client may never set them. */
export const IDENTITY_HEADERS = [
  'x-auth-request-user', 'x-auth-request-email', 'x-auth-request-groups',
  'x-auth-request-preferred-username', 'x-auth-request-access-token',
  'x-forwarded-user', 'x-forwarded-email', 'x-forwarded-groups',
  'x-forwarded-preferred-username', 'x-forwarded-access-token',
];

/** Every header of `seen` whose value a client chose (`needle`), as `name: value` lines. */
export function spoofedIn(seen, needle = 'mallory') {
  return seen.headers.filter(([, v]) => v.includes(needle)).map(([k, v]) => `${k}: ${v}`);
}

/**
 * In the page (so with its cookies, as an app's script would): open a
 * WebSocket to `url`, send `message` after the upstream's first message and
 * return both: the handshake the upstream saw and the echo.
 */
export async function browserWsEcho(page, url, message) {
  const got = await page.evaluate(({ url: u, message: m }) => new Promise((resolve, reject) => {
    const ws = new WebSocket(u);
    const msgs = [];
    ws.onerror = () => reject(new Error(`WebSocket error on ${u}`));
    ws.onmessage = (e) => {
      msgs.push(e.data);
      if (msgs.length === 1) ws.send(m);
      else { ws.close(); resolve(msgs); }
    };
  }), { url, message });
  return { handshake: JSON.parse(got[0]).handshake, echo: got[1] };
}
