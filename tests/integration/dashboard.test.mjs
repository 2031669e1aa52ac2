// The web dashboard (GET /dashboard) in a real Chromium (Debian's, driven by playwright-core from
// tests/compat), against clawbot serve on the story model and clawbot gateway in front of Node upstreams.
// Every request the page makes must go to 127.0.0.1 (any other host fails the test), and the page must log no
// console error.
//
// Environment: CLAWBOT_BIN, CLAWBOT_MODELS (server_harness.mjs); CLAWBOT_CHROMIUM (browser_helpers.mjs);
// CLAWBOT_DASHBOARD_SCREENSHOT, where to save the screenshot taken under load (default: a temp folder;
// README's docs/dashboard.png is made with it).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { assertCleanSession, launchBrowser } from './browser_helpers.mjs';
import { getJson, runClawbot, startServer } from './server_harness.mjs';
import {
  bearer, chat, createKey, keyId, request, startGateway, startUpstream, tempDir, waitUntil, writeGatewayConfig,
} from './gateway_helpers.mjs';

const RED = 'rgb(207, 34, 46)';  // --bad in web/dashboard/dashboard.css
const GREEN = 'rgb(26, 127, 55)';  // --good

/** The page has merged at least one answer of /api/metrics/history. */
async function openDashboard(page, base) {
  const res = await page.goto(`${base}/dashboard`);
  assert.equal(res.status(), 200);
  await page.waitForSelector('body[data-state="ready"]', { timeout: 30000 });
}

/** Waits until the chart's panel says it has at least one non-zero point. */
async function waitForPoints(page, chart, what = 'nonzero') {
  await page.waitForFunction(
    ([id, attr]) => Number(document.querySelector(`[data-chart="${id}"]`)?.dataset[attr] ?? 0) > 0,
    [chart, what], { timeout: 90000, polling: 250 });
}

/** The page's static files: security headers, a strong ETag and 304, the licence text. */
async function checkAssets(base) {
  const page = await fetch(`${base}/dashboard`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /^text\/html; charset=utf-8/);
  const csp = page.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/, `no inline script: ${csp}`);
  assert.equal(page.headers.get('x-content-type-options'), 'nosniff');
  const etag = page.headers.get('etag');
  assert.match(etag ?? '', /^"[0-9a-f]{32}"$/, 'a strong ETag');
  const html = await page.text();
  assert.match(html, /<script type="module" src="\/dashboard\/app\.js"><\/script>/);
  assert.doesNotMatch(html, /<script(?![^>]*\ssrc=)[^>]*>/, 'no inline script');
  assert.doesNotMatch(html, /https?:\/\//, 'nothing from another origin');
  const again = await fetch(`${base}/dashboard`, { headers: { 'if-none-match': etag } });
  assert.equal(again.status, 304);
  assert.equal(again.headers.get('etag'), etag);
  assert.equal((await again.text()).length, 0);
  const script = await fetch(`${base}/dashboard/app.js`);
  assert.equal(script.status, 200);
  assert.match(script.headers.get('content-type'), /^text\/javascript/);
  assert.notEqual(script.headers.get('etag'), etag);
  const licences = await fetch(`${base}/dashboard/licenses`);
  assert.equal(licences.status, 200);
  assert.match(await licences.text(), /==== uplot 1\.6\.\d+ \(MIT\)[\s\S]*Permission is hereby granted/);
}

// ---------------------------------------------------------------------------------------------- serve

describe('dashboard on clawbot serve', () => {
  const dir = tempDir('clawbot-dashboard-');
  // CLAWBOT_MEMORY_AVAILABLE names this file: the bytes written there are the system's available memory.
  const memoryFile = path.join(dir, 'memory-available');
  const alertsFile = path.join(dir, 'alerts.json');
  let server;
  let base;
  let memoryTotal;
  let browser;
  let page;
  before(async () => {
    fs.writeFileSync(memoryFile, String(Math.floor(os.totalmem() / 2)));
    // The built-in memory rule (90%), firing after 1 s instead of a minute.
    fs.writeFileSync(alertsFile, JSON.stringify({
      defaults: true,
      rules: [{ name: 'memory_high', series: 'memory_used_ratio', op: '>=', threshold: 0.9, for_s: 1,
        severity: 'critical', summary: 'memory used {value} >= {threshold}' }],
    }));
    const saved = process.env.CLAWBOT_MEMORY_AVAILABLE;
    process.env.CLAWBOT_MEMORY_AVAILABLE = memoryFile;
    try {
      server = await startServer({ extraArgs: ['--metrics-interval', '1', '--alerts', alertsFile, '--parallel', '2'] });
    } finally {
      if (saved === undefined) delete process.env.CLAWBOT_MEMORY_AVAILABLE;
      else process.env.CLAWBOT_MEMORY_AVAILABLE = saved;
    }
    base = server.baseUrl;
    browser = await launchBrowser();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.browser.close();
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the page and its files: CSP, nosniff, ETag and 304, licences', async () => {
    await checkAssets(base);
  });

  test('the page loads with no console error and asks only 127.0.0.1', async () => {
    await openDashboard(page, base);
    assert.equal(await page.textContent('#role'), 'serve');
    const charts = await page.$$eval('[data-chart]', (panels) => panels.map((p) => p.dataset.chart));
    for (const id of ['tokens', 'ttft', 'e2e', 'requests', 'rate', 'cache', 'memory', 'gpu', 'gpu-memory']) {
      assert.ok(charts.includes(id), `chart ${id} in ${charts}`);
    }
    assert.ok(browser.watch.urls.some((u) => u.endsWith('/api/metrics/history')), browser.watch.urls.join('\n'));
    assertCleanSession(browser.watch);
  });

  test('charts get points while clawbot bench runs (screenshot under load)', async () => {
    const bench = runClawbot(['bench', '--url', base, '--concurrency', '2', '--requests', '24', '--max-tokens', '48',
      '--prompt-tokens', '32', '--json'], { timeoutMs: 240000 });
    try {
      for (const chart of ['tokens', 'ttft', 'e2e', 'rate', 'memory']) await waitForPoints(page, chart);
      await waitForPoints(page, 'requests', 'points');
      await waitForPoints(page, 'cache', 'points');
      const shot = process.env.CLAWBOT_DASHBOARD_SCREENSHOT || path.join(dir, 'dashboard.png');
      await page.screenshot({ path: shot, fullPage: true });
      assert.ok(fs.statSync(shot).size > 10000, `screenshot ${shot}`);
    } finally {
      const r = await bench;
      assert.equal(r.code, 0, r.stderr);
    }
    const tokens = await page.textContent('[data-chart="tokens"] .now');
    assert.match(tokens, /output \d/, tokens);
  });

  test('the memory chart draws the 90% line from the thresholds', async () => {
    const history = await getJson(base, '/api/metrics/history');
    assert.equal(history.json.thresholds.memory_used_ratio, 0.9);
    const totals = history.json.series.memory_total_bytes.filter((v) => v !== null);
    memoryTotal = totals.at(-1);
    assert.ok(memoryTotal > 0, JSON.stringify(history.json.series.memory_total_bytes));
    await page.waitForSelector('[data-chart="memory"][data-line="0.9"]', { timeout: 10000 });
    const legend = await page.$$eval('[data-chart="memory"] .u-legend .u-label', (labels) => labels.map((l) => l.textContent));
    assert.ok(legend.includes('90% line'), `legend: ${legend}`);
    const ttft = await page.$$eval('[data-chart="ttft"] .u-legend .u-label', (labels) => labels.map((l) => l.textContent));
    assert.ok(ttft.includes('200 ms line'), `TTFT legend: ${ttft}`);
  });

  test('an alert appears (red) when memory passes 90%, then resolves (grey)', async () => {
    assert.ok(memoryTotal > 0, 'the memory total is known (the test before)');
    fs.writeFileSync(memoryFile, String(Math.floor(memoryTotal * 0.02)));
    const firing = await page.waitForSelector('#alert-list li[data-name="memory_high"][data-state="firing"]',
      { timeout: 30000 });
    assert.equal(await firing.evaluate((li) => getComputedStyle(li).borderLeftColor), RED);
    assert.match(await firing.textContent(), /critical/);
    fs.writeFileSync(memoryFile, String(Math.floor(memoryTotal / 2)));
    const resolved = await page.waitForSelector('#alert-list li[data-name="memory_high"][data-state="resolved"]',
      { timeout: 30000 });
    assert.match(await resolved.textContent(), /resolved \d\d:\d\d:\d\d/);
    assert.equal(await page.$('#alert-list li[data-name="memory_high"][data-state="firing"]'), null);
  });

  test('the time range picker: 5 min, 15 min, 1 h', async () => {
    for (const [label, seconds] of [['5 min', 300], ['1 h', 3600], ['15 min', 900]]) {
      await page.click(`button[data-range="${seconds}"]`);
      assert.equal(await page.getAttribute(`button[data-range="${seconds}"]`, 'aria-pressed'), 'true', label);
      const ranges = await page.$$eval('[data-chart]:not([data-empty])', (panels) => panels.map((p) => p.dataset.range));
      assert.ok(ranges.length > 0 && ranges.every((r) => r === String(seconds)), `${label}: ${ranges}`);
    }
  });

  test('readable at a phone width (390 px): one column, nothing wider than the screen', async () => {
    const phone = await browser.newPage({ viewport: { width: 390, height: 844 } });
    await openDashboard(phone, base);
    await waitForPoints(phone, 'memory');
    const widths = await phone.evaluate(() => ({
      page: document.documentElement.scrollWidth,
      panels: [...document.querySelectorAll('.panel')].map((p) => p.getBoundingClientRect().right),
      canvases: [...document.querySelectorAll('canvas')].map((c) => c.getBoundingClientRect().right),
    }));
    assert.ok(widths.page <= 390, JSON.stringify(widths));
    assert.ok([...widths.panels, ...widths.canvases].every((right) => right <= 390), JSON.stringify(widths));
    await phone.context().close();
  });

  test('no GPU on this machine: the GPU panels say so', async () => {
    const history = await getJson(base, '/api/metrics/history');
    if (Object.keys(history.json.series).some((name) => name.startsWith('gpu_'))) return;  // a machine with one
    const note = await page.textContent('[data-chart="gpu"] .note');
    assert.match(note, /No GPU found/);
  });

  test('no console error and no request off 127.0.0.1 in the whole session', () => {
    assertCleanSession(browser.watch);
  });
});

// ---------------------------------------------------------------------------------------------- gateway

describe('dashboard on clawbot gateway (API keys)', () => {
  const dir = tempDir('clawbot-dashboard-gw-');
  const upstreams = [];
  let gw;
  let key;
  let browser;
  let page;
  before(async () => {
    upstreams.push(await startUpstream({ name: 'node-a' }), await startUpstream({ name: 'node-b' }));
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: upstreams.map((u) => ({ url: u.url, name: u.name })),
      health_checks: { interval_ms: 200, timeout_ms: 500 },
      metrics_interval_s: 0.5,
    };
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'dashboard-user'));
    gw = await startGateway(config, { dir });
    browser = await launchBrowser();
    // The page's first requests go without a key: Chromium logs those 401s as console errors.
    page = await browser.newPage({ allow: [/status of 401/] });
  });
  after(async () => {
    await browser?.browser.close();
    await gw?.stop('SIGKILL');
    await Promise.all(upstreams.map((u) => u.kill()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the page loads without a key; the data routes answer 401 without one', async () => {
    await checkAssets(gw.url);
    for (const route of ['/api/metrics/history', '/api/alerts']) {
      const r = await request(`${gw.url}${route}`);
      assert.equal(r.status, 401, `${route}: ${r.text}`);
      assert.equal(r.json?.error?.code, 'invalid_api_key', r.text);
      const withKey = await request(`${gw.url}${route}`, { headers: bearer(key) });
      assert.equal(withKey.status, 200, `${route} with a key: ${withKey.text}`);
    }
  });

  test('the page asks for a key, then shows the upstreams (green) and the keys', async () => {
    await page.goto(`${gw.url}/dashboard`);
    await page.waitForSelector('body[data-state="need-key"]', { timeout: 15000 });
    assert.equal(await page.isVisible('#key-box'), true);
    await page.fill('#key-input', key);
    await page.click('#key-use');
    await page.waitForSelector('body[data-state="ready"]', { timeout: 15000 });
    assert.equal(await page.textContent('#role'), 'gateway');
    for (const name of ['node-a', 'node-b']) {
      const badge = await page.waitForSelector(`tr[data-upstream="${name}"][data-state="healthy"] .badge`, { timeout: 15000 });
      assert.equal(await badge.evaluate((b) => getComputedStyle(b).backgroundColor), GREEN);
    }
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assert.equal(r.status, 200, r.text);
    await page.waitForSelector(`#key-rows tr[data-key="${keyId(key)}"]`, { timeout: 15000 });
    assert.match(await page.textContent(`#key-rows tr[data-key="${keyId(key)}"]`), /dashboard-user/);
    // The key went in a header: never in a URL, nor in the gateway's output.
    assert.ok(!browser.watch.urls.some((u) => u.includes(key)), browser.watch.urls.join('\n'));
    assert.ok(!gw.stdout().includes(key) && !gw.stderr().includes(key));
    assert.equal(await page.evaluate(() => sessionStorage.getItem('clawbot.key')), key);
  });

  test('a stopped upstream turns red', async () => {
    await upstreams[1].kill();
    const row = await page.waitForSelector('tr[data-upstream="node-b"]:is([data-state="down"], [data-state="open"])',
      { timeout: 30000 });
    assert.equal(await row.$eval('.badge', (b) => getComputedStyle(b).backgroundColor), RED);
    assert.equal(await page.getAttribute('tr[data-upstream="node-a"]', 'data-state'), 'healthy');
  });

  test('no console error but the first 401s, no request off 127.0.0.1', () => {
    assertCleanSession(browser.watch);
  });
});
