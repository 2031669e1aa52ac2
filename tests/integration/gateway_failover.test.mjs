// `clawbot gateway` in front of real `clawbot serve` nodes: two primaries and a cold standby. Load from
// several clients while a primary is killed; both primaries killed (the standby serves); one restarted
// (traffic returns); and conversation affinity (the turns of one conversation land on one node).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { startServer, killProcess, requireBinary } from './server_harness.mjs';

const READY_RE = /clawbot gateway listening on (https?:\/\/127\.0\.0\.1:(\d+))/;

async function startGateway(config, dir) {
  const file = path.join(dir, 'gateway.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  const proc = spawn(requireBinary(), ['gateway', '--config', file, '--port', '0', '--no-advertise'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (c) => { err += c; });
  proc.stdout.setEncoding('utf8');
  const baseUrl = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`gateway did not start:\n${out}\n${err}`)), 20000);
    proc.stdout.on('data', (c) => {
      out += c;
      const m = READY_RE.exec(out);
      if (m) { clearTimeout(timer); resolve(m[1]); }
    });
    proc.once('exit', (code) => { clearTimeout(timer); reject(new Error(`gateway exited (${code}):\n${out}\n${err}`)); });
  });
  return { proc, baseUrl, stderr: () => err, stop: () => killProcess(proc) };
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function chat(baseUrl, messages, { stream = false, maxTokens = 8, timeoutMs = 30000 } = {}) {
  const res = await fetch(`${baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages, max_tokens: maxTokens, temperature: 0, stream }),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const upstream = res.headers.get('x-clawbot-upstream');
  // A refusal is a JSON error body, streamed request or not.
  if (!stream || res.status !== 200) return { status: res.status, upstream, body: await res.json() };
  // Read the stream event by event: content events, an error event, [DONE].
  const text = await res.text();
  const events = text.split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
  const done = events.includes('[DONE]');
  const errors = events.filter((e) => e !== '[DONE]' && JSON.parse(e).error);
  const content = events.filter((e) => e !== '[DONE]' && JSON.parse(e).choices?.length);
  return { status: res.status, upstream, done, errors, content: content.length };
}

async function waitFor(predicate, what, timeoutMs = 20000) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await sleep(100);
  }
}

let dir;
const nodes = {};
let gateway;

function startNode(name, port = 0) {
  return startServer({ extraArgs: ['--parallel', '2', '--no-advertise'], port });
}

before(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-gw-failover-'));
  [nodes.A, nodes.B, nodes.C] = await Promise.all([startNode('A'), startNode('B'), startNode('C')]);
  gateway = await startGateway({
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [
      { url: nodes.A.baseUrl, name: 'A' },
      { url: nodes.B.baseUrl, name: 'B' },
      { url: nodes.C.baseUrl, name: 'C', standby: true },
    ],
    auth: 'none',
    threads: 2,
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    circuit_breaker: { failures: 2, cooldown_ms: 1000 },
    queue: { max_waiting: 64, timeout_ms: 20000 },
    retries: 2,
  }, dir);
  await waitFor(async () => {
    const h = await (await fetch(`${gateway.baseUrl}/health`)).json();
    return h.upstreams.every((u) => u.state === 'up' && u.models.length > 0);
  }, 'every upstream to be up');
});

after(async () => {
  await gateway?.stop();
  await Promise.all(Object.values(nodes).map((n) => n?.stop()));
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test('the gateway lists the nodes\' model once, and /health shows primaries serving and the standby idle', async () => {
  const models = await (await fetch(`${gateway.baseUrl}/v1/models`)).json();
  assert.equal(models.data.length, 1, JSON.stringify(models));
  assert.deepEqual(models.data[0].upstreams.sort(), ['A', 'B', 'C']);
  const health = await (await fetch(`${gateway.baseUrl}/health`)).json();
  assert.equal(health.status, 'ok');
  const serving = Object.fromEntries(health.upstreams.map((u) => [u.name, u.serving]));
  assert.deepEqual(serving, { A: true, B: true, C: false });
});

test('conversation affinity: every turn of a conversation goes to the same node', async () => {
  for (let c = 0; c < 4; ++c) {
    const messages = [
      { role: 'system', content: `You tell story number ${c}.` },
      { role: 'user', content: `Once upon a time ${c}` },
    ];
    const seen = new Set();
    for (let turn = 0; turn < 4; ++turn) {
      const r = await chat(gateway.baseUrl, messages);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      seen.add(r.upstream);
      messages.push({ role: 'assistant', content: r.body.choices[0].message.content });
      messages.push({ role: 'user', content: `and then ${turn}` });
    }
    assert.equal(seen.size, 1, `conversation ${c} went to ${[...seen]}`);
    assert.notEqual([...seen][0], 'C', 'the standby took traffic while primaries were up');
  }
});

test('a primary killed under load: unstarted requests succeed elsewhere, started ones end with an error, none hangs', async (t) => {
  const results = [];
  let stop = false;
  let killedAt = 0;
  let exitedAt = Infinity;
  const client = async (id) => {
    for (let i = 0; !stop; ++i) {
      const sentAt = Date.now();
      const messages = [{ role: 'user', content: `client ${id} request ${i} tells a long story` }];
      try {
        const r = await chat(gateway.baseUrl, messages, { stream: i % 2 === 0, maxTokens: 200, timeoutMs: 30000 });
        results.push({ ...r, sentAt, stream: i % 2 === 0 });
      } catch (e) {
        results.push({ failed: String(e), sentAt });
      }
    }
  };
  const clients = Array.from({ length: 6 }, (_, i) => client(i));
  await sleep(1500);
  killedAt = Date.now();
  nodes.A.proc.once('exit', () => { exitedAt = Date.now(); });
  nodes.A.proc.kill('SIGKILL');
  await sleep(2500);
  stop = true;
  await Promise.all(clients);

  assert.ok(results.length >= 12, `only ${results.length} requests ran`);
  const hung = results.filter((r) => r.failed);
  assert.deepEqual(hung, [], 'requests failed or hung');
  for (const r of results) {
    if (r.status === 502) {
      // A request A had read in full when it died, whole answer or a stream whose first byte had not come
      // yet (waiting for a slot, or a slower build): A may have been the cause, so it is not sent to another
      // node (the client gets 502 and may retry). SIGKILL is not instant: until the process has exited, its
      // kept-alive connections still look open to the gateway and a request sent on one meets the reset.
      assert.ok(r.sentAt < exitedAt, `sent ${r.sentAt - killedAt} ms after the kill, ` +
        `${r.sentAt - exitedAt} ms after A exited: ${JSON.stringify(r)}`);
      assert.match(r.body.error.message, /A failed after it was sent the request/, JSON.stringify(r));
      continue;
    }
    assert.equal(r.status, 200, JSON.stringify(r));
    if (!r.stream) continue;
    if (r.errors.length > 0) {
      // Only a stream that had already started on A may end with an error, and never silently.
      assert.ok(r.content > 0, `an error event before any content: ${JSON.stringify(r)}`);
      assert.equal(r.upstream, 'A');
      assert.match(JSON.parse(r.errors[0]).error.message, /failed in the middle of this answer/);
    } else {
      assert.ok(r.done, `a stream ended without [DONE] and without an error event: ${JSON.stringify(r)}`);
    }
  }
  assert.ok(results.some((r) => r.upstream === 'A' && r.sentAt < killedAt), 'A served nothing before the kill');
  const cut = results.filter((r) => r.errors?.length > 0).length;
  const lost = results.filter((r) => r.status === 502).length;
  t.diagnostic(`${results.length} requests, ${cut} streams cut mid-way by the kill (error event), ${lost} whole ` +
    'answers in progress on A answered 502, the rest complete');
  const after = results.filter((r) => r.sentAt > killedAt + 200);
  assert.ok(after.length > 0, 'no request was sent after the kill');
  for (const r of after) assert.notEqual(r.upstream, 'A', 'a request sent after the kill went to the dead node');
  const health = await (await fetch(`${gateway.baseUrl}/health`)).json();
  const a = health.upstreams.find((u) => u.name === 'A');
  assert.notEqual(a.state, 'up', JSON.stringify(a));
});

test('both primaries down: the standby serves; a primary restarted: traffic returns to it', async () => {
  const bPort = nodes.B.port;
  nodes.B.proc.kill('SIGKILL');
  await waitFor(async () => {
    const h = await (await fetch(`${gateway.baseUrl}/health`)).json();
    return h.upstreams.find((u) => u.name === 'C').serving;
  }, 'the standby to be serving');
  for (let i = 0; i < 3; ++i) {
    const r = await chat(gateway.baseUrl, [{ role: 'user', content: `standby ${i}` }]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    assert.equal(r.upstream, 'C');
  }
  nodes.B = await startNode('B', bPort);
  await waitFor(async () => {
    const r = await chat(gateway.baseUrl, [{ role: 'user', content: 'back?' }]);
    return r.status === 200 && r.upstream === 'B';
  }, 'traffic to return to the restarted primary B');
  const health = await (await fetch(`${gateway.baseUrl}/health`)).json();
  const serving = Object.fromEntries(health.upstreams.map((u) => [u.name, u.serving]));
  assert.equal(serving.C, false, 'the standby still takes traffic with a primary up');
  for (let i = 0; i < 3; ++i) {
    const r = await chat(gateway.baseUrl, [{ role: 'user', content: `after ${i}` }]);
    assert.equal(r.upstream, 'B');
  }
});

test('a client that disconnects cancels its upstream request at once', async () => {
  // Tokens the live nodes have generated: an upstream request left running would add all 480 of its own.
  const generated = async () => {
    let total = 0;
    for (const node of [nodes.B, nodes.C]) {
      const text = await (await fetch(`${node.baseUrl}/metrics`)).text();
      total += Number(/^clawbot_generation_tokens_total (\S+)$/m.exec(text)[1]);
    }
    return total;
  };
  const before = await generated();
  const controller = new AbortController();
  const res = await fetch(`${gateway.baseUrl}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ messages: [{ role: 'user', content: 'a very long story' }], max_tokens: 480,
                           ignore_eos: true, stream: true }),
    signal: controller.signal,
  });
  const reader = res.body.getReader();
  await reader.read();
  controller.abort();
  await waitFor(async () => {
    const h = await (await fetch(`${gateway.baseUrl}/health`)).json();
    return h.upstreams.every((u) => u.in_flight === 0);
  }, 'the gateway to drop the upstream request', 5000);
  await sleep(1500);  // time enough for the node to have finished the answer, had it gone on
  const spent = (await generated()) - before;
  assert.ok(spent < 240, `the node generated ${spent} of 480 tokens after the client left`);
});

test('a busy node (503, queue full) makes requests wait in the gateway, not fail', async () => {
  // One slot and one place in the node's queue; six requests at once. Each of the four the node refuses
  // waits in the gateway's queue for room (after the node's Retry-After) instead of getting 502.
  const node = await startServer({ extraArgs: ['--parallel', '1', '--queue-max', '1', '--no-advertise'] });
  const gwDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-gw-busy-'));
  const gw = await startGateway({
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [{ url: node.baseUrl, name: 'small' }],
    auth: 'none',
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    queue: { max_waiting: 64, timeout_ms: 60000 },
  }, gwDir);
  try {
    await waitFor(async () => (await (await fetch(`${gw.baseUrl}/health`)).json()).status === 'ok', 'the node');
    const results = await Promise.all(Array.from({ length: 6 }, (_, i) =>
      chat(gw.baseUrl, [{ role: 'user', content: `busy ${i}` }], { maxTokens: 48, timeoutMs: 45000 })));
    for (const r of results) assert.equal(r.status, 200, JSON.stringify(r.body));
    const metrics = await (await fetch(`${node.baseUrl}/metrics`)).text();
    const refused = metrics.split('\n').filter((l) => l.startsWith('clawbot_http_requests_total') && /status="503"/.test(l))
      .reduce((t, l) => t + Number(l.split(' ').at(-1)), 0);
    assert.ok(refused > 0, `the node never answered 503: the test tests nothing\n${metrics}`);
  } finally {
    await gw.stop();
    await node.stop();
    fs.rmSync(gwDir, { recursive: true, force: true });
  }
});

test('a node stopped (SIGTERM) under streaming load: no stream ends with nothing but its role chunk', async (t) => {
  // Streams that had only their role chunk when the node went (queued there, or just started) are retried
  // on the other node by the gateway; the client sees one role chunk and one complete answer. Streams with
  // content end with the gateway's error event, never silently.
  const [d, e] = await Promise.all([startNode('D'), startNode('E')]);
  const gwDir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-gw-sigterm-'));
  const gw = await startGateway({
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [{ url: d.baseUrl, name: 'D' }, { url: e.baseUrl, name: 'E' }],
    auth: 'none',
    affinity: false,
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    queue: { max_waiting: 64, timeout_ms: 30000 },
    retries: 2,
  }, gwDir);
  try {
    await waitFor(async () => {
      const h = await (await fetch(`${gw.baseUrl}/health`)).json();
      return h.upstreams.every((u) => u.state === 'up');
    }, 'both nodes up');
    const stream = async (i) => {
      const res = await fetch(`${gw.baseUrl}/v1/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: `stream ${i} tells a long story` }],
          max_tokens: 160, ignore_eos: true, temperature: 0, stream: true }),
        signal: AbortSignal.timeout(45000),
      });
      const text = await res.text();
      const events = text.split('\n\n').filter((x) => x.startsWith('data: ')).map((x) => x.slice(6));
      const chunks = events.filter((x) => x !== '[DONE]').map((x) => JSON.parse(x));
      return {
        status: res.status,
        upstream: res.headers.get('x-clawbot-upstream'),
        done: events.includes('[DONE]'),
        roles: chunks.filter((c) => c.choices?.[0]?.delta?.role).length,
        content: chunks.filter((c) => c.choices?.[0]?.delta?.content).length,
        errors: chunks.filter((c) => c.error),
      };
    };
    const pending = Array.from({ length: 12 }, (_, i) => stream(i));
    await waitFor(async () => {
      const h = await (await fetch(`${gw.baseUrl}/health`)).json();
      return h.upstreams.find((u) => u.name === 'D').in_flight >= 2;
    }, 'streams on D');
    d.proc.kill('SIGTERM');
    const results = await Promise.all(pending);
    for (const r of results) {
      assert.equal(r.status, 200, JSON.stringify(r));
      assert.equal(r.roles, 1, `not exactly one role chunk: ${JSON.stringify(r)}`);
      if (r.errors.length > 0) {
        // (The node's own "shutting down" event, or the gateway's upstream_failed_mid_stream.)
        assert.ok(r.content > 0, `a stream ended with its role chunk and an error only: ${JSON.stringify(r)}`);
      } else {
        assert.ok(r.done && r.content > 0, JSON.stringify(r));
      }
    }
    const cut = results.filter((r) => r.errors.length > 0).length;
    t.diagnostic(`${results.length} streams: ${cut} cut mid-way by the stop, the rest complete`);
  } finally {
    await gw.stop();
    await Promise.all([d.stop(), e.stop()]);
    fs.rmSync(gwDir, { recursive: true, force: true });
  }
});
