// Start the oidc-gate binary as a user would: environment configuration, a
// fresh DATA_DIR, a fresh working directory (so no stray .env is read), wait
// for /healthz, stop it afterwards.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { freePort } from './ports.js';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const OUTPUT_DIR = path.join(E2E_DIR, 'test-output');

export const APP_BIN = path.resolve(E2E_DIR, process.env.OIDC_GATE_BIN || '../target/debug/oidc-gate');
const HEALTH_TIMEOUT_MS = Number(process.env.E2E_HEALTH_TIMEOUT_MS || 20_000);

// Every child and temp dir we make, so that an interrupted test process still
// ends the children and removes the dirs.
const children = new Set();
const workDirs = new Set();
function killAllSync() {
  for (const child of children) {
    try { child.kill('SIGKILL'); } catch { /* already gone */ }
  }
  for (const dir of workDirs) {
    try { fs.rmSync(dir, { recursive: true, force: true }); } catch { /* best effort */ }
  }
}
process.once('exit', killAllSync);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.once(sig, () => { killAllSync(); process.exit(128 + os.constants.signals[sig]); });
}

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
 */
export async function startApp({ name, address, oidc = {} }) {
  if (!fs.existsSync(APP_BIN)) {
    throw new Error(`oidc-gate binary not found at ${APP_BIN} (build it with \`cargo build\`, or set OIDC_GATE_BIN)`);
  }
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  const workDir = fs.mkdtempSync(path.join(os.tmpdir(), `oidc-gate-e2e-${name}-`));
  workDirs.add(workDir);
  const dataDir = path.join(workDir, 'data');
  fs.mkdirSync(dataDir);

  // Start from the caller's environment, minus anything that configures the
  // app, so the run only sees what this harness sets.
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(OIDC_|PUBLIC_URL$|LISTEN$|DATA_DIR$|DATABASE_URL$|SESSION_|RUST_LOG$)/.test(k)) continue;
    env[k] = v;
  }
  Object.assign(env, {
    PUBLIC_URL: address.publicUrl,
    LISTEN: address.listen,
    DATA_DIR: dataDir,
    RUST_LOG: process.env.E2E_RUST_LOG || 'info,oidc_gate=debug',
    NO_COLOR: '1',
    ...oidc,
  });

  const logPath = path.join(OUTPUT_DIR, `${name}.log`);
  const logFile = fs.createWriteStream(logPath);
  const tail = [];
  const record = (chunk) => {
    // eslint-disable-next-line no-control-regex
    const text = chunk.toString().replace(/\x1b\[[0-9;]*m/g, ''); // in case colours are forced
    logFile.write(text);
    for (const line of text.split('\n')) {
      if (line) tail.push(line);
    }
    if (tail.length > 200) tail.splice(0, tail.length - 200);
  };

  const child = spawn(APP_BIN, [], { cwd: workDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.stdout.on('data', record);
  child.stderr.on('data', record);
  let exited = null;
  const exitPromise = new Promise((resolve) => {
    child.once('exit', (code, signal) => {
      exited = { code, signal };
      children.delete(child);
      resolve(exited);
    });
    child.once('error', (err) => {
      exited = { code: null, signal: null, error: err };
      children.delete(child);
      resolve(exited);
    });
  });

  const app = {
    name,
    url: address.publicUrl,
    logPath,
    workDir,
    dataDir,
    /** Last lines the app printed (stdout and stderr). */
    logTail: (n = 40) => tail.slice(-n).join('\n'),
    async stop() {
      if (!exited) {
        child.kill('SIGTERM');
        const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 5_000);
        await exitPromise;
        clearTimeout(timer);
      }
      await new Promise((resolve) => logFile.end(resolve));
      fs.rmSync(workDir, { recursive: true, force: true });
      workDirs.delete(workDir);
    },
  };

  // Bounded wait for GET /healthz == 200.
  const deadline = Date.now() + HEALTH_TIMEOUT_MS;
  let last = 'no answer yet';
  while (true) {
    if (exited) {
      await app.stop();
      throw new Error(`oidc-gate (${name}) exited before becoming healthy `
        + `(code ${exited.code}, signal ${exited.signal}${exited.error ? `, ${exited.error.message}` : ''}). Output:\n${app.logTail(60)}`);
    }
    try {
      const res = await fetch(`${address.publicUrl}/healthz`, { signal: AbortSignal.timeout(2_000), redirect: 'manual' });
      const body = await res.text();
      if (res.status === 200) break;
      last = `HTTP ${res.status}: ${body.slice(0, 200)}`;
    } catch (err) {
      last = err.cause?.code || err.message;
    }
    if (Date.now() > deadline) {
      await app.stop();
      throw new Error(`oidc-gate (${name}) did not answer 200 on /healthz within ${HEALTH_TIMEOUT_MS} ms `
        + `(last: ${last}). Output:\n${app.logTail(60)}`);
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  return app;
}
