// Start the oidc-gate binary as a user would: environment configuration, a
// fresh DATA_DIR, a fresh working directory (so no stray .env is read), wait
// for its health route, stop it afterwards.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { freePort } from './ports.js';
import { OUTPUT_DIR, makeWorkDir, startProcess, answers } from './process.js';

export { OUTPUT_DIR };

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const APP_BIN = path.resolve(E2E_DIR, process.env.OIDC_GATE_BIN || '../target/debug/oidc-gate');
const HEALTH_TIMEOUT_MS = Number(process.env.E2E_HEALTH_TIMEOUT_MS || 20_000);

// Variables that configure the app: the caller's values never leak into a run.
const APP_SETTINGS = new RegExp('^(OIDC_|PUBLIC_URL$|LISTEN$|DATA_DIR$|DATABASE_URL$|SESSION_|RUST_LOG$'
  + '|UPSTREAM_|FORWARD_AUTH$|ROUTE_PREFIX$|PUBLIC_PATHS$|CONFIG_FILE$|COOKIE_DOMAIN$'
  + '|ALLOWED_|PASS_|GROUPS_CLAIM$|REQUIRE_EMAIL_VERIFIED$|GOOGLE_|SHUTDOWN_)');

/** Pre-pick a port for oidc-gate so that PUBLIC_URL is known in advance. */
export async function pickAppAddress() {
  const port = await freePort();
  return { port, publicUrl: `http://127.0.0.1:${port}`, listen: `127.0.0.1:${port}` };
}

/**
 * @param {object} opts
 * @param {string} opts.name        label used for the log file (test-output/<name>.log)
 * @param {{port:number, publicUrl:string, listen:string}} opts.address
 * @param {Record<string,string>} [opts.oidc]  OIDC_* variables; omit for the development provider
 * @param {Record<string,string>} [opts.env]   further settings (gateway: UPSTREAM_URL, FORWARD_AUTH, …)
 * @param {string} [opts.publicUrl]  PUBLIC_URL when a web server in front owns it (default: the app's own address)
 * @param {string} [opts.healthPath] liveness route: `/healthz` in app mode, `/ping` in gateway mode
 */
export async function startApp({ name, address, oidc = {}, env: settings = {}, publicUrl = address.publicUrl, healthPath = '/healthz' }) {
  if (!fs.existsSync(APP_BIN)) {
    throw new Error(`oidc-gate binary not found at ${APP_BIN} (build it with \`cargo build\`, or set OIDC_GATE_BIN)`);
  }
  const workDir = makeWorkDir(name);
  const dataDir = path.join(workDir, 'data');
  fs.mkdirSync(dataDir);

  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (!APP_SETTINGS.test(k)) env[k] = v;
  }
  Object.assign(env, {
    PUBLIC_URL: publicUrl,
    LISTEN: address.listen,
    DATA_DIR: dataDir,
    RUST_LOG: process.env.E2E_RUST_LOG || 'info,oidc_gate=debug',
    NO_COLOR: '1',
    // Stopped at the end of a file: no load balancer to wait for.
    SHUTDOWN_GRACE: '0s',
    ...oidc,
    ...settings,
  });

  // The health check goes to the app itself, not through PUBLIC_URL (which
  // may be a web server in front that protects everything).
  const directUrl = `http://${address.listen}`;
  const proc = await startProcess({
    name,
    cmd: APP_BIN,
    workDir,
    env,
    ready: answers(`${directUrl}${healthPath}`),
    readyTimeoutMs: HEALTH_TIMEOUT_MS,
  });
  return { ...proc, url: publicUrl, directUrl, dataDir };
}
