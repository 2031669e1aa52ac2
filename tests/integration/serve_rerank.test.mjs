// clawbot serve: POST /v1/rerank (and llama-server's other names for it) on a synthesized reranker of
// bge-reranker's structure (BERT with a classification head, rank pooling). Its random weights make the scores
// meaningless, so the tests check the shape (Jina's and Cohere's, as llama-server answers), the order by score,
// top_n, return_documents, the document forms, usage, and the 400s: bad fields, an input longer than the
// context, a model that cannot rank.
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=../shared/models node --test tests/integration/serve_rerank.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { clawbotBin, startServer, suiteServer, postJson, assertErrorBody } from './server_harness.mjs';

const DOCS = ['The cat sat on the mat.', 'Dogs bark at night.', 'A kitten is a young cat.', 'Stock prices fell.'];

describe('/v1/rerank on a reranker', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-rerank-'));
  const model = path.join(dir, 'bge-reranker-tiny-q8_0.gguf');
  let server;
  before(async () => {
    const r = spawnSync(clawbotBin(), ['models', 'synth', 'bge-reranker-tiny', '-o', model], {
      encoding: 'utf8', timeout: 120000,
    });
    assert.equal(r.status, 0, `clawbot models synth bge-reranker-tiny failed:\n${r.stderr}`);
    server = await startServer({ model });
  });
  after(async () => {
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });
  const rerank = (body, route = '/v1/rerank') => postJson(server.baseUrl, route, body);

  test('every document scored once, best first, with usage; the same answer on all four routes', async () => {
    const r = await rerank({ model: 'anything', query: 'What is a cat?', documents: DOCS });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.object, 'list');
    assert.equal(r.json.model, 'bge-reranker-tiny-q8_0');
    const { results } = r.json;
    assert.deepEqual(results.map((x) => x.index).sort(), [0, 1, 2, 3]);
    for (const x of results) {
      assert.equal(typeof x.relevance_score, 'number');
      assert.ok(Number.isFinite(x.relevance_score));
      assert.ok(!('document' in x), 'documents only when asked for');
    }
    for (let i = 1; i < results.length; ++i) {
      assert.ok(results[i - 1].relevance_score >= results[i].relevance_score, JSON.stringify(results));
    }
    assert.ok(r.json.usage.prompt_tokens > 4 * 5, JSON.stringify(r.json.usage));
    assert.equal(r.json.usage.total_tokens, r.json.usage.prompt_tokens);
    for (const route of ['/rerank', '/v1/reranking', '/reranking']) {
      const again = await rerank({ query: 'What is a cat?', documents: DOCS }, route);
      assert.equal(again.status, 200, `${route}: ${again.text}`);
      assert.deepEqual(again.json.results, results, route);
    }
  });

  test('scores depend on the pair: a document scores the same alone or among others, another query differs', async () => {
    const all = (await rerank({ query: 'What is a cat?', documents: DOCS })).json.results;
    const alone = (await rerank({ query: 'What is a cat?', documents: [DOCS[2]] })).json.results;
    assert.equal(alone.length, 1);
    assert.equal(alone[0].index, 0);
    assert.ok(Math.abs(alone[0].relevance_score - all.find((x) => x.index === 2).relevance_score) < 1e-4);
    const other = (await rerank({ query: 'Where do markets go?', documents: DOCS })).json.results;
    assert.notDeepEqual(other.map((x) => x.relevance_score), all.map((x) => x.relevance_score));
  });

  test('top_n keeps the best n; return_documents adds each text; {text} objects rank as strings do', async () => {
    const full = (await rerank({ query: 'cat', documents: DOCS })).json.results;
    const top = await rerank({ query: 'cat', documents: DOCS, top_n: 2, return_documents: true });
    assert.equal(top.status, 200, top.text);
    assert.equal(top.json.results.length, 2);
    assert.deepEqual(top.json.results.map((x) => x.index), full.slice(0, 2).map((x) => x.index));
    for (const x of top.json.results) assert.deepEqual(x.document, { text: DOCS[x.index] });
    const objects = await rerank({ query: 'cat', documents: DOCS.map((text) => ({ text })), top_n: 10 });
    assert.deepEqual(objects.json.results, full, 'top_n beyond the documents keeps them all');
  });

  test('bad fields are 400s naming the field', async () => {
    const cases = [
      [{ documents: DOCS }, 'query', 'required'],
      [{ query: 7, documents: DOCS }, 'query', 'string'],
      [{ query: 'cat' }, 'documents', 'required'],
      [{ query: 'cat', documents: 'one text' }, 'documents', 'array'],
      [{ query: 'cat', documents: [] }, 'documents', 'empty'],
      [{ query: 'cat', documents: ['ok', 42] }, 'documents[1]', 'string'],
      [{ query: 'cat', documents: ['ok', { title: 'no text' }] }, 'documents[1]', 'text'],
      [{ query: 'cat', documents: DOCS, top_n: 0 }, 'top_n', 'top_n'],
      [{ query: 'cat', documents: DOCS, return_documents: 'yes' }, 'return_documents', 'return_documents'],
    ];
    for (const [body, param, says] of cases) {
      const r = await rerank(body);
      assertErrorBody(r, 400, { param, messageIncludes: says });
    }
    const r = await postJson(server.baseUrl, '/v1/rerank', '{"query": "cat", "documents": [', { raw: true });
    assertErrorBody(r, 400, {});
  });

  test('a pair longer than the context is a 400 naming the document; the node goes on', async () => {
    const huge = 'word '.repeat(2000);
    const r = await rerank({ query: 'cat', documents: ['short', huge] });
    assertErrorBody(r, 400, { param: 'documents[1]', code: 'context_length_exceeded', messageIncludes: 'tokens' });
    const ok = await rerank({ query: 'cat', documents: ['short'] });
    assert.equal(ok.status, 200);
  });

  test('the reranker does not embed: /v1/embeddings is a 400 pointing at /v1/rerank', async () => {
    const r = await postJson(server.baseUrl, '/v1/embeddings', { input: 'cat' });
    assertErrorBody(r, 400, { param: 'model', code: 'model_not_embedding', messageIncludes: '/v1/rerank' });
  });
});

describe('/v1/rerank on a model that cannot rank', () => {
  const suite = suiteServer();  // stories260K: a text-generation model
  test('is a 400 naming model, code model_not_reranker', async () => {
    for (const route of ['/v1/rerank', '/rerank']) {
      const r = await postJson(suite.base, route, { query: 'cat', documents: DOCS });
      assertErrorBody(r, 400, { param: 'model', code: 'model_not_reranker', messageIncludes: 'cannot rank' });
    }
  });
});
