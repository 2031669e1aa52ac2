// clawbot kb: the debian-faq documentation (HTML, text and PDF, from Debian's debian-faq package) ingested
// with a synthesized bge-shaped embedding model (bge-tiny: bge-small's BERT structure, CLS pooling and
// tokenizer, tiny layers, so that ~900 chunks embed in seconds on 2 cores) served by clawbot serve; search, incremental re-ingest, a
// killed ingest, refused files and models; answers with citations and the refusal path (stories260K: the
// mechanics, not the prose); follow-ups; the evaluation set; Chinese text; serve --kb and the gateway.
// The synthesized embeddings have random weights: vector and hybrid results are checked for their
// mechanics only; the section-level checks use BM25.
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=../shared/models node --test tests/integration/kb.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

import { REPO_ROOT, clawbotBin, startServer, postJson, getJson, postStream } from './server_harness.mjs';
import { runClient } from './client_helpers.mjs';
import { startGateway, createKey, writeGatewayConfig, request, waitUntil } from './gateway_helpers.mjs';

const FAQ = '/usr/share/doc/debian/FAQ';
const QUESTIONS = path.join(REPO_ROOT, 'tests', 'fixtures', 'kb', 'debian-faq-questions.jsonl');
const HOLD = 'How do I put a package on hold with apt?';
const ABSENT = 'What is the price of a Windows 11 Pro license?';

describe('clawbot kb on debian-faq', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-kb-'));
  const html = path.join(dir, 'faq-html');
  const kbDir = path.join(dir, 'kbs');
  const faqKb = path.join(kbDir, 'faq.kb');
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config') };
  let embedder;
  let chat;
  const kb = (args, options = {}) => runClient(['kb', ...args], { env, timeoutMs: 600000, ...options });
  const ok = (r) => assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
  const json = (r) => {
    assert.equal(r.code, 0, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    return JSON.parse(r.stdout);
  };

  before(async () => {
    fs.mkdirSync(html);
    fs.mkdirSync(kbDir);
    for (const f of fs.readdirSync(FAQ)) if (f.endsWith('.en.html')) fs.copyFileSync(path.join(FAQ, f), path.join(html, f));
    fs.writeFileSync(path.join(dir, 'debian-faq.txt'), zlib.gunzipSync(fs.readFileSync(path.join(FAQ, 'debian-faq.en.txt.gz'))));
    fs.writeFileSync(path.join(dir, 'debian-faq.pdf'), zlib.gunzipSync(fs.readFileSync(path.join(FAQ, 'debian-faq.en.pdf.gz'))));
    const model = path.join(dir, 'bge-tiny-q8_0.gguf');
    const synth = spawnSync(clawbotBin(), ['models', 'synth', 'bge-tiny', '-o', model], { encoding: 'utf8', timeout: 300000 });
    assert.equal(synth.status, 0, `models synth failed:\n${synth.stderr}`);
    embedder = await startServer({ model, extraArgs: ['--threads', '2', '--parallel', '2'], chatTemplate: null });
    chat = await startServer({ extraArgs: ['--ctx', '2048'] });
  });
  after(async () => {
    await embedder?.stop();
    await chat?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the three forms are ingested with embeddings, model and dimension recorded', async () => {
    ok(await kb(['create', faqKb]));
    const report = json(await kb(['add', faqKb, html, path.join(dir, 'debian-faq.txt'), path.join(dir, 'debian-faq.pdf'),
      '--endpoint', embedder.baseUrl, '--json']));
    assert.equal(report.failed, 0, JSON.stringify(report.failures));
    assert.ok(report.added >= 18, JSON.stringify(report));
    assert.equal(report.tokenizer, 'model', 'chunks are measured with the embedding model\'s /tokenize');
    assert.ok(report.chunks_stored > 300, JSON.stringify(report));
    assert.equal(report.chunks_embedded, report.chunks_stored);
    const info = json(await kb(['info', faqKb, '--json']));
    assert.equal(info.embedding_model, 'bge-tiny-q8_0');
    assert.equal(info.dimension, 128);
    assert.equal(info.embedded_chunks, info.chunks);
  });

  test('BM25 finds the section in each form; hybrid search fuses both retrievers', async () => {
    const r = json(await kb(['search', faqKb, HOLD, '--mode', 'bm25', '-k', '10', '--json']));
    const kinds = new Set();
    for (const hit of r.results) {
      if (!/7\.12\.? How do I put a package on hold/.test(hit.heading_path)) continue;
      kinds.add(path.extname(hit.source));
      assert.ok(hit.location, JSON.stringify(hit));
    }
    assert.deepEqual([...kinds].sort(), ['.html', '.pdf', '.txt'], JSON.stringify(r.results.map((h) => [h.source, h.heading_path])));
    const pdfHit = r.results.find((h) => h.source.endsWith('.pdf'));
    assert.match(pdfHit.location, /^page \d+$/);
    const hybrid = json(await kb(['search', faqKb, HOLD, '--endpoint', embedder.baseUrl, '--json']));
    assert.equal(hybrid.mode, 'hybrid');
    assert.equal(hybrid.results.length, 5);
    assert.ok(hybrid.results.some((h) => h.bm25_rank !== null && h.vector_rank !== null) ||
      hybrid.results.every((h) => h.bm25_rank !== null || h.vector_rank !== null), JSON.stringify(hybrid.results));
    const plain = await kb(['search', faqKb, HOLD, '--mode', 'bm25']);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(plain.stdout, /^1\. .*§ .*7\.12/m);
  });

  test('--rerank reorders the candidates by a reranking model\'s scores', async () => {
    const model = path.join(dir, 'bge-reranker-tiny-q8_0.gguf');
    const synth = spawnSync(clawbotBin(), ['models', 'synth', 'bge-reranker-tiny', '-o', model], { encoding: 'utf8', timeout: 300000 });
    assert.equal(synth.status, 0, synth.stderr);
    const reranker = await startServer({ model, chatTemplate: null });
    try {
      const r = json(await kb(['search', faqKb, HOLD, '--mode', 'bm25', '-k', '3', '--rerank', '--rerank-endpoint', reranker.baseUrl, '--json']));
      assert.equal(r.reranked, true);
      assert.equal(r.results.length, 3);
      for (const h of r.results) assert.equal(typeof h.rerank, 'number');
      for (let i = 1; i < r.results.length; ++i) assert.ok(r.results[i - 1].rerank >= r.results[i].rerank, JSON.stringify(r.results));
    } finally {
      await reranker.stop();
    }
  });

  test('a node serving the knowledge base\'s embedding model searches hybrid by itself', async () => {
    const node = await startServer({ model: path.join(dir, 'bge-tiny-q8_0.gguf'), extraArgs: ['--kb', kbDir], chatTemplate: null });
    try {
      const r = await postJson(node.baseUrl, '/v1/kb/faq/search', { query: HOLD });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.mode, 'hybrid');
      assert.ok(r.json.data.some((h) => typeof h.cosine === 'number'), r.text);
    } finally {
      await node.stop();
    }
  });

  test('a query embedded by another model is refused, naming both models', async () => {
    const other = await startServer({ model: path.join(dir, 'bge-tiny-q8_0.gguf'), extraArgs: ['--alias', 'other-embedder'], chatTemplate: null });
    try {
      const r = await kb(['search', faqKb, HOLD, '--endpoint', other.baseUrl]);
      assert.equal(r.code, 1, r.stdout);
      assert.match(r.stderr, /bge-tiny-q8_0/);
      assert.match(r.stderr, /other-embedder/);
    } finally {
      await other.stop();
    }
  });

  test('re-adding after one file changed embeds only its chunks; --sync removes a deleted file', async () => {
    const edited = path.join(html, 'pkgtools.en.html');
    fs.writeFileSync(edited, fs.readFileSync(edited, 'utf8').replace('</body>', '<p>A paragraph added by the test about zebra crossings.</p></body>'));
    const report = json(await kb(['add', faqKb, html, path.join(dir, 'debian-faq.txt'), path.join(dir, 'debian-faq.pdf'),
      '--endpoint', embedder.baseUrl, '--json']));
    assert.equal(report.updated, 1, JSON.stringify(report));
    assert.equal(report.added, 0);
    assert.ok(report.unchanged >= 18, JSON.stringify(report));
    assert.equal(report.chunks_embedded, report.chunks_stored);
    assert.ok(report.chunks_embedded > 0 && report.chunks_embedded < 60, JSON.stringify(report));
    const zebra = json(await kb(['search', faqKb, 'zebra crossings', '--mode', 'bm25', '--json']));
    assert.match(zebra.results[0].source, /pkgtools\.en\.html$/);

    fs.rmSync(path.join(html, 'faqinfo.en.html'));
    const synced = json(await kb(['add', faqKb, html, path.join(dir, 'debian-faq.txt'), path.join(dir, 'debian-faq.pdf'),
      '--endpoint', embedder.baseUrl, '--sync', '--json']));
    assert.equal(synced.removed, 1, JSON.stringify(synced));
    assert.equal(synced.chunks_embedded, 0);
    const info = json(await kb(['info', faqKb, '--json']));
    assert.equal(info.documents, report.kb.documents - 1);
  });

  test('a killed ingest leaves a knowledge base that answers, and the next add completes it', async () => {
    const killedKb = path.join(dir, 'killed.kb');
    ok(await kb(['create', killedKb]));
    const proc = spawn(clawbotBin(), ['kb', 'add', killedKb, html, '--endpoint', embedder.baseUrl], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const closed = new Promise((resolve) => proc.once('close', resolve));
    let stderr = '';
    await new Promise((resolve, reject) => {
      proc.stderr.setEncoding('utf8').on('data', (c) => {
        stderr += c;
        if (/kb add: [1-9]\d*\/\d+ documents/.test(stderr)) resolve();
      });
      proc.once('exit', (code) => reject(new Error(`kb add ended (${code}) before a document was done:\n${stderr}`)));
    });
    proc.kill('SIGKILL');
    await closed;
    const after = json(await kb(['info', killedKb, '--json']));
    assert.ok(after.documents >= 1, JSON.stringify(after));
    assert.equal(after.embedded_chunks, after.chunks, 'no document is half stored');
    const search = json(await kb(['search', killedKb, 'package', '--mode', 'bm25', '--json']));
    assert.ok(search.results.length > 0);
    const rest = json(await kb(['add', killedKb, html, '--endpoint', embedder.baseUrl, '--json']));
    assert.equal(rest.unchanged, after.documents);
    assert.equal(rest.added + rest.unchanged, fs.readdirSync(html).length);
  });

  test('a damaged file and another program\'s SQLite database are refused with their names', async () => {
    const garbage = path.join(dir, 'garbage.kb');
    fs.writeFileSync(garbage, Buffer.alloc(16384, 0x5a));
    let r = await kb(['search', garbage, 'package', '--mode', 'bm25']);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(garbage), r.stderr);
    assert.match(r.stderr, /not a usable knowledge base/);
    const sessions = path.join(dir, 'sessions.kb');
    const made = await runClient(['sessions', 'list', '--db', sessions], { env });
    assert.equal(made.code, 0, made.stderr);
    r = await kb(['info', sessions]);
    assert.equal(r.code, 1);
    assert.ok(r.stderr.includes(sessions), r.stderr);
    assert.match(r.stderr, /not a clawbot knowledge base/);
    // A knowledge base whose pages were overwritten in the middle
    const damaged = path.join(dir, 'damaged.kb');
    fs.copyFileSync(faqKb, damaged);
    const fd = fs.openSync(damaged, 'r+');
    const size = fs.fstatSync(fd).size;
    fs.writeSync(fd, Buffer.alloc(Math.floor(size / 2), 0xff), 0, Math.floor(size / 2), 4096);
    fs.closeSync(fd);
    r = await kb(['search', damaged, 'package', '--mode', 'bm25']);
    assert.equal(r.code, 1, r.stdout);
    assert.ok(r.stderr.includes(damaged), r.stderr);
  });

  test('ask: numbered citations under the answer; no answer outside the documents', async () => {
    const flags = ['--endpoint', chat.baseUrl, '--embed-endpoint', embedder.baseUrl, '--max-tokens', '16', '-k', '3'];
    const a = json(await kb(['ask', faqKb, HOLD, ...flags, '--json']));
    assert.equal(a.refused, false, JSON.stringify(a));
    assert.equal(a.error, null);
    assert.ok(a.citations.length >= 1 && a.citations.length <= 3, JSON.stringify(a.citations));
    a.citations.forEach((c, i) => {
      assert.equal(c.index, i + 1);
      assert.ok(c.source.startsWith(dir), c.source);
    });
    assert.equal(typeof a.answer, 'string');
    const text = await kb(['ask', faqKb, HOLD, ...flags]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /\nSources:\n\[1\] .+ § /);

    const no = json(await kb(['ask', faqKb, ABSENT, ...flags, '--json']));
    assert.equal(no.refused, true, JSON.stringify(no));
    assert.match(no.answer, /^Not in the knowledge base/);
    assert.deepEqual(no.citations, []);
    assert.ok(no.coverage < no.threshold);
  });

  test('chat: a follow-up is searched with the question before it', async () => {
    const r = await kb(['chat', faqKb, '--endpoint', chat.baseUrl, '--embed-endpoint', embedder.baseUrl, '--max-tokens', '8',
      '-k', '2', '--json'], { input: `${HOLD}\nand how do I undo that?\n` });
    assert.equal(r.code, 0, r.stderr);
    const turns = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(turns.length, 2);
    assert.equal(turns[0].retrieval_query, HOLD);
    assert.match(turns[1].retrieval_query, /hold/);
  });

  test('eval on the shipped question set: BM25 meets hit@5 >= 0.85 and not-in-KB precision >= 0.9', async () => {
    const evalKb = path.join(dir, 'eval.kb');
    ok(await kb(['create', evalKb]));
    json(await kb(['add', evalKb, FAQ, '--include', '*.en.html', '--no-embed', '--approximate-tokens', '--json']));
    const r = json(await kb(['eval', evalKb, QUESTIONS, '--json']));
    assert.ok(r.answerable >= 100 && r.unanswerable >= 20, JSON.stringify(r));
    assert.ok(r.hit_at_5 >= 0.85, JSON.stringify(r));
    assert.ok(r.refusal_precision >= 0.9, JSON.stringify(r));
    assert.ok(r.mrr > 0 && r.mrr <= r.hit_at_5 + 1e-9);
  });

  test('chat --kb: the assistant\'s chat answers from a knowledge base, with sources', async () => {
    const r = await runClient(['chat', '--kb', path.join(dir, 'eval.kb'), '--endpoint', chat.baseUrl, '--max-tokens', '8'],
      { env, input: `${HOLD}\n${ABSENT}\n`, timeoutMs: 120000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Sources:\n\[1\] .*debian\/FAQ\/.*§ /);
    assert.match(r.stdout, /Not in the knowledge base/);
  });

  test('Chinese documents are found by queries of two characters or more', async () => {
    const zhKb = path.join(dir, 'zh.kb');
    const docs = path.join(dir, 'zh');
    fs.mkdirSync(docs);
    fs.writeFileSync(path.join(docs, 'returns.md'), '# 退货政策\n\n本店接受收货后三十天内的退货。退款将在五个工作日内退回原支付卡。\n\n## 礼品卡\n\n礼品卡的退款以店铺积分形式发放。\n');
    fs.writeFileSync(path.join(docs, 'shipping.md'), '# 配送说明\n\n我们向欧盟所有国家发货。每个包裹都附有追踪号码，可在网站上查询物流状态。\n');
    ok(await kb(['create', zhKb]));
    json(await kb(['add', zhKb, docs, '--no-embed', '--approximate-tokens', '--json']));
    for (const [query, heading] of [['退款', '退货政策'], ['追踪号码', '配送说明'], ['礼品卡怎么退款', '礼品卡'], ['物流', '配送说明']]) {
      const r = json(await kb(['search', zhKb, query, '--json']));
      assert.ok(r.results.length > 0, query);
      assert.ok(r.results[0].heading_path.endsWith(heading), `${query}: ${JSON.stringify(r.results[0])}`);
    }
  });

  test('an http:// page is ingested; a page that fails is reported and the rest kept', async () => {
    const pages = http.createServer((req, res) => {
      if (req.url === '/returns.html') {
        res.writeHead(200, { 'content-type': 'text/html' });
        res.end('<html><head><title>Returns</title></head><body><h1>Returns</h1><p>Parcels may be returned within thirty days.</p></body></html>');
      } else {
        res.writeHead(404).end();
      }
    });
    await new Promise((resolve) => pages.listen(0, '127.0.0.1', resolve));
    const base = `http://127.0.0.1:${pages.address().port}`;
    try {
      const webKb = path.join(dir, 'web.kb');
      ok(await kb(['create', webKb]));
      const r = await kb(['add', webKb, `${base}/returns.html`, `${base}/missing.html`, '--no-embed', '--approximate-tokens', '--json']);
      assert.equal(r.code, 1, 'one page failed');
      const report = JSON.parse(r.stdout);
      assert.equal(report.added, 1);
      assert.equal(report.failed, 1);
      assert.match(report.failures[0], /missing\.html/);
      const hits = json(await kb(['search', webKb, 'return parcels', '--json']));
      assert.equal(hits.results[0].source, `${base}/returns.html`);
      assert.equal(hits.results[0].heading_path, 'Returns');
    } finally {
      pages.close();
    }
  });

  test('a node serving a knowledge base sees what another process\'s kb add brings, without a restart', async () => {
    const liveDir = path.join(dir, 'live');
    const docs = path.join(dir, 'live-docs');
    fs.mkdirSync(liveDir);
    fs.mkdirSync(docs);
    const liveKb = path.join(liveDir, 'live.kb');
    fs.writeFileSync(path.join(docs, 'shop.md'), '# Returns\n\nParcels may be returned within thirty days.\n');
    ok(await kb(['create', liveKb]));
    json(await kb(['add', liveKb, docs, '--no-embed', '--approximate-tokens', '--json']));
    const node = await startServer({ extraArgs: ['--kb', liveDir] });
    try {
      const query = 'xylophone quartet rehearsal';
      let r = await postJson(node.baseUrl, '/v1/kb/live/search', { query, coverage: true });
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.data, []);
      const before = (await getJson(node.baseUrl, '/v1/kb')).json.data[0];
      fs.writeFileSync(path.join(docs, 'music.md'), '# Music\n\nThe xylophone quartet rehearsal is on Friday.\n');
      json(await kb(['add', liveKb, docs, '--no-embed', '--approximate-tokens', '--json']));
      r = await postJson(node.baseUrl, '/v1/kb/live/search', { query, coverage: true });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.data[0]?.heading_path, 'Music', r.text);
      assert.ok(r.json.coverage > 0.9, r.text);
      const after = (await getJson(node.baseUrl, '/v1/kb')).json.data[0];
      assert.equal(after.documents, before.documents + 1, JSON.stringify({ before, after }));
      assert.equal(after.chunks, before.chunks + 1, JSON.stringify({ before, after }));
    } finally {
      await node.stop();
    }
  });

  describe('serve --kb and the gateway', () => {
    let node;
    before(async () => {
      node = await startServer({ extraArgs: ['--ctx', '2048', '--kb', kbDir] });
    });
    after(async () => node?.stop());

    test('GET /v1/kb, POST /v1/kb/NAME/search, and the model ids kb:NAME', async () => {
      const list = await getJson(node.baseUrl, '/v1/kb');
      assert.equal(list.status, 200, list.text);
      assert.deepEqual(list.json.data.map((k) => k.id), ['faq']);
      const models = await getJson(node.baseUrl, '/v1/models');
      assert.ok(models.json.data.some((m) => m.id === 'kb:faq'), models.text);
      const r = await postJson(node.baseUrl, '/v1/kb/faq/search', { query: HOLD, top_k: 10 });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.mode, 'bm25', 'a chat node cannot embed the query with bge');
      assert.ok(r.json.data.some((h) => /7\.12/.test(h.heading_path)), r.text);
      const bad = await postJson(node.baseUrl, '/v1/kb/faq/search', { query: HOLD, mode: 'hybrid' });
      assert.equal(bad.status, 400, bad.text);
      assert.equal(bad.json.error.param, 'mode');
      // A query the size of a document would cost queries per word under the base's lock: refused
      const long = await postJson(node.baseUrl, '/v1/kb/faq/search', { query: 'refund '.repeat(3000) });
      assert.equal(long.status, 400, long.text);
      assert.equal(long.json.error.param, 'query');
      assert.match(long.json.error.message, /at most 16384/);
      const missing = await postJson(node.baseUrl, '/v1/kb/faq/search', {});
      assert.equal(missing.status, 400);
      assert.equal(missing.json.error.param, 'query');
    });

    test('chat with "kb" carries citations; kb:NAME the same; the refusal does not run the model', async () => {
      for (const body of [{ kb: 'faq' }, { model: 'kb:faq' }]) {
        const r = await postJson(node.baseUrl, '/v1/chat/completions', { ...body, max_tokens: 8, messages: [{ role: 'user', content: HOLD }] });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.kb.refused, false);
        assert.ok(r.json.citations.length > 0);
        assert.deepEqual(r.json.citations.map((c) => c.index), r.json.citations.map((_, i) => i + 1));
        assert.ok(r.json.usage.prompt_tokens > 100, 'the passages are in the prompt');
      }
      const no = await postJson(node.baseUrl, '/v1/chat/completions', { kb: 'faq', messages: [{ role: 'user', content: ABSENT }] });
      assert.equal(no.status, 200, no.text);
      assert.equal(no.json.kb.refused, true);
      assert.match(no.json.choices[0].message.content, /^Not in the knowledge base/);
      assert.deepEqual(no.json.citations, []);
      assert.equal(no.json.usage.completion_tokens, 0);
      const unknown = await postJson(node.baseUrl, '/v1/chat/completions', { kb: 'nope', messages: [{ role: 'user', content: HOLD }] });
      assert.equal(unknown.status, 404, unknown.text);
      assert.equal(unknown.json.error.code, 'kb_not_found');
    });

    test('a streamed grounded answer carries the citations in its last chunk', async () => {
      const events = await postStream(node.baseUrl, '/v1/chat/completions', { kb: 'faq', max_tokens: 8, messages: [{ role: 'user', content: HOLD }] });
      const withCitations = events.filter((e) => e !== '[DONE]' && JSON.parse(e).citations);
      assert.equal(withCitations.length, 1, events.join('\n'));
      assert.ok(JSON.parse(withCitations[0]).citations.length > 0);
    });

    test('through the gateway with a key: search and grounded chat', async () => {
      const gwDir = path.join(dir, 'gateway');
      fs.mkdirSync(gwDir);
      const config = { listen: [{ host: '127.0.0.1', port: 0 }], upstreams: [{ url: node.baseUrl, name: 'node' }],
        health_checks: { interval_ms: 200, timeout_ms: 2000 } };
      const { key } = await createKey(writeGatewayConfig(gwDir, config), 'kb-user');
      const gw = await startGateway(config, { dir: gwDir });
      try {
        const headers = { authorization: `Bearer ${key}`, 'content-type': 'application/json' };
        assert.ok(await waitUntil(async () => (await request(`${gw.url}/health`, { headers })).status === 200, 10000), gw.stderr());
        const denied = await request(`${gw.url}/v1/kb/faq/search`, { method: 'POST', body: JSON.stringify({ query: HOLD }), headers: { 'content-type': 'application/json' } });
        assert.equal(denied.status, 401);
        const s = await request(`${gw.url}/v1/kb/faq/search`, { method: 'POST', body: JSON.stringify({ query: HOLD }), headers });
        assert.equal(s.status, 200, s.text);
        assert.ok(s.json.data.length > 0);
        const c = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', headers,
          body: JSON.stringify({ model: 'kb:faq', max_tokens: 8, messages: [{ role: 'user', content: HOLD }] }) });
        assert.equal(c.status, 200, c.text);
        assert.ok(c.json.citations.length > 0, c.text);
      } finally {
        await gw.stop();
      }
    });
  });
});
