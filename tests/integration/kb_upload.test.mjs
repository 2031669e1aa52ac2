// Writes to serve --kb over the API (--kb-write): a knowledge base created by name, documents uploaded as
// multipart files of each type kb reads (text, Markdown, HTML, PDF, DOCX), as JSON text and as a URL, embedded
// by the node's own embedding model in process (the synthesized bge-tiny), listed and deleted; an unchanged
// document is not embedded again; every bad upload is a 400 (or 413) naming the file and its problem, with
// nothing stored; uploads while searches run, and while `clawbot kb add` writes the same file from another
// process, leave both correct. A node without --kb-write takes no writes.
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=../shared/models node --test tests/integration/kb_upload.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { clawbotBin, startServer, postJson, getJson } from './server_harness.mjs';
import { runClient } from './client_helpers.mjs';
import { createKey, request, startGateway, waitUntil, writeGatewayConfig } from './gateway_helpers.mjs';
import { docxBytes, formBody, pdfBytes, rawPost, shopDocuments, upload, zipStored } from './kb_helpers.mjs';

const LIMIT = 2 << 20;  // --kb-max-upload-bytes for the writing node

describe('serve --kb --kb-write: uploads through the API', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-kb-upload-'));
  const kbDir = path.join(dir, 'kbs');
  const model = path.join(dir, 'bge-tiny-q8_0.gguf');
  const env = { ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config') };
  let node;
  const documents = async (kb) => {
    const r = await getJson(node.baseUrl, `/v1/kb/${kb}/documents`);
    assert.equal(r.status, 200, r.text);
    return r.json.data;
  };
  const kbEntry = async (kb) => (await getJson(node.baseUrl, '/v1/kb')).json.data.find((k) => k.id === kb);
  const search = async (kb, query, mode = 'bm25') => {
    const r = await postJson(node.baseUrl, `/v1/kb/${kb}/search`, { query, mode, top_k: 3 });
    assert.equal(r.status, 200, r.text);
    return r.json.data;
  };
  const assertError = (r, status, param, pattern) => {
    assert.equal(r.status, status, r.text);
    assert.equal(r.json?.error?.param, param, r.text);
    assert.match(r.json.error.message, pattern);
  };

  before(async () => {
    fs.mkdirSync(kbDir);
    const synth = spawnSync(clawbotBin(), ['models', 'synth', 'bge-tiny', '-o', model], { encoding: 'utf8', timeout: 300000 });
    assert.equal(synth.status, 0, `models synth failed:\n${synth.stderr}`);
    node = await startServer({ model, chatTemplate: null,
      extraArgs: ['--kb', kbDir, '--kb-write', '--kb-max-upload-bytes', String(LIMIT), '--threads', '2', '--parallel', '2'] });
  });
  after(async () => {
    await node?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('POST /v1/kb creates a knowledge base by name; bad and taken names are refused', async () => {
    const r = await postJson(node.baseUrl, '/v1/kb', { name: 'shop' });
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.id, 'shop');
    assert.equal(r.json.documents, 0);
    assert.ok(fs.existsSync(path.join(kbDir, 'shop.kb')));
    assert.equal((await kbEntry('shop')).model, 'kb:shop');
    assert.ok((await getJson(node.baseUrl, '/v1/models')).json.data.some((m) => m.id === 'kb:shop'));
    assertError(await postJson(node.baseUrl, '/v1/kb', { name: 'shop' }), 400, 'name', /exists already/);
    for (const name of ['../evil', 'a/b', '', '.hidden', 'two words', 'x'.repeat(65), 'a..b', 'n\u0000ul']) {
      const bad = await postJson(node.baseUrl, '/v1/kb', { name });
      assert.equal(bad.status, 400, `${JSON.stringify(name)}: ${bad.text}`);
      assert.equal(bad.json.error.param, 'name');
    }
    assert.deepEqual(fs.readdirSync(kbDir).filter((f) => f.endsWith('.kb')), ['shop.kb']);
  });

  test('multipart files of each type are chunked, embedded in process, listed, and found', async () => {
    const r = await upload(node.baseUrl, 'shop', shopDocuments());
    assert.equal(r.status, 200, r.text);
    assert.equal(r.json.embedding_model, 'bge-tiny-q8_0');
    assert.deepEqual(r.json.data.map((d) => [d.source, d.status]),
      [['returns.md', 'added'], ['shipping.txt', 'added'], ['warranty.html', 'added'], ['opening.pdf', 'added'], ['loyalty.docx', 'added']]);
    assert.deepEqual(r.json.data.map((d) => d.kind), ['markdown', 'text', 'html', 'pdf', 'docx']);
    for (const d of r.json.data) {
      assert.ok(d.chunks >= 1, JSON.stringify(d));
      assert.equal(d.chunks_embedded, d.chunks, JSON.stringify(d));
      assert.equal(d.embedded, true);
      assert.match(d.content_hash, /^[0-9a-f]{64}$/);
    }
    // The node's list (its cached info) follows the upload
    const entry = await kbEntry('shop');
    assert.equal(entry.documents, 5);
    assert.equal(entry.embedding_model, 'bge-tiny-q8_0');
    assert.equal(entry.embedded_chunks, entry.chunks);
    const listed = await documents('shop');
    assert.deepEqual(listed.map((d) => d.source).sort(), ['loyalty.docx', 'opening.pdf', 'returns.md', 'shipping.txt', 'warranty.html']);
    assert.deepEqual(listed.map((d) => d.id), r.json.data.map((d) => d.id));
    for (const [query, source] of [['gift cards store credit', 'returns.md'], ['tracking number parcel', 'shipping.txt'],
      ['kettle warranty', 'warranty.html'], ['shop Lyon opens', 'opening.pdf'], ['loyalty points voucher', 'loyalty.docx']]) {
      const hits = await search('shop', query);
      assert.equal(hits[0]?.source, source, `${query}: ${JSON.stringify(hits)}`);
    }
    const pdf = (await search('shop', 'shop Lyon opens'))[0];
    assert.match(pdf.location, /^page 1$/);
    const hybrid = await postJson(node.baseUrl, '/v1/kb/shop/search', { query: 'gift cards' });
    assert.equal(hybrid.json.mode, 'hybrid', 'the node embeds the query with the model it embedded the uploads with');
    assert.ok(hybrid.json.data.some((h) => typeof h.cosine === 'number'), hybrid.text);
  });

  test('an unchanged document is not embedded again; a changed one replaces the old', async () => {
    const [returns] = shopDocuments();
    const again = await upload(node.baseUrl, 'shop', [returns]);
    assert.equal(again.status, 200, again.text);
    assert.equal(again.json.data[0].status, 'unchanged');
    assert.equal(again.json.data[0].chunks_embedded, 0);
    assert.equal(again.json.chunks_embedded, 0);
    const edited = await upload(node.baseUrl, 'shop', [['returns.md', Buffer.concat([returns[1], Buffer.from('\n## Zebra\n\nZebra-striped parcels are returned free.\n')])]]);
    assert.equal(edited.json.data[0].status, 'updated', edited.text);
    assert.ok(edited.json.data[0].chunks_embedded > 0);
    assert.equal((await documents('shop')).filter((d) => d.source === 'returns.md').length, 1);
    assert.equal((await search('shop', 'zebra striped'))[0].source, 'returns.md');
  });

  test('JSON bodies: text with a source, and a page by URL', async () => {
    const t = await postJson(node.baseUrl, '/v1/kb/shop/documents', { text: '# Repairs\n\nKettles are repaired in Lyon within ten days.', source: 'repairs.md' });
    assert.equal(t.status, 200, t.text);
    assert.equal(t.json.data[0].source, 'repairs.md');
    assert.equal(t.json.data[0].kind, 'markdown');
    const pages = http.createServer((req, res) => {
      res.writeHead(200, { 'content-type': 'text/html' });
      res.end('<html><head><title>Careers</title></head><body><h1>Careers</h1><p>The shop hires seasonal staff every November.</p></body></html>');
    });
    await new Promise((resolve) => pages.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${pages.address().port}/careers`;
      const u = await postJson(node.baseUrl, '/v1/kb/shop/documents', { url });
      assert.equal(u.status, 200, u.text);
      assert.equal(u.json.data[0].source, url);
      assert.equal((await search('shop', 'seasonal staff November'))[0].source, url);
    } finally {
      pages.close();
    }
    assertError(await postJson(node.baseUrl, '/v1/kb/shop/documents', { url: 'file:///etc/passwd' }), 400, 'url', /http/);
    assertError(await postJson(node.baseUrl, '/v1/kb/shop/documents', { text: 'hello' }), 400, 'source', /source/);
    assertError(await postJson(node.baseUrl, '/v1/kb/shop/documents', {}), 400, 'text', /'url', or 'text'/);
  });

  test('a bad file is a 400 naming it and its problem, and nothing of its request is stored', async () => {
    const before = await documents('shop');
    const good = ['good.md', Buffer.from('# Good\n\nA good document about umbrellas.\n')];
    const cases = [
      [['virus.exe', Buffer.from('MZ')], /virus\.exe.*unsupported type/],
      [['empty.txt', Buffer.alloc(0)], /empty\.txt.* is empty/],
      [['blank.md', Buffer.from('   \n\n  ')], /blank\.md.*no text/],
      [['broken.pdf', Buffer.from('%PDF-1.4\nthis is not a PDF at all')], /broken\.pdf.*cannot be read as pdf/],
      [['broken.docx', Buffer.from('PK\u0003\u0004 not a zip')], /broken\.docx.*cannot be read as docx/],
      [['nodoc.docx', zipStored([{ name: 'other.xml', data: '<a/>' }])], /nodoc\.docx.*cannot be read as docx/],
    ];
    for (const [file, pattern] of cases) {
      const r = await upload(node.baseUrl, 'shop', [good, file]);
      assertError(r, 400, 'file', pattern);
    }
    // Names that are paths, or not names
    // (a backslash escaped on the wire, as RFC 7578's quoted-string has it: the name has one)
    for (const filename of ['../etc/passwd.txt', 'a/b.txt', 'C:\\\\Users\\\\c.txt', '..', 'tab\there.txt']) {
      const { body, contentType } = formBody([{ name: 'file', filename, data: 'some text' }]);
      const r = await rawPost(node.baseUrl, '/v1/kb/shop/documents', body, { 'content-type': contentType });
      assert.equal(r.status, 400, `${filename}: ${r.text}`);
      assert.equal(r.json.error.param, 'file');
    }
    assert.deepEqual(await documents('shop'), before, 'no document of a refused request is stored');
    assert.equal((await search('shop', 'umbrellas')).length, 0);
  });

  test('a form without a file part, a boundary that never ends, and bodies over the limit', async () => {
    const noFile = formBody([{ name: 'purpose', data: 'assistants' }]);
    assertError(await rawPost(node.baseUrl, '/v1/kb/shop/documents', noFile.body, { 'content-type': noFile.contentType }),
      400, 'file', /no 'file' part/);
    const open = formBody([{ name: 'file', filename: 'open.txt', data: 'text' }]);
    const cut = open.body.subarray(0, open.body.length - 20);  // the closing boundary never comes
    const r = await rawPost(node.baseUrl, '/v1/kb/shop/documents', cut, { 'content-type': open.contentType });
    assert.equal(r.status, 400, r.text);
    assert.match(r.json.error.message, /multipart/);
    const noBoundary = await rawPost(node.baseUrl, '/v1/kb/shop/documents', open.body, { 'content-type': 'multipart/form-data' });
    assert.equal(noBoundary.status, 400, noBoundary.text);
    // Over --kb-max-upload-bytes: refused from its Content-Length before the body is read, and a chunked body
    // as it comes
    const big = Buffer.alloc(LIMIT + 1, 0x61);
    const declared = await rawPost(node.baseUrl, '/v1/kb/shop/documents', big, { 'content-type': open.contentType, 'content-length': String(big.length) });
    assertError(declared, 413, 'file', /--kb-max-upload-bytes/);
    const chunked = await rawPost(node.baseUrl, '/v1/kb/shop/documents', [big.subarray(0, LIMIT / 2), big.subarray(LIMIT / 2)], { 'content-type': open.contentType });
    assert.equal(chunked.status, 413, chunked.text);
    assert.match(chunked.json.error.message, /--kb-max-upload-bytes/);
    // Other routes keep --max-body-bytes' limit
    const other = await rawPost(node.baseUrl, '/v1/embeddings', Buffer.alloc((8 << 20) + 1, 0x20), { 'content-type': 'application/json', 'content-length': String((8 << 20) + 1) });
    assert.equal(other.status, 413);
    assert.match(other.json.error.message, /--max-body-bytes/);
  });

  test('DELETE removes a document by id; unknown ids, names and knowledge bases are refused', async () => {
    const doc = (await documents('shop')).find((d) => d.source === 'warranty.html');
    const r = await fetch(`${node.baseUrl}/v1/kb/shop/documents/${doc.id}`, { method: 'DELETE' });
    assert.equal(r.status, 200);
    assert.deepEqual(await r.json(), { object: 'kb.document.deleted', id: doc.id, source: 'warranty.html', deleted: true });
    assert.ok(!(await documents('shop')).some((d) => d.source === 'warranty.html'));
    assert.ok(!(await search('shop', 'kettle warranty defects')).some((h) => h.source === 'warranty.html'));
    assert.equal((await kbEntry('shop')).documents, (await documents('shop')).length);
    const again = await (await fetch(`${node.baseUrl}/v1/kb/shop/documents/${doc.id}`, { method: 'DELETE' })).json();
    assert.equal(again.error.code, 'document_not_found');
    const bad = await fetch(`${node.baseUrl}/v1/kb/shop/documents/abc`, { method: 'DELETE' });
    assert.equal(bad.status, 400);
    assert.equal((await upload(node.baseUrl, 'nope', shopDocuments().slice(0, 1))).status, 404);
    const evil = await upload(node.baseUrl, '..', shopDocuments().slice(0, 1));
    assert.ok([400, 404].includes(evil.status), evil.text);
    const weird = await getJson(node.baseUrl, '/v1/kb/sh%2Fop/documents');
    assert.equal(weird.status, 400, weird.text);
    const wrongVerb = await fetch(`${node.baseUrl}/v1/kb/shop/documents`, { method: 'PUT' });
    assert.equal(wrongVerb.status, 405);
    assert.equal(wrongVerb.headers.get('allow'), 'GET, HEAD, POST');
  });

  test('20 uploads at once while searches run: every one stored, every search answered right', async () => {
    assert.equal((await postJson(node.baseUrl, '/v1/kb', { name: 'busy' })).status, 200);
    const base = await upload(node.baseUrl, 'busy', [['anchor.md', Buffer.from('# Anchor\n\nThe lighthouse keeper polishes the brass lantern.\n')]]);
    assert.equal(base.status, 200, base.text);
    let searching = true;
    let searches = 0;
    const searcher = (async () => {
      while (searching) {
        const hits = await search('busy', 'lighthouse brass lantern');
        assert.equal(hits[0]?.source, 'anchor.md', JSON.stringify(hits));
        assert.match(hits[0].text, /lighthouse keeper/);
        ++searches;
      }
    })();
    const uploads = await Promise.all(Array.from({ length: 20 }, (_, i) =>
      upload(node.baseUrl, 'busy', [[`note-${i}.md`, Buffer.from(`# Note ${i}\n\nParagraph ${i} mentions the word quokka${i} and the sea.\n\n${'Filler sentence about tides. '.repeat(40)}\n`)]])));
    searching = false;
    await searcher;
    for (const [i, r] of uploads.entries()) {
      assert.equal(r.status, 200, `upload ${i}: ${r.text}`);
      assert.equal(r.json.data[0].status, 'added');
    }
    assert.ok(searches > 0);
    const listed = await documents('busy');
    assert.equal(listed.length, 21);
    for (let i = 0; i < 20; ++i) assert.equal((await search('busy', `quokka${i}`))[0].source, `note-${i}.md`);
    const entry = await kbEntry('busy');
    assert.equal(entry.documents, 21);
    assert.equal(entry.embedded_chunks, entry.chunks);
  });

  test('an upload while clawbot kb add writes the same knowledge base from another process', async () => {
    const folder = path.join(dir, 'folder');
    fs.mkdirSync(folder);
    for (let i = 0; i < 12; ++i) fs.writeFileSync(path.join(folder, `cli-${i}.md`), `# CLI ${i}\n\nWalrus${i} facts, added by the command line.\n\n${'More text about ice floes. '.repeat(60)}\n`);
    fs.writeFileSync(path.join(folder, 'same.md'), '# Same\n\nThe same file, added both ways: by kb add and by an upload.\n');
    const cli = runClient(['kb', 'add', path.join(kbDir, 'busy.kb'), folder, '--endpoint', node.baseUrl, '--json'], { env, timeoutMs: 300000 });
    const ups = await Promise.all([0, 1, 2].map((i) => upload(node.baseUrl, 'busy', [[`api-${i}.md`, Buffer.from(`# API ${i}\n\nNarwhal${i} facts, uploaded.\n`)],
      ['same.md', fs.readFileSync(path.join(folder, 'same.md'))]])));
    const added = await cli;
    assert.equal(added.code, 0, `${added.stdout}\n${added.stderr}`);
    const report = JSON.parse(added.stdout);
    assert.equal(report.added, 13, added.stdout);
    for (const r of ups) assert.equal(r.status, 200, r.text);
    const listed = await documents('busy');
    assert.equal(listed.length, 21 + 13 + 4, JSON.stringify(listed.map((d) => d.source)));
    assert.equal(listed.filter((d) => d.source === 'same.md').length, 1, 'the upload\'s source is its file name');
    assert.ok(listed.some((d) => d.source === path.join(folder, 'same.md')), 'kb add\'s source is its path');
    // The node's cached info sees the other process's commits
    const entry = await kbEntry('busy');
    assert.equal(entry.documents, listed.length);
    assert.equal(entry.embedded_chunks, entry.chunks);
    assert.equal((await search('busy', 'walrus7'))[0].source, path.join(folder, 'cli-7.md'));
    assert.equal((await search('busy', 'narwhal2'))[0].source, 'api-2.md');
  });

  test('a node without --kb-write lists documents and takes no writes, and serves a knowledge base made meanwhile', async () => {
    const reader = await startServer({ model, chatTemplate: null, extraArgs: ['--kb', kbDir] });
    try {
      const list = await getJson(reader.baseUrl, '/v1/kb/shop/documents');
      assert.equal(list.status, 200, list.text);
      assert.ok(list.json.data.length > 0);
      const create = await postJson(reader.baseUrl, '/v1/kb', { name: 'other' });
      assert.equal(create.status, 403, create.text);
      assert.equal(create.json.error.code, 'kb_read_only');
      assert.match(create.json.error.message, /--kb-write/);
      const r = await upload(reader.baseUrl, 'shop', shopDocuments().slice(0, 1));
      assert.equal(r.status, 403, r.text);
      const del = await fetch(`${reader.baseUrl}/v1/kb/shop/documents/${list.json.data[0].id}`, { method: 'DELETE' });
      assert.equal(del.status, 403);
      // A knowledge base another node creates in the folder is served here from the first request that looks
      assert.equal((await postJson(node.baseUrl, '/v1/kb', { name: 'late' })).status, 200);
      assert.equal((await upload(node.baseUrl, 'late', [['late.md', Buffer.from('# Late\n\nThe ferry leaves at dawn.\n')]])).status, 200);
      assert.ok((await getJson(reader.baseUrl, '/v1/models')).json.data.some((m) => m.id === 'kb:late'));
      const late = await postJson(reader.baseUrl, '/v1/kb/late/search', { query: 'ferry dawn' });
      assert.equal(late.status, 200, late.text);
      assert.equal(late.json.data[0].source, 'late.md');
    } finally {
      await reader.stop();
    }
  });

  test('through the gateway: writes need an admin key, search takes any key, tricks in the path do not pass', async () => {
    const gwDir = path.join(dir, 'gateway');
    fs.mkdirSync(gwDir, { recursive: true });
    const config = { listen: [{ host: '127.0.0.1', port: 0 }], upstreams: [{ url: node.baseUrl, name: 'node' }],
      health_checks: { interval_ms: 200, timeout_ms: 2000 } };
    const configFile = writeGatewayConfig(gwDir, config);
    const user = (await createKey(configFile, 'kb-reader')).key;
    const admin = (await createKey(configFile, 'kb-admin', { admin: true })).key;
    const gw = await startGateway(config, { dir: gwDir });
    const as = (key, extra = {}) => ({ authorization: `Bearer ${key}`, ...extra });
    const json = { 'content-type': 'application/json' };
    const form = (filename, text) => formBody([{ name: 'file', filename, data: Buffer.from(text) }]);
    try {
      assert.ok(await waitUntil(async () => (await request(`${gw.url}/health`, { headers: as(user) })).status === 200, 10000), gw.stderr());
      const before = (await documents('shop')).map((d) => d.id).sort();

      // A key without --admin: every write is refused by the gateway (nothing reaches the node), reads pass.
      const create = await request(`${gw.url}/v1/kb`, { method: 'POST', headers: as(user, json), body: JSON.stringify({ name: 'gwshop' }) });
      assert.equal(create.status, 403, create.text);
      assert.equal(create.json.error.code, 'admin_key_required', create.text);
      assert.match(create.json.error.message, /admin key/);
      const f = form('hours.md', '# Hours\n\nThe harbour kiosk opens at dawn.\n');
      const up = await request(`${gw.url}/v1/kb/shop/documents`, { method: 'POST', headers: as(user, { 'content-type': f.contentType }), body: f.body });
      assert.equal(up.status, 403, up.text);
      const del = await request(`${gw.url}/v1/kb/shop/documents/${before[0]}`, { method: 'DELETE', headers: as(user) });
      assert.equal(del.status, 403, del.text);
      // Spellings of the same writes: each is refused or finds no route; none stores anything.
      for (const route of ['/v1/kb/shop/documents?x=1', '/v1/kb/shop/documents/', '/v1/kb/shop/../shop/documents',
        '/v1/kb/shop/documents/search', '/v1//kb/shop/documents', '/v1/kb/shop%2Fdocuments', '/v1/kb/./shop/documents']) {
        const g = form('sneak.md', '# Sneak\n\nThis must never be stored.\n');
        const r = await request(`${gw.url}${route}`, { method: 'POST', headers: as(user, { 'content-type': g.contentType }), body: g.body });
        assert.ok(r.status >= 400 && r.status < 500, `${route}: ${r.status} ${r.text}`);
      }
      assert.deepEqual((await documents('shop')).map((d) => d.id).sort(), before);
      assert.ok(!fs.existsSync(path.join(kbDir, 'gwshop.kb')));
      const list = await request(`${gw.url}/v1/kb/shop/documents`, { headers: as(user) });
      assert.equal(list.status, 200, list.text);
      assert.equal(list.json.data.length, before.length);
      const none = await request(`${gw.url}/v1/kb`, { method: 'POST', headers: json, body: JSON.stringify({ name: 'gwshop' }) });
      assert.equal(none.status, 401, none.text);

      // The admin key: create, upload, then any key finds it; delete removes it.
      const made = await request(`${gw.url}/v1/kb`, { method: 'POST', headers: as(admin, json), body: JSON.stringify({ name: 'gwshop' }) });
      assert.equal(made.status, 200, made.text);
      const added = await request(`${gw.url}/v1/kb/gwshop/documents`, { method: 'POST', headers: as(admin, { 'content-type': f.contentType }), body: f.body });
      assert.equal(added.status, 200, added.text);
      assert.deepEqual(added.json.data.map((d) => [d.source, d.status]), [['hours.md', 'added']]);
      const found = await request(`${gw.url}/v1/kb/gwshop/search`, { method: 'POST', headers: as(user, json), body: JSON.stringify({ query: 'harbour kiosk dawn', mode: 'bm25' }) });
      assert.equal(found.status, 200, found.text);
      assert.equal(found.json.data[0].source, 'hours.md');
      const gone = await request(`${gw.url}/v1/kb/gwshop/documents/${added.json.data[0].id}`, { method: 'DELETE', headers: as(admin) });
      assert.equal(gone.status, 200, gone.text);
      assert.equal((await documents('gwshop')).length, 0);
    } finally {
      await gw.stop();
    }
  });
});

describe('serve --kb --kb-write on a chat model', () => {
  test('uploads are stored for full-text search only, and the answer says why', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-kb-upload-chat-'));
    const node = await startServer({ extraArgs: ['--kb', dir, '--kb-write'] });
    try {
      assert.equal((await postJson(node.baseUrl, '/v1/kb', { name: 'notes' })).status, 200);
      const r = await upload(node.baseUrl, 'notes', [['pdf.pdf', pdfBytes(['Otters hold hands while sleeping.'])],
        ['word.docx', docxBytes([['', 'Beavers build dams.']])]]);
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.embedding_model, null);
      assert.match(r.json.embedding_note, /not an embedding model/);
      assert.ok(r.json.data.every((d) => d.embedded === false && d.chunks > 0), r.text);
      const hits = await postJson(node.baseUrl, '/v1/kb/notes/search', { query: 'otters sleeping' });
      assert.equal(hits.json.mode, 'bm25');
      assert.equal(hits.json.data[0].source, 'pdf.pdf');
    } finally {
      await node.stop();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
