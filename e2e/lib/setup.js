// The set-up shared by the files that test oidc-gate against a real provider:
// the provider (its events logged to test-output/<providerLog>), oidc-gate
// configured for it, and Chromium; `stop()` ends all three.
import fs from 'node:fs';
import path from 'node:path';

import { pickAppAddress, startApp, OUTPUT_DIR } from './app.js';
import { launchBrowser } from './browser.js';

/**
 * @param {object} opts
 * @param {(o: {publicUrl: string, log: (line: string) => void}) => Promise<any>} opts.startProvider
 * @param {string} opts.name         oidc-gate's log name
 * @param {string} opts.providerLog  the provider's log file name
 */
export async function startProviderAppBrowser({ startProvider, name, providerLog }) {
  const running = {};
  running.stop = async () => {
    await running.browser?.close().catch(() => {});
    await running.app?.stop().catch(() => {});
    await running.provider?.close().catch(() => {});
    running.log?.end();
  };
  try {
    fs.mkdirSync(OUTPUT_DIR, { recursive: true });
    running.log = fs.createWriteStream(path.join(OUTPUT_DIR, providerLog));
    const address = await pickAppAddress();
    running.provider = await startProvider({ publicUrl: address.publicUrl, log: (l) => running.log.write(`${l}\n`) });
    running.app = await startApp({
      name,
      address,
      oidc: {
        OIDC_ISSUER: running.provider.issuer,
        OIDC_CLIENT_ID: running.provider.clientId,
        OIDC_CLIENT_SECRET: running.provider.clientSecret,
      },
    });
    running.browser = await launchBrowser();
  } catch (err) {
    await running.stop();
    throw err;
  }
  return running;
}
