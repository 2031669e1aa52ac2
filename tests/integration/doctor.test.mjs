// `clawbot doctor`: one line per check, stopping at the first failure that makes the rest meaningless.
// Against a real `clawbot serve` (healthy, over http and over TLS with an expired and a wrong-host
// certificate made here with the openssl command), a closed port, and a small Node server that wants an API
// key (our serve has no keys yet). A blackholed address (a namespace with a DROP rule) is in
// doctor_blackhole.test.mjs.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/doctor.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { startServer } from './server_harness.mjs';
import { freePort, writeConfig, runClient } from './client_helpers.mjs';

const run = promisify(execFile);
const CHECKS = ['config', 'resolve', 'tcp', 'tls', 'api_key', 'latency', 'models', 'generate', 'memory'];

async function openssl(args) {
  try {
    return await run('openssl', args, { timeout: 30000 });
  } catch (e) {
    throw new Error(`openssl ${args.join(' ')} failed: ${e.message}\n${e.stderr ?? ''}`);
  }
}

/** Runs doctor --json against `config`; returns { code, report, stdout, stderr }. */
async function doctorJson(config) {
  const cfg = writeConfig(config, 'clawbot-doctor-');
  try {
    const r = await runClient(['doctor', '--json'], { env: cfg.env });
    let report;
    try {
      report = JSON.parse(r.stdout);
    } catch (e) {
      throw new Error(`doctor --json printed no JSON (${e.message}):\n${r.stdout}\nstderr:\n${r.stderr}`);
    }
    assert.deepEqual(report.checks.map((c) => c.name), CHECKS, 'every check is reported, in order');
    const by = Object.fromEntries(report.checks.map((c) => [c.name, c]));
    return { code: r.code, report, by, stdout: r.stdout, stderr: r.stderr };
  } finally {
    cfg.cleanup();
  }
}

// The node's memory as doctor sees it, pinned: a pass-through proxy in front of the real node that rewrites only
// the two system-memory gauges of its /metrics (4 of 16 GiB in use), so that whether doctor passes does not
// depend on how full this machine's memory is (the 90% line itself is tested against a stub below).
const PINNED_USED = 4 * 2 ** 30;
const PINNED_TOTAL = 16 * 2 ** 30;
async function memoryPinnedProxy(target) {
  const upstream = new URL(target);
  const proxy = http.createServer((req, res) => {
    const forward = http.request({ host: upstream.hostname, port: upstream.port, method: req.method, path: req.url,
      headers: req.headers }, (answer) => {
      if (req.url !== '/metrics') {
        res.writeHead(answer.statusCode, answer.headers);
        answer.pipe(res);
        return;
      }
      let text = '';
      answer.setEncoding('utf8').on('data', (c) => { text += c; }).on('end', () => {
        text = text.replace(/^clawbot_system_memory_used_bytes \S+$/m, `clawbot_system_memory_used_bytes ${PINNED_USED}`)
          .replace(/^clawbot_system_memory_total_bytes \S+$/m, `clawbot_system_memory_total_bytes ${PINNED_TOTAL}`);
        const headers = { ...answer.headers };
        delete headers['content-length'];
        res.writeHead(answer.statusCode, headers);
        res.end(text);
      });
    });
    forward.on('error', (e) => res.destroy(e));
    req.pipe(forward);
  });
  await new Promise((resolve) => proxy.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${proxy.address().port}`, close: () => proxy.close() };
}

describe('clawbot doctor against a healthy node', () => {
  let server;
  let node;
  before(async () => {
    server = await startServer();
    node = await memoryPinnedProxy(server.baseUrl);
  });
  after(async () => {
    node?.close();
    await server?.stop();
  });

  test('prints a line per check and exits 0', async () => {
    const cfg = writeConfig({ model_endpoint: node.url }, 'clawbot-doctor-');
    try {
      const r = await runClient(['doctor'], { env: cfg.env });
      const lines = r.stdout.trim().split('\n');
      for (const name of CHECKS)
        assert.ok(lines.some((l) => new RegExp(`^(ok|warn)\\s+${name}\\b`).test(l)), `${name} line:\n${r.stdout}`);
      assert.match(r.stdout, /^ok\s+tcp\s+connected to 127\.0\.0\.1 port \d+/m);
      assert.match(r.stdout, /^ok\s+tls\s+not used \(http:\/\/ endpoint/m);
      assert.match(r.stdout, /^(ok|warn)\s+latency\s+20 x GET \/health: P50 [\d.]+ ms, P99 [\d.]+ ms \(target P99 < 200 ms\)/m);
      assert.match(r.stdout, /^ok\s+models\s+1 model: stories260K; using stories260K/m);
      assert.match(r.stdout, /^ok\s+generate\s+first token from stories260K in \d+ ms \(max_tokens \d+, temperature [\d.]+, streamed, as ask sends it\)/m);
      assert.match(r.stdout, /^ok\s+memory\s+node memory 4\.0 of 16\.0 GiB in use \(25%, alert at 90%\)/m);
      assert.match(lines.at(-1), /^healthy/);
      assert.equal(r.code, 0, r.stdout + r.stderr);
    } finally {
      cfg.cleanup();
    }
  });

  test('--json reports each check with its status and figures', async () => {
    const { code, report, by } = await doctorJson({ model_endpoint: node.url });
    for (const name of ['config', 'resolve', 'tcp', 'tls', 'api_key', 'models', 'generate'])
      assert.equal(by[name].status, 'ok', `${name}: ${JSON.stringify(by[name])}`);
    assert.match(by.latency.status, /^(ok|warn)$/);
    assert.equal(by.latency.data.requests, 20);
    assert.ok(by.latency.data.p50_ms > 0 && by.latency.data.p50_ms <= by.latency.data.p99_ms);
    assert.deepEqual(by.models.data.models, ['stories260K']);
    assert.equal(by.generate.data.first_token, true);
    assert.ok(by.generate.data.max_tokens > 1 && by.generate.data.max_tokens < 512, 'what ask would ask for');
    assert.ok(by.memory.data.total_bytes > 0 && by.memory.data.used_bytes > 0);
    assert.ok(by.memory.data.server_rss_bytes > 0);
    assert.equal(by.memory.data.alert_fraction, 0.9);
    assert.equal(by.memory.data.fraction, 0.25);
    assert.equal(by.memory.status, 'ok');
    assert.equal(report.healthy, true);
    assert.equal(code, 0);
    assert.deepEqual(report.skipped, []);
  });
});

describe('clawbot doctor when the node cannot be reached', () => {
  test('a closed port is refused, exits 1 and skips the later checks', async () => {
    const port = await freePort();
    const cfg = writeConfig({ model_endpoint: `http://127.0.0.1:${port}` }, 'clawbot-doctor-');
    try {
      const r = await runClient(['doctor'], { env: cfg.env, timeoutMs: 15000 });
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stdout, new RegExp(`^FAIL\\s+tcp\\s+connection refused by 127\\.0\\.0\\.1:${port}: the host is up but nothing listens on port ${port}`, 'm'));
      assert.match(r.stdout, new RegExp(`fix: start \`clawbot serve --host 0\\.0\\.0\\.0 --port ${port}\``));
      for (const name of ['tls', 'api_key', 'latency', 'models', 'generate', 'memory'])
        assert.match(r.stdout, new RegExp(`^skip\\s+${name}\\s+skipped: the tcp check failed`, 'm'));
      assert.match(r.stdout, /not healthy: tcp failed; skipped: tls, api_key, latency, models, generate, memory/);
      // Without waiting for a timeout: "refused" above, not "timed out" (runClient's timeout stops a hang).
    } finally {
      cfg.cleanup();
    }
    const { code, report, by } = await doctorJson({ model_endpoint: `http://127.0.0.1:${port}` });
    assert.equal(code, 1);
    assert.equal(report.healthy, false);
    assert.equal(by.tcp.status, 'fail');
    assert.equal(by.tcp.data.error, 'refused');
    assert.deepEqual(report.skipped, ['tls', 'api_key', 'latency', 'models', 'generate', 'memory']);
  });

  test('an unknown host name fails name resolution', async () => {
    const { code, by } = await doctorJson({ model_endpoint: 'http://no-such-node.invalid:5000' });
    assert.equal(code, 1);
    assert.equal(by.resolve.status, 'fail');
    assert.match(by.resolve.detail, /cannot resolve 'no-such-node\.invalid'/);
    assert.equal(by.tcp.status, 'skip');
  });

  // "auto" (mDNS): what it finds depends on the LAN, so it is tested between network namespaces, found and
  // not found, in discovery.test.mjs.

  test('an invalid config file fails the first check', async () => {
    const { code, by } = await doctorJson({ model_endpoint: 'http://127.0.0.1:5000', temperature: 9 });
    assert.equal(code, 1);
    assert.equal(by.config.status, 'fail');
    assert.match(by.config.detail, /temperature/);
    assert.equal(by.resolve.status, 'skip');
  });
});

describe('clawbot doctor and API keys', () => {
  const KEY = 'sk-right-key';
  let stub;
  let url;
  before(async () => {
    // Stands in for a gateway that checks keys: 401 on /v1/models unless the right Bearer key is sent.
    stub = http.createServer((req, res) => {
      const json = (status, body) => {
        res.writeHead(status, { 'Content-Type': 'application/json' });
        res.end(JSON.stringify(body));
      };
      if (req.url === '/health') return json(200, { status: 'ok' });
      if (req.headers.authorization !== `Bearer ${KEY}`)
        return json(401, { error: { message: 'invalid API key', type: 'invalid_request_error' } });
      if (req.url === '/v1/models') return json(200, { object: 'list', data: [{ id: 'stub-model' }] });
      if (req.url === '/v1/chat/completions') {
        req.resume();
        return req.on('end', () => json(200, { choices: [{ message: { role: 'assistant', content: 'Hi' }, finish_reason: 'length' }],
          usage: { prompt_tokens: 3, completion_tokens: 1 } }));
      }
      if (req.url === '/metrics') {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        return res.end('clawbot_system_memory_total_bytes 1000\nclawbot_system_memory_used_bytes 950\n');
      }
      return json(404, { error: { message: 'not found' } });
    });
    await new Promise((resolve) => stub.listen(0, '127.0.0.1', resolve));
    url = `http://127.0.0.1:${stub.address().port}`;
  });
  after(() => stub?.close());

  test('no key configured: 401 explained', async () => {
    const { code, by, report } = await doctorJson({ model_endpoint: url });
    assert.equal(code, 1);
    assert.equal(by.api_key.status, 'fail');
    assert.equal(by.api_key.data.status, 401);
    assert.match(by.api_key.detail, /401 Unauthorized: the endpoint wants an API key and none is configured/);
    assert.match(by.api_key.fix, /set api_key_env/);
    assert.deepEqual(report.skipped, ['latency', 'models', 'generate', 'memory']);
  });

  test('a wrong key: rejected, and where it came from is named', async () => {
    const { code, by } = await doctorJson({ model_endpoint: url, api_key: 'sk-wrong' });
    assert.equal(code, 1);
    assert.match(by.api_key.detail, /401 Unauthorized: the endpoint rejected the key from api_key in .*clawbot\.json/);
    assert.match(by.api_key.fix, /wrong or revoked/);
  });

  test('the right key passes, and memory over the 90% line fails', async () => {
    const { code, by } = await doctorJson({ model_endpoint: url, api_key: KEY });
    assert.equal(by.api_key.status, 'ok');
    assert.equal(by.generate.status, 'ok');
    assert.equal(by.memory.status, 'fail');
    assert.match(by.memory.detail, /\(95%, alert at 90%\)/);
    assert.equal(code, 1);
  });
});

describe('clawbot doctor and certificates', () => {
  let dir;
  let servers = [];
  const file = (name) => path.join(dir, name);

  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-doctor-pki-'));
    const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
    await openssl(['req', '-x509', ...ec, '-keyout', file('ca.key'), '-out', file('ca.pem'), '-days', '2',
      '-subj', '/CN=clawbot doctor CA']);
    // `openssl ca` can set dates in the past (x509 -req cannot before OpenSSL 3.4): a minimal CA setup.
    fs.writeFileSync(file('index.txt'), '');
    fs.writeFileSync(file('serial'), '01\n');
    fs.writeFileSync(file('ca.cnf'), [
      '[ca]', 'default_ca = doctor', '[doctor]', `dir = ${dir}`, 'database = $dir/index.txt',
      'serial = $dir/serial', 'new_certs_dir = $dir', 'default_md = sha256', 'policy = anything',
      'unique_subject = no', 'copy_extensions = none', '[anything]', 'commonName = supplied', '',
    ].join('\n'));
    const issue = async (name, san, dates) => {
      fs.writeFileSync(file(`${name}.ext`), `subjectAltName=${san}\nextendedKeyUsage=serverAuth\n`);
      await openssl(['req', ...ec, '-keyout', file(`${name}.key`), '-out', file(`${name}.csr`), '-subj', `/CN=${name}`]);
      await openssl(['ca', '-batch', '-config', file('ca.cnf'), '-cert', file('ca.pem'), '-keyfile', file('ca.key'),
        '-in', file(`${name}.csr`), '-out', file(`${name}.pem`), '-extfile', file(`${name}.ext`), '-notext', ...dates]);
    };
    await issue('expired', 'DNS:localhost,IP:127.0.0.1', ['-startdate', '20200101000000Z', '-enddate', '20200102000000Z']);
    await issue('otherhost', 'DNS:node7.example', ['-days', '2']);
    await issue('good', 'DNS:localhost,IP:127.0.0.1', ['-days', '2']);
  });
  after(async () => {
    for (const s of servers) await s.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  async function serveWith(name) {
    const server = await startServer({ extraArgs: ['--tls-cert', file(`${name}.pem`), '--tls-key', file(`${name}.key`)] });
    servers.push(server);
    return server;
  }

  test('a good certificate: verified, expiry under 14 days warned', async () => {
    const server = await serveWith('good');
    const { by } = await doctorJson({ model_endpoint: server.baseUrl, tls_ca_file: file('ca.pem') });
    assert.equal(by.tls.status, 'warn', JSON.stringify(by.tls));
    assert.match(by.tls.detail, /certificate 'CN=good' verified against .*ca\.pem, name matches 127\.0\.0\.1/);
    assert.match(by.tls.fix, /expires in [01] days: renew it/);
    assert.equal(by.generate.status, 'ok');
  });

  test('an expired certificate is diagnosed as expired', async () => {
    const server = await serveWith('expired');
    const { code, by, report } = await doctorJson({ model_endpoint: server.baseUrl, tls_ca_file: file('ca.pem') });
    assert.equal(code, 1);
    assert.equal(by.tcp.status, 'ok');
    assert.equal(by.tls.status, 'fail');
    assert.match(by.tls.detail, /certificate has expired \(notAfter 2020-01-02 00:00:00 UTC\)/);
    assert.match(by.tls.fix, /renew the node's certificate/);
    assert.deepEqual(report.skipped, ['api_key', 'latency', 'models', 'generate', 'memory']);
  });

  test('a certificate for another host is diagnosed as a name mismatch', async () => {
    const server = await serveWith('otherhost');
    const { code, by } = await doctorJson({ model_endpoint: server.baseUrl, tls_ca_file: file('ca.pem') });
    assert.equal(code, 1);
    assert.equal(by.tls.status, 'fail');
    assert.match(by.tls.detail, /certificate is for 'node7\.example', not '127\.0\.0\.1'/);
    assert.match(by.tls.fix, /use the name on the certificate or reissue it/);
  });
});

// ---------------------------------------------------------------------------- issue 17

/** A stand-in node or gateway: `routes[path](req, body, res)`; records each POST's JSON body. */
async function stubServer(routes) {
  const posts = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.method === 'POST') posts.push({ url: req.url, body: JSON.parse(body || 'null') });
      const route = routes[req.url];
      if (route) return route(req, res);
      res.writeHead(404, { 'Content-Type': 'application/json' });
      res.end(JSON.stringify({ error: { message: 'not found' } }));
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, posts, close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }) };
}

const sendJson = (res, status, body) => {
  res.writeHead(status, { 'Content-Type': 'application/json' });
  res.end(JSON.stringify(body));
};
const streamHello = (_req, res) => {
  res.writeHead(200, { 'Content-Type': 'text/event-stream' });
  res.write(`data: ${JSON.stringify({ model: 'm', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ model: 'm', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
  res.end('data: [DONE]\n\n');
};

describe('clawbot doctor sends the request ask sends', () => {
  test('same body: streamed, max_tokens capped by the node\'s context, the config\'s temperature and system prompt', async () => {
    const stub = await stubServer({
      '/health': (_q, res) => sendJson(res, 200, { status: 'ok', model: 'm' }),
      '/v1/models': (_q, res) => sendJson(res, 200, { object: 'list', data: [{ id: 'm', meta: { n_ctx: 2048, n_ctx_per_request: 2048 } }] }),
      '/v1/chat/completions': streamHello,
      '/metrics': (_q, res) => { res.writeHead(200); res.end('clawbot_system_memory_total_bytes 1000\nclawbot_system_memory_used_bytes 100\n'); },
    });
    const cfg = writeConfig({ model_endpoint: stub.url, max_tokens: 8192, temperature: 0.3, system_prompt: 'Be brief.' });
    try {
      const ask = await runClient(['ask', 'Hello'], { env: cfg.env });
      assert.equal(ask.code, 0, ask.stderr);
      const doctor = await runClient(['doctor', '--json'], { env: cfg.env });
      const report = JSON.parse(doctor.stdout);
      assert.equal(report.healthy, true, doctor.stdout);
      const [asked, checked] = stub.posts.map((p) => p.body);
      assert.ok(checked, 'doctor sent a chat request');
      assert.deepEqual(Object.keys(checked).sort(), Object.keys(asked).sort());
      for (const key of ['stream', 'stream_options', 'max_tokens', 'temperature', 'model'])
        assert.deepEqual(checked[key], asked[key], key);
      assert.deepEqual(checked.messages, asked.messages);
      assert.ok(asked.max_tokens < 2048, `ask asked for ${asked.max_tokens}`);
    } finally {
      await stub.close();
      cfg.cleanup();
    }
  });

  test('a node that refuses that request fails the check with its message, though one token would pass', async () => {
    const stub = await stubServer({
      '/health': (_q, res) => sendJson(res, 200, { status: 'ok' }),
      '/v1/models': (_q, res) => sendJson(res, 200, { object: 'list', data: [{ id: 'm' }] }),  // says no context
      '/v1/chat/completions': (req, res) => sendJson(res, 400, { error: { message: "'max_tokens' must be between 1 and 2048, got 8192", type: 'invalid_request_error', param: 'max_tokens', code: null } }),
    });
    const cfg = writeConfig({ model_endpoint: stub.url });
    try {
      const doctor = await runClient(['doctor'], { env: cfg.env });
      assert.equal(doctor.code, 1);
      assert.match(doctor.stdout, /^FAIL\s+generate\s+the chat request ask would send \(max_tokens 8192, .*\) answered 400: 'max_tokens' must be between 1 and 2048/m);
    } finally {
      await stub.close();
      cfg.cleanup();
    }
  });
});

describe('clawbot doctor through a gateway', () => {
  const KEY = 'sk-gateway-key';
  const GATEWAY_CHECKS = ['config', 'resolve', 'tcp', 'tls', 'api_key', 'latency', 'models', 'generate', 'upstreams'];
  const upstreams = (bDown, aDown = false) => [
    { name: 'a', url: 'http://10.9.0.1:5000', state: aDown ? 'down' : 'up', standby: false, serving: !aDown, in_flight: 1, models: aDown ? [] : ['m'],
      ...(aDown ? { last_error: 'connect: connection refused' } : {}), memory: { used_bytes: 4 * 2 ** 30, total_bytes: 16 * 2 ** 30 } },
    { name: 'b', url: 'http://10.9.0.2:5000', state: bDown ? 'down' : 'up', standby: false, serving: !bDown, in_flight: 0, models: bDown ? [] : ['m'],
      ...(bDown ? { last_error: 'GET /health: connection refused' } : {}) },
  ];
  // Details of /health only with the key (as gw17's gateway does); everything else wants the key when `keyed`.
  function gateway({ keyed = true, allDown = false, extra = [] } = {}) {
    const authorized = (req) => req.headers.authorization === `Bearer ${KEY}`;
    const guard = (fn) => (req, res) => (keyed && !authorized(req)
      ? sendJson(res, 401, { error: { message: 'invalid API key', type: 'invalid_request_error' } }) : fn(req, res));
    return stubServer({
      '/health': (req, res) => {
        const status = allDown ? 'unavailable' : 'degraded';
        const body = authorized(req) ? { status, role: 'gateway', queue: 2, upstreams: [...upstreams(true, allDown), ...extra] } : { status, role: 'gateway' };
        sendJson(res, allDown ? 503 : 200, body);
      },
      '/v1/models': guard((_q, res) => sendJson(res, 200, { object: 'list', data: allDown ? [] : [{ id: 'm', meta: { n_ctx: 4096 }, upstreams: ['a'] }] })),
      '/v1/chat/completions': guard(streamHello),
      '/metrics': guard((_q, res) => { res.writeHead(200); res.end('clawbot_gateway_requests_total{route="/health",status="200"} 3\n'); }),
    });
  }
  async function doctorThrough(url, config = {}) {
    const cfg = writeConfig({ model_endpoint: url, ...config }, 'clawbot-doctor-gw-');
    try {
      const r = await runClient(['doctor', '--json'], { env: cfg.env });
      const report = JSON.parse(r.stdout);
      const text = await runClient(['doctor'], { env: cfg.env });
      return { code: r.code, report, by: Object.fromEntries(report.checks.map((c) => [c.name, c])), text: text.stdout };
    } finally {
      cfg.cleanup();
    }
  }

  test('reports each upstream\'s state, memory and last error, and warns about the one that is down', async () => {
    const gw = await gateway();
    try {
      const { code, report, by, text } = await doctorThrough(gw.url, { api_key: KEY });
      assert.equal(report.role, 'gateway');
      assert.deepEqual(report.checks.map((c) => c.name), GATEWAY_CHECKS);
      assert.doesNotMatch(text, /older clawbot|clawbot_system_memory/);
      assert.equal(by.upstreams.status, 'warn');
      assert.match(by.upstreams.detail, /gateway degraded, 1 of 2 upstreams serving, 2 queued/);
      assert.match(by.upstreams.detail, /a \(http:\/\/10\.9\.0\.1:5000\): up, 1 in flight, models m, memory 4\.0 of 16\.0 GiB in use \(25%\)/);
      assert.match(by.upstreams.detail, /b \(http:\/\/10\.9\.0\.2:5000\): down, 0 in flight; last error: GET \/health: connection refused/);
      assert.match(by.upstreams.fix, /^b is not serving/);
      assert.equal(by.upstreams.data.upstreams[1].state, 'down');
      assert.equal(code, 0, 'a warning is still healthy');
      assert.match(text, /^warn\s+upstreams\s+gateway degraded/m);
    } finally {
      await gw.close();
    }
  });

  test('no upstream serving: the models check fails and the upstreams check still says why', async () => {
    const gw = await gateway({ allDown: true });
    try {
      const { code, report, by } = await doctorThrough(gw.url, { api_key: KEY });
      assert.equal(code, 1);
      assert.equal(by.latency.status === 'ok' || by.latency.status === 'warn', true, 'a 503 from a gateway is an answer');
      assert.equal(by.models.status, 'fail');
      assert.match(by.models.detail, /no upstream is serving/);
      assert.equal(by.upstreams.status, 'fail');
      assert.match(by.upstreams.detail, /gateway unavailable, 0 of 2 upstreams serving/);
      assert.match(by.upstreams.detail, /a \(.*\): down.*last error: connect: connection refused/);
      assert.deepEqual(report.skipped, ['generate']);
    } finally {
      await gw.close();
    }
  });

  test('a standby that lacks a model the primaries serve, or is down, is reported stale', async () => {
    const standby = (name, state, models) => ({ name, url: `http://10.9.0.9:500${name.length}`, state, standby: true, serving: false, in_flight: 0, models });
    const gw = await gateway({ extra: [standby('c', 'up', ['m-old']), standby('dd', 'down', [])] });
    try {
      const { by } = await doctorThrough(gw.url, { api_key: KEY });
      assert.equal(by.upstreams.status, 'warn');
      assert.match(by.upstreams.detail, /c \(http:\/\/10\.9\.0\.9:5001\): up, standby, 0 in flight, models m-old/);
      assert.match(by.upstreams.fix, /standby c is stale: it lacks m that the primaries serve \(clawbot standby sync/);
      assert.match(by.upstreams.fix, /standby dd is stale: it is down or serves nothing, not m that the primaries serve/);
    } finally {
      await gw.close();
    }
    const fresh = await gateway({ extra: [standby('c', 'up', ['m'])] });
    try {
      const { by } = await doctorThrough(fresh.url, { api_key: KEY });
      assert.doesNotMatch(by.upstreams.fix ?? '', /stale/);
    } finally {
      await fresh.close();
    }
  });

  test('without a key the gateway shows only its status: doctor says the details need one', async () => {
    const gw = await gateway({ keyed: false });
    try {
      const { by } = await doctorThrough(gw.url);
      assert.equal(by.upstreams.status, 'warn');
      assert.match(by.upstreams.detail, /the gateway says "degraded"; its upstreams .* are shown only with a valid API key/);
      assert.match(by.upstreams.fix, /set api_key_env \(or api_key\)/);
    } finally {
      await gw.close();
    }
  });
});
