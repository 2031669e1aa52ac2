// The client against a loopback server that misbehaves on purpose (refuses, resets, stays silent, answers
// 503 with Retry-After or 429) a given number of times: `clawbot ask` makes exactly the attempts its
// retry_policy allows, waits as the policy says, gives up with a message that says what to check, and never
// retries once text has been shown.
//
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/client_retry.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

import { spawn } from 'node:child_process';

import { freePort, runClient, sseAnswer, writeConfig } from './client_helpers.mjs';
import { requireBinary } from './server_harness.mjs';

/**
 * A server whose n-th chat request (0-based) gets behaviours[n] (the last one repeats). GET /v1/models, which
 * the client asks once for the model's context, is answered apart (`models`: the list it gives; by default
 * one model that does not say its context, as many OpenAI-compatible servers) and not counted.
 */
async function misbehavingServer(behaviours, { models = { object: 'list', data: [{ id: 'stub', object: 'model' }] } } = {}) {
  const arrivals = [];
  const modelRequests = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.method === 'GET' && req.url === '/v1/models') {
        modelRequests.push(Date.now());
        // Closed after: each chat attempt then starts on a fresh connection, so a reset is the attempt's own
        // failure (the client resends by itself on a kept-alive connection the server may have dropped).
        res.writeHead(200, { 'Content-Type': 'application/json', Connection: 'close' });
        res.end(JSON.stringify(models));
        return;
      }
      const n = arrivals.length;
      arrivals.push({ at: Date.now(), url: req.url, body, auth: req.headers.authorization });
      const act = behaviours[Math.min(n, behaviours.length - 1)];
      act(req, res, body);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    arrivals,
    modelRequests,
    gaps: () => arrivals.slice(1).map((a, i) => a.at - arrivals[i].at),
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(r); }),
  };
}

const reset = (req) => req.socket.resetAndDestroy();
// Counts prompt tokens the way a tokenizer roughly would (4 bytes a token, 4 per message), so the chat's
// estimate is calibrated as it would be by a real server.
const ok = (_req, res, body) => {
  const messages = JSON.parse(body || '{}').messages ?? [];
  const bytes = messages.reduce((n, m) => n + m.content.length, 0);
  sseAnswer(res, ['Hello', ', ', 'world'], { promptTokens: Math.ceil(bytes / 4) + 4 * messages.length });
};
const status = (code, headers = {}) => (_req, res) => {
  res.writeHead(code, { 'Content-Type': 'application/json', ...headers });
  res.end(JSON.stringify({ error: { message: `busy (${code})`, type: 'server_error', code: 'busy' } }));
};
const silent = () => {}; // reads the request, never answers

function ask(cfg, extra = []) {
  return runClient(['ask', 'say hello', ...extra], { env: cfg.env, timeoutMs: 30000 });
}

const policy = (over = {}) => ({ max_retries: 3, backoff_factor: 2, base_delay: 150, ...over });

test('resets before the first byte are retried, with delays base x factor^(k-1) +-20%', async () => {
  const srv = await misbehavingServer([reset, reset, ok]);
  const cfg = writeConfig({ model_endpoint: srv.url, network_timeout: 2000, retry_policy: policy() });
  try {
    const r = await ask(cfg, ['--json']);
    assert.equal(r.code, 0, r.stderr);
    const out = JSON.parse(r.stdout);
    assert.equal(out.content, 'Hello, world');
    assert.equal(out.attempts, 3);
    assert.equal(srv.arrivals.length, 3, 'exactly three requests reached the server');
    const [g1, g2] = srv.gaps();
    // Expected 150 and 300 ms; jitter is +-20%, plus reconnect time on a loaded machine.
    assert.ok(g1 >= 150 * 0.8 - 5 && g1 <= 150 * 1.2 + 250, `first delay ${g1} ms`);
    assert.ok(g2 >= 300 * 0.8 - 5 && g2 <= 300 * 1.2 + 250, `second delay ${g2} ms`);
    assert.match(r.stderr, /retry 1 of 3 in 0\.\d s/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('a refused connection is retried max_retries times, then the message says what to check', async () => {
  // A port that was free a moment ago: nothing listens there.
  const port = await freePort();
  const cfg = writeConfig({ model_endpoint: `http://127.0.0.1:${port}`, retry_policy: policy({ max_retries: 2, base_delay: 100 }) });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 1, r.stderr);
    assert.equal(r.stdout, '');
    assert.match(r.stderr, /connection refused/);
    assert.match(r.stderr, /gave up after 3 attempts/);
    assert.match(r.stderr, /model_endpoint is set in .*clawbot\.json/);
    assert.equal((r.stderr.match(/retry \d of 2/g) || []).length, 2, r.stderr);
    assert.ok(r.ms >= (100 + 200) * 0.8, `it waited between attempts (${r.ms} ms in all)`);
  } finally {
    cfg.cleanup();
  }
});

test("503 with Retry-After: the server's delay wins over the policy", async () => {
  const srv = await misbehavingServer([status(503, { 'Retry-After': '1' }), ok]);
  const cfg = writeConfig({ model_endpoint: srv.url, retry_policy: policy({ base_delay: 50 }) });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'Hello, world\n');
    assert.equal(srv.arrivals.length, 2);
    const [gap] = srv.gaps();
    assert.ok(gap >= 990 && gap < 1600, `waited ${gap} ms for Retry-After: 1`);
    assert.match(r.stderr, /the server's Retry-After/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('429 twice, then an answer', async () => {
  const srv = await misbehavingServer([status(429), status(429), ok]);
  const cfg = writeConfig({ model_endpoint: srv.url, retry_policy: policy({ base_delay: 50 }) });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(srv.arrivals.length, 3);
    assert.match(r.stderr, /answered 429: busy \(429\)/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('502 and 504 forever: exactly 1 + max_retries attempts, then exit 1 naming the status', async () => {
  const srv = await misbehavingServer([status(502), status(504)]);
  const cfg = writeConfig({ model_endpoint: srv.url, retry_policy: policy({ max_retries: 2, base_delay: 50 }) });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 1);
    assert.equal(srv.arrivals.length, 3);
    assert.match(r.stderr, /answered 504/);
    assert.match(r.stderr, /gave up after 3 attempts/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('network_timeout bounds silence: a silent server times out and is retried', async () => {
  const srv = await misbehavingServer([silent, ok]);
  const cfg = writeConfig({ model_endpoint: srv.url, network_timeout: 400, retry_policy: policy({ base_delay: 100 }) });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 0, JSON.stringify(r));
    assert.equal(srv.arrivals.length, 2);
    const [gap] = srv.gaps();
    // The first arrival is stamped when Node has read the request, a little after the client sent it.
    assert.ok(gap >= 400 + 80 - 60 && gap < 400 + 120 + 600, `timeout + delay took ${gap} ms`);
    assert.match(r.stderr, /sent nothing for 400 ms/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('network_timeout is not a limit on the whole answer: keep-alives keep a slow answer going', async () => {
  const slow = (_req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    let ticks = 0;
    const timer = setInterval(() => {
      res.write(': keep-alive\n\n');
      if (++ticks === 8) {  // 8 x 150 ms = 1.2 s of prefill, three times the timeout
        clearInterval(timer);
        sseAnswer({ writeHead() {}, write: (s) => res.write(s), end: (s) => res.end(s) }, ['late', ' but fine']);
      }
    }, 150);
  };
  const srv = await misbehavingServer([slow]);
  const cfg = writeConfig({ model_endpoint: srv.url, network_timeout: 400, retry_policy: policy() });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, 'late but fine\n');
    assert.equal(srv.arrivals.length, 1);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('no retry once text has been shown: the partial answer stays and the error says so', async () => {
  const dies = (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: 'Partial ans' } }] })}\n\n`);
    setTimeout(() => req.socket.resetAndDestroy(), 100);
  };
  const srv = await misbehavingServer([dies, ok]);
  const cfg = writeConfig({ model_endpoint: srv.url, retry_policy: policy({ base_delay: 50 }) });
  try {
    const r = await ask(cfg, ['--json']);
    assert.equal(r.code, 1);
    assert.equal(srv.arrivals.length, 1, 'nothing was sent again');
    const out = JSON.parse(r.stdout);
    assert.equal(out.content, 'Partial ans');
    assert.equal(out.partial, true);
    assert.equal(out.complete, false);
    assert.equal(out.error.kind, 'dropped');

    const plain = await misbehavingServer([dies]);
    const cfg2 = writeConfig({ model_endpoint: plain.url, retry_policy: policy({ base_delay: 50 }) });
    const r2 = await ask(cfg2);
    assert.equal(r2.code, 1);
    assert.equal(r2.stdout, 'Partial ans\n');
    assert.match(r2.stderr, /the answer was cut off/);
    await plain.close();
    cfg2.cleanup();
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('401 is not retried and points at the key; the key is sent as a bearer token', async () => {
  const srv = await misbehavingServer([status(401)]);
  const cfg = writeConfig({ model_endpoint: srv.url, api_key_env: 'CLAWBOT_TEST_KEY', retry_policy: policy() });
  cfg.env.CLAWBOT_TEST_KEY = 'sk-test-123';
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 1);
    assert.equal(srv.arrivals.length, 1);
    assert.equal(srv.arrivals[0].auth, 'Bearer sk-test-123');
    assert.match(r.stderr, /answered 401.*set api_key_env \(or api_key\)/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('a bad config is exit status 2 with the key named; an unknown key is a warning', async () => {
  const bad = writeConfig({ model_endpoint: 'http://127.0.0.1:1', temperature: 'hot' });
  const r = await ask(bad);
  assert.equal(r.code, 2);
  assert.match(r.stderr, /"temperature" is "hot" \(a string\); allowed: a number from 0 to 2/);
  bad.cleanup();

  const srv = await misbehavingServer([ok]);
  const typo = writeConfig({ model_endpoint: srv.url, max_tokenz: 5 });
  const r2 = await ask(typo);
  assert.equal(r2.code, 0, r2.stderr);
  assert.match(r2.stderr, /warning: .*unknown key "max_tokenz" \(ignored\); did you mean "max_tokens"\?/);
  const sent = JSON.parse(srv.arrivals[0].body);
  assert.equal(sent.max_tokens, 8192, 'the misspelt key changed nothing');
  assert.equal(sent.stream, true);
  await srv.close();
  typo.cleanup();
});

test('chat (piped): slash commands, and the oldest turns left out when the conversation outgrows context_length', async () => {
  const srv = await misbehavingServer([ok]);
  const cfg = writeConfig({ model_endpoint: srv.url, context_length: 250, max_tokens: 50, system_prompt: 'Be brief.' });
  try {
    const long = (n) => `question ${n}:${' blah'.repeat(40)}`; // ~200 bytes, ~70 tokens by the estimate
    const input = [long(1), long(2), long(3), long(4), '/system Answer in French.', '/set temperature 0.3',
      long(5), '/save ' + path.join(cfg.dir, 'out.md'), '/sessions', '/bogus', '/new second', 'hi', '/exit', ''].join('\n');
    const r = await runClient(['chat', '--session', 'first'], { env: cfg.env, input });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(srv.arrivals.length, 6);
    const bodies = srv.arrivals.map((a) => JSON.parse(a.body));
    assert.equal(bodies[0].messages[0].content, 'Be brief.');
    assert.deepEqual(bodies[0].messages.map((m) => m.role), ['system', 'user']);
    // By the fourth question the conversation no longer fits: the oldest turns go, the system prompt stays.
    const fourth = bodies[3].messages;
    assert.equal(fourth[0].role, 'system');
    assert.equal(fourth.at(-1).content, long(4));
    assert.ok(fourth.length < 8, `${fourth.length} messages sent`);
    assert.equal(fourth[1].role, 'user', 'whole turns are left out');
    assert.match(r.stdout, /the conversation is longer than the 250-token context: its oldest \d+ messages are left out/);
    // /system and /set apply to the next request.
    assert.equal(bodies[4].messages[0].content, 'Answer in French.');
    assert.equal(bodies[4].temperature, 0.3);
    // /new starts a conversation of its own.
    assert.deepEqual(bodies[5].messages.map((m) => m.content), ['Be brief.', 'hi']);
    assert.match(r.stderr, /unknown command \/bogus; \/help lists them/);
    assert.match(r.stdout, /\* first +10 messages/);
    const md = fs.readFileSync(path.join(cfg.dir, 'out.md'), 'utf8');
    assert.match(md, /question 5/);
    assert.match(md, /Hello, world/);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('Ctrl-C (SIGINT) during the wait before a retry ends ask at once with status 130', async () => {
  const srv = await misbehavingServer([status(503, { 'Retry-After': '30' })]);
  const cfg = writeConfig({ model_endpoint: srv.url, retry_policy: policy() });
  try {
    const proc = spawn(requireBinary(), ['ask', 'hello'], { env: cfg.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stderr = '';
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    while (!stderr.includes('retry 1 of 3')) await new Promise((r) => setTimeout(r, 20));
    const sent = Date.now();
    proc.kill('SIGINT');
    const code = await new Promise((r) => proc.once('close', (c) => r(c)));
    assert.equal(code, 130, stderr);
    assert.ok(Date.now() - sent < 3000, 'it did not sit out the 30 s Retry-After');
    assert.match(stderr, /clawbot ask: interrupted/);
    assert.equal(srv.arrivals.length, 1);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('Ctrl-C (SIGINT) while an answer streams: the partial answer stays on stdout, status 130, no retry', async () => {
  // Two words, then the stream stays open: only Ctrl-C ends it.
  const hold = (req, res) => {
    res.writeHead(200, { 'Content-Type': 'text/event-stream' });
    for (const w of ['Once', ' upon'])
      res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', model: 'stub', choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n\n`);
  };
  const srv = await misbehavingServer([hold]);
  const cfg = writeConfig({ model_endpoint: srv.url, retry_policy: policy() });
  try {
    const proc = spawn(requireBinary(), ['ask', 'hello'], { env: cfg.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const closed = new Promise((r) => proc.once('close', (c) => r(c)));
    while (!stdout.includes('Once upon')) {
      assert.equal(proc.exitCode, null, stderr);
      await new Promise((r) => setTimeout(r, 20));
    }
    proc.kill('SIGINT');
    assert.equal(await closed, 130, stderr);
    assert.equal(stdout, 'Once upon\n');
    assert.match(stderr, /clawbot ask: interrupted \(the answer above is partial\)/);
    assert.equal(srv.arrivals.length, 1, 'an interrupted answer is not asked again');
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('a host name that does not resolve is not retried, and the message says to check it', async () => {
  const cfg = writeConfig({ model_endpoint: 'http://no-such-node.invalid:5000', retry_policy: policy({ base_delay: 50 }) });
  try {
    const r = await runClient(['ask', 'hello', '--json'], { env: cfg.env, timeoutMs: 60000 });
    assert.equal(r.code, 1);
    const out = JSON.parse(r.stdout);
    assert.equal(out.error.kind, 'resolve');
    assert.equal(out.attempts, 1);
    assert.match(out.error.message, /cannot resolve the host 'no-such-node\.invalid'.*check the host name/);
    assert.doesNotMatch(r.stderr, /retry/);
  } finally {
    cfg.cleanup();
  }
});

// ---------------------------------------------------------------------------- issue 17

test('max_tokens is a ceiling: never more than the node\'s per-request context (meta.n_ctx) leaves', async () => {
  // What `config init` writes (8192) against a node that allows 2048 tokens a request: the node would answer
  // 400 "'max_tokens' must be between 1 and 2048" to a client that sent it as it is.
  const models = { object: 'list', data: [{ id: 'small', object: 'model', meta: { n_ctx: 2048, n_ctx_per_request: 2048 } }] };
  const srv = await misbehavingServer([ok], { models });
  const cfg = writeConfig({ model_endpoint: srv.url, max_tokens: 8192, retry_policy: policy() });
  try {
    const r = await ask(cfg, ['--json']);
    assert.equal(r.code, 0, r.stderr);
    const sent = JSON.parse(srv.arrivals[0].body);
    assert.ok(sent.max_tokens < 2048 && sent.max_tokens > 1900, `asked for ${sent.max_tokens} of a 2048-token context`);
    const out = JSON.parse(r.stdout);
    assert.equal(out.max_tokens, sent.max_tokens);
    assert.equal(srv.modelRequests.length, 1, 'the context is asked for once');
    // A smaller max_tokens is sent as it is.
    const r2 = await ask(cfg, ['--max-tokens', '100']);
    assert.equal(r2.code, 0, r2.stderr);
    assert.equal(JSON.parse(srv.arrivals[1].body).max_tokens, 100);
    // context_length in clawbot.json wins over the server's, and then nothing is asked.
    const own = writeConfig({ model_endpoint: srv.url, max_tokens: 8192, context_length: 512, retry_policy: policy() });
    const before = srv.modelRequests.length;
    const r3 = await ask(own);
    assert.equal(r3.code, 0, r3.stderr);
    assert.ok(JSON.parse(srv.arrivals[2].body).max_tokens < 512);
    assert.equal(srv.modelRequests.length, before);
    own.cleanup();
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('an answer cut at max_tokens: the text on stdout, why on stderr, exit 1; --json has finish_reason and timings', async () => {
  const cut = (_req, res) => sseAnswer(res, ['Once', ' upon'], { finish: 'length' });
  const srv = await misbehavingServer([cut]);
  const cfg = writeConfig({ model_endpoint: srv.url, max_tokens: 2, retry_policy: policy() });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 1, 'README: 1 when the answer was cut off');
    assert.equal(r.stdout, 'Once upon\n');
    assert.match(r.stderr, /the answer was cut off at max_tokens \(2 tokens\): raise --max-tokens/);
    const j = await ask(cfg, ['--json']);
    assert.equal(j.code, 1);
    const out = JSON.parse(j.stdout);
    assert.equal(out.finish_reason, 'length');
    assert.equal(out.complete, false);
    assert.equal(out.content, 'Once upon');
    assert.equal(typeof out.timings.ttft_ms, 'number', 'README: timings');
    assert.equal(typeof out.timings.tokens_per_s, 'number');
    assert.equal(out.ttft_ms, undefined);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});

test('a failed connection: one short line per retry, the full error once', async () => {
  const port = await freePort();
  const cfg = writeConfig({ model_endpoint: `http://127.0.0.1:${port}`, retry_policy: policy({ max_retries: 3, base_delay: 20 }) });
  try {
    const r = await ask(cfg);
    assert.equal(r.code, 1);
    const lines = r.stderr.trim().split('\n');
    const retries = lines.filter((l) => /^clawbot: retry \d of 3 in \d+\.\d s: cannot connect to .*: connection refused$/.test(l));
    assert.equal(retries.length, 3, r.stderr);
    assert.equal((r.stderr.match(/is the server running/g) || []).length, 1, `the full error once:\n${r.stderr}`);
    assert.equal(lines.length, 4, r.stderr);
  } finally {
    cfg.cleanup();
  }
});

test('chat and ask --save record the model that answered; an answer cut at max_tokens is exported as length', async () => {
  const cut = (_req, res) => sseAnswer(res, ['Once', ' upon'], { finish: 'length' });
  const srv = await misbehavingServer([cut]);
  const cfg = writeConfig({ model_endpoint: srv.url, max_tokens: 2, retry_policy: policy() });
  const db = path.join(cfg.dir, 'sessions.db');
  try {
    const r = await runClient(['chat', '--session', 'tale', '--db', db], { env: cfg.env, input: 'tell me a story\n/exit\n' });
    assert.equal(r.code, 0, r.stderr);
    const exported = await runClient(['sessions', 'export', 'tale', '--format', 'json', '--db', db], { env: cfg.env });
    assert.equal(exported.code, 0, exported.stderr);
    const session = JSON.parse(exported.stdout);
    assert.equal(session.model, 'stub', 'the model the server named');
    assert.deepEqual(session.messages.map((m) => m.state), ['complete', 'length']);
    const md = await runClient(['sessions', 'export', 'tale', '--db', db], { env: cfg.env });
    assert.match(md.stdout, /- Model: stub/);
    assert.match(md.stdout, /## Assistant \(length\)/);

    // ask stores nothing unless asked to; with --save it is a session like chat's.
    const saved = await runClient(['ask', 'another story', '--save'], { env: { ...cfg.env, XDG_DATA_HOME: path.join(cfg.dir, 'data') } });
    assert.equal(saved.code, 1, 'cut at max_tokens');
    const name = /saved as session (\S+)/.exec(saved.stderr)?.[1];
    assert.ok(name, saved.stderr);
    const list = await runClient(['sessions', 'list', '--json'], { env: { ...cfg.env, XDG_DATA_HOME: path.join(cfg.dir, 'data') } });
    const sessions = JSON.parse(list.stdout);
    assert.equal(sessions.length, 1);
    assert.equal(sessions[0].name, name);
    assert.equal(sessions[0].model, 'stub');
    assert.equal(sessions[0].messages, 2);
  } finally {
    await srv.close();
    cfg.cleanup();
  }
});
