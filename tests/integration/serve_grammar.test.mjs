// clawbot serve: `grammar` on /v1/completions (llama-server's extension, a GBNF string): the answer follows it,
// streamed or not, greedy or sampled; a grammar that cannot be parsed is a 400 naming `grammar` before any
// answer starts; one that allows no next token ends the answer with an error, not a hang.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/serve_grammar.test.mjs
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';

import { suiteServer, postJson, readSse, assertErrorBody } from './server_harness.mjs';

const COMPL = '/v1/completions';

// A JSON object of a fixed shape, as a JSON schema becomes.
const PERSON = String.raw`root ::= "{" ws "\"name\"" ws ":" ws string ws "," ws "\"age\"" ws ":" ws number ws "}"
string ::= "\"" [a-zA-Z ]{1,12} "\""
number ::= [1-9] [0-9]{0,2}
ws ::= [ ]?
`;

async function streamed(base, body) {
  const res = await fetch(base + COMPL, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ ...body, stream: true }),
    signal: AbortSignal.timeout(30000),
  });
  assert.equal(res.status, 200);
  const events = await readSse(res);
  const chunks = events.filter((e) => e !== '[DONE]').map((e) => JSON.parse(e));
  const text = chunks.map((c) => c.choices?.[0]?.text ?? '').join('');
  return { text, chunks, done: events.at(-1) === '[DONE]' };
}

describe('grammar on /v1/completions', () => {
  const suite = suiteServer();
  const story = { prompt: 'Once upon a time', max_tokens: 60 };

  test('an alternation forces one of its words, greedy and sampled, and the answer ends there', async () => {
    for (const sampling of [{ temperature: 0 }, { temperature: 1, seed: 1 }, { temperature: 1, seed: 2 }]) {
      const r = await postJson(suite.base, COMPL, { ...story, ...sampling, grammar: 'root ::= "yes" | "no"' });
      assert.equal(r.status, 200, r.text);
      assert.ok(['yes', 'no'].includes(r.json.choices[0].text), r.text);
      assert.equal(r.json.choices[0].finish_reason, 'stop');
    }
  });

  test('a JSON grammar gives JSON that parses, streamed or not', async () => {
    const body = { ...story, temperature: 0.8, seed: 5, grammar: PERSON };
    const whole = await postJson(suite.base, COMPL, body);
    assert.equal(whole.status, 200, whole.text);
    const parsed = JSON.parse(whole.json.choices[0].text);
    assert.equal(typeof parsed.name, 'string');
    assert.ok(Number.isInteger(parsed.age));
    const s = await streamed(suite.base, body);
    assert.ok(s.done);
    assert.equal(s.text, whole.json.choices[0].text, 'the same seed draws the same answer streamed');
  });

  test('without a grammar the same request answers free text (the field is what constrains)', async () => {
    const r = await postJson(suite.base, COMPL, { ...story, temperature: 0 });
    assert.equal(r.status, 200);
    assert.ok(!['yes', 'no'].includes(r.json.choices[0].text));
  });

  test('a grammar that cannot be parsed is a 400 naming grammar, streamed or not', async () => {
    for (const grammar of ['root ::= "yes', 'root ::= answer', 'start ::= "a"', 'root ::= root "a" | "b"']) {
      for (const stream of [false, true]) {
        const r = await postJson(suite.base, COMPL, { ...story, stream, grammar });
        assertErrorBody(r, 400, { param: 'grammar', code: 'invalid_grammar', messageIncludes: 'grammar' });
      }
    }
    const r = await postJson(suite.base, COMPL, { ...story, grammar: 42 });
    assertErrorBody(r, 400, { param: 'grammar', messageIncludes: 'must be a string' });
  });

  test('a grammar that allows no next token ends the answer with an error naming grammar', async () => {
    // The end-of-generation token (2 in this vocabulary) in the middle of the grammar: nothing can follow.
    const body = { ...story, temperature: 0, grammar: 'root ::= <[2]> "a"' };
    const r = await postJson(suite.base, COMPL, body);
    assertErrorBody(r, 400, { param: 'grammar', code: 'invalid_grammar', messageIncludes: 'no next token' });
    const s = await streamed(suite.base, body);
    const error = s.chunks.find((c) => c.error);
    assert.ok(error, JSON.stringify(s.chunks));
    assert.equal(error.error.param, 'grammar');
    // the server goes on
    const after = await postJson(suite.base, COMPL, { ...story, temperature: 0, grammar: 'root ::= "no"' });
    assert.equal(after.json.choices[0].text, 'no');
  });
});
