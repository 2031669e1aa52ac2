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
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';

import { startServer } from './server_harness.mjs';
import { writeConfig, runClient } from './client_helpers.mjs';

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

/** The system's memory use as the node's /metrics computes it, to know whether the alert line is crossed. */
function memoryFraction() {
  const info = fs.readFileSync('/proc/meminfo', 'utf8');
  const kib = (key) => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(info)[1]);
  return 1 - kib('MemAvailable') / kib('MemTotal');
}

async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}

describe('clawbot doctor against a healthy node', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('prints a line per check and exits 0', async () => {
    const cfg = writeConfig({ model_endpoint: server.baseUrl }, 'clawbot-doctor-');
    try {
      const r = await runClient(['doctor'], { env: cfg.env });
      const lines = r.stdout.trim().split('\n');
      for (const name of CHECKS)
        assert.ok(lines.some((l) => new RegExp(`^(ok|warn)\\s+${name}\\b`).test(l)), `${name} line:\n${r.stdout}`);
      assert.match(r.stdout, /^ok\s+tcp\s+connected to 127\.0\.0\.1 port \d+/m);
      assert.match(r.stdout, /^ok\s+tls\s+not used \(http:\/\/ endpoint/m);
      assert.match(r.stdout, /^(ok|warn)\s+latency\s+20 x GET \/health: P50 [\d.]+ ms, P99 [\d.]+ ms \(target P99 < 200 ms\)/m);
      assert.match(r.stdout, /^ok\s+models\s+1 model: stories260K; using stories260K/m);
      assert.match(r.stdout, /^ok\s+generate\s+1-token answer from stories260K in \d+ ms/m);
      assert.match(lines.at(-1), /^healthy/);
      if (memoryFraction() < 0.85) assert.equal(r.code, 0, r.stdout + r.stderr);
    } finally {
      cfg.cleanup();
    }
  });

  test('--json reports each check with its status and figures', async () => {
    const { code, report, by } = await doctorJson({ model_endpoint: server.baseUrl });
    for (const name of ['config', 'resolve', 'tcp', 'tls', 'api_key', 'models', 'generate'])
      assert.equal(by[name].status, 'ok', `${name}: ${JSON.stringify(by[name])}`);
    assert.match(by.latency.status, /^(ok|warn)$/);
    assert.equal(by.latency.data.requests, 20);
    assert.ok(by.latency.data.p50_ms > 0 && by.latency.data.p50_ms <= by.latency.data.p99_ms);
    assert.deepEqual(by.models.data.models, ['stories260K']);
    assert.equal(by.generate.data.completion_tokens, 1);
    assert.ok(by.memory.data.total_bytes > 0 && by.memory.data.used_bytes > 0);
    assert.ok(by.memory.data.server_rss_bytes > 0);
    assert.equal(by.memory.data.alert_fraction, 0.9);
    const over = by.memory.data.fraction >= 0.9;
    assert.equal(by.memory.status, over ? 'fail' : 'ok');
    assert.equal(report.healthy, !over);
    assert.equal(code, over ? 1 : 0);
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
      assert.ok(r.ms < 5000, `diagnosed in ${r.ms} ms`);
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
