// clawbot serve with several slots: continuous batching, the queue, KV reuse (hot and cold), metrics.
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { startServer, postJson, getJson, readSse, assertUsage, modelPath } from './server_harness.mjs';
import { writeWithTokenIds } from './gguf_fim.mjs';

const CHAT = '/v1/chat/completions';
const COMPL = '/v1/completions';

async function streamChat(base, body) {
  const res = await fetch(base + CHAT, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(60000),
  });
  assert.equal(res.status, 200);
  const events = await readSse(res);
  assert.equal(events.at(-1), '[DONE]', 'stream must end with [DONE]');
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const ids = new Set(chunks.map((c) => c.id));
  assert.equal(ids.size, 1, 'one id per stream');
  assert.equal(chunks[0].choices[0].delta.role, 'assistant');
  const finals = chunks.filter((c) => c.choices[0]?.finish_reason);
  assert.equal(finals.length, 1, 'exactly one final chunk');
  const text = chunks.map((c) => c.choices[0]?.delta?.content ?? '').join('');
  return { text, usage: finals[0].usage, timings: finals[0].timings, finish: finals[0].choices[0].finish_reason };
}

function metricValue(text, name) {
  const line = text.split('\n').find((l) => l.startsWith(name + ' ') || l.startsWith(name + '{'));
  return line ? Number(line.split(' ').at(-1)) : NaN;
}

const system = 'You are a storyteller. Tell short, happy stories about animals and children in the park.';
function conversation(turns) {
  const messages = [{ role: 'system', content: system }];
  for (const t of turns) messages.push(t);
  return messages;
}

describe('continuous batching', () => {
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '4', '--ctx', '512'] });
  });
  after(async () => server && (await server.stop()));

  test('8 concurrent streams on 4 slots all finish with correct usage', { timeout: 60000 }, async () => {
    const runs = [];
    for (let i = 0; i < 8; i++) {
      runs.push(streamChat(server.baseUrl, {
        messages: [{ role: 'user', content: `Tell story number ${i}` }],
        max_tokens: 24 + i, temperature: 0.7, seed: i,
      }));
    }
    const results = await Promise.all(runs);
    results.forEach((r, i) => {
      assertUsage(r.usage, { maxTokens: 24 + i });
      assert.ok(r.text.length > 0, `stream ${i} produced no text`);
      if (r.finish === 'length') assert.equal(r.usage.completion_tokens, 24 + i);
      // the last chunk of a stream carries the timings too (clawbot bench reads prompt_ms there)
      assert.equal(r.timings?.predicted_n, r.usage.completion_tokens, JSON.stringify(r.timings));
      assert.ok(r.timings.prompt_ms > 0, JSON.stringify(r.timings));
    });
  });

  test('batched greedy output equals the same request alone', { timeout: 60000 }, async () => {
    const body = { prompt: 'Once upon a time', max_tokens: 40, temperature: 0 };
    const alone = await postJson(server.baseUrl, COMPL, body);
    assert.equal(alone.status, 200, alone.text);
    const together = await Promise.all([0, 1, 2, 3].map((i) => postJson(server.baseUrl, COMPL,
      i === 0 ? body : { prompt: `The dog ${i} ran`, max_tokens: 40, temperature: 0 })));
    for (const r of together) assert.equal(r.status, 200, r.text);
    assert.equal(together[0].json.choices[0].text, alone.json.choices[0].text);
  });

  test('n: 3 gives three choices, indexed', { timeout: 30000 }, async () => {
    const r = await postJson(server.baseUrl, CHAT, {
      messages: [{ role: 'user', content: 'Hi' }], n: 3, max_tokens: 12, temperature: 1.0, seed: 5,
    });
    assert.equal(r.status, 200, r.text);
    assert.deepEqual(r.json.choices.map((c) => c.index), [0, 1, 2]);
    for (const c of r.json.choices) assert.equal(typeof c.message.content, 'string');
    assert.ok(r.json.usage.completion_tokens <= 36);
  });

  test('ignore_eos runs to max_tokens', { timeout: 30000 }, async () => {
    const r = await postJson(server.baseUrl, COMPL, { prompt: 'The end.', max_tokens: 400, temperature: 0, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.usage.completion_tokens, 400);
    assert.equal(r.json.choices[0].finish_reason, 'length');
  });

  test('min_tokens holds the end of generation back; it is checked against max_tokens', { timeout: 60000 }, async () => {
    // stories260K never writes its end-of-generation token: a copy whose end token is "." ends at its first
    // sentence, unless min_tokens holds that back.
    const period = (await postJson(server.baseUrl, '/tokenize', { content: 'time.' })).json.tokens.at(-1);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-min-tokens-'));
    const model = writeWithTokenIds(modelPath(), path.join(dir, 'stories-eos-period.gguf'),
      { 'tokenizer.ggml.eos_token_id': period });
    const eosServer = await startServer({ model, extraArgs: ['--parallel', '1'] });
    try {
      const story = { prompt: 'Once upon a time', max_tokens: 60, temperature: 0 };
      const free = await postJson(eosServer.baseUrl, COMPL, story);
      assert.equal(free.status, 200, free.text);
      assert.equal(free.json.choices[0].finish_reason, 'stop', free.text);
      const ended = free.json.usage.completion_tokens;
      assert.ok(ended < 30, `the first sentence ends after ${ended} tokens: ${free.text}`);
      const held = await postJson(eosServer.baseUrl, COMPL, { ...story, min_tokens: 30 });
      assert.equal(held.status, 200, held.text);
      assert.ok(held.json.usage.completion_tokens >= 30, `min_tokens 30, ${held.json.usage.completion_tokens} tokens: ${held.text}`);
      assert.ok(held.json.choices[0].text.startsWith(free.json.choices[0].text), held.text);
    } finally {
      await eosServer.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }

    const base = { prompt: 'The end.', max_tokens: 40, temperature: 0 };
    const tooMany = await postJson(server.baseUrl, COMPL, { ...base, min_tokens: 41 });
    assert.equal(tooMany.status, 400);
    assert.equal(tooMany.json.error.param, 'min_tokens');
    assert.match(tooMany.json.error.message, /must not exceed 'max_tokens'/);
    const negative = await postJson(server.baseUrl, COMPL, { ...base, min_tokens: -1 });
    assert.equal(negative.status, 400);
    assert.equal(negative.json.error.param, 'min_tokens');
  });

  test('/metrics is Prometheus text that promtool accepts', { timeout: 30000 }, async () => {
    await streamChat(server.baseUrl, { messages: [{ role: 'user', content: 'Hello' }], max_tokens: 8 });
    const r = await fetch(server.baseUrl + '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.headers.get('content-type'), /^text\/plain/);
    const text = await r.text();
    for (const name of ['clawbot_time_to_first_token_seconds_bucket', 'clawbot_inter_token_latency_seconds_count',
      'clawbot_prompt_tokens_total', 'clawbot_generation_tokens_total', 'clawbot_num_requests_running',
      'clawbot_num_requests_waiting', 'clawbot_kv_cache_cells_capacity', 'clawbot_prefix_cache_queries_total',
      'clawbot_cold_cache_bytes', 'process_resident_memory_bytes', 'clawbot_system_memory_total_bytes',
      'clawbot_http_requests_total']) {
      assert.ok(text.includes(name), `metric ${name} missing`);
    }
    assert.ok(metricValue(text, 'clawbot_generation_tokens_total') >= 8);
    const promtool = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.ok(!promtool.error, `promtool not runnable (apt-get install prometheus): ${promtool.error}`);
    assert.equal(promtool.status, 0, `promtool rejected /metrics:\n${promtool.stdout}${promtool.stderr}`);
  });

  test('/props and /slots answer as llama-server\'s do', { timeout: 60000 }, async () => {
    const props = await getJson(server.baseUrl, '/props');
    assert.equal(props.status, 200, props.text);
    assert.equal(props.json.total_slots, 4);
    assert.equal(props.json.default_generation_settings.n_ctx, 512);
    assert.equal(props.json.chat_template_name, 'chatml');
    assert.match(props.json.build_info, /llama\.cpp/);

    // While a stream runs, its slot says so; afterwards it is idle and keeps the tokens for the next request.
    // A busy machine may answer /slots only after the stream has ended: such a late snapshot proves nothing,
    // so the stream is tried again.
    let during;
    for (let attempt = 0; attempt < 5; attempt++) {
      const res = await fetch(server.baseUrl + COMPL, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ prompt: 'Once upon a time in a park', max_tokens: 200, temperature: 0, stream: true }),
      });
      let snapshot;
      let texts = 0;
      let ended = false;
      let late = false;
      await readSse(res, (payload) => {
        if (payload === '[DONE]') ended = true;
        if (snapshot || payload === '[DONE]' || !JSON.parse(payload).choices?.[0]?.text) return false;
        // a few tokens are out (so the snapshot of a later step is taken): the slot is generating
        if (++texts === 5) snapshot = getJson(server.baseUrl, '/slots').then((r) => { late = ended; return r; });
        return false;
      });
      during = await snapshot;
      if (!late) break;
    }
    const busy = during.json.filter((s) => s.is_processing);
    assert.equal(busy.length, 1, JSON.stringify(during.json));
    assert.equal(busy[0].state, 'generate');
    assert.equal(busy[0].max_tokens, 200);
    assert.ok(busy[0].prompt_tokens > 0 && busy[0].prompt_tokens_processed === busy[0].prompt_tokens);
    const after = await getJson(server.baseUrl, '/slots');
    assert.equal(after.json.length, 4);
    const same = after.json.find((s) => s.id === busy[0].id);
    assert.equal(same.is_processing, false);
    assert.equal(same.state, 'idle');
    assert.ok(same.cached_tokens >= busy[0].prompt_tokens + 199, JSON.stringify(same));
  });
});

const engineSteps = async (server, name = 'clawbot_engine_steps_total') =>
  metricValue(await (await fetch(server.baseUrl + '/metrics')).text(), name);

// A stream that keeps one slot decoding while a test sends prompts beside it.
async function decodingStream(server, maxTokens) {
  const res = await fetch(server.baseUrl + COMPL, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: maxTokens, temperature: 0, ignore_eos: true, stream: true }),
    signal: AbortSignal.timeout(60000),
  });
  assert.equal(res.status, 200);
  return res;
}

// Such a stream, once its first events are out; stop() ends it.
async function streamUnderway(server, maxTokens) {
  const res = await decodingStream(server, maxTokens);
  let events = 0;
  let release;
  const started = new Promise((r) => { release = r; });
  const stream = readSse(res, () => {
    if (++events === 3) release();
    return false;
  });
  await started;
  return {
    stop: async () => {
      res.body.cancel().catch(() => {});
      await stream.catch(() => {});
    },
  };
}

// Sends a short prompt while a stream decodes on `server`; returns how many engine steps ran prompts ahead of
// the streams and how many carried prompt tokens meanwhile.
async function shortPromptBesideStream(server) {
  const stream = await streamUnderway(server, 1000);
  const first = 'clawbot_engine_prompts_first_steps_total';
  const prefill = 'clawbot_engine_prefill_steps_total';
  const [firstBefore, prefillBefore] = [await engineSteps(server, first), await engineSteps(server, prefill)];
  const r = await postJson(server.baseUrl, COMPL, { prompt: 'Once upon a time there was a frog', max_tokens: 1, temperature: 0 });
  assert.equal(r.status, 200, r.text);
  const fresh = r.json.usage.prompt_tokens - (r.json.usage.prompt_tokens_details?.cached_tokens ?? 0);
  assert.ok(fresh <= 32, JSON.stringify(r.json.usage));
  const counts = {
    first: await engineSteps(server, first) - firstBefore,
    prefill: await engineSteps(server, prefill) - prefillBefore,
  };
  await stream.stop();
  return counts;
}

describe('prompt chunks', () => {
  // --prefill-chunk bounds the prompt tokens per step only while other streams decode.
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '4', '--ctx', '1024', '--prefill-chunk', '32'] });
  });
  after(async () => server && (await server.stop()));

  const longPrompt = (tag) => Array.from({ length: 22 }, (_, i) => `${tag} word${i} sat by the pond.`).join(' ');
  const steps = (name) => engineSteps(server, name);
  const freshTokens = (usage) => usage.prompt_tokens - (usage.prompt_tokens_details?.cached_tokens ?? 0);

  test('with nothing else running, a prompt goes in whole: one step, then one per token', { timeout: 60000 }, async () => {
    const before = await steps();
    const r = await postJson(server.baseUrl, COMPL, { prompt: longPrompt('alone'), max_tokens: 5, temperature: 0, ignore_eos: true });
    assert.equal(r.status, 200, r.text);
    const fresh = freshTokens(r.json.usage);
    assert.ok(fresh > 200 && fresh < 512, `the prompt should be 200..512 new tokens: ${JSON.stringify(r.json.usage)}`);
    assert.equal(await steps() - before, 5, 'one prefill step plus four decode steps');
  });

  test('while a stream decodes, a short prompt gets one step of its own, ahead of the stream', { timeout: 60000 }, async () => {
    const { first, prefill } = await shortPromptBesideStream(server);
    // Mixed in, the stream's token would have added its cost to the prompt's step: the prompt goes alone.
    assert.equal(first, 1, 'one step ran the prompt ahead of the stream');
    assert.equal(prefill, 1, 'the prompt took one step');
  });

  test('while a stream decodes, a prompt goes in chunks between its tokens', { timeout: 60000 }, async () => {
    const res = await decodingStream(server, 400);
    let events = 0;
    let during = null;
    let sent = null;
    const stream = readSse(res, () => {
      events++;
      if (events === 3) sent = postJson(server.baseUrl, COMPL, { prompt: longPrompt('together'), max_tokens: 1, temperature: 0 });
    });
    while (!sent) await new Promise((r) => setTimeout(r, 5));
    const startEvents = events;
    const firstBefore = await steps('clawbot_engine_prompts_first_steps_total');
    const r = await sent;
    during = events - startEvents;
    assert.equal(r.status, 200, r.text);
    const fresh = freshTokens(r.json.usage);
    // fresh / 32 steps, each carrying one token of the stream (in one step, it would get at most 2 or 3); half
    // of them, as some tokens show no text and a busy client may read late.
    assert.ok(during >= Math.floor(fresh / 64),
      `the stream got ${during} events while ${fresh} prompt tokens were prefilled in chunks of 32`);
    assert.equal(await steps('clawbot_engine_prompts_first_steps_total'), firstBefore, 'no step ran the long prompt ahead of the stream');
    await stream;
  });

  test('with more prompts waiting than streams decoding, the chunks grow in proportion', { timeout: 60000 }, async () => {
    const stream = await streamUnderway(server, 1000);
    const before = await steps('clawbot_engine_prefill_steps_total');
    // Three prompts beside one stream: 3 x 32 tokens per step while all three wait, then 2 x 32, then 32.
    const prompts = ['first', 'second', 'third'].map((tag) => longPrompt(tag));
    const answers = await Promise.all(prompts.map((prompt) => postJson(server.baseUrl, COMPL, { prompt, max_tokens: 1, temperature: 0 })));
    const used = await steps('clawbot_engine_prefill_steps_total') - before;
    let fresh = 0;
    for (const r of answers) {
      assert.equal(r.status, 200, r.text);
      fresh += freshTokens(r.json.usage);
    }
    // 32 tokens per step throughout would take fresh / 32 steps (about 34); growing chunks take about 20.
    assert.ok(used < Math.ceil(fresh / 32) * 0.8, `${used} prefill steps for ${fresh} prompt tokens in chunks of 32 or more`);
    await stream.stop();
  });
});

describe('--prompts-first off', () => {
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '2', '--ctx', '1024', '--prefill-chunk', '32', '--prompts-first', 'off'] });
  });
  after(async () => server && (await server.stop()));

  test('a short prompt shares its step with the decoding stream', { timeout: 60000 }, async () => {
    const { first, prefill } = await shortPromptBesideStream(server);
    assert.equal(first, 0);
    assert.equal(prefill, 1, 'the prompt took one step');
  });
});

describe('prefix cache by text', () => {
  // A model's answer comes back in the next turn as text; re-tokenized, it may be other tokens than the ones the
  // model generated. The cache matches by text there, so the answer is not prefilled again.
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '1', '--ctx', '512'] });
  });
  after(async () => server && (await server.stop()));

  const tokenize = async (content) => (await postJson(server.baseUrl, '/tokenize', { content, add_special: true })).json.tokens;
  const detokenize = async (tokens) => (await postJson(server.baseUrl, '/detokenize', { tokens })).json.content;

  test('/tokenize and /detokenize round-trip; bad ids are a 400 that names the field', { timeout: 30000 }, async () => {
    const tokens = await tokenize('Once upon a time');
    assert.ok(tokens.length >= 3 && tokens.every(Number.isInteger), JSON.stringify(tokens));
    // Special tokens are rendered, as llama-server does: the BOS that add_special put first shows.
    assert.equal((await detokenize(tokens)).trim(), '<s> Once upon a time');
    const plain = (await postJson(server.baseUrl, '/tokenize', { content: 'Once upon a time' })).json.tokens;
    assert.equal(plain.length, tokens.length - 1, 'add_special is off by default');
    const bad = await postJson(server.baseUrl, '/detokenize', { tokens: [1, -5] });
    assert.equal(bad.status, 400);
    assert.equal(bad.json.error.param, 'tokens');
    const badPrompt = await postJson(server.baseUrl, COMPL, { prompt: [1, 99999999], max_tokens: 1 });
    assert.equal(badPrompt.status, 400);
    assert.match(badPrompt.json.error.message, /token ids between 0 and/);
  });

  test('a prompt spelling the cached text in other tokens reuses the cache', { timeout: 60000 }, async () => {
    const text = 'Once upon a time there was a little girl named Lily';
    const canonical = await tokenize(text);
    // Each token's text as it reads inside a sequence (after the first word, so no leading-space rule applies).
    const anchor = [canonical[0], canonical[1]];
    const anchorText = await detokenize(anchor);
    const pieces = [];
    for (let id = 0; id < 512; id++) pieces.push((await detokenize([...anchor, id])).slice(anchorText.length));
    const byPiece = new Map();
    pieces.forEach((p, id) => { if (p.length > 0 && !byPiece.has(p)) byPiece.set(p, id); });
    // Replace one token of the canonical prompt by two that spell the same text.
    let split = null;
    for (let k = 2; k < canonical.length && !split; k++) {
      const p = pieces[canonical[k]];
      for (let cut = 1; cut < p.length && !split; cut++) {
        const a = byPiece.get(p.slice(0, cut));
        const b = byPiece.get(p.slice(cut));
        if (a === undefined || b === undefined) continue;
        const other = [...canonical.slice(0, k), a, b, ...canonical.slice(k + 1)];
        if ((await detokenize(other)) === (await detokenize(canonical))) split = { k, other };
      }
    }
    assert.ok(split, 'no token of the prompt could be spelled by two others');

    const first = await postJson(server.baseUrl, COMPL, { prompt: split.other, max_tokens: 1, temperature: 0 });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json.usage.prompt_tokens, split.other.length);

    const metrics = async () => metricValue(await (await fetch(server.baseUrl + '/metrics')).text(),
      'clawbot_prefix_cache_text_matches_total');
    const before = await metrics();
    const second = await postJson(server.baseUrl, COMPL, { prompt: text + ' who liked to play', max_tokens: 1, temperature: 0 });
    assert.equal(second.status, 200, second.text);
    // A token-by-token match would end at the split token (k tokens); by text, all of the first prompt is reused.
    assert.equal(second.json.usage.prompt_tokens_details.cached_tokens, split.other.length,
      `split at token ${split.k}: ${JSON.stringify(second.json.usage)}`);
    assert.equal(await metrics(), before + 1);
  });
});

describe('queue and cancellation', () => {
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '1', '--queue-max', '1', '--ctx', '2048', '--threads', '1'] });
  });
  after(async () => server && (await server.stop()));

  test('past --queue-max: 503 with Retry-After, the others finish', { timeout: 90000 }, async () => {
    const body = { prompt: 'Once upon a time', max_tokens: 1500, temperature: 0 };
    const results = await Promise.all([0, 1, 2, 3, 4].map(() => postJson(server.baseUrl, COMPL, body, { timeoutMs: 80000 })));
    const busy = results.filter((r) => r.status === 503);
    const ok = results.filter((r) => r.status === 200);
    assert.ok(busy.length >= 1, `expected a 503, got ${results.map((r) => r.status)}`);
    assert.ok(ok.length >= 1, `expected some to finish, got ${results.map((r) => r.status)}`);
    for (const r of busy) {
      assert.equal(r.headers.get('retry-after'), '1');
      assert.equal(r.json.error.code, 'queue_full');
      assert.equal(r.json.error.type, 'server_error');
    }
  });

  test('a cancelled stream frees its slot', { timeout: 60000 }, async () => {
    const generated = async () => metricValue(await (await fetch(server.baseUrl + '/metrics')).text(),
      'clawbot_generation_tokens_total');
    const generatedBefore = await generated();
    const ac = new AbortController();
    // Left alone, it runs to its 2000 tokens.
    const res = await fetch(server.baseUrl + COMPL, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal,
      body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 2000, ignore_eos: true, temperature: 0, stream: true }),
    });
    await readSse(res, (p) => p !== '[DONE]' && (JSON.parse(p).choices?.[0]?.text ?? '') !== '');
    ac.abort();
    let busy = 1;
    for (const until = Date.now() + 30000; busy !== 0 && Date.now() < until;) {  // only stops a hung test
      busy = (await getJson(server.baseUrl, '/health')).json.slots_busy;
      if (busy !== 0) await new Promise((r) => setTimeout(r, 20));
    }
    assert.equal(busy, 0, 'the slot was not freed after the client left');
    const left = (await generated()) - generatedBefore;
    // (A cancel is noticed within a few tokens; half the answer is a generous bound.)
    assert.ok(left < 1000, `the stream that was left generated ${left} of its 2000 tokens`);
    const r = await postJson(server.baseUrl, COMPL, { prompt: 'Once', max_tokens: 4 }, { timeoutMs: 30000 });
    assert.equal(r.status, 200, r.text);
  });

  test('a client that leaves a non-streamed request frees its slot too', { timeout: 60000 }, async () => {
    // Left alone, this answer runs to its 2000 tokens; the client leaves once it is generating.
    const body = { prompt: 'Once upon a time', max_tokens: 2000, temperature: 0, ignore_eos: true };
    const whole = await postJson(server.baseUrl, COMPL, body, { timeoutMs: 60000 });
    assert.equal(whole.json.usage.completion_tokens, 2000);

    const metrics = async () => (await (await fetch(server.baseUrl + '/metrics')).text());
    const generatedBefore = metricValue(await metrics(), 'clawbot_generation_tokens_total');
    const ac = new AbortController();
    const pending = fetch(server.baseUrl + COMPL, {
      method: 'POST', headers: { 'content-type': 'application/json' }, signal: ac.signal, body: JSON.stringify(body),
    }).catch(() => null);
    // The deadlines below only stop a hung test.
    const generating = async () => (await getJson(server.baseUrl, '/slots')).json.some((x) => x.generated_tokens > 0);
    for (const until = Date.now() + 30000; !(await generating()) && Date.now() < until;) {
      await new Promise((r) => setTimeout(r, 5));
    }
    ac.abort();
    await pending;
    let busy = 1;
    for (const until = Date.now() + 30000; busy !== 0 && Date.now() < until;) {
      busy = (await getJson(server.baseUrl, '/health')).json.slots_busy;
      if (busy !== 0) await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(busy, 0, 'the slot was not freed after the client left');
    // Freed by the cancel, not by the end of the answer: it stopped short of its 2000 tokens.
    const text = await metrics();
    const generated = metricValue(text, 'clawbot_generation_tokens_total') - generatedBefore;
    assert.ok(generated < 1000, `the request that was left generated ${generated} of its 2000 tokens`);
    assert.match(text, /clawbot_http_requests_total\{[^}]*status="499"[^}]*\} 1/);
  });
});

describe('KV-cache reuse keeps greedy output identical', () => {
  let cached;
  let uncached;
  before(async () => {
    // One slot, so another conversation pushes the first one out to the cold tier.
    cached = await startServer({ extraArgs: ['--parallel', '1', '--ctx', '1024', '--cache-ram', '64'] });
    uncached = await startServer({ extraArgs: ['--parallel', '1', '--ctx', '1024', '--no-cache'] });
  });
  after(async () => {
    if (cached) await cached.stop();
    if (uncached) await uncached.stop();
  });

  const turn1 = [{ role: 'user', content: 'Tell me about a cat named Tom.' }];
  const greedy = { max_tokens: 48, temperature: 0 };

  async function chat(server, messages) {
    const r = await postJson(server.baseUrl, CHAT, { messages, ...greedy });
    assert.equal(r.status, 200, r.text);
    return r.json;
  }

  test('hot hit, cold restore and no cache give the same turn 2', { timeout: 60000 }, async () => {
    const a1 = await chat(cached, conversation(turn1));
    const a1ref = await chat(uncached, conversation(turn1));
    assert.equal(a1.choices[0].message.content, a1ref.choices[0].message.content);
    const turn2 = [...turn1, { role: 'assistant', content: a1.choices[0].message.content },
      { role: 'user', content: 'What did Tom do next?' }];

    // hot: the slot still holds turn 1
    const hot = await chat(cached, conversation(turn2));
    assert.ok(hot.usage.prompt_tokens_details.cached_tokens > 20,
      `turn 2 should reuse turn 1's cache: ${JSON.stringify(hot.usage)}`);
    const reference = await chat(uncached, conversation(turn2));
    assert.equal(reference.usage.prompt_tokens_details.cached_tokens, 0);
    assert.equal(hot.choices[0].message.content, reference.choices[0].message.content);
    // llama-server's timings: prompt_n is what was processed, cache_n what came from the cache.
    for (const r of [hot, reference]) {
      const t = r.timings;
      assert.equal(t.cache_n, r.usage.prompt_tokens_details.cached_tokens, JSON.stringify(t));
      assert.equal(t.prompt_n, r.usage.prompt_tokens - t.cache_n, JSON.stringify(t));
      assert.equal(t.predicted_n, r.usage.completion_tokens);
      assert.ok(t.prompt_ms > 0 && t.predicted_ms > 0 && t.predicted_per_second > 0, JSON.stringify(t));
    }
    assert.ok(hot.timings.prompt_n < reference.timings.prompt_n);

    // cold: another conversation takes the only slot; this one is saved to host RAM and restored
    const other = [{ role: 'system', content: 'Different system prompt entirely, about dragons and castles.' },
      { role: 'user', content: 'Go on.' }];
    await chat(cached, other);
    const before = await (await fetch(cached.baseUrl + '/metrics')).text();
    const cold = await chat(cached, conversation(turn2));
    const after = await (await fetch(cached.baseUrl + '/metrics')).text();
    assert.ok(metricValue(after, 'clawbot_cold_cache_restores_total') > metricValue(before, 'clawbot_cold_cache_restores_total'),
      'turn 2 should have been restored from the cold tier');
    assert.ok(cold.usage.prompt_tokens_details.cached_tokens > 20, JSON.stringify(cold.usage));
    assert.equal(cold.choices[0].message.content, reference.choices[0].message.content);
  });

  test('conversations sharing a system prompt share its cached prefix', { timeout: 30000 }, async () => {
    await chat(cached, conversation([{ role: 'user', content: 'A story about a frog.' }]));
    const second = await chat(cached, conversation([{ role: 'user', content: 'A story about a bird.' }]));
    assert.ok(second.usage.prompt_tokens_details.cached_tokens >= 15, JSON.stringify(second.usage));
  });
});

describe('a busy slot lends its prefix', () => {
  for (const unified of [false, true]) {
    test(`a request sharing a running request's system prompt copies it (${unified ? 'unified cache' : 'one stream per slot'})`,
      { timeout: 60000 }, async () => {
        const extra = ['--parallel', '2', '--ctx', '1024', '--threads', '1', ...(unified ? ['--kv-unified'] : [])];
        const server = await startServer({ extraArgs: extra });
        const reference = await startServer({ extraArgs: ['--parallel', '1', '--ctx', '1024', '--no-cache'] });
        try {
          const shared = conversation([{ role: 'user', content: 'A long story, please.' }]);
          const running = postJson(server.baseUrl, CHAT, { messages: shared, max_tokens: 900, ignore_eos: true, temperature: 0 });
          // Once the first request decodes (the deadline only stops a hung test), only a busy slot can lend the
          // prefix: the second request gets the other, empty slot.
          let slots = [];
          for (const until = Date.now() + 30000; !slots.some((x) => x.generated_tokens > 0) && Date.now() < until;) {
            slots = (await getJson(server.baseUrl, '/slots')).json;
          }
          const health = await getJson(server.baseUrl, '/health');
          assert.equal(health.json.slots_busy, 1, `the first request should still be running: ${health.text}`);
          const second = conversation([{ role: 'user', content: 'Tell me about a bird.' }]);
          const r = await postJson(server.baseUrl, CHAT, { messages: second, max_tokens: 32, temperature: 0 });
          const alone = await postJson(reference.baseUrl, CHAT, { messages: second, max_tokens: 32, temperature: 0 });
          assert.equal(r.status, 200, r.text);
          assert.ok(r.json.usage.prompt_tokens_details.cached_tokens >= 20, JSON.stringify(r.json.usage));
          assert.equal(r.json.choices[0].message.content, alone.json.choices[0].message.content);
          assert.equal((await running).status, 200);
        } finally {
          await server.stop();
          await reference.stop();
        }
      });
  }
});

describe('slow readers', () => {
  // Four clients that send a streaming request and never read hold all four slots; a fifth request waits. Once
  // their sockets and event queues are full, each gives its slot up after --slow-reader-timeout (2 s here) and
  // the fifth is answered: before, it waited for the 60 s write timeout.
  let server;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '4', '--ctx', '32768', '--slow-reader-timeout', '2', '--threads', '1'] });
  });
  after(async () => server && (await server.stop()));

  // A streaming request on a raw socket that never reads its answer; read() reads it all later.
  function nonReadingStream(port) {
    const socket = net.connect(port, '127.0.0.1');
    socket.pause();
    // Far more than the socket buffers hold: about 175 KB (1,000 events) with the node's stream send buffer, 4 MiB
    // with the kernel's autotuning, which let such a stream run 20,000 tokens before its client was noticed.
    const body = JSON.stringify({ prompt: 'Once upon a time', max_tokens: 32000, ignore_eos: true, stream: true, temperature: 0 });
    socket.write(`POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`);
    return {
      socket,
      // Everything until [DONE], or what came within 10 s (a stream that was not cut goes on).
      read: () => new Promise((resolve) => {
        let text = '';
        socket.setEncoding('utf8');
        socket.on('data', (d) => {
          text += d;
          if (text.includes('data: [DONE]')) socket.destroy();
        });
        socket.on('close', () => resolve(text));
        setTimeout(() => socket.destroy(), 10000).unref();
        socket.resume();
      }),
    };
  }

  test('4 streams that never read on --parallel 4: a fifth request is answered within the bound', { timeout: 120000 }, async () => {
    const port = Number(new URL(server.baseUrl).port);
    const streams = [0, 1, 2, 3].map(() => nonReadingStream(port));
    try {
      const t0 = Date.now();
      while ((await getJson(server.baseUrl, '/health')).json.slots_busy < 4) {
        assert.ok(Date.now() - t0 < 20000, 'the four streams never all held a slot');
        await new Promise((r) => setTimeout(r, 20));
      }
      const progress = [];
      const poll = setInterval(async () => {
        const sl = await getJson(server.baseUrl, '/slots').catch(() => null);
        progress.push(sl?.json?.map((x) => x.generated_tokens).join(','));
      }, 3000);
      const r = await postJson(server.baseUrl, COMPL, { prompt: 'Once upon a time', max_tokens: 8, temperature: 0 }, { timeoutMs: 100000 })
        .catch((e) => assert.fail(`${e.message}; /slots and the log:\n${progress.join(' | ')}\n${server.stderr().slice(-3000)}`))
        .finally(() => clearInterval(poll));
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.usage.completion_tokens, 8, r.text);
      // Its slot came from a cut (before the fix it waited for the streams' 60 s write timeout).
      const metrics = await (await fetch(server.baseUrl + '/metrics')).text();
      assert.ok(metricValue(metrics, 'clawbot_slow_readers_cut_total') >= 1, metrics);
      assert.match(server.stderr(), /--slow-reader-timeout/);
      // A cut stream's client that reads again gets what was generated, then the reason, then [DONE].
      const cut = (await Promise.all(streams.map((s) => s.read()))).filter((t) => t.includes('"slow_reader"'));
      assert.ok(cut.length >= 1, 'no stream ended with a slow_reader error event');
      assert.match(cut[0], /"code":"slow_reader"[\s\S]*data: \[DONE\]/);
    } finally {
      for (const s of streams) s.socket.destroy();
    }
  });
});
