// Compatibility tests: Anthropic's Messages API (POST /v1/messages, /v1/messages/count_tokens) driven by the
// official `@anthropic-ai/sdk` client (which sends x-api-key and anthropic-version: accepted, not required):
// plain and streamed, a tool forced by tool_choice, countTokens, and bad input answered in Anthropic's error
// shape naming the field.
// Setup: (cd tests/compat && npm ci --ignore-scripts)   Run: CLAWBOT_BIN=build/clawbot node --test tests/compat
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';

import { MODEL_ID, QWEN3_TEMPLATE, suiteServer } from '../integration/server_harness.mjs';
import Anthropic from './anthropic_client.mjs';

describe('anthropic client: messages', () => {
  const suite = suiteServer();
  let client;
  before(() => {
    client = new Anthropic({ baseURL: suite.base, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });

  const params = {
    model: MODEL_ID,
    max_tokens: 24,
    system: 'You are a storyteller.',
    messages: [{ role: 'user', content: 'Tell me a story about a dog.' }],
    temperature: 0,
  };

  test('messages.create: a message with a text block, stop_reason and usage', async () => {
    const m = await client.messages.create(params);
    assert.equal(m.type, 'message');
    assert.match(m.id, /^msg_/);
    assert.equal(m.role, 'assistant');
    assert.equal(m.model, MODEL_ID);
    assert.equal(m.content.length, 1, JSON.stringify(m.content));
    assert.equal(m.content[0].type, 'text');
    assert.ok(m.content[0].text.trim().length > 0, JSON.stringify(m.content));
    assert.ok(['end_turn', 'max_tokens'].includes(m.stop_reason), m.stop_reason);
    assert.equal(m.stop_sequence, null);
    assert.ok(Number.isInteger(m.usage.input_tokens), JSON.stringify(m.usage));
    assert.ok(Number.isInteger(m.usage.cache_read_input_tokens), JSON.stringify(m.usage));
    assert.ok(m.usage.input_tokens + m.usage.cache_read_input_tokens > 0, JSON.stringify(m.usage));
    assert.ok(m.usage.output_tokens > 0 && m.usage.output_tokens <= 24, JSON.stringify(m.usage));
  });

  test('messages.stream: Anthropic\'s events, adding up to the plain answer', async () => {
    const plain = await client.messages.create(params);
    const stream = client.messages.stream(params);
    const types = [];
    let text = '';
    stream.on('streamEvent', (event) => {
      types.push(event.type);
      if (event.type === 'content_block_delta' && event.delta.type === 'text_delta') text += event.delta.text;
    });
    const final = await stream.finalMessage();
    assert.equal(types[0], 'message_start');
    assert.equal(types.at(-1), 'message_stop');
    assert.equal(types.at(-2), 'message_delta');
    for (const t of ['content_block_start', 'content_block_delta', 'content_block_stop']) {
      assert.ok(types.includes(t), types.join());
    }
    assert.equal(text, plain.content[0].text, 'streamed text equals the plain answer (greedy)');
    assert.deepEqual(final.content, plain.content);
    assert.equal(final.stop_reason, plain.stop_reason);
    assert.equal(final.usage.output_tokens, plain.usage.output_tokens);
    assert.equal(final.usage.input_tokens + final.usage.cache_read_input_tokens,
      plain.usage.input_tokens + plain.usage.cache_read_input_tokens);
  });

  test('messages.countTokens: the prompt a request becomes', async () => {
    const { input_tokens } = await client.messages.countTokens({
      model: MODEL_ID, system: params.system, messages: params.messages,
    });
    const m = await client.messages.create(params);
    assert.equal(input_tokens, m.usage.input_tokens + m.usage.cache_read_input_tokens);
    const longer = await client.messages.countTokens({
      model: MODEL_ID, system: params.system,
      messages: [...params.messages, { role: 'assistant', content: 'Once upon a time' }, { role: 'user', content: 'More.' }],
    });
    assert.ok(longer.input_tokens > input_tokens, `${longer.input_tokens} > ${input_tokens}`);
  });

  test('bad input: Anthropic\'s error shape, naming the field', async () => {
    const cases = [
      [{ model: MODEL_ID, messages: params.messages }, 'max_tokens'],
      [{ ...params, messages: [{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AA==' } }] }] },
        'messages[0].content[0].type'],
      [{ ...params, temperature: 9 }, 'temperature'],
      [{ ...params, messages: [] }, 'messages'],
    ];
    for (const [body, field] of cases) {
      await assert.rejects(client.messages.create(body), (err) => {
        assert.ok(err instanceof Anthropic.BadRequestError, `${JSON.stringify(body)}: ${err}`);
        assert.equal(err.status, 400);
        assert.equal(err.error.type, 'error', JSON.stringify(err.error));
        assert.equal(err.error.error.type, 'invalid_request_error', JSON.stringify(err.error));
        assert.ok(err.error.error.message.includes(`'${field}'`), err.error.error.message);
        return true;
      });
    }
    await assert.rejects(
      client.messages.countTokens({ model: MODEL_ID, messages: [{ role: 'tool', content: 'x' }] }),
      (err) => {
        assert.equal(err.status, 400);
        assert.ok(err.error.error.message.includes("'messages[0].role'"), err.error.error.message);
        return true;
      });
  });
});

// Tools need a template that has them: stories260K with Qwen3's own Jinja template, whose tool-call grammar
// forces the form of a call (the weights never choose one); an enum keeps the forced JSON short.
describe('anthropic client: tools', () => {
  const suite = suiteServer({ extraArgs: ['--chat-template', QWEN3_TEMPLATE, '--ctx', '2048'] });
  let client;
  before(() => {
    client = new Anthropic({ baseURL: suite.base, apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });

  // Thinking off: Qwen3's grammar lets a call follow a <think> block, which random weights, once in it, fill
  // until max_tokens. One call at a time: they never stop calling once they may.
  const params = {
    model: MODEL_ID, max_tokens: 24, system: 'You answer with tools.', temperature: 0, thinking: { type: 'disabled' },
  };
  const forced = { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true };
  const tools = [{
    name: 'get_weather', description: 'The weather in a city',
    input_schema: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Tokyo', 'Lima'] } },
      required: ['city'], additionalProperties: false },
  }];

  test('a tool forced by tool_choice: a tool_use block whose input fits the schema', async () => {
    const m = await client.messages.create({
      ...params, max_tokens: 160, tools, tool_choice: forced,
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    });
    const use = m.content.find((b) => b.type === 'tool_use');
    assert.ok(use, JSON.stringify(m.content));
    assert.equal(use.name, 'get_weather');
    assert.ok(['Paris', 'Tokyo', 'Lima'].includes(use.input.city), JSON.stringify(use.input));
    // tool_use, or max_tokens when random weights kept calling until the limit (as chat completions' "length").
    assert.ok(['tool_use', 'max_tokens'].includes(m.stop_reason), m.stop_reason);

    // Streamed: input_json_delta pieces add up to the same input.
    const stream = client.messages.stream({
      ...params, max_tokens: 160, tools, tool_choice: forced,
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    });
    // Per block (random weights may call more than once): its input_json_delta pieces add up to its input.
    const json = {};
    stream.on('streamEvent', (event) => {
      if (event.type === 'content_block_delta' && event.delta.type === 'input_json_delta') {
        json[event.index] = (json[event.index] ?? '') + event.delta.partial_json;
      }
    });
    const final = await stream.finalMessage();
    const uses = final.content.map((b, i) => [b, i]).filter(([b]) => b.type === 'tool_use');
    assert.ok(uses.length >= 1, JSON.stringify(final.content));
    for (const [b, i] of uses) assert.deepEqual(JSON.parse(json[i]), b.input);
    assert.deepEqual(uses[0][0].input, use.input);
    assert.equal(final.stop_reason, m.stop_reason);

    // The result goes back as a tool_result block, and the model answers.
    const answer = await client.messages.create({
      ...params, tools,
      messages: [
        { role: 'user', content: 'What is the weather in Paris?' },
        { role: 'assistant', content: [use] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: use.id, content: 'Sunny, 21 C' }] },
      ],
    });
    assert.equal(answer.type, 'message');
  });

  test('thinking enabled: a thinking block, streamed as thinking_delta', async () => {
    // Qwen3's tool-call grammar lets a <think> block come first: random weights, once in it, stay there until
    // max_tokens.
    const ask = { ...params, thinking: { type: 'enabled', budget_tokens: 1024 }, max_tokens: 12, tools,
      tool_choice: forced, messages: [{ role: 'user', content: 'What is the weather in Paris?' }] };
    const m = await client.messages.create(ask);
    assert.equal(m.content[0].type, 'thinking', JSON.stringify(m.content));
    assert.ok(m.content[0].thinking.length > 0, JSON.stringify(m.content));
    const stream = client.messages.stream(ask);
    let thinking = '';
    stream.on('streamEvent', (event) => {
      if (event.type === 'content_block_delta' && event.delta.type === 'thinking_delta') thinking += event.delta.thinking;
    });
    const final = await stream.finalMessage();
    assert.equal(thinking, m.content[0].thinking);
    assert.deepEqual(final.content, m.content);
  });
});
