// The browser tests' Chromium (Debian's, driven by playwright-core from tests/compat): a browser whose pages
// may reach only 127.0.0.1 (any other request is aborted and recorded), with every console error and
// uncaught exception recorded. Used by dashboard.test.mjs and web_chat.test.mjs.
//
// Environment: CLAWBOT_CHROMIUM, the browser (default /usr/bin/chromium).
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

import { REPO_ROOT } from './server_harness.mjs';

export const CHROMIUM = process.env.CLAWBOT_CHROMIUM || '/usr/bin/chromium';

/** A module of tests/compat's node_modules (playwright-core, axe-core). */
export const compatRequire = createRequire(path.join(REPO_ROOT, 'tests', 'compat', 'package.json'));

export function playwright() {
  if (!fs.existsSync(CHROMIUM)) {
    throw new Error(`${CHROMIUM} not found: install Debian's chromium (scripts/bootstrap.sh does) or set CLAWBOT_CHROMIUM`);
  }
  return compatRequire('playwright-core');
}

/**
 * Launches the browser. `newPage({ viewport, allow, ...contextOptions })`: a page in a context of its own;
 * `allow` lists the console errors that the test expects (regular expressions). `watch` holds offHost (the
 * URLs refused), errors and urls (every request).
 */
export async function launchBrowser() {
  const browser = await playwright().chromium.launch({ executablePath: CHROMIUM });
  const watch = { offHost: [], errors: [], urls: [], console: [] };
  async function newPage({ viewport = { width: 1280, height: 900 }, allow = [], ...options } = {}) {
    const context = await browser.newContext({ viewport, ...options });
    await context.route('**/*', (route) => {
      const url = new URL(route.request().url());
      watch.urls.push(url.href);
      if (url.hostname !== '127.0.0.1') {
        watch.offHost.push(url.href);
        return route.abort('blockedbyclient');
      }
      return route.continue();
    });
    const page = await context.newPage();
    page.on('console', (msg) => {
      watch.console.push(msg.text());
      if (msg.type() === 'error' && !allow.some((re) => re.test(msg.text()))) watch.errors.push(msg.text());
    });
    page.on('pageerror', (e) => watch.errors.push(`uncaught: ${e.message}`));
    return page;
  }
  return { browser, watch, newPage };
}

/** The whole session's pages asked nothing off 127.0.0.1 and logged no console error but those allowed. */
export function assertCleanSession(watch) {
  assert.deepEqual(watch.offHost, []);
  assert.deepEqual(watch.errors, []);
}
