// The gateway's door through a real `clawbot gateway` in front of a minimal upstream: API keys, the IP
// allow-list, per-key rate limits, body and header limits, TLS (openssl s_client and the official openai
// client), and the hash-chained audit log with `clawbot gateway audit verify`. No model, no engine.
// Run: CLAWBOT_BIN=build-frontend/clawbot node --test tests/integration/gateway_door.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pathToFileURL } from 'node:url';

import {
  bearer, chat, createKey, hasIpv6Loopback, keyId, request, runClawbotCommand, sseData, startGateway,
  startUpstream, tempDir, waitUntil, writeGatewayConfig,
} from './gateway_helpers.mjs';
import { makePki, openssl } from './pki.mjs';
import { REPO_ROOT } from './server_harness.mjs';

/** An OpenAI-style error body: { error: { message, type, code } }; the message must match `message`. */
function assertError(r, status, { type, code, message }) {
  const where = `status ${r.status}, body ${r.text.slice(0, 400)}`;
  assert.equal(r.status, status, where);
  assert.match(r.headers['content-type'] ?? '', /^application\/json/, where);
  assert.ok(r.json?.error && typeof r.json.error === 'object', `no "error" object: ${where}`);
  const e = r.json.error;
  assert.equal(typeof e.message, 'string', where);
  if (type) assert.equal(e.type, type, where);
  if (code) assert.equal(e.code, code, where);
  if (message) assert.match(e.message, message, where);
  return e;
}

/** The gateway's usual shape for these tests: one plain listener on 127.0.0.1, fast health checks. */
function baseConfig(upstream, extra = {}) {
  return {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [{ url: upstream.url, name: upstream.name }],
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    ...extra,
  };
}

/** The requests that reached the upstream other than the gateway's own /v1/models polls. */
const proxied = (up) => up.requests.filter((r) => r.url !== '/v1/models' || r.headers['x-forwarded-for'] !== undefined);

/** The last chat request that reached the upstream. */
const lastChat = (up) => up.requests.filter((r) => r.url === '/v1/chat/completions').at(-1);

/** Waits until the gateway's /health says its upstream is serving (the first health check has run). */
async function waitHealthy(gw, headers = {}) {
  const ok = await waitUntil(async () => (await request(`${gw.url}/health`, { headers })).status === 200, 5000);
  assert.ok(ok, `the gateway never reported a healthy upstream\n${gw.stderr()}`);
}

const root = tempDir('clawbot-gw-door-');
const gateways = [];
const upstreams = [];
async function gateway(config, options) {
  const gw = await startGateway(config, options);
  gateways.push(gw);
  return gw;
}
async function upstream(options) {
  const up = await startUpstream(options);
  upstreams.push(up);
  return up;
}
/** A sub-folder of the test's temp folder for one gateway's files. */
function folder(name) {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

after(async () => {
  await Promise.all(gateways.map((gw) => gw.stop('SIGKILL')));
  await Promise.all(upstreams.map((up) => up.kill()));
  fs.rmSync(root, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------- keys

describe('API keys', () => {
  let up;
  let gw;
  let key;
  before(async () => {
    up = await upstream({ name: 'keys-up' });
    const dir = folder('keys');
    const config = baseConfig(up);
    ({ key } = await createKey(writeGatewayConfig(dir, config), 't'));
    gw = await gateway(config, { dir });
    await waitHealthy(gw);
  });

  test('no key: 401 with WWW-Authenticate and an error that says how to send one', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat() });
    assertError(r, 401, { type: 'authentication_error', code: 'invalid_api_key',
      message: /needs an API key.*Authorization: Bearer/ });
    assert.equal(r.headers['www-authenticate'], 'Bearer');
    assert.equal(proxied(up).length, 0, 'a refused request must not reach the upstream');
  });

  test('a wrong key, a key of the wrong shape and an empty Bearer: 401', async () => {
    const wrongSecret = `${key.slice(0, 17)}${'A'.repeat(32)}`;
    for (const presented of [wrongSecret, 'cbk_000000000000_' + 'b'.repeat(32), 'sk-not-ours']) {
      const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(presented) });
      assertError(r, 401, { code: 'invalid_api_key', message: /API key is not valid here/ });
      assert.equal(r.headers['www-authenticate'], 'Bearer');
    }
    const empty = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: { authorization: 'Bearer ' } });
    assertError(empty, 401, { code: 'invalid_api_key' });
    assert.equal(proxied(up).length, 0);
  });

  test('a valid key: 200, and the upstream never sees the client\'s key', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.upstream, 'keys-up');
    assert.equal(r.json.choices[0].message.content, 'Hello from the upstream');
    assert.equal(r.json.authorization, null, 'the client\'s Authorization header was forwarded upstream');
    const seen = lastChat(up).headers;
    assert.equal(seen.authorization, undefined);
    assert.equal(seen['x-api-key'], undefined);
    assert.equal(JSON.stringify(seen).includes(key.slice(17)), false, 'the key\'s secret reached the upstream');
    assert.equal(seen['x-forwarded-for'], '127.0.0.1');
  });

  test('the key in an x-api-key header works too, and is not forwarded either', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: { 'x-api-key': key } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.authorization, null);
    assert.equal(lastChat(up).headers['x-api-key'], undefined);
    const wrong = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: { 'x-api-key': 'nope' } });
    assertError(wrong, 401, { code: 'invalid_api_key' });
  });

  test('/metrics needs a key; /v1/models too; /health is open by default', async () => {
    assertError(await request(`${gw.url}/metrics`), 401, { code: 'invalid_api_key' });
    const metrics = await request(`${gw.url}/metrics`, { headers: bearer(key) });
    assert.equal(metrics.status, 200, metrics.text);
    assert.match(metrics.text, /clawbot_gateway_requests_total\{[^}]*status="401"[^}]*\} \d+/);
    assertError(await request(`${gw.url}/v1/models`), 401, { code: 'invalid_api_key' });
    const health = await request(`${gw.url}/health`);
    assert.equal(health.status, 200, health.text);
    assert.equal(health.json.role, 'gateway');
  });

  test('a key created while the gateway runs works at once; a revoked key is refused within about a second',
    async () => {
      // Issue 17 bug 4: refused for up to seconds after `keys create` returned.
      for (const name of ['late', 'later', 'latest']) {
        const fresh = await createKey(gw.config, name);
        const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(fresh.key) });
        assert.equal(r.status, 200, `a key used right after keys create returned: ${r.status} ${r.text}`);
      }
      const created = await createKey(gw.config, 'short-lived');

      const revoked = await runClawbotCommand(['gateway', 'keys', 'revoke', created.id, '--config', gw.config]);
      assert.equal(revoked.code, 0, revoked.stderr);
      const start = Date.now();
      const refused = await waitUntil(async () =>
        (await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(created.key) })).status === 401,
      3000);
      const ms = Date.now() - start;
      assert.ok(refused, 'a revoked key was still accepted after 3 s');
      assert.ok(ms <= 1200, `a revoked key was accepted for ${ms} ms after the revoke`);
      // The other key is untouched.
      const other = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
      assert.equal(other.status, 200, other.text);
    });
});

describe('keys with health_open false and an upstream key of its own', () => {
  let up;
  let gw;
  let key;
  before(async () => {
    up = await upstream({ name: 'keyed-up' });
    const dir = folder('closed-health');
    const config = baseConfig(up, { health_open: false });
    config.upstreams[0].api_key = 'upstream-secret';
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'closed'));
    gw = await gateway(config, { dir });
  });

  test('/health needs a key', async () => {
    assertError(await request(`${gw.url}/health`), 401, { code: 'invalid_api_key' });
    await waitHealthy(gw, bearer(key));
  });

  test('the upstream gets the gateway\'s api_key for it, never the client\'s', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.authorization, 'Bearer upstream-secret');
    const viaHeader = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: { 'x-api-key': key } });
    assert.equal(viaHeader.json.authorization, 'Bearer upstream-secret');
    assert.equal(lastChat(up).headers['x-api-key'], undefined);
  });
});

// ---------------------------------------------------------------------------------------------- allow-list

describe('IP allow-list', () => {
  let up;
  let gw;
  let key;
  let v6;
  before(async () => {
    up = await upstream({ name: 'allow-up' });
    v6 = await hasIpv6Loopback();
    const dir = folder('allow');
    const config = baseConfig(up, {
      listen: [{ host: '0.0.0.0', port: 0 }, ...(v6 ? [{ host: '::1', port: 0 }] : [])],
      allow: ['127.0.0.2/32', '::1/128'],
    });
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'allow'));
    gw = await gateway(config, { dir });
  });

  test('127.0.0.1 is not in the list: 403 naming the address, on every route, before the key check', async () => {
    const local = { localAddress: '127.0.0.1' };
    const withKey = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key), ...local });
    assertError(withKey, 403, { type: 'permission_error', code: 'address_not_allowed',
      message: /does not accept requests from 127\.0\.0\.1 \(not in its allow-list\)/ });
    assertError(await request(`${gw.url}/v1/chat/completions`, { body: chat(), ...local }), 403,
      { code: 'address_not_allowed' });
    assertError(await request(`${gw.url}/health`, local), 403, { code: 'address_not_allowed' });
    assert.equal(proxied(up).length, 0);
  });

  test('127.0.0.2 is in the list: 200', async () => {
    const r = await request(`${gw.url}/v1/chat/completions`,
      { body: chat(), headers: bearer(key), localAddress: '127.0.0.2' });
    assert.equal(r.status, 200, r.text);
    assert.equal(lastChat(up).headers['x-forwarded-for'], '127.0.0.2');
    // Still a key is needed.
    assertError(await request(`${gw.url}/v1/chat/completions`, { body: chat(), localAddress: '127.0.0.2' }), 401,
      { code: 'invalid_api_key' });
  });

  test('IPv6: ::1 is let in by ::1/128 and refused by a list without it', async (t) => {
    if (!v6) {
      t.skip('this machine has no IPv6 loopback (::1 cannot be bound)');
      return;
    }
    assert.match(gw.urls[1], /^http:\/\/\[::1\]:\d+$/);
    const r = await request(`${gw.urls[1]}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assert.equal(r.status, 200, r.text);
    assert.equal(lastChat(up).headers['x-forwarded-for'], '::1');

    const dir = folder('allow-v4-only');
    const config = baseConfig(up, { listen: [{ host: '::1', port: 0 }], allow: ['127.0.0.0/8'] });
    const { key: key2 } = await createKey(writeGatewayConfig(dir, config), 'v4only');
    const gw2 = await gateway(config, { dir });
    const refused = await request(`${gw2.url}/v1/chat/completions`, { body: chat(), headers: bearer(key2) });
    assertError(refused, 403, { code: 'address_not_allowed', message: /from ::1 \(not in its allow-list\)/ });
  });
});

// ---------------------------------------------------------------------------------------------- rate limits

describe('per-key rate limits', () => {
  let up;
  let gw;
  let dir;
  before(async () => {
    // Every answer uses 4 + 3 = 7 tokens.
    up = await upstream({ name: 'limits-up', usage: { prompt_tokens: 4, completion_tokens: 3 } });
    dir = folder('limits');
    gw = await gateway(baseConfig(up), { dir });
    await waitHealthy(gw);
  });

  test('--rpm 3: the 4th request within a minute gets 429 with Retry-After and names the limit', async () => {
    const { key, id } = await createKey(gw.config, 'rpm', { rpm: 3 });
    // (A key made after the start is picked up within a poll or two.)
    assert.ok(await waitUntil(async () =>
      (await request(`${gw.url}/v1/models`, { headers: bearer(key) })).status === 200, 1500));
    for (let i = 2; i <= 3; ++i) {
      const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
      assert.equal(r.status, 200, `request ${i}: ${r.text}`);
    }
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assertError(r, 429, { type: 'rate_limit_error', code: 'rate_limit_exceeded',
      message: new RegExp(`rate limit of key ${id} reached \\(requests per minute: 3 used of 3\\); retry in \\d+ s`) });
    const retryAfter = Number(r.headers['retry-after']);
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 60, `Retry-After: ${r.headers['retry-after']}`);
    assert.match(r.json.error.message, new RegExp(`retry in ${retryAfter} s`));
    // Another key is not limited by this one's use.
    const other = await createKey(gw.config, 'rpm-other');
    assert.ok(await waitUntil(async () =>
      (await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(other.key) })).status === 200, 1500));
  });

  test('--tpm 10, non-streamed: the answer that crosses the limit completes, the next gets 429', async () => {
    const { key, id } = await createKey(gw.config, 'tpm', { tpm: 10 });
    assert.ok(await waitUntil(async () =>
      (await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) })).status === 200, 1500));
    const second = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assert.equal(second.status, 200, second.text);  // 7 tokens used of 10: admitted, and now 14
    const third = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assertError(third, 429, { code: 'rate_limit_exceeded',
      message: new RegExp(`rate limit of key ${id} reached \\(tokens per minute: 14 used of 10\\)`) });
    assert.ok(Number(third.headers['retry-after']) >= 1, `Retry-After: ${third.headers['retry-after']}`);
  });

  test('--tpm 10, streamed: usage is asked for upstream and counted; the client that did not ask sees no usage chunk',
    async () => {
      const { key, id } = await createKey(gw.config, 'tpm-stream', { tpm: 10 });
      assert.ok(await waitUntil(async () =>
        (await request(`${gw.url}/v1/models`, { headers: bearer(key) })).status === 200, 1500));
      for (let i = 1; i <= 2; ++i) {
        const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('hi', { stream: true }), headers: bearer(key) });
        assert.equal(r.status, 200, r.text);
        assert.match(r.headers['content-type'], /^text\/event-stream/);
        assert.equal(lastChat(up).body.stream_options?.include_usage, true,
          'the gateway must ask the upstream for usage to count tokens');
        const events = sseData(r.text);
        assert.equal(events.at(-1), '[DONE]');
        const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
        assert.equal(chunks.map((c) => c.choices[0]?.delta?.content ?? '').join(''), 'Hello from the upstream');
        assert.ok(chunks.every((c) => c.usage === undefined && c.choices.length === 1),
          `the client did not ask for usage but got it: ${r.text}`);
      }
      const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('hi', { stream: true }), headers: bearer(key) });
      assertError(r, 429, { code: 'rate_limit_exceeded',
        message: new RegExp(`rate limit of key ${id} reached \\(tokens per minute: 14 used of 10\\)`) });
    });

  test('streamed with include_usage: the client gets its usage chunk, and the tokens count', async () => {
    const { key, id } = await createKey(gw.config, 'tpm-usage', { tpm: 10 });
    assert.ok(await waitUntil(async () =>
      (await request(`${gw.url}/v1/models`, { headers: bearer(key) })).status === 200, 1500));
    for (let i = 1; i <= 2; ++i) {
      const r = await request(`${gw.url}/v1/chat/completions`, {
        body: chat('hi', { stream: true, stream_options: { include_usage: true } }), headers: bearer(key) });
      assert.equal(r.status, 200, r.text);
      const events = sseData(r.text);
      assert.equal(events.at(-1), '[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      const usage = chunks.filter((c) => c.usage);
      assert.equal(usage.length, 1, r.text);
      assert.deepEqual(usage[0].choices, []);
      assert.deepEqual(usage[0].usage, { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 });
      assert.equal(chunks.at(-1), usage[0], 'the usage chunk comes last, before [DONE]');
    }
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assertError(r, 429, { message: new RegExp(`key ${id} reached \\(tokens per minute: 14 used of 10\\)`) });
  });
});

// ---------------------------------------------------------------------------------------------- size limits

describe('body and header limits', () => {
  let up;
  let gw;
  let key;
  before(async () => {
    up = await upstream({ name: 'size-up' });
    const dir = folder('sizes');
    const config = baseConfig(up, { limits: { max_body_bytes: 2048, max_header_bytes: 4096 } });
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'sizes'));
    gw = await gateway(config, { dir });
    await waitHealthy(gw);
  });

  test('a body within max_body_bytes passes; a larger one gets 413 with an error body', async () => {
    const small = await request(`${gw.url}/v1/chat/completions`, { body: chat('x'.repeat(1500)), headers: bearer(key) });
    assert.equal(small.status, 200, small.text);
    const before = proxied(up).length;
    const big = await request(`${gw.url}/v1/chat/completions`, { body: chat('x'.repeat(4000)), headers: bearer(key) });
    assertError(big, 413, { type: 'invalid_request_error', code: 'request_too_large',
      message: /request body of \d+ bytes is larger than this gateway's limit of 2048 bytes for \/v1\/chat\/completions \(limits\.max_body_bytes in gateway\.json\)/ });
    assert.equal(proxied(up).length, before, 'a body over the limit must not reach the upstream');
    // The gateway still serves after it.
    const again = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
    assert.equal(again.status, 200, again.text);
  });

  test('headers over max_header_bytes: 431 with an error body', async () => {
    const fine = await request(`${gw.url}/v1/chat/completions`,
      { body: chat(), headers: { ...bearer(key), 'x-padding': 'p'.repeat(2000) } });
    assert.equal(fine.status, 200, fine.text);
    const huge = await request(`${gw.url}/v1/chat/completions`,
      { body: chat(), headers: { ...bearer(key), 'x-padding': 'p'.repeat(8000) } });
    assertError(huge, 431, { code: 'headers_too_large', message: /request headers are larger than 4096 bytes/ });
  });
});

// ---------------------------------------------------------------------------------------------- TLS

// The official openai client in a child process that trusts the test CA through NODE_EXTRA_CA_CERTS: one
// chat completion, then one streamed. Resolves { code, stdout, stderr }; stdout is JSON when it worked.
function openaiClient(baseURL, apiKey, env) {
  let entry;
  try {
    entry = createRequire(path.join(REPO_ROOT, 'tests', 'compat', 'package.json')).resolve('openai');
  } catch (e) {
    throw new Error(`cannot find the "openai" package (${e.message}); install it first: ` +
      '(cd tests/compat && npm ci --ignore-scripts)');
  }
  const script = `
    const { default: OpenAI } = await import(${JSON.stringify(pathToFileURL(entry).href)});
    const client = new OpenAI({ baseURL: ${JSON.stringify(baseURL)}, apiKey: ${JSON.stringify(apiKey)},
                                maxRetries: 0, timeout: 10000 });
    const messages = [{ role: 'user', content: 'Say hello' }];
    const answer = await client.chat.completions.create({ model: 'test-model', messages });
    const stream = await client.chat.completions.create({ model: 'test-model', messages, stream: true });
    let streamed = '';
    let chunks = 0;
    for await (const chunk of stream) { chunks++; streamed += chunk.choices[0]?.delta?.content ?? ''; }
    console.log(JSON.stringify({ answer, streamed, chunks }));`;
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--input-type=module', '-e', script],
      { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    child.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const timer = setTimeout(() => child.kill('SIGKILL'), 20000);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

describe('TLS', () => {
  let up;
  let pki;
  let gw;
  let key;
  let dir;
  before(async () => {
    up = await upstream({ name: 'tls-up' });
    dir = folder('tls');
    pki = await makePki(dir);
    const config = baseConfig(up, {
      listen: [{ host: '127.0.0.1', port: 0, tls: { cert: pki.certFile, key: pki.keyFile } }],
      tls_only: true,
    });
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'tls'));
    gw = await gateway(config, { dir });
    assert.match(gw.url, /^https:\/\/127\.0\.0\.1:\d+$/);
  });

  test('openssl s_client verifies the chain against the test CA', async () => {
    const { stdout } = await openssl(['s_client', '-connect', `127.0.0.1:${gw.port}`, '-CAfile', pki.caFile,
      '-servername', 'localhost', '-verify_hostname', 'localhost', '-verify_return_error']);
    assert.match(stdout, /Verify return code: 0 \(ok\)/, stdout);
    assert.match(stdout, /subject=CN ?= ?localhost/, stdout);
  });

  test('the openai client through HTTPS with the test CA: a chat completion, streamed and not', async () => {
    const r = await openaiClient(`${gw.url}/v1`, key, { NODE_EXTRA_CA_CERTS: pki.caFile });
    assert.equal(r.code, 0, `${r.stdout}\n${r.stderr}`);
    const { answer, streamed, chunks } = JSON.parse(r.stdout);
    assert.equal(answer.object, 'chat.completion');
    assert.equal(answer.choices[0].message.content, 'Hello from the upstream');
    assert.equal(answer.upstream, 'tls-up');
    assert.equal(answer.authorization, null);
    assert.equal(streamed, 'Hello from the upstream');
    assert.ok(chunks >= 4, `${chunks} chunks`);
    const seen = lastChat(up);
    assert.equal(seen.headers['x-forwarded-proto'], 'https');
  });

  test('the openai client without the CA refuses the certificate', async () => {
    const r = await openaiClient(`${gw.url}/v1`, key, { NODE_EXTRA_CA_CERTS: '' });
    assert.notEqual(r.code, 0, r.stdout);
    assert.match(r.stderr, /Connection error|certificate|UNABLE_TO_VERIFY|self.signed/i, r.stderr);
  });

  test('plain HTTP on the TLS port: 400 tls_required', async () => {
    const r = await request(`http://127.0.0.1:${gw.port}/v1/models`, { headers: bearer(key) });
    assertError(r, 400, { code: 'tls_required', message: /this port speaks TLS \(HTTPS\), not plain HTTP/ });
    const after = await request(`${gw.url}/v1/models`, { headers: bearer(key), ca: pki.ca });
    assert.equal(after.status, 200, after.text);
  });

  test('tls_only with a plain listener: the gateway refuses to start (exit 2), naming tls_only', async () => {
    const config = baseConfig(up, {
      listen: [{ host: '127.0.0.1', port: 0, tls: { cert: pki.certFile, key: pki.keyFile } },
        { host: '127.0.0.1', port: 0 }],
      tls_only: true,
    });
    const file = writeGatewayConfig(dir, config, 'tls-only-plain.json');
    const r = await runClawbotCommand(['gateway', '--config', file, '--no-advertise', '--port', '0']);
    assert.equal(r.code, 2, `${r.stdout}\n${r.stderr}`);
    assert.match(r.stderr, /"tls_only" is true but listen\[1\] has no "tls"/);
    assert.doesNotMatch(r.stdout, /listening on/);
  });

  describe('client certificates (tls.client_ca)', () => {
    let gw2;
    before(async () => {
      const config = baseConfig(up, {
        listen: [{ host: '127.0.0.1', port: 0,
          tls: { cert: pki.certFile, key: pki.keyFile, client_ca: pki.caFile } }],
      });
      gw2 = await gateway(config, { dir, name: 'client-ca.json' });
    });

    test('without a client certificate the handshake fails', async () => {
      await assert.rejects(request(`${gw2.url}/v1/models`, { headers: bearer(key), ca: pki.ca }), (e) => {
        assert.match(`${e.code} ${e.message}`, /CERTIFICATE_REQUIRED|certificate required|ECONNRESET|socket hang up/i);
        return true;
      });
    });

    test('with a certificate from the client CA it works (and the key is still needed)', async () => {
      const tlsOptions = { ca: pki.ca, cert: pki.clientCert, key: pki.clientKey };
      const r = await request(`${gw2.url}/v1/chat/completions`, { body: chat(), headers: bearer(key), ...tlsOptions });
      assert.equal(r.status, 200, r.text);
      assertError(await request(`${gw2.url}/v1/chat/completions`, { body: chat(), ...tlsOptions }), 401,
        { code: 'invalid_api_key' });
    });
  });
});

// ---------------------------------------------------------------------------------------------- audit log

describe('audit log', () => {
  const secretPrompt = 'my confidential prompt 4711';
  let up;
  let dir;
  let config;
  let key;
  let lines;
  before(async () => {
    up = await upstream({ name: 'audit-up' });
    dir = folder('audit');
    config = baseConfig(up, { audit_log: 'audit.log' });
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'auditor'));
    const gw = await gateway(config, { dir });
    await waitHealthy(gw);
    const send = (options) => request(`${gw.url}/v1/chat/completions`, options);
    assert.equal((await send({ body: chat(secretPrompt), headers: bearer(key) })).status, 200);
    assert.equal((await send({ body: chat(secretPrompt, { stream: true }), headers: bearer(key) })).status, 200);
    assert.equal((await send({ body: chat(secretPrompt) })).status, 401);
    assert.equal((await request(`${gw.url}/v1/models`, { headers: bearer(key) })).status, 200);
    assert.equal((await send({ body: chat('again'), headers: bearer(key) })).status, 200);
    assert.equal((await request(`${gw.url}/v1/nothing-here`, { body: {}, headers: bearer(key) })).status, 404);
    // A dashboard's page and polls watch the gateway: no record each (the six above are all there is).
    for (const route of ['/dashboard', '/api/metrics/history', '/api/alerts', '/metrics']) {
      assert.equal((await request(`${gw.url}${route}`, { headers: bearer(key) })).status, 200, route);
    }
    const stopped = await gw.stop('SIGTERM');
    assert.equal(stopped.code, 0, gw.stderr());
    lines = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n');
  });

  test('audit verify: the chain is intact', async () => {
    const r = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', path.join(dir, 'gateway.json')]);
    assert.equal(r.code, 0, r.stdout + r.stderr);
    assert.match(r.stdout, /audit\.log: 6 records, chain intact\n$/);
  });

  test('each request has a record: key id, client, route, model, upstream, status, tokens; no prompt text', () => {
    assert.equal(lines.length, 6, lines.join('\n'));
    const records = lines.map((l) => JSON.parse(l));
    assert.deepEqual(records.map((r) => r.seq), [1, 2, 3, 4, 5, 6]);
    assert.deepEqual(records.map((r) => [r.route, r.status]), [
      ['POST /v1/chat/completions', 200], ['POST /v1/chat/completions', 200], ['POST /v1/chat/completions', 401],
      ['GET /v1/models', 200], ['POST /v1/chat/completions', 200], ['POST /v1/nothing-here', 404]]);
    const [plain, streamed, refused] = records;
    for (const r of [plain, streamed]) {
      assert.equal(r.key_id, keyId(key));
      assert.equal(r.client, '127.0.0.1');
      assert.equal(r.model, 'test-model');
      assert.equal(r.upstream, 'audit-up');
      assert.equal(r.tokens_in, 4);
      assert.equal(r.tokens_out, 3);
      assert.ok(typeof r.latency_ms === 'number' && r.latency_ms >= 0, JSON.stringify(r));
      assert.match(r.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$/);
      assert.match(r.hash, /^[0-9a-f]{64}$/);
    }
    assert.equal(refused.key_id, '');
    assert.equal(refused.upstream, '');
    assert.equal(records[1].prev, records[0].hash);
    for (const r of records) assert.equal('prompt' in r, false, JSON.stringify(r));
    assert.equal(lines.join('\n').includes('confidential'), false, 'prompt text reached the audit log');
  });

  /** Writes `edited` lines to a copy of the log; runs audit verify on it. */
  async function verifyCopy(name, edited) {
    const copy = path.join(dir, name);
    fs.writeFileSync(copy, edited.join('\n') + '\n');
    return runClawbotCommand(['gateway', 'audit', 'verify', '--config', path.join(dir, 'gateway.json'), '--log', copy]);
  }

  test('an edited field is found and named by line', async () => {
    const edited = [...lines];
    assert.match(edited[1], /"tokens_out":3,/);
    edited[1] = edited[1].replace('"tokens_out":3,', '"tokens_out":1,');
    const r = await verifyCopy('edited.log', edited);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^line 2 \(seq 2\): edited: its content does not match its hash$/m);
    assert.match(r.stdout, /1 problem in 6 records/);
  });

  test('an inserted line is found and named by line', async () => {
    const inserted = [...lines];
    inserted.splice(3, 0, lines[0]);  // a copy of the first record as line 4
    const r = await verifyCopy('inserted.log', inserted);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^line 4 \(seq 1\): inserted: a copy of line 1$/m);
    assert.match(r.stdout, /1 problem in 7 records/);

    const forged = [...lines];
    const fake = JSON.parse(lines[4]);
    fake.client = '10.9.9.9';
    forged.splice(5, 0, JSON.stringify(fake));  // line 6, between seq 5 and seq 6
    const r2 = await verifyCopy('forged.log', forged);
    assert.equal(r2.code, 1, r2.stdout + r2.stderr);
    assert.match(r2.stdout, /^line 6 \(seq 5\): inserted: /m);
  });

  test('a deleted line is found and named by line', async () => {
    const deleted = [...lines];
    deleted.splice(2, 1);  // seq 3
    const r = await verifyCopy('deleted.log', deleted);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^record 3 deleted between line 2 and line 3$/m);
    assert.match(r.stdout, /1 problem in 5 records/);
  });

  test('all three at once: each is named', async () => {
    const all = [...lines];
    all[0] = all[0].replace('"status":200', '"status":500');  // line 1
    all.splice(3, 1);  // seq 4 (GET /v1/models)
    all.splice(1, 0, lines[4]);  // a copy of seq 5 as line 2
    const r = await verifyCopy('all.log', all);
    assert.equal(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stdout, /^line 1 \(seq 1\): edited: /m);
    assert.match(r.stdout, /^line 2 \(seq 5\): inserted: a copy of line 5$/m);
    assert.match(r.stdout, /^record 4 deleted between line 4 and line 5$/m);
    assert.match(r.stdout, /3 problems in 6 records/);
  });

  test('with "audit_prompts": true the prompt is recorded', async () => {
    const dir2 = folder('audit-prompts');
    const config2 = { ...config, audit_prompts: true };
    const { key: key2 } = await createKey(writeGatewayConfig(dir2, config2), 'prompts');
    const gw = await gateway(config2, { dir: dir2 });
    await waitHealthy(gw);
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(secretPrompt), headers: bearer(key2) });
    assert.equal(r.status, 200, r.text);
    assert.equal((await gw.stop('SIGTERM')).code, 0);
    const records = fs.readFileSync(path.join(dir2, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(records.length, 1);
    assert.deepEqual(JSON.parse(records[0].prompt), [{ role: 'user', content: secretPrompt }]);
    const verified = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', path.join(dir2, 'gateway.json')]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  });
});

// Issue 16 item 8: the gateway once dropped its own SQLite lock on the keys database (it opened and closed the
// file to set its mode), so the next SQLite client that closed the file (here `audit verify` itself) deleted
// the gateway's -wal and -shm: later anchor updates were lost, and a log cut while the gateway ran verified
// as "3 records, chain intact".
describe('audit log cut while the gateway runs', () => {
  let gw;
  let dir;
  let key;
  before(async () => {
    const up = await upstream({ name: 'cut-up' });
    dir = folder('audit-cut');
    const config = baseConfig(up, { audit_log: 'audit.log' });
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'cutter'));
    gw = await gateway(config, { dir });
    await waitHealthy(gw);
  });

  const logFile = () => path.join(dir, 'audit.log');
  const verify = (log = logFile()) =>
    runClawbotCommand(['gateway', 'audit', 'verify', '--config', path.join(dir, 'gateway.json'), '--log', log]);
  /** The seq the database's anchor is at, as `audit verify` sees it (a copy of the log without its records). */
  async function anchorSeq() {
    const empty = path.join(dir, 'empty.log');
    fs.writeFileSync(empty, '');
    const r = await verify(empty);
    const m = /anchor is at seq (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : 0;
  }
  async function send(n) {
    for (let i = 0; i < n; ++i) {
      const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
      assert.equal(r.status, 200, r.text);
    }
  }

  test('verify; 5 more requests; another SQLite client; cut to 3 lines: verify names the missing records',
    async () => {
      await send(3);
      assert.ok(await waitUntil(async () => (await anchorSeq()) >= 3, 5000), 'the anchor never reached seq 3');
      const first = await verify();
      assert.equal(first.code, 0, first.stdout + first.stderr);
      assert.match(first.stdout, /3 records, chain intact/);

      await send(5);
      // Each `audit verify` above and here opened and closed the database: with the lock lost, the gateway's
      // later anchor updates went to a deleted -wal and this never saw seq 8.
      const anchored = await waitUntil(async () => (await anchorSeq()) >= 8, 5000);
      assert.ok(anchored, `the anchor stayed at seq ${await anchorSeq()} after 8 requests`);
      const listed = await runClawbotCommand(['gateway', 'keys', 'list', '--config', path.join(dir, 'gateway.json')]);
      assert.equal(listed.code, 0, listed.stderr);

      const lines = fs.readFileSync(logFile(), 'utf8').trimEnd().split('\n');
      assert.equal(lines.length, 8);
      fs.writeFileSync(logFile(), lines.slice(0, 3).join('\n') + '\n');
      const cut = await verify();
      assert.equal(cut.code, 1, cut.stdout + cut.stderr);
      assert.match(cut.stdout, /^records 4\.\.8 missing at the end \(after line 3; the database's anchor is at seq 8\)$/m);
      assert.doesNotMatch(cut.stdout, /chain intact/);
    });
});

/** Runs SQL on a database file with the sqlite3 command-line tool (a second SQLite client, as an attacker's). */
function sqlite3(db, sql) {
  return new Promise((resolve, reject) => {
    const proc = spawn('sqlite3', [db, sql], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
    proc.once('error', reject);
    proc.once('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`sqlite3: ${err}`))));
  });
}
const hasSqlite3 = (() => {
  try {
    return fs.readdirSync('/usr/bin').includes('sqlite3') || fs.readdirSync('/usr/local/bin').includes('sqlite3');
  } catch {
    return false;
  }
})();

// Issue 16 item 9: the keys database could be edited (un-revoke, forged row) and the gateway took it within a
// second; the audit key was in the same file.
describe('the keys database edited behind the gateway\'s back', () => {
  let gw;
  let dir;
  let revokedKey;
  let goodKey;
  before(async () => {
    const up = await upstream({ name: 'mac-up' });
    dir = folder('keys-mac');
    const config = baseConfig(up, { audit_log: 'audit.log' });
    const file = writeGatewayConfig(dir, config);
    ({ key: goodKey } = await createKey(file, 'good'));
    const revoked = await createKey(file, 'gone');
    revokedKey = revoked.key;
    const r = await runClawbotCommand(['gateway', 'keys', 'revoke', revoked.id, '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    gw = await gateway(config, { dir });
    await waitHealthy(gw);
  });

  test('the secret is a 0600 file beside the database, and not in it', () => {
    const secret = path.join(dir, 'gateway.secret');
    assert.equal(fs.statSync(secret).mode & 0o777, 0o600);
    const hex = fs.readFileSync(secret, 'utf8').trim();
    assert.match(hex, /^[0-9a-f]{64}$/);
    for (const file of ['gateway.db', 'gateway.db-wal']) {
      const bytes = fs.existsSync(path.join(dir, file)) ? fs.readFileSync(path.join(dir, file), 'latin1') : '';
      assert.equal(bytes.includes(hex), false, `${file} holds the secret`);
    }
  });

  test('an un-revoked key and a forged row are refused; keys list marks them; the metric counts them',
    { skip: !hasSqlite3 && 'no sqlite3 command-line tool' }, async () => {
      const db = path.join(dir, 'gateway.db');
      const id = keyId(revokedKey);
      await sqlite3(db, `UPDATE api_keys SET revoked_at = NULL WHERE id = '${id}';`);
      // A row for a key the forger made up: the good key's salt and hash under a new id, so that the good key's
      // secret fits it (a forger could as well compute SHA-256(salt || secret) of a secret of their own).
      const forgedId = 'feedfacecafe';
      await sqlite3(db, `INSERT INTO api_keys (id, name, salt, hash, created_at) SELECT '${forgedId}', 'mallory', ` +
        `salt, hash, created_at FROM api_keys WHERE id = '${keyId(goodKey)}';`);
      const forgedKey = `cbk_${forgedId}_${goodKey.slice(17)}`;
      // Let the poller see the change (it reloads within about half a second), then neither gets in.
      const sawIt = await waitUntil(async () => {
        const m = await request(`${gw.url}/metrics`, { headers: bearer(goodKey) });
        return /clawbot_gateway_key_rows_rejected 2\b/.test(m.text);
      }, 3000);
      assert.ok(sawIt, 'the metric never counted the two rows');
      for (const key of [revokedKey, forgedKey]) {
        const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) });
        assertError(r, 401, { code: 'invalid_api_key' });
      }
      const ok = await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(goodKey) });
      assert.equal(ok.status, 200, ok.text);
      assert.equal((gw.stderr().match(/refusing key feedfacecafe/g) ?? []).length, 1, gw.stderr());
      const listed = await runClawbotCommand(['gateway', 'keys', 'list', '--config', path.join(dir, 'gateway.json')]);
      assert.equal(listed.code, 0, listed.stderr);
      assert.match(listed.stdout, new RegExp(`^${id} .*TAMPERED`, 'm'));
      assert.match(listed.stdout, new RegExp(`^${forgedId} .*TAMPERED`, 'm'));
      assert.match(listed.stderr, /2 row\(s\) were forged or changed outside clawbot/);
    });
});

describe('the audit head witnessed outside the machine', () => {
  test('the gateway witnesses at stop; audit witness on demand; verify --witness fails a cut log', async () => {
    const up = await upstream({ name: 'witness-up' });
    const dir = folder('witness');
    const standby = folder('witness-standby');
    const config = baseConfig(up, { audit_log: 'audit.log', audit_witness: standby });
    const file = writeGatewayConfig(dir, config);
    const { key } = await createKey(file, 'w');
    let gw = await gateway(config, { dir });
    await waitHealthy(gw);
    for (let i = 0; i < 4; ++i)
      assert.equal((await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) })).status, 200);
    assert.equal((await gw.stop('SIGTERM')).code, 0, gw.stderr());
    const witnessFile = path.join(standby, 'audit-witness.jsonl');
    const heads = fs.readFileSync(witnessFile, 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(heads.at(-1).seq, 4, JSON.stringify(heads));
    const log = path.join(dir, 'audit.log');
    const lines = fs.readFileSync(log, 'utf8').trimEnd().split('\n');
    assert.equal(heads.at(-1).hash, JSON.parse(lines[3]).hash);

    const verified = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', file]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
    assert.match(verified.stdout, /4 records, chain intact and matches \d+ witnessed heads?\n$/);

    gw = await gateway(config, { dir });
    await waitHealthy(gw);
    assert.equal((await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) })).status, 200);
    assert.equal((await gw.stop('SIGTERM')).code, 0, gw.stderr());
    const onDemand = await runClawbotCommand(['gateway', 'audit', 'witness', '--config', file]);
    assert.equal(onDemand.code, 0, onDemand.stdout + onDemand.stderr);
    assert.match(onDemand.stdout, /^witnessed seq 5 /);

    // A cut log: named against the witness (which root on the gateway's machine cannot rewrite) as well as
    // against the anchor (which it can).
    const cut = path.join(dir, 'cut.log');
    fs.writeFileSync(cut, lines.slice(0, 2).join('\n') + '\n');
    const alone = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', file, '--log', cut,
      '--witness', folder('witness-empty')]);
    assert.equal(alone.code, 2, 'an empty witness directory cannot be read: exit 2');
    const caught = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', file, '--log', cut]);
    assert.equal(caught.code, 1, caught.stdout + caught.stderr);
    assert.match(caught.stdout, /records 3\.\.5 missing: the log ends at seq 2 but seq 5 is the head witnessed at /);
  });
});
