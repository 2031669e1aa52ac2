// Tool calling and structured output on /v1/chat/completions, with the official `openai` client: stories260K
// served with Qwen3's own Jinja template. Its weights are random-ish, so it never chooses to call a tool; the
// grammar for tool_choice "required", a named function and response_format forces the form, which is what is
// checked (arguments and answers validate against their schemas with ajv). Greedy decoding: deterministic.
// Setup: (cd tests/compat && npm ci --ignore-scripts)
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { MODEL_ID, QWEN3_TEMPLATE, REPO_ROOT, clawbotBin, startServer } from '../integration/server_harness.mjs';
import OpenAI from './openai_client.mjs';

let Ajv;
try {
  ({ default: Ajv } = await import('ajv'));
} catch (e) {
  throw new Error(`cannot load the "ajv" package (${e.message}); install it: (cd tests/compat && npm ci --ignore-scripts)`);
}
const ajv = new Ajv({ strict: true });

// Schemas with bounded values (enums, one digit), so that even a model that never ends a string of its own
// accord finishes the forced JSON within max_tokens.
const weatherParams = {
  type: 'object',
  properties: { city: { type: 'string', enum: ['Paris', 'Tokyo', 'Lima'] } },
  required: ['city'],
  additionalProperties: false,
};
const timeParams = {
  type: 'object',
  properties: { zone: { type: 'string', enum: ['UTC', 'CET'] }, hours: { type: 'integer', minimum: 0, maximum: 9 } },
  required: ['zone', 'hours'],
  additionalProperties: false,
};
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: weatherParams } },
  { type: 'function', function: { name: 'get_time', description: 'Time in a zone', parameters: timeParams } },
];
const schemaOf = { get_weather: weatherParams, get_time: timeParams };

function assertValidCall(call, name) {
  assert.equal(call.type, 'function');
  assert.match(call.id, /^call_/);
  if (name) assert.equal(call.function.name, name);
  const schema = schemaOf[call.function.name];
  assert.ok(schema, `unknown function ${call.function.name}`);
  const args = JSON.parse(call.function.arguments);
  assert.ok(ajv.validate(schema, args), `${call.function.arguments}: ${ajv.errorsText()}`);
}

describe('openai client: tools and structured output against clawbot serve', () => {
  let server;
  let client;

  before(async () => {
    // Qwen3's tool block is some 500 of stories260K's short tokens.
    server = await startServer({ extraArgs: ['--chat-template', QWEN3_TEMPLATE, '--ctx', '2048'] });
    client = new OpenAI({ baseURL: server.baseUrl + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => {
    if (server) await server.stop();
  });

  // Thinking off: Qwen3's grammar lets a call be preceded by a <think> block, which random weights, once in it,
  // fill until max_tokens (a real model closes it). With it off the template writes an empty block and the
  // grammar starts at the call.
  const ask = (extra = {}) => ({
    model: MODEL_ID,
    messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
    temperature: 0,
    max_tokens: 160,
    chat_template_kwargs: { enable_thinking: false },
    ...extra,
  });

  test('/props shows the Jinja template in use', async () => {
    const props = await (await fetch(server.baseUrl + '/props')).json();
    assert.equal(props.chat_template_name, 'Qwen-Qwen3-0.6B.jinja');
    assert.match(props.chat_template, /<tool_call>/);
    assert.deepEqual(props.chat_template_caps, { jinja: true, supports_tools: true });
  });

  let forcedCall; // the non-streamed answer, for the streamed one to match
  test('tool loop: tool_choice "required" gives a valid call, then a tool result gives an answer', { timeout: 60000 }, async () => {
    const first = await client.chat.completions.create(ask({ tools, tool_choice: 'required', parallel_tool_calls: false }));
    const choice = first.choices[0];
    assert.equal(choice.finish_reason, 'tool_calls', JSON.stringify(choice));
    assert.equal(choice.message.tool_calls.length, 1, 'parallel_tool_calls: false');
    assert.equal(choice.message.content, null, 'no content beside the call (whitespace before it is none)');
    for (const call of choice.message.tool_calls) assertValidCall(call);
    forcedCall = choice.message.tool_calls[0];

    const history = [
      ...ask().messages,
      choice.message,
      ...choice.message.tool_calls.map((c) => ({ role: 'tool', tool_call_id: c.id, content: '{"sky":"clear"}' })),
    ];
    const second = await client.chat.completions.create(ask({ messages: history, tools, tool_choice: 'none', max_tokens: 8 }));
    const answer = second.choices[0];
    assert.ok(['stop', 'length'].includes(answer.finish_reason), JSON.stringify(answer));
    assert.equal(typeof answer.message.content, 'string');
    assert.equal(answer.message.tool_calls, undefined);
    assert.ok(second.usage.prompt_tokens > first.usage.prompt_tokens, 'the history grew');
  });

  test('tool_choice "required", streamed: id and name first, then the arguments in pieces', { timeout: 60000 }, async () => {
    const stream = await client.chat.completions.create(ask({ tools, tool_choice: 'required', parallel_tool_calls: false, stream: true }));
    const calls = [];
    let finish;
    let pieces = 0;
    let content = '';
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      if (c.finish_reason) finish = c.finish_reason;
      content += c.delta.content ?? '';
      for (const d of c.delta.tool_calls ?? []) {
        if (!calls[d.index]) {
          assert.match(d.id ?? '', /^call_/, 'the first piece of a call carries its id');
          assert.equal(d.type, 'function');
          assert.ok(d.function.name, 'and its name');
          calls[d.index] = { id: d.id, type: 'function', function: { name: d.function.name, arguments: d.function.arguments ?? '' } };
        } else {
          assert.equal(d.id, undefined, 'later pieces carry no id');
          assert.equal(d.function.name, undefined, 'nor the name');
          calls[d.index].function.arguments += d.function.arguments;
          pieces += 1;
        }
      }
    }
    assert.equal(finish, 'tool_calls');
    assert.equal(content, '', 'no content deltas beside the call');
    assert.equal(calls.length, 1);
    assert.ok(pieces >= 2, `arguments came in ${pieces} pieces`);
    for (const call of calls) assertValidCall(call);
    assert.ok(forcedCall, 'the non-streamed test ran first');
    assert.equal(calls[0].function.name, forcedCall.function.name);
    assert.equal(calls[0].function.arguments, forcedCall.function.arguments, 'greedy: the same call streamed or not');
  });

  test('a named tool_choice calls that function, streamed and not', { timeout: 60000 }, async () => {
    const named = { type: 'function', function: { name: 'get_time' } };
    const r = await client.chat.completions.create(ask({ tools, tool_choice: named }));
    assert.equal(r.choices[0].finish_reason, 'tool_calls');
    assert.equal(r.choices[0].message.tool_calls.length, 1);
    assertValidCall(r.choices[0].message.tool_calls[0], 'get_time');

    const stream = await client.chat.completions.create(ask({ tools, tool_choice: named, stream: true }));
    let name = '';
    let args = '';
    for await (const chunk of stream) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        name += d.function?.name ?? '';
        args += d.function?.arguments ?? '';
      }
    }
    assert.equal(name, 'get_time');
    assert.equal(args, r.choices[0].message.tool_calls[0].function.arguments);
  });

  test('parallel_tool_calls: Qwen3\'s format allows several calls in one answer', { timeout: 60000 }, async () => {
    // Random weights never stop calling once they may: the answer runs to max_tokens, its last call cut.
    const r = await client.chat.completions.create(ask({ tools, tool_choice: 'required', parallel_tool_calls: true }));
    const calls = r.choices[0].message.tool_calls;
    assert.ok(calls.length >= 2, JSON.stringify(r.choices[0]));
    const whole = r.choices[0].finish_reason === 'tool_calls' ? calls : calls.slice(0, -1);
    assert.ok(whole.length >= 1);
    for (const call of whole) assertValidCall(call);
    assert.equal(new Set(calls.map((c) => c.id)).size, calls.length, 'each call its own id');
  });

  test('response_format json_schema: the answer validates against the schema', { timeout: 60000 }, async () => {
    const schema = {
      type: 'object',
      properties: { answer: { type: 'string', enum: ['yes', 'no'] }, count: { type: 'integer', minimum: 0, maximum: 9 } },
      required: ['answer', 'count'],
      additionalProperties: false,
    };
    const response_format = { type: 'json_schema', json_schema: { name: 'reply', schema, strict: true } };
    for (const stream of [false, true]) {
      let content = '';
      if (stream) {
        for await (const chunk of await client.chat.completions.create(ask({ response_format, stream }))) {
          content += chunk.choices[0]?.delta.content ?? '';
        }
      } else {
        const r = await client.chat.completions.create(ask({ response_format }));
        assert.equal(r.choices[0].finish_reason, 'stop', JSON.stringify(r.choices[0]));
        content = r.choices[0].message.content;
      }
      const value = JSON.parse(content);
      assert.ok(ajv.validate(schema, value), `${content}: ${ajv.errorsText()}`);
    }
  });

  test('response_format json_object: the answer is a JSON object', { timeout: 60000 }, async () => {
    const r = await client.chat.completions.create(ask({ response_format: { type: 'json_object' }, max_tokens: 400 }));
    // An unbounded object may run to max_tokens; whatever came must be the start of an object.
    assert.match(r.choices[0].message.content, /^\s*\{/);
    if (r.choices[0].finish_reason === 'stop') assert.equal(typeof JSON.parse(r.choices[0].message.content), 'object');
  });

  // Thinking on, this model opens the <think> block the grammar allows before a call, and thinks until
  // max_tokens: what it writes there is reasoning, never content.
  const thinking = () => ask({ tools, tool_choice: 'required', parallel_tool_calls: false, max_tokens: 24, chat_template_kwargs: { enable_thinking: true } });

  test('reasoning: thinking goes to reasoning_content, streamed as its own delta', { timeout: 60000 }, async () => {
    const r = await client.chat.completions.create(thinking());
    const message = r.choices[0].message;
    assert.ok(message.reasoning_content?.length > 0, JSON.stringify(message));
    assert.ok(!message.content, JSON.stringify(message));

    let reasoning = '';
    let content = '';
    for await (const chunk of await client.chat.completions.create({ ...thinking(), stream: true })) {
      const delta = chunk.choices[0]?.delta ?? {};
      assert.ok(!(delta.reasoning_content && delta.content), 'each in its own delta');
      reasoning += delta.reasoning_content ?? '';
      content += delta.content ?? '';
    }
    assert.equal(reasoning, message.reasoning_content);
    assert.equal(content, '');
  });

  async function badRequest(params) {
    try {
      await client.chat.completions.create(ask(params));
    } catch (e) {
      assert.equal(e.status, 400, String(e));
      return e;
    }
    assert.fail('no error');
  }

  test('bad input: a 400 that names the field', async () => {
    let e = await badRequest({ tools, tool_choice: { type: 'function', function: { name: 'get_moon' } } });
    assert.equal(e.param, 'tool_choice');
    assert.match(e.message, /get_moon/);

    e = await badRequest({ tools: { type: 'function' } });
    assert.equal(e.param, 'tools');

    e = await badRequest({ tools, tool_choice: 'sometimes' });
    assert.equal(e.param, 'tool_choice');

    e = await badRequest({ tools: [{ type: 'function', function: { name: 'bad name!' } }] });
    assert.equal(e.param, 'tools[0].function.name');

    // A schema the converter cannot enforce: refused, never answered unconstrained; its words kept.
    const unenforceable = { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } };
    e = await badRequest({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: unenforceable } } });
    assert.equal(e.param, 'response_format.json_schema.schema');
    assert.match(e.message, /cannot be enforced: JSON schema conversion failed:.*#\/definitions\/missing/s);

    // Patterns the converter would drop or misread (unanchored, lookarounds) and a grammar too large for the
    // sampler: each a 400 naming where it came from, not an answer weaker than the schema.
    const stringSchema = (extra) => ({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'string', ...extra } } } });
    for (const pattern of ['[a-z]+', '^(?<=a)b$']) {
      e = await badRequest(stringSchema({ pattern }));
      assert.equal(e.param, 'response_format.json_schema.schema');
      assert.match(e.message, /pattern .* (not anchored|lookaround)/);
    }
    e = await badRequest({ tools: [{ type: 'function', function: { name: 'f', parameters: { type: 'object', properties: { code: { type: 'string', pattern: 'A+' } } } } }] });
    assert.equal(e.param, 'tools');
    // A "pattern" inside data (default, enum, const, examples) is no pattern: accepted.
    const withData = { type: 'object', properties: { a: { type: 'string', enum: ['x'] } }, required: ['a'],
      default: { pattern: 'not anchored' } };
    const accepted = await client.chat.completions.create(ask({ max_tokens: 20,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: withData } } }));
    assert.ok(accepted.choices.length === 1);
    e = await badRequest(stringSchema({ minLength: 1000000 }));
    assert.equal(e.param, 'response_format.json_schema.schema');
    assert.match(e.message, /refused by the sampler/);

    e = await badRequest({ response_format: { type: 'xml' } });
    assert.equal(e.param, 'response_format.type');

    e = await badRequest({ chat_template_kwargs: { enable_thinking: 'no' } });
    assert.equal(e.param, 'chat_template_kwargs.enable_thinking');
  });

  test('assistant tool_calls and tool messages in the history are formatted by the template', async () => {
    const history = [
      { role: 'user', content: 'Weather in Lima?' },
      { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"Lima"}' } }] },
      { role: 'tool', tool_call_id: 'call_1', content: 'rain' },
    ];
    // The call is in the prompt, written out by the template: the same history without it is shorter by it.
    const without = history.map((m) => (m.role === 'assistant' ? { role: 'assistant', content: '' } : m));
    const withCall = await client.chat.completions.create(ask({ messages: history, tools, max_tokens: 1 }));
    const withoutCall = await client.chat.completions.create(ask({ messages: without, tools, max_tokens: 1 }));
    const grown = withCall.usage.prompt_tokens - withoutCall.usage.prompt_tokens;
    assert.ok(grown >= '{"name": "get_weather", "arguments": {"city": "Lima"}}'.length / 4, `the call added ${grown} tokens`);
  });
});

describe('--reasoning-format none', () => {
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--chat-template', QWEN3_TEMPLATE, '--ctx', '2048', '--reasoning-format', 'none'] });
  });
  after(async () => {
    if (server) await server.stop();
  });

  // (How the parser then leaves <think> in the content: tests/unit/engine/chat_format_test.cpp.)
  test('is what /props says', async () => {
    const props = await (await fetch(server.baseUrl + '/props')).json();
    assert.equal(props.reasoning_format, 'none');
  });
});

// qwen3-tools-tiny (clawbot models synth): Qwen3's vocabulary with <tool_call> and <think> as single tokens and
// Qwen3's template in its own tokenizer.chat_template, served without --chat-template.
describe('the model\'s own Jinja template: qwen3-tools-tiny', () => {
  let server;
  let client;
  before(async () => {
    // Its vocabulary and template come from llama.cpp's source in the dependency cache.
    const prefixFile = path.join(REPO_ROOT, '.deps-prefix');
    const prefix = process.env.CLAWBOT_LLAMA_PREFIX ?? (fs.existsSync(prefixFile) ? fs.readFileSync(prefixFile, 'utf8').trim() : '');
    assert.ok(prefix, `no llama.cpp prefix: run make build (it writes ${prefixFile}) or set CLAWBOT_LLAMA_PREFIX`);
    const env = { ...process.env, CLAWBOT_MODELS: `${process.env.CLAWBOT_MODELS}:${prefix}/src/models` };
    const synth = spawnSync(clawbotBin(), ['models', 'synth', 'qwen3-tools-tiny', '--quant', 'q8_0'], { encoding: 'utf8', env });
    assert.equal(synth.status, 0, synth.stderr);
    const model = synth.stdout.trim().split('\n').at(-1);
    server = await startServer({ model, chatTemplate: null, extraArgs: ['--ctx', '2048'], timeoutMs: 120000 });
    client = new OpenAI({ baseURL: server.baseUrl + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 60000 });
  });
  after(async () => {
    if (server) await server.stop();
  });

  test('tool_choice "required": a valid call, streamed and not', { timeout: 120000 }, async () => {
    const props = await (await fetch(server.baseUrl + '/props')).json();
    assert.match(props.chat_template_name, /\(from model\)$/);
    assert.match(props.chat_template, /<tool_call>/);
    const params = {
      model: 'qwen3-tools-tiny',
      messages: [{ role: 'user', content: 'What is the weather in Paris?' }],
      tools,
      tool_choice: 'required',
      parallel_tool_calls: false,
      temperature: 0,
      max_tokens: 160,
      chat_template_kwargs: { enable_thinking: false },
    };
    const r = await client.chat.completions.create(params);
    assert.equal(r.choices[0].finish_reason, 'tool_calls', JSON.stringify(r.choices[0]));
    assert.equal(r.choices[0].message.content, null);
    assert.equal(r.choices[0].message.tool_calls.length, 1);
    assertValidCall(r.choices[0].message.tool_calls[0]);

    let args = '';
    let name = '';
    for await (const chunk of await client.chat.completions.create({ ...params, stream: true })) {
      for (const d of chunk.choices[0]?.delta.tool_calls ?? []) {
        name += d.function?.name ?? '';
        args += d.function?.arguments ?? '';
      }
    }
    assert.equal(name, r.choices[0].message.tool_calls[0].function.name);
    assert.equal(args, r.choices[0].message.tool_calls[0].function.arguments);
  });
});
