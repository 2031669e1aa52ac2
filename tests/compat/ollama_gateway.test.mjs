// The official `ollama` npm client through `clawbot gateway` (API keys and an audit log) in front of a real
// `clawbot serve`: list, show, chat streamed and not, generate, ps and version work with a key (sent as
// Authorization: Bearer in the client's headers), are 401 without one (Ollama's error shape), and the tokens
// the gateway counts for the key are the answers' own prompt_eval_count / eval_count.
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=/work/shared/models node --test tests/compat/ollama_gateway.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { MODEL_ID, startServer } from '../integration/server_harness.mjs';
import { createKey, keyId, startGateway, tempDir, waitUntil, writeGatewayConfig } from '../integration/gateway_helpers.mjs';
import Ollama from './ollama_client.mjs';


describe('ollama client through clawbot gateway', () => {
  let server;
  let gateway;
  let dir;
  let key;
  let viaGateway;
  let direct;
  const answers = []; // [route, prompt_eval_count, eval_count] of each answer through the gateway
  const greedy = { temperature: 0, seed: 3, num_predict: 10 };
  const messages = [{ role: 'user', content: 'Tell me a story about a fox.' }];

  before(async () => {
    server = await startServer();
    dir = tempDir('clawbot-compat-ollama-gw-');
    const config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: server.baseUrl, name: 'node-1' }],
      health_checks: { interval_ms: 200, timeout_ms: 2000 },
      auth: 'keys',
      audit_log: 'audit.log',
    };
    ({ key } = await createKey(writeGatewayConfig(dir, config), 'ollama-compat'));
    gateway = await startGateway(config, { dir });
    viaGateway = new Ollama({ host: gateway.url, headers: { Authorization: `Bearer ${key}` } });
    direct = new Ollama({ host: server.baseUrl });
    const listed = await waitUntil(async () => (await viaGateway.list()).models.length > 0, 5000);
    assert.ok(listed, 'the gateway never listed the node\'s model');
  });
  after(async () => {
    await gateway?.stop('SIGKILL');
    await server?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  test('list, ps and version through the gateway', async () => {
    const { models } = await viaGateway.list();
    assert.deepEqual(models.map((m) => m.name), [`${MODEL_ID}:latest`]);
    assert.equal(models[0].details.family, 'llama');
    const ps = await viaGateway.ps();
    assert.equal(ps.models[0].name, `${MODEL_ID}:latest`);
    const [gw, node] = [await viaGateway.version(), await direct.version()];
    assert.equal(gw.version, node.version);
  });

  test('show is the node\'s answer', async () => {
    const r = await viaGateway.show({ model: `${MODEL_ID}:latest` });
    assert.equal(r.model_info['general.architecture'], 'llama');
  });

  test('chat, whole and streamed: the node\'s answer', { timeout: 60000 }, async () => {
    const ref = await direct.chat({ model: MODEL_ID, messages, options: greedy });
    const whole = await viaGateway.chat({ model: `${MODEL_ID}:latest`, messages, options: greedy });
    assert.equal(whole.message.content, ref.message.content);
    answers.push(['/api/chat', whole.prompt_eval_count, whole.eval_count]);
    let text = '';
    let last;
    for await (const part of await viaGateway.chat({ model: MODEL_ID, messages, options: greedy, stream: true })) {
      text += part.message.content;
      last = part;
    }
    assert.equal(text, ref.message.content);
    assert.equal(last.done, true);
    answers.push(['/api/chat', last.prompt_eval_count, last.eval_count]);
  });

  test('generate, streamed', { timeout: 60000 }, async () => {
    let last;
    for await (const part of await viaGateway.generate({ model: MODEL_ID, prompt: 'Once upon a time', raw: true,
      options: greedy, stream: true })) last = part;
    assert.equal(last.done, true);
    answers.push(['/api/generate', last.prompt_eval_count, last.eval_count]);
  });

  test('without a key: 401 as a ResponseError with the gateway\'s message', async () => {
    const anonymous = new Ollama({ host: gateway.url });
    for (const call of [() => anonymous.list(), () => anonymous.chat({ model: MODEL_ID, messages })]) {
      await assert.rejects(call(), (e) => {
        assert.equal(e.name, 'ResponseError');
        assert.equal(e.status_code, 401);
        assert.match(e.error, /API key/);
        return true;
      });
    }
  });

  test('the tokens counted for the key are the answers\' own counts', async () => {
    const stopped = await gateway.stop('SIGTERM');
    assert.equal(stopped.code, 0, gateway.stderr());
    const records = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n').map((l) => JSON.parse(l))
      .filter((r) => r.status === 200 && (r.route === 'POST /api/chat' || r.route === 'POST /api/generate'));
    assert.deepEqual(records.map((r) => [r.route.slice(5), r.tokens_in, r.tokens_out]), answers);
    for (const r of records) assert.equal(r.key_id, keyId(key));
  });
});
