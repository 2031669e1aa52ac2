// clawbot serve: the request fields and options README lists that no other test drives end to end: stop
// sequences (cut exactly before the first match, streamed or not), top_k, min_p, frequency and presence
// penalties, max_completion_tokens, each with its range error (400, OpenAI's body, `param` naming the field);
// --alias (the id clients see, and the one --strict-model accepts); --sse-keepalive (comments on a stream that
// waits for a slot, as often as asked).
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/serve_api_fields.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { MODEL_ID, startServer, suiteServer, postJson, getJson, readSse, assertErrorBody } from './server_harness.mjs';

const CHAT = '/v1/chat/completions';
const COMPL = '/v1/completions';

async function ok(base, route, body) {
  const r = await postJson(base, route, body);
  assert.equal(r.status, 200, r.text);
  return r.json;
}

const textOf = (j) => j.choices[0].message?.content ?? j.choices[0].text;

/** The streamed text (deltas joined) and finish reason of a request. */
async function streamed(base, route, body) {
  const res = await fetch(base + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(30000),
  });
  assert.equal(res.status, 200);
  const events = await readSse(res);
  assert.equal(events.at(-1), '[DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e)).filter((c) => c.choices?.length);
  const text = chunks.map((c) => c.choices[0].delta?.content ?? c.choices[0].text ?? '').join('');
  return { text, finish: chunks.map((c) => c.choices[0].finish_reason).find(Boolean) };
}

describe('sampling fields through the API', () => {
  const suite = suiteServer();
  const story = { prompt: 'Once upon a time', max_tokens: 40, temperature: 0 };
  const chat = { model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story about a dog.' }], max_tokens: 40,
    temperature: 0 };

  test('stop: the answer ends right before the first match of any stop string, streamed or not', async () => {
    for (const [route, body] of [[COMPL, story], [CHAT, chat]]) {
      const full = textOf(await ok(suite.base, route, body));
      // A stop string from the middle of the greedy answer, across token boundaries (a word and what follows).
      const from = full.indexOf(' ', Math.floor(full.length / 3));
      assert.ok(from > 0, `a greedy answer of several words: ${JSON.stringify(full)}`);
      const stop = full.slice(from, from + 7);
      const expected = full.slice(0, full.indexOf(stop));
      for (const stopField of [stop, ['never in a story 1', stop]]) {
        const cut = await ok(suite.base, route, { ...body, stop: stopField });
        assert.equal(textOf(cut), expected, `${route} stop ${JSON.stringify(stopField)} in ${JSON.stringify(full)}`);
        assert.equal(cut.choices[0].finish_reason, 'stop');
        assert.ok(cut.usage.completion_tokens < body.max_tokens, JSON.stringify(cut.usage));
        const s = await streamed(suite.base, route, { ...body, stop: stopField });
        assert.equal(s.text, expected, `${route} streamed, stop ${JSON.stringify(stopField)}`);
        assert.equal(s.finish, 'stop');
      }
    }
  });

  test('top_k 1 and min_p 1 keep only the most likely token: any seed at temperature 1.5 gives the greedy answer', async () => {
    const greedy = textOf(await ok(suite.base, COMPL, story));
    const hot = { ...story, temperature: 1.5 };
    const seeds = [1, 2, 3];
    // Without them, these seeds do not all give the greedy answer (else this test could not tell).
    const free = await Promise.all(seeds.map(async (seed) => textOf(await ok(suite.base, COMPL, { ...hot, seed }))));
    assert.ok(free.some((t) => t !== greedy), `temperature 1.5 alone gave the greedy answer for seeds ${seeds}`);
    for (const field of [{ top_k: 1 }, { min_p: 1 }]) {
      for (const seed of seeds) {
        const t = textOf(await ok(suite.base, COMPL, { ...hot, seed, ...field }));
        assert.equal(t, greedy, `${JSON.stringify(field)}, seed ${seed}`);
      }
    }
  });

  test('frequency_penalty and presence_penalty change a greedy answer that repeats itself', async () => {
    const body = { ...story, max_tokens: 60 };
    const greedy = textOf(await ok(suite.base, COMPL, body));
    for (const field of ['frequency_penalty', 'presence_penalty']) {
      const a = textOf(await ok(suite.base, COMPL, { ...body, [field]: 2 }));
      const b = textOf(await ok(suite.base, COMPL, { ...body, [field]: 2 }));
      assert.equal(a, b, `${field}: greedy stays deterministic`);
      assert.notEqual(a, greedy, `${field} 2 changed nothing: ${JSON.stringify(a)}`);
      assert.equal(textOf(await ok(suite.base, COMPL, { ...body, [field]: 0 })), greedy, `${field} 0 is no penalty`);
    }
  });

  test('max_completion_tokens caps the answer like max_tokens, in both routes', async () => {
    for (const [route, body] of [[COMPL, { prompt: 'Once upon a time' }], [CHAT, { messages: chat.messages }]]) {
      const r = await ok(suite.base, route, { ...body, max_completion_tokens: 7, ignore_eos: true, temperature: 0 });
      assert.equal(r.usage.completion_tokens, 7, `${route}: ${JSON.stringify(r.usage)}`);
      assert.equal(r.choices[0].finish_reason, 'length');
    }
  });

  // Out of range or of the wrong type: 400, OpenAI's body, `param` naming the field and the message too.
  const bad = [
    ['top_k', -1], ['top_k', 1.5], ['top_k', 1000001], ['top_k', 'ten'],
    ['min_p', -0.1], ['min_p', 1.5], ['min_p', 'high'],
    ['frequency_penalty', 2.5], ['frequency_penalty', -2.5], ['frequency_penalty', true],
    ['presence_penalty', 2.5], ['presence_penalty', -2.5], ['presence_penalty', '1'],
    ['max_completion_tokens', 0], ['max_completion_tokens', -1], ['max_completion_tokens', 513],
    ['max_completion_tokens', 'ten'],
  ];
  for (const [field, value] of bad) {
    test(`400: ${field} ${JSON.stringify(value)}`, async () => {
      for (const [route, body] of [[CHAT, { messages: chat.messages }], [COMPL, { prompt: 'Once' }]]) {
        const r = await postJson(suite.base, route, { ...body, [field]: value });
        assertErrorBody(r, 400, { type: 'invalid_request_error', param: field, messageIncludes: `'${field}'` });
      }
    });
  }

  test('400: more than 4 stop strings', async () => {
    const r = await postJson(suite.base, CHAT, { messages: chat.messages, stop: ['a', 'b', 'c', 'd', 'e'] });
    assertErrorBody(r, 400, { type: 'invalid_request_error', param: 'stop', messageIncludes: 'at most 4' });
  });
});

describe('--alias', () => {
  const ALIAS = 'house-storyteller';
  const suite = suiteServer({ extraArgs: ['--alias', ALIAS, '--strict-model'] });

  test('is the model id in /v1/models, /props and every answer', async () => {
    const models = await getJson(suite.base, '/v1/models');
    assert.deepEqual(models.json.data.map((m) => m.id), [ALIAS]);
    assert.equal((await getJson(suite.base, '/props')).json.model_alias, ALIAS);
    const c = await ok(suite.base, CHAT, { model: ALIAS, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
    assert.equal(c.model, ALIAS);
    const t = await ok(suite.base, COMPL, { prompt: 'Once', max_tokens: 4 });
    assert.equal(t.model, ALIAS);
    const s = await fetch(suite.base + CHAT, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4, stream: true }) });
    const chunks = (await readSse(s)).slice(0, -1).map((e) => JSON.parse(e));
    assert.ok(chunks.length > 0 && chunks.every((ch) => ch.model === ALIAS), JSON.stringify(chunks[0]));
  });

  test('with --strict-model the file name is no longer a name this node answers to', async () => {
    const r = await postJson(suite.base, CHAT, { model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], max_tokens: 4 });
    assertErrorBody(r, 404, { param: 'model', code: 'model_not_found', messageIncludes: ALIAS });
  });
});

// ------------------------------------------------------------------------------------------ --sse-keepalive

/**
 * A raw HTTP request on its own connection; `received()` is what came back so far (headers included), and
 * the socket can be paused (a client that reads nothing) or destroyed.
 */
function rawStream(base, route, body) {
  const url = new URL(base);
  const socket = net.connect(Number(url.port), url.hostname);
  const payload = JSON.stringify(body);
  let text = '';
  socket.setEncoding('utf8');
  socket.on('data', (c) => { text += c; });
  socket.on('error', () => {});
  socket.write(`POST ${route} HTTP/1.1\r\nHost: ${url.host}\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${Buffer.byteLength(payload)}\r\nConnection: close\r\n\r\n${payload}`);
  const ended = new Promise((resolve) => socket.once('close', resolve));
  return { socket, received: () => text, ended };
}

async function until(predicate, what, ms = 60000) {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) assert.fail(`still waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const keepAlives = (text) => (text.match(/^: ?keep-alive\r?$/gm) ?? []).length;

describe('--sse-keepalive', () => {
  // Two one-slot nodes, one asking for a keep-alive every second, one every hour. On each, a stream whose client
  // reads nothing holds the slot (--slow-reader-timeout 0: never cut), so a second stream waits in the queue.
  // The first node's waiting stream gets its comments while the second's gets none: the interval is the
  // option's, not a default's. Then the blocking client leaves, and the waiting stream is answered.
  const nodes = [];
  before(async () => {
    for (const seconds of [1, 3600]) {
      nodes.push(await startServer({ extraArgs: ['--parallel', '1', '--ctx', '4096', '--slow-reader-timeout', '0',
        '--sse-keepalive', String(seconds), '--threads', '1'] }));
    }
  });
  after(async () => {
    for (const n of nodes) await n.stop();
  });

  test('a stream waiting for a slot gets ": keep-alive" comments at the interval asked for', { timeout: 120000 }, async () => {
    const long = { prompt: 'Once upon a time', max_tokens: 4000, temperature: 0, ignore_eos: true, stream: true };
    const blockers = nodes.map((n) => rawStream(n.baseUrl, COMPL, long));
    for (const b of blockers) {
      await until(() => b.received().includes('data: '), 'the blocking stream\'s first event');
      b.socket.pause();  // reads nothing more: its slot stays taken once the buffers are full
    }
    const waiters = nodes.map((n) => rawStream(n.baseUrl, COMPL, { prompt: 'Once', max_tokens: 4, stream: true }));
    const [fast, slow] = waiters;
    await until(() => keepAlives(fast.received()) >= 3, 'three keep-alive comments on the 1-second node');
    assert.equal(fast.received().includes('data: '), false, 'the waiting stream had no event before its slot');
    assert.equal(keepAlives(slow.received()), 0, `the 3600-second node sent keep-alives:\n${slow.received()}`);

    for (const b of blockers) b.socket.destroy();
    await Promise.all(waiters.map((w) => w.ended));
    for (const w of waiters)
      assert.match(w.received(), /data: \[DONE\]/, `answered once the slot was free:\n${w.received()}`);
    assert.ok(fast.received().indexOf(': keep-alive') < fast.received().indexOf('data: '));
  });
});
