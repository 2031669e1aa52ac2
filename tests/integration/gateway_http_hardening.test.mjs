// The HTTP layer of `clawbot gateway` (and of serve: one server) against hostile clients and upstreams, over
// raw sockets: Expect: 100-continue answered by the gateway and never forwarded, 1xx answers and HEAD from
// upstreams, framing that proxies read differently, the allow-list checked before a body is read, endless
// chunk extensions, slowloris, connections per client, and the file-descriptor limit. No model, no engine.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/gateway_http_hardening.test.mjs
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';

import { requireBinary } from './server_harness.mjs';
import { chat, request, startGateway, startUpstream, tempDir, waitUntil, writeGatewayConfig } from './gateway_helpers.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const root = tempDir('clawbot-gw-http-');
const cleanups = [];

after(async () => {
  for (const cleanup of cleanups.reverse()) await cleanup();
  fs.rmSync(root, { recursive: true, force: true });
});

async function upstream(options = {}) {
  const up = await startUpstream(options);
  cleanups.push(() => up.kill());
  return up;
}

/** A gateway on 127.0.0.1 without keys in front of `ups`; `extra` is merged into gateway.json. */
async function gateway(name, ups, extra = {}) {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: ups.map((u) => ({ url: u.url, name: u.name })),
    auth: 'none',
    health_checks: { interval_ms: 200, timeout_ms: 1000 },
    ...extra,
  };
  const gw = await startGateway(config, { dir });
  cleanups.push(() => gw.stop('SIGKILL'));
  return gw;
}

/**
 * A raw TCP connection to 127.0.0.1:port: write() bytes as they are, `text` what came back (latin1),
 * waitFor(re, ms) until it matches, the connection closed, or ms passed. Resolves once connected.
 */
// refusedIsClosed: a connection the server resets before the connect completes (a server at its descriptor
// limit accepts and closes at once; a slower build loses that race more often) counts as closed, not a failure.
async function raw(port, { localAddress, refusedIsClosed = false } = {}) {
  const socket = net.connect({ port, host: '127.0.0.1', localAddress });
  const conn = { socket, text: '', closed: false };
  socket.setEncoding('latin1');
  socket.on('data', (c) => { conn.text += c; });
  socket.on('error', () => {});
  socket.on('close', () => { conn.closed = true; });
  conn.write = (bytes) => new Promise((resolve) => {
    if (conn.closed || socket.destroyed) return resolve(false);
    socket.write(bytes, 'latin1', (err) => resolve(!err));
  });
  conn.waitFor = async (re, ms) => {
    const end = Date.now() + ms;
    while (!re.test(conn.text) && !conn.closed && Date.now() < end) await sleep(10);
    return re.test(conn.text);
  };
  conn.end = () => socket.destroy();
  await new Promise((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', (err) => {
      if (!refusedIsClosed || err.code !== 'ECONNRESET') return reject(err);
      conn.closed = true;
      resolve();
    });
  });
  cleanups.push(async () => socket.destroy());
  return conn;
}

/** The final (non-1xx) answer in `text`: { status, headers (lower-case names), body }. */
function finalAnswer(text) {
  let rest = text;
  for (;;) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) return null;
    const lines = rest.slice(0, end).split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers = {};
    for (const line of lines.slice(1)) {
      const colon = line.indexOf(':');
      headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    rest = rest.slice(end + 4);
    if (status >= 100 && status < 200) continue;
    const length = Number(headers['content-length'] ?? rest.length);
    return { status, headers, body: rest.slice(0, length) };
  }
}

const chatBody = JSON.stringify(chat('hello'));
const chatHead = (extra = '') => `POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(chatBody)}\r\n${extra}`;

test('Expect: 100-continue is answered by the gateway, never forwarded; the next client gets its own answer', async () => {
  const up = await upstream({ name: 'expect' });  // Node answers 100 Continue to an Expect it receives
  const gw = await gateway('expect', [up]);
  const a = await raw(gw.port);
  await a.write(chatHead('Expect: 100-continue\r\n') + '\r\n');
  // curl waits a second for the 100 and then sends the body anyway
  const continued = await a.waitFor(/^HTTP\/1\.1 100 Continue\r\n\r\n/, 1000);
  await a.write(chatBody);
  await a.waitFor(/\r\n\r\n[\s\S]*"upstream"[\s\S]*}$/, 5000);
  assert.ok(continued, `no 100 Continue before the body: ${a.text}`);
  const answerA = finalAnswer(a.text);
  assert.equal(answerA?.status, 200, a.text);
  const idA = JSON.parse(answerA.body).id;
  const chats = () => up.requests.filter((r) => r.url === '/v1/chat/completions');
  assert.equal(chats().length, 1);
  assert.equal(chats()[0].headers.expect, undefined, 'Expect was forwarded upstream');

  const b = await request(`${gw.url}/v1/chat/completions`, { body: chat('second'), timeoutMs: 5000 });
  assert.equal(b.status, 200, b.text);
  assert.notEqual(b.json.id, idA, 'the second client got the first client\'s answer');
  assert.equal(chats().length, 2);
});

test('HEAD through the gateway gets the upstream\'s answer at once, and HEADs do not open the breaker', async () => {
  const up = await upstream({ name: 'head' });  // answers HEAD with a 404 that has a length and no body
  const gw = await gateway('head', [up], { read_timeout_ms: 4000 });
  for (let i = 0; i < 4; i += 1) {
    const t = Date.now();
    const r = await request(`${gw.url}/v1/anything`, { method: 'HEAD', timeoutMs: 10000 });
    assert.equal(r.status, 404, `HEAD ${i}: ${r.status} after ${Date.now() - t} ms`);  // before: 502 after 4 s
    assert.equal(r.text, '');
  }
  const after4 = await request(`${gw.url}/v1/chat/completions`, { body: chat(), timeoutMs: 5000 });
  assert.equal(after4.status, 200, after4.text);
});

test('framing that proxies read differently, and foreign targets, are 400 and never reach an upstream', async () => {
  const up = await upstream({ name: 'framing' });
  const gw = await gateway('framing', [up]);
  const cases = [
    [`${chatHead('Transfer-Encoding: xchunked\r\n')}\r\n${chatBody}`, /Transfer-Encoding/],
    [`POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: gzip\r\n\r\n${chatBody}`, /bad_transfer_encoding/],
    [`${chatHead('X-Folded: one\r\n two\r\n')}\r\n${chatBody}`, /obsolete line folding/],
    [`POST http://evil.example/v1/chat/completions HTTP/1.1\r\nHost: evil.example\r\n` +
      `Content-Length: ${chatBody.length}\r\n\r\n${chatBody}`, /bad_request_target/],
  ];
  for (const [bytes, expected] of cases) {
    const c = await raw(gw.port);
    await c.write(bytes);
    await c.waitFor(/\}\}$/, 5000);
    const answer = finalAnswer(c.text);
    assert.equal(answer?.status, 400, `${JSON.stringify(bytes.slice(0, 80))}: ${c.text}`);
    assert.match(answer.body, expected);
    assert.equal(answer.headers.connection, 'close');
  }
  const reached = up.requests.filter((r) => r.url !== '/v1/models');  // (the gateway's own model checks)
  assert.equal(reached.length, 0, `reached the upstream: ${JSON.stringify(reached.map((r) => r.url))}`);
});

test('the allow-list is checked before the body is read, and the refusal is counted', async () => {
  const up = await upstream({ name: 'allow' });
  const gw = await gateway('allow', [up], { allow: ['127.0.0.2/32'] });
  const c = await raw(gw.port);  // from 127.0.0.1
  await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Length: 100000000\r\n' +
    'Expect: 100-continue\r\n\r\n');
  await c.waitFor(/\}\}$/, 5000);
  const answer = finalAnswer(c.text);
  assert.equal(answer?.status, 403, c.text);  // at once: before, the gateway waited for 100 MB
  assert.match(answer.body, /address_not_allowed/);
  assert.doesNotMatch(c.text, /100 Continue/);
  const metrics = await request(`${gw.url}/metrics`, { localAddress: '127.0.0.2' });
  assert.match(metrics.text, /clawbot_gateway_requests_total\{[^}]*status="403"[^}]*\} 1/);
});

test('an endless chunk extension is cut off at the header limit', async () => {
  const up = await upstream({ name: 'chunks' });
  const gw = await gateway('chunks', [up]);
  const c = await raw(gw.port);
  await c.write('POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=');
  const more = 'e'.repeat(64 * 1024);
  let sent = 0;
  for (let i = 0; i < 128 && !c.closed && !c.text; i += 1) {
    if (!await c.write(more)) break;
    sent += more.length;
    await sleep(2);
  }
  await c.waitFor(/\}\}$/, 5000);
  const answer = finalAnswer(c.text);
  assert.equal(answer?.status, 400, `after ${sent} bytes: ${c.text}`);
  assert.match(answer.body, /chunk_header_too_large/);
});

test('slowloris: a header sent a byte every 200 ms is cut off at the header deadline', async () => {
  const up = await upstream({ name: 'slow' });
  const gw = await gateway('slow', [up], { limits: { header_timeout_ms: 1000 } });
  const c = await raw(gw.port);
  const head = `GET /v1/models HTTP/1.1\r\nHost: gw\r\nX-Padding: ${'p'.repeat(40)}\r\n\r\n`;  // 16 s at 200 ms
  let sent = 0;
  while (sent < head.length && !c.closed) {
    await c.write(head[sent]);
    sent += 1;
    await sleep(200);
  }
  assert.ok(c.closed, 'the connection is still open');
  assert.ok(sent < head.length, `the gateway waited for the whole header: ${c.text}`);
  assert.doesNotMatch(c.text, /200 OK/);
  // Others are served meanwhile and after.
  assert.equal((await request(`${gw.url}/v1/models`)).status, 200);
});

test('connections per client address are capped: one more gets 429', async () => {
  const up = await upstream({ name: 'cap' });
  const gw = await gateway('cap', [up], { limits: { max_connections_per_client: 3 } });
  const open = [];
  for (let i = 0; i < 3; i += 1) open.push(await raw(gw.port));
  await sleep(100);
  const extra = await raw(gw.port);
  await extra.write('GET /v1/models HTTP/1.1\r\nHost: gw\r\n\r\n');
  await extra.waitFor(/\}\}$/, 5000);
  const answer = finalAnswer(extra.text);
  assert.equal(answer?.status, 429, extra.text);
  assert.match(answer.body, /too_many_connections/);
  // Another address is not affected; a closed connection frees its place.
  assert.equal((await request(`${gw.url}/v1/models`, { localAddress: '127.0.0.2' })).status, 200);
  open[0].end();
  assert.ok(await waitUntil(async () => (await request(`${gw.url}/v1/models`)).status === 200, 5000));
});

/** /proc/PID/stat utime + stime, in seconds. */
function cpuSeconds(pid) {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;  // clock ticks (USER_HZ is 100 on Linux)
}

test('at the file-descriptor limit the gateway neither spins nor floods its log, and serves again after', async () => {
  const up = await upstream({ name: 'fds' });
  const dir = path.join(root, 'fds');
  fs.mkdirSync(dir, { recursive: true });
  const file = writeGatewayConfig(dir, {
    listen: [{ host: '127.0.0.1', port: 0 }], upstreams: [{ url: up.url, name: up.name }], auth: 'none',
  });
  const proc = spawn('prlimit', ['--nofile=64:64', requireBinary(), 'gateway', '--config', file, '--no-advertise',
    '--port', '0', '--threads', '1'], { stdio: ['ignore', 'pipe', 'pipe'] });
  cleanups.push(async () => proc.kill('SIGKILL'));
  let stdout = '';
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (c) => { if (stderr.length < (4 << 20)) stderr += c; });
  proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
  assert.ok(await waitUntil(() => /listening on http:\/\/127\.0\.0\.1:\d+/.test(stdout), 10000), stdout + stderr);
  const port = Number(/listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(stdout)[1]);

  const conns = [];
  for (let i = 0; i < 100; i += 1) conns.push(await raw(port, { refusedIsClosed: true }));
  await sleep(500);
  const before = cpuSeconds(proc.pid);
  await sleep(2000);
  const used = cpuSeconds(proc.pid) - before;
  const lines = stderr.split('\n').filter((l) => /accept failed/.test(l));
  assert.ok(used < 0.5, `the gateway used ${used} s of CPU in 2 s at its descriptor limit`);
  assert.ok(lines.length >= 1 && lines.length <= 3, `${lines.length} log lines about accept:\n${lines.slice(0, 5).join('\n')}`);
  assert.ok(conns.some((c) => c.closed), 'no connection was closed at the limit');

  for (const c of conns) c.end();
  const served = await waitUntil(async () => {
    try {
      return (await request(`http://127.0.0.1:${port}/v1/models`, { timeoutMs: 1000 })).status === 200;
    } catch {
      return false;
    }
  }, 10000);
  assert.ok(served, 'the gateway did not serve again after the connections closed');
});
