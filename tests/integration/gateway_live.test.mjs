// The gateway's speech routes against scripted nodes (issues 22 and 23): the live WebSocket relayed with
// backpressure, close codes passed through, a node that dies mid-stream, a client that hangs up, 50 sessions,
// the key in a subprotocol or the query (never passed on), a key's audio seconds per hour (files and live), a
// key revoked mid-session, the drain; audio routed by the form's model; uploads' own body limit; /v1/kb
// writes for admin keys only. The real node's live path through the gateway is in gateway_audio.test.mjs.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import path from 'node:path';

import { tempDir, startGateway, createKey, writeGatewayConfig, runClawbotCommand, waitUntil, bearer, chat }
  from './gateway_helpers.mjs';
import { acceptWs, connectWs, pcm } from './ws_mini.mjs';
import { makePki } from './pki.mjs';

/**
 * A node with one speech model `model`: /health, /v1/models, POST /v1/audio/transcriptions (answers its name
 * and the form's model, X-Audio-Seconds `audioSeconds`), anything under /v1/kb (answers {"node", "method",
 * "url"}), and GET /v1/audio/live, whose behaviour `mode` sets: 'echo' answers each binary message with
 * {"type":"partial","bytes"} and a stop with {"type":"done"} and a close 1000; 'big' answers each binary
 * message with a text message of the same size, reading no more while its writes wait. Records `upgrades`
 * (url, headers), `closes` (close frames it received), `ended` (connections that ended), `received` bytes.
 */
async function scriptedNode(name, model, tls) {
  const node = { name, model, mode: 'echo', audioSeconds: 30, upgrades: [], closes: [], ended: 0, received: 0,
    requests: [], conns: new Set() };
  const server = (tls ? https : http).createServer(tls ?? {}, (req, res) => {
    let body = [];
    req.on('data', (c) => body.push(c));
    req.on('end', () => {
      body = Buffer.concat(body);
      node.requests.push({ method: req.method, url: req.url, headers: req.headers, bytes: body.length });
      const json = (status, obj, headers = {}) => {
        res.writeHead(status, { 'content-type': 'application/json', ...headers });
        res.end(JSON.stringify(obj));
      };
      if (req.url === '/health') return json(200, { status: 'ok' });
      if (req.url === '/v1/models')
        return json(200, { object: 'list', data: [{ id: model, object: 'model', meta: { task: 'transcription' } }] });
      if (req.url.startsWith('/v1/audio/')) {
        const field = /name="model"\r\n\r\n([^\r]*)\r\n/.exec(body.toString('latin1'));
        return json(200, { text: name, model: field?.[1] ?? null }, { 'x-audio-seconds': String(node.audioSeconds) });
      }
      if (req.url.startsWith('/v1/kb')) return json(200, { node: name, method: req.method, url: req.url });
      return json(404, { error: { message: 'no such route', type: 'invalid_request_error' } });
    });
  });
  server.on('upgrade', (req, socket, head) => {
    node.upgrades.push({ url: req.url, headers: req.headers });
    if (node.mode === 'hang up') { socket.destroy(); return; }
    if (node.mode === 'refuse') {  // as serve does without a speech model
      const body = JSON.stringify({ error: { message: 'this node has no speech-to-text model', type: 'invalid_request_error', code: 'model_not_found' } });
      socket.end(`HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`);
      return;
    }
    const ws = acceptWs(req, socket, head);
    node.conns.add(ws);
    socket.on('close', () => { node.ended++; node.conns.delete(ws); });
    const mode = node.mode;
    let messages = 0;
    const onMessage = (m) => {
      messages++;
      if (m.binary) node.received += m.data.length;
      if (mode === 'die' && messages >= 2) { socket.destroy(); return; }
      if (mode === 'big' && m.binary) {
        if (!ws.send(Buffer.alloc(m.data.length, 0x61).toString('latin1'))) {
          socket.pause();
          socket.once('drain', () => socket.resume());
        }
        return;
      }
      if (!m.binary && JSON.parse(m.data.toString()).type === 'stop') {
        ws.send(JSON.stringify({ type: 'done', audio_seconds: node.received / 32000 }));
        ws.close(1000, 'done here');
        return;
      }
      if (m.binary) ws.send(JSON.stringify({ type: 'partial', bytes: m.data.length }));
    };
    // (ws_mini queues messages; read them as they come)
    (async () => {
      for (;;) {
        const m = await ws.next();
        if (!m) break;
        onMessage(m);
      }
    })();
    ws.closed.then((c) => node.closes.push(c));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  node.url = `${tls ? 'https' : 'http'}://127.0.0.1:${server.address().port}`;
  node.stop = () => {
    server.closeAllConnections?.();
    for (const c of node.conns) c.socket.destroy();
    return new Promise((r) => server.close(r));
  };
  return node;
}

const gatewayMetric = async (url, key, name) => {
  const text = await (await fetch(`${url}/metrics`, { headers: bearer(key) })).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return Number(line?.split(' ')[1]);
};

describe('gateway: live relay, audio limits, admin keys, upload limits', () => {
  let a;
  let b;
  let t;  // behind TLS
  let gw;
  let dir;
  let configFile;
  const keys = {};
  let wsUrl;
  before(async () => {
    a = await scriptedNode('node-a', 'speech-a');
    b = await scriptedNode('node-b', 'speech-b');
    dir = tempDir('clawbot-gw-live-');
    const pki = await makePki(dir);
    t = await scriptedNode('node-tls', 'speech-tls', { cert: fs.readFileSync(pki.certFile), key: fs.readFileSync(pki.keyFile) });
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: a.url, name: 'node-a' }, { url: b.url, name: 'node-b' },
        { url: t.url, name: 'node-tls', tls_ca_file: pki.caFile }],
      health_checks: { interval_ms: 200, timeout_ms: 2000 },
      audit_log: 'audit.log',
      limits: { max_body_bytes: 65536, upload_max_body_bytes: 262144 },
      queue: { timeout_ms: 3000 },  // a session no node can take waits this long
    };
    configFile = writeGatewayConfig(dir, config);
    keys.user = (await createKey(configFile, 'user')).key;
    keys.admin = (await createKey(configFile, 'kb-admin', { admin: true })).key;
    keys.files = (await createKey(configFile, 'files', { audioSecondsPerHour: 45 })).key;
    keys.live = (await createKey(configFile, 'live', { audioSecondsPerHour: 2 })).key;
    keys.revoked = (await createKey(configFile, 'to-revoke')).key;
    gw = await startGateway(config, { dir });
    wsUrl = gw.url.replace('http://', 'ws://') + '/v1/audio/live';
    const ready = await waitUntil(async () => {
      const body = await (await fetch(`${gw.url}/v1/models`, { headers: bearer(keys.user) })).json();
      return body.data?.length === 3;
    }, 15000, 100);
    assert.ok(ready, `the gateway never listed the three speech models\n${gw.stderr()}`);
  });
  after(async () => {
    if (gw) await gw.stop('SIGKILL');
    await a?.stop();
    await b?.stop();
    await t?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('keys list shows each key\'s audio seconds per hour and admin flag', async () => {
    const r = await runClawbotCommand(['gateway', 'keys', 'list', '--json', '--config', configFile]);
    assert.equal(r.code, 0, r.stderr);
    const rows = Object.fromEntries(JSON.parse(r.stdout).map((k) => [k.name, k]));
    assert.equal(rows['kb-admin'].admin, true);
    assert.equal(rows.user.admin, false);
    assert.equal(rows.files.audio_seconds_per_hour, 45);
    assert.equal(rows.user.audio_seconds_per_hour, 0);
    const table = await runClawbotCommand(['gateway', 'keys', 'list', '--config', configFile]);
    assert.match(table.stdout, /AUDIO S\/HOUR\s+ADMIN/);
    assert.match(table.stdout, /kb-admin .*default\s+yes\s+active/);
  });

  test('writes under /v1/kb need an admin key (403 before forwarding); search and reads are open', async () => {
    const kbRequests = () => [...a.requests, ...b.requests, ...t.requests].filter((r) => r.url.startsWith('/v1/kb')).length;
    const before = kbRequests();
    const writes = [['POST', '/v1/kb', { name: 'faq' }], ['POST', '/v1/kb/faq/documents', { text: 'x' }],
      ['DELETE', '/v1/kb/faq/documents/3', undefined], ['PUT', '/v1/kb/faq', {}],
      ['POST', '/v1/kb/faq/sub/search', {}]];
    for (const [method, url, body] of writes) {
      const r = await fetch(`${gw.url}${url}`, { method, headers: { ...bearer(keys.user), 'content-type': 'application/json' },
        body: body === undefined ? undefined : JSON.stringify(body) });
      assert.equal(r.status, 403, `${method} ${url}`);
      const e = (await r.json()).error;
      assert.equal(e.code, 'admin_key_required');
      assert.match(e.message, /needs an admin key/);
      assert.equal(e.type, 'permission_error');
    }
    assert.equal(kbRequests(), before, 'nothing was forwarded');
    // search and a listing: any key
    for (const [method, url] of [['POST', '/v1/kb/faq/search'], ['GET', '/v1/kb']]) {
      const r = await fetch(`${gw.url}${url}`, { method, headers: { ...bearer(keys.user), 'content-type': 'application/json' },
        body: method === 'POST' ? JSON.stringify({ query: 'q' }) : undefined });
      assert.equal(r.status, 200, `${method} ${url}`);
      assert.equal((await r.json()).url, url, 'the node answered');
    }
    // the admin key's writes are forwarded: the node's answer, not the gateway's 403
    for (const [method, url] of [['POST', '/v1/kb'], ['POST', '/v1/kb/faq/documents'], ['DELETE', '/v1/kb/faq/documents/3']]) {
      const r = await fetch(`${gw.url}${url}`, { method, headers: { ...bearer(keys.admin), 'content-type': 'application/json' },
        body: method === 'DELETE' ? undefined : '{}' });
      assert.equal(r.status, 200, `${method} ${url}`);
      const answer = await r.json();
      assert.deepEqual([answer.method, answer.url], [method, url]);
    }
  });

  test('audio goes to the node whose speech model the form names; another name falls back', async () => {
    const post = (model) => fetch(`${gw.url}/v1/audio/transcriptions`, { method: 'POST', headers: bearer(keys.user),
      body: (() => { const f = new FormData(); f.append('model', model); f.append('file', new Blob([Buffer.alloc(1000)]), 'a.wav'); return f; })() });
    for (let i = 0; i < 3; i++) {
      for (const [model, node] of [['speech-b', 'node-b'], ['speech-a', 'node-a']]) {
        const r = await post(model);
        assert.equal(r.status, 200);
        assert.equal(r.headers.get('x-clawbot-upstream'), node, model);
        assert.equal((await r.json()).model, model);
      }
    }
    const r = await post('whisper-1');
    assert.equal(r.status, 200);
    assert.ok(['node-a', 'node-b', 'node-tls'].includes(r.headers.get('x-clawbot-upstream')));
  });

  test('uploads have their own body limit (upload_max_body_bytes), other routes keep max_body_bytes', async () => {
    const upload = (bytes) => {
      const f = new FormData();
      f.append('model', 'speech-a');
      f.append('file', new Blob([Buffer.alloc(bytes)]), 'a.wav');
      return fetch(`${gw.url}/v1/audio/transcriptions`, { method: 'POST', headers: bearer(keys.user), body: f });
    };
    assert.equal((await upload(200_000)).status, 200, 'over max_body_bytes, under upload_max_body_bytes');
    const big = await upload(300_000);
    assert.equal(big.status, 413);
    const e = (await big.json()).error;
    assert.match(e.message, /upload_max_body_bytes/);
    assert.match(e.message, /262144/);
    const docs = await fetch(`${gw.url}/v1/kb/faq/documents`, { method: 'POST',
      headers: { ...bearer(keys.admin), 'content-type': 'application/octet-stream' }, body: Buffer.alloc(200_000) });
    assert.equal(docs.status, 200, 'a document upload takes the upload limit too');
    const chatBody = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST',
      headers: { ...bearer(keys.user), 'content-type': 'application/json' },
      body: JSON.stringify({ ...chat('x'), pad: 'x'.repeat(100_000) }) });
    assert.equal(chatBody.status, 413);
    assert.match((await chatBody.json()).error.message, /limits\.max_body_bytes/);
  });

  test('a key\'s audio seconds per hour: counted from X-Audio-Seconds, the next request past it is a 429', async () => {
    a.audioSeconds = 30;
    b.audioSeconds = 30;
    const post = () => {
      const f = new FormData();
      f.append('file', new Blob([Buffer.alloc(100)]), 'a.wav');
      return fetch(`${gw.url}/v1/audio/transcriptions`, { method: 'POST', headers: bearer(keys.files), body: f });
    };
    assert.equal((await post()).status, 200);  // 30 of 45
    assert.equal((await post()).status, 200);  // 60 of 45: known only once answered
    const refused = await post();
    assert.equal(refused.status, 429);
    const e = (await refused.json()).error;
    assert.equal(e.code, 'rate_limit_exceeded');
    assert.match(e.message, /audio seconds per hour: 60 used of 45/);
    const retry = Number(refused.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 3600, `Retry-After ${retry}`);
    assert.match(e.message, new RegExp(`retry in ${retry} s`));
    // another key is not affected
    const f = new FormData();
    f.append('file', new Blob([Buffer.alloc(100)]), 'a.wav');
    assert.equal((await fetch(`${gw.url}/v1/audio/transcriptions`, { method: 'POST', headers: bearer(keys.user), body: f })).status, 200);
  });

  test('an upgrade without a key, or with a wrong one, is a 401 and never reaches a node', async () => {
    const upgrades = a.upgrades.length + b.upgrades.length + t.upgrades.length;
    const none = await connectWs(wsUrl);
    assert.equal(none.status, 401);
    assert.equal(JSON.parse(none.body).error.code, 'invalid_api_key');
    const wrong = await connectWs(`${wsUrl}?api_key=cbk_000000000000_${'x'.repeat(32)}`);
    assert.equal(wrong.status, 401);
    const plain = await fetch(`${gw.url}/v1/audio/live`, { headers: bearer(keys.user) });
    assert.equal(plain.status, 400);
    assert.equal((await plain.json()).error.code, 'websocket_required');
    assert.equal(a.upgrades.length + b.upgrades.length + t.upgrades.length, upgrades);
  });

  test('the key as a subprotocol or in the query works and is never passed on; frames and closes pass through', async () => {
    for (const how of ['header', 'protocol', 'query']) {
      const ws = await connectWs(`${wsUrl}?model=speech-b&language=en${how === 'query' ? `&api_key=${keys.user}` : ''}`, {
        headers: how === 'header' ? bearer(keys.user) : {},
        protocols: how === 'protocol' ? ['clawbot', `bearer.${keys.user}`] : [],
      });
      assert.equal(ws.status, 101, `${how}: ${ws.body}`);
      assert.equal(ws.headers['x-clawbot-upstream'], 'node-b', 'routed by ?model=');
      if (how === 'protocol') assert.equal(ws.headers['sec-websocket-protocol'], 'clawbot');
      const up = b.upgrades.at(-1);
      assert.equal(up.url, '/v1/audio/live?model=speech-b&language=en');
      assert.ok(!JSON.stringify(up.headers).includes(keys.user), 'the client\'s key never goes upstream');
      ws.send(pcm(0.5));
      assert.deepEqual(JSON.parse((await ws.next()).data), { type: 'partial', bytes: 16000 });
      ws.send(JSON.stringify({ type: 'stop' }));
      assert.equal(JSON.parse((await ws.next()).data).type, 'done');
      assert.deepEqual(await ws.closed, { code: 1000, reason: 'done here' }, 'the node\'s close passes through');
    }
    // the client's close code and reason reach the node
    const ws = await connectWs(`${wsUrl}?model=speech-a`, { headers: bearer(keys.user) });
    ws.send(pcm(0.1));
    await ws.next();
    const closes = a.closes.length;
    ws.close(4001, 'bye now');
    await ws.closed;
    assert.ok(await waitUntil(() => a.closes.length > closes, 5000));
    assert.deepEqual(a.closes.at(-1), { code: 4001, reason: 'bye now' });
  });

  test('a node behind TLS (its CA in tls_ca_file) takes live sessions too', async () => {
    const ws = await connectWs(`${wsUrl}?model=speech-tls`, { headers: bearer(keys.user) });
    assert.equal(ws.status, 101, ws.body);
    assert.equal(ws.headers['x-clawbot-upstream'], 'node-tls');
    ws.send(pcm(0.25));
    assert.deepEqual(JSON.parse((await ws.next()).data), { type: 'partial', bytes: 8000 });
    ws.send(JSON.stringify({ type: 'stop' }));
    assert.equal(JSON.parse((await ws.next()).data).type, 'done');
    assert.deepEqual(await ws.closed, { code: 1000, reason: 'done here' });
    assert.equal(t.received, 8000);
  });

  test('a node that refuses the upgrade: its status and body reach the client over HTTP', async () => {
    b.mode = 'refuse';
    try {
      const r = await connectWs(`${wsUrl}?model=speech-b`, { headers: bearer(keys.user) });
      assert.equal(r.status, 404, r.body);
      assert.equal(r.headers['x-clawbot-upstream'], 'node-b');
      assert.equal(JSON.parse(r.body).error.message, 'this node has no speech-to-text model');
    } finally {
      b.mode = 'echo';
    }
  });

  test('a node that hangs up on the upgrade: an HTTP error naming it (none other has its model: after the queue)', async () => {
    b.mode = 'hang up';
    try {
      const r = await connectWs(`${wsUrl}?model=speech-b`, { headers: bearer(keys.user) });
      assert.equal(r.status, 503, r.body);
      const e = JSON.parse(r.body).error;
      assert.equal(e.code, 'upstream_unavailable');
      assert.match(e.message, /last: node-b: WebSocket handshake: end of stream/);
    } finally {
      b.mode = 'echo';
    }
  });

  test('a node that dies mid-stream closes the client with 4502 naming it', async () => {
    b.mode = 'die';
    try {
      const ws = await connectWs(`${wsUrl}?model=speech-b`, { headers: bearer(keys.user) });
      assert.equal(ws.status, 101);
      ws.send(pcm(0.1));
      ws.send(pcm(0.1));
      const closed = await ws.closed;
      assert.equal(closed.code, 4502, JSON.stringify(closed));
      assert.match(closed.reason, /node-b failed mid-stream/);
    } finally {
      b.mode = 'echo';
    }
  });

  test('a client that hangs up mid-stream: the node\'s side is closed too', async () => {
    const ended = a.ended;
    const closes = a.closes.length;
    const ws = await connectWs(`${wsUrl}?model=speech-a`, { headers: bearer(keys.user) });
    ws.send(pcm(0.1));
    await ws.next();
    ws.socket.destroy();
    assert.ok(await waitUntil(() => a.ended > ended, 10000), 'the upstream connection ended');
    assert.ok(a.closes.length > closes);
    assert.equal(a.closes.at(-1).code, 1001, JSON.stringify(a.closes.at(-1)));
    assert.match(a.closes.at(-1).reason, /client went away/);
  });

  test('a client that floods frames and never reads is held back; nothing is lost once it reads', { timeout: 120000 }, async () => {
    a.mode = 'big';
    try {
      const rssBefore = await gatewayMetric(gw.url, keys.user, 'process_resident_memory_bytes');
      const receivedBefore = a.received;
      const ws = await connectWs(`${wsUrl}?model=speech-a`, { headers: bearer(keys.user) });
      ws.socket.pause();  // never reads
      const frame = Buffer.alloc(32768, 1);
      const total = 8192;  // 256 MiB if nothing held it back
      let sent = 0;
      // Writes until the socket's buffer stays full for a second: the gateway stopped reading.
      for (; sent < total; sent++) {
        if (!ws.send(frame)) {
          const drained = await Promise.race([new Promise((r) => ws.socket.once('drain', () => r(true))),
            new Promise((r) => setTimeout(() => r(false), 1500))]);
          if (!drained) { sent++; break; }
        }
      }
      assert.ok(sent < total, `the client pushed all ${total} frames without reading: nothing held it back`);
      const rssHeld = await gatewayMetric(gw.url, keys.user, 'process_resident_memory_bytes');
      console.log(`flood: the client pushed ${(sent * frame.length / 1048576).toFixed(1)} MiB (of ${total * frame.length / 1048576}) ` +
        `before it was held back; the node had read ${((a.received - receivedBefore) / 1048576).toFixed(1)} MiB; ` +
        `gateway RSS ${(rssBefore / 1048576).toFixed(1)} -> ${(rssHeld / 1048576).toFixed(1)} MiB`);
      assert.ok(rssHeld - rssBefore < 48 * 1048576, `the gateway grew by ${(rssHeld - rssBefore) / 1048576} MiB`);
      assert.ok(a.received - receivedBefore < sent * frame.length, 'frames waited in the client\'s socket, not in the gateway');
      // Now it reads: everything it sent arrives, and every answer comes back.
      ws.socket.resume();
      let got = 0;
      while (got < sent) {
        const m = await ws.next();
        assert.ok(m, 'the session ended early');
        got++;
      }
      assert.equal(a.received - receivedBefore, sent * frame.length);
      ws.close(1000, 'enough');
      await ws.closed;
    } finally {
      a.mode = 'echo';
    }
  });

  test('50 concurrent live sessions', { timeout: 120000 }, async () => {
    const session = async (i) => {
      const ws = await connectWs(`${wsUrl}?model=speech-${i % 2 ? 'a' : 'b'}`, { headers: bearer(keys.user) });
      assert.equal(ws.status, 101, ws.body);
      for (let f = 0; f < 10; f++) ws.send(pcm(0.1));
      ws.send(JSON.stringify({ type: 'stop' }));
      let partials = 0;
      for (;;) {
        const m = await ws.next();
        if (!m) break;
        const msg = JSON.parse(m.data);
        if (msg.type === 'partial') partials++;
        if (msg.type === 'done') break;
      }
      assert.equal(partials, 10);
      return ws.closed;
    };
    const started = Date.now();
    const closed = await Promise.all(Array.from({ length: 50 }, (_, i) => session(i)));
    console.log(`50 live sessions (10 frames and a stop each) through the gateway: ${Date.now() - started} ms`);
    assert.ok(closed.every((c) => c.code === 1000), JSON.stringify(closed.filter((c) => c.code !== 1000)));
  });

  test('a key\'s audio seconds per hour ends a live session with 1008, and refuses the next upgrade (429)', { timeout: 60000 }, async () => {
    const ws = await connectWs(`${wsUrl}?model=speech-a`, { headers: bearer(keys.live) });
    assert.equal(ws.status, 101);
    let sent = 0;
    const closing = ws.closed;
    let closed = null;
    closing.then((c) => { closed = c; });
    while (!closed && sent < 100) {  // 10 s of audio against 2 s allowed
      ws.send(pcm(0.1));
      sent++;
      await ws.next();
    }
    assert.ok(closed, `not closed after ${sent} frames of 0.1 s`);
    const c = await closing;
    assert.equal(c.code, 1008, JSON.stringify(c));
    assert.match(c.reason, /audio seconds per hour of key [0-9a-f]{12} used up \(2\); resets in \d+ s/);
    assert.ok(sent >= 20 && sent <= 22, `closed after ${sent} frames of 0.1 s`);
    const again = await connectWs(wsUrl, { headers: bearer(keys.live) });
    assert.equal(again.status, 429);
    assert.match(JSON.parse(again.body).error.message, /audio seconds per hour: 2 used of 2/);
    assert.ok(Number(again.headers['retry-after']) >= 1);
  });

  test('a key revoked mid-session: the session is closed with 1008 (checked each second)', { timeout: 60000 }, async () => {
    const ws = await connectWs(`${wsUrl}?model=speech-a`, { headers: bearer(keys.revoked) });
    assert.equal(ws.status, 101);
    ws.send(pcm(0.1));
    await ws.next();
    const r = await runClawbotCommand(['gateway', 'keys', 'revoke', 'to-revoke', '--config', configFile]);
    assert.equal(r.code, 0, r.stderr);
    let closed = null;
    ws.closed.then((c) => { closed = c; });
    for (let i = 0; i < 300 && !closed; i++) {
      ws.send(pcm(0.05));
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(closed, 'still open 15 s after the key was revoked');
    const c = await ws.closed;
    assert.equal(c.code, 1008, JSON.stringify(c));
    assert.match(c.reason, /revoked/);
  });

  test('a drain lets the node finish: it gets a stop, its last messages reach the client, then 1001', { timeout: 60000 }, async () => {
    const ws = await connectWs(`${wsUrl}?model=speech-a`, { headers: bearer(keys.user) });
    ws.send(pcm(0.1));
    await ws.next();
    const stopping = gw.stop('SIGTERM');
    let done = false;
    ws.closed.then(() => { done = true; });
    for (let i = 0; i < 100 && !done; i++) {  // the client keeps talking; the gateway tells the node to stop
      ws.send(pcm(0.1));
      await new Promise((res) => setTimeout(res, 50));
    }
    assert.ok(done, 'the session was still open 5 s into the drain');
    const c = await ws.closed;
    assert.equal(c.code, 1001, JSON.stringify(c));
    assert.match(c.reason, /shutting down/);
    assert.ok(ws.messages.some((m) => !m.binary && JSON.parse(m.data).type === 'done'), 'the node\'s done came through');
    const exit = await stopping;
    assert.equal(exit.code, 0, `${JSON.stringify(exit)}\n${gw.stderr()}`);
    const stderr = gw.stderr();
    gw = undefined;
    assert.equal(exit.code, 0);

    const records = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    const live = records.filter((r) => r.route === 'GET /v1/audio/live' && r.status === 101);
    assert.ok(live.length >= 50 + 6, `${live.length} live sessions recorded`);
    assert.ok(live.every((r) => r.audio_seconds >= 0));
    assert.ok(live.some((r) => Math.abs(r.audio_seconds - 1.0) < 1e-6), 'a session of 10 frames of 0.1 s: 1 s');
    assert.ok(!fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').includes(keys.user.slice(17)), 'no secret in the log');
    assert.ok(!stderr.includes(keys.user.slice(17)), 'no secret in the gateway\'s log');
    const verified = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', configFile]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  });
});
