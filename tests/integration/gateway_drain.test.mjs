// `clawbot gateway` on SIGTERM drains: its listeners close (a new connection is refused), the eight streams in
// progress finish whole ([DONE], every word), and it exits 0; systemd's TimeoutStopSec leaves it the time.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { bearer, chat, createKey, request, sseData, startGateway, startUpstream, tempDir, waitUntil }
  from './gateway_helpers.mjs';

const dir = tempDir('clawbot-gw-drain-');
after(() => fs.rmSync(dir, { recursive: true, force: true }));

test('SIGTERM during 8 streams: they finish, new connections are refused, exit 0', async () => {
  const words = Array.from({ length: 10 }, (_, i) => ` w${i}`);
  const up = await startUpstream({ words, chunkDelayMs: 300 });
  const gateway = await startGateway({ listen: [{ host: '127.0.0.1', port: 0 }], upstreams: [{ url: up.url, name: 'up' }],
    keys_db: 'gateway.db', threads: 2 }, { dir });
  try {
    const { key } = await createKey(gateway.config, 'drain');
    const streams = Array.from({ length: 8 }, (_, i) =>
      request(`${gateway.url}/v1/chat/completions`, { headers: bearer(key), body: chat(`stream ${i}`, { stream: true }), timeoutMs: 30000 }));
    const chats = () => up.requests.filter((r) => r.url === '/v1/chat/completions').length;
    assert.ok(await waitUntil(() => chats() === 8, 10000), `${chats()} of 8 streams reached the upstream`);
    const exited = gateway.stop('SIGTERM');
    assert.ok(await waitUntil(() => /shutting down: finishing \d+ requests in progress/.test(gateway.stderr()), 5000), gateway.stderr());
    await assert.rejects(request(`${gateway.url}/health`, { timeoutMs: 2000 }), /ECONNREFUSED/, 'a new connection is refused');
    for (const r of await Promise.all(streams)) {
      assert.equal(r.status, 200, r.text);
      const events = sseData(r.text);
      assert.equal(events.at(-1), '[DONE]');
      const text = events.slice(0, -1).map((e) => JSON.parse(e).choices?.[0]?.delta?.content ?? '').join('');
      assert.equal(text, words.join(''), 'the whole answer arrived');
    }
    const { code, signal } = await exited;
    assert.equal(signal, null, gateway.stderr());
    assert.equal(code, 0, gateway.stderr());
    console.log(gateway.stderr().match(/shutting down: finishing \d+ requests in progress/)[0]);
  } finally {
    await gateway.stop('SIGKILL');
    await up.close();
  }
});
