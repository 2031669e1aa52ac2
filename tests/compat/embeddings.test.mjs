// Embeddings through the official `openai` client, on a synthesized bge-small-en-v1.5-shaped BERT model
// (tokenizer from ggml-vocab-bert-bge.gguf, random weights: the vectors mean nothing, their shape and
// determinism do).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { clawbotBin, startServer, postJson } from '../integration/server_harness.mjs';
import OpenAI from './openai_client.mjs';

function synthesize(shape, quant) {
  const r = spawnSync(clawbotBin(), ['models', 'synth', shape, '--quant', quant], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, `clawbot models synth ${shape} failed:\n${r.stderr}`);
  return r.stdout.trim().split('\n').at(-1);
}

describe('embeddings with the openai client', () => {
  let server;
  let client;
  before(async () => {
    const model = synthesize('bge-small-en-v1.5', 'f16');
    server = await startServer({ model, extraArgs: ['--parallel', '4'] });
    client = new OpenAI({ baseURL: server.baseUrl + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 30000 });
  });
  after(async () => server && (await server.stop()));

  test('vectors have the model dimension and unit length', async () => {
    const r = await client.embeddings.create({ model: 'bge', input: 'The cat sat on the mat.' });
    assert.equal(r.object, 'list');
    assert.equal(r.data.length, 1);
    const v = r.data[0].embedding;
    assert.equal(v.length, 384);
    const norm = Math.sqrt(v.reduce((s, x) => s + x * x, 0));
    assert.ok(Math.abs(norm - 1) < 1e-3, `L2 norm ${norm}`);
    assert.ok(r.usage.prompt_tokens > 2);
  });

  test('batched inputs equal the same inputs alone', async () => {
    const inputs = ['first sentence here', 'a second, longer sentence with more words in it', 'third'];
    const batched = await client.embeddings.create({ model: 'bge', input: inputs });
    assert.deepEqual(batched.data.map((d) => d.index), [0, 1, 2]);
    for (let i = 0; i < inputs.length; i++) {
      const alone = await client.embeddings.create({ model: 'bge', input: inputs[i] });
      const a = alone.data[0].embedding;
      const b = batched.data[i].embedding;
      const maxDiff = Math.max(...a.map((x, k) => Math.abs(x - b[k])));
      assert.ok(maxDiff < 1e-5, `input ${i}: batched and alone differ by ${maxDiff}`);
    }
    const x = batched.data[0].embedding;
    const y = batched.data[1].embedding;
    assert.notDeepEqual(x, y, 'different inputs should not give the same vector');
  });

  test('base64 encoding decodes to the float vector', async () => {
    const f = await postJson(server.baseUrl, '/v1/embeddings', { input: 'hello', encoding_format: 'float' });
    const b = await postJson(server.baseUrl, '/v1/embeddings', { input: 'hello', encoding_format: 'base64' });
    assert.equal(f.status, 200, f.text);
    assert.equal(b.status, 200, b.text);
    const buf = Buffer.from(b.json.data[0].embedding, 'base64');
    const decoded = Array.from(new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4));
    assert.equal(decoded.length, 384);
    assert.deepEqual(decoded, f.json.data[0].embedding.map((x) => Math.fround(x)));
  });

  test('more inputs than --queue-max (64) on an idle server: one request, answered whole', async () => {
    // Each input used to be queued as a job of its own: 65 inputs were a 503 queue_full on an idle node.
    const inputs = Array.from({ length: 100 }, (_, i) => `sentence number ${i} about a cat`);
    const r = await postJson(server.baseUrl, '/v1/embeddings', { input: inputs });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.data.map((d) => d.index), inputs.map((_, i) => i));
    for (const d of r.json.data) assert.equal(d.embedding.length, 384);
  });

  test('bad inputs are 400s naming the field', async () => {
    for (const [body, param] of [[{}, 'input'], [{ input: 42 }, 'input'], [{ input: ['ok', 7] }, 'input[1]'],
      [{ input: 'x', encoding_format: 'hex' }, 'encoding_format'], [{ input: 'x', dimensions: 12 }, 'dimensions'],
      [{ input: 'word '.repeat(2000) }, 'input']]) {
      const r = await postJson(server.baseUrl, '/v1/embeddings', body);
      assert.equal(r.status, 400, `${JSON.stringify(body).slice(0, 80)} -> ${r.text}`);
      assert.equal(r.json.error.param, param, r.text);
    }
  });

  test('chat on an embedding model is a clear 400', async () => {
    const r = await postJson(server.baseUrl, '/v1/chat/completions', { messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /embedding model/);
  });
});

describe('embeddings on a text-generation model', () => {
  test('a clear 400 through the client', async () => {
    const server = await startServer();
    try {
      const client = new OpenAI({ baseURL: server.baseUrl + '/v1', apiKey: 'unused', maxRetries: 0 });
      await assert.rejects(client.embeddings.create({ model: 'x', input: 'hello' }), (e) => {
        assert.ok(e instanceof OpenAI.BadRequestError, String(e));
        assert.match(e.message, /cannot compute embeddings/);
        return true;
      });
    } finally {
      await server.stop();
    }
  });
});
