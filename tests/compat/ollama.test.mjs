// Issue 19, item 6: Ollama's API on `clawbot serve` through the official `ollama` npm client (ollama-js),
// pointed at the node's own port: list, show, chat streamed and not, generate (templated and raw), embed,
// ps, version; bad input answered in Ollama's error shape {"error": "..."} with a 4xx naming the field.
// Model: stories260K with --chat-template chatml; embeddings on a synthesized bge-small-en-v1.5 shape.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { clawbotBin, startServer, MODEL_ID, QWEN3_TEMPLATE, modelPath, postJson } from '../integration/server_harness.mjs';
import { writeWithFimTokens } from '../integration/gguf_fim.mjs';
import Ollama from './ollama_client.mjs';

let Ajv;
try {
  ({ default: Ajv } = await import('ajv'));
} catch (e) {
  throw new Error(`cannot load the "ajv" package (${e.message}); install it: (cd tests/compat && npm ci --ignore-scripts)`);
}

/** The ResponseError ollama-js throws for `promise`: its status and message. */
async function refusal(promise) {
  try {
    await promise;
  } catch (e) {
    assert.equal(e.name, 'ResponseError', `${e.name}: ${e.message}`);
    return { status: e.status_code, message: e.error };
  }
  assert.fail('the request was answered, not refused');
}

const greedy = { temperature: 0, seed: 7, num_predict: 12 };

describe('ollama client against serve (stories260K, chatml)', () => {
  let server;
  let client;
  before(async () => {
    server = await startServer({ extraArgs: ['--strict-model'] });
    client = new Ollama({ host: server.baseUrl });
  });
  after(async () => server && (await server.stop()));

  test('version is numeric x.y.z', async () => {
    const { version } = await client.version();
    assert.match(version, /^\d+\.\d+\.\d+$/);
  });

  test('list: the model with its details', async () => {
    const { models } = await client.list();
    assert.equal(models.length, 1);
    const m = models[0];
    assert.equal(m.name, `${MODEL_ID}:latest`);
    assert.equal(m.model, m.name);
    assert.ok(m.size > 0);
    assert.match(m.digest, /^[0-9a-f]{64}$/);
    assert.ok(m.modified_at instanceof Date || !Number.isNaN(Date.parse(m.modified_at)));
    assert.equal(m.details.format, 'gguf');
    assert.equal(m.details.family, 'llama');
    assert.match(m.details.parameter_size, /^\d+(\.\d+)?[KMB]?$/);
    assert.equal(typeof m.details.quantization_level, 'string');
  });

  test('show: model_info from the GGUF, template, parameters, capabilities', async () => {
    const r = await client.show({ model: MODEL_ID });
    assert.equal(r.model_info['general.architecture'], 'llama');
    assert.equal(typeof r.model_info['llama.context_length'], 'number');
    assert.equal(typeof r.model_info['llama.block_count'], 'number');
    assert.ok(r.model_info['general.parameter_count'] > 0);
    assert.ok(!Object.keys(r.model_info).some((k) => k.startsWith('tokenizer.')), 'the vocabulary was listed');
    assert.ok(r.capabilities.includes('completion'));
    assert.ok(!r.capabilities.includes('embedding'));
    assert.equal(typeof r.template, 'string');
    assert.match(r.parameters, /temperature/);
    assert.equal(r.details.format, 'gguf');
  });

  test('chat, not streamed: the message and the final statistics in nanoseconds', async () => {
    const r = await client.chat({ model: `${MODEL_ID}:latest`, messages: [{ role: 'user', content: 'Once upon a time' }],
      options: greedy });
    assert.equal(r.model, `${MODEL_ID}:latest`);
    assert.equal(r.message.role, 'assistant');
    assert.ok(r.message.content.length > 0);
    assert.equal(r.done, true);
    assert.ok(['stop', 'length'].includes(r.done_reason), r.done_reason);
    assert.ok(r.prompt_eval_count > 0);
    assert.ok(r.eval_count > 0 && r.eval_count <= 12, String(r.eval_count));
    assert.ok(r.total_duration > 0 && Number.isInteger(r.total_duration));
    assert.ok(r.eval_duration >= 0 && r.prompt_eval_duration >= 0);
    assert.ok(!Number.isNaN(Date.parse(r.created_at)));
  });

  test('chat streamed: pieces, then a done line; the same text as the whole answer (greedy)', async () => {
    const messages = [{ role: 'user', content: 'Once upon a time' }];
    const whole = await client.chat({ model: MODEL_ID, messages, options: greedy });
    const stream = await client.chat({ model: MODEL_ID, messages, options: greedy, stream: true });
    let text = '';
    let last;
    let pieces = 0;
    for await (const part of stream) {
      if (!part.done) {
        pieces++;
        text += part.message.content;
      }
      last = part;
    }
    assert.ok(pieces > 1, `${pieces} pieces`);
    assert.equal(last.done, true);
    assert.equal(last.message.content, '');
    assert.equal(last.eval_count, whole.eval_count);
    assert.equal(last.prompt_eval_count, whole.prompt_eval_count);
    assert.equal(text, whole.message.content);
  });

  test('the stream is NDJSON by default (stream omitted), one JSON object a line', async () => {
    const res = await fetch(`${server.baseUrl}/api/chat`, { method: 'POST', body: JSON.stringify({
      model: MODEL_ID, messages: [{ role: 'user', content: 'Hi' }], options: greedy }) });
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type'), /^application\/x-ndjson/);
    const text = await res.text();
    assert.ok(text.endsWith('\n'));
    const lines = text.trimEnd().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.at(-1).done, true);
    assert.ok(lines.slice(0, -1).every((l) => l.done === false));
    assert.ok(!text.includes('[DONE]'));
  });

  test('generate: templated with system, streamed and not; raw is the plain completion', async () => {
    const r = await client.generate({ model: MODEL_ID, prompt: 'Once upon a time', system: 'Tell a story.', options: greedy });
    assert.ok(r.response.length > 0);
    assert.equal(r.done, true);
    assert.ok(r.eval_count > 0);
    let streamed = '';
    for await (const part of await client.generate({ model: MODEL_ID, prompt: 'Once upon a time', system: 'Tell a story.',
      options: greedy, stream: true })) streamed += part.response;
    assert.equal(streamed, r.response);
    // raw: no template, as /v1/completions would continue the same text.
    const raw = await client.generate({ model: MODEL_ID, prompt: 'Once upon a time', raw: true, options: greedy });
    const completion = await postJson(server.baseUrl, '/v1/completions',
      { prompt: 'Once upon a time', temperature: 0, seed: 7, max_tokens: 12 });
    assert.equal(completion.status, 200, completion.text);
    assert.equal(raw.response, completion.json.choices[0].text);
    assert.ok(raw.prompt_eval_count < r.prompt_eval_count, 'raw prompts carry no template');
  });

  test('options are applied: num_predict caps the answer, stop ends it', async () => {
    const r = await client.generate({ model: MODEL_ID, prompt: 'Once upon a time', raw: true,
      options: { temperature: 0, num_predict: 3 } });
    assert.equal(r.eval_count, 3);
    assert.equal(r.done_reason, 'length');
  });

  test('a request without messages loads the model (done_reason "load")', async () => {
    const r = await client.chat({ model: MODEL_ID, messages: [] });
    assert.equal(r.done, true);
    assert.equal(r.done_reason, 'load');
  });

  test('ps: the loaded model, never expiring, no VRAM on a CPU build', async () => {
    const { models } = await client.ps();
    assert.equal(models.length, 1);
    assert.equal(models[0].name, `${MODEL_ID}:latest`);
    assert.equal(models[0].size_vram, 0);
    assert.ok(models[0].expires_at instanceof Date || !Number.isNaN(Date.parse(models[0].expires_at)));
  });

  test('bad input: Ollama\'s error shape with a 4xx naming the field', async () => {
    const messages = [{ role: 'user', content: 'hi' }];
    let e = await refusal(client.chat({ model: MODEL_ID, messages: 'hello' }));
    assert.equal(e.status, 400);
    assert.match(e.message, /'messages'/);
    e = await refusal(client.chat({ model: MODEL_ID, messages, options: { temperature: 'hot' } }));
    assert.equal(e.status, 400);
    assert.match(e.message, /'options\.temperature'/);
    e = await refusal(client.chat({ model: 'no-such-model', messages }));
    assert.equal(e.status, 404);
    assert.match(e.message, /no-such-model/);
    e = await refusal(client.generate({ model: MODEL_ID, prompt: 'def f(', suffix: 'return 1' }));
    assert.equal(e.status, 400);
    assert.match(e.message, /insert/);
    e = await refusal(client.embed({ model: MODEL_ID, input: 'hi' }));
    assert.equal(e.status, 400);
    assert.match(e.message, /embeddings/);
    // The body itself: {"error": "..."} and nothing else.
    const r = await postJson(server.baseUrl, '/api/chat', { model: MODEL_ID, messages: [{ role: 'robot', content: 'x' }] });
    assert.equal(r.status, 400);
    assert.deepEqual(Object.keys(r.json), ['error']);
    assert.match(r.json.error, /'messages\[0\]\.role'/);
  });
});

describe('ollama client embeddings (synthesized bge-small-en-v1.5)', () => {
  let server;
  let client;
  before(async () => {
    const r = spawnSync(clawbotBin(), ['models', 'synth', 'bge-small-en-v1.5', '--quant', 'f16'],
      { encoding: 'utf8', timeout: 120000 });
    assert.equal(r.status, 0, `clawbot models synth failed:\n${r.stderr}`);
    server = await startServer({ model: r.stdout.trim().split('\n').at(-1) });
    client = new Ollama({ host: server.baseUrl });
  });
  after(async () => server && (await server.stop()));

  test('embed: one vector per input, as /v1/embeddings computes it', async () => {
    const r = await client.embed({ model: 'bge', input: ['The cat sat.', 'A dog ran.'] });
    assert.equal(r.embeddings.length, 2);
    assert.equal(r.embeddings[0].length, 384);
    assert.ok(r.prompt_eval_count > 2);
    const openai = await postJson(server.baseUrl, '/v1/embeddings', { input: 'The cat sat.' });
    assert.equal(openai.status, 200, openai.text);
    const diff = Math.max(...openai.json.data[0].embedding.map((x, i) => Math.abs(x - r.embeddings[0][i])));
    assert.ok(diff < 1e-5, `the routes disagree by ${diff}`);
    const one = await client.embed({ model: 'bge', input: 'The cat sat.' });
    assert.equal(one.embeddings.length, 1);
  });

  test('legacy embeddings {prompt} -> {embedding}; show says "embedding"', async () => {
    const r = await client.embeddings({ model: 'bge', prompt: 'The cat sat.' });
    assert.equal(r.embedding.length, 384);
    const show = await client.show({ model: 'bge' });
    assert.deepEqual(show.capabilities, ['embedding']);
  });

  test('a generation request to an embedding model: 400 in Ollama\'s shape', async () => {
    const e = await refusal(client.chat({ model: 'bge', messages: [{ role: 'user', content: 'hi' }] }));
    assert.equal(e.status, 400);
    assert.match(e.message, /embedding model/);
  });
});

describe('ollama client: tools, format and think with Qwen3\'s template (stories260K weights)', () => {
  let server;
  let client;
  const weather = { type: 'object', properties: { city: { type: 'string', enum: ['Paris', 'Tokyo'] } },
    required: ['city'], additionalProperties: false };
  const tools = [{ type: 'function', function: { name: 'get_weather', description: 'Weather in a city', parameters: weather } }];
  before(async () => {
    server = await startServer({ extraArgs: ['--chat-template', QWEN3_TEMPLATE, '--ctx', '2048'] });
    client = new Ollama({ host: server.baseUrl });
  });
  after(async () => server && (await server.stop()));

  test('show: the template takes tools and thinks', async () => {
    const r = await client.show({ model: MODEL_ID });
    assert.deepEqual(r.capabilities, ['completion', 'tools', 'thinking']);
    assert.match(r.template, /tool_call/);
  });

  test('format as a JSON schema: the answer validates, streamed and not', async () => {
    const schema = { type: 'object', properties: { mood: { type: 'string', enum: ['happy', 'sad'] },
      score: { type: 'integer', minimum: 0, maximum: 9 } }, required: ['mood', 'score'], additionalProperties: false };
    const messages = [{ role: 'user', content: 'How do you feel?' }];
    const r = await client.chat({ model: MODEL_ID, messages, format: schema, think: false, options: { temperature: 0, num_predict: 64 } });
    const answer = JSON.parse(r.message.content);
    const ajv = new Ajv({ strict: true });
    assert.ok(ajv.validate(schema, answer), `${r.message.content}: ${ajv.errorsText()}`);
    let streamed = '';
    for await (const part of await client.chat({ model: MODEL_ID, messages, format: schema, think: false, stream: true,
      options: { temperature: 0, num_predict: 64 } })) streamed += part.message.content;
    assert.equal(streamed, r.message.content);
    const json = await client.generate({ model: MODEL_ID, prompt: 'A JSON object, please', format: 'json', think: false,
      options: { temperature: 0, num_predict: 48 } });
    if (json.done_reason === 'stop') assert.equal(typeof JSON.parse(json.response), 'object');
    else assert.match(json.response, /^\s*\{/);
  });

  test('a schema the grammar cannot enforce is a 400 naming "format"', async () => {
    const e = await refusal(client.chat({ model: MODEL_ID, messages: [{ role: 'user', content: 'x' }],
      format: { type: 'object', properties: { a: { $ref: '#/definitions/missing' } } } }));
    assert.equal(e.status, 400);
    assert.match(e.message, /'format'/);
  });

  test('tools and a past tool call (arguments as an object) reach the template', async () => {
    const messages = [{ role: 'user', content: 'Weather in Paris?' }];
    const options = { temperature: 0, num_predict: 4 };
    const plain = await client.chat({ model: MODEL_ID, messages, think: false, options });
    const withTools = await client.chat({ model: MODEL_ID, messages, tools, think: false, options });
    assert.ok(withTools.prompt_eval_count > plain.prompt_eval_count + 20, 'the tools were not formatted into the prompt');
    const history = [...messages,
      { role: 'assistant', content: '', tool_calls: [{ function: { name: 'get_weather', arguments: { city: 'Paris' } } }] },
      { role: 'tool', content: '18 C, clear', tool_name: 'get_weather' }];
    const r = await client.chat({ model: MODEL_ID, messages: history, tools, think: false, options });
    assert.equal(r.done, true);
    assert.ok(r.prompt_eval_count > withTools.prompt_eval_count + 10, 'the tool call and its result were not in the prompt');
  });
});

describe('ollama client: generate with a suffix on a model with FIM tokens', () => {
  let server;
  let client;
  let dir;
  before(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-ollama-fim-'));
    // <0x01>, <0x02>, <0x03>: byte tokens no source text uses, as FIM prefix, suffix and middle.
    const model = writeWithFimTokens(modelPath(), path.join(dir, 'stories260K-fim.gguf'), { pre: 4, suf: 5, mid: 6 });
    server = await startServer({ model });
    client = new Ollama({ host: server.baseUrl });
  });
  after(async () => {
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('suffix fills in the middle as /infill does; show says "insert"', async () => {
    const r = await client.generate({ model: 'stories260K-fim', prompt: 'def add(a, b):\n    ', suffix: '\n',
      options: { temperature: 0, num_predict: 8 } });
    const infill = await postJson(server.baseUrl, '/infill',
      { input_prefix: 'def add(a, b):\n    ', input_suffix: '\n', n_predict: 8, temperature: 0 });
    assert.equal(infill.status, 200, infill.text);
    assert.equal(r.response, infill.json.content);
    assert.equal(r.prompt_eval_count, infill.json.tokens_evaluated);
    assert.ok((await client.show({ model: 'stories260K-fim' })).capabilities.includes('insert'));
  });
});
