// Hostile and malformed request bodies against `clawbot serve` (issue 16): every route reads its body through
// the bounded JSON reader, so 100,000 nested brackets anywhere are a 400 json_too_deep (they used to crash the
// node), a number out of range is a 400 invalid_json, a value of the wrong type is a 400 naming the field
// (never a 500), and the node answers normally afterwards.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { MODEL_ID, suiteServer, postJson, getJson, assertErrorBody } from './server_harness.mjs';

const DEPTH = 100000;
const DEEP = '['.repeat(DEPTH) + ']'.repeat(DEPTH);

// A JSON text with `deep` spliced in as the value of `field` (inside `template`, which names it "@DEEP@").
const withDeep = (template) => JSON.stringify(template).replace('"@DEEP@"', DEEP);

const CHAT = '/v1/chat/completions';
const chat = (extra = {}) => ({ messages: [{ role: 'user', content: 'Hello' }], max_tokens: 4, ...extra });

// Every route that reads a body, with each field a client fills: top level, then the fields one by one.
const DEEP_CASES = [
  ['/v1/chat/completions', 'top level', DEEP],
  ['/v1/chat/completions', 'messages', withDeep({ messages: '@DEEP@', max_tokens: 4 })],
  ['/v1/chat/completions', 'messages[0].content', withDeep({ messages: [{ role: 'user', content: '@DEEP@' }] })],
  ['/v1/chat/completions', 'model', withDeep(chat({ model: '@DEEP@' }))],
  ['/v1/chat/completions', 'temperature', withDeep(chat({ temperature: '@DEEP@' }))],
  ['/v1/chat/completions', 'stop', withDeep(chat({ stop: '@DEEP@' }))],
  ['/v1/chat/completions', 'stream_options', withDeep(chat({ stream: true, stream_options: '@DEEP@' }))],
  ['/v1/completions', 'top level', DEEP],
  ['/v1/completions', 'prompt', withDeep({ prompt: '@DEEP@', max_tokens: 4 })],
  ['/v1/completions', 'max_tokens', withDeep({ prompt: 'x', max_tokens: '@DEEP@' })],
  ['/tokenize', 'top level', DEEP],
  ['/tokenize', 'content', withDeep({ content: '@DEEP@' })],
  ['/detokenize', 'top level', DEEP],
  ['/detokenize', 'tokens', withDeep({ tokens: '@DEEP@' })],
  ['/v1/embeddings', 'top level', DEEP],
  ['/v1/embeddings', 'input', withDeep({ input: '@DEEP@' })],
  ['/infill', 'top level', DEEP],
  ['/infill', 'input_prefix', withDeep({ input_prefix: '@DEEP@', input_suffix: '' })],
  ['/infill', 'input_suffix', withDeep({ input_prefix: '', input_suffix: '@DEEP@' })],
  ['/infill', 'input_extra', withDeep({ input_prefix: '', input_suffix: '', input_extra: '@DEEP@' })],
  ['/infill', 'prompt', withDeep({ input_prefix: '', input_suffix: '', prompt: '@DEEP@' })],
  ['/infill', 'n_predict', withDeep({ input_prefix: '', input_suffix: '', n_predict: '@DEEP@' })],
];

describe('clawbot serve: hostile bodies', () => {
  const s = suiteServer();

  async function assertAlive() {
    const h = await getJson(s.base, '/health');
    assert.equal(h.status, 200, `the node stopped answering: ${h.text}\nstderr:\n${s.server.stderr().slice(-2000)}`);
    const r = await postJson(s.base, CHAT, chat());
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'chat.completion', r.text);
  }

  test('100,000 nested brackets, at the top and in every field: 400 json_too_deep, and the node lives', { timeout: 120000 }, async () => {
    for (const [route, where, body] of DEEP_CASES) {
      assert.ok(body.length >= 2 * DEPTH, `${route} ${where}: the body holds the deep value`);
      const r = await postJson(s.base, route, body, { raw: true });
      const e = assertErrorBody(r, 400, { type: 'invalid_request_error', code: 'json_too_deep' });
      assert.match(e.message, /128/, `${route} ${where}: the message names the limit: ${e.message}`);
      assert.ok(r.text.length < 1000, `${route} ${where}: a short answer, not the value echoed (${r.text.length} bytes)`);
    }
    await assertAlive();
  });

  test('nesting up to the limit is read; one more level is refused', async () => {
    const nested = (depth) => '['.repeat(depth) + ']'.repeat(depth);
    // 127 levels inside the body object: 128 in all, the limit. The value is then refused as a stop list.
    const ok = await postJson(s.base, CHAT, JSON.stringify(chat()).replace('"max_tokens":4', `"max_tokens":4,"x":${nested(127)}`), { raw: true });
    assert.equal(ok.status, 200, ok.text);
    const deep = await postJson(s.base, CHAT, JSON.stringify(chat()).replace('"max_tokens":4', `"max_tokens":4,"x":${nested(128)}`), { raw: true });
    assertErrorBody(deep, 400, { code: 'json_too_deep' });
  });

  test('numbers out of range (1e999) anywhere: 400 invalid_json, never 500', async () => {
    const cases = [
      [CHAT, '{"messages":[{"role":"user","content":"hi"}],"temperature":1e999}'],
      [CHAT, '{"messages":[{"role":"user","content":"hi"}],"top_p":-1e999}'],
      [CHAT, '{"messages":[{"role":"user","content":"hi"}],"max_tokens":1e999}'],
      [CHAT, '{"messages":[{"role":"user","content":"hi"}],"seed":1e999}'],
      [CHAT, '{"messages":[{"role":"user","content":1e999}]}'],
      ['/v1/completions', '{"prompt":[1e999]}'],
      ['/detokenize', '{"tokens":[1,1e999]}'],
      ['/tokenize', '{"content":"x","extra":{"a":[1e999]}}'],
      ['/v1/embeddings', '{"input":"x","dimensions":1e999}'],
      ['/infill', '{"input_prefix":"","input_suffix":"","n_predict":1e999}'],
    ];
    for (const [route, body] of cases) {
      const r = await postJson(s.base, route, body, { raw: true });
      const e = assertErrorBody(r, 400, { code: 'invalid_json' });
      assert.match(e.message, /number overflow|1e999/i, `${route} ${body}: ${e.message}`);
    }
    await assertAlive();
  });

  test('integers beyond 64 bits: 400 naming the field', async () => {
    for (const seed of ['9223372036854775808', '18446744073709551615', '-10000000000000000000']) {
      const r = await postJson(s.base, CHAT, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"seed":${seed}}`, { raw: true });
      assertErrorBody(r, 400, { param: 'seed', messageIncludes: 'seed' });
    }
    for (const n of ['18446744073709551615', '-1', '4.5']) {
      const r = await postJson(s.base, CHAT, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":${n}}`, { raw: true });
      assertErrorBody(r, 400, { param: 'max_tokens' });
    }
    const ok = await postJson(s.base, CHAT, '{"messages":[{"role":"user","content":"hi"}],"max_tokens":2,"seed":9223372036854775807}', { raw: true });
    assert.equal(ok.status, 200, ok.text);
  });

  test('a content part of the wrong type: 400 naming the field, never 500', async () => {
    const cases = [
      [[{ type: 1, text: 'hi' }], 'messages[0].content[0].type'],
      [[{ type: null, text: 'hi' }], 'messages[0].content[0].type'],
      [[{ text: 'hi' }], 'messages[0].content[0].type'],
      [[{ type: ['text'], text: 'hi' }], 'messages[0].content[0].type'],
      [[{ type: 'image_url', image_url: { url: 'http://x' } }], 'messages[0].content[0].type'],
      [[{ type: 'text', text: 5 }], 'messages[0].content[0].text'],
      [[{ type: 'text' }], 'messages[0].content[0].text'],
      [['hi'], 'messages[0].content[0]'],
      [[{ type: 'text', text: 'a' }, { type: {}, text: 'b' }], 'messages[0].content[1].type'],
    ];
    for (const [content, param] of cases) {
      const r = await postJson(s.base, CHAT, { messages: [{ role: 'user', content }], max_tokens: 2 });
      const e = assertErrorBody(r, 400, { type: 'invalid_request_error', param });
      assert.ok(e.message.includes(param), `the message names ${param}: ${e.message}`);
    }
    const ok = await postJson(s.base, CHAT, { messages: [{ role: 'user', content: [{ type: 'text', text: 'hi' }] }], max_tokens: 2 });
    assert.equal(ok.status, 200, ok.text);
  });

  test('the model named by a request: the answer names the model that answered', async () => {
    const r = await postJson(s.base, CHAT, chat({ model: 'gpt-4o' }));
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.model, MODEL_ID, r.text);
    const bad = await postJson(s.base, CHAT, chat({ model: 42 }));
    assertErrorBody(bad, 400, { param: 'model' });
  });
});
