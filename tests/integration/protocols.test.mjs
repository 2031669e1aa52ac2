// clawbot serve: one conversation through every chat protocol (chat completions, Responses, Anthropic
// Messages) gives the same greedy answer from the same prompt, and a later turn reuses the prefix cache on
// each; the typed event streams on the wire (`event:` names matching each data's type); errors in each
// route's own shape naming the field.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/protocols.test.mjs
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { MODEL_ID, suiteServer, postJson, assertErrorBody } from './server_harness.mjs';

const SYSTEM = 'You are a storyteller.';
const FIRST = 'Tell me a story about a dog.';
const SECOND = 'What happened next?';
const MAX = 16;

/** A typed event stream: [{event, data}] in order (comments dropped); asserts each block's shape. */
async function typedEvents(res) {
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/event-stream/);
  const text = await res.text();
  assert.ok(text.endsWith('\n\n'), 'the stream ends with a whole event');
  const events = [];
  for (const block of text.split('\n\n').filter((b) => b.length > 0)) {
    const lines = block.split('\n').filter((l) => !l.startsWith(':'));
    if (lines.length === 0) continue;
    assert.equal(lines.length, 2, `an event is one event: line and one data: line: ${JSON.stringify(block)}`);
    assert.ok(lines[0].startsWith('event: ') && lines[1].startsWith('data: '), JSON.stringify(block));
    const event = lines[0].slice(7);
    const data = JSON.parse(lines[1].slice(6));
    assert.equal(data.type, event, 'the data names its event');
    events.push({ event, data });
  }
  assert.ok(!text.includes('[DONE]'), 'typed streams end without OpenAI\'s [DONE]');
  return events;
}

async function cachedTotal(base) {
  const text = await (await fetch(`${base}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith('clawbot_prompt_tokens_cached_total'));
  assert.ok(line, 'no clawbot_prompt_tokens_cached_total in /metrics');
  return Number(line.split(' ').at(-1));
}

function post(base, route, body, headers = {}) {
  return fetch(base + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(30000),
  });
}

describe('every chat protocol on one scheduler', () => {
  const suite = suiteServer();

  // Each protocol's first and second turn of one conversation: the answer, its prompt and cached tokens.
  const protocols = {
    chat: async (base, previous) => {
      const messages = [{ role: 'system', content: SYSTEM }, { role: 'user', content: FIRST }];
      if (previous) messages.push({ role: 'assistant', content: previous.text }, { role: 'user', content: SECOND });
      const r = await postJson(base, '/v1/chat/completions', { model: MODEL_ID, messages, temperature: 0, max_tokens: MAX });
      assert.equal(r.status, 200, r.text);
      const u = r.json.usage;
      return { text: r.json.choices[0].message.content, prompt: u.prompt_tokens, cached: u.prompt_tokens_details.cached_tokens };
    },
    responses: async (base, previous) => {
      const body = { model: MODEL_ID, instructions: SYSTEM, input: FIRST, temperature: 0, max_output_tokens: MAX };
      if (previous) Object.assign(body, { input: SECOND, previous_response_id: previous.id });
      const r = await postJson(base, '/v1/responses', body);
      assert.equal(r.status, 200, r.text);
      const u = r.json.usage;
      return { id: r.json.id, text: r.json.output[0].content[0].text, prompt: u.input_tokens, cached: u.input_tokens_details.cached_tokens };
    },
    messages: async (base, previous) => {
      const messages = [{ role: 'user', content: FIRST }];
      if (previous) messages.push({ role: 'assistant', content: previous.text }, { role: 'user', content: SECOND });
      const r = await postJson(base, '/v1/messages', { model: MODEL_ID, system: SYSTEM, messages, temperature: 0, max_tokens: MAX });
      assert.equal(r.status, 200, r.text);
      const u = r.json.usage;
      return { text: r.json.content[0].text, prompt: u.input_tokens + u.cache_read_input_tokens, cached: u.cache_read_input_tokens };
    },
    // Ollama reports no cached count: the node's counter of prompt tokens reused from the cache says it (this
    // suite's server runs one request at a time).
    ollama: async (base, previous) => {
      const messages = [{ role: 'system', content: SYSTEM }, { role: 'user', content: FIRST }];
      if (previous) messages.push({ role: 'assistant', content: previous.text }, { role: 'user', content: SECOND });
      const before = await cachedTotal(base);
      const r = await postJson(base, '/api/chat', { model: MODEL_ID, messages, stream: false,
        options: { temperature: 0, num_predict: MAX } });
      assert.equal(r.status, 200, r.text);
      return { text: r.json.message.content, prompt: r.json.prompt_eval_count, cached: (await cachedTotal(base)) - before };
    },
  };

  test('the same greedy answer from the same prompt on each, and the second turn reuses the cache', async () => {
    const first = {};
    const second = {};
    for (const [name, run] of Object.entries(protocols)) first[name] = await run(suite.base);
    for (const [name, run] of Object.entries(protocols)) second[name] = await run(suite.base, first[name]);
    const report = JSON.stringify({ first, second });
    assert.ok(first.chat.text.length > 0, report);
    for (const name of ['responses', 'messages', 'ollama']) {
      assert.equal(first[name].text, first.chat.text, `${name}: first answer; ${report}`);
      assert.equal(first[name].prompt, first.chat.prompt, `${name}: first prompt tokens; ${report}`);
      assert.equal(second[name].text, second.chat.text, `${name}: second answer; ${report}`);
      assert.equal(second[name].prompt, second.chat.prompt, `${name}: second prompt tokens; ${report}`);
    }
    for (const name of Object.keys(protocols)) {
      // The second turn's prompt begins with the first's: at least that much comes from the cache.
      assert.ok(second[name].cached >= first.chat.prompt - 1, `${name}: second turn cached tokens; ${report}`);
    }
  });

  test('Responses streams typed events with sequence numbers', async () => {
    const events = await typedEvents(await post(suite.base, '/v1/responses',
      { model: MODEL_ID, input: FIRST, temperature: 0, max_output_tokens: MAX, stream: true }));
    events.forEach((e, i) => assert.equal(e.data.sequence_number, i, e.event));
    assert.equal(events[0].event, 'response.created');
    assert.ok(['response.completed', 'response.incomplete'].includes(events.at(-1).event));
    const text = events.filter((e) => e.event === 'response.output_text.delta').map((e) => e.data.delta).join('');
    assert.equal(events.at(-1).data.response.output[0].content[0].text, text);
  });

  test('Anthropic Messages streams its event types, with a ping', async () => {
    const events = await typedEvents(await post(suite.base, '/v1/messages',
      { model: MODEL_ID, max_tokens: MAX, messages: [{ role: 'user', content: FIRST }], stream: true },
      { 'x-api-key': 'anything', 'anthropic-version': '2023-06-01' }));
    const names = events.map((e) => e.event);
    assert.equal(names[0], 'message_start');
    assert.ok(names.includes('ping'), names.join());
    assert.deepEqual(names.slice(-2), ['message_delta', 'message_stop']);
    const delta = events.at(-2).data;
    assert.ok(['end_turn', 'max_tokens'].includes(delta.delta.stop_reason), JSON.stringify(delta));
    assert.ok(delta.usage.output_tokens > 0, JSON.stringify(delta));
  });

  test('Anthropic: an answer ended by one of its stop_sequences says which, whole and streamed', async () => {
    const body = { model: MODEL_ID, max_tokens: 40, temperature: 0, stop_sequences: ['zzz', 'e'],
      messages: [{ role: 'user', content: FIRST }] };
    const r = await postJson(suite.base, '/v1/messages', body);
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.stop_reason, 'stop_sequence', r.text);
    assert.equal(r.json.stop_sequence, 'e', r.text);
    assert.ok(!r.json.content[0].text.includes('e'), r.text);
    const stream = await post(suite.base, '/v1/messages', { ...body, stream: true });
    const delta = (await typedEvents(stream)).find((e) => e.event === 'message_delta');
    assert.equal(delta.data.delta.stop_reason, 'stop_sequence');
    assert.equal(delta.data.delta.stop_sequence, 'e');
    // A template's own end-of-turn text is no stop sequence of the client's: an answer ended by the model stays
    // end_turn (or max_tokens).
    const plain = await postJson(suite.base, '/v1/messages', { ...body, stop_sequences: ['zzz'] });
    assert.notEqual(plain.json.stop_reason, 'stop_sequence', plain.text);
    assert.equal(plain.json.stop_sequence, null);
  });

  test('errors: each route\'s own shape, naming the field', async () => {
    const anthropic = async (route, body, status, field) => {
      const r = await postJson(suite.base, route, body, { raw: typeof body === 'string' });
      assert.equal(r.status, status, r.text);
      assert.match(r.headers.get('content-type'), /^application\/json/);
      assert.equal(r.json.type, 'error', r.text);
      assert.equal(typeof r.json.error.type, 'string', r.text);
      if (field) assert.ok(r.json.error.message.includes(`'${field}'`), r.text);
      return r.json.error;
    };
    assert.equal((await anthropic('/v1/messages', { messages: [{ role: 'user', content: 'x' }] }, 400, 'max_tokens')).type,
      'invalid_request_error');
    await anthropic('/v1/messages', '{"max_tokens": 5, "messages": [', 400);
    await anthropic('/v1/messages', { max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'image' }] }] }, 400,
      'messages[0].content[0].type');
    await anthropic('/v1/messages/count_tokens', { messages: 'x' }, 400, 'messages');
    // A stream asked for with bad input is refused before it starts, as JSON.
    await anthropic('/v1/messages', { max_tokens: 5, stream: true, messages: [] }, 400, 'messages');

    // What the server answers before any route runs (a wrong method, a body over --max-body-bytes, an unknown
    // path under the protocol's prefix) comes in the protocol's shape too.
    const get = await fetch(`${suite.base}/v1/messages`);
    assert.equal(get.status, 405);
    const getBody = await get.json();
    assert.equal(getBody.type, 'error', JSON.stringify(getBody));
    assert.equal(getBody.error.type, 'invalid_request_error');
    const huge = 'x'.repeat(40 << 20);
    const tooLarge = await fetch(`${suite.base}/v1/messages`, { method: 'POST', headers: { 'content-type': 'application/json' },
      body: `{"max_tokens":5,"messages":[{"role":"user","content":"${huge}"}]}` }).catch((e) => e);
    if (!(tooLarge instanceof Error)) {  // (or the connection is closed before the body is all sent)
      assert.equal(tooLarge.status, 413);
      const body = await tooLarge.json();
      assert.equal(body.error.type, 'request_too_large', JSON.stringify(body));
    }
    const ollamaMissing = await fetch(`${suite.base}/api/nothing`);
    assert.equal(ollamaMissing.status, 404);
    const missingBody = await ollamaMissing.json();
    assert.equal(typeof missingBody.error, 'string', JSON.stringify(missingBody));
    const ollamaGet = await fetch(`${suite.base}/api/chat`);
    assert.equal(ollamaGet.status, 405);
    assert.equal(typeof (await ollamaGet.json()).error, 'string');

    assertErrorBody(await postJson(suite.base, '/v1/responses', { model: MODEL_ID }), 400, { param: 'input' });
    assertErrorBody(await postJson(suite.base, '/v1/responses', '{"input": ', { raw: true }), 400);
    assertErrorBody(await postJson(suite.base, '/v1/responses', { input: 'x', previous_response_id: 'resp_0' }), 404,
      { param: 'previous_response_id', code: 'previous_response_not_found' });
    assertErrorBody(await postJson(suite.base, '/v1/responses', { input: [{ type: 'function_call', name: 'f', arguments: '{}' }] }),
      400, { param: 'input[0].call_id' });
  });
});
