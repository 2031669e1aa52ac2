// How `clawbot gateway` forwards a request, through a real gateway in front of small Node upstreams that this
// file controls (no model, no engine):
// - a request that kills its upstream after being read is never sent to another one (502 to the client),
//   and does not open that upstream's circuit;
// - an upstream's 503 means busy: the request waits for room (that upstream after its Retry-After, or
//   another), and only at the queue's deadline gets 503 + Retry-After;
// - a stream that carried only its role chunk when its node gave up (an "unavailable" error event, or the
//   connection dropped) is retried on another node, the client seeing one answer;
// - headers: hop-by-hop ones, those named in Connection, and Expect are not forwarded; X-Forwarded-For is the
//   real peer; an absolute-form target is never forwarded (with the upstream's api_key);
// - HEAD is answered at once without a body, and never trips the breaker.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/gateway_forward.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

import { chat, request, sseData, startGateway, tempDir, waitUntil } from './gateway_helpers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const root = tempDir('clawbot-gw-forward-');
const gateways = [];
const servers = [];

after(async () => {
  await Promise.all(gateways.map((gw) => gw.stop('SIGKILL')));
  await Promise.all(servers.map((s) => s.kill()));
  fs.rmSync(root, { recursive: true, force: true });
});

/**
 * An OpenAI-like upstream. `onChat(req, res, body, state)` answers anything but /health and /v1/models
 * (default: a JSON chat answer, or a stream when asked). Every such request is recorded in `state.seen`
 * ({ method, url, headers, body }). `host`: the loopback address to listen on.
 */
async function upstream(name, onChat, host = '127.0.0.1') {
  const state = { name, seen: [], active: 0 };
  const sockets = new Set();
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    let text = '';
    req.setEncoding('utf8');
    for await (const c of req) text += c;
    const json = (code, value, headers = {}) => {
      res.writeHead(code, { 'content-type': 'application/json', ...headers });
      res.end(JSON.stringify(value));
    };
    if (url.pathname === '/health') return json(200, { status: 'ok' });
    if (url.pathname === '/v1/models')
      return json(200, { object: 'list', data: [{ id: 'test-model', object: 'model', owned_by: name }] });
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    state.seen.push({ method: req.method, url: req.url, headers: req.headers, body });
    state.active += 1;
    res.once('close', () => { state.active -= 1; });
    if (onChat) return onChat(req, res, body, state, json);
    return answer(res, body, name);
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, host, resolve));
  const up = {
    name,
    state,
    url: `http://${host}:${server.address().port}`,
    kill() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(up);
  return up;
}

/** A normal answer from `name`: JSON, or a stream of a role chunk, two pieces, a finish and [DONE]. */
function answer(res, body, name) {
  if (!body?.stream) {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ id: `chatcmpl-${name}`, object: 'chat.completion', model: 'test-model',
      choices: [{ index: 0, message: { role: 'assistant', content: `hi from ${name}` }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } }));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  const chunk = (delta, finish = null) => res.write(`data: ${JSON.stringify({ id: `chatcmpl-${name}`,
    object: 'chat.completion.chunk', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`);
  chunk({ role: 'assistant', content: '' });
  chunk({ content: 'hi from ' });
  chunk({ content: name });
  chunk({}, 'stop');
  res.end('data: [DONE]\n\n');
}

async function gateway(name, ups, extra = {}) {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  const gw = await startGateway({
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: ups.map((u) => ({ url: u.url, name: u.name, ...(u.extra ?? {}) })),
    auth: 'none',
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    ...extra,
  }, { dir });
  gateways.push(gw);
  const ok = await waitUntil(async () => {
    const h = (await request(`${gw.url}/health`)).json;
    return h?.upstreams?.filter((u) => u.serving).length >= ups.filter((u) => !u.extra?.standby).length;
  }, 5000);
  assert.ok(ok, 'the gateway never saw its upstreams up');
  return gw;
}

async function health(gw) {
  return (await request(`${gw.url}/health`)).json;
}

function assertOpenAIError(r, status) {
  assert.equal(r.status, status, `${r.status}: ${r.text}`);
  assert.equal(typeof r.json?.error?.message, 'string', r.text);
  assert.ok('type' in r.json.error && 'code' in r.json.error && 'param' in r.json.error, r.text);
}

/** Raw bytes to `url`'s host and port; resolves with all the bytes the server sent before closing. */
function rawExchange(url, text, { timeoutMs = 5000 } = {}) {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(port), hostname);
    let got = '';
    const timer = setTimeout(() => { socket.destroy(); resolve(got); }, timeoutMs);
    socket.setEncoding('latin1');
    socket.on('data', (c) => { got += c; });
    socket.on('error', (e) => { clearTimeout(timer); reject(e); });
    socket.on('close', () => { clearTimeout(timer); resolve(got); });
    socket.write(text);
  });
}

// ------------------------------------------------------------------------------------ no retry after sending

test('a request that kills its upstream after being read is never sent to another one', async () => {
  // Both nodes die (here: drop the connection) on a request that says "poison", after reading all of it.
  const poisoned = (req, res, body, state) => {
    if (JSON.stringify(body).includes('poison')) return req.socket.destroy();
    return answer(res, body, state.name);
  };
  const a = await upstream('A', poisoned);
  const b = await upstream('B', poisoned);
  const gw = await gateway('poison', [a, b], { retries: 2, circuit_breaker: { failures: 2, cooldown_ms: 60000 } });
  // Warm the pooled connections to both, so that the poison also meets a kept-alive connection.
  for (let i = 0; i < 4; ++i) assert.equal((await request(`${gw.url}/v1/chat/completions`, { body: chat('warm') })).status, 200);
  const attempts = 6;
  for (let i = 0; i < attempts; ++i) {
    const stream = i % 2 === 1;
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(`poison ${i}`, { stream }) });
    assertOpenAIError(r, 502);
    assert.match(r.json.error.message, /not sent to another upstream/, r.text);
    const seenBy = [a, b].filter((u) => u.state.seen.some((s) => JSON.stringify(s.body).includes(`poison ${i}`)));
    assert.equal(seenBy.length, 1, `request ${i} reached ${seenBy.map((u) => u.name)}`);
  }
  // More of them than the breaker's limit, on both: neither circuit opened, both still answer.
  const h = await health(gw);
  for (const u of h.upstreams) assert.equal(u.state, 'up', JSON.stringify(h));
  const served = new Set();
  for (let i = 0; i < 6; ++i) {
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(`fine ${i}`) });
    assert.equal(r.status, 200, r.text);
    served.add(r.headers['x-clawbot-upstream']);
  }
  // (Which of the two takes sequential requests is the balancer's choice: under load it may be one of them only.
  // That neither circuit opened is what /health said above.)
  for (const name of served) assert.ok(['A', 'B'].includes(name), name);
});

test('an upstream that cannot be reached is still skipped for another', async () => {
  // On an address of its own: once A is gone, a server of a test running beside this one (they listen on
  // 127.0.0.1) may be given A's port, and the request would wait on it instead of being refused.
  const a = await upstream('A', undefined, '127.0.0.3');
  const b = await upstream('B');
  const gw = await gateway('unreachable', [a, { ...b, extra: { standby: true } }],
    { health_checks: { interval_ms: 60000, timeout_ms: 500 } });
  await a.kill();  // the health checks are too slow to notice: the request finds it refused
  const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('go elsewhere') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-clawbot-upstream'], 'B');
});

// ------------------------------------------------------------------------------------ 503: busy, not failed

/** An upstream with `slots` requests at a time (each `ms` long); beyond them 503, with `retryAfter` if set. */
function limited({ slots, ms, retryAfter }) {
  return async (req, res, body, state, json) => {
    if (state.active > slots) {
      state.refused = (state.refused ?? 0) + 1;
      return json(503, { error: { message: 'busy', type: 'server_error', code: 'queue_full' } },
        retryAfter === undefined ? {} : { 'retry-after': String(retryAfter) });
    }
    await sleep(ms);
    return answer(res, body, state.name);
  };
}

test('a busy upstream (503) makes requests wait for room rather than fail', async () => {
  const only = await upstream('only', limited({ slots: 2, ms: 150 }));
  const gw = await gateway('busy-one', [only], { queue: { max_waiting: 64, timeout_ms: 20000 } });
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) =>
    request(`${gw.url}/v1/chat/completions`, { body: chat(`busy ${i}`), timeoutMs: 20000 })));
  for (const r of results) assert.equal(r.status, 200, r.text);
  assert.ok(only.state.refused > 0, 'the upstream never said it was busy: the test tests nothing');
  assert.equal((await health(gw)).upstreams[0].state, 'up');
});

test('requests refused by a busy node go to the other as soon as it has room', async () => {
  const a = await upstream('A', limited({ slots: 1, ms: 400 }));
  const b = await upstream('B', limited({ slots: 1, ms: 400 }));
  // A queue deadline far beyond the test's own timeout: a request left waiting for it fails the test.
  const gw = await gateway('busy-two', [a, b], { queue: { max_waiting: 64, timeout_ms: 60000 } });
  const results = await Promise.all(Array.from({ length: 6 }, (_, i) =>
    request(`${gw.url}/v1/chat/completions`, { body: chat(`two ${i}`), timeoutMs: 15000 })));
  for (const r of results) assert.equal(r.status, 200, r.text);
  const by = (name) => results.filter((r) => r.headers['x-clawbot-upstream'] === name).length;
  assert.ok(by('A') > 0 && by('B') > 0, `A ${by('A')}, B ${by('B')}`);
});

test('an upstream\'s Retry-After is kept, and the queue deadline answers 503 + Retry-After', async () => {
  const full = await upstream('full', (req, res, body, state, json) => {
    state.at = [...(state.at ?? []), Date.now()];
    json(503, { error: { message: 'busy', type: 'server_error', code: 'queue_full' } }, { 'retry-after': '1' });
  });
  const gw = await gateway('busy-deadline', [full], { queue: { max_waiting: 8, timeout_ms: 1500 } });
  const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('never room'), timeoutMs: 10000 });
  assertOpenAIError(r, 503);
  assert.equal(r.json.error.code, 'upstream_unavailable', r.text);
  assert.ok(Number(r.headers['retry-after']) >= 1, JSON.stringify(r.headers));
  // Sent again only after its Retry-After: twice in 1.5 s, not a loop.
  assert.ok(full.state.at.length >= 1 && full.state.at.length <= 2, `sent ${full.state.at.length} times`);
  if (full.state.at.length === 2) assert.ok(full.state.at[1] - full.state.at[0] >= 950, `${full.state.at}`);
});

// ------------------------------------------------------------------------------------ streams: role chunk only

test('a stream its node gave up on after the role chunk only is retried on another node', async () => {
  let mode = 'error-event';
  const a = await upstream('A', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ id: 'chatcmpl-A', object: 'chat.completion.chunk',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] })}\n\n`);
    if (mode === 'error-event') {
      res.write(`data: ${JSON.stringify({ error: { message: 'the server is shutting down; retry on another node',
        type: 'server_error', param: null, code: 'unavailable' } })}\n\n`);
      res.end('data: [DONE]\n\n');
    } else {
      setTimeout(() => res.socket.destroy(), 50);
    }
  });
  const b = await upstream('B');
  const gw = await gateway('role-only', [a, { ...b, extra: { standby: true } }]);
  for (mode of ['error-event', 'dropped']) {
    const before = b.state.seen.length;
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(`story ${mode}`, { stream: true }) });
    assert.equal(r.status, 200, r.text);
    const events = sseData(r.text);
    const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
    assert.equal(chunks.filter((c) => c.error).length, 0, `${mode}: ${r.text}`);
    assert.equal(chunks.filter((c) => c.choices?.[0]?.delta?.role).length, 1, `${mode}: ${r.text}`);
    assert.equal(chunks.map((c) => c.choices?.[0]?.delta?.content ?? '').join(''), 'hi from B', `${mode}: ${r.text}`);
    assert.ok(chunks.every((c) => c.id === 'chatcmpl-B'), `${mode}: a chunk of A reached the client: ${r.text}`);
    assert.equal(events.at(-1), '[DONE]');
    assert.equal(r.headers['x-clawbot-upstream'], 'B');
    assert.equal(b.state.seen.length, before + 1);
  }
  // Once content has gone out, a failure is the client's to see (an error event), never a second answer.
  const c = await upstream('C', (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n');
    res.write('data: {"choices":[{"index":0,"delta":{"content":"Once"}}]}\n\n');
    setTimeout(() => res.socket.destroy(), 50);
  });
  const gw2 = await gateway('role-then-content', [c, { ...b, extra: { standby: true } }]);
  const before = b.state.seen.length;
  const r = await request(`${gw2.url}/v1/chat/completions`, { body: chat('cut', { stream: true }) });
  const events = sseData(r.text);
  assert.equal(JSON.parse(events.at(-1)).error?.code, 'upstream_failed_mid_stream', r.text);
  assert.equal(JSON.parse(events[0]).choices[0].delta.role, 'assistant');
  assert.equal(b.state.seen.length, before);
});

// ------------------------------------------------------------------------------------ headers and targets

test('hop-by-hop headers, those named in Connection, and Expect stay at the gateway; X-Forwarded-For is the peer', async () => {
  const up = await upstream('H');
  const gw = await gateway('headers', [up]);
  const { port } = new URL(gw.url);
  const body = JSON.stringify(chat('headers'));
  // Raw, so that nothing in between adds or drops a header; Expect: 100-continue with the body sent at once.
  const got = await rawExchange(gw.url,
    `POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(body)}\r\nExpect: 100-continue\r\n` +
    'Connection: close, X-Secret-Hop\r\nX-Secret-Hop: do-not-forward\r\nKeep-Alive: timeout=5\r\n' +
    'Proxy-Connection: keep-alive\r\nX-Forwarded-For: 203.0.113.66\r\nX-Forwarded-Proto: https\r\n' +
    `Forwarded: for=203.0.113.66\r\nX-Kept: yes\r\n\r\n${body}`);
  // One final answer (a 100 Continue from the gateway itself may come before it).
  const finals = got.match(/^HTTP\/1\.1 [2-5]\d\d /gm) ?? [];
  assert.deepEqual(finals, ['HTTP/1.1 200 '], got);
  assert.equal(up.state.seen.length, 1);
  const headers = up.state.seen[0].headers;
  for (const gone of ['expect', 'x-secret-hop', 'keep-alive', 'proxy-connection', 'forwarded'])
    assert.equal(headers[gone], undefined, `${gone} was forwarded: ${JSON.stringify(headers)}`);
  assert.equal(headers['x-forwarded-for'], '127.0.0.1', JSON.stringify(headers));
  assert.equal(headers['x-forwarded-proto'], 'http', JSON.stringify(headers));
  assert.equal(headers['x-kept'], 'yes');
});

test('an absolute-form target is never forwarded, let alone with the upstream\'s api_key', async () => {
  const up = await upstream('K');
  const gw = await gateway('absolute', [{ ...up, extra: { api_key: 'upstream-secret' } }]);
  const body = JSON.stringify(chat('where to?'));
  for (const target of [`${up.url}/v1/chat/completions`, 'http://evil.example/v1/chat/completions']) {
    const got = await rawExchange(gw.url,
      `POST ${target} HTTP/1.1\r\nHost: evil.example\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
    assert.match(got, /^HTTP\/1\.1 400 /, got);
    const json = JSON.parse(got.slice(got.indexOf('\r\n\r\n') + 4));
    assert.equal(typeof json.error?.message, 'string', got);
  }
  assert.equal(up.state.seen.length, 0, JSON.stringify(up.state.seen));
  // An origin-form request goes, with the key.
  const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('fine') });
  assert.equal(r.status, 200, r.text);
  assert.equal(up.state.seen[0].headers.authorization, 'Bearer upstream-secret');
});

// ------------------------------------------------------------------------------------ HEAD

test('HEAD is answered at once with the upstream\'s status and no body, and never trips the breaker', async () => {
  const up = await upstream('V', (req, res, body, state) => {
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': '1234', 'x-request-id': 'head-1' });
      return res.end();
    }
    return answer(res, body, state.name);
  });
  // A read timeout well under the test's: a HEAD that waited for a body would end in 502, not 200.
  const gw = await gateway('head', [up], { read_timeout_ms: 3000,
    circuit_breaker: { failures: 3, cooldown_ms: 60000 } });
  for (let i = 0; i < 3; ++i) {
    const r = await request(`${gw.url}/v1/chat/completions`, { method: 'HEAD', timeoutMs: 10000 });
    assert.equal(r.status, 200, JSON.stringify(r));
    assert.equal(r.text, '');
    assert.equal(r.headers['x-request-id'], 'head-1');
  }
  assert.equal(up.state.seen.filter((s) => s.method === 'HEAD').length, 3);
  // The gateway's own answers to HEAD (a GET-only route here) carry no body either.
  for (const route of ['/v1/models', '/health']) {
    const own = await request(`${gw.url}${route}`, { method: 'HEAD', timeoutMs: 10000 });
    assert.equal(own.text, '', `${route}: ${JSON.stringify(own)}`);
  }
  const h = await health(gw);
  assert.equal(h.upstreams[0].state, 'up', JSON.stringify(h));
  const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('after HEAD') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.choices[0].message.content, 'hi from V');
});
