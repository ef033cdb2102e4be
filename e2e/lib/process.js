// Child processes of the suite (oidc-gate, nginx, caddy): started with their
// output in test-output/<name>.log, waited for with a bounded readiness check,
// stopped afterwards. Every child and temp dir is remembered so that an
// interrupted test process still ends the children and removes the dirs.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const E2E_DIR = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const OUTPUT_DIR = path.join(E2E_DIR, 'test-output');

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

/** A fresh temp dir, removed when its process stops (or this process exits). */
export function makeWorkDir(name) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `oidc-gate-e2e-${name}-`));
  workDirs.add(dir);
  return dir;
}

/**
 * Start `cmd` and wait until `ready()` resolves to true.
 * @param {object} opts
 * @param {string} opts.name      label of the log file (test-output/<name>.log) and of errors
 * @param {string} opts.cmd
 * @param {string[]} [opts.args]
 * @param {string} opts.workDir   cwd; removed on stop
 * @param {Record<string,string>} [opts.env]
 * @param {() => Promise<true|string>} opts.ready  true when ready, else a short "why not yet"
 * @param {number} opts.readyTimeoutMs
 * @param {string} [opts.stopSignal] SIGTERM unless the program wants another (nginx: SIGQUIT drains)
 */
export async function startProcess({ name, cmd, args = [], workDir, env = process.env, ready, readyTimeoutMs, stopSignal = 'SIGTERM' }) {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
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

  const child = spawn(cmd, args, { cwd: workDir, env, stdio: ['ignore', 'pipe', 'pipe'] });
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

  const proc = {
    name,
    logPath,
    workDir,
    /** Last lines the process printed (stdout and stderr). */
    logTail: (n = 40) => tail.slice(-n).join('\n'),
    /** Resolves when the process has exited (for tests that watch it). */
    exited: exitPromise,
    async stop() {
      if (!exited) {
        child.kill(stopSignal);
        const timer = setTimeout(() => { if (!exited) child.kill('SIGKILL'); }, 5_000);
        await exitPromise;
        clearTimeout(timer);
      }
      await new Promise((resolve) => logFile.end(resolve));
      fs.rmSync(workDir, { recursive: true, force: true });
      workDirs.delete(workDir);
    },
  };

  // Bounded wait for readiness; an early exit ends the wait at once.
  const deadline = Date.now() + readyTimeoutMs;
  let last = 'no answer yet';
  while (true) {
    if (exited) {
      await proc.stop();
      throw new Error(`${name} exited before becoming ready (code ${exited.code}, signal ${exited.signal}`
        + `${exited.error ? `, ${exited.error.message}` : ''}). Output:\n${proc.logTail(60)}`);
    }
    const verdict = await ready().catch((err) => err.cause?.code || err.message);
    if (verdict === true) break;
    last = verdict;
    if (Date.now() > deadline) {
      await proc.stop();
      throw new Error(`${name} was not ready within ${readyTimeoutMs} ms (last: ${last}). Output:\n${proc.logTail(60)}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return proc;
}

/** A readiness check: GET `url` answers `status`. */
export function answers(url, status = 200) {
  return async () => {
    const res = await fetch(url, { signal: AbortSignal.timeout(2_000), redirect: 'manual' });
    const body = await res.text();
    return res.status === status || `HTTP ${res.status}: ${body.slice(0, 200)}`;
  };
}
