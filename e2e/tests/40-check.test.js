// `oidc-gate check` against the real oidc-provider, before any browser: it
// fetches the provider's discovery and keys, names the URIs the provider has
// registered for the client, and fails naming OIDC_ISSUER when the issuer is
// wrong. No browser, no listening oidc-gate.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { startProvider, APP_ROUTES } from '../lib/provider.js';
import { APP_BIN, OUTPUT_DIR, pickAppAddress } from '../lib/app.js';
import { makeWorkDir } from '../lib/process.js';
import { HOOK_TIMEOUT_MS, TEST_TIMEOUT_MS } from '../lib/timeouts.js';

let provider;
let address;

before(async () => {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const log = fs.createWriteStream(path.join(OUTPUT_DIR, 'check-provider.log'));
  address = await pickAppAddress();
  provider = await startProvider({ publicUrl: address.publicUrl, log: (l) => log.write(`${l}\n`) });
}, { timeout: HOOK_TIMEOUT_MS });

after(async () => { await provider?.close(); });

/** Runs `oidc-gate check` with only `settings` (and PATH), in a fresh directory. */
function check(name, settings) {
  const workDir = makeWorkDir(name);
  const env = { PATH: process.env.PATH, DATA_DIR: path.join(workDir, 'data'), LISTEN: address.listen, ...settings };
  return new Promise((resolve) => {
    execFile(APP_BIN, ['check'], { cwd: workDir, env, timeout: 60_000 }, (err, stdout, stderr) => {
      resolve({ code: err ? err.code : 0, stdout, stderr });
    });
  });
}

/** The value printed after `label` on its line. */
function value(stdout, label) {
  const line = stdout.split('\n').find((l) => l.startsWith(`${label} `));
  assert.ok(line, `no ${label} line in:\n${stdout}`);
  return line.slice(label.length).trim();
}

test('check: the provider answers; the URIs it has registered are the ones printed', { timeout: TEST_TIMEOUT_MS }, async () => {
  const out = await check('check-ok', {
    OIDC_ISSUER: provider.issuer,
    OIDC_CLIENT_ID: provider.clientId,
    OIDC_CLIENT_SECRET: provider.clientSecret,
    PUBLIC_URL: address.publicUrl,
  });
  assert.equal(out.code, 0, `${out.stdout}${out.stderr}`);
  assert.equal(value(out.stdout, 'issuer'), provider.issuer);
  assert.equal(value(out.stdout, 'discovery'), 'fetched, issuer matches');
  assert.match(value(out.stdout, 'ID token algorithm'), /^RS256 /);
  assert.match(value(out.stdout, 'keys (JWKS)'), /^1 published, 1 can verify RS256$/);
  assert.equal(value(out.stdout, 'RP-initiated logout'), provider.discovery.end_session_endpoint);
  assert.equal(value(out.stdout, 'token revocation'), provider.discovery.revocation_endpoint);
  // What the provider was told to accept for this client.
  assert.equal(value(out.stdout, 'redirect URI'), `${address.publicUrl}${APP_ROUTES.callback}`);
  assert.equal(value(out.stdout, 'post-logout redirect URI'), `${address.publicUrl}${APP_ROUTES.postLogout}`);
  assert.equal(value(out.stdout, 'back-channel logout URI'), `${address.publicUrl}${APP_ROUTES.backchannel}`);
  assert.match(out.stdout, /\nall good\n$/);
});

test('check: a wrong issuer is named, with the provider\'s own', { timeout: TEST_TIMEOUT_MS }, async () => {
  const out = await check('check-wrong-issuer', {
    OIDC_ISSUER: `${provider.issuer}/`,
    OIDC_CLIENT_ID: provider.clientId,
    OIDC_CLIENT_SECRET: provider.clientSecret,
    PUBLIC_URL: address.publicUrl,
  });
  assert.equal(out.code, 1, `${out.stdout}${out.stderr}`);
  assert.match(out.stderr, /^problem: OIDC_ISSUER /);
  assert.ok(out.stderr.includes('issuer_mismatch') && out.stderr.includes(`"${provider.issuer}"`), out.stderr);
});
