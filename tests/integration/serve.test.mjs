// Black-box tests for `clawbot serve` (OpenAI-compatible HTTP server).
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import {
  MODEL_ID,
  startServer,
  runClawbot,
  modelPath,
  postJson,
  getJson,
  readSse,
  assertUsage,
  assertCreated,
  assertErrorBody,
} from './server_harness.mjs';

const MAX_BODY = 65536;
const FINISH_REASONS = ['stop', 'length'];

// ---------------------------------------------------------------------------
// Response-shape helpers

function assertChatCompletion(body, { maxTokens } = {}) {
  const ctx = JSON.stringify(body).slice(0, 800);
  assert.ok(body && typeof body === 'object', `body must be an object: ${ctx}`);
  assert.equal(typeof body.id, 'string', `id: ${ctx}`);
  assert.ok(body.id.length > 0, `id non-empty: ${ctx}`);
  assert.equal(body.object, 'chat.completion', `object: ${ctx}`);
  assertCreated(body.created);
  assert.equal(typeof body.model, 'string', `model: ${ctx}`);
  assert.ok(body.model.length > 0, `model non-empty: ${ctx}`);
  assert.ok(Array.isArray(body.choices) && body.choices.length === 1, `exactly one choice: ${ctx}`);
  const c = body.choices[0];
  assert.equal(c.index, 0, `choices[0].index: ${ctx}`);
  assert.ok(c.message && typeof c.message === 'object', `choices[0].message: ${ctx}`);
  assert.equal(c.message.role, 'assistant', `message.role: ${ctx}`);
  assert.equal(typeof c.message.content, 'string', `message.content: ${ctx}`);
  assert.ok(FINISH_REASONS.includes(c.finish_reason), `finish_reason: ${ctx}`);
  assertUsage(body.usage, { maxTokens });
  if (maxTokens !== undefined && c.finish_reason === 'length') {
    assert.equal(body.usage.completion_tokens, maxTokens, `finish_reason "length" but completion_tokens != max_tokens: ${ctx}`);
  }
  return { content: c.message.content, finishReason: c.finish_reason, usage: body.usage };
}

function assertTextCompletion(body, { maxTokens } = {}) {
  const ctx = JSON.stringify(body).slice(0, 800);
  assert.ok(body && typeof body === 'object', `body must be an object: ${ctx}`);
  assert.equal(typeof body.id, 'string', `id: ${ctx}`);
  assert.ok(body.id.length > 0, `id non-empty: ${ctx}`);
  assert.equal(body.object, 'text_completion', `object: ${ctx}`);
  assertCreated(body.created);
  assert.equal(typeof body.model, 'string', `model: ${ctx}`);
  assert.ok(Array.isArray(body.choices) && body.choices.length === 1, `exactly one choice: ${ctx}`);
  const c = body.choices[0];
  assert.equal(c.index, 0, `choices[0].index: ${ctx}`);
  assert.equal(typeof c.text, 'string', `choices[0].text: ${ctx}`);
  assert.ok(FINISH_REASONS.includes(c.finish_reason), `finish_reason: ${ctx}`);
  assertUsage(body.usage, { maxTokens });
  if (maxTokens !== undefined && c.finish_reason === 'length') {
    assert.equal(body.usage.completion_tokens, maxTokens, `finish_reason "length" but completion_tokens != max_tokens: ${ctx}`);
  }
  return { content: c.text, finishReason: c.finish_reason, usage: body.usage };
}

/**
 * Validate every event of a streamed response.
 * kind: 'chat' | 'text'. Returns { content, finishReason, usage, chunks }.
 */
function assertStream(events, { kind, includeUsage = false, maxTokens }) {
  const all = JSON.stringify(events).slice(0, 1500);
  assert.ok(events.length >= 2, `stream too short: ${all}`);
  assert.equal(events[events.length - 1], '[DONE]', `stream must end with "data: [DONE]": ${all}`);
  assert.equal(events.filter((e) => e === '[DONE]').length, 1, `exactly one [DONE]: ${all}`);

  const expectedObject = kind === 'chat' ? 'chat.completion.chunk' : 'text_completion';
  const chunks = events.slice(0, -1).map((e, i) => {
    try {
      return JSON.parse(e);
    } catch {
      assert.fail(`SSE event #${i} is not valid JSON: ${JSON.stringify(e)}`);
    }
  });

  let id;
  let content = '';
  let finishIdx = -1;
  let finishReason;
  let usage;
  let usageOnlyIdx = -1;
  chunks.forEach((ch, i) => {
    const ctx = `chunk #${i}: ${JSON.stringify(ch)}`;
    assert.ok(ch && typeof ch === 'object' && !Array.isArray(ch), ctx);
    assert.equal(ch.object, expectedObject, `object; ${ctx}`);
    assert.equal(typeof ch.id, 'string', `id; ${ctx}`);
    assert.ok(ch.id.length > 0, `id non-empty; ${ctx}`);
    if (id === undefined) id = ch.id;
    assert.equal(ch.id, id, `all chunks share one id; ${ctx}`);
    assertCreated(ch.created);
    assert.equal(typeof ch.model, 'string', `model; ${ctx}`);
    assert.ok(Array.isArray(ch.choices), `choices must be an array; ${ctx}`);

    if (ch.choices.length === 0) {
      assert.ok(includeUsage, `a chunk with empty choices is only expected with stream_options.include_usage; ${ctx}`);
      assert.equal(usageOnlyIdx, -1, `only one usage-only chunk; ${ctx}`);
      assert.equal(i, chunks.length - 1, `usage-only chunk must directly precede [DONE]; ${ctx}`);
      assertUsage(ch.usage, { maxTokens });
      usageOnlyIdx = i;
      return;
    }

    assert.equal(ch.choices.length, 1, `exactly one choice; ${ctx}`);
    assert.equal(finishIdx, -1, `no choice chunk may follow the finish_reason chunk; ${ctx}`);
    const c = ch.choices[0];
    assert.equal(c.index, 0, `choices[0].index; ${ctx}`);
    if (kind === 'chat') {
      assert.ok(c.delta && typeof c.delta === 'object', `choices[0].delta; ${ctx}`);
      if (i === 0) assert.equal(c.delta.role, 'assistant', `first chunk must have delta.role "assistant"; ${ctx}`);
      else assert.ok(c.delta.role === undefined || c.delta.role === null || c.delta.role === 'assistant', `delta.role; ${ctx}`);
      const d = c.delta.content;
      assert.ok(d === undefined || d === null || typeof d === 'string', `delta.content must be a string; ${ctx}`);
      if (typeof d === 'string') content += d;
    } else {
      assert.equal(typeof c.text, 'string', `choices[0].text; ${ctx}`);
      content += c.text;
    }
    const fr = c.finish_reason;
    if (fr === null || fr === undefined) {
      assert.ok(ch.usage === undefined || ch.usage === null, `only the final chunk carries usage; ${ctx}`);
    } else {
      assert.ok(FINISH_REASONS.includes(fr), `finish_reason; ${ctx}`);
      finishIdx = i;
      finishReason = fr;
      if (includeUsage) {
        // As OpenAI: usage only in its own chunk, so that a client adding up chunks counts it once.
        assert.ok(ch.usage === undefined || ch.usage === null, `include_usage: the finish chunk carries no usage; ${ctx}`);
      } else {
        assertUsage(ch.usage, { maxTokens }); // as llama-server, when the client did not ask for a usage chunk
        usage = ch.usage;
      }
    }
  });

  assert.notEqual(finishIdx, -1, `exactly one chunk must have a non-null finish_reason: ${all}`);
  if (includeUsage) {
    assert.notEqual(usageOnlyIdx, -1, `include_usage: expected a chunk with choices: [] and usage before [DONE]: ${all}`);
    usage = chunks[usageOnlyIdx].usage;
    assert.equal(chunks.filter((c) => c.usage).length, 1, `include_usage: usage in exactly one chunk: ${all}`);
  }
  if (maxTokens !== undefined && finishReason === 'length') {
    assert.equal(usage.completion_tokens, maxTokens, `finish_reason "length" but completion_tokens != max_tokens`);
  }
  return { content, finishReason, usage, chunks };
}

async function streamRequest(baseUrl, route, body, opts = {}) {
  const res = await fetch(baseUrl + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: opts.signal ?? AbortSignal.timeout(30000),
  });
  if (res.status !== 200) {
    assert.fail(`streaming request failed: HTTP ${res.status} ${await res.text()}`);
  }
  const ct = res.headers.get('content-type') || '';
  assert.match(ct, /^text\/event-stream\b/i, `streaming Content-Type must be text/event-stream, got "${ct}"`);
  return res;
}

/** Raw HTTP POST via node:http, tolerant to the server closing after an early reply. */
function rawPost(baseUrl, route, bodyBuf, headers = {}) {
  const u = new URL(baseUrl + route);
  return new Promise((resolve, reject) => {
    let settled = false;
    const req = http.request(
      {
        host: u.hostname,
        port: u.port,
        path: u.pathname,
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-length': bodyBuf.length, ...headers },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (d) => (text += d));
        const done = () => {
          if (settled) return;
          settled = true;
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const h = new Headers();
          for (const [k, v] of Object.entries(res.headers)) h.set(k, Array.isArray(v) ? v.join(', ') : String(v));
          resolve({ status: res.statusCode, headers: h, text, json });
        };
        res.on('end', done);
        res.on('close', done);
        res.on('error', done);
      },
    );
    req.setTimeout(30000, () => req.destroy(new Error('request timed out')));
    req.on('error', (e) => {
      // EPIPE/ECONNRESET while still writing are fine if a response arrives;
      // give the response parser a moment before failing.
      setTimeout(() => {
        if (!settled) {
          settled = true;
          reject(e);
        }
      }, 1000);
    });
    req.end(bodyBuf);
  });
}

const CHAT = '/v1/chat/completions';
const COMPL = '/v1/completions';

// ---------------------------------------------------------------------------
// Startup failures (no running server needed)

describe('clawbot serve: startup failures', () => {
  let tmp;
  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-serve-test-'));
  });
  after(() => {
    if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
  });

  const serveArgs = (model, extra = []) => [
    'serve', '--model', model, '--host', '127.0.0.1', '--port', '0', '--chat-template', 'chatml',
    '--ctx', '512', '--threads', '2', ...extra,
  ];

  function assertStartupFailure(r, { mentions, pattern }) {
    const ctx = `code=${r.code} signal=${r.signal}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`;
    assert.ok(!r.timedOut, `process did not exit on its own (it should refuse to start); ${ctx}`);
    assert.equal(r.signal, null, `process should exit normally with an error status, not die by a signal; ${ctx}`);
    assert.notEqual(r.code, 0, `exit status must be non-zero; ${ctx}`);
    assert.doesNotMatch(r.stdout, /listening on/, `must not start listening; ${ctx}`);
    for (const m of [].concat(mentions)) assert.ok(r.stderr.includes(m), `stderr should mention ${JSON.stringify(m)}; ${ctx}`);
    if (pattern) assert.match(r.stderr, pattern, `stderr should match ${pattern}; ${ctx}`);
  }

  test('nonexistent model file', { timeout: 40000 }, async () => {
    const missing = path.join(tmp, 'does-not-exist.gguf');
    const r = await runClawbot(serveArgs(missing));
    assertStartupFailure(r, { mentions: missing, pattern: /not found|does not exist/i });
  });

  test('file that is not GGUF', { timeout: 40000 }, async () => {
    const f = path.join(tmp, 'notes.gguf');
    fs.writeFileSync(f, 'This is just a text file, not a model.\n'.repeat(50));
    const r = await runClawbot(serveArgs(f));
    assertStartupFailure(r, { mentions: f, pattern: /not a GGUF file/i });
  });

  test('truncated GGUF (half of stories260K)', { timeout: 40000 }, async () => {
    const src = fs.readFileSync(modelPath());
    const f = path.join(tmp, 'stories260K-truncated.gguf');
    fs.writeFileSync(f, src.subarray(0, Math.floor(src.length / 2)));
    const r = await runClawbot(serveArgs(f));
    assertStartupFailure(r, { mentions: f, pattern: /truncated/i });
  });

  test('unknown --chat-template', { timeout: 40000 }, async () => {
    const args = serveArgs(modelPath()).map((a) => (a === 'chatml' ? 'no-such-template' : a));
    const r = await runClawbot(args);
    assertStartupFailure(r, { mentions: 'no-such-template' });
  });
});

// ---------------------------------------------------------------------------
// Running server

describe('clawbot serve: HTTP API', () => {
  let server;
  let base;

  before(async () => {
    server = await startServer({ extraArgs: ['--max-body-bytes', String(MAX_BODY)] });
    base = server.baseUrl;
  });
  after(async () => {
    if (server) await server.stop();
  });

  const chatBody = (extra = {}) => ({
    model: MODEL_ID,
    messages: [
      { role: 'system', content: 'You are a storyteller.' },
      { role: 'user', content: 'Tell me a story about a cat.' },
    ],
    temperature: 0,
    seed: 42,
    max_tokens: 32,
    ...extra,
  });
  const complBody = (extra = {}) => ({
    model: MODEL_ID,
    prompt: 'Once upon a time',
    temperature: 0,
    seed: 42,
    max_tokens: 32,
    ...extra,
  });

  // ----- basic routes ------------------------------------------------------

  test('GET /health', async () => {
    const r = await getJson(base, '/health');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.status, 'ok', r.text); // extra fields are tolerated
  });

  test('GET /v1/models', async () => {
    const r = await getJson(base, '/v1/models');
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') || '', /^application\/json\b/i);
    assert.equal(r.json.object, 'list', r.text);
    assert.ok(Array.isArray(r.json.data) && r.json.data.length >= 1, r.text);
    const m = r.json.data.find((d) => d.id === MODEL_ID);
    assert.ok(m, `model ${MODEL_ID} listed: ${r.text}`);
    assert.equal(m.object, 'model', r.text);
    assert.equal(m.owned_by, 'clawbot', r.text);
    assert.ok(m.meta && typeof m.meta === 'object', `meta object: ${r.text}`);
    assert.equal(m.meta.n_ctx, 512, `meta.n_ctx (--ctx 512): ${r.text}`);
    assert.equal(m.meta.architecture, 'llama', `meta.architecture: ${r.text}`);
  });

  // ----- chat completions --------------------------------------------------

  test('chat completion (non-streaming)', { timeout: 30000 }, async () => {
    const r = await postJson(base, CHAT, chatBody());
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') || '', /^application\/json\b/i);
    assertChatCompletion(r.json, { maxTokens: 32 });
  });

  test('chat streaming: every event well-formed, content equals non-streamed (greedy)', { timeout: 30000 }, async () => {
    const ref = await postJson(base, CHAT, chatBody());
    assert.equal(ref.status, 200, ref.text);
    const expected = assertChatCompletion(ref.json, { maxTokens: 32 });

    const res = await streamRequest(base, CHAT, chatBody());
    const events = await readSse(res);
    const got = assertStream(events, { kind: 'chat', maxTokens: 32 });
    assert.equal(got.content, expected.content, 'streamed content must equal non-streamed content');
    assert.equal(got.finishReason, expected.finishReason, 'finish_reason must match');
    assert.equal(got.usage.completion_tokens, expected.usage.completion_tokens, 'completion_tokens must match');
    assert.equal(got.usage.prompt_tokens, expected.usage.prompt_tokens, 'prompt_tokens must match');
  });

  test('chat streaming with stream_options.include_usage', { timeout: 30000 }, async () => {
    const res = await streamRequest(base, CHAT, chatBody({ stream_options: { include_usage: true } }));
    const events = await readSse(res);
    assertStream(events, { kind: 'chat', includeUsage: true, maxTokens: 32 });
  });

  test('chat max_tokens: 5 → completion_tokens <= 5, finish_reason "length"', { timeout: 30000 }, async () => {
    const r = await postJson(base, CHAT, chatBody({ max_tokens: 5 }));
    assert.equal(r.status, 200, r.text);
    const { finishReason, usage } = assertChatCompletion(r.json, { maxTokens: 5 });
    assert.ok(usage.completion_tokens <= 5);
    if (finishReason === 'stop') assert.ok(usage.completion_tokens < 5, `"stop" only acceptable with < 5 tokens: ${r.text}`);
    else assert.equal(finishReason, 'length');
  });

  // ----- text completions --------------------------------------------------

  test('completion (non-streaming): story prompt yields non-empty text', { timeout: 30000 }, async () => {
    const r = await postJson(base, COMPL, complBody());
    assert.equal(r.status, 200, r.text);
    assert.match(r.headers.get('content-type') || '', /^application\/json\b/i);
    const { content, usage } = assertTextCompletion(r.json, { maxTokens: 32 });
    assert.ok(content.trim().length > 0, `expected non-empty story text: ${r.text}`);
    assert.ok(usage.completion_tokens > 0, r.text);
  });

  test('completion streaming: every event well-formed, text equals non-streamed', { timeout: 30000 }, async () => {
    const ref = await postJson(base, COMPL, complBody());
    assert.equal(ref.status, 200, ref.text);
    const expected = assertTextCompletion(ref.json, { maxTokens: 32 });

    const res = await streamRequest(base, COMPL, complBody());
    const got = assertStream(await readSse(res), { kind: 'text', maxTokens: 32 });
    assert.equal(got.content, expected.content, 'streamed text must equal non-streamed text');
    assert.equal(got.finishReason, expected.finishReason);
    assert.equal(got.usage.completion_tokens, expected.usage.completion_tokens);
  });

  test('completion streaming with stream_options.include_usage', { timeout: 30000 }, async () => {
    const res = await streamRequest(base, COMPL, complBody({ stream_options: { include_usage: true } }));
    assertStream(await readSse(res), { kind: 'text', includeUsage: true, maxTokens: 32 });
  });

  test('completion max_tokens: 5 → completion_tokens <= 5, finish_reason "length"', { timeout: 30000 }, async () => {
    const r = await postJson(base, COMPL, complBody({ max_tokens: 5 }));
    assert.equal(r.status, 200, r.text);
    const { finishReason, usage } = assertTextCompletion(r.json, { maxTokens: 5 });
    if (finishReason === 'stop') assert.ok(usage.completion_tokens < 5, `"stop" only acceptable with < 5 tokens: ${r.text}`);
    else assert.equal(finishReason, 'length');
  });

  test('valid "stop" (string and array) is accepted and not echoed in the output (OpenAI semantics)', { timeout: 30000 }, async () => {
    for (const stop of ['.', ['.', '!']]) {
      const r = await postJson(base, COMPL, complBody({ stop, max_tokens: 64 }));
      assert.equal(r.status, 200, r.text);
      const { content, finishReason, usage } = assertTextCompletion(r.json, { maxTokens: 64 });
      assert.ok(!content.includes('.'), `output must stop before the stop sequence: ${JSON.stringify(content)}`);
      if (usage.completion_tokens < 64) assert.equal(finishReason, 'stop', r.text);
    }
  });

  // ----- bad requests ------------------------------------------------------

  const user = [{ role: 'user', content: 'hi' }];
  const badCases = [
    { name: 'malformed JSON body', route: CHAT, raw: '{"messages": [', expect: { code: 'invalid_json' } },
    { name: 'JSON body that is an array', route: CHAT, raw: '[]', expect: {} },
    { name: 'JSON body that is a string', route: CHAT, raw: '"hello"', expect: {} },
    { name: 'missing messages', route: CHAT, body: { model: MODEL_ID }, expect: { param: 'messages' } },
    { name: 'messages not an array', route: CHAT, body: { messages: 'hi' }, expect: { param: 'messages' } },
    { name: 'empty messages', route: CHAT, body: { messages: [] }, expect: { param: 'messages' } },
    {
      name: 'unknown role "wizard"',
      route: CHAT,
      body: { messages: [{ role: 'wizard', content: 'abracadabra' }] },
      expect: { param: /^messages(\[0\]|\.0)\.role$/, messageIncludes: 'wizard' },
    },
    {
      name: 'message content is a number',
      route: CHAT,
      body: { messages: [{ role: 'user', content: 42 }] },
      expect: { param: 'messages[0].content' },
    },
    { name: 'temperature: 5', route: CHAT, body: { messages: user, temperature: 5 }, expect: { param: 'temperature' } },
    { name: 'temperature: "hot"', route: CHAT, body: { messages: user, temperature: 'hot' }, expect: { param: 'temperature' } },
    { name: 'top_p: 1.5', route: CHAT, body: { messages: user, top_p: 1.5 }, expect: { param: 'top_p' } },
    { name: 'max_tokens: 0', route: CHAT, body: { messages: user, max_tokens: 0 }, expect: { param: 'max_tokens' } },
    { name: 'max_tokens: -3', route: CHAT, body: { messages: user, max_tokens: -3 }, expect: { param: 'max_tokens' } },
    { name: 'max_tokens: "ten"', route: CHAT, body: { messages: user, max_tokens: 'ten' }, expect: {} },
    { name: 'stream: "yes"', route: CHAT, body: { messages: user, stream: 'yes' }, expect: { param: 'stream' } },
    { name: 'n: 17 (at most 16 choices)', route: CHAT, body: { messages: user, n: 17 }, expect: { param: 'n' } },
    { name: 'stop is a number', route: CHAT, body: { messages: user, stop: 7 }, expect: { param: 'stop' } },
    { name: 'completions without prompt', route: COMPL, body: { model: MODEL_ID, max_tokens: 5 }, expect: { param: 'prompt' } },
    { name: 'completions malformed JSON', route: COMPL, raw: '{"prompt": "x",', expect: { code: 'invalid_json' } },
    { name: 'completions max_tokens: 0', route: COMPL, body: { prompt: 'Once', max_tokens: 0 }, expect: { param: 'max_tokens' } },
    { name: 'completions temperature: 5', route: COMPL, body: { prompt: 'Once', temperature: 5 }, expect: { param: 'temperature' } },
  ];

  for (const c of badCases) {
    test(`400: ${c.name} (${c.route})`, async () => {
      const r = c.raw !== undefined
        ? await postJson(base, c.route, c.raw, { raw: true })
        : await postJson(base, c.route, c.body);
      assertErrorBody(r, 400, c.expect);
    });
  }

  const hugePrompt = 'hello '.repeat(3000);
  function assertContextExceeded(r) {
    const e = assertErrorBody(r, 400, { code: 'context_length_exceeded' });
    assert.ok(e.message.includes('512'), `message should mention the context size 512: ${e.message}`);
    const nums = (e.message.match(/\d+/g) || []).map(Number);
    assert.ok(
      nums.some((n) => n >= 3000),
      `message should state the prompt's token count (>= 3000 for 3000 × "hello "): ${e.message}`,
    );
  }

  test('400: chat prompt longer than the context → context_length_exceeded', { timeout: 30000 }, async () => {
    const r = await postJson(base, CHAT, { model: MODEL_ID, messages: [{ role: 'user', content: hugePrompt }], max_tokens: 5 });
    assertContextExceeded(r);
  });

  test('400: completions prompt longer than the context → context_length_exceeded', { timeout: 30000 }, async () => {
    const r = await postJson(base, COMPL, { model: MODEL_ID, prompt: hugePrompt, max_tokens: 5 });
    assertContextExceeded(r);
  });

  test('404: unknown route GET /v1/nope', async () => {
    const r = await getJson(base, '/v1/nope');
    assertErrorBody(r, 404);
  });

  test('405: GET /v1/chat/completions (Allow: POST)', async () => {
    const r = await getJson(base, CHAT);
    assert.equal(r.status, 405, r.text);
    assert.match(r.headers.get('allow') || '', /\bPOST\b/, `Allow header: ${r.headers.get('allow')}`);
  });

  test('405: GET /v1/completions (Allow: POST)', async () => {
    const r = await getJson(base, COMPL);
    assert.equal(r.status, 405, r.text);
    assert.match(r.headers.get('allow') || '', /\bPOST\b/, `Allow header: ${r.headers.get('allow')}`);
  });

  test('405: POST /v1/models', async () => {
    const r = await postJson(base, '/v1/models', {});
    assert.equal(r.status, 405, r.text);
    assert.equal(r.headers.get('allow'), 'GET, HEAD');
  });

  test('HEAD on a GET route: the status and length a GET gets, and no body', async () => {
    for (const path of ['/health', '/v1/models', '/metrics']) {
      const got = await fetch(`${base}${path}`);
      const body = await got.arrayBuffer();
      const head = await fetch(`${base}${path}`, { method: 'HEAD' });
      assert.equal(head.status, got.status, path);
      assert.equal(head.headers.get('content-type'), got.headers.get('content-type'), path);
      assert.ok(Number(head.headers.get('content-length')) > 0, `${path}: ${head.headers.get('content-length')}`);
      if (path !== '/metrics') assert.equal(Number(head.headers.get('content-length')), body.byteLength, path);
      assert.equal((await head.arrayBuffer()).byteLength, 0, `${path}: HEAD has no body`);
    }
    const r = await fetch(`${base}${CHAT}`, { method: 'HEAD' });
    assert.equal(r.status, 405, 'HEAD is GET only: not on a POST route');
  });

  test('413: body larger than --max-body-bytes', { timeout: 30000 }, async () => {
    const big = Buffer.from(JSON.stringify({
      model: MODEL_ID,
      messages: [{ role: 'user', content: 'a'.repeat(MAX_BODY * 2) }],
    }));
    assert.ok(big.length > MAX_BODY);
    const r = await rawPost(base, CHAT, big);
    assertErrorBody(r, 413, { type: 'invalid_request_error', code: 'request_too_large' });
  });

  test('413: body larger than --max-body-bytes (via fetch)', { timeout: 30000 }, async () => {
    const body = JSON.stringify({ model: MODEL_ID, prompt: 'x'.repeat(MAX_BODY + 1024) });
    const r = await postJson(base, COMPL, body, { raw: true });
    assertErrorBody(r, 413, { type: 'invalid_request_error', code: 'request_too_large' });
  });

  // ----- robustness --------------------------------------------------------

  test('server still healthy after all bad requests', async () => {
    assert.equal(server.proc.exitCode, null, `server exited; stderr:\n${server.stderr()}`);
    assert.equal(server.proc.signalCode, null, `server killed by signal; stderr:\n${server.stderr()}`);
    const r = await getJson(base, '/health');
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json?.status, 'ok', r.text); // extra fields are tolerated
  });
});

// ---------------------------------------------------------------------------
// A client that leaves mid-stream stops its generation (own server: a long context so generation outlasts the
// disconnect by far, and one slot, so that the request after a disconnect needs the slot the disconnect freed).

/** A counter's value in the server's /metrics text. */
async function metric(baseUrl, name) {
  const text = await (await fetch(baseUrl + '/metrics', { signal: AbortSignal.timeout(10000) })).text();
  const line = text.split('\n').find((l) => l.startsWith(name + ' '));
  assert.ok(line, `${name} in /metrics`);
  return Number(line.split(' ').at(-1));
}

describe('clawbot serve: disconnect stops generation', () => {
  let server;
  let base;
  before(async () => {
    server = await startServer({ extraArgs: ['--ctx', '2048', '--threads', '1', '--parallel', '1'] });
    base = server.baseUrl;
  });
  after(async () => {
    if (server) await server.stop();
  });
  const chatBody = (extra = {}) => ({
    model: MODEL_ID,
    messages: [{ role: 'user', content: 'Tell me a story about a cat.' }],
    temperature: 0,
    ignore_eos: true,
    ...extra,
  });

  test('client disconnecting mid-stream frees its slot for the next request', { timeout: 45000 }, async () => {
    // One slot: the next request runs only once the stream's slot is free. Had the disconnect not cancelled
    // the stream, it would have generated all its max_tokens first (clawbot_generation_tokens_total says).
    const maxTokens = 1900;
    const generatedBefore = await metric(base, 'clawbot_generation_tokens_total');
    const cutBefore = await metric(base, 'clawbot_slow_readers_cut_total');
    const ac = new AbortController();
    const res = await streamRequest(base, CHAT, chatBody({ max_tokens: maxTokens }), { signal: ac.signal });
    let sawContent = false;
    try {
      await readSse(res, (payload) => {
        if (payload === '[DONE]') return true;
        const ch = JSON.parse(payload);
        const d = ch.choices?.[0]?.delta?.content;
        if (typeof d === 'string' && d.length > 0) {
          sawContent = true;
          return true; // stop reading
        }
        return false;
      });
    } finally {
      ac.abort();
    }
    assert.ok(sawContent, 'expected at least one content chunk before disconnecting');

    // The timeout only stops a hung test: a server stuck on the stream that left never answers.
    const r = await postJson(base, CHAT, chatBody({ max_tokens: 8 }), { timeoutMs: 30000 });
    assert.equal(r.status, 200, r.text);
    assertChatCompletion(r.json, { maxTokens: 8 });
    // Every slot is free again: none is held for the client that left.
    let busy = -1;
    for (const until = Date.now() + 30000; busy !== 0 && Date.now() < until;) {
      busy = (await getJson(base, '/health')).json.slots_busy;
      if (busy !== 0) await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assert.equal(busy, 0, 'a slot is still busy after the client left and the next request was answered');

    const generated = await metric(base, 'clawbot_generation_tokens_total') - generatedBefore;
    assert.ok(generated < maxTokens, `${generated} tokens generated: the abandoned stream ran to its max_tokens`);
    assert.ok(generated >= r.json.usage.completion_tokens + 1, `${generated} tokens generated`);
    // Nor did it sit in the slot, unread, until --slow-reader-timeout gave the slot to the waiting request.
    assert.equal(await metric(base, 'clawbot_slow_readers_cut_total') - cutBefore, 0, 'freed as a slow reader');

    const h = await getJson(base, '/health', { timeoutMs: 5000 });
    assert.equal(h.status, 200, h.text);
  });

  test('aborting a stream cancels the job before max_tokens', { timeout: 45000 }, async () => {
    const maxTokens = 2000;
    const ac = new AbortController();
    const res = await streamRequest(server.baseUrl, COMPL,
      { prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0, stream: true }, { signal: ac.signal });
    try {
      await readSse(res, (payload) => payload !== '[DONE]' && (JSON.parse(payload).choices?.[0]?.text ?? '') !== '');
    } finally {
      ac.abort();
    }
    const deadline = Date.now() + 10000;
    let match = null;
    while (!match && Date.now() < deadline) {
      match = /generation cancelled after (\d+) tokens/.exec(server.stderr());
      if (!match) await new Promise((r) => setTimeout(r, 50));
    }
    assert.ok(match, `the server never reported the cancelled generation; stderr:\n${server.stderr()}`);
    assert.ok(Number(match[1]) < maxTokens, `generation ran to ${match[1]} tokens despite the disconnect`);
    const r = await postJson(server.baseUrl, COMPL, { prompt: 'Once', max_tokens: 4 });
    assert.equal(r.status, 200, r.text);
  });
});
