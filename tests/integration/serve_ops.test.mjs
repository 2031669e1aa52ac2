// What an operator sees of `clawbot serve` (issue 17): /metrics counts every status (the router's 404 and 405
// too), one access-log line per request (text or JSON, never the prompt), a model name the node does not
// serve (accepted and noted, or 404 with --strict-model), a drain on SIGTERM that refuses new work with a 503
// before accepting it and finishes what it took, and a startup error that says what is wrong with the file it
// found.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { MODEL_ID, startServer, suiteServer, runClawbot, postJson, getJson, readSse, assertErrorBody } from './server_harness.mjs';

const CHAT = '/v1/chat/completions';
const SECRET = 'purple-elephant-7731'; // in prompts: must never reach the log

const chat = (extra = {}) => ({ messages: [{ role: 'user', content: `Say ${SECRET}` }], max_tokens: 4, ...extra });

async function metricsText(base) {
  const r = await getJson(base, '/metrics');
  assert.equal(r.status, 200, r.text);
  return r.text;
}

// The value of clawbot_http_requests_total{route, status}, 0 when absent.
function requestsTotal(text, route, status) {
  const line = text.split('\n').find((l) => l.startsWith('clawbot_http_requests_total{') &&
    l.includes(`route="${route}"`) && l.includes(`status="${status}"`));
  return line ? Number(line.split(' ').at(-1)) : 0;
}

// The access lines in stderr (text format), parsed as key=value (values quoted as JSON strings when needed).
function accessLines(stderr) {
  return stderr.split('\n').filter((l) => / access /.test(l)).map((l) => {
    const fields = {};
    for (const m of l.slice(l.indexOf(' access ') + 8).matchAll(/(\w+)=("(?:[^"\\]|\\.)*"|\S+)/g)) {
      fields[m[1]] = m[2].startsWith('"') ? JSON.parse(m[2]) : m[2];
    }
    return fields;
  });
}

async function waitFor(predicate, what, ms = 10000) {
  const until = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value) return value;
    if (Date.now() > until) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('clawbot serve: /metrics and the access log', () => {
  const s = suiteServer();

  test('clawbot_http_requests_total counts 400, 404 and 405 answers, not only 200', async () => {
    const bad = await postJson(s.base, CHAT, { messages: 'nope' });
    assertErrorBody(bad, 400);
    const deep = await postJson(s.base, '/tokenize', '['.repeat(1000) + ']'.repeat(1000), { raw: true });
    assertErrorBody(deep, 400, { code: 'json_too_deep' });
    const missing = await getJson(s.base, '/no/such/route');
    assertErrorBody(missing, 404);
    const wrongMethod = await getJson(s.base, CHAT);
    assertErrorBody(wrongMethod, 405);
    const ok = await postJson(s.base, CHAT, chat());
    assert.equal(ok.status, 200, ok.text);

    const text = await metricsText(s.base);
    assert.equal(requestsTotal(text, CHAT, 400), 1, text);
    assert.equal(requestsTotal(text, '/tokenize', 400), 1, text);
    assert.equal(requestsTotal(text, 'other', 404), 1, text); // an unknown path is not a label of its own
    assert.equal(requestsTotal(text, CHAT, 405), 1, text);
    assert.equal(requestsTotal(text, CHAT, 200), 1, text);
    assert.doesNotMatch(text, /no\/such\/route/);
    // Bucket bounds in their shortest form.
    assert.match(text, /clawbot_e2e_request_latency_seconds_bucket\{le="0.3"\}/);
    assert.doesNotMatch(text, /le="0\.\d{12,}"/, 'no bucket bound printed with 17 digits');
  });

  test('one access line per request: client, route, status, tokens, TTFT, duration; never the prompt', async () => {
    const r = await postJson(s.base, CHAT, chat({ max_tokens: 6 }));
    assert.equal(r.status, 200, r.text);
    const usage = r.json.usage;
    const line = await waitFor(() => accessLines(s.server.stderr()).find((f) =>
      f.path === CHAT && f.status === '200' && Number(f.prompt_tokens) === usage.prompt_tokens &&
      Number(f.completion_tokens) === usage.completion_tokens), 'the access line of the chat request');
    assert.equal(line.client, '127.0.0.1');
    assert.equal(line.method, 'POST');
    assert.ok(Number(line.duration_ms) >= 0, JSON.stringify(line));
    assert.ok('cached_tokens' in line, JSON.stringify(line));
    if (usage.completion_tokens > 0) assert.ok(Number(line.ttft_ms) >= 0, JSON.stringify(line));
    assert.ok(!s.server.stderr().includes(SECRET), 'the prompt reached the log');

    const missing = await getJson(s.base, '/nope?q=1');
    assert.equal(missing.status, 404);
    await waitFor(() => accessLines(s.server.stderr()).find((f) => f.path === '/nope' && f.status === '404'),
      'the access line of the 404');
  });

  test('a model the node does not serve: answered, named in the answer as the one that answered, noted in the log', async () => {
    const r = await postJson(s.base, CHAT, chat({ model: 'gpt-4o-mini' }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, MODEL_ID);
    const line = await waitFor(() => accessLines(s.server.stderr()).find((f) => f.requested_model !== undefined),
      'the access line noting the model');
    assert.equal(line.requested_model, '"gpt-4o-mini"');
    assert.equal(line.model, MODEL_ID);
    const same = await postJson(s.base, CHAT, chat({ model: MODEL_ID }));
    assert.equal(same.status, 200, same.text);
  });
});

describe('clawbot serve --strict-model --log-format json', () => {
  const s = suiteServer({ extraArgs: ['--strict-model', '--log-format', 'json'] });

  test('another model name is a 404 model_not_found; its own name and none are served', async () => {
    for (const route of [CHAT, '/v1/completions']) {
      const r = await postJson(s.base, route, { ...chat({ model: 'gpt-4o' }), prompt: 'x' });
      assertErrorBody(r, 404, { code: 'model_not_found', param: 'model', messageIncludes: [MODEL_ID, 'gpt-4o'] });
    }
    assert.equal((await postJson(s.base, CHAT, chat({ model: MODEL_ID }))).status, 200);
    assert.equal((await postJson(s.base, CHAT, chat())).status, 200);
  });

  test('every log line is one JSON object; access lines carry their fields', async () => {
    const r = await postJson(s.base, CHAT, chat());
    assert.equal(r.status, 200, r.text);
    const lines = await waitFor(() => {
      const parsed = s.server.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l));
      return parsed.some((o) => o.event === 'access' && o.status === 200) && parsed;
    }, 'a JSON access line');
    for (const l of s.server.stderr().split('\n').filter((x) => x.trim() && !x.startsWith('llama') && !x.startsWith('load'))) {
      if (!l.startsWith('{')) continue; // libllama's own messages before the logger is set up
      const o = JSON.parse(l);
      assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, l);
      assert.equal(typeof o.level, 'string', l);
      assert.ok(typeof o.msg === 'string' || o.event === 'access', l);
    }
    const access = lines.find((o) => o.event === 'access' && o.status === 200);
    assert.equal(access.client, '127.0.0.1');
    assert.equal(access.path, CHAT);
    assert.equal(access.prompt_tokens, r.json.usage.prompt_tokens);
    assert.equal(access.completion_tokens, r.json.usage.completion_tokens);
    assert.equal(typeof access.duration_ms, 'number');
    const refused = lines.concat(s.server.stderr().split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l)))
      .find((o) => o.event === 'access' && o.status === 404);
    assert.ok(refused, 'the 404 of the first test is logged');
    assert.ok(!s.server.stderr().includes(SECRET), 'the prompt reached the log');
  });
});

describe('clawbot serve: SIGTERM drains', () => {
  test('new work gets 503 + Retry-After before it is accepted; the request in progress finishes; exit 0', { timeout: 120000 }, async () => {
    const server = await startServer({ extraArgs: ['--parallel', '1', '--ctx', '1024', '--drain-timeout', '60'] });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const onAgent = (method, route, body) => new Promise((resolve, reject) => {
      const u = new URL(server.baseUrl + route);
      const req = http.request({ host: u.hostname, port: u.port, path: u.pathname, method, agent,
        headers: body ? { 'content-type': 'application/json' } : {} }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, text, json: text ? JSON.parse(text) : undefined }));
      });
      req.on('error', reject);
      req.end(body ? JSON.stringify(body) : undefined);
    });
    try {
      assert.equal((await onAgent('GET', '/health')).status, 200); // the kept-alive connection
      // A request in progress (8 answers of 480 tokens, one slot) whose client reads nothing for now: more
      // than the socket buffers hold, so it cannot end before the client reads.
      const res = await fetch(server.baseUrl + CHAT, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify(chat({ stream: true, n: 8, max_tokens: 480, ignore_eos: true })),
      });
      assert.equal(res.status, 200);
      server.proc.kill('SIGTERM');
      const health = await waitFor(async () => {
        const h = await onAgent('GET', '/health');
        return h.status === 503 && h;
      }, '/health to say draining');
      assert.equal(health.json.status, 'draining');
      const refused = await onAgent('POST', CHAT, chat());
      assert.equal(refused.status, 503, refused.text);
      assert.equal(refused.json.error.code, 'draining', refused.text);
      assert.ok(Number(refused.headers['retry-after']) >= 1, JSON.stringify(refused.headers));
      // The request taken before SIGTERM ends normally: 8 finish reasons, no error event.
      const events = await readSse(res);
      assert.equal(events.at(-1), '[DONE]');
      const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
      assert.ok(!chunks.some((c) => c.error), `an error event: ${JSON.stringify(chunks.find((c) => c.error))}`);
      assert.equal(chunks.filter((c) => c.choices?.[0]?.finish_reason).length, 8);
      const code = await new Promise((resolve) => server.proc.once('exit', (c) => resolve(c)));
      assert.equal(code, 0, server.stderr().slice(-2000));
      assert.match(server.stderr(), /drained/);
    } finally {
      agent.destroy();
      await server.stop();
    }
  });
});

describe('clawbot serve: a model file it found but cannot use', () => {
  let tmp;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-serve-ops-'));
  });
  after(() => tmp && fs.rmSync(tmp, { recursive: true, force: true }));

  const args = (model) => ['serve', '--model', model, '--host', '127.0.0.1', '--port', '0', '--threads', '1'];

  test('found in the current directory but not GGUF: says what is wrong, not where it looked', async () => {
    fs.writeFileSync(path.join(tmp, 'notes.gguf'), 'not a model\n'.repeat(100));
    const r = await runClawbot(args('notes.gguf'), { cwd: tmp });
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /not a GGUF file/i, r.stderr);
    assert.doesNotMatch(r.stderr, /looked in/, r.stderr);
  });

  test('a name found nowhere still says where it looked', async () => {
    const r = await runClawbot(args('no-such-model-here.gguf'), { cwd: tmp });
    assert.notEqual(r.code, 0, r.stderr);
    assert.match(r.stderr, /looked in the current directory and in CLAWBOT_MODELS/, r.stderr);
  });
});
