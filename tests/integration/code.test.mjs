// `clawbot code complete|review|tests` and the server's POST /infill.
//
// Two kinds of counterpart:
//  - a small HTTP server standing in for the *model* (it records each request and answers a canned OpenAI or
//    llama-server reply), to check the prompts the client builds and how it prints the answers;
//  - a real `clawbot serve` with stories260K (no FIM tokens: the client falls back to an instruction) and a
//    copy of it given FIM token ids (the client uses /infill). Their text is nonsense: the tests check shapes.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { startServer, runClawbot, postJson, getJson, readSse, assertErrorBody, modelPath } from './server_harness.mjs';
import { writeWithFimTokens } from './gguf_fim.mjs';

const SAMPLE = [
  'def add(a, b):',
  '    return a + b',
  '',
  '',
  'def mean(values):',
  '    ',
  '    return total / len(values)',
  '',
].join('\n');

let dir;
let samplePath;

before(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-code-'));
  samplePath = path.join(dir, 'sample.py');
  fs.writeFileSync(samplePath, SAMPLE);
});
after(() => fs.rmSync(dir, { recursive: true, force: true }));

// A clawbot.json of its own, so no user config on the machine changes the test (and no retries slow it).
function configFor(url) {
  const file = path.join(dir, `clawbot-${Math.random().toString(16).slice(2)}.json`);
  fs.writeFileSync(file, JSON.stringify({ model_endpoint: url, retry_policy: { max_retries: 0 }, network_timeout: 20000 }));
  return file;
}

function code(url, args) {
  return runClawbot(['code', ...args, '--config', configFor(url)], { timeoutMs: 60000 });
}

// ------------------------------------------------------------------------------------------------ test double

/**
 * Stands in for a model server. `meta` goes into /v1/models; `infill(body)` and `chat(body)` return
 * { status, json } or a string (the answer's text).
 */
async function startFakeModel({ meta = {}, infill, chat } = {}) {
  const requests = [];
  const server = http.createServer((req, res) => {
    let raw = '';
    req.setEncoding('utf8');
    req.on('data', (c) => { raw += c; });
    req.on('end', () => {
      const body = raw ? JSON.parse(raw) : null;
      requests.push({ method: req.method, url: req.url, body });
      const reply = (status, json) => {
        res.writeHead(status, { 'content-type': 'application/json' });
        res.end(JSON.stringify(json));
      };
      if (req.method === 'GET' && req.url === '/v1/models') {
        return reply(200, { object: 'list', data: [{ id: 'fake-coder', object: 'model', meta }] });
      }
      if (req.method === 'POST' && req.url === '/infill' && infill) {
        const r = infill(body);
        if (typeof r === 'string') return reply(200, { content: r, stop: true, truncated: false });
        return reply(r.status, r.json);
      }
      if (req.method === 'POST' && req.url === '/v1/chat/completions' && chat) {
        const r = chat(body);
        if (typeof r !== 'string') return reply(r.status, r.json);
        // Streamed as the client asks, in two pieces.
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const half = Math.floor(r.length / 2);
        for (const piece of [r.slice(0, half), r.slice(half)]) {
          res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: { content: piece }, finish_reason: null }] })}\n\n`);
        }
        res.write(`data: ${JSON.stringify({ choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
        return res.end('data: [DONE]\n\n');
      }
      reply(404, { error: { message: `no route ${req.method} ${req.url}`, type: 'not_found_error', param: null, code: null } });
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    posts: (route) => requests.filter((r) => r.method === 'POST' && r.url === route),
    close: () => new Promise((resolve) => server.close(resolve)),
  };
}

const userMessage = (request) => request.body.messages.find((m) => m.role === 'user').content;
const systemMessage = (request) => request.body.messages.find((m) => m.role === 'system').content;

describe('clawbot code against a recording model server', () => {
  test('complete uses /infill when the model has FIM tokens and prints only the inserted text', async () => {
    const fake = await startFakeModel({ meta: { fim: true, n_ctx_per_request: 4096 }, infill: () => 'total = sum(values)' });
    try {
      const r = await code(fake.url, ['complete', samplePath, '--line', '6', '--col', '5', '--temperature', '0']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'total = sum(values)');
      const [sent] = fake.posts('/infill');
      assert.equal(sent.body.input_prefix, 'def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    ');
      assert.equal(sent.body.input_suffix, '\n    return total / len(values)\n');
      assert.equal(sent.body.temperature, 0);
      assert.ok(Number.isInteger(sent.body.n_predict) && sent.body.n_predict > 0, JSON.stringify(sent.body));
      assert.equal(fake.posts('/v1/chat/completions').length, 0);
    } finally {
      await fake.close();
    }
  });

  test('complete without FIM asks for the code at <CURSOR> and strips the fence a chat model adds', async () => {
    const fake = await startFakeModel({ meta: { fim: false }, chat: () => '```python\ntotal = sum(values)\n```' });
    try {
      const r = await code(fake.url, ['complete', samplePath, '--line', '6', '--col', '5', '--max-tokens', '40']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'total = sum(values)\n');
      assert.equal(fake.posts('/infill').length, 0, 'meta.fim false: no /infill attempt');
      const [sent] = fake.posts('/v1/chat/completions');
      assert.equal(sent.body.max_tokens, 40);
      assert.match(userMessage(sent), /```python\ndef add\(a, b\):[\s\S]*def mean\(values\):\n    <CURSOR>\n    return total/);
      assert.match(systemMessage(sent), /only the code to insert/);
    } finally {
      await fake.close();
    }
  });

  test('complete falls back to an instruction when a server that does not say answers /infill 501', async () => {
    const fake = await startFakeModel({
      infill: () => ({ status: 501, json: { error: { message: 'Infill is not supported by this model', type: 'not_supported_error' } } }),
      chat: () => 'total = sum(values)',
    });
    try {
      const r = await code(fake.url, ['complete', samplePath, '--line', '6', '--verbose']);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, 'total = sum(values)');
      assert.equal(fake.posts('/infill').length, 1);
      assert.equal(fake.posts('/v1/chat/completions').length, 1);
      assert.match(r.stderr, /using an instruction prompt/);
    } finally {
      await fake.close();
    }
  });

  test('--mode fim fails plainly on a model without FIM tokens', async () => {
    const fake = await startFakeModel({
      meta: { fim: false },
      infill: () => ({ status: 400, json: { error: { message: 'no FIM tokens', type: 'invalid_request_error', param: null, code: 'fim_not_supported' } } }),
    });
    try {
      const r = await code(fake.url, ['complete', samplePath, '--line', '1', '--mode', 'fim']);
      assert.equal(r.code, 1);
      assert.equal(r.stdout, '');
      assert.match(r.stderr, /cannot fill in the middle/);
    } finally {
      await fake.close();
    }
  });

  test('a cursor outside the file is refused before anything is sent', async () => {
    const fake = await startFakeModel({ meta: { fim: true }, infill: () => 'x' });
    try {
      const r = await code(fake.url, ['complete', samplePath, '--line', '50']);
      assert.equal(r.code, 2);
      assert.match(r.stderr, /--line 50 is outside the file: it has 8 lines \(allowed: 1 to 8\)/);
      const col = await code(fake.url, ['complete', samplePath, '--line', '1', '--col', '40']);
      assert.equal(col.code, 2);
      assert.match(col.stderr, /--col 40 is outside line 1: it has 14 characters/);
      assert.equal(fake.requests.length, 0);
    } finally {
      await fake.close();
    }
  });

  test('review prints FILE:LINE: reason for the lines of the file, and sends numbered lines', async () => {
    const answer = 'Findings:\n2: returns the wrong sum\n- Line 7: division by zero when values is empty\n99: not a line of this file\n';
    const fake = await startFakeModel({ meta: { fim: false }, chat: () => answer });
    try {
      const r = await code(fake.url, ['review', samplePath]);
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(r.stdout.split('\n').filter(Boolean), [
        `${samplePath}:2: returns the wrong sum`,
        `${samplePath}:7: division by zero when values is empty`,
      ]);
      const [sent] = fake.posts('/v1/chat/completions');
      assert.match(systemMessage(sent), /LINE: reason/);
      assert.match(userMessage(sent), /7\|     return total \/ len\(values\)/);
      assert.match(userMessage(sent), /the whole file, 7 lines/);
    } finally {
      await fake.close();
    }
  });

  test('review --json gives editors status, findings with their code, and the answer', async () => {
    const fake = await startFakeModel({ chat: () => '7: division by zero when values is empty' });
    try {
      const r = await code(fake.url, ['review', samplePath, '--json']);
      assert.equal(r.code, 0, r.stderr);
      const report = JSON.parse(r.stdout);
      assert.equal(report.status, 'findings');
      assert.equal(report.language, 'Python');
      assert.deepEqual(report.lines, { first: 1, last: 7, total: 7 });
      assert.equal(report.cut, false);
      assert.deepEqual(report.findings, [
        { line: 7, reason: 'division by zero when values is empty', code: '    return total / len(values)' },
      ]);
      assert.equal(report.answer, '7: division by zero when values is empty');
    } finally {
      await fake.close();
    }
  });

  test('review says "no findings" or "could not parse" honestly', async () => {
    let answer = 'NO ISSUES';
    const fake = await startFakeModel({ chat: () => answer });
    try {
      const none = await code(fake.url, ['review', samplePath]);
      assert.equal(none.code, 0, none.stderr);
      assert.equal(none.stdout, `${samplePath}: no findings in lines 1-7\n`);
      answer = 'Once upon a time there was a little dog.';
      const nonsense = await code(fake.url, ['review', samplePath]);
      assert.equal(nonsense.code, 3);
      assert.match(nonsense.stdout, /could not parse the review: the model did not answer in the form LINE: reason/);
      assert.match(nonsense.stdout, /Once upon a time there was a little dog\.\n$/);
      const json = JSON.parse((await code(fake.url, ['review', samplePath, '--json'])).stdout);
      assert.equal(json.status, 'unparsed');
      assert.deepEqual(json.findings, []);
    } finally {
      await fake.close();
    }
  });

  test('tests -o OUT writes the code block in the language\'s framework, and keeps an existing file', async () => {
    const tests = 'import pytest\nfrom sample import mean\n\n\ndef test_mean_of_one():\n    assert mean([2]) == 2\n';
    const fake = await startFakeModel({ chat: () => `Here are the tests:\n\`\`\`python\n${tests}\`\`\`\nRun them with pytest.` });
    try {
      const out = path.join(dir, 'test_sample.py');
      const r = await code(fake.url, ['tests', samplePath, '-o', out]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(fs.readFileSync(out, 'utf8'), tests);
      assert.match(r.stderr, /wrote 6 lines of pytest tests to .*test_sample\.py/);
      const [sent] = fake.posts('/v1/chat/completions');
      assert.match(systemMessage(sent), /Python test file using pytest/);
      assert.match(userMessage(sent), /saved as test_sample\.py/);
      assert.ok(userMessage(sent).includes(SAMPLE.trimEnd()), 'the whole file is sent');

      const again = await code(fake.url, ['tests', samplePath, '-o', out]);
      assert.equal(again.code, 2);
      assert.match(again.stderr, /exists; --force replaces it/);
      assert.equal(fake.posts('/v1/chat/completions').length, 1, 'nothing sent for a file that would not be written');
      const forced = await code(fake.url, ['tests', samplePath, '-o', out, '--force']);
      assert.equal(forced.code, 0, forced.stderr);

      const stdout = await code(fake.url, ['tests', samplePath]);
      assert.equal(stdout.code, 0, stdout.stderr);
      assert.equal(stdout.stdout, tests);
    } finally {
      await fake.close();
    }
  });

  test('tests -o OUT: prose, or code that does not parse, is shown and not written (exit 3)', async () => {
    const answers = [
      'Sure! Here are some tests you could write for the mean function. First, check that it works.',
      '```python\ndef test_mean(:\n    assert mean([2]) == 2\n```\n',
      '```python\nimport pytest\n\n    def test_mean():\n    assert mean([2]) == 2\n```\n',
    ];
    let n = 0;
    const fake = await startFakeModel({ chat: () => answers[n++] });
    try {
      for (const answer of answers) {
        const out = path.join(dir, `test_prose_${n}.py`);
        const r = await code(fake.url, ['tests', samplePath, '-o', out]);
        assert.equal(r.code, 3, `${answer}\n${r.stderr}`);
        assert.equal(fs.existsSync(out), false);
        assert.equal(r.stdout.trimEnd(), answer.trimEnd());
        assert.match(r.stderr, /the answer is not a pytest test file/);
      }
    } finally {
      await fake.close();
    }
  });

  test('a large file is cut around the point of interest, and the user is told', async () => {
    const big = path.join(dir, 'big.py');
    fs.writeFileSync(big, Array.from({ length: 2000 }, (_, i) => `x${i + 1} = ${i + 1}`).join('\n') + '\n');
    const fake = await startFakeModel({ meta: { fim: true, n_ctx_per_request: 512 }, infill: () => 'y = 0', chat: () => 'NO ISSUES' });
    try {
      const r = await code(fake.url, ['complete', big, '--line', '1000', '--col', '1']);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stderr, /big\.py is too large for the model's context \(512 tokens\): left out \d+ lines before the cursor and \d+ after it/);
      const [sent] = fake.posts('/infill');
      assert.ok(sent.body.input_prefix.endsWith('x999 = 999\n'), sent.body.input_prefix.slice(-40));
      assert.ok(sent.body.input_suffix.startsWith('x1000 = 1000\nx1001 = 1001'));
      assert.ok(!sent.body.input_prefix.includes('x1 = 1\n'), 'the start of the file is left out');
      assert.ok(sent.body.input_prefix.length + sent.body.input_suffix.length < 2000);

      const review = await code(fake.url, ['review', big, '--line', '1500']);
      assert.equal(review.code, 0, review.stderr);
      const m = /sent lines (\d+)-(\d+) of 2000 around line 1500/.exec(review.stderr);
      assert.ok(m, review.stderr);
      assert.ok(Number(m[1]) < 1500 && Number(m[2]) > 1500);
      const sentReview = userMessage(fake.posts('/v1/chat/completions')[0]);
      assert.match(sentReview, /1500\| x1500 = 1500/);
      assert.ok(!sentReview.includes('| x1 = 1\n'));
      assert.equal(review.stdout, `${big}: no findings in lines ${m[1]}-${m[2]}\n`);
    } finally {
      await fake.close();
    }
  });

  test('a prompt the server finds too long is sent again with less code', async () => {
    const big = path.join(dir, 'long.py');
    fs.writeFileSync(big, Array.from({ length: 400 }, (_, i) => `value_${i} = compute(${i})`).join('\n') + '\n');
    const limit = 3000;  // bytes of user message this "model" accepts
    const fake = await startFakeModel({
      meta: { n_ctx_per_request: 8192 },
      chat: (body) => (body.messages.find((m) => m.role === 'user').content.length > limit
        ? { status: 400, json: { error: { message: 'the prompt is too long', type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } } }
        : '3: suspicious call'),
    });
    try {
      const r = await code(fake.url, ['review', big, '--line', '3']);
      assert.equal(r.code, 0, r.stderr);
      const sent = fake.posts('/v1/chat/completions').map((q) => userMessage(q).length);
      assert.ok(sent.length >= 2, `retried with less code: ${sent}`);
      assert.ok(sent.at(-1) <= limit && sent[0] > limit, `${sent}`);
      assert.equal(r.stdout, `${big}:3: suspicious call\n`);
    } finally {
      await fake.close();
    }
  });
});

// ------------------------------------------------------------------------------------------------ real serve

const REAL = ['--temperature', '0', '--max-tokens', '24'];

async function routeCount(server, route) {
  const metrics = (await getJson(server.baseUrl, '/metrics')).text;
  let total = 0;
  for (const line of metrics.split('\n')) {
    if (line.startsWith('clawbot_http_requests_total{') && line.includes(`route="${route}"`)) total += Number(line.split(' ').at(-1));
  }
  return total;
}

describe('clawbot code against clawbot serve with stories260K (no FIM tokens)', () => {
  let server;
  before(async () => { server = await startServer(); });
  after(async () => { await server?.stop(); });

  test('/v1/models says fim: false and /infill answers 400 fim_not_supported', async () => {
    const models = await getJson(server.baseUrl, '/v1/models');
    assert.equal(models.json.data[0].meta.fim, false);
    const r = await postJson(server.baseUrl, '/infill', { input_prefix: 'def f(', input_suffix: ')\n' });
    assertErrorBody(r, 400, { type: 'invalid_request_error', code: 'fim_not_supported', messageIncludes: 'fill-in-the-middle' });
  });

  test('complete goes straight to an instruction prompt and prints only text', async () => {
    const before = await routeCount(server, '/v1/chat/completions');
    const infillBefore = await routeCount(server, '/infill');
    const r = await code(server.baseUrl, ['complete', samplePath, '--line', '6', ...REAL]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(typeof r.stdout, 'string');
    assert.ok(!r.stdout.includes('<CURSOR>') && !r.stdout.includes('```'), r.stdout);
    assert.equal(await routeCount(server, '/v1/chat/completions'), before + 1);
    assert.equal(await routeCount(server, '/infill'), infillBefore, 'meta.fim false: no /infill attempt');
  });

  test('review gives findings, "no findings" or an honest "could not parse"', async () => {
    const r = await code(server.baseUrl, ['review', samplePath, ...REAL]);
    const first = r.stdout.split('\n')[0];
    const esc = samplePath.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
    if (r.code === 0) {
      assert.match(first, new RegExp(`^${esc}(:\\d+: .+|: no findings in lines 1-7)$`));
    } else {
      assert.equal(r.code, 3, r.stderr);
      assert.match(first, new RegExp(`^${esc}: could not parse the review`));
    }
    const json = JSON.parse((await code(server.baseUrl, ['review', samplePath, '--json', ...REAL])).stdout);
    assert.ok(['findings', 'no_findings', 'unparsed'].includes(json.status));
    assert.equal(json.model, 'stories260K');
    assert.ok(typeof json.answer === 'string');
  });

  test('tests -o OUT: a story model writes prose, which is shown and kept out of OUT (exit 3)', async () => {
    const out = path.join(dir, 'test_real.py');
    const r = await code(server.baseUrl, ['tests', samplePath, '-o', out, ...REAL]);
    assert.equal(r.code, 3, r.stderr);
    assert.equal(fs.existsSync(out), false, 'no prose in a test file');
    assert.ok(r.stdout.trim().length > 0, 'the answer is shown');
    assert.match(r.stderr, /the answer is not a pytest test file \(.*\).*nothing written to .*test_real\.py/);
  });
});

describe('POST /infill and clawbot code complete with FIM tokens (stories260K given FIM ids)', () => {
  let server;
  before(async () => {
    // <0x01>, <0x02>, <0x03>: byte tokens no source text uses.
    const model = writeWithFimTokens(modelPath(), path.join(dir, 'stories260K-fim.gguf'), { pre: 4, suf: 5, mid: 6 });
    server = await startServer({ model });
  });
  after(async () => { await server?.stop(); });

  test('/v1/models says fim: true; /infill answers llama-server\'s shape', async () => {
    const models = await getJson(server.baseUrl, '/v1/models');
    assert.equal(models.json.data[0].meta.fim, true);
    const r = await postJson(server.baseUrl, '/infill', {
      input_prefix: 'def add(a, b):\n    ', input_suffix: '\n', n_predict: 8, temperature: 0,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.json.content, 'string');
    assert.equal(r.json.stop, true);
    assert.ok(r.json.tokens_predicted > 0 && r.json.tokens_predicted <= 8, r.text);
    assert.ok(r.json.tokens_evaluated > 3, r.text);
    assert.equal(r.json.truncated, false);
    assert.equal(r.json.usage.completion_tokens, r.json.tokens_predicted);
  });

  test('/infill cuts a prefix too long for the context and says so', async () => {
    const r = await postJson(server.baseUrl, '/infill', {
      input_prefix: 'x = 1\n'.repeat(2000), input_suffix: 'y = 2\n'.repeat(500), n_predict: 8, temperature: 0,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.truncated, true);
    assert.ok(r.json.truncation.prefix_tokens_dropped > 0 && r.json.truncation.suffix_tokens_dropped > 0, r.text);
    assert.ok(r.json.tokens_evaluated <= 512 - 8, r.text);
  });

  test('/infill streams {content, stop} events', async () => {
    const res = await fetch(`${server.baseUrl}/infill`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ input_prefix: 'a = ', input_suffix: '\n', n_predict: 6, temperature: 0, stream: true }),
    });
    assert.equal(res.status, 200);
    const events = (await readSse(res)).filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
    assert.ok(events.length >= 1);
    assert.ok(events.slice(0, -1).every((e) => e.stop === false && typeof e.content === 'string'));
    assert.equal(events.at(-1).stop, true);
    assert.ok(events.at(-1).tokens_predicted <= 6);
  });

  test('/infill checks its input', async () => {
    assertErrorBody(await postJson(server.baseUrl, '/infill', { input_suffix: '' }), 400, { param: 'input_prefix' });
    assertErrorBody(await postJson(server.baseUrl, '/infill', { input_prefix: '', input_suffix: 3 }), 400, { param: 'input_suffix' });
    assertErrorBody(await postJson(server.baseUrl, '/infill', { input_prefix: '', input_suffix: '', input_extra: [{ filename: 'a' }] }),
      400, { param: 'input_extra[0].text' });
  });

  test('complete uses /infill and prints exactly its content', async () => {
    const before = await routeCount(server, '/infill');
    const r = await code(server.baseUrl, ['complete', samplePath, '--line', '6', '--col', '5', '--temperature', '0', '--max-tokens', '12']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(await routeCount(server, '/infill'), before + 1);
    assert.equal(await routeCount(server, '/v1/chat/completions'), 0);
    const direct = await postJson(server.baseUrl, '/infill', {
      input_prefix: 'def add(a, b):\n    return a + b\n\n\ndef mean(values):\n    ',
      input_suffix: '\n    return total / len(values)\n', n_predict: 12, temperature: 0,
    });
    assert.equal(r.stdout, direct.json.content);
  });
});
