// The in-process metrics history (issue 20): GET /api/metrics/history on `serve` and on the gateway. Both
// sample every second here (--metrics-interval 1, "metrics_interval_s": 1); the tests wait for the samples
// they need (bounded), never for a fixed time.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { MODEL_ID, startServer, postJson, getJson, assertErrorBody } from './server_harness.mjs';
import {
  bearer, chat, createKey, request, startGateway, startUpstream, tempDir, waitUntil, writeGatewayConfig,
} from './gateway_helpers.mjs';

const HISTORY = '/api/metrics/history';

/** Every array in `series` (and the upstreams') as long as `t`, `t` ascending. */
function assertShape(h) {
  assert.ok(Array.isArray(h.t), JSON.stringify(h).slice(0, 300));
  for (let i = 1; i < h.t.length; ++i) assert.ok(h.t[i] > h.t[i - 1], `t ascending: ${h.t}`);
  for (const [name, values] of Object.entries(h.series)) assert.equal(values.length, h.t.length, name);
  for (const [name, u] of Object.entries(h.upstreams ?? {})) {
    assert.equal(u.state.length, h.t.length, name);
    for (const values of Object.values(u.series)) assert.equal(values.length, h.t.length, name);
  }
}

/** Polls the history until `found(history)` is truthy (at most `ms`); returns its value. */
async function waitForHistory(get, found, what, ms = 30000) {
  let last;
  const value = await waitUntil(async () => {
    last = await get();
    assert.equal(last.status, 200, last.text);
    return found(last.json);
  }, ms, 200);
  assert.ok(value, `no history sample with ${what} within ${ms} ms; last: ${last?.text.slice(0, 2000)}`);
  return value;
}

describe('serve: GET /api/metrics/history', () => {
  const root = tempDir('clawbot-history-');
  const memoryFile = path.join(root, 'mem_available');
  let server;
  before(async () => {
    // The seam: a file that stands for MemAvailable once it holds a number (empty: the real figure).
    fs.writeFileSync(memoryFile, '');
    process.env.CLAWBOT_MEMORY_AVAILABLE = memoryFile;
    try {
      server = await startServer({ extraArgs: ['--metrics-interval', '1'] });
    } finally {
      delete process.env.CLAWBOT_MEMORY_AVAILABLE;
    }
  });
  after(async () => {
    await server?.stop();
    fs.rmSync(root, { recursive: true, force: true });
  });
  const history = (query = '') => getJson(server.baseUrl, HISTORY + query);

  test('after some requests: points, output tokens/s, latency percentiles, memory', async () => {
    const started = Date.now() / 1000;
    for (let i = 0; i < 3; ++i) {
      const r = await postJson(server.baseUrl, '/v1/chat/completions', {
        model: MODEL_ID, messages: [{ role: 'user', content: `Tell me story ${i}` }], max_tokens: 24,
      });
      assert.equal(r.status, 200, r.text);
    }
    const h = await waitForHistory(history, (h) => {
      const i = h.t.findIndex((t, k) => t > started && h.series.output_tokens_per_s[k] > 0);
      return i >= 0 && h.t.at(-1) > h.t[i] ? h : null;
    }, 'output_tokens_per_s > 0');
    assertShape(h);
    assert.equal(h.role, 'serve');
    assert.equal(h.interval_s, 1);
    assert.equal(h.retention_s, 3600);
    assert.ok(Math.abs(h.now - Date.now() / 1000) < 60, `now is unix seconds: ${h.now}`);
    assert.ok(h.series.requests_per_s.some((v) => v > 0), `requests_per_s: ${h.series.requests_per_s}`);
    const last = h.t.length - 1;
    assert.ok(h.series.ttft_p99_s[last] > 0, `ttft_p99_s over the last minute: ${h.series.ttft_p99_s}`);
    assert.ok(h.series.e2e_p50_s[last] > 0, `e2e_p50_s: ${h.series.e2e_p50_s}`);
    const used = h.series.memory_used_ratio[last];
    assert.ok(used > 0 && used < 1, `memory_used_ratio: ${used}`);
    assert.ok(h.series.memory_total_bytes[last] > 0);
    assert.ok(h.series.process_rss_bytes[last] > 0);
    assert.equal(h.series.slots_total[last], 4);
    // No GPU on this node: the GPU series are listed and unknown (null), never 0.
    assert.ok(h.series.gpu_utilization_ratio.every((v) => v === null), `${h.series.gpu_utilization_ratio}`);
    assert.ok(h.series.tls_cert_days_left.every((v) => v === null));
    // The built-in alert rules' lines: the deployment guide's 90% memory and 200 ms P99 TTFT.
    assert.equal(h.thresholds.memory_used_ratio, 0.9);
    assert.equal(h.thresholds.ttft_p99_s, 0.2);
  });

  test('since: only the samples after it', async () => {
    const all = (await waitForHistory(history, (h) => (h.t.length >= 3 ? h : null), 'three samples')).t;
    const since = all[all.length - 2];
    const r = await history(`?since=${since}`);
    assert.equal(r.status, 200, r.text);
    assertShape(r.json);
    assert.ok(r.json.t.length >= 1 && r.json.t.every((t) => t > since), `${since}: ${r.json.t}`);
    const none = await history(`?since=${r.json.now + 3600}`);
    assert.deepEqual(none.json.t, []);
    assert.deepEqual(none.json.series.memory_used_ratio, []);
  });

  test('a since that is not a number is a 400 naming it', async () => {
    for (const bad of ['yesterday', '', '12abc']) {
      const r = await history(`?since=${bad}`);
      assertErrorBody(r, 400, { type: 'invalid_request_error', param: 'since', messageIncludes: 'since' });
    }
  });

  test('CLAWBOT_MEMORY_AVAILABLE moves memory_used_ratio past 90%', async () => {
    const total = (await waitForHistory(history, (h) => h.series.memory_total_bytes.at(-1), 'memory')) ?? 0;
    fs.writeFileSync(memoryFile, String(Math.floor(total * 0.05)));
    const written = Date.now() / 1000;
    const ratio = await waitForHistory(history, (h) => {
      const i = h.t.findIndex((t) => t > written + 0.5);
      return i >= 0 ? h.series.memory_used_ratio[i] : null;
    }, 'a sample after the seam was written');
    assert.ok(ratio >= 0.94 && ratio <= 0.96, `memory_used_ratio with 5% available: ${ratio}`);
    // /metrics reads the same figure.
    const metrics = (await getJson(server.baseUrl, '/metrics')).text;
    const usedLine = metrics.split('\n').find((l) => l.startsWith('clawbot_system_memory_used_bytes '));
    assert.ok(Math.abs(Number(usedLine.split(' ')[1]) - total * 0.95) < total * 0.01, usedLine);
    fs.writeFileSync(memoryFile, '');  // the real figure again
  });
});

describe('gateway: GET /api/metrics/history', () => {
  const root = tempDir('clawbot-history-gw-');
  let up;
  let gw;
  let key;
  let id;
  before(async () => {
    up = await startUpstream({ name: 'node-a' });
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: up.url, name: 'node-a' }],
      health_checks: { interval_ms: 200, timeout_ms: 500 },
      metrics_interval_s: 1,
    };
    ({ key, id } = await createKey(writeGatewayConfig(root, config), 'dashboard-user'));
    gw = await startGateway(config, { dir: root });
  });
  after(async () => {
    await gw?.stop('SIGKILL');
    await up?.kill();
    fs.rmSync(root, { recursive: true, force: true });
  });

  test('behind the keys: 401 without one', async () => {
    const r = await request(`${gw.url}${HISTORY}`);
    assert.equal(r.status, 401, r.text);
    assert.equal(r.json?.error?.code, 'invalid_api_key', r.text);
  });

  test('with a key: the upstreams, their state and traffic, the keys\' usage', async () => {
    const started = Date.now() / 1000;
    for (let i = 0; i < 3; ++i) {
      const r = await request(`${gw.url}/v1/chat/completions`, { headers: bearer(key), body: chat() });
      assert.equal(r.status, 200, r.text);
    }
    const get = () => request(`${gw.url}${HISTORY}`, { headers: bearer(key) });
    const h = await waitForHistory(get, (h) => {
      const i = h.t.findIndex((t, k) => t > started && h.upstreams['node-a']?.series.requests_per_s[k] > 0);
      return i >= 0 && h.keys.some((k) => k.requests >= 3) ? h : null;
    }, 'the upstream\'s requests and the key\'s usage');
    assertShape(h);
    assert.equal(h.role, 'gateway');
    assert.deepEqual(Object.keys(h.upstreams), ['node-a']);
    assert.equal(h.upstreams['node-a'].state.at(-1), 'healthy');
    assert.equal(h.series.upstreams_down.at(-1), 0);
    assert.ok(h.series.output_tokens_per_s.some((v) => v > 0), `${h.series.output_tokens_per_s}`);
    assert.ok(h.series.memory_used_ratio.at(-1) > 0);
    // /metrics says the same memory as serve's does.
    const metrics = await request(`${gw.url}/metrics`, { headers: bearer(key) });
    assert.match(metrics.text, /^clawbot_system_memory_used_bytes \d/m);
    assert.match(metrics.text, /^clawbot_system_memory_total_bytes \d/m);
    const usage = h.keys.find((k) => k.id === id);
    assert.ok(usage, JSON.stringify(h.keys));
    assert.equal(usage.name, 'dashboard-user');
    assert.ok(usage.prompt_tokens >= 12 && usage.completion_tokens >= 9, JSON.stringify(usage));
    // Never a key's secret.
    assert.ok(!h.keys.some((k) => JSON.stringify(k).includes(key.slice(17))), 'a key secret in the history');
    assert.ok(!JSON.stringify(h).includes(key), 'a key in the history');
  });

  test('a since that is not a number is a 400 naming it, in OpenAI\'s shape', async () => {
    const r = await request(`${gw.url}${HISTORY}?since=soon`, { headers: bearer(key) });
    assert.equal(r.status, 400, r.text);
    assert.equal(r.json?.error?.param, 'since', r.text);
    assert.equal(r.json?.error?.type, 'invalid_request_error', r.text);
  });

  test('a stopped upstream is not healthy in the next samples', async () => {
    await up.kill();
    const get = () => request(`${gw.url}${HISTORY}`, { headers: bearer(key) });
    const state = await waitForHistory(get, (h) => {
      const s = h.upstreams['node-a'].state.at(-1);
      return s !== 'healthy' ? s : null;
    }, 'the upstream down');
    assert.equal(state, 'down');
  });
});
