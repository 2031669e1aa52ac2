// Alerts in the binaries (issue 20): `serve --alerts FILE` with memory_high at for_s 1, driven by the memory
// test seam (CLAWBOT_MEMORY_AVAILABLE names a file of available bytes, read at each sample): pending, then
// firing in GET /api/alerts and an Alertmanager-format "firing" POST to a receiver this test runs; memory back
// down: "resolved" in both; a receiver that fails twice gets the notice on the third try; a bad rules file
// stops serve with status 2 and one line naming the field. On the gateway: /api/alerts behind the keys, and a
// stopped upstream raises upstream_down.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/alerts.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { getJson, modelPath, runClawbot, startServer } from './server_harness.mjs';
import { bearer, createKey, request, startGateway, startUpstream, tempDir, waitUntil } from './gateway_helpers.mjs';

const dir = tempDir('clawbot-alerts-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A webhook receiver on 127.0.0.1: answers each POST with the next status of `statuses` (then 200) and keeps
 * the parsed bodies in `bodies`. */
async function startReceiver(statuses = []) {
  const bodies = [];
  const answered = [];
  const server = http.createServer((req, res) => {
    let text = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { text += c; });
    req.on('end', () => {
      bodies.push(JSON.parse(text));
      const status = statuses.length > 0 ? statuses.shift() : 200;
      answered.push(status);
      res.writeHead(status, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ ok: status === 200 }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}/hook`,
    bodies,
    answered,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(resolve); }),
  };
}

async function waitFor(predicate, what, ms = 20000) {
  const value = await waitUntil(predicate, ms);
  assert.ok(value, `timed out waiting for ${what}`);
  return value;
}

/** The memory seam: `ratio` of the machine's memory in use, as the next sample reads it. */
function setMemoryUsed(file, ratio) {
  const available = Math.floor(os.totalmem() * (1 - ratio));
  fs.writeFileSync(`${file}.tmp`, `${available}\n`);
  fs.renameSync(`${file}.tmp`, file); // whole, never half-written
}

describe('serve --alerts: memory at 90%', () => {
  const seam = path.join(dir, 'memory-available');
  let hook;
  let flaky;
  let serve;

  before(async () => {
    hook = await startReceiver();
    flaky = await startReceiver([500, 503]); // fails twice, then takes it
    const rules = path.join(dir, 'alerts.json');
    fs.writeFileSync(rules, JSON.stringify({
      rules: [{ name: 'memory_high', for_s: 1 }],
      webhooks: [{ url: hook.url }, { url: flaky.url, retries: 3 }],
    }));
    setMemoryUsed(seam, 0.5);
    process.env.CLAWBOT_MEMORY_AVAILABLE = seam;
    serve = await startServer({ extraArgs: ['--metrics-interval', '1', '--alerts', rules] });
  });

  after(async () => {
    await serve?.stop();
    await hook?.close();
    await flaky?.close();
  });

  test('pending, then firing in /api/alerts and on the webhook; resolved when memory is back down', async () => {
    const first = await getJson(serve.baseUrl, '/api/alerts');
    assert.equal(first.status, 200, first.text);
    assert.deepEqual(first.json.alerts, []);
    const rule = first.json.rules.find((r) => r.name === 'memory_high');
    assert.deepEqual(rule, { name: 'memory_high', series: 'memory_used_ratio', op: '>=', threshold: 0.9,
      for_s: 1, severity: 'critical' });

    setMemoryUsed(seam, 0.95);
    const seen = [];
    const firing = await waitFor(async () => {
      const r = await getJson(serve.baseUrl, '/api/alerts');
      const alert = r.json.alerts.find((a) => a.name === 'memory_high');
      if (alert && seen.at(-1) !== alert.state) seen.push(alert.state);
      return alert?.state === 'firing' ? alert : undefined;
    }, 'memory_high to fire');
    assert.deepEqual(seen, ['pending', 'firing']);
    assert.equal(firing.severity, 'critical');
    assert.ok(firing.value >= 0.9 && firing.value < 1, `value ${firing.value}`);
    assert.ok(firing.fired_at >= firing.since + 1, JSON.stringify(firing));
    assert.equal(firing.resolved_at, null);
    assert.match(firing.summary, /^memory used is 9\d\.\d% of the machine \(alert at 90\.0%\)$/);

    const fired = await waitFor(() => hook.bodies[0], 'the firing POST');
    assert.equal(fired.version, '4');
    assert.equal(fired.status, 'firing');
    assert.equal(fired.receiver, 'clawbot');
    assert.equal(fired.alerts.length, 1);
    const labels = fired.alerts[0].labels;
    assert.deepEqual(labels, { alertname: 'memory_high', severity: 'critical', instance: `127.0.0.1:${serve.port}`,
      role: 'serve' });
    assert.equal(fired.alerts[0].status, 'firing');
    assert.equal(fired.alerts[0].endsAt, '0001-01-01T00:00:00Z');
    assert.equal(Date.parse(fired.alerts[0].startsAt), Math.round(firing.fired_at * 1000));
    assert.equal(fired.alerts[0].annotations.summary.startsWith('memory used is 9'), true);

    setMemoryUsed(seam, 0.5);
    const resolved = await waitFor(async () => {
      const r = await getJson(serve.baseUrl, '/api/alerts');
      return r.json.alerts.find((a) => a.name === 'memory_high' && a.state === 'resolved');
    }, 'memory_high to resolve');
    assert.ok(resolved.resolved_at >= resolved.fired_at);
    const back = await waitFor(() => hook.bodies[1], 'the resolved POST');
    assert.equal(back.status, 'resolved');
    assert.equal(back.alerts[0].fingerprint, fired.alerts[0].fingerprint);
    assert.notEqual(back.alerts[0].endsAt, '0001-01-01T00:00:00Z');
    assert.equal(hook.bodies.length, 2);

    assert.match(serve.stderr(), /alert memory_high pending: /);
    assert.match(serve.stderr(), /alert memory_high firing: memory used is 9/);
    assert.match(serve.stderr(), /alert memory_high resolved after /);
  });

  test('a receiver that fails twice gets the notice on the third try', async () => {
    await waitFor(() => flaky.bodies.length >= 4, 'the flaky receiver to take both notices');
    assert.deepEqual(flaky.answered.slice(0, 3), [500, 503, 200]);
    assert.deepEqual(flaky.bodies[1], flaky.bodies[0]);
    assert.deepEqual(flaky.bodies[2], flaky.bodies[0]);
    assert.equal(flaky.bodies[2].status, 'firing');
    assert.equal(flaky.bodies[3].status, 'resolved');
    assert.match(serve.stderr(), /webhook http:\/\/127\.0\.0\.1:\d+: answered HTTP 500; trying again in 1 s/);
    assert.doesNotMatch(serve.stderr(), /\/hook/); // a webhook's path (Slack's secret) never reaches the log
  });
});

describe('serve --alerts: a bad rules file', () => {
  test('exits 2 with one line that names the field', async () => {
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ rules: [{ name: 'memory_high', threshold: 'ninety' }] }));
    const r = await runClawbot(['serve', '--model', modelPath(), '--alerts', bad]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr,
      `clawbot serve: ${bad}: "rules[0].threshold" is "ninety" (a string); allowed: a number from -1e+15 to 1e+15\n`);

    const missing = path.join(dir, 'none.json');
    const m = await runClawbot(['serve', '--model', modelPath(), '--alerts', missing]);
    assert.equal(m.code, 2, m.stderr);
    assert.equal(m.stderr, `clawbot serve: ${missing}: cannot read the alert rules (no such file)\n`);
  });
});

describe('gateway: alerts', () => {
  let hook;
  let nodeA;
  let nodeB;
  let gateway;
  let key;
  const gwDir = path.join(dir, 'gateway');

  before(async () => {
    fs.mkdirSync(gwDir);
    hook = await startReceiver();
    nodeA = await startUpstream({ name: 'a' });
    nodeB = await startUpstream({ name: 'b' });
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: nodeA.url, name: 'node-a' }, { url: nodeB.url, name: 'node-b' }],
      health_checks: { interval_ms: 100, timeout_ms: 500 },
      metrics_interval_s: 1,
      alerts: { rules: [{ name: 'upstream_down', for_s: 1 }], webhooks: [{ url: hook.url }] },
    };
    fs.writeFileSync(path.join(gwDir, 'gateway.json'), JSON.stringify(config));
    key = (await createKey(path.join(gwDir, 'gateway.json'), 'ops')).key;
    gateway = await startGateway(config, { dir: gwDir });
  });

  after(async () => {
    await gateway?.stop('SIGKILL');
    await nodeA?.kill();
    await nodeB?.kill();
    await hook?.close();
  });

  test('/api/alerts needs a key, as every route', async () => {
    const refused = await request(`${gateway.url}/api/alerts`);
    assert.equal(refused.status, 401, refused.text);
    const ok = await request(`${gateway.url}/api/alerts`, { headers: bearer(key) });
    assert.equal(ok.status, 200, ok.text);
    assert.deepEqual(ok.json.alerts, []);
    assert.ok(ok.json.rules.some((r) => r.name === 'upstream_down' && r.series === 'upstream.up' && r.for_s === 1));
    assert.ok(!ok.json.rules.some((r) => r.name === 'ttft_p99_high'), 'a gateway has no TTFT rule');
  });

  test('a stopped upstream raises upstream_down for it alone, on the list and on the webhook', async () => {
    await nodeB.kill();
    const alert = await waitFor(async () => {
      const r = await request(`${gateway.url}/api/alerts`, { headers: bearer(key) });
      return r.json.alerts.find((a) => a.name === 'upstream_down' && a.state === 'firing');
    }, 'upstream_down to fire');
    assert.equal(alert.upstream, 'node-b');
    assert.equal(alert.severity, 'critical');
    const fired = await waitFor(() => hook.bodies[0], 'the firing POST');
    assert.equal(fired.status, 'firing');
    assert.deepEqual(fired.alerts[0].labels, { alertname: 'upstream_down', severity: 'critical',
      instance: `127.0.0.1:${gateway.port}`, role: 'gateway', upstream: 'node-b' });
    const all = (await request(`${gateway.url}/api/alerts`, { headers: bearer(key) })).json.alerts;
    assert.equal(all.filter((a) => a.name === 'upstream_down').length, 1, JSON.stringify(all));
    assert.match(gateway.stderr(), /alert upstream_down firing \(upstream node-b\)/);
  });
});
