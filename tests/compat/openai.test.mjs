// Compatibility tests: drive `clawbot serve` with the official, unmodified
// `openai` Node client. Setup: (cd tests/compat && npm ci --ignore-scripts)
// Run:   CLAWBOT_BIN=build/clawbot node --test tests/compat
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { MODEL_ID, startServer } from '../integration/server_harness.mjs';
import OpenAI from './openai_client.mjs';

describe('openai client against clawbot serve', () => {
  let server;
  let client;

  before(async () => {
    server = await startServer();
    client = new OpenAI({
      baseURL: server.baseUrl + '/v1',
      apiKey: 'unused',
      maxRetries: 0,
      timeout: 30000,
    });
  });
  after(async () => {
    if (server) await server.stop();
  });

  const chatParams = {
    model: MODEL_ID,
    messages: [
      { role: 'system', content: 'You are a storyteller.' },
      { role: 'user', content: 'Tell me a story about a dog.' },
    ],
    temperature: 0,
    seed: 7,
    max_tokens: 24,
  };

  function checkUsage(u, maxTokens) {
    assert.ok(u, 'usage present');
    assert.ok(Number.isInteger(u.prompt_tokens) && u.prompt_tokens > 0, JSON.stringify(u));
    assert.ok(Number.isInteger(u.completion_tokens) && u.completion_tokens >= 0, JSON.stringify(u));
    assert.ok(u.completion_tokens <= maxTokens, JSON.stringify(u));
    assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, JSON.stringify(u));
  }

  test('models.list contains stories260K', async () => {
    const ids = [];
    for await (const m of client.models.list()) {
      assert.equal(m.object, 'model');
      ids.push(m.id);
    }
    assert.ok(ids.includes(MODEL_ID), `models: ${JSON.stringify(ids)}`);
  });

  test('chat.completions.create (non-streaming)', { timeout: 30000 }, async () => {
    const r = await client.chat.completions.create(chatParams);
    assert.equal(r.object, 'chat.completion');
    assert.equal(typeof r.id, 'string');
    assert.equal(r.choices.length, 1);
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.equal(typeof r.choices[0].message.content, 'string');
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason), r.choices[0].finish_reason);
    checkUsage(r.usage, chatParams.max_tokens);
  });

  test('chat.completions.create streaming with include_usage matches non-streaming', { timeout: 30000 }, async () => {
    const ref = await client.chat.completions.create(chatParams);

    const stream = await client.chat.completions.create({
      ...chatParams,
      stream: true,
      stream_options: { include_usage: true },
    });
    let content = '';
    let finish = null;
    let finishCount = 0;
    let lastUsage = null;
    let usageChunks = 0;
    let sawRole = false;
    let n = 0;
    for await (const chunk of stream) {
      n++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.usage) {
        lastUsage = chunk.usage;
        usageChunks++;
        // As OpenAI: the usage chunk has no choices, and no other chunk carries usage.
        assert.deepEqual(chunk.choices, [], 'usage comes in a chunk of its own');
      }
      for (const c of chunk.choices) {
        if (c.delta?.role === 'assistant') sawRole = true;
        if (typeof c.delta?.content === 'string') content += c.delta.content;
        if (c.finish_reason) {
          finish = c.finish_reason;
          finishCount++;
        }
      }
    }
    assert.ok(n >= 2, `expected several chunks, got ${n}`);
    assert.ok(sawRole, 'a chunk must carry delta.role "assistant"');
    assert.equal(finishCount, 1, 'exactly one chunk with finish_reason');
    assert.equal(usageChunks, 1, 'usage is sent once (a client adding up chunks counts it once)');
    assert.equal(finish, ref.choices[0].finish_reason);
    assert.equal(content, ref.choices[0].message.content, 'streamed content equals non-streamed content');
    checkUsage(lastUsage, chatParams.max_tokens);
    assert.equal(lastUsage.completion_tokens, ref.usage.completion_tokens);
    assert.equal(lastUsage.prompt_tokens, ref.usage.prompt_tokens);
  });

  test('completions.create (non-streaming and streaming)', { timeout: 30000 }, async () => {
    const params = { model: MODEL_ID, prompt: 'Once upon a time', temperature: 0, seed: 7, max_tokens: 24 };
    const r = await client.completions.create(params);
    assert.equal(r.object, 'text_completion');
    assert.equal(r.choices.length, 1);
    assert.equal(typeof r.choices[0].text, 'string');
    assert.ok(r.choices[0].text.trim().length > 0, `expected story text, got ${JSON.stringify(r.choices[0].text)}`);
    assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
    checkUsage(r.usage, params.max_tokens);

    const stream = await client.completions.create({ ...params, stream: true });
    let text = '';
    for await (const chunk of stream) {
      assert.equal(chunk.object, 'text_completion');
      for (const c of chunk.choices) text += c.text ?? '';
    }
    assert.equal(text, r.choices[0].text, 'streamed text equals non-streamed text');
  });

  test('bad request surfaces OpenAI.BadRequestError (400)', async () => {
    await assert.rejects(
      client.chat.completions.create({ model: MODEL_ID, messages: [] }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `expected BadRequestError, got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 400);
        assert.equal(err.param, 'messages');
        return true;
      },
    );
    await assert.rejects(
      client.chat.completions.create({ ...chatParams, temperature: 5 }),
      (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `expected BadRequestError, got ${err?.constructor?.name}: ${err?.message}`);
        assert.equal(err.status, 400);
        assert.equal(err.param, 'temperature');
        return true;
      },
    );
  });
});
