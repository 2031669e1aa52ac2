// clawbot serve start-up options: memory check and --fit, FlashAttention and KV cache types.
import { test } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, runClawbot, modelPath, postJson } from './server_harness.mjs';

const serveArgs = (extra) => ['serve', '--model', modelPath(), '--host', '127.0.0.1', '--port', '0',
  '--chat-template', 'chatml', '--threads', '2', ...extra];

async function withEnv(vars, fn) {
  const saved = {};
  for (const [k, v] of Object.entries(vars)) {
    saved[k] = process.env[k];
    process.env[k] = v;
  }
  try {
    return await fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('a cache larger than memory is refused with both numbers and what to lower', { timeout: 30000 }, async () => {
  const r = await runClawbot(serveArgs(['--ctx', '1000000', '--parallel', '64']));
  assert.notEqual(r.code, 0, r.stderr);
  assert.match(r.stderr, /needs about [\d.]+ GiB .* but [\d.]+ GiB of memory is available/s);
  assert.match(r.stderr, /--ctx/);
  assert.match(r.stderr, /--fit/);
});

test('--fit lowers the context until it fits, and says so', { timeout: 30000 }, async () => {
  // 200 MiB "available": 4 slots of 65536 tokens need 295 MiB by the plan (`clawbot plan stories260K.gguf
  // --ctx 65536 --parallel 4`), 8192 tokens about 155 MiB.
  await withEnv({ CLAWBOT_MEMORY_AVAILABLE: String(200 * 1024 * 1024) }, async () => {
    const refused = await runClawbot(serveArgs(['--ctx', '65536', '--parallel', '4']));
    assert.notEqual(refused.code, 0);
    const server = await startServer({ extraArgs: ['--ctx', '65536', '--parallel', '4', '--fit'] });
    try {
      assert.match(server.stderr(), /--fit: lowered --ctx 65536 to \d+/);
      const models = await (await fetch(server.baseUrl + '/v1/models')).json();
      assert.ok(models.data[0].meta.n_ctx < 65536 && models.data[0].meta.n_ctx >= 512, JSON.stringify(models));
    } finally {
      await server.stop();
    }
  });
});

// The greedy answer of a fresh server started with `extraArgs`.
async function greedyText(extraArgs) {
  const server = await startServer({ extraArgs });
  try {
    const r = await postJson(server.baseUrl, '/v1/completions', { prompt: 'Once upon a time', max_tokens: 24, temperature: 0 });
    assert.equal(r.status, 200, r.text);
    return r.json.choices[0].text;
  } finally {
    await server.stop();
  }
}

test('FlashAttention on answers like off (greedy)', { timeout: 30000 }, async () => {
  const texts = [];
  for (const mode of ['on', 'off']) texts.push(await greedyText(['--flash-attn', mode]));
  assert.ok(texts[0].length > 0);
  assert.equal(texts[0], texts[1]);
});

test('a KV cache type the model cannot use is refused with the reason', { timeout: 30000 }, async () => {
  // stories260K's heads are 8 wide; q8_0 blocks are 32.
  const r = await runClawbot(serveArgs(['--kv-type', 'q8_0', '--flash-attn', 'on']));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /q8_0 with block size 32 does not divide/);
});

test('a quantized value cache without FlashAttention is refused clearly', { timeout: 30000 }, async () => {
  const r = await runClawbot(serveArgs(['--kv-type', 'q4_0', '--flash-attn', 'off']));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /--kv-type q4_0 needs FlashAttention/);
});

test('an unknown --flash-attn value is refused', { timeout: 30000 }, async () => {
  const r = await runClawbot(serveArgs(['--flash-attn', 'maybe']));
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /flash-attn/);
});

test('--gpu-layers: 0 and all answer alike on a build without a GPU; a bad count is refused', { timeout: 30000 }, async () => {
  const texts = [];
  for (const layers of ['0', '-1', '99']) texts.push(await greedyText(['--gpu-layers', layers]));
  assert.ok(texts[0].length > 0);
  assert.deepEqual(texts, [texts[0], texts[0], texts[0]]);
  const bad = await runClawbot(serveArgs(['--gpu-layers', '-2']));
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /--gpu-layers/);
});
