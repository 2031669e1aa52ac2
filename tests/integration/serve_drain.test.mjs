// `clawbot serve` on SIGTERM during 8 streams (8 requests, 8 slots): new work is refused (503 `draining` on a
// kept-alive connection, a new connection refused), the 8 streams finish whole (finish_reason, [DONE], no error event), and the node exits 0.
// The clients read nothing until after the signal, so the answers cannot have ended before it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';

import { startServer } from './server_harness.mjs';

const CHAT = '/v1/chat/completions';
const body = (extra = {}) => JSON.stringify({ messages: [{ role: 'user', content: 'Tell a story' }], max_tokens: 4, ...extra });

function post(url, payload, agent) {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const req = http.request({ host: u.hostname, port: u.port, path: CHAT, method: 'POST', agent,
      headers: { 'content-type': 'application/json' } }, resolve);
    req.on('error', reject);
    req.end(payload);
  });
}
const readAll = (res) => new Promise((resolve, reject) => {
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (c) => { text += c; });
  res.on('end', () => resolve(text));
  res.on('error', reject);
  res.resume();  // a stream paused before
});

test('SIGTERM during 8 streams: new work is refused, the 8 finish whole, exit 0', { timeout: 180000 }, async () => {
  const server = await startServer({ extraArgs: ['--parallel', '8', '--ctx', '1024', '--drain-timeout', '120'] });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  try {
    const kept = await post(server.baseUrl, body(), agent);  // the kept-alive connection for after the signal
    await readAll(kept);
    const streams = await Promise.all(Array.from({ length: 8 }, () =>
      post(server.baseUrl, body({ stream: true, max_tokens: 900, ignore_eos: true }), false)));
    for (const res of streams) {
      assert.equal(res.statusCode, 200);
      res.pause();  // nothing read until after the signal
    }
    server.proc.kill('SIGTERM');
    // New work only once the node says it drains: a request that beat the signal would wait for a slot, and the
    // paused streams would then be cut as slow readers (their client reads nothing while another waits).
    for (let i = 0; i < 200 && !/shutting down: finishing/.test(server.stderr()); i++) await new Promise((r) => setTimeout(r, 50));
    // New work is refused: a 503 `draining` on a kept-alive connection, or no connection at all (the listener
    // is closed); never an answer.
    let refusal;
    for (let i = 0; i < 100 && !refusal; i++) {
      try {
        const r = await post(server.baseUrl, body(), agent);
        const text = await readAll(r);
        if (r.statusCode === 503) refusal = JSON.parse(text).error.code;
      } catch (e) {
        if (e.code === 'ECONNREFUSED') refusal = e.code;
        else throw e;
      }
      if (!refusal) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(refusal === 'draining' || refusal === 'ECONNREFUSED', `new work after SIGTERM: ${refusal}`);
    for (const res of streams) {
      const events = (await readAll(res)).split('\n\n').filter((e) => e.startsWith('data: ')).map((e) => e.slice(6));
      assert.equal(events.at(-1), '[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      assert.ok(!chunks.some((c) => c.error), `no error event: ${JSON.stringify(chunks.find((c) => c.error))}`);
      assert.equal(chunks.filter((c) => c.choices?.[0]?.finish_reason).length, 1);
    }
    const code = await new Promise((resolve) => (server.proc.exitCode !== null ? resolve(server.proc.exitCode) : server.proc.once('exit', resolve)));
    assert.equal(code, 0, server.stderr().slice(-2000));
    console.log(server.stderr().match(/shutting down: finishing \d+ requests in progress/)?.[0]);
  } finally {
    agent.destroy();
    await server.stop();
  }
});
