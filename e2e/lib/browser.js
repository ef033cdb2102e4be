// Headless Chromium (the system's /usr/bin/chromium) driven by playwright-core.
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

import { OUTPUT_DIR } from './app.js';

export const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';

export async function launchBrowser() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`Chromium not found at ${CHROMIUM} (apt-get install -y chromium, or set CHROMIUM_PATH)`);
  }
  return chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--no-first-run',
      '--disable-quic',
    ],
  });
}

/**
 * A fresh browser context (own cookie jar) and page. Requests to anything but
 * 127.0.0.1 (e.g. the web font the provider's pages @import) are aborted and
 * remembered, so the suite never leaves the machine.
 */
export async function newPage(browser) {
  const context = await browser.newContext({ viewport: { width: 1000, height: 800 } });
  const blocked = [];
  await context.route('**/*', (route) => {
    const url = new URL(route.request().url());
    if (url.hostname === '127.0.0.1' || url.protocol === 'data:' || url.protocol === 'about:') {
      return route.continue();
    }
    blocked.push(url.href);
    return route.abort('blockedbyclient');
  });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  page.setDefaultNavigationTimeout(15_000);
  // History of main-frame document responses: "where did the browser go".
  const navigations = [];
  page.on('response', (res) => {
    if (res.request().isNavigationRequest() && res.frame() === page.mainFrame()) {
      navigations.push(`${res.status()} ${res.request().method()} ${res.url()}`);
    }
  });
  return { context, page, blocked, navigations };
}

export async function visibleText(page) {
  try {
    return (await page.locator('body').innerText({ timeout: 2_000 })).trim();
  } catch (err) {
    return `<could not read the page text: ${err.message.split('\n')[0]}>`;
  }
}

export function screenshotPath(name) {
  fs.mkdirSync(OUTPUT_DIR, { recursive: true });
  return path.join(OUTPUT_DIR, `${name}.png`);
}
