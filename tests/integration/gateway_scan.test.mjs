// The gateway's own reading of what passes through it (issue 16 items 1-3, 7, 14-15; issue 17's gateway
// edges): bodies no node may accept are refused before they go upstream, an upstream's hostile model list
// cannot take the gateway down, token limits hold against streams that hang up early and against parallel
// requests, every refused request is counted and recorded, /health tells details only to a key, and a
// model no upstream serves gets a 404 (or the default model). No model, no engine.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/gateway_scan.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import {
  bearer, createKey, keyId, request, sseData, startGateway, tempDir, waitUntil, writeGatewayConfig,
} from './gateway_helpers.mjs';

const root = tempDir('clawbot-gw-scan-');
const gateways = [];
const upstreams = [];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

after(async () => {
  await Promise.all(gateways.map((gw) => gw.stop('SIGKILL')));
  await Promise.all(upstreams.map((up) => up.close()));
  fs.rmSync(root, { recursive: true, force: true });
});

function folder(name) {
  const dir = path.join(root, name);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

/**
 * An OpenAI-like upstream (whose /health reports memory) whose streamed answers have `tokens` content chunks `chunkDelayMs` apart (then
 * usage, when asked: prompt 5, completion = the chunks sent), and whose /v1/models answer is `models`:
 * 'ok' (model `model`), 'deep' (100,000 levels) or 'huge' (5 MiB). Records every request but /health and
 * /v1/models in `requests`.
 */
async function fakeUpstream({ name, model = 'test-model', tokens = 30, chunkDelayMs = 5, models = 'ok' } = {}) {
  const requests = [];
  const sockets = new Set();
  const server = http.createServer(async (req, res) => {
    const parts = [];
    for await (const chunk of req) parts.push(chunk);
    const raw = Buffer.concat(parts);
    const url = new URL(req.url, 'http://x');
    const send = (code, value) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(typeof value === 'string' ? value : JSON.stringify(value));
    };
    if (url.pathname === '/health')
      return send(200, { status: 'ok', memory: { total_bytes: 1000, used_bytes: 400, detail: { x: 1 } } });
    if (url.pathname === '/v1/models') {
      if (models === 'deep') return send(200, `{"object":"list","data":${'['.repeat(100000)}${']'.repeat(100000)}}`);
      if (models === 'huge')
        return send(200, `{"object":"list","data":[{"id":"${'x'.repeat(5 << 20)}"}]}`);
      return send(200, { object: 'list', data: [{ id: model, object: 'model', owned_by: name, meta: { n_ctx: 2048 } }] });
    }
    let body = null;
    try {
      body = JSON.parse(raw.toString('utf8'));
    } catch {
      body = raw.toString('latin1');
    }
    requests.push({ method: req.method, url: req.url, body, bytes: raw.length });
    if (req.method !== 'POST' || url.pathname !== '/v1/chat/completions')
      return send(404, { error: { message: 'no such route', type: 'invalid_request_error', code: 'not_found' } });
    const n = Math.min(tokens, body?.max_tokens ?? tokens);
    const common = { id: `chatcmpl-${requests.length}`, object: 'chat.completion.chunk', created: 1, model: body?.model };
    if (!body?.stream) {
      return send(200, { ...common, object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: 'a'.repeat(n) }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } });
    }
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const event = (value) => res.write(`data: ${JSON.stringify(value)}\n\n`);
    event({ ...common, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    for (let i = 0; i < n; ++i) {
      if (chunkDelayMs > 0) await sleep(chunkDelayMs);
      if (res.destroyed) return;
      event({ ...common, choices: [{ index: 0, delta: { content: 't' }, finish_reason: null }] });
    }
    event({ ...common, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    if (body.stream_options?.include_usage === true)
      event({ ...common, choices: [], usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } });
    res.end('data: [DONE]\n\n');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const up = {
    name,
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    chats: () => requests.filter((r) => r.url === '/v1/chat/completions'),
    close: () => new Promise((resolve) => {
      for (const s of sockets) s.destroy();
      server.close(() => resolve());
    }),
  };
  upstreams.push(up);
  return up;
}

/** A gateway in front of `ups` with its own folder, a key (tpm `tpm` when given), fast health checks. */
async function gatewayFor(name, ups, extra = {}, { tpm } = {}) {
  const dir = folder(name);
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: ups.map((u) => ({ url: u.url, name: u.name })),
    health_checks: { interval_ms: 200, timeout_ms: 1000 },
    audit_log: 'audit.log',
    ...extra,
  };
  const file = writeGatewayConfig(dir, config);
  const { key } = await createKey(file, 'k', tpm === undefined ? {} : { tpm });
  const { key: key2 } = await createKey(file, 'k2');
  const gw = await startGateway(config, { dir });
  gateways.push(gw);
  gw.key = key;
  gw.key2 = key2;  // for requests a test finds by key in the audit log
  gw.dir = dir;
  return gw;
}

/** Waits until the gateway lists `model` (its first health checks and model lists are in). */
async function waitForModel(gw, model) {
  const listed = await waitUntil(async () => {
    const r = await request(`${gw.url}/v1/models`, { headers: bearer(gw.key) });
    return r.json?.data?.some((m) => m.id === model);
  }, 5000);
  assert.ok(listed, `the gateway never listed ${model}\n${gw.stderr()}`);
}

/**
 * The audit log's records that `keep` selects, once there are `count` of them (the writer flushes at least
 * every second), or after 5 s.
 */
async function auditRecords(gw, keep, count) {
  const file = path.join(gw.dir, 'audit.log');
  let records = [];
  await waitUntil(() => {
    records = fs.existsSync(file)
      ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)).filter(keep) : [];
    return records.length >= count;
  }, 5000, 50);
  return records;
}

/** A metric's value in the gateway's /metrics text (0 when the series is absent). */
async function metric(gw, name, labels = '') {
  const r = await request(`${gw.url}/metrics`, { headers: bearer(gw.key) });
  assert.equal(r.status, 200, r.text);
  const escaped = (name + labels).replace(/[{}"\\.]/g, '\\$&');
  const m = new RegExp(`^${escaped} (\\S+)$`, 'm').exec(r.text);
  return m ? Number(m[1]) : 0;
}

/** The error body's fields, after checking its shape. */
function errorOf(r, status) {
  assert.equal(r.status, status, `status ${r.status}: ${r.text.slice(0, 400)}`);
  assert.ok(r.json?.error && typeof r.json.error.message === 'string', r.text.slice(0, 400));
  return r.json.error;
}

/**
 * A streamed chat request that reads until it has `hangUpAfter` content chunks (then destroys the
 * connection) or the stream ends. Resolves { status, tokens, error }: tokens is the content chunks received.
 */
function streamChat(gw, { hangUpAfter = Infinity, maxTokens } = {}) {
  const body = JSON.stringify({ model: 'test-model', stream: true, messages: [{ role: 'user', content: 'hi' }],
    ...(maxTokens === undefined ? {} : { max_tokens: maxTokens }) });
  const target = new URL('/v1/chat/completions', gw.url);
  return new Promise((resolve, reject) => {
    const req = http.request(target, { method: 'POST', agent: false,
      headers: { 'content-type': 'application/json', ...bearer(gw.key) } }, (res) => {
      let text = '';
      let tokens = 0;
      let done = false;
      const end = () => {
        if (done) return;
        done = true;
        resolve({ status: res.statusCode, tokens, text });
      };
      res.setEncoding('utf8');
      res.on('data', (c) => {
        text += c;
        if (res.statusCode !== 200) return;
        tokens = sseData(text).filter((d) => d.startsWith('{'))
          .map((d) => JSON.parse(d)).filter((e) => e.choices?.[0]?.delta?.content).length;
        if (tokens >= hangUpAfter) {
          req.destroy();
          end();
        }
      });
      res.on('end', end);
      res.on('error', () => end());
      res.on('close', end);
    });
    req.on('error', (e) => (e.code === 'ECONNRESET' ? undefined : reject(e)));
    req.end(body);
  });
}

// ---------------------------------------------------------------------------------- bodies no node accepts

describe('request bodies no node may accept are refused at the gateway (issue 16, items 1-2, 14-15)', () => {
  let up;
  let gw;
  before(async () => {
    up = await fakeUpstream({ name: 'scan-up' });
    gw = await gatewayFor('bodies', [up]);
    await waitForModel(gw, 'test-model');
  });

  const chatUrl = () => `${gw.url}/v1/chat/completions`;

  test('100,000 [ then ]: 400 json_too_deep naming the limit; the upstream never sees it; the gateway lives',
    async () => {
      const deep = '['.repeat(100000) + ']'.repeat(100000);
      for (const body of [deep, `{"model":"test-model","messages":${deep}}`]) {
        // With a JSON content type, and as curl -d sends it: the node reads it as JSON either way.
        for (const type of ['application/json', 'application/x-www-form-urlencoded']) {
          const e = errorOf(await request(chatUrl(), { body, headers: { ...bearer(gw.key), 'content-type': type } }), 400);
          assert.equal(e.code, 'json_too_deep', JSON.stringify(e));
          assert.equal(e.type, 'invalid_request_error');
          assert.match(e.message, /128/);
        }
      }
      assert.equal(up.chats().length, 0, 'a body too deep for any node reached the upstream');
      assert.equal((await request(`${gw.url}/health`)).status, 200);
    });

  test('invalid JSON and numbers out of range: 400 naming the problem, never forwarded', async () => {
    const cases = [
      ['{"model":"test-model","temperature":1e999}', /1e999/],
      ['{"model":"test-model",', /not valid JSON/],
      ['{"model":"test-model"} trailing', /not valid JSON/],
      ['[1,2]', /must be a JSON object/],
    ];
    for (const [body, message] of cases) {
      const e = errorOf(await request(chatUrl(), { body, headers: bearer(gw.key) }), 400);
      assert.match(e.message, message, body);
    }
    assert.equal(up.chats().length, 0);
  });

  test('duplicated stream_options, a lone \\ud800 or invalid UTF-8 with stream_options, include_usage "x": ' +
    '400, counted in requests_total and the audit log, requests_in_flight back where it was', async () => {
    const inFlightBefore = await metric(gw, 'clawbot_gateway_requests_in_flight');
    const status400Before = await metric(gw, 'clawbot_gateway_requests_total',
      '{route="/v1/chat/completions",status="400"}');
    const start = '{"model":"test-model","stream":true,';
    const bodies = [
      [`${start}"stream_options":{"include_usage":false},"stream_options":{"include_usage":true},"messages":[]}`,
        'stream_options', /twice/],
      [`${start}"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"\\ud800"}]}`,
        undefined, /not valid JSON/],
      [Buffer.concat([Buffer.from(`${start}"stream_options":{},"messages":[{"role":"user","content":"`),
        Buffer.from([0xff, 0xfe]), Buffer.from('"}]}')]), undefined, /not valid JSON/],
      [`${start}"stream_options":{"include_usage":"x"},"messages":[]}`, 'stream_options.include_usage',
        /'stream_options\.include_usage' must be a boolean, got "x"/],
    ];
    for (const [body, param, message] of bodies) {
      const e = errorOf(await request(chatUrl(), { body, headers: bearer(gw.key2) }), 400);
      assert.match(e.message, message);
      if (param) assert.equal(e.param, param);
    }
    assert.equal(up.chats().length, 0, 'a refused body reached the upstream');
    assert.equal(await metric(gw, 'clawbot_gateway_requests_in_flight'), inFlightBefore);
    assert.equal(await metric(gw, 'clawbot_gateway_requests_total', '{route="/v1/chat/completions",status="400"}'),
      status400Before + bodies.length);
    const refused = await auditRecords(gw, (r) => r.key_id === keyId(gw.key2), bodies.length);
    assert.deepEqual(refused.map((r) => [r.route, r.status]),
      bodies.map(() => ['POST /v1/chat/completions', 400]));
  });

  test('a valid body still passes, with usage asked for upstream and dropped on the way back', async () => {
    const r = await request(chatUrl(), { headers: bearer(gw.key),
      body: { model: 'test-model', stream: true, stream_options: null, max_tokens: 3, messages: [] } });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(up.chats().at(-1).body.stream_options, { include_usage: true });
    assert.ok(sseData(r.text).filter((d) => d.startsWith('{')).every((d) => !JSON.parse(d).usage), r.text);
  });
});

// ---------------------------------------------------------------------------------- hostile upstream answers

describe('an upstream\'s /v1/models answer is untrusted (issue 16, item 3)', () => {
  for (const models of ['deep', 'huge']) {
    test(`a ${models} model list does not take the gateway down; /health marks it unreadable`, async () => {
      const good = await fakeUpstream({ name: 'good', model: 'good-model' });
      const evil = await fakeUpstream({ name: `evil-${models}`, models });
      const gw = await gatewayFor(`models-${models}`, [good, evil]);
      await waitForModel(gw, 'good-model');
      const marked = await waitUntil(async () => {
        const h = await request(`${gw.url}/health`, { headers: bearer(gw.key) });
        return h.json?.upstreams?.find((u) => u.name === evil.name)?.models_error;
      }, 5000);
      assert.ok(marked, `the evil upstream's models were never marked unreadable\n${gw.stderr()}`);
      assert.match(marked, models === 'deep' ? /json_too_deep/ : /json_too_large/);
      // Several health rounds later it still runs, and serves.
      await sleep(600);
      assert.equal(gw.proc.exitCode, null, gw.stderr());
      assert.equal(gw.proc.signalCode, null, gw.stderr());
      const r = await request(`${gw.url}/v1/chat/completions`, { headers: bearer(gw.key),
        body: { model: 'good-model', messages: [], max_tokens: 2 } });
      assert.equal(r.status, 200, r.text);
      const listed = await request(`${gw.url}/v1/models`, { headers: bearer(gw.key) });
      assert.deepEqual(listed.json.data.map((m) => m.id), ['good-model']);
      assert.deepEqual(listed.json.data[0].meta, { n_ctx: 2048 });
    });
  }
});

// ---------------------------------------------------------------------------------- token limits

describe('token limits hold against early hang-ups and parallel requests (issue 16, item 7)', () => {
  const limit = 50;

  test('streams that hang up before the usage chunk are charged what they got; the audit log says so', async () => {
    const up = await fakeUpstream({ name: 'hangup-up', tokens: 30, chunkDelayMs: 5 });
    const gw = await gatewayFor('hangup', [up], {}, { tpm: limit });
    await waitForModel(gw, 'test-model');
    // The attack: stream, take 12 tokens, hang up before the last chunk; again and again.
    let delivered = 0;
    let refused = 0;
    const statuses = [];
    for (let i = 0; i < 8; ++i) {
      const r = await streamChat(gw, { hangUpAfter: 12 });
      statuses.push(r.status);
      if (r.status === 429) {
        ++refused;
        continue;
      }
      assert.equal(r.status, 200, r.text);
      delivered += r.tokens;
    }
    assert.ok(refused > 0, `no request was refused: ${statuses}`);
    // Within the limit, but for the one request whose reservation took the last room (at most 30 tokens).
    assert.ok(delivered <= limit + 30, `${delivered} tokens delivered under a limit of ${limit}: ${statuses}`);
    const records = await auditRecords(gw, (r) => r.route === 'POST /v1/chat/completions', statuses.length);
    assert.equal(records.length, statuses.length, JSON.stringify(records));
    const leftEarly = records.filter((r) => r.status === 499);
    assert.ok(leftEarly.length > 0, JSON.stringify(records));
    for (const r of leftEarly) assert.ok(r.tokens_out >= 12, `a hung-up stream recorded as ${JSON.stringify(r)}`);
    assert.equal(records.filter((r) => r.status === 429).length, refused);
  });

  test('parallel requests reserve what they may use: together they stay within the limit', async () => {
    const up = await fakeUpstream({ name: 'parallel-up', tokens: 30, chunkDelayMs: 10 });
    const gw = await gatewayFor('parallel', [up], {}, { tpm: limit });
    await waitForModel(gw, 'test-model');
    const results = await Promise.all(Array.from({ length: 8 }, () => streamChat(gw, { maxTokens: 30 })));
    const served = results.filter((r) => r.status === 200);
    const delivered = served.reduce((sum, r) => sum + r.tokens, 0);
    assert.ok(served.length >= 1, JSON.stringify(results.map((r) => r.status)));
    assert.ok(results.some((r) => r.status === 429), JSON.stringify(results.map((r) => r.status)));
    assert.ok(delivered <= limit + 30, `${delivered} tokens delivered to parallel requests under a limit of ${limit}`);
    const e = JSON.parse(results.find((r) => r.status === 429).text).error;
    assert.match(e.message, /tokens per minute: \d+ used( and \d+ reserved by running requests)? of 50/);
  });
});

// ---------------------------------------------------------------------------------- /health, models

describe('/health tells details only to a key; unknown models get a 404 or the default model (issue 17)', () => {
  let up;
  let gw;
  before(async () => {
    up = await fakeUpstream({ name: 'edge-up', model: 'test-model' });
    gw = await gatewayFor('edges', [up]);
    await waitForModel(gw, 'test-model');
  });

  test('without a key (or with a wrong one) /health says only up or down; with one, every detail', async () => {
    for (const headers of [{}, bearer('cbk_000000000000_wrongwrongwrongwrongwrongwrongwr')]) {
      const open = await request(`${gw.url}/health`, { headers });
      assert.equal(open.status, 200, open.text);
      assert.deepEqual(open.json, { status: 'ok', role: 'gateway' });
      assert.equal(open.text.includes(up.url.slice(7)), false, 'an upstream address was shown without a key');
    }
    const full = await request(`${gw.url}/health`, { headers: bearer(gw.key) });
    assert.equal(full.status, 200, full.text);
    assert.equal(full.json.status, 'ok');
    assert.equal(full.json.role, 'gateway');
    assert.equal(full.json.queue, 0);
    const [u] = full.json.upstreams;
    assert.deepEqual(Object.keys(u).sort(),
      ['in_flight', 'memory', 'models', 'name', 'serving', 'standby', 'state', 'url']);
    assert.equal(u.url, up.url);
    assert.deepEqual(u.models, ['test-model']);
    assert.deepEqual(u.memory, { total_bytes: 1000, used_bytes: 400 }, 'the memory the node reports, numbers only');
  });

  test('a model no upstream serves: 404 model_not_found naming it and the models served; never forwarded',
    async () => {
      const before = up.chats().length;
      const r = await request(`${gw.url}/v1/chat/completions`, { headers: bearer(gw.key),
        body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } });
      const e = errorOf(r, 404);
      assert.equal(e.code, 'model_not_found');
      assert.equal(e.param, 'model');
      assert.match(e.message, /"gpt-4o" is not served by this gateway; it serves: test-model/);
      assert.equal(up.chats().length, before);
      // A request without a model goes through, as before.
      const none = await request(`${gw.url}/v1/chat/completions`, { headers: bearer(gw.key),
        body: { messages: [], max_tokens: 2 } });
      assert.equal(none.status, 200, none.text);
    });

  test('with "default_model", an unknown name is answered by the default model', async () => {
    const gwDefault = await gatewayFor('default-model', [up], { default_model: 'test-model' });
    await waitForModel(gwDefault, 'test-model');
    const r = await request(`${gwDefault.url}/v1/chat/completions`, { headers: bearer(gwDefault.key),
      body: { model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2 } });
    assert.equal(r.status, 200, r.text);
    assert.equal(up.chats().at(-1).body.model, 'test-model');
    assert.equal(r.json.model, 'test-model');
  });

  test('"1 upstream, 1 thread" in the start line', () => {
    assert.match(gw.stdout(), /\(1 upstream, 1 thread, auth keys\)/);
  });
});
