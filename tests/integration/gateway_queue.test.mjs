// The proxy's behaviour under pressure, through a real `clawbot gateway` in front of small Node upstreams
// that this file controls: the bounded wait queue (wait, queue full, deadline), every upstream down and one
// coming back while a request waits, retries before the first byte (and a 400 passed through), backpressure
// from a client that stops reading, client disconnects cancelling the upstream request, the merged
// /v1/models, and /metrics (checked by promtool when it is installed); also a client leaving while queued,
// streams failing before and after their first event, and affinity on and off. No model, no engine.
// Run: CLAWBOT_BIN=build-frontend/clawbot node --test tests/integration/gateway_queue.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';

import { chat, request, sseData, startGateway, tempDir, waitUntil } from './gateway_helpers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const root = tempDir('clawbot-gw-queue-');
const gateways = [];
const servers = [];

after(async () => {
  await Promise.all(gateways.map((gw) => gw.stop('SIGKILL')));
  await Promise.all(servers.map((s) => s.kill()));
  fs.rmSync(root, { recursive: true, force: true });
});

/** A port nothing listens on (now). */
async function freePort() {
  const s = net.createServer();
  await new Promise((resolve) => s.listen(0, '127.0.0.1', resolve));
  const { port } = s.address();
  await new Promise((resolve) => s.close(resolve));
  return port;
}

/**
 * An OpenAI-like upstream whose chat answers `onChat(req, res, body, state)` writes (default: a JSON answer
 * after `state.delayMs`). /health and /v1/models (`models`) always answer at once. `state` counts chats, the
 * ones open now (`active`, `maxActive`) and when each chat's connection closed (`closedAt`).
 */
async function upstream({ name, models = ['test-model'], port = 0, delayMs = 0, onChat } = {}) {
  const state = { name, models, delayMs, chats: 0, active: 0, maxActive: 0, closedAt: [], status: 0 };
  const sockets = new Set();
  const answer = (res, code, value) => {
    res.writeHead(code, { 'content-type': 'application/json' });
    res.end(JSON.stringify(value));
  };
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    let text = '';
    req.setEncoding('utf8');
    for await (const c of req) text += c;
    if (url.pathname === '/health') return answer(res, 200, { status: 'ok' });
    if (url.pathname === '/v1/models')
      return answer(res, 200, { object: 'list', data: state.models.map((id) => ({ id, object: 'model', owned_by: name })) });
    state.chats += 1;
    state.active += 1;
    state.maxActive = Math.max(state.maxActive, state.active);
    res.once('close', () => {
      state.active -= 1;
      state.closedAt.push({ at: Date.now(), finished: res.writableFinished });
    });
    const body = text ? JSON.parse(text) : null;
    if (onChat) return onChat(req, res, body, state);
    if (state.delayMs > 0) await sleep(state.delayMs);
    if (res.destroyed) return undefined;
    if (state.status) return answer(res, state.status, { error: { message: `${name} says ${state.status}`, type: 'server_error' } });
    return answer(res, 200, { id: `chatcmpl-${name}-${state.chats}`, object: 'chat.completion', model: body?.model,
      choices: [{ index: 0, message: { role: 'assistant', content: `hi from ${name}` }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 3, completion_tokens: 3, total_tokens: 6 } });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, '127.0.0.1', resolve);
  });
  const up = {
    name,
    state,
    port: server.address().port,
    url: `http://127.0.0.1:${server.address().port}`,
    kill() {
      for (const s of sockets) s.destroy();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
  servers.push(up);
  return up;
}

/** A gateway on 127.0.0.1 without keys, with fast health checks, in front of `ups` ({url, name, ...}). */
async function gateway(name, ups, extra = {}) {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: ups.map(({ url, name: n, ...rest }) => ({ url, name: n, ...rest })),
    auth: 'none',
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    ...extra,
  };
  const gw = await startGateway(config, { dir });
  gateways.push(gw);
  return gw;
}

/** A non-streaming chat through the gateway, timed: { status, headers, json, text, ms }. */
async function timedChat(gw, content = 'hello', extra = {}) {
  const t = Date.now();
  const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(content, extra), timeoutMs: 20000 });
  return { ...r, ms: Date.now() - t };
}

async function gatewayHealth(gw) {
  return (await request(`${gw.url}/health`)).json;
}

/** Waits until the gateway's /health says every upstream is serving (the first health checks ran). */
async function waitServing(gw, count) {
  const ok = await waitUntil(async () => {
    const h = await gatewayHealth(gw);
    return h.upstreams.filter((u) => u.serving).length >= count;
  }, 5000);
  assert.ok(ok, `the gateway never reported ${count} serving upstreams: ${JSON.stringify(await gatewayHealth(gw))}`);
}

function assertUnavailable(r, code) {
  const where = `status ${r.status}, headers ${JSON.stringify(r.headers)}, body ${r.text.slice(0, 300)}`;
  assert.equal(r.status, 503, where);
  assert.ok(Number(r.headers['retry-after']) >= 1, `no Retry-After: ${where}`);
  assert.equal(r.json?.error?.code, code, where);
}

// ------------------------------------------------------------------------------------------- wait queue

test('requests beyond max_in_flight wait for the upstream rather than fail', async () => {
  const up = await upstream({ name: 'slow', delayMs: 800 });
  const gw = await gateway('queue-wait', [{ url: up.url, name: 'slow', max_in_flight: 1 }]);
  await waitServing(gw, 1);
  // Kept-alive connections: a connection whose request waited serves its next request as well.
  const agent = new http.Agent({ keepAlive: true });
  const sockets = new Set();
  const keptChat = async (content) => {
    const t = Date.now();
    const r = await request(`${gw.url}/v1/chat/completions`, { body: chat(content), agent,
      timeoutMs: 20000 });
    return { ...r, ms: Date.now() - t };
  };
  agent.on('free', (socket) => sockets.add(socket));
  const results = await Promise.all([1, 2, 3].map((i) => keptChat(`request ${i}`)));
  for (const r of results) {
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-clawbot-upstream'], 'slow');
  }
  up.state.delayMs = 0;
  const again = await Promise.all([4, 5, 6].map((i) => keptChat(`request ${i}`)));
  for (const r of again) assert.equal(r.status, 200, r.text);
  assert.equal(sockets.size, 3, 'the kept-alive connections were not reused');
  agent.destroy();
  assert.equal(up.state.maxActive, 1, 'max_in_flight 1 let more than one request reach the upstream at once');
  // One after the other, each answered by the upstream: none failed or was answered without it.
  assert.equal(up.state.chats, 6);
});

test('a full queue answers 503 + Retry-After at once (queue_full)', async () => {
  const up = await upstream({ name: 'slow', delayMs: 1200 });
  const gw = await gateway('queue-full', [{ url: up.url, name: 'slow', max_in_flight: 1 }],
    { queue: { max_waiting: 1, timeout_ms: 5000 } });
  await waitServing(gw, 1);
  const first = timedChat(gw, 'one');
  assert.ok(await waitUntil(() => up.state.active === 1, 3000), 'the first request never reached the upstream');
  const second = timedChat(gw, 'two');
  assert.ok(await waitUntil(async () => (await gatewayHealth(gw)).queue === 1, 3000),
    'the second request is not shown waiting in /health');
  const third = await timedChat(gw, 'three');
  assertUnavailable(third, 'queue_full');
  // At once: while the first still held the upstream and the second still waited.
  assert.equal(up.state.chats, 1, 'the refusal came only after the first request was answered');
  const [a, b] = await Promise.all([first, second]);
  assert.equal(a.status, 200, a.text);
  assert.equal(b.status, 200, `the waiting request failed: ${b.text}`);
  assert.equal(up.state.chats, 2);
});

test('a request that waits past the queue deadline gets 503 + Retry-After (upstream_unavailable)', async () => {
  const up = await upstream({ name: 'slow', delayMs: 1500 });
  const gw = await gateway('queue-deadline', [{ url: up.url, name: 'slow', max_in_flight: 1 }],
    { queue: { max_waiting: 8, timeout_ms: 300 } });
  await waitServing(gw, 1);
  const first = timedChat(gw, 'one');
  assert.ok(await waitUntil(() => up.state.active === 1, 3000), 'the first request never reached the upstream');
  const late = await timedChat(gw, 'two');
  assertUnavailable(late, 'upstream_unavailable');
  assert.ok(late.ms >= 250, `the deadline of 300 ms ended after ${late.ms} ms`);
  // Its deadline, not the end of the first request, ended its wait.
  assert.equal(up.state.active, 1, 'the first request was answered before the waiting one was refused');
  assert.equal((await first).status, 200);
  assert.equal(up.state.chats, 1, 'the timed-out request still reached the upstream');
});

test('a client that leaves while its request waits frees its place and never reaches an upstream', async () => {
  const up = await upstream({ name: 'slow', delayMs: 1500 });
  const gw = await gateway('queue-leave', [{ url: up.url, name: 'slow', max_in_flight: 1 }],
    { queue: { max_waiting: 1, timeout_ms: 10000 } });
  await waitServing(gw, 1);
  const first = timedChat(gw, 'one');
  assert.ok(await waitUntil(() => up.state.active === 1, 3000), 'the first request never reached the upstream');
  const req = http.request(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, agent: false,
  });
  req.on('error', () => {});
  req.end(JSON.stringify(chat('I will not wait')));
  assert.ok(await waitUntil(async () => (await gatewayHealth(gw)).queue === 1, 3000), 'the second request never queued');
  req.destroy();
  // Its place is free again: the queue shrinks, and a third request waits instead of being refused.
  const left = await waitUntil(async () => (await gatewayHealth(gw)).queue === 0, 1000);
  const third = await timedChat(gw, 'three');
  assert.equal((await first).status, 200);
  assert.ok(left, 'the request of a client that left still holds its place in the queue');
  assert.equal(third.status, 200, `a place held by a client that left: ${third.text}`);
  assert.equal(up.state.chats, 2, 'the request of a client that left was still sent upstream');
});

test('with every upstream down, a waiting request is served once one comes up', async () => {
  const portA = await freePort();
  const portB = await freePort();
  const gw = await gateway('all-down', [{ url: `http://127.0.0.1:${portA}`, name: 'A' },
    { url: `http://127.0.0.1:${portB}`, name: 'B' }], { queue: { max_waiting: 8, timeout_ms: 6000 } });
  const known = await waitUntil(async () => (await gatewayHealth(gw)).upstreams.every((u) => u.state === 'down'), 5000);
  assert.ok(known, `the gateway never saw both upstreams down: ${JSON.stringify(await gatewayHealth(gw))}`);
  const pending = timedChat(gw, 'anyone there?');
  await sleep(800);
  const b = await upstream({ name: 'B', port: portB });
  const r = await pending;
  assert.equal(r.status, 200, `${r.text}\n${gw.stderr()}`);
  assert.equal(r.headers['x-clawbot-upstream'], 'B');
  assert.ok(r.ms >= 750, `answered after ${r.ms} ms, before the upstream existed`);
  // Served within its queue deadline (else 503): the health checks noticed B.
  assert.equal(b.state.chats, 1);
});

test('an upstream that dies before the gateway notices: the request is not left waiting for nothing', async () => {
  // Health checks too slow to notice: the request itself finds the connection refused, and the only
  // upstream comes back half a second later.
  const port = await freePort();
  let up = await upstream({ name: 'only', port });
  const gw = await gateway('dies-unnoticed', [{ url: up.url, name: 'only' }],
    { queue: { max_waiting: 8, timeout_ms: 4000 }, health_checks: { interval_ms: 60000, timeout_ms: 500 } });
  await waitServing(gw, 1);
  assert.equal((await timedChat(gw)).status, 200);
  await up.kill();
  const pending = timedChat(gw, 'after the crash');
  await sleep(500);
  up = await upstream({ name: 'only', port });
  const r = await pending;
  // The request failed on every upstream there is (the only one refused it): it is told so at once, 502 with
  // the failure, rather than waiting out the queue's deadline (503 upstream_unavailable) for an upstream it
  // will never try again, or being sent to the node that came back (which never sees it).
  assert.equal(r.status, 502, r.text);
  assert.match(r.json?.error?.message ?? '', /^no upstream answered: only: /, r.text);
  assert.equal(up.state.chats, 0, 'the request was sent again after it had failed on every upstream');
});

// ------------------------------------------------------------------------------------------- retries

test('a 503 goes to another upstream, a reset after the request was sent does not; a 400 is passed through', async () => {
  const a = await upstream({ name: 'A' });
  const b = await upstream({ name: 'B' });
  // B is a standby: everything goes to A first, and only a retry may reach B.
  const gw = await gateway('retry', [{ url: a.url, name: 'A' }, { url: b.url, name: 'B', standby: true }],
    { circuit_breaker: { failures: 100, cooldown_ms: 1000 } });
  await waitServing(gw, 1);

  let r = await timedChat(gw, 'plain');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-clawbot-upstream'], 'A');

  a.state.status = 400;
  r = await timedChat(gw, 'bad request');
  assert.equal(r.status, 400, r.text);
  assert.equal(r.headers['x-clawbot-upstream'], 'A');
  assert.deepEqual(r.json, { error: { message: 'A says 400', type: 'server_error' } }, 'the 400 body was not passed as is');
  assert.equal(b.state.chats, 0, 'a 400 was retried on another upstream');

  a.state.status = 503;
  const chatsBefore = a.state.chats;
  r = await timedChat(gw, 'overloaded');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-clawbot-upstream'], 'B');
  assert.equal(r.json.choices[0].message.content, 'hi from B');
  assert.equal(a.state.chats, chatsBefore + 1, 'A was not tried first');
  assert.equal(b.state.chats, 1);

  // A closes the connection before any header, after reading the whole request: it may have acted on it
  // (or died of it), so the request goes nowhere else and the client gets 502.
  a.state.status = 0;
  const chatsNow = a.state.chats;
  const bChats = b.state.chats;
  const closing = await upstream({ name: 'A2', onChat: (req) => req.socket.destroy() });
  const gw2 = await gateway('retry-reset', [{ url: closing.url, name: 'A2' }, { url: b.url, name: 'B', standby: true }],
    { circuit_breaker: { failures: 100, cooldown_ms: 1000 } });
  await waitServing(gw2, 1);
  for (const stream of [false, true]) {
    r = await request(`${gw2.url}/v1/chat/completions`, { body: chat('reset', { stream }) });
    assert.equal(r.status, 502, r.text);
    assert.equal(r.json?.error?.code, 'upstream_error', r.text);
  }
  assert.equal(closing.state.chats, 2);
  assert.equal(b.state.chats, bChats, 'a request that may have been processed was sent to another upstream');
  assert.equal(a.state.chats, chatsNow);

  // And with the fault gone, fresh requests go back to the primary.
  r = await timedChat(gw, 'plain again');
  assert.equal(r.headers['x-clawbot-upstream'], 'A');
});

test('a node that dies holding a request before answering: the request goes to another node, once', async () => {
  // A node process that dies (the port closes with the connection) and no longer answers its health check: what
  // it held without a byte back is sent on. A request that kills every node it reaches is tried on two only.
  const dying = (name) => {
    const node = { up: null };
    return upstream({ name, onChat: (req, res, body) => {
      if (JSON.stringify(body).includes('kills')) node.up.kill();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({
        object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: `hi from ${name}` }, finish_reason: 'stop' }] }));
    } }).then((up) => { node.up = up; return up; });
  };
  const a = await dying('A');
  const b = await upstream({ name: 'B' });
  const gw = await gateway('died-holding', [{ url: a.url, name: 'A' }, { url: b.url, name: 'B', standby: true }]);
  await waitServing(gw, 1);
  let r = await request(`${gw.url}/v1/chat/completions`, { body: chat('A kills its node') });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-clawbot-upstream'], 'B');
  assert.equal(a.state.chats, 1);
  assert.equal(b.state.chats, 1);

  const c = await dying('C');
  const d = await dying('D');
  const e = await dying('E');
  const gw2 = await gateway('kills-two', [{ url: c.url, name: 'C' }, { url: d.url, name: 'D' }, { url: e.url, name: 'E' }],
    { retries: 3 });
  await waitServing(gw2, 3);
  r = await request(`${gw2.url}/v1/chat/completions`, { body: chat('this kills every node') });
  assert.equal(r.status, 502, r.text);
  assert.match(r.json.error.message, /not sent to another upstream/, r.text);
  const reached = [c, d, e].filter((u) => u.state.chats > 0).map((u) => u.name);
  assert.equal(reached.length, 2, `reached ${reached}`);
});

test('a stream that fails before its first event is retried; one that fails mid-stream ends with an error event', async () => {
  const b = await upstream({ name: 'B', onChat: (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: {"choices":[{"index":0,"delta":{"content":"from B"}}]}\n\n');
    res.end('data: [DONE]\n\n');
  } });
  let mode = 'before';
  const a = await upstream({ name: 'A', onChat: async (req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    if (mode === 'before') {
      res.flushHeaders();
      await sleep(50);
      res.socket.destroy();  // headers, then nothing
      return;
    }
    for (let i = 0; i < 3; i++) {
      res.write(`data: {"choices":[{"index":0,"delta":{"content":"${i}"}}]}\n\n`);
      await sleep(20);
    }
    res.socket.destroy();  // in the middle of the answer
  } });
  const gw = await gateway('stream-failures', [{ url: a.url, name: 'A' }, { url: b.url, name: 'B', standby: true }],
    { circuit_breaker: { failures: 100, cooldown_ms: 1000 } });
  await waitServing(gw, 1);
  let r = await request(`${gw.url}/v1/chat/completions`, { body: chat('retry me', { stream: true }) });
  assert.equal(r.status, 200, r.text);
  assert.equal(r.headers['x-clawbot-upstream'], 'B');
  assert.deepEqual(sseData(r.text), ['{"choices":[{"index":0,"delta":{"content":"from B"}}]}', '[DONE]']);

  mode = 'middle';
  // A hung stream fails by the request's own timeout.
  r = await request(`${gw.url}/v1/chat/completions`, { body: chat('fail midway', { stream: true }) });
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-clawbot-upstream'], 'A');
  const events = sseData(r.text);
  assert.equal(events.length, 4, r.text);  // three pieces, then the error (and no [DONE]: the answer is incomplete)
  assert.equal(JSON.parse(events[2]).choices[0].delta.content, '2');
  assert.equal(JSON.parse(events[3]).error?.code, 'upstream_failed_mid_stream', r.text);
  assert.equal(b.state.chats, 1, 'a stream that had started was sent to another upstream as well');
});

test('conversation affinity keeps one conversation on one upstream; "affinity": false spreads it', async () => {
  const a = await upstream({ name: 'A' });
  const b = await upstream({ name: 'B' });
  const ups = [{ url: a.url, name: 'A' }, { url: b.url, name: 'B' }];
  const sticky = await gateway('affinity-on', ups);
  const spread = await gateway('affinity-off', ups, { affinity: false });
  await waitServing(sticky, 2);
  await waitServing(spread, 2);
  const where = async (gw) => {
    const seen = [];
    for (let i = 0; i < 8; i++) seen.push((await timedChat(gw, 'the same conversation')).headers['x-clawbot-upstream']);
    return seen;
  };
  const on = await where(sticky);
  assert.equal(new Set(on).size, 1, `one conversation went to ${on.join(', ')}`);
  const off = await where(spread);
  assert.deepEqual([...new Set(off)].sort(), ['A', 'B'], `with affinity off, 8 turns went to ${off.join(', ')}`);
});

// ------------------------------------------------------------------------------------------- backpressure

/** /proc/PID/status VmRSS in bytes. */
function rssBytes(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]) * 1024;
}

test('a client that stops reading slows the upstream; the gateway does not buffer the stream', async () => {
  const EVENTS = 64 * 1024;  // ~1 KiB each: 64 MiB in all, more than every socket buffer on the way
  const pad = 'x'.repeat(1000);
  const fast = await upstream({
    name: 'fast',
    onChat: async (req, res, body, state) => {
      state.written = 0;
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < EVENTS; i++) {
        if (res.destroyed) return;
        const text = `data: {"i":${i},"p":"${pad}"}\n\n`;
        state.written += text.length;
        if (!res.write(text)) {
          await new Promise((resolve) => {
            const go = () => {
              res.off('drain', go);
              res.off('close', go);
              resolve();
            };
            res.on('drain', go);
            res.on('close', go);
          });
        }
      }
      res.end('data: [DONE]\n\n');
    },
  });
  const gw = await gateway('backpressure', [{ url: fast.url, name: 'fast' }]);
  await waitServing(gw, 1);
  const rssBefore = rssBytes(gw.proc.pid);

  const received = { events: 0, next: 0, outOfOrder: null, done: false, bytes: 0 };
  let response;
  const finished = new Promise((resolve, reject) => {
    const req = http.request(`${gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, agent: false,
    }, (res) => {
      response = res;
      res.pause();  // opened, not read
      let rest = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        received.bytes += chunk.length;
        rest += chunk;
        let end;
        while ((end = rest.indexOf('\n\n')) >= 0) {
          const block = rest.slice(0, end);
          rest = rest.slice(end + 2);
          if (!block.startsWith('data: ')) continue;
          const data = block.slice(6);
          if (data === '[DONE]') {
            received.done = true;
            continue;
          }
          const i = Number(/^\{"i":(\d+),/.exec(data)?.[1]);
          if (i !== received.next && received.outOfOrder === null) received.outOfOrder = { expected: received.next, got: i };
          received.next = i + 1;
          received.events += 1;
        }
      });
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(JSON.stringify(chat('flood', { stream: true })));
  });
  assert.ok(await waitUntil(() => response !== undefined && fast.state.written > 0, 5000), 'the stream never started');
  let peakRss = 0;
  const samples = [];
  for (let t = 0; t < 6; t++) {
    await sleep(500);
    peakRss = Math.max(peakRss, rssBytes(gw.proc.pid));
    samples.push(fast.state.written);
  }
  const MiB = 1024 * 1024;
  const stalled = samples.at(-1);
  console.log(`backpressure: upstream wrote ${(stalled / MiB).toFixed(1)} MiB while the client did not read ` +
    `(samples ${samples.map((s) => (s / MiB).toFixed(1)).join(', ')} MiB); gateway RSS ` +
    `${(rssBefore / MiB).toFixed(1)} -> peak ${(peakRss / MiB).toFixed(1)} MiB`);
  assert.ok(stalled < 32 * MiB, `the upstream wrote ${(stalled / MiB).toFixed(1)} MiB to a client that read nothing`);
  assert.ok(samples.at(-1) - samples[2] < 1 * MiB,
    `the upstream kept writing while the client did not read: ${samples.join(', ')} bytes`);
  assert.ok(peakRss < 150 * MiB, `gateway RSS reached ${(peakRss / MiB).toFixed(1)} MiB`);

  response.resume();
  await finished;
  assert.equal(received.outOfOrder, null, `events out of order: ${JSON.stringify(received.outOfOrder)}`);
  assert.equal(received.events, EVENTS);
  assert.ok(received.done, 'no [DONE] at the end');
});

// ------------------------------------------------------------------------------------------- disconnects

test('a client that disconnects cancels its upstream request at once, streaming or not', async () => {
  const streaming = await upstream({
    name: 'talker',
    onChat: async (req, res, body, state) => {
      if (!body?.stream) {
        await sleep(10000);  // thinking
        if (!res.destroyed) res.end('{}');
        return;
      }
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      for (let i = 0; i < 200 && !res.destroyed; i++) {
        res.write(`data: {"i":${i}}\n\n`);
        await sleep(50);
      }
      if (!res.destroyed) res.end('data: [DONE]\n\n');
    },
  });
  const gw = await gateway('disconnect', [{ url: streaming.url, name: 'talker' }]);
  await waitServing(gw, 1);

  // Streaming: read three events, then go.
  let abortedAt = 0;
  await new Promise((resolve, reject) => {
    const req = http.request(`${gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, agent: false,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
        if (sseData(text).length >= 3 && abortedAt === 0) {
          abortedAt = Date.now();
          req.destroy();
          resolve();
        }
      });
      res.on('error', () => {});
    });
    req.on('error', (e) => { if (abortedAt === 0) reject(e); });
    req.end(JSON.stringify(chat('stream then leave', { stream: true })));
  });
  assert.ok(await waitUntil(() => streaming.state.closedAt.length === 1, 3000), 'the upstream stream was never closed');
  let closed = streaming.state.closedAt[0];
  assert.equal(closed.finished, false, 'the upstream finished its stream: the disconnect was not passed on');
  assert.ok(closed.at - abortedAt < 1000, `the upstream saw the close ${closed.at - abortedAt} ms after the client left`);

  // Not streaming: the upstream is still thinking, no byte of the answer exists yet.
  const chatsBefore = streaming.state.chats;
  abortedAt = 0;
  const req = http.request(`${gw.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, agent: false,
  });
  req.on('error', () => {});
  req.end(JSON.stringify(chat('ask then leave')));
  assert.ok(await waitUntil(() => streaming.state.chats === chatsBefore + 1, 3000), 'the request never reached the upstream');
  await sleep(200);
  abortedAt = Date.now();
  req.destroy();
  assert.ok(await waitUntil(() => streaming.state.closedAt.length === 2, 3000),
    'the upstream request stayed open after the client left');
  closed = streaming.state.closedAt[1];
  assert.ok(closed.at - abortedAt < 1000, `the upstream saw the close ${closed.at - abortedAt} ms after the client left`);

  // The gateway is none the worse for it.
  streaming.state.delayMs = 0;
  const h = await gatewayHealth(gw);
  assert.equal(h.upstreams[0].in_flight, 0, JSON.stringify(h));
  assert.equal(h.upstreams[0].state, 'up', 'a client leaving counted as an upstream failure');
});

// ------------------------------------------------------------------------------------------- models, metrics

test('GET /v1/models merges the upstreams: each model once, with the upstreams that serve it', async () => {
  const a = await upstream({ name: 'A', models: ['alpha', 'shared'] });
  const b = await upstream({ name: 'B', models: ['beta', 'shared'] });
  const gw = await gateway('models', [{ url: a.url, name: 'A' }, { url: b.url, name: 'B' }]);
  await waitServing(gw, 2);
  let r;
  const ok = await waitUntil(async () => {
    r = await request(`${gw.url}/v1/models`);
    return r.status === 200 && r.json?.data?.length === 3;
  }, 5000);
  assert.ok(ok, `models never merged: ${r?.text}`);
  assert.equal(r.json.object, 'list');
  const byId = Object.fromEntries(r.json.data.map((m) => [m.id, m]));
  assert.deepEqual(r.json.data.map((m) => m.id).sort(), ['alpha', 'beta', 'shared']);
  assert.deepEqual(byId.alpha.upstreams, ['A']);
  assert.deepEqual(byId.beta.upstreams, ['B']);
  assert.deepEqual(byId.shared.upstreams, ['A', 'B']);
  assert.equal(byId.alpha.owned_by, 'A', 'the upstream\'s own fields are kept');
  assert.equal(byId.alpha.object, 'model');

  // Routing follows the lists.
  for (const [model, where] of [['alpha', 'A'], ['beta', 'B'], ['beta', 'B'], ['alpha', 'A']]) {
    const c = await request(`${gw.url}/v1/chat/completions`, { body: chat('which?', { model }) });
    assert.equal(c.status, 200, c.text);
    assert.equal(c.headers['x-clawbot-upstream'], where, `model ${model}`);
  }

  // An upstream that goes down leaves the list.
  await b.kill();
  const gone = await waitUntil(async () => {
    r = await request(`${gw.url}/v1/models`);
    return r.json?.data?.length === 2;
  }, 5000);
  assert.ok(gone, `beta still listed after B went down: ${r?.text}`);
  assert.deepEqual(Object.fromEntries(r.json.data.map((m) => [m.id, m.upstreams])), { alpha: ['A'], shared: ['A'] });
});

/** Prometheus text as [{ name, labels: {…}, value }]. */
function parseMetrics(text) {
  const out = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    assert.ok(m, `not a sample line: ${line}`);
    const labels = {};
    for (const [, k, v] of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[k] = v;
    out.push({ name: m[1], labels, value: Number(m[3]) });
  }
  return out;
}

test('/metrics has per-upstream requests, errors, latency, in-flight and state', async () => {
  const a = await upstream({ name: 'A', delayMs: 0 });
  const b = await upstream({ name: 'B' });
  const gw = await gateway('metrics', [{ url: a.url, name: 'A' }, { url: b.url, name: 'B' }],
    { circuit_breaker: { failures: 100, cooldown_ms: 1000 }, affinity: false });
  await waitServing(gw, 2);
  for (let i = 0; i < 6; i++) assert.equal((await timedChat(gw, `n${i}`)).status, 200);
  a.state.status = 503;  // every request that lands on A now is retried on B
  for (let i = 0; i < 4; i++) assert.equal((await timedChat(gw, `r${i}`)).status, 200);
  a.state.status = 0;
  await b.kill();  // B goes down
  assert.ok(await waitUntil(async () => (await gatewayHealth(gw)).upstreams[1].state === 'down', 5000));
  // One slow request held open on A while /metrics is read.
  a.state.delayMs = 1500;
  const slow = timedChat(gw, 'slow');
  assert.ok(await waitUntil(() => a.state.active === 1, 3000));

  const r = await request(`${gw.url}/metrics`);
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/plain/);
  const samples = parseMetrics(r.text);
  const find = (name, labels) => samples.filter((s) => s.name === name &&
    Object.entries(labels).every(([k, v]) => s.labels[k] === v));
  const sum = (name, labels) => find(name, labels).reduce((t, s) => t + s.value, 0);
  const where = `\n${r.text}`;

  assert.ok(sum('clawbot_gateway_upstream_requests_total', { upstream: 'A', status: '200' }) >= 1, where);
  assert.ok(sum('clawbot_gateway_upstream_requests_total', { upstream: 'B', status: '200' }) >= 4, where);
  assert.equal(sum('clawbot_gateway_upstream_requests_total', {}), 10, `10 answered requests${where}`);
  assert.ok(sum('clawbot_gateway_upstream_errors_total', { upstream: 'A', kind: 'status_503' }) >= 1, where);
  assert.equal(sum('clawbot_gateway_upstream_errors_total', { upstream: 'B' }), 0, where);
  for (const up of ['A', 'B']) {
    const count = find('clawbot_gateway_upstream_request_duration_seconds_count', { upstream: up });
    assert.equal(count.length, 1, `no latency histogram for ${up}${where}`);
    const inf = find('clawbot_gateway_upstream_request_duration_seconds_bucket', { upstream: up, le: '+Inf' });
    assert.equal(inf[0]?.value, count[0].value, where);
    assert.equal(find('clawbot_gateway_upstream_request_duration_seconds_sum', { upstream: up }).length, 1, where);
  }
  assert.equal(sum('clawbot_gateway_upstream_in_flight', { upstream: 'A' }), 1, where);
  assert.equal(sum('clawbot_gateway_upstream_in_flight', { upstream: 'B' }), 0, where);
  assert.equal(sum('clawbot_gateway_upstream_state', { upstream: 'A', state: 'up' }), 1, where);
  assert.equal(sum('clawbot_gateway_upstream_state', { upstream: 'B', state: 'down' }), 1, where);
  assert.equal(sum('clawbot_gateway_upstream_state', { upstream: 'B', state: 'up' }), 0, where);
  assert.equal(sum('clawbot_gateway_upstream_up', { upstream: 'A' }), 1, where);
  assert.equal(sum('clawbot_gateway_upstream_up', { upstream: 'B' }), 0, where);
  assert.ok(sum('clawbot_gateway_requests_total', { route: '/v1/chat/completions', status: '200' }) >= 10, where);

  assert.equal((await slow).status, 200);

  const promtool = spawnSync('sh', ['-c', 'command -v promtool'], { encoding: 'utf8' }).stdout.trim();
  if (!promtool) {
    console.log('skipped: promtool is not installed (Debian package "prometheus"): /metrics not linted');
    return;
  }
  const lint = spawnSync(promtool, ['check', 'metrics'], { input: r.text, encoding: 'utf8' });
  assert.equal(lint.status, 0, `promtool check metrics:\n${lint.stdout}${lint.stderr}${where}`);
});
