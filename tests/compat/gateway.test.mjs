// Compatibility tests: the official, unmodified `openai` Node client against `clawbot gateway` (API keys on) in
// front of a real `clawbot serve`: what the client gets through the gateway is what the node answers, streamed
// or not, and the gateway's own refusals reach the client as the client's error classes.
// Setup: (cd tests/compat && npm ci --ignore-scripts)
// Run:   CLAWBOT_BIN=build/clawbot node --test tests/compat
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';

import { MODEL_ID, startServer } from '../integration/server_harness.mjs';
import { createKey, startGateway, tempDir, writeGatewayConfig } from '../integration/gateway_helpers.mjs';
import OpenAI from './openai_client.mjs';

describe('openai client through clawbot gateway', () => {
  let server;
  let gateway;
  let dir;
  let key;
  let viaGateway;
  let direct;
  const client = (baseURL, apiKey) => new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 30000 });

  before(async () => {
    server = await startServer();
    dir = tempDir('clawbot-compat-gw-');
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: server.baseUrl, name: 'node-1' }],
      auth: 'keys',
    };
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'compat'));
    gateway = await startGateway(config, { dir });
    viaGateway = client(gateway.url + '/v1', key);
    direct = client(server.baseUrl + '/v1', 'unused');
  });
  after(async () => {
    await gateway?.stop();
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  const chatParams = { model: MODEL_ID, messages: [{ role: 'user', content: 'Tell me a story about a fox.' }],
    temperature: 0, max_tokens: 24 };

  test('models.list lists the node\'s model', async () => {
    const ids = [];
    for await (const m of viaGateway.models.list()) ids.push(m.id);
    assert.ok(ids.includes(MODEL_ID), JSON.stringify(ids));
  });

  test('chat.completions.create: the node\'s answer, from the upstream the gateway names', { timeout: 30000 }, async () => {
    const { data, response } = await viaGateway.chat.completions.create(chatParams).withResponse();
    assert.equal(response.headers.get('x-clawbot-upstream'), 'node-1');
    const ref = await direct.chat.completions.create(chatParams);
    assert.equal(data.object, 'chat.completion');
    assert.equal(data.model, MODEL_ID);
    assert.equal(data.choices[0].message.content, ref.choices[0].message.content);
    assert.equal(data.choices[0].finish_reason, ref.choices[0].finish_reason);
    assert.deepEqual(
      [data.usage.prompt_tokens, data.usage.completion_tokens],
      [ref.usage.prompt_tokens, ref.usage.completion_tokens],
    );
  });

  test('streaming with include_usage: the same text, one finish_reason, usage once', { timeout: 30000 }, async () => {
    const ref = await direct.chat.completions.create(chatParams);
    const stream = await viaGateway.chat.completions.create({ ...chatParams, stream: true,
      stream_options: { include_usage: true } });
    let content = '';
    const finishes = [];
    const usages = [];
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) usages.push(chunk.usage);
      for (const c of chunk.choices) {
        if (typeof c.delta?.content === 'string') content += c.delta.content;
        if (c.finish_reason) finishes.push(c.finish_reason);
      }
    }
    assert.equal(content, ref.choices[0].message.content);
    assert.deepEqual(finishes, [ref.choices[0].finish_reason]);
    assert.equal(usages.length, 1, JSON.stringify(usages));
    assert.equal(usages[0].completion_tokens, ref.usage.completion_tokens);
  });

  test('completions.create, streamed and not', { timeout: 30000 }, async () => {
    const params = { model: MODEL_ID, prompt: 'Once upon a time', temperature: 0, max_tokens: 16 };
    const ref = await direct.completions.create(params);
    const r = await viaGateway.completions.create(params);
    assert.equal(r.choices[0].text, ref.choices[0].text);
    let text = '';
    for await (const chunk of await viaGateway.completions.create({ ...params, stream: true }))
      for (const c of chunk.choices) text += c.text ?? '';
    assert.equal(text, ref.choices[0].text);
  });

  test('a wrong key is OpenAI.AuthenticationError (401); the node\'s 400 is BadRequestError naming the field', async () => {
    await assert.rejects(client(gateway.url + '/v1', 'cbk_000000000000_wrongwrongwrongwrongwrongwrong12').models.list(),
      (err) => {
        assert.ok(err instanceof OpenAI.AuthenticationError, `${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 401);
        return true;
      });
    await assert.rejects(viaGateway.chat.completions.create({ ...chatParams, temperature: 5 }), (err) => {
      assert.ok(err instanceof OpenAI.BadRequestError, `${err?.constructor?.name}: ${err?.message}`);
      assert.equal(err.status, 400);
      assert.equal(err.param, 'temperature');
      return true;
    });
  });
});
