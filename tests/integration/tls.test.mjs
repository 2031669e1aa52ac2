// `clawbot serve --tls-cert --tls-key [--tls-client-ca]`: HTTPS served by the node itself, checked with
// `openssl s_client` and Node's https client against a CA made here with the openssl command (pki.mjs).
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/tls.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import https from 'node:https';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';

import { makePki, openssl } from './pki.mjs';
import { startServer, runClawbot, modelPath, readSse } from './server_harness.mjs';

/** One HTTPS request with Node's client; resolves { status, headers, body } or rejects with the TLS error. */
function httpsRequest(url, { method = 'GET', body, ...tlsOptions } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.request(url, {
      method,
      headers: body ? { 'content-type': 'application/json' } : {},
      timeout: 30000,
      ...tlsOptions,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => { text += chunk; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: text }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within 30 s`)));
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
}

const chatRequest = {
  messages: [{ role: 'user', content: 'Tell me a story' }],
  max_tokens: 8,
};

let pki;
let tmp;

before(async () => {
  modelPath(); // a missing model fails here, before any server starts
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-tls-'));
  pki = await makePki(tmp);
});

after(() => {
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('serve over HTTPS', () => {
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--tls-cert', pki.certFile, '--tls-key', pki.keyFile] });
  });
  after(async () => {
    await server?.stop();
  });

  test('announces https:// and describes its certificate', () => {
    assert.match(server.baseUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.match(server.stderr(), /TLS: certificate CN=localhost for localhost, 127\.0\.0\.1, issued by CN=clawbot integration CA/);
  });

  test('openssl s_client verifies the chain and the name', async () => {
    const { stdout } = await openssl(['s_client', '-connect', `127.0.0.1:${server.port}`, '-CAfile', pki.caFile,
      '-servername', 'localhost', '-verify_hostname', 'localhost', '-verify_return_error']);
    assert.match(stdout, /Verify return code: 0 \(ok\)/, stdout);
    assert.match(stdout, /subject=CN ?= ?localhost/, stdout);
    assert.match(stdout, /TLSv1\.3/, stdout);
  });

  test('a chat completion with Node https and the CA', async () => {
    const r = await httpsRequest(`${server.baseUrl}/v1/chat/completions`, {
      method: 'POST', body: chatRequest, ca: pki.ca,
    });
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body);
    assert.equal(body.object, 'chat.completion');
    assert.equal(typeof body.choices[0].message.content, 'string');
    assert.ok(body.usage.completion_tokens > 0 && body.usage.completion_tokens <= 8, r.body);
  });

  test('a streamed chat completion over https', async () => {
    const res = await new Promise((resolve, reject) => {
      const req = https.request(`${server.baseUrl}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, ca: pki.ca,
      }, resolve);
      req.on('error', reject);
      req.end(JSON.stringify({ ...chatRequest, stream: true }));
    });
    assert.equal(res.statusCode, 200);
    assert.match(res.headers['content-type'], /^text\/event-stream/);
    // readSse reads a web stream, as fetch gives: adapt Node's response stream to one.
    const events = await readSse({ body: Readable.toWeb(res) });
    assert.equal(events.at(-1), '[DONE]');
    const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
    assert.ok(chunks.length >= 2, `expected several chunks, got ${events.length}`);
    assert.ok(chunks.every((c) => c.object === 'chat.completion.chunk'));
  });

  test('without the CA the certificate is refused', async () => {
    await assert.rejects(httpsRequest(`${server.baseUrl}/v1/models`), (e) => {
      assert.match(e.code, /UNABLE_TO_VERIFY_LEAF_SIGNATURE|UNABLE_TO_GET_ISSUER_CERT_LOCALLY/, e.message);
      return true;
    });
  });

  test('plain HTTP to the TLS port gets a clear-text 400 that says so', async () => {
    const res = await fetch(`http://127.0.0.1:${server.port}/v1/models`, { signal: AbortSignal.timeout(10000) });
    assert.equal(res.status, 400);
    const body = await res.json();
    assert.equal(body.error.code, 'tls_required');
    assert.match(body.error.message, /this port speaks TLS \(HTTPS\), not plain HTTP/);
    // and the node still serves HTTPS afterwards
    const r = await httpsRequest(`${server.baseUrl}/v1/models`, { ca: pki.ca });
    assert.equal(r.status, 200, r.body);
  });
});

describe('serve with required client certificates', () => {
  let server;
  before(async () => {
    server = await startServer({
      extraArgs: ['--tls-cert', pki.certFile, '--tls-key', pki.keyFile, '--tls-client-ca', pki.caFile],
    });
  });
  after(async () => {
    await server?.stop();
  });

  test('a client without a certificate is refused', async () => {
    await assert.rejects(httpsRequest(`${server.baseUrl}/v1/models`, { ca: pki.ca }), (e) => {
      assert.match(`${e.code} ${e.message}`, /CERTIFICATE_REQUIRED|certificate required|ECONNRESET|socket hang up/i);
      return true;
    });
  });

  test('a client with a certificate from the client CA gets its answer', async () => {
    const r = await httpsRequest(`${server.baseUrl}/v1/chat/completions`, {
      method: 'POST', body: chatRequest, ca: pki.ca, cert: pki.clientCert, key: pki.clientKey,
    });
    assert.equal(r.status, 200, r.body);
    assert.equal(JSON.parse(r.body).object, 'chat.completion');
  });
});

describe('serve refuses unusable TLS settings before loading the model', () => {
  test('--tls-cert without --tls-key', async () => {
    const r = await runClawbot(['serve', '--model', modelPath(), '--port', '0', '--tls-cert', pki.certFile]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /HTTPS needs both --tls-cert and --tls-key \(given: --tls-cert only\)/);
  });

  test('a certificate file that does not exist', async () => {
    const missing = path.join(tmp, 'missing.pem');
    const r = await runClawbot(['serve', '--model', modelPath(), '--port', '0', '--tls-cert', missing,
      '--tls-key', pki.keyFile]);
    assert.equal(r.code, 1, r.stderr);
    assert.ok(r.stderr.includes(`cannot read the TLS certificate '${missing}'`), r.stderr);
  });

  test('a key that belongs to another certificate', async () => {
    const r = await runClawbot(['serve', '--model', modelPath(), '--port', '0', '--tls-cert', pki.certFile,
      '--tls-key', path.join(tmp, 'client.key')]);
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /does not belong to the certificate/);
  });
});
