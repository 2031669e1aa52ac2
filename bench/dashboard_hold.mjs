// Holds a server's dashboard open in a headless Chromium (Debian's, driven by playwright-core from tests/compat)
// until stdin closes: bench/compare.sh --dashboard measures decode speed with and without it.
//
//   node bench/dashboard_hold.mjs http://127.0.0.1:PORT
//
// Prints "open" once the page has merged a first answer of /api/metrics/history, then "polls N" when it closes
// (how many history polls the page made while held, so the figure shows it really polled).
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import path from 'node:path';

const base = process.argv[2];
if (!base) {
  console.error('usage: node bench/dashboard_hold.mjs URL');
  process.exit(2);
}
const compat = path.join(path.dirname(fileURLToPath(import.meta.url)), '..', 'tests', 'compat', 'package.json');
let playwright;
try {
  playwright = createRequire(compat)('playwright-core');
} catch {
  console.error('dashboard_hold: playwright-core missing: run `make tests/compat/node_modules/.package-lock.json`');
  process.exit(1);
}
const browser = await playwright.chromium.launch({ executablePath: process.env.CLAWBOT_CHROMIUM || '/usr/bin/chromium' });
let polls = 0;
const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
page.on('response', (res) => {
  if (res.url().includes('/api/metrics/history')) polls++;
});
const first = page.waitForResponse((res) => res.url().includes('/api/metrics/history') && res.ok(), { timeout: 30000 });
await page.goto(`${base}/dashboard`);
await first;
console.log('open');
process.stdin.resume();
await new Promise((resolve) => process.stdin.on('end', resolve));
console.log(`polls ${polls}`);
await browser.close();
