// Issue 19, item 8: every protocol's routes through a real `clawbot gateway` with keys and an audit log, in
// front of an upstream that speaks them all (Responses, Anthropic Messages, Ollama, rerank) with known usage:
// each route works with a key and is 401 without one; the tokens counted for the key (the audit log's
// tokens_in / tokens_out) are the answer's own usage, whole and streamed; Ollama's NDJSON streams pass line
// by line (never buffered whole); /api/tags merges the upstreams' models. No model, no engine.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/gateway_protocols.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { createKey, keyId, request, sseData, startGateway, tempDir, waitUntil, writeGatewayConfig } from './gateway_helpers.mjs';

// Each route's usage, in its own protocol's words, and the counts it stands for.
const USAGE = {
  '/v1/responses': { in: 11, out: 5 },
  '/v1/messages': { in: 13, out: 6 },
  '/v1/messages/count_tokens': { in: 13, out: 0, metered: { in: 0, out: 0 } },  // counting is not generating
  '/api/chat': { in: 17, out: 7 },
  '/api/generate': { in: 19, out: 8 },
  '/api/embed': { in: 3, out: 0 },
  '/v1/rerank': { in: 9, out: 0 },
};
const WORDS = ['Hello', ' from', ' every', ' protocol'];

/**
 * An upstream that answers each protocol as its servers do. `gates` holds, per route, a promise an NDJSON
 * stream waits on after its first line (so that a test can check the line arrived before the rest exists).
 */
async function startProtocolUpstream(name, model) {
  const requests = [];
  const gates = {};
  const server = http.createServer(async (req, res) => {
    let text = '';
    req.setEncoding('utf8');
    for await (const chunk of req) text += chunk;
    const body = text ? JSON.parse(text) : null;
    const url = new URL(req.url, 'http://x').pathname;
    const send = (code, value) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (url === '/health') return send(200, { status: 'ok' });
    if (url === '/v1/models') {
      return send(200, { object: 'list', data: [{ id: model, object: 'model', owned_by: name, created: 1700000000,
        meta: { architecture: 'llama', n_params: 292000, size: 1185376 } }] });
    }
    requests.push({ url, headers: req.headers, body });
    const u = USAGE[url];
    const sse = () => res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (type, data) => res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
    if (url === '/v1/responses') {
      const usage = { input_tokens: u.in, input_tokens_details: { cached_tokens: 0 }, output_tokens: u.out,
        output_tokens_details: { reasoning_tokens: 0 }, total_tokens: u.in + u.out };
      const done = { id: 'resp_1', object: 'response', status: 'completed', model,
        output: [{ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: WORDS.join('') }] }], usage };
      if (!body.stream) return send(200, done);
      sse();
      event('response.created', { type: 'response.created', response: { ...done, status: 'in_progress', usage: null } });
      for (const w of WORDS) event('response.output_text.delta', { type: 'response.output_text.delta', delta: w });
      event('response.completed', { type: 'response.completed', response: done });
      return res.end();
    }
    if (url === '/v1/messages') {
      const message = { id: 'msg_1', type: 'message', role: 'assistant', model,
        content: [{ type: 'text', text: WORDS.join('') }], stop_reason: 'end_turn',
        usage: { input_tokens: u.in, cache_read_input_tokens: 0, output_tokens: u.out } };
      if (!body.stream) return send(200, message);
      sse();
      event('message_start', { type: 'message_start',
        message: { ...message, content: [], stop_reason: null, usage: { input_tokens: u.in, output_tokens: 1 } } });
      event('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
      for (const w of WORDS)
        event('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: w } });
      event('content_block_stop', { type: 'content_block_stop', index: 0 });
      event('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: u.out } });
      event('message_stop', { type: 'message_stop' });
      return res.end();
    }
    if (url === '/v1/messages/count_tokens') return send(200, { input_tokens: u.in });
    if (url === '/v1/rerank') {
      return send(200, { model, results: [{ index: 0, relevance_score: 0.9 }],
        usage: { prompt_tokens: u.in, total_tokens: u.in } });
    }
    if (url === '/api/embed') return send(200, { model, embeddings: [[0.1, 0.2]], prompt_eval_count: u.in });
    if (url === '/api/chat' || url === '/api/generate') {
      const piece = (w) => (url === '/api/chat' ? { message: { role: 'assistant', content: w } } : { response: w });
      const last = { model, created_at: new Date().toISOString(), ...piece(''), done: true, done_reason: 'stop',
        total_duration: 1000, load_duration: 0, prompt_eval_count: u.in, prompt_eval_duration: 10, eval_count: u.out,
        eval_duration: 20 };
      if (body.stream === false) return send(200, { ...last, ...piece(WORDS.join('')) });
      res.writeHead(200, { 'content-type': 'application/x-ndjson' });
      const line = (value) => res.write(JSON.stringify(value) + '\n');
      line({ model, created_at: new Date().toISOString(), ...piece(WORDS[0]), done: false });
      if (gates[url]) await gates[url];
      // The rest in one write, split mid-line: the gateway must pass whole lines.
      const rest = WORDS.slice(1).map((w) => JSON.stringify({ model, ...piece(w), done: false }) + '\n').join('');
      const tail = rest + JSON.stringify(last) + '\n';
      res.write(tail.slice(0, 10));
      return res.end(tail.slice(10));
    }
    send(404, { error: `no route ${url}` });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { url: `http://127.0.0.1:${server.address().port}`, name, requests, gates,
    close: () => new Promise((resolve) => { server.closeAllConnections?.(); server.close(() => resolve()); }) };
}

/** A request whose answer's chunks are handed to `onChunk` as they arrive. */
function streamRequest(url, { headers, body, onChunk }) {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c) => { text += c; onChunk?.(text); });
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text }));
        res.on('error', reject);
      });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

const root = tempDir('clawbot-gw-protocols-');
let up;
let up2;
let gw;
let key;
let dir;
const bearer = () => ({ authorization: `Bearer ${key}` });
const sent = []; // [route, expected usage] in the order the requests were sent

before(async () => {
  up = await startProtocolUpstream('proto-up', 'proto-model');
  up2 = await startProtocolUpstream('proto-up2', 'other-model');
  dir = path.join(root, 'gw');
  fs.mkdirSync(dir);
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [{ url: up.url, name: up.name }, { url: up2.url, name: up2.name }],
    health_checks: { interval_ms: 200, timeout_ms: 500 },
    audit_log: 'audit.log',
  };
  ({ key } = await createKey(writeGatewayConfig(dir, config), 'protocols'));
  gw = await startGateway(config, { dir });
  const ready = await waitUntil(async () => {
    const r = await request(`${gw.url}/api/tags`, { headers: bearer() });
    return r.status === 200 && r.json.models.length === 2;
  }, 5000);
  assert.ok(ready, `the gateway never listed both upstreams' models\n${gw.stderr()}`);
});

after(async () => {
  await gw?.stop('SIGKILL');
  await up?.close();
  await up2?.close();
  fs.rmSync(root, { recursive: true, force: true });
});

describe('each protocol through the gateway with a key', () => {
  test('/v1/responses whole and streamed; no stream_options added for it', async () => {
    const whole = await request(`${gw.url}/v1/responses`, { headers: bearer(), body: { model: 'proto-model', input: 'hi' } });
    assert.equal(whole.status, 200, whole.text);
    assert.equal(whole.json.usage.input_tokens, USAGE['/v1/responses'].in);
    sent.push(['/v1/responses', USAGE['/v1/responses']]);
    const streamed = await request(`${gw.url}/v1/responses`,
      { headers: bearer(), body: { model: 'proto-model', input: 'hi', stream: true } });
    assert.equal(streamed.status, 200, streamed.text);
    const events = sseData(streamed.text).map((d) => JSON.parse(d));
    assert.equal(events.at(-1).type, 'response.completed');
    assert.equal(events.filter((e) => e.type === 'response.output_text.delta').map((e) => e.delta).join(''), WORDS.join(''));
    sent.push(['/v1/responses', USAGE['/v1/responses']]);
    const got = up.requests.filter((r) => r.url === '/v1/responses').at(-1);
    assert.equal(got.body.stream_options, undefined, 'the gateway added OpenAI\'s stream_options to a Responses request');
  });

  test('/v1/messages with x-api-key (as Anthropic clients send it), whole and streamed; count_tokens', async () => {
    const body = { model: 'proto-model', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] };
    const headers = { 'x-api-key': key, 'anthropic-version': '2023-06-01' };
    const whole = await request(`${gw.url}/v1/messages`, { headers, body });
    assert.equal(whole.status, 200, whole.text);
    assert.equal(whole.json.usage.output_tokens, USAGE['/v1/messages'].out);
    sent.push(['/v1/messages', USAGE['/v1/messages']]);
    const streamed = await request(`${gw.url}/v1/messages`, { headers, body: { ...body, stream: true } });
    assert.equal(streamed.status, 200, streamed.text);
    assert.match(streamed.text, /event: message_start\n/);
    assert.equal(sseData(streamed.text).map((d) => JSON.parse(d)).at(-1).type, 'message_stop');
    sent.push(['/v1/messages', USAGE['/v1/messages']]);
    const count = await request(`${gw.url}/v1/messages/count_tokens`, { headers, body });
    assert.equal(count.status, 200, count.text);
    assert.equal(count.json.input_tokens, USAGE['/v1/messages/count_tokens'].in);
    sent.push(['/v1/messages/count_tokens', USAGE['/v1/messages/count_tokens']]);
  });

  test('/api/chat streams NDJSON by default, line by line as the upstream writes it', { timeout: 20000 }, async () => {
    let release;
    up.gates['/api/chat'] = new Promise((r) => { release = r; });
    // The upstream holds the rest of its answer until the client has the first line: a gateway that
    // buffered the stream would never deliver it (and this test would time out).
    const r = await streamRequest(`${gw.url}/api/chat`, {
      headers: bearer(),
      body: { model: 'proto-model:latest', messages: [{ role: 'user', content: 'hi' }] },
      onChunk: (text) => { if (text.includes('\n')) release(); },
    });
    delete up.gates['/api/chat'];
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers['content-type'], /^application\/x-ndjson/);
    assert.ok(r.text.endsWith('\n'));
    const lines = r.text.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.map((l) => l.message.content).join(''), WORDS.join(''));
    assert.equal(lines.at(-1).done, true);
    assert.equal(lines.at(-1).eval_count, USAGE['/api/chat'].out);
    assert.equal(up.requests.filter((q) => q.url === '/api/chat').at(-1).body.stream_options, undefined);
    sent.push(['/api/chat', USAGE['/api/chat']]);
  });

  test('/api/chat and /api/generate with stream:false; /api/generate streamed; /api/embed; /v1/rerank', async () => {
    const chat = await request(`${gw.url}/api/chat`,
      { headers: bearer(), body: { model: 'proto-model', stream: false, messages: [{ role: 'user', content: 'hi' }] } });
    assert.equal(chat.status, 200, chat.text);
    assert.equal(chat.json.message.content, WORDS.join(''));
    sent.push(['/api/chat', USAGE['/api/chat']]);
    const gen = await request(`${gw.url}/api/generate`, { headers: bearer(), body: { model: 'proto-model', prompt: 'hi', stream: false } });
    assert.equal(gen.status, 200, gen.text);
    assert.equal(gen.json.prompt_eval_count, USAGE['/api/generate'].in);
    sent.push(['/api/generate', USAGE['/api/generate']]);
    const genStream = await request(`${gw.url}/api/generate`, { headers: bearer(), body: { model: 'proto-model', prompt: 'hi' } });
    assert.equal(genStream.status, 200, genStream.text);
    assert.equal(genStream.text.trimEnd().split('\n').map((l) => JSON.parse(l).response).join(''), WORDS.join(''));
    sent.push(['/api/generate', USAGE['/api/generate']]);
    const embed = await request(`${gw.url}/api/embed`, { headers: bearer(), body: { model: 'proto-model', input: 'hi' } });
    assert.equal(embed.status, 200, embed.text);
    sent.push(['/api/embed', USAGE['/api/embed']]);
    const rerank = await request(`${gw.url}/v1/rerank`,
      { headers: bearer(), body: { model: 'proto-model', query: 'q', documents: ['a'] } });
    assert.equal(rerank.status, 200, rerank.text);
    sent.push(['/v1/rerank', USAGE['/v1/rerank']]);
  });

  test('/api/tags merges the upstreams\' models; /api/ps lists them; /api/version is numeric', async () => {
    const tags = await request(`${gw.url}/api/tags`, { headers: bearer() });
    assert.equal(tags.status, 200, tags.text);
    const byName = Object.fromEntries(tags.json.models.map((m) => [m.name, m]));
    assert.deepEqual(Object.keys(byName).sort(), ['other-model:latest', 'proto-model:latest']);
    assert.deepEqual(byName['proto-model:latest'].upstreams, ['proto-up']);
    assert.equal(byName['proto-model:latest'].details.family, 'llama');
    assert.equal(byName['proto-model:latest'].details.parameter_size, '292.00K');
    assert.equal(byName['proto-model:latest'].size, 1185376);
    assert.ok(!Number.isNaN(Date.parse(byName['proto-model:latest'].modified_at)));
    const ps = await request(`${gw.url}/api/ps`, { headers: bearer() });
    assert.equal(ps.status, 200, ps.text);
    assert.equal(ps.json.models.length, 2);
    assert.ok(!Number.isNaN(Date.parse(ps.json.models[0].expires_at)));
    const version = await request(`${gw.url}/api/version`, { headers: bearer() });
    assert.equal(version.status, 200, version.text);
    assert.match(version.json.version, /^\d+\.\d+\.\d+$/);
  });

  test('"other-model:latest" goes to the upstream that serves "other-model"', async () => {
    const r = await request(`${gw.url}/api/embed`, { headers: bearer(), body: { model: 'other-model:latest', input: 'x' } });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.headers['x-clawbot-upstream'], 'proto-up2');
    sent.push(['/api/embed', USAGE['/api/embed']]);
  });

  test('without a key: 401 in each protocol\'s error shape', async () => {
    const ollama = await request(`${gw.url}/api/chat`, { body: { model: 'proto-model', messages: [] } });
    assert.equal(ollama.status, 401, ollama.text);
    assert.equal(typeof ollama.json.error, 'string', ollama.text);  // Ollama's {"error": "..."}
    assert.match(ollama.json.error, /API key/);
    for (const route of ['/api/tags', '/api/version', '/api/ps']) {
      const r = await request(`${gw.url}${route}`);
      assert.equal(r.status, 401, `${route}: ${r.text}`);
      assert.equal(typeof r.json.error, 'string', r.text);
    }
    const anthropic = await request(`${gw.url}/v1/messages`, { body: { model: 'proto-model', max_tokens: 5, messages: [] } });
    assert.equal(anthropic.status, 401, anthropic.text);
    assert.equal(anthropic.json.type, 'error');
    assert.equal(anthropic.json.error.type, 'authentication_error');
    for (const route of ['/v1/responses', '/v1/rerank', '/api/generate', '/api/embed', '/v1/messages/count_tokens']) {
      const r = await request(`${gw.url}${route}`, { body: { model: 'proto-model' } });
      assert.equal(r.status, 401, `${route}: ${r.text}`);
    }
    const wrong = await request(`${gw.url}/v1/messages`,
      { headers: { 'x-api-key': 'cbk_000000000000_nope' }, body: { model: 'proto-model', max_tokens: 5, messages: [] } });
    assert.equal(wrong.status, 401, wrong.text);
  });
});

describe('usage counted for the key', () => {
  test('the audit log\'s tokens for each request are the answer\'s usage, whole and streamed', async () => {
    const stopped = await gw.stop('SIGTERM');
    assert.equal(stopped.code, 0, gw.stderr());
    const records = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))
      .filter((r) => r.status === 200 && r.route.startsWith('POST '));
    assert.deepEqual(records.map((r) => r.route.slice(5)), sent.map(([route]) => route));
    for (let i = 0; i < sent.length; i++) {
      const [route, usage] = sent[i];
      assert.equal(records[i].key_id, keyId(key));
      const metered = usage.metered ?? usage;
      assert.deepEqual([records[i].tokens_in, records[i].tokens_out], [metered.in, metered.out],
        `${route} (request ${i + 1}): ${JSON.stringify(records[i])}`);
    }
  });
});
