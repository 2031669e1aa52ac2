// Compatibility tests: OpenAI's Responses API (POST /v1/responses) driven by the official `openai` client:
// plain and streamed (typed events with sequence numbers, adding up to the answer), previous_response_id
// continuing a kept response (and reusing the prefix cache), a function tool forced by tool_choice, and bad
// input answered in OpenAI's error shape naming the field.
// Setup: (cd tests/compat && npm ci --ignore-scripts)   Run: CLAWBOT_BIN=build/clawbot node --test tests/compat
import { describe, test, before } from 'node:test';
import assert from 'node:assert/strict';

import { MODEL_ID, QWEN3_TEMPLATE, suiteServer } from '../integration/server_harness.mjs';
import OpenAI from './openai_client.mjs';

describe('openai client: responses', () => {
  const suite = suiteServer();
  let client;
  before(() => {
    client = new OpenAI({ baseURL: suite.base + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });

  const params = {
    model: MODEL_ID,
    instructions: 'You are a storyteller.',
    input: 'Tell me a story about a dog.',
    temperature: 0,
    max_output_tokens: 24,
  };

  function checkUsage(u) {
    assert.ok(Number.isInteger(u.input_tokens) && u.input_tokens > 0, JSON.stringify(u));
    assert.ok(Number.isInteger(u.output_tokens) && u.output_tokens > 0 && u.output_tokens <= 24, JSON.stringify(u));
    assert.equal(u.total_tokens, u.input_tokens + u.output_tokens, JSON.stringify(u));
    assert.ok(Number.isInteger(u.input_tokens_details.cached_tokens), JSON.stringify(u));
  }

  test('responses.create: a response object with a message item and usage', async () => {
    const r = await client.responses.create(params);
    assert.equal(r.object, 'response');
    assert.match(r.id, /^resp_/);
    assert.ok(['completed', 'incomplete'].includes(r.status), r.status);
    assert.equal(r.model, MODEL_ID);
    assert.equal(r.instructions, params.instructions);
    assert.equal(r.output.length, 1, JSON.stringify(r.output));
    assert.equal(r.output[0].type, 'message');
    assert.equal(r.output[0].role, 'assistant');
    assert.equal(r.output[0].content[0].type, 'output_text');
    assert.ok(r.output_text.trim().length > 0, `a story, got ${JSON.stringify(r.output_text)}`);
    checkUsage(r.usage);
  });

  test('responses.create streamed: typed events in order, adding up to the plain answer', async () => {
    const plain = await client.responses.create(params);
    const stream = await client.responses.create({ ...params, stream: true });
    const types = [];
    let text = '';
    let last;
    let sequence = -1;
    for await (const event of stream) {
      types.push(event.type);
      assert.equal(event.sequence_number, sequence + 1, `sequence numbers count up: ${event.type}`);
      sequence = event.sequence_number;
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.output_text.done') assert.equal(event.text, text);
      last = event;
    }
    assert.deepEqual(types.slice(0, 4),
      ['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
    assert.ok(types.includes('response.output_text.delta'), types.join());
    assert.deepEqual(types.slice(-4), ['response.output_text.done', 'response.content_part.done',
      'response.output_item.done', plain.status === 'completed' ? 'response.completed' : 'response.incomplete']);
    assert.equal(text, plain.output_text, 'streamed text equals the plain answer (greedy)');
    assert.equal(last.response.output[0].content[0].text, text);
    assert.equal(last.response.usage.output_tokens, plain.usage.output_tokens);
    assert.equal(last.response.usage.input_tokens, plain.usage.input_tokens);
  });

  test('previous_response_id continues the kept conversation and reuses its prefix in the cache', async () => {
    const first = await client.responses.create({ ...params, input: 'Tell me a story about a cat.' });
    const second = await client.responses.create({
      model: MODEL_ID, instructions: params.instructions, input: 'And then?', temperature: 0, max_output_tokens: 8,
      previous_response_id: first.id,
    });
    assert.equal(second.previous_response_id, first.id);
    // The second prompt holds the first conversation (its question and answer) before the new input.
    assert.ok(second.usage.input_tokens > first.usage.input_tokens + first.usage.output_tokens,
      `second turn ${JSON.stringify(second.usage)} after ${JSON.stringify(first.usage)}`);
    assert.ok(second.usage.input_tokens_details.cached_tokens >= first.usage.input_tokens - 1,
      `the first turn's prompt comes from the cache: ${JSON.stringify(second.usage)}`);
    // store: false is not kept.
    const unkept = await client.responses.create({ ...params, store: false });
    await assert.rejects(
      client.responses.create({ ...params, previous_response_id: unkept.id }),
      (err) => {
        assert.equal(err.status, 404, String(err));
        assert.equal(err.param, 'previous_response_id');
        assert.match(err.message, new RegExp(unkept.id));
        return true;
      });
  });

  test('bad input: 400 in OpenAI\'s shape naming the field', async () => {
    for (const [body, param] of [
      [{ model: MODEL_ID }, 'input'],
      [{ ...params, input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'http://x/y.png' }] }] },
        'input[0].content[0].type'],
      [{ ...params, tools: [{ type: 'function' }] }, 'tools[0].name'],
      [{ ...params, temperature: 7 }, 'temperature'],
      [{ ...params, text: { format: { type: 'json_schema', name: 'x' } } }, 'text.format.schema'],
    ]) {
      await assert.rejects(client.responses.create(body), (err) => {
        assert.ok(err instanceof OpenAI.BadRequestError, `${JSON.stringify(body)}: ${err}`);
        assert.equal(err.param, param, err.message);
        return true;
      });
    }
  });
});

// Tools need a template that has them: stories260K with Qwen3's own Jinja template, whose tool-call grammar
// forces the form of a call (the weights never choose one); an enum keeps the forced JSON short.
describe('openai client: responses with function tools', () => {
  const suite = suiteServer({ extraArgs: ['--chat-template', QWEN3_TEMPLATE, '--ctx', '2048'] });
  let client;
  before(() => {
    client = new OpenAI({ baseURL: suite.base + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });

  // Thinking off (reasoning effort "none"): Qwen3's grammar lets a call follow a <think> block, which random
  // weights, once in it, fill until max_output_tokens. One call at a time: they never stop calling once they may.
  const params = {
    model: MODEL_ID, instructions: 'You answer with tools.', temperature: 0, max_output_tokens: 24,
    reasoning: { effort: 'none' }, parallel_tool_calls: false,
  };
  const tools = [{
    type: 'function', name: 'get_weather', description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Tokyo', 'Lima'] } },
      required: ['city'], additionalProperties: false },
    strict: true,
  }];

  test('a function tool forced by tool_choice, then its output, then an answer', async () => {
    const call = await client.responses.create({
      ...params, input: 'What is the weather in Paris?', tools, tool_choice: 'required', max_output_tokens: 160,
    });
    const calls = call.output.filter((item) => item.type === 'function_call');
    assert.ok(calls.length >= 1, JSON.stringify(call.output));
    assert.equal(calls[0].name, 'get_weather');
    const args = JSON.parse(calls[0].arguments);
    assert.ok(['Paris', 'Tokyo', 'Lima'].includes(args.city), calls[0].arguments);
    assert.match(calls[0].call_id, /./);

    // Streamed: the call arrives as output_item.added, arguments deltas and .done.
    const stream = await client.responses.create({
      ...params, input: 'What is the weather in Rome?', tools, tool_choice: 'required', max_output_tokens: 160,
      stream: true,
    });
    // Per call (random weights may call more than once): its deltas add up to its .done arguments.
    const deltas = {};
    const dones = [];
    let added;
    for await (const event of stream) {
      if (event.type === 'response.output_item.added' && event.item.type === 'function_call') added ??= event.item;
      if (event.type === 'response.function_call_arguments.delta') {
        deltas[event.item_id] = (deltas[event.item_id] ?? '') + event.delta;
      }
      if (event.type === 'response.function_call_arguments.done') dones.push(event);
    }
    assert.equal(added?.name, 'get_weather');
    assert.ok(dones.length >= 1);
    for (const done of dones) assert.equal(done.arguments, deltas[done.item_id]);
    const streamedArgs = dones[0].arguments;
    assert.ok(['Paris', 'Tokyo', 'Lima'].includes(JSON.parse(streamedArgs).city), streamedArgs);

    const answer = await client.responses.create({
      ...params, previous_response_id: call.id, tools,
      input: [{ type: 'function_call_output', call_id: calls[0].call_id, output: 'Sunny, 21 C' }],
    });
    assert.equal(answer.status === 'completed' || answer.status === 'incomplete', true);
    assert.ok(answer.output.some((item) => item.type === 'message'), JSON.stringify(answer.output));
  });

  test('text.format json_schema: the answer is JSON valid for the schema, streamed and not', async () => {
    const schema = { type: 'object', properties: { mood: { type: 'string', enum: ['happy', 'sad'] },
      stars: { type: 'integer', minimum: 1, maximum: 5 } }, required: ['mood', 'stars'], additionalProperties: false };
    const ask = { ...params, input: 'Rate the story.', max_output_tokens: 60,
      text: { format: { type: 'json_schema', name: 'rating', schema, strict: true } } };
    const r = await client.responses.create(ask);
    const value = JSON.parse(r.output_text);
    assert.ok(['happy', 'sad'].includes(value.mood) && Number.isInteger(value.stars), r.output_text);
    assert.deepEqual(Object.keys(value).sort(), ['mood', 'stars']);
    const stream = await client.responses.create({ ...ask, stream: true });
    let text = '';
    for await (const event of stream) if (event.type === 'response.output_text.delta') text += event.delta;
    assert.equal(text, r.output_text);
  });

  test('reasoning on: a reasoning item, streamed as reasoning_text deltas', async () => {
    // Qwen3's tool-call grammar lets a <think> block come first: random weights, once in it, stay there until
    // max_output_tokens.
    const ask = { ...params, reasoning: { effort: 'medium' }, input: 'What is the weather in Paris?', tools,
      tool_choice: 'required', max_output_tokens: 12 };
    const r = await client.responses.create(ask);
    assert.equal(r.output[0].type, 'reasoning', JSON.stringify(r.output));
    const reasoning = r.output[0].content[0].text;
    assert.ok(reasoning.length > 0, JSON.stringify(r.output));
    const stream = await client.responses.create({ ...ask, stream: true });
    let text = '';
    for await (const event of stream) if (event.type === 'response.reasoning_text.delta') text += event.delta;
    assert.equal(text, reasoning);
  });
});
