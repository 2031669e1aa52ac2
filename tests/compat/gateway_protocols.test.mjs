// Every new protocol through `clawbot gateway` (API keys, audit log) in front of real nodes: a chat node
// (stories260K with Qwen3's Jinja template, for tools) and a reranker node (a synthesized bge-reranker-tiny),
// driven by the official clients. With a key: Responses (whole, streamed, a forced function tool,
// previous_response_id), Anthropic Messages (whole, streamed, a forced tool, count_tokens, the key sent as
// x-api-key as that SDK sends it), rerank (routed by model to the reranker node); without one: 401 in each
// protocol's own error class; and the tokens the gateway counts for the key are each answer's own usage.
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=../shared/models node --test tests/compat/gateway_protocols.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { MODEL_ID, QWEN3_TEMPLATE, clawbotBin, startServer } from '../integration/server_harness.mjs';
import { createKey, keyId, startGateway, tempDir, waitUntil, writeGatewayConfig } from '../integration/gateway_helpers.mjs';
import OpenAI from './openai_client.mjs';
import Anthropic from './anthropic_client.mjs';

describe('Responses, Anthropic Messages and rerank through clawbot gateway', () => {
  let chatNode;
  let rerankNode;
  let gateway;
  let dir;
  let key;
  let openai;
  let anthropic;
  const usage = []; // [route, tokens in, tokens out] of each answer through the gateway, in order
  const tools = [{
    type: 'function', name: 'get_weather', description: 'The weather in a city',
    parameters: { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Lima'] } },
      required: ['city'], additionalProperties: false },
  }];

  before(async () => {
    dir = tempDir('clawbot-compat-gw-protocols-');
    const reranker = path.join(dir, 'bge-reranker-tiny-q8_0.gguf');
    const synth = spawnSync(clawbotBin(), ['models', 'synth', 'bge-reranker-tiny', '-o', reranker],
      { encoding: 'utf8', timeout: 120000 });
    assert.equal(synth.status, 0, synth.stderr);
    [chatNode, rerankNode] = await Promise.all([
      startServer({ extraArgs: ['--chat-template', QWEN3_TEMPLATE, '--ctx', '2048'] }),
      startServer({ model: reranker }),
    ]);
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: chatNode.baseUrl, name: 'chat' }, { url: rerankNode.baseUrl, name: 'rerank' }],
      health_checks: { interval_ms: 200, timeout_ms: 2000 },
      auth: 'keys',
      audit_log: 'audit.log',
    };
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'protocols-compat'));
    gateway = await startGateway(config, { dir });
    openai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: key, maxRetries: 0, timeout: 60000 });
    anthropic = new Anthropic({ baseURL: gateway.url, apiKey: key, maxRetries: 0, timeout: 60000 });
    const listed = await waitUntil(async () => (await openai.models.list()).data.length === 2, 5000);
    assert.ok(listed, 'the gateway never listed both nodes\' models');
  });
  after(async () => {
    await gateway?.stop('SIGKILL');
    await Promise.all([chatNode?.stop(), rerankNode?.stop()]);
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('Responses: whole, streamed, a forced function tool and previous_response_id', { timeout: 60000 }, async () => {
    const params = { model: MODEL_ID, temperature: 0, max_output_tokens: 16, reasoning: { effort: 'none' } };
    const whole = await openai.responses.create({ ...params, input: 'Tell me a story about a fox.' });
    assert.equal(whole.status === 'completed' || whole.status === 'incomplete', true, JSON.stringify(whole));
    usage.push(['/v1/responses', whole.usage.input_tokens, whole.usage.output_tokens]);

    let completed;
    let text = '';
    for await (const event of await openai.responses.create({ ...params, input: 'Tell me a story about a fox.', stream: true })) {
      if (event.type === 'response.output_text.delta') text += event.delta;
      if (event.type === 'response.completed' || event.type === 'response.incomplete') completed = event.response;
    }
    assert.equal(text, whole.output_text, 'the stream through the gateway differs from the whole answer');
    usage.push(['/v1/responses', completed.usage.input_tokens, completed.usage.output_tokens]);

    const call = await openai.responses.create({
      ...params, input: 'What is the weather in Paris?', tools, tool_choice: 'required', parallel_tool_calls: false,
      max_output_tokens: 120,
    });
    const fn = call.output.find((item) => item.type === 'function_call');
    assert.equal(fn?.name, 'get_weather', JSON.stringify(call.output));
    assert.ok(['Paris', 'Lima'].includes(JSON.parse(fn.arguments).city), fn.arguments);
    usage.push(['/v1/responses', call.usage.input_tokens, call.usage.output_tokens]);
    const next = await openai.responses.create({
      ...params, previous_response_id: call.id, tools,
      input: [{ type: 'function_call_output', call_id: fn.call_id, output: 'Sunny, 21 C' }],
    });
    assert.ok(next.usage.input_tokens > call.usage.input_tokens, 'the kept conversation was not continued');
    usage.push(['/v1/responses', next.usage.input_tokens, next.usage.output_tokens]);
  });

  test('Anthropic Messages with the key as x-api-key: whole, streamed, a forced tool, count_tokens', { timeout: 60000 }, async () => {
    const params = { model: MODEL_ID, max_tokens: 16, temperature: 0, thinking: { type: 'disabled' },
      messages: [{ role: 'user', content: 'Tell me a story about a dog.' }] };
    const whole = await anthropic.messages.create(params);
    assert.equal(whole.type, 'message');
    usage.push(['/v1/messages', whole.usage.input_tokens + (whole.usage.cache_read_input_tokens ?? 0), whole.usage.output_tokens]);

    const final = await anthropic.messages.stream(params).finalMessage();
    assert.deepEqual(final.content, whole.content, 'the stream through the gateway differs from the whole answer');
    usage.push(['/v1/messages', final.usage.input_tokens + (final.usage.cache_read_input_tokens ?? 0), final.usage.output_tokens]);

    const forced = await anthropic.messages.create({
      ...params, max_tokens: 120, tool_choice: { type: 'tool', name: 'get_weather', disable_parallel_tool_use: true },
      tools: [{ name: 'get_weather', description: 'The weather in a city', input_schema: tools[0].parameters }],
      messages: [{ role: 'user', content: 'What is the weather in Lima?' }],
    });
    const use = forced.content.find((block) => block.type === 'tool_use');
    assert.equal(use?.name, 'get_weather', JSON.stringify(forced.content));
    assert.ok(['Paris', 'Lima'].includes(use.input.city), JSON.stringify(use.input));
    usage.push(['/v1/messages', forced.usage.input_tokens + (forced.usage.cache_read_input_tokens ?? 0), forced.usage.output_tokens]);

    const counted = await anthropic.messages.countTokens({ model: MODEL_ID, messages: params.messages });
    assert.ok(counted.input_tokens > 0);
  });

  test('rerank goes to the node that serves the reranker', async () => {
    const r = await fetch(`${gateway.url}/v1/rerank`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'bge-reranker-tiny-q8_0', query: 'What is a cat?', documents: ['A cat.', 'A dog.'], top_n: 1 }),
    });
    const body = await r.json();
    assert.equal(r.status, 200, JSON.stringify(body));
    assert.equal(r.headers.get('x-clawbot-upstream'), 'rerank');
    assert.equal(body.results.length, 1);
  });

  test('without a key: 401 in each client\'s own error class', async () => {
    const anonymousOpenai = new OpenAI({ baseURL: `${gateway.url}/v1`, apiKey: 'not-a-key', maxRetries: 0 });
    await assert.rejects(anonymousOpenai.responses.create({ model: MODEL_ID, input: 'hi' }), (e) => {
      assert.ok(e instanceof OpenAI.AuthenticationError, String(e));
      return true;
    });
    const anonymousAnthropic = new Anthropic({ baseURL: gateway.url, apiKey: 'not-a-key', maxRetries: 0 });
    await assert.rejects(anonymousAnthropic.messages.create({ model: MODEL_ID, max_tokens: 4,
      messages: [{ role: 'user', content: 'hi' }] }), (e) => {
      assert.ok(e instanceof Anthropic.AuthenticationError, String(e));
      assert.equal(e.error?.type, 'error', JSON.stringify(e.error));
      return true;
    });
    const r = await fetch(`${gateway.url}/v1/rerank`, { method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ query: 'q', documents: ['d'] }) });
    assert.equal(r.status, 401);
  });

  test('the tokens counted for the key are the answers\' own usage', async () => {
    const stopped = await gateway.stop('SIGTERM');
    assert.equal(stopped.code, 0, gateway.stderr());
    const records = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))
      .filter((r) => r.status === 200 && (r.route === 'POST /v1/responses' || r.route === 'POST /v1/messages'));
    assert.deepEqual(records.map((r) => [r.route.slice(5), r.tokens_in, r.tokens_out]), usage,
      JSON.stringify(records.map((r) => [r.route.slice(5), r.tokens_in, r.tokens_out])));
    for (const r of records) assert.equal(r.key_id, keyId(key));
  });
});
