// The web chat (GET /) in a real Chromium (Debian's, driven by playwright-core from tests/compat), against
// clawbot serve on the story model and clawbot gateway in front of Node upstreams whose answers the tests
// choose (model output that tries to run script, slow streams, a node that stops mid-answer). Every request
// the page makes must go to 127.0.0.1 and the page must log no console error but the refusals a test asks for.
//
// Environment: CLAWBOT_BIN, CLAWBOT_MODELS (server_harness.mjs); CLAWBOT_CHROMIUM (browser_helpers.mjs);
// CLAWBOT_CHAT_SCREENSHOT, where to save the screenshot (default: a temp folder; README's docs/chat.png is
// made with it).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { assertCleanSession, compatRequire, launchBrowser } from './browser_helpers.mjs';
import { runClient, writeConfig } from './client_helpers.mjs';
import {
  bearer, chat, createKey, request, startGateway, startUpstream, tempDir, waitUntil, writeGatewayConfig,
} from './gateway_helpers.mjs';
import { MODEL_ID, runClawbot, startServer } from './server_harness.mjs';

/** The last chat request an upstream got (the gateway's health checks also fetch /v1/models now and then). */
function lastChat(upstream) {
  return upstream.requests.findLast((r) => r.method === 'POST' && r.url.startsWith('/v1/chat/completions'));
}

const WAIT = { timeout: 60000 };

async function openChat(page, base, state = 'ready') {
  const res = await page.goto(`${base}/`);
  assert.equal(res.status(), 200);
  await page.waitForSelector(`body[data-state="${state}"]`, WAIT);
}

async function send(page, text) {
  await page.fill('#composer-input', text);
  await page.press('#composer-input', 'Enter');
}

const LAST = '#messages article.assistant:last-of-type';
const FINISHED = ['complete', 'length'];  // (length: the answer reached max_tokens)

/** The last answer, once in `state`. */
async function lastAnswer(page, state) {
  return page.waitForSelector(`${LAST}[data-state="${state}"]`, WAIT);
}

/** Runs `action` (a send, an edit, a regenerate, a retry) and waits for the new answer it starts to be in `states`. */
async function newAnswer(page, action, states = FINISHED) {
  const before = await page.$eval(LAST, (a) => a.dataset.id).catch(() => '');
  await action();
  await page.waitForFunction(([last, id, wanted]) => {
    const a = document.querySelector(last);
    return a && a.dataset.id !== id && wanted.includes(a.dataset.state);
  }, [LAST, before, states], WAIT);
  return page.$(LAST);
}

const answerText = (page) => page.$eval('#messages article.assistant:last-of-type .body', (b) => b.textContent);

/** The page's GET / and files: CSP without inline script, a strong ETag and 304, the licences. */
async function checkPage(base) {
  const res = await fetch(`${base}/`);
  assert.equal(res.status, 200);
  assert.match(res.headers.get('content-type'), /^text\/html; charset=utf-8/);
  const csp = res.headers.get('content-security-policy') ?? '';
  assert.match(csp, /default-src 'self'/);
  assert.match(csp, /script-src 'self'(;|$)/, `no inline script: ${csp}`);
  const etag = res.headers.get('etag');
  assert.match(etag ?? '', /^"[0-9a-f]{32}"$/);
  const html = await res.text();
  assert.match(html, /<script type="module" src="\/chat\/app\.js"><\/script>/);
  assert.doesNotMatch(html, /https?:\/\//, 'nothing from another origin');
  assert.equal((await fetch(`${base}/`, { headers: { 'if-none-match': etag } })).status, 304);
  for (const file of ['/chat/app.js', '/chat/app.css', '/chat/favicon.svg']) assert.equal((await fetch(`${base}${file}`)).status, 200, file);
  const licences = await (await fetch(`${base}/chat/licenses`)).text();
  for (const name of ['marked', 'dompurify', 'highlight.js']) assert.match(licences, new RegExp(`==== ${name.replace('.', '\\.')} \\d`), name);
}

// ---------------------------------------------------------------------------------------------- serve

describe('web chat on clawbot serve', () => {
  const dir = tempDir('clawbot-chat-');
  let server;
  let base;
  let browser;
  let page;
  let exported;
  before(async () => {
    server = await startServer({ extraArgs: ['--parallel', '2'] });
    base = server.baseUrl;
    browser = await launchBrowser();
    page = await browser.newPage();
  });
  after(async () => {
    await browser?.browser.close();
    await server?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('GET / is the chat: CSP, ETag and 304, its files and licences; /dashboard stays the dashboard', async () => {
    await checkPage(base);
    const dashboard = await (await fetch(`${base}/dashboard`)).text();
    assert.match(dashboard, /\/dashboard\/app\.js/);
  });

  test('the prompts route builds what clawbot ask --template and clawbot code send', async () => {
    const upstream = await startUpstream({ name: 'cli' });
    const config = writeConfig({ model_endpoint: upstream.url });
    try {
      const text = 'Ths sentence has a typo.\nAnd a second line.';
      const asked = await runClient(['ask', '--template', 'translate', '--to', 'French'], { env: config.env, input: text });
      assert.equal(asked.code, 0, asked.stderr);
      const page = await (await fetch(`${base}/v1/clawbot/prompts`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ task: 'translate', text, language: 'French' }),
      })).json();
      assert.deepEqual(page.messages, lastChat(upstream).body.messages);

      const code = 'def add(a, b):\n    return a - b\n';
      const file = path.join(config.dir, 'snippet.py');
      fs.writeFileSync(file, code);
      for (const task of ['review', 'tests']) {
        const before = upstream.requests.length;
        await runClient(['code', task, file], { env: config.env });  // (the stub's answer is no review: exit 3)
        const sent = upstream.requests.slice(before).find((r) => r.url === '/v1/chat/completions');
        assert.ok(sent, `clawbot code ${task} sent a chat request`);
        const built = await (await fetch(`${base}/v1/clawbot/prompts`, {
          method: 'POST', headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ task, text: code, file_name: 'snippet.py' }),
        })).json();
        assert.deepEqual(built.messages, sent.body.messages, task);
      }
      const tasks = await (await fetch(`${base}/v1/clawbot/prompts`)).json();
      assert.deepEqual(tasks.writing.map((t) => t.name), ['continue', 'polish', 'summarise', 'translate']);
      assert.deepEqual(tasks.code.map((t) => t.name), ['review', 'tests']);
      for (const [body, param] of [[{ task: 'sing', text: 'x' }, 'task'], [{ task: 'polish', text: 5 }, 'text'],
        [{ task: 'polish', text: '  ' }, 'text']]) {
        const r = await fetch(`${base}/v1/clawbot/prompts`, { method: 'POST', body: JSON.stringify(body) });
        assert.equal(r.status, 400, JSON.stringify(body));
        const error = (await r.json()).error;
        assert.equal(error.param, param, JSON.stringify(error));
        assert.equal(error.type, 'invalid_request_error');
      }
    } finally {
      config.cleanup();
      await upstream.close();
    }
  });

  test('--no-web: no chat, no dashboard, no prompts route', async () => {
    const bare = await startServer({ extraArgs: ['--no-web'] });
    try {
      for (const route of ['/', '/chat/app.js', '/dashboard', '/v1/clawbot/prompts'])
        assert.equal((await fetch(`${bare.baseUrl}${route}`)).status, 404, route);
      assert.equal((await fetch(`${bare.baseUrl}/v1/models`)).status, 200);
    } finally {
      await bare.stop();
    }
  });

  test('a message gets a streamed answer with its tokens/s and cached tokens', async () => {
    await openChat(page, base);
    assert.equal(await page.inputValue('#model'), MODEL_ID);
    // Hidden panels stay hidden (their CSS display must not win over the hidden attribute)
    for (const panel of ['#settings', '#notice', '#key-box', '#stop']) assert.equal(await page.isVisible(panel), false, panel);
    await page.click('#settings-button');
    assert.equal(await page.isVisible('#settings'), true);
    await page.fill('#max-tokens', '40');
    await page.dispatchEvent('#max-tokens', 'change');
    await newAnswer(page, () => send(page, 'Once upon a time'));
    assert.ok((await answerText(page)).trim().length > 0);
    const second = await newAnswer(page, () => send(page, 'And then?'));
    const meta = await second.$eval('.meta', (m) => m.textContent);
    assert.match(meta, /^\d+ tokens · [\d.]+ tokens\/s · \d+ cached · first token \d+ ms$/, meta);
    assert.equal(await page.$$eval('#messages article', (a) => a.length), 4);
    assert.equal(await page.textContent('#title'), 'Once upon a time');
  });

  test('a reload keeps the conversation (IndexedDB)', async () => {
    const before = await page.$$eval('#messages article .body', (b) => b.map((x) => x.textContent));
    await page.reload();
    await page.waitForSelector('body[data-state="ready"]', WAIT);
    assert.deepEqual(await page.$$eval('#messages article .body', (b) => b.map((x) => x.textContent)), before);
    assert.equal(await page.$$eval('#conversation-list li button.open', (b) => b.length), 1);
  });

  test('Export writes what clawbot sessions import reads', async () => {
    const [download] = await Promise.all([page.waitForEvent('download'), page.click('#export-button')]);
    const file = path.join(dir, 'exported.json');
    await download.saveAs(file);
    exported = JSON.parse(fs.readFileSync(file, 'utf8'));
    assert.equal(exported.format, 'clawbot-session');
    assert.deepEqual(exported.messages.map((m) => m.role), ['user', 'assistant', 'user', 'assistant']);
    const db = path.join(dir, 'sessions.db');
    const imported = await runClawbot(['sessions', 'import', file, '--db', db]);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /^imported "Once upon a time" \(4 messages\)$/m);
    const back = await runClawbot(['sessions', 'export', 'Once upon a time', '--format', 'json', '--db', db]);
    assert.equal(back.code, 0, back.stderr);
    const stored = JSON.parse(back.stdout);
    assert.equal(stored.model, exported.model);
    const strip = (m) => ({ role: m.role, content: m.content, state: m.state, tokens: m.tokens });
    assert.deepEqual(stored.messages.map(strip), exported.messages.map(strip));
    // Twice under one name: refused, naming --name; a broken file: refused, naming the member.
    const again = await runClawbot(['sessions', 'import', file, '--db', db]);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /exists already: choose another name with --name/);
    const bad = path.join(dir, 'bad.json');
    fs.writeFileSync(bad, JSON.stringify({ ...exported, messages: [{ role: 'robot', content: 'x' }] }));
    const refused = await runClawbot(['sessions', 'import', bad, '--name', 'bad', '--db', db]);
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /messages\[0\]\.role must be system, user or assistant/);
  });

  test('Import takes an export back into the page', async () => {
    const file = path.join(dir, 'to-import.json');
    fs.writeFileSync(file, JSON.stringify({ ...exported, name: 'Imported story' }));
    await page.setInputFiles('#import-file', file);
    await page.waitForFunction(() => document.querySelector('#title').textContent === 'Imported story', null, WAIT);
    assert.equal(await page.$$eval('#messages article', (a) => a.length), 4);
    await page.fill('#search', 'imported');
    assert.deepEqual(await page.$$eval('#conversation-list button.open', (b) => b.map((x) => x.textContent)), ['Imported story']);
    await page.fill('#search', '');
  });

  test('rename and delete in the list, kept through a reload', async () => {
    const item = (title) => `#conversation-list li:has(button.open:text-is("${title}"))`;
    await page.click(`${item('Imported story')} button[data-action="rename"]`);
    await page.fill('#conversation-list input.rename', 'Renamed story');
    await page.press('#conversation-list input.rename', 'Enter');
    await page.waitForSelector(item('Renamed story'), WAIT);
    assert.equal(await page.textContent('#title'), 'Renamed story');
    // Delete asks in place: a first press only asks
    await page.click(`${item('Once upon a time')} button[data-action="delete"]`);
    assert.equal(await page.textContent(`${item('Once upon a time')} button[data-action="delete"]`), 'Delete?');
    await page.click(`${item('Once upon a time')} button[data-action="delete"]`);
    await page.waitForSelector(item('Once upon a time'), { state: 'detached', ...WAIT });
    await page.reload();
    await page.waitForSelector('body[data-state="ready"]', WAIT);
    assert.deepEqual(await page.$$eval('#conversation-list button.open', (b) => b.map((x) => x.textContent)), ['Renamed story']);
  });

  test('the node restarts: a message sent while it is down says so, and Retry works once it is back (no reload)', async () => {
    const open = await browser.newPage({ allow: [/net::ERR_CONNECTION_REFUSED/] });
    await openChat(open, base);
    await server.stop();
    await newAnswer(open, () => send(open, 'Are you there?'), ['partial']);
    await open.waitForSelector('#notice:not([hidden]) button', WAIT);
    assert.match(await open.textContent('#notice'), /No answer: the server cannot be reached .*it may be restarting/);
    server = await startServer({ extraArgs: ['--parallel', '2'], port: server.port });
    await newAnswer(open, () => open.click('#notice button'));
    assert.ok((await answerText(open)).trim().length > 0);
    assert.equal(await open.$$eval('#messages article.assistant', (a) => a.length), 1, 'the empty failed answer was replaced');
    await open.context().close();
  });

  test('keyboard only: skip link, Shift+Enter, Enter sends, Tab order; axe finds no serious violation', async () => {
    // (bypassCSP: axe's script is injected into the page, which our CSP forbids)
    const kb = await browser.newPage({ bypassCSP: true });
    await openChat(kb, base);  // (a context of its own: no conversation yet)
    await kb.keyboard.press('Tab');
    assert.equal(await kb.evaluate(() => document.activeElement.className), 'skip');
    await kb.keyboard.press('Enter');
    assert.equal(await kb.evaluate(() => document.activeElement.id), 'composer-input');
    await kb.keyboard.type('first line');
    await kb.keyboard.press('Shift+Enter');
    await kb.keyboard.type('second line');
    assert.equal(await kb.inputValue('#composer-input'), 'first line\nsecond line');
    await newAnswer(kb, () => kb.keyboard.press('Enter'));
    assert.equal(await kb.inputValue('#composer-input'), '');
    assert.equal(await kb.evaluate(() => document.activeElement.id), 'composer-input');
    await kb.keyboard.press('Tab');
    assert.equal(await kb.evaluate(() => document.activeElement.id), 'send');
    await kb.addScriptTag({ content: fs.readFileSync(compatRequire.resolve('axe-core/axe.min.js'), 'utf8') });
    for (const scheme of ['light', 'dark']) {
      await kb.emulateMedia({ colorScheme: scheme });
      const result = await kb.evaluate(() => window.axe.run(document, { runOnly: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] }));
      const serious = result.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical');
      assert.deepEqual(serious.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target.join(' ')).join(', ')})`), [], scheme);
    }
    await kb.context().close();
  });

  test('usable at 360 px; dark and light themes from the system setting', async () => {
    const colours = {};
    for (const colorScheme of ['light', 'dark']) {
      const phone = await browser.newPage({ viewport: { width: 360, height: 740 }, colorScheme });
      await openChat(phone, base);
      const widths = await phone.evaluate(() => ({
        page: document.documentElement.scrollWidth,
        parts: ['#composer-input', '#send', '#model', '#messages'].map((s) => document.querySelector(s).getBoundingClientRect().right),
      }));
      assert.ok(widths.page <= 360 && widths.parts.every((r) => r <= 360), JSON.stringify(widths));
      assert.equal(await phone.isVisible('#sidebar'), false, 'the list is a drawer on a phone');
      await phone.click('#toggle-sidebar');
      await phone.waitForSelector('#sidebar', { state: 'visible' });
      await phone.click('#new-chat');  // (any choice in the drawer closes it)
      await phone.waitForSelector('#sidebar', { state: 'hidden' });
      colours[colorScheme] = await phone.evaluate(() => getComputedStyle(document.body).backgroundColor);
      await phone.context().close();
    }
    assert.notEqual(colours.light, colours.dark);
  });

  test('no console error and no request off 127.0.0.1 in the whole session', () => {
    assertCleanSession(browser.watch);
  });
});

// ---------------------------------------------------------------------------------------------- gateway

describe('web chat through clawbot gateway', () => {
  const dir = tempDir('clawbot-chat-gw-');
  const upstreams = [];
  let gw;
  let key;
  let limitedKey;
  let config;
  let browser;
  let page;
  const refusals = [/Failed to load resource: the server responded with a status of (401|429|502|503)/];

  const allowChat = async () => {
    await waitUntil(async () => (await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) })).status === 200, 30000, 200);
  };

  before(async () => {
    upstreams.push(await startUpstream({ name: 'node-a' }), await startUpstream({ name: 'node-b', model: 'other-model' }));
    config = {
      listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: upstreams.map((u) => ({ url: u.url, name: u.name })),
      health_checks: { interval_ms: 200, timeout_ms: 500 },
    };
    const configFile = writeGatewayConfig(dir, config);
    ({ key } = await createKey(configFile, 'chat-user'));
    // Three requests a minute: the page's models and prompts, then one chat.
    ({ key: limitedKey } = await createKey(configFile, 'limited', { rpm: 3 }));
    gw = await startGateway(config, { dir });
    browser = await launchBrowser();
    page = await browser.newPage({ allow: refusals });
    await page.context().grantPermissions(['clipboard-read', 'clipboard-write']);
  });
  after(async () => {
    await browser?.browser.close();
    await gw?.stop('SIGKILL');
    await Promise.all(upstreams.map((u) => u.kill()));
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('the page needs no key; it asks for one, says when it is wrong, and works with a good one', async () => {
    await checkPage(gw.url);
    assert.equal((await request(`${gw.url}/v1/clawbot/prompts`)).status, 401);
    await openChat(page, gw.url, 'need-key');
    assert.match(await page.textContent('#key-why'), /needs an API key/);
    await page.fill('#key-input', 'cbk_000000000000_0000000000000000000000000000000a');
    await page.click('#key-use');
    await page.waitForFunction(() => /The key was refused/.test(document.querySelector('#key-why').textContent), null, WAIT);
    assert.equal(await page.isVisible('#key-box'), true);
    await page.fill('#key-input', key);
    await page.click('#key-use');
    await page.waitForSelector('body[data-state="ready"]', WAIT);
    assert.equal(await page.isVisible('#key-box'), false);
    // Every upstream's models
    assert.deepEqual((await page.$$eval('#model option', (o) => o.map((x) => x.value))).sort(), ['other-model', 'test-model']);
    await page.selectOption('#model', 'test-model');
    await newAnswer(page, () => send(page, 'Say hello'));
    assert.equal((await answerText(page)).trim(), 'Hello from the upstream');
    assert.equal(await page.textContent('#upstream'), 'answered by node-a');
    assert.match(await page.textContent('#messages article.assistant:last-of-type .meta'), /answered by node-a/);
    assert.ok(!browser.watch.urls.some((u) => u.includes(key)), 'the key is never in a URL');
    assert.equal(await page.evaluate(() => sessionStorage.getItem('clawbot.key')), key);
  });

  test('model output that tries to run script executes nothing and shows as text or safe links', async () => {
    upstreams[0].options.words = [
      'Look: <img src=x onerror="console.log(\'XSS-EXECUTED img\')"> and ',
      '<script>console.log("XSS-EXECUTED script")</script> then ',
      '[click me](javascript:console.log(\'XSS-EXECUTED link\')) or ',
      '[data link](data:text/html;base64,PHNjcmlwdD5jb25zb2xlLmxvZygnWFNTLUVYRUNVVEVEIGRhdGEnKTwvc2NyaXB0Pg==) and ',
      '<a href="javascript:console.log(\'XSS-EXECUTED a\')">raw link</a> ',
      '<svg onload="console.log(\'XSS-EXECUTED svg\')"></svg>\n\n',
      '![pic](javascript:console.log(\'XSS-EXECUTED md-img\')) [ok](https://example.invalid/page)',
    ];
    await page.click('#new-chat');
    const answer = await newAnswer(page, () => send(page, 'Show me some HTML'));
    for (const link of await answer.$$('.body a:not([href])')) await link.click();
    for (const round of ['rendered', 'reloaded']) {
      const found = await page.$eval('#messages article.assistant:last-of-type .body', (b) => ({
        tags: [...b.querySelectorAll('img, script, svg, iframe, object, embed')].map((e) => e.tagName),
        handlers: [...b.querySelectorAll('*')].flatMap((e) => [...e.attributes].map((a) => a.name)).filter((n) => n.startsWith('on')),
        hrefs: [...b.querySelectorAll('a[href]')].map((a) => a.getAttribute('href')),
        text: b.textContent,
      }));
      assert.deepEqual(found.tags, [], round);
      assert.deepEqual(found.handlers, [], round);
      assert.deepEqual(found.hrefs, ['https://example.invalid/page'], round);
      assert.match(found.text, /<script>console\.log\("XSS-EXECUTED script"\)<\/script>/, `${round}: raw HTML shows as text`);
      assert.match(found.text, /click me/);
      assert.equal(await page.$eval('#messages article.assistant:last-of-type .body a[href]', (a) => a.rel), 'noopener noreferrer nofollow');
      if (round === 'rendered') {
        await page.reload();
        await page.waitForSelector('body[data-state="ready"]', WAIT);
      }
    }
    assert.deepEqual(browser.watch.console.filter((t) => t.includes('XSS-EXECUTED')), []);
  });

  test('reasoning is folded above the answer and not sent back with the history', async () => {
    upstreams[0].options.words = ['<think>Two and two', ' make four.</think>', 'The answer is **4**.'];
    await page.click('#new-chat');
    const answer = await newAnswer(page, () => send(page, 'What is 2 + 2?'));
    const folded = await answer.$eval('details.reasoning', (d) => ({
      hidden: d.hidden, open: d.open, summary: d.querySelector('summary').textContent, text: d.textContent,
    }));
    assert.deepEqual({ ...folded, text: undefined }, { hidden: false, open: false, summary: 'Reasoning (5 words)', text: undefined });
    assert.match(folded.text, /Two and two make four\./);
    assert.equal((await answerText(page)).trim(), 'The answer is 4.');
    upstreams[0].options.words = ['Yes.'];
    await newAnswer(page, () => send(page, 'Sure?'));
    const history = lastChat(upstreams[0]).body.messages;
    assert.deepEqual(history.map((m) => m.content), ['What is 2 + 2?', 'The answer is **4**.', 'Sure?']);
  });

  test('a knowledge base answer lists its citations under it', async () => {
    upstreams[0].options.words = ['Debian is a free operating system [1].'];
    upstreams[0].options.finalFields = { citations: [{ index: 1, source: 'faq.md', title: 'The Debian FAQ', location: 'section 1.1' }] };
    await page.click('#new-chat');
    const answer = await newAnswer(page, () => send(page, 'What is Debian?'));
    delete upstreams[0].options.finalFields;
    assert.deepEqual(await answer.$$eval('.citations li', (l) => l.map((x) => x.textContent)), ['[1] faq.md — The Debian FAQ (section 1.1)']);
    assert.equal(await answer.$eval('.citations', (l) => l.getAttribute('aria-label')), 'Sources');
  });

  test('tokens stream in; Esc stops mid-answer; edit and regenerate keep both branches through a reload', async () => {
    upstreams[0].options.words = Array.from({ length: 80 }, (_, i) => ` word${i}`);
    upstreams[0].options.chunkDelayMs = 500;  // (40 s in all: Esc or the kill comes long before the end)
    await page.click('#new-chat');
    await send(page, 'Tell me a long story');
    // Seen streaming: some words on the page while the answer is still coming.
    await page.waitForFunction(() => {
      const last = document.querySelector('#messages article.assistant:last-of-type');
      return last?.dataset.state === 'partial' && last.querySelector('.body').textContent.includes('word3');
    }, null, WAIT);
    assert.equal(await page.isVisible('#stop'), true);
    await page.keyboard.press('Escape');
    const stopped = await lastAnswer(page, 'interrupted');
    const partial = await stopped.$eval('.body', (b) => b.textContent);
    assert.ok(partial.includes('word3') && !partial.includes('word79'), partial);
    assert.match(await stopped.$eval('.error', (e) => e.textContent), /Stopped/);
    assert.equal(await page.isVisible('#send'), true);

    upstreams[0].options.words = ['A', ' short', ' story'];
    upstreams[0].options.chunkDelayMs = 0;
    await page.click('#messages article.user button[data-action="edit"]');
    await page.fill('#messages article.user textarea.edit', 'Tell me a short story');
    await newAnswer(page, () => page.press('#messages article.user textarea.edit', 'Enter'));
    assert.equal((await answerText(page)).trim(), 'A short story');
    assert.equal(await page.textContent('#messages article.user .version'), '2/2');
    // Regenerate: a second version of the answer
    upstreams[0].options.words = ['Another', ' story'];
    await newAnswer(page, () => page.click('#messages article.assistant button[data-action="regenerate"]'));
    assert.equal(await page.textContent('#messages article.assistant .version'), '2/2');
    assert.equal((await answerText(page)).trim(), 'Another story');

    await page.reload();
    await page.waitForSelector('body[data-state="ready"]', WAIT);
    assert.equal(await page.textContent('#messages article.user .version'), '2/2');
    assert.equal(await page.textContent('#messages article.assistant .version'), '2/2');
    await page.click('#messages article.assistant button[data-action="prev"]');
    assert.equal((await answerText(page)).trim(), 'A short story');
    await page.click('#messages article.user button[data-action="prev"]');
    assert.equal(await page.textContent('#messages article.user .body'), 'Tell me a long story');
    assert.equal(await page.getAttribute('#messages article.assistant', 'data-state'), 'interrupted');
    assert.equal((await answerText(page)), partial);
  });

  test('a long answer on a slow phone: 4,000 pieces at a 6x slower CPU arrive whole', async () => {
    const phone = await browser.newPage({ viewport: { width: 360, height: 740 }, allow: refusals });
    const cdp = await phone.context().newCDPSession(phone);
    await cdp.send('Emulation.setCPUThrottlingRate', { rate: 6 });
    await openChat(phone, gw.url, 'need-key');
    await phone.fill('#key-input', key);
    await phone.click('#key-use');
    await phone.waitForSelector('body[data-state="ready"]', WAIT);
    await phone.selectOption('#model', 'test-model');
    upstreams[0].options.words = Array.from({ length: 4000 }, (_, i) => (i % 40 === 39 ? ` w${i}\n\n` : ` w${i}`));
    await newAnswer(phone, () => send(phone, 'Write a lot'));
    const text = await answerText(phone);
    assert.ok(text.includes('w0 ') && text.includes('w3999'), text.slice(-200));
    assert.equal(text.match(/w\d+/g).length, 4000);
    await phone.context().close();
  });

  test('the node stops mid-answer: the page says so, keeps the partial answer, and a retry works once it is back', async () => {
    upstreams[0].options.words = Array.from({ length: 80 }, (_, i) => ` part${i}`);
    upstreams[0].options.chunkDelayMs = 500;  // (40 s in all: Esc or the kill comes long before the end)
    await page.click('#new-chat');
    await send(page, 'A long answer please');
    await page.waitForFunction(() => document.querySelector('#messages article.assistant:last-of-type .body')?.textContent.includes('part3'), null, WAIT);
    const port = upstreams[0].port;
    await upstreams[0].kill();
    await page.waitForSelector('#notice:not([hidden]) button', WAIT);
    assert.match(await page.textContent('#notice'), /cut off/);
    assert.equal(await page.getAttribute('#messages article.assistant:last-of-type', 'data-state'), 'partial');
    await page.waitForFunction(() => document.querySelector('#messages article.assistant:last-of-type .error')?.textContent.includes('Retry'), null, WAIT);
    const kept = await answerText(page);
    assert.ok(kept.includes('part3'), kept);

    upstreams[0] = await startUpstream({ name: 'node-a', port, words: ['Back', ' again'] });
    await allowChat();
    await newAnswer(page, () => page.click('#notice button'));
    assert.equal((await answerText(page)).trim(), 'Back again');
    assert.equal(await page.textContent('#messages article.assistant .version'), '2/2');
    await page.click('#messages article.assistant button[data-action="prev"]');
    assert.equal(await answerText(page), kept, 'the partial answer is the older version');
  });

  test('refusals in words: 429 says when to retry, an upstream failure says to try again', async () => {
    const limited = await browser.newPage({ allow: refusals });
    await openChat(limited, gw.url, 'need-key');
    await limited.fill('#key-input', limitedKey);
    await limited.click('#key-use');
    await limited.waitForSelector('body[data-state="ready"]', WAIT);
    await limited.selectOption('#model', 'test-model');
    await newAnswer(limited, () => send(limited, 'one'));
    await send(limited, 'two');
    await limited.waitForSelector('#notice:not([hidden])', WAIT);
    assert.match(await limited.textContent('#notice'), /Too many requests for this key right now .*Try again in \d+ s\./);
    await limited.context().close();

    upstreams[0].options.status = 503;
    upstreams[1].options.status = 503;
    await page.click('#new-chat');
    await page.selectOption('#model', 'test-model');
    await send(page, 'Anyone there?');
    await page.waitForSelector('#notice:not([hidden])', WAIT);
    assert.match(await page.textContent('#notice'), /(No node can answer right now|The node that was answering failed).*Try again/);
    upstreams[0].options.status = 0;
    upstreams[1].options.status = 0;
  });

  test('writing and code modes send the CLI prompts; code is highlighted with a copy button (screenshot)', async () => {
    await allowChat();
    upstreams[0].options.words = ['This text', ' has a typo.'];
    await page.click('#new-chat');
    await page.selectOption('#model', 'test-model');
    await page.fill('#composer-input', 'Ths text has a typo.');
    await newAnswer(page, () => page.click('#writing-modes button[data-task="polish"]'));
    const sent = lastChat(upstreams[0]).body.messages;
    assert.equal(sent[0].role, 'system');
    assert.match(sent[0].content, /^Improve the text the user gives you/);
    assert.deepEqual(sent[1], { role: 'user', content: 'Ths text has a typo.' });
    assert.equal(await page.textContent('#messages article.user .task'), 'polish');

    upstreams[0].options.words = ['2: `add` returns **a - b**, not the sum.\n\n', 'The fix:\n\n',
      '```python\ndef add(a, b):\n    return a + b\n```\n'];
    await page.fill('#code-file', 'adder.py');
    await page.fill('#composer-input', 'def add(a, b):\n    return a - b\n');
    await newAnswer(page, () => page.click('#code-modes button[data-task="review"]'));
    assert.match(lastChat(upstreams[0]).body.messages[1].content, /^Review adder\.py \(Python\)/);
    const code = await page.$('#messages article.assistant:last-of-type pre code.hljs');
    assert.ok(code, 'the code block is highlighted');
    assert.ok(await code.$('.hljs-keyword'));
    await page.click('#messages article.assistant:last-of-type button.copy-code');
    await page.waitForFunction(() => document.querySelector('#messages article.assistant:last-of-type button.copy-code').textContent === 'Copied', null, WAIT);
    assert.equal(await page.evaluate(() => navigator.clipboard.readText()), 'def add(a, b):\n    return a + b\n');

    const shot = process.env.CLAWBOT_CHAT_SCREENSHOT || path.join(dir, 'chat.png');
    await page.screenshot({ path: shot });
    assert.ok(fs.statSync(shot).size > 10000, `screenshot ${shot}`);
  });

  test('gateway --no-web: no page and no prompts route (those paths go to the upstreams, with a key)', async () => {
    const bare = await startGateway(config, { dir, args: ['--no-web'] });
    try {
      for (const route of ['/', '/chat/app.js', '/dashboard', '/v1/clawbot/prompts']) {
        assert.equal((await request(`${bare.url}${route}`)).status, 401, `${route} needs a key`);
        const forwarded = await request(`${bare.url}${route}`, { headers: bearer(key) });
        assert.equal(forwarded.json?.error?.code, 'not_found', `${route}: the upstream's 404 (${forwarded.text})`);
      }
    } finally {
      await bare.stop('SIGKILL');
    }
  });

  test('no console error but the refusals asked for, no request off 127.0.0.1', () => {
    assertCleanSession(browser.watch);
  });
});
