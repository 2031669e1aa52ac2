// The web chat (GET /) answering from a knowledge base, in a real Chromium against real nodes: the shop's
// documents are uploaded through the API to a node serving the synthesized bge-tiny embedding model (serve --kb
// --kb-write: embedded there, in process), and the chat node (stories260K, serve --kb on the same folder) offers
// the knowledge base as the model kb:shop in the page's model picker. A question the documents answer shows
// numbered sources under the answer, each a document of the knowledge base; a question they do not answer
// shows the refusal with the nearest topics and no sources. (The story model's prose is not checked: it is the
// mechanics that are.)
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=../shared/models node --test tests/integration/web_chat_kb.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { assertCleanSession, launchBrowser } from './browser_helpers.mjs';
import { shopDocuments, upload } from './kb_helpers.mjs';
import { clawbotBin, getJson, postJson, startServer } from './server_harness.mjs';

const WAIT = { timeout: 60000 };
const LAST = '#messages article.assistant:last-of-type';

describe('web chat with a knowledge base (serve --kb)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-web-kb-'));
  const kbDir = path.join(dir, 'kbs');
  let embedder;
  let chat;
  let browser;
  let watch;
  let page;
  let sources;

  before(async () => {
    fs.mkdirSync(kbDir);
    const model = path.join(dir, 'bge-tiny-q8_0.gguf');
    const synth = spawnSync(clawbotBin(), ['models', 'synth', 'bge-tiny', '-o', model], { encoding: 'utf8', timeout: 300000 });
    assert.equal(synth.status, 0, `models synth failed:\n${synth.stderr}`);
    embedder = await startServer({ model, chatTemplate: null, extraArgs: ['--kb', kbDir, '--kb-write', '--threads', '2'] });
    assert.equal((await postJson(embedder.baseUrl, '/v1/kb', { name: 'shop' })).status, 200);
    const added = await upload(embedder.baseUrl, 'shop', shopDocuments());
    assert.equal(added.status, 200, added.text);
    assert.ok(added.json.data.every((d) => d.embedded), added.text);
    sources = (await getJson(embedder.baseUrl, '/v1/kb/shop/documents')).json.data.map((d) => d.source);
    chat = await startServer({ extraArgs: ['--ctx', '2048', '--kb', kbDir] });
    let newPage;
    ({ browser, watch, newPage } = await launchBrowser());
    page = await newPage();
  });
  after(async () => {
    await browser?.close();
    await chat?.stop();
    await embedder?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('kb:shop is in the model picker; an answer lists numbered sources from the knowledge base', async () => {
    const res = await page.goto(`${chat.baseUrl}/`);
    assert.equal(res.status(), 200);
    await page.waitForSelector('body[data-state="ready"]', WAIT);
    await page.waitForSelector('#model option[value="kb:shop"]', { ...WAIT, state: 'attached' });
    await page.selectOption('#model', 'kb:shop');
    await page.fill('#composer-input', 'Are gift cards refunded as cash or as store credit?');
    await page.press('#composer-input', 'Enter');
    const answer = await page.waitForSelector(`${LAST}[data-state="complete"], ${LAST}[data-state="length"]`, WAIT);
    const items = await answer.$$eval('.citations li', (l) => l.map((x) => ({ text: x.textContent, source: x.title })));
    assert.ok(items.length >= 1 && items.length <= 5, JSON.stringify(items));
    items.forEach((item, i) => {
      const m = /^\[(\d+)\] (\S+)/.exec(item.text);
      assert.ok(m, item.text);
      assert.equal(Number(m[1]), i + 1, 'numbered [1], [2]... in order');
      assert.ok(sources.includes(m[2]), `${m[2]} is a document of the knowledge base (${sources})`);
      assert.equal(item.source, m[2]);
    });
    assert.match(items[0].text, /^\[1\] returns\.md .*§ .*Gift cards/, 'the passage that answers comes first');
    assert.equal(await answer.$eval('.citations', (l) => l.hidden), false);
    assert.equal(await answer.$eval('.citations', (l) => l.getAttribute('aria-label')), 'Sources');
  });

  test('a question outside the knowledge base shows the refusal with the nearest topics, and no sources', async () => {
    await page.fill('#composer-input', 'How much does a parcel of Colombian coffee beans cost in winter?');
    await page.press('#composer-input', 'Enter');
    await page.waitForFunction(() => {
      const all = document.querySelectorAll('#messages article.assistant');
      return all.length >= 2 && ['complete', 'length'].includes(all[all.length - 1].dataset.state);
    }, null, WAIT);
    const answer = await page.$(LAST);
    const text = await answer.$eval('.body', (b) => b.textContent);
    assert.match(text, /^Not in the knowledge base/);
    assert.match(text, /nearest topics/);
    assert.match(text, /Returns|Shipping|Gift cards/, text);
    assert.equal(await answer.$eval('.citations', (l) => l.hidden), true);
    assert.equal(await answer.$$eval('.citations li', (l) => l.length), 0);
  });

  test('no console error and no request off 127.0.0.1', () => {
    assertCleanSession(watch);
  });
});
