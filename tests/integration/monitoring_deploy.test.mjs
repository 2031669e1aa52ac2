// deploy/grafana/clawbot.json against what clawbot really exports: every panel's expression parses (each one
// wrapped in a generated recording rule and checked by `promtool check rules`), and every metric it names is
// on the /metrics of a running `clawbot serve` (stories260K) or `clawbot gateway` in front of it, after a few
// requests (histograms appear with their first observation). The GPU series are taken from the contract in
// src/monitor/gpu.h: a machine without a GPU exports none. The rules in deploy/prometheus are checked the
// same way (their own promtool tests are lint_prometheus_*).
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/monitoring_deploy.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { MODEL_ID, REPO_ROOT, startServer } from './server_harness.mjs';
import { chat, request, startGateway, startUpstream, tempDir, waitUntil } from './gateway_helpers.mjs';

const DASHBOARD = path.join(REPO_ROOT, 'deploy', 'grafana', 'clawbot.json');
const RULES = path.join(REPO_ROOT, 'deploy', 'prometheus', 'clawbot-rules.yml');
const GPU_CONTRACT = path.join(REPO_ROOT, 'src', 'monitor', 'gpu.h');

// PromQL words that are not metric names (functions are followed by "(" and are skipped anyway).
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or',
  'unless', 'offset', 'inf', 'nan']);

/** Grafana's variables replaced by what Prometheus would see. */
function substitute(expr) {
  return expr
    .replaceAll('$__rate_interval', '1m')
    .replaceAll('$__interval', '1m')
    .replaceAll('$__range', '1h')
    .replace(/\$\{?[A-Za-z_][A-Za-z0-9_]*\}?/g, '.*');
}

/** The metric names an expression reads: identifiers outside strings, label matchers, grouping clauses
 * and ranges that are not functions or keywords. */
export function metricNames(expr) {
  const text = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ');
  const names = new Set();
  for (const m of text.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
    const after = text.slice(m.index + m[0].length).trimStart();
    const before = text[m.index - 1];
    if (after.startsWith('(') || KEYWORDS.has(m[0].toLowerCase())) continue;
    if (before && /[0-9.]/.test(before)) continue; // 1e3, 0.5
    names.add(m[0]);
  }
  return names;
}

/** Every expression of the dashboard as { where, expr }: panel targets (rows' panels too) and the
 * variables' label_values() queries. */
function dashboardExpressions(dashboard) {
  const out = [];
  const visit = (panels) => {
    for (const panel of panels ?? []) {
      for (const t of panel.targets ?? [])
        if (t.expr) out.push({ where: `panel "${panel.title}" target ${t.refId}`, expr: t.expr });
      visit(panel.panels);
    }
  };
  visit(dashboard.panels);
  for (const v of dashboard.templating?.list ?? []) {
    const query = typeof v.query === 'string' ? v.query : v.query?.query;
    const m = /^label_values\((.+),\s*[A-Za-z_]+\)$/.exec(query ?? '');
    if (m) out.push({ where: `variable "${v.name}"`, expr: m[1] });
  }
  return out;
}

/** The `expr:` values of a rules file, a block (`expr: |`) as its indented lines. */
function ruleExpressions(yaml) {
  const out = [];
  const lines = yaml.split('\n');
  for (let i = 0; i < lines.length; ++i) {
    const m = /^(\s*)expr:\s*(.*)$/.exec(lines[i]);
    if (!m) continue;
    if (m[2] !== '|') {
      out.push(m[2]);
      continue;
    }
    let block = '';
    while (i + 1 < lines.length && (lines[i + 1].trim() === '' || lines[i + 1].search(/\S/) > m[1].length))
      block += lines[++i] + '\n';
    out.push(block);
  }
  return out;
}

function promtool(args) {
  const r = spawnSync('promtool', args, { encoding: 'utf8' });
  if (r.error) throw new Error(`promtool could not be run (${r.error.message}): scripts/bootstrap.sh installs it`);
  return r;
}

/** Names on a /metrics page: each sample's name (histograms' _bucket, _sum and _count as written). */
function exportedNames(text) {
  const names = new Set();
  for (const line of text.split('\n')) {
    const m = /^([A-Za-z_:][A-Za-z0-9_:]*)[{ ]/.exec(line);
    if (m) names.add(m[1]);
  }
  return names;
}

const dir = tempDir('clawbot-monitoring-');
let serve;
let gateway;
let failing;
const exported = new Set();

before(async () => {
  serve = await startServer();
  // A second upstream that answers 503: the gateway's upstream error counter gets its first sample.
  failing = await startUpstream({ name: 'busy', model: MODEL_ID });
  gateway = await startGateway({
    auth: 'none',
    affinity: false, // (one conversation would always go to the same upstream)
    upstreams: [{ url: failing.url, name: 'busy' }, { url: serve.baseUrl, name: 'node' }],
    health_checks: { interval_ms: 100 },
  }, { dir });
  // Once the gateway knows its model, the second upstream answers 503 to everything.
  const known = await waitUntil(async () => {
    const health = (await request(`${gateway.url}/health`)).json;
    return health?.upstreams?.find((u) => u.name === 'busy')?.models?.length > 0;
  }, 10000);
  assert.ok(known, 'the gateway never read the second upstream\'s models');
  failing.options.status = 503;
  const body = chat('Once upon a time', { model: MODEL_ID });
  const streamed = { ...body, stream: true };
  let gatewayText = '';
  const ready = await waitUntil(async () => {
    await request(`${gateway.url}/v1/chat/completions`, { method: 'POST', body });
    await request(`${gateway.url}/v1/chat/completions`, { method: 'POST', body: streamed });
    gatewayText = (await request(`${gateway.url}/metrics`)).text;
    return /clawbot_gateway_upstream_errors_total\{/.test(gatewayText) &&
      /clawbot_gateway_upstream_request_duration_seconds_bucket\{upstream="node"/.test(gatewayText);
  }, 30000, 50);
  assert.ok(ready, `after 30 s of requests the gateway's /metrics still lacks an upstream error or the node's latency:\n${gatewayText}`);
  const serveText = (await request(`${serve.baseUrl}/metrics`)).text;
  for (const text of [serveText, gatewayText]) for (const name of exportedNames(text)) exported.add(name);
  // The GPU series of the contract (exported per GPU found: none here without one).
  for (const m of fs.readFileSync(GPU_CONTRACT, 'utf8').matchAll(/\bclawbot_gpus?[a-z_]*\b/g)) exported.add(m[0]);
});

after(async () => {
  await gateway?.stop('SIGKILL');
  await serve?.stop();
  await failing?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('every Grafana expression parses (promtool check rules on a generated rules file)', () => {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const expressions = dashboardExpressions(dashboard);
  assert.ok(expressions.length >= 20, `only ${expressions.length} expressions found in ${DASHBOARD}`);
  const rules = expressions.map(({ expr }, i) => `      - record: grafana:expression_${i}\n` +
    `        expr: ${JSON.stringify(substitute(expr))}\n`).join('');
  const file = path.join(dir, 'grafana-expressions.yml');
  fs.writeFileSync(file, `groups:\n  - name: grafana\n    rules:\n${rules}`);
  const r = promtool(['check', 'rules', file]);
  const where = expressions.map((e, i) => `  grafana:expression_${i}: ${e.where}: ${e.expr}`).join('\n');
  assert.equal(r.status, 0, `promtool check rules failed:\n${r.stdout}${r.stderr}\nexpressions:\n${where}`);
});

test('every metric the Grafana dashboard and the Prometheus rules name is one serve or gateway exports', () => {
  const dashboard = JSON.parse(fs.readFileSync(DASHBOARD, 'utf8'));
  const unknown = [];
  for (const { where, expr } of dashboardExpressions(dashboard))
    for (const name of metricNames(expr)) if (!exported.has(name)) unknown.push(`${where}: ${name}`);
  // The rules' expressions (the certificate's expiry is exported only when TLS is served: named in the list).
  const onlyWithTls = new Set(['clawbot_tls_certificate_expiry_timestamp_seconds']);
  for (const expr of ruleExpressions(fs.readFileSync(RULES, 'utf8'))) {
    for (const name of metricNames(expr))
      if (!exported.has(name) && !onlyWithTls.has(name)) unknown.push(`clawbot-rules.yml: ${name}`);
  }
  assert.deepEqual(unknown, [], `names no /metrics page has (exported: ${[...exported].sort().join(', ')})`);
  assert.ok(exported.has('clawbot_time_to_first_token_seconds_bucket'), 'the requests left no TTFT histogram');
});

test('the metric-name reader skips functions, labels, grouping and numbers', () => {
  const names = metricNames('histogram_quantile(0.99, sum by (instance, le) (rate(a_bucket{instance=~"x|y"}[1m])))' +
    ' / on(instance) group_left b_total offset 5m > 1e3 and c');
  assert.deepEqual([...names].sort(), ['a_bucket', 'b_total', 'c']);
});
