// KV reuse on models whose cache cannot be cut back: sliding-window (gemma3) and hybrid recurrent+attention
// (lfm2) shapes, synthesized small. A new turn restores the checkpoint kept at the end of the previous prompt
// and prefills only what follows.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

import { clawbotBin, startServer, postJson } from './server_harness.mjs';

function synthesize(shape) {
  const r = spawnSync(clawbotBin(), ['models', 'synth', shape, '--quant', 'f32'], { encoding: 'utf8', timeout: 120000 });
  assert.equal(r.status, 0, `clawbot models synth ${shape} failed:\n${r.stderr}`);
  return r.stdout.trim().split('\n').at(-1);
}

const system = { role: 'system', content: 'You are a helpful assistant who answers briefly. '.repeat(6) };

async function twoTurns(server) {
  const turn1 = [system, { role: 'user', content: 'Tell me about cats.' }];
  const a = await postJson(server.baseUrl, '/v1/chat/completions', { messages: turn1, max_tokens: 12, temperature: 0 });
  assert.equal(a.status, 200, a.text);
  const turn2 = [...turn1, { role: 'assistant', content: a.json.choices[0].message.content },
    { role: 'user', content: 'And dogs?' }];
  const b = await postJson(server.baseUrl, '/v1/chat/completions', { messages: turn2, max_tokens: 12, temperature: 0 });
  assert.equal(b.status, 200, b.text);
  return { first: a.json, second: b.json };
}

for (const [shape, kind] of [['tiny-swa', 'sliding-window'], ['tiny-hybrid', 'hybrid recurrent']]) {
  describe(`${kind} model (${shape})`, () => {
    test('turn 2 restores the turn-1 checkpoint and prefills only the rest', { timeout: 120000 }, async () => {
      const model = synthesize(shape);
      const args = ['--parallel', '1', '--ctx', '1024'];
      const runs = [];
      for (const extra of [[], [], ['--no-cache']]) {
        const server = await startServer({ model, extraArgs: [...args, ...extra] });
        try {
          runs.push(await twoTurns(server));
        } finally {
          await server.stop();
        }
      }
      const [cached, cachedAgain, uncached] = runs;
      // At least turn 1's prompt (more when the answer re-tokenizes to the tokens that were generated).
      const reused = cached.second.usage.prompt_tokens_details.cached_tokens;
      assert.ok(reused >= cached.first.usage.prompt_tokens && reused < cached.second.usage.prompt_tokens,
        `turn 2 should reuse all of turn 1's prompt: ${JSON.stringify(cached.second.usage)}`);
      assert.equal(uncached.second.usage.prompt_tokens_details.cached_tokens, 0);
      // A restored state gives the same answer every time.
      assert.equal(cached.second.choices[0].message.content, cachedAgain.second.choices[0].message.content);
      assert.equal(cached.first.choices[0].message.content, uncached.first.choices[0].message.content);
      if (shape === 'tiny-swa') {
        // Same answer as prefilling everything (the hybrid's random weights give near-flat logits whose argmax
        // flips with any change of batch split, cache or not; see the closing note of issue 3).
        assert.equal(cached.second.choices[0].message.content, uncached.second.choices[0].message.content);
      }
    });
  });
}
