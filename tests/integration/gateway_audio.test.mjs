// Speech to text through the gateway (issue 23): audio goes to the node that lists a speech model in
// /v1/models (meta.task "transcription"), not to a chat-only node; with an API key; the audit log records the
// request with its audio seconds, and its chain verifies.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer } from './server_harness.mjs';
import { tempDir, startGateway, createKey, writeGatewayConfig, runClawbotCommand, waitUntil, bearer } from './gateway_helpers.mjs';
import { whisperModel, speechFiles, form } from './audio_helpers.mjs';
import { connectWs } from './ws_mini.mjs';
import { execFileSync } from 'node:child_process';

describe('gateway: audio to the node with a whisper model', () => {
  let chatOnly;
  let speech;
  let gw;
  let dir;
  let files;
  let key;
  let liveSeconds;
  before(async () => {
    files = speechFiles();
    chatOnly = await startServer();
    speech = await startServer({ extraArgs: ['--whisper-model', whisperModel(), '--threads', '2'] });
    dir = tempDir('clawbot-gw-audio-');
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      // the chat-only node first: a request that went by order would land there
      upstreams: [{ url: chatOnly.baseUrl, name: 'chat-only' }, { url: speech.baseUrl, name: 'speech' }],
      health_checks: { interval_ms: 200, timeout_ms: 2000 },
      audit_log: 'audit.log',
    };
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'transcriber'));
    gw = await startGateway(config, { dir });
    const ready = await waitUntil(async () => {
      const r = await fetch(`${gw.url}/v1/models`, { headers: bearer(key) });
      const body = await r.json();
      return r.status === 200 && body.data?.some((m) => m.meta?.task === 'transcription');
    }, 15000, 100);
    assert.ok(ready, `the gateway never listed the speech model\n${gw.stderr()}`);
  });
  after(async () => {
    if (gw) await gw.stop();
    if (chatOnly) await chatOnly.stop();
    if (speech) await speech.stop();
    if (files) fs.rmSync(files.dir, { recursive: true, force: true });
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('live: the WebSocket is relayed to the speech node, whose messages and close come back', { timeout: 180000 }, async () => {
    const raw = path.join(files.dir, 'spoken16k.raw');
    execFileSync('sox', [files.wav, '-r', '16000', '-c', '1', '-b', '16', '-e', 'signed-integer', '-t', 'raw', raw]);
    const pcm = fs.readFileSync(raw);
    liveSeconds = pcm.length / 32000;
    const ws = await connectWs(`${gw.url.replace('http://', 'ws://')}/v1/audio/live?language=en`, { headers: bearer(key) });
    assert.equal(ws.status, 101, ws.body);
    assert.equal(ws.headers['x-clawbot-upstream'], 'speech');
    for (let at = 0; at < pcm.length; at += 3200) ws.send(pcm.subarray(at, at + 3200));
    ws.send(JSON.stringify({ type: 'stop' }));
    const types = [];
    let done;
    for (;;) {
      const m = await ws.next();
      assert.ok(m, `the session ended before "done": ${JSON.stringify(await ws.closed)}`);
      const msg = JSON.parse(m.data);
      types.push(msg.type);
      if (msg.type === 'done') { done = msg; break; }
    }
    assert.ok(types.includes('final'), types.join(','));
    // (the node counts whole 30 ms frames)
    assert.ok(Math.abs(done.audio_seconds - liveSeconds) < 0.05, `${done.audio_seconds} vs ${liveSeconds}`);
    assert.deepEqual(await ws.closed, { code: 1000, reason: '' }, 'the node\'s close passes through');
  });

  test('with a key, every transcription goes to the speech node; the audit log has its audio seconds', { timeout: 180000 }, async () => {
    const post = (headers) => fetch(`${gw.url}/v1/audio/transcriptions`, {
      method: 'POST', headers, body: form({ model: 'whisper-1', response_format: 'srt', temperature: '0.2' }, fs.readFileSync(files.wav)) });
    assert.equal((await post({})).status, 401);
    for (let i = 0; i < 3; i++) {
      const res = await post(bearer(key));
      assert.equal(res.status, 200, await res.clone().text());
      assert.match(await res.text(), /^1\n00:00:/);
    }
    const stopped = await gw.stop('SIGTERM');
    gw = undefined;
    assert.equal(stopped.code, 0);
    const records = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l));
    const audio = records.filter((r) => r.route === 'POST /v1/audio/transcriptions' && r.status === 200);
    assert.equal(audio.length, 3, JSON.stringify(records));
    for (const r of audio) {
      assert.equal(r.upstream, 'speech');
      assert.ok(Math.abs(r.audio_seconds - files.seconds) < 0.01, `${r.audio_seconds} vs ${files.seconds}`);
      assert.ok(r.model.startsWith('clawbot-test-whisper-tiny'), r.model);
    }
    const live = records.filter((r) => r.route === 'GET /v1/audio/live');
    assert.equal(live.length, 1, JSON.stringify(records));
    assert.equal(live[0].status, 101);
    assert.equal(live[0].upstream, 'speech');
    // what the client sent, from the frames' bytes (the log keeps milliseconds)
    assert.ok(Math.abs(live[0].audio_seconds - liveSeconds) < 0.001, `${live[0].audio_seconds} vs ${liveSeconds}`);
    const verified = await runClawbotCommand(['gateway', 'audit', 'verify', '--config', path.join(dir, 'gateway.json')]);
    assert.equal(verified.code, 0, verified.stdout + verified.stderr);
  });
});
