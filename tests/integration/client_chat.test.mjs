// `clawbot chat` in a real terminal (tmux) against a real `clawbot serve` with a real model: two turns, Ctrl-C
// in the middle of an answer, Ctrl-D, resuming a session, and the server killed in the middle of an answer with
// every shown character still in the session database. Also `clawbot ask`, one-shot and piped, against serve.
//
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/client_chat.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { clawbotBin, startServer } from './server_harness.mjs';
import { runClient, writeConfig } from './client_helpers.mjs';
import { Terminal } from './terminal.mjs';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A model slow enough on two cores that an answer can be interrupted while it streams.
function slowModel() {
  const r = spawnSync(clawbotBin(), ['models', 'synth', 'smollm2-135m', '--quant', 'q8_0'], { encoding: 'utf8', timeout: 300000 });
  assert.equal(r.status, 0, `clawbot models synth smollm2-135m failed:\n${r.stderr}`);
  return r.stdout.trim().split('\n').pop();
}

function exportSession(cfg, name) {
  const r = spawnSync(clawbotBin(), ['sessions', 'export', name, '--format', 'json', '--db', cfg.db], { encoding: 'utf8', env: cfg.env });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

function setup(baseUrl, extra = {}) {
  const cfg = writeConfig({ model_endpoint: baseUrl, temperature: 0, max_tokens: 24, network_timeout: 30000,
    retry_policy: { max_retries: 1, base_delay: 100 }, ...extra });
  cfg.db = path.join(cfg.dir, 'sessions.db');
  const doc = JSON.parse(fs.readFileSync(cfg.file, 'utf8'));
  doc.session_db = cfg.db;
  fs.writeFileSync(cfg.file, JSON.stringify(doc));
  cfg.command = `export CLAWBOT_CONFIG='${cfg.file}' HOME='${cfg.dir}' XDG_DATA_HOME='${cfg.dir}/data' LANG=C.UTF-8; '${clawbotBin()}' chat`;
  return cfg;
}

test('ask: one-shot and piped, against a real server', async () => {
  const srv = await startServer();
  const cfg = writeConfig({ model_endpoint: srv.baseUrl, temperature: 0, max_tokens: 16 });
  try {
    // stories260K runs on to max_tokens: an answer cut there is exit status 1 (README), the text on stdout.
    const one = await runClient(['ask', 'Once upon a time', '--json'], { env: cfg.env });
    assert.equal(one.code, 1, one.stderr);
    const out = JSON.parse(one.stdout);
    assert.ok(out.content.length > 0);
    assert.equal(out.complete, false);
    assert.equal(out.error, null);
    assert.equal(out.usage.completion_tokens, 16);
    assert.equal(out.finish_reason, 'length');

    const piped = await runClient(['ask', 'summarise this', '--stats'], { env: cfg.env, input: 'Lily had a red ball. She lost it in the park.\n' });
    assert.equal(piped.code, 1, piped.stderr);
    assert.ok(piped.stdout.trim().length > 0);
    assert.match(piped.stderr, /ms to first token, [\d.]+ tokens\/s, 16 tokens/);
    assert.match(piped.stderr, /cut off at max_tokens \(16 tokens\)/);

    const templ = await runClient(['ask', '--template', 'polish'], { env: cfg.env, input: 'the dog run fast' });
    assert.ok([0, 1].includes(templ.code), templ.stderr);
    assert.doesNotMatch(templ.stderr, /answered/);
    const none = await runClient(['ask', '--template', 'rhyme'], { env: cfg.env, input: 'x' });
    assert.equal(none.code, 2);
    assert.match(none.stderr, /no template "rhyme"; there are: continue, polish, summarise, translate/);
    const empty = await runClient(['ask'], { env: cfg.env, input: '' });
    assert.equal(empty.code, 2);
    assert.match(empty.stderr, /nothing to ask/);
  } finally {
    await srv.stop();
    cfg.cleanup();
  }
});

test('config init writes a commented clawbot.json where the config is looked up, once; --force replaces it', async () => {
  const cfg = writeConfig({});
  const env = { ...cfg.env };
  delete env.CLAWBOT_CONFIG;  // found by the search, not named
  const cwd = fs.mkdtempSync(path.join(cfg.dir, 'cwd-'));  // no ./clawbot.json there
  const file = path.join(env.XDG_CONFIG_HOME, 'clawbot', 'clawbot.json');
  try {
    const init = await runClient(['config', 'init'], { env, cwd });
    assert.equal(init.code, 0, init.stderr);
    assert.equal(init.stdout, `wrote ${file}\n`);
    const text = fs.readFileSync(file, 'utf8');
    assert.match(text, /^\/\/ clawbot\.json/, 'commented');
    assert.match(text, /^ {2}\/\/ "api_key_env": "CLAWBOT_API_KEY",$/m, 'optional keys are shown commented out');
    assert.equal(fs.statSync(file).mode & 0o777, 0o600, 'it may come to hold an API key');

    const where = await runClient(['config', 'path'], { env, cwd });
    assert.equal(where.stdout, `${file}\n`, where.stderr);
    const shown = await runClient(['config', 'show', '--json'], { env, cwd });
    assert.equal(shown.code, 0, shown.stderr);
    assert.equal(shown.stderr, '', 'no warnings about what config init wrote');
    const values = JSON.parse(shown.stdout).values;
    assert.deepEqual(values.model_endpoint, { value: 'http://127.0.0.1:5000', source: file });
    assert.equal(values.max_tokens.value, 8192);
    assert.equal(values['retry_policy.max_retries'].value, 3);

    fs.appendFileSync(file, '// mine\n');
    const again = await runClient(['config', 'init'], { env, cwd });
    assert.equal(again.code, 1);
    assert.match(again.stderr, /clawbot\.json exists; --force replaces it/);
    assert.match(fs.readFileSync(file, 'utf8'), /\/\/ mine\n$/, 'left as it was');
    const forced = await runClient(['config', 'init', '--force'], { env, cwd });
    assert.equal(forced.code, 0, forced.stderr);
    assert.equal(fs.readFileSync(file, 'utf8'), text);
  } finally {
    cfg.cleanup();
  }
});

test('first use: the file `config init` writes works with ask, chat and doctor against a default node', async () => {
  // The node allows 512 tokens a request (the harness's --ctx); config init writes max_tokens 8192.
  const srv = await startServer();
  const cfg = writeConfig({});
  const file = path.join(cfg.dir, 'init.json');
  const db = path.join(cfg.dir, 'sessions.db');
  try {
    const init = await runClient(['config', 'init', file], { env: cfg.env });
    assert.equal(init.code, 0, init.stderr);
    assert.match(fs.readFileSync(file, 'utf8'), /"max_tokens": 8192/);
    const flags = ['--config', file, '--endpoint', srv.baseUrl];
    const ask = await runClient(['ask', 'hi', '--json', '--save', ...flags], { env: { ...cfg.env, XDG_DATA_HOME: cfg.dir } });
    const out = JSON.parse(ask.stdout);
    assert.equal(out.error, null, `ask on first use: ${JSON.stringify(out.error)}`);
    assert.ok(out.content.length > 0);
    assert.ok(out.max_tokens < 512, `asked for ${out.max_tokens} tokens of a 512-token context`);
    assert.ok(ask.code === 0 || (ask.code === 1 && out.finish_reason === 'length'), ask.stderr);
    assert.equal(out.model, 'stories260K');

    const chat = await runClient(['chat', '--db', db, '--session', 'first', ...flags], { env: cfg.env, input: 'hi\n/exit\n' });
    assert.equal(chat.code, 0, chat.stderr);
    assert.doesNotMatch(chat.stderr, /answered 400|error:/, chat.stderr);
    const session = exportSession({ db, env: cfg.env }, 'first');
    assert.equal(session.model, 'stories260K', 'the model the node named');
    assert.ok(['complete', 'length'].includes(session.messages[1].state));
    assert.ok(session.messages[1].content.length > 0);

    const saved = JSON.parse((await runClient(['sessions', 'list', '--json'], { env: { ...cfg.env, XDG_DATA_HOME: cfg.dir } })).stdout);
    assert.equal(saved.length, 1, 'ask --save stored its exchange');
    assert.equal(saved[0].model, 'stories260K');

    // doctor sends the request ask sends, and finds it accepted.
    const doctor = await runClient(['doctor', '--json', ...flags], { env: cfg.env, timeoutMs: 60000 });
    const report = JSON.parse(doctor.stdout);
    const generate = report.checks.find((c) => c.name === 'generate');
    assert.equal(generate.status, 'ok', JSON.stringify(generate));
    assert.equal(generate.data.max_tokens < 512, true);
    assert.match(generate.detail, /max_tokens 8192 \(.*\) is more than the 512-token context/);
  } finally {
    await srv.stop();
    cfg.cleanup();
  }
});

test('ask over https: trusts the node through tls_ca_file, and says what to check without it', async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-ask-tls-'));
  // One self-signed certificate for 127.0.0.1: it is its own CA.
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', path.join(dir, 'node.key'), '-out', path.join(dir, 'node.pem'), '-days', '1', '-subj', '/CN=node',
    '-addext', 'subjectAltName=IP:127.0.0.1'], { stdio: 'ignore' });
  const srv = await startServer({ extraArgs: ['--tls-cert', path.join(dir, 'node.pem'), '--tls-key', path.join(dir, 'node.key')] });
  const trusted = writeConfig({ model_endpoint: srv.baseUrl, max_tokens: 8, tls_ca_file: path.join(dir, 'node.pem') });
  const untrusted = writeConfig({ model_endpoint: srv.baseUrl, max_tokens: 8, retry_policy: { max_retries: 2 } });
  try {
    assert.match(srv.baseUrl, /^https:/);
    const ok = await runClient(['ask', 'hello', '--json'], { env: trusted.env });
    assert.equal(ok.code, 1, 'cut at max_tokens 8');
    assert.equal(JSON.parse(ok.stdout).error, null, ok.stderr);
    assert.equal(JSON.parse(ok.stdout).usage.completion_tokens, 8);
    const refused = await runClient(['ask', 'hello'], { env: untrusted.env });
    assert.equal(refused.code, 1);
    assert.match(refused.stderr, /certificate/i);
    assert.match(refused.stderr, /tls_ca_file/);
    assert.doesNotMatch(refused.stderr, /retry/, 'a certificate problem is not retried');
  } finally {
    await srv.stop();
    trusted.cleanup();
    untrusted.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('chat in a terminal: two turns, Ctrl-C mid-answer, Ctrl-D, resume', async () => {
  const srv = await startServer({ model: slowModel(), extraArgs: ['--ctx', '1024', '--threads', '1'] });
  const cfg = setup(srv.baseUrl);
  let term = new Terminal(cfg.dir, `${cfg.command} --session demo`);
  try {
    await term.waitFor(/session demo \(/);
    term.type('Once upon a time');
    await term.waitFor(/s to first token · [\d.]+ tokens\/s · 24 tokens · stopped at max_tokens/);
    term.type('And then?');
    // A random-weight model may answer with tokens that show no text; the chat says so instead of timing it.
    await term.waitFor(/s to first token|answered with no text/, { count: 2 });

    let doc = exportSession(cfg, 'demo');
    // An answer stopped at max_tokens (24) is whole but cut: stored as "length".
    assert.deepEqual(doc.messages.map((m) => `${m.role}:${m.state === 'length' ? 'complete' : m.state}`),
      ['user:complete', 'assistant:complete', 'user:complete', 'assistant:complete']);
    assert.equal(doc.messages[1].state, doc.messages[1].tokens === 24 ? 'length' : 'complete');
    assert.equal(doc.messages[0].content, 'Once upon a time');
    assert.ok(doc.messages[1].content.length > 0);

    // A long answer, stopped with Ctrl-C once some of it is on the screen.
    term.type('/set max_tokens 800');
    await term.waitFor(/max_tokens = 800/);
    const before = term.raw().length;
    term.type('Tell me a very long story');
    const deadline = Date.now() + 30000;
    while (term.raw().length < before + 80 && Date.now() < deadline) await sleep(50);
    term.key('C-c');
    await term.waitFor(/\[stopped; the partial answer is kept\]/);
    // Still running: one more turn works.
    term.type('/set max_tokens 8');
    term.type('Short one');
    await term.waitFor(/s to first token · [\d.]+ tokens\/s · 8 tokens|answered with no text: 8 tokens/);
    doc = exportSession(cfg, 'demo');
    const stopped = doc.messages[5];
    assert.equal(stopped.role, 'assistant');
    assert.equal(stopped.state, 'interrupted');
    assert.ok(stopped.content.length > 0 && stopped.content.length < 4000, 'some, not all, of the answer');
    assert.equal(doc.messages.length, 8);

    // Ctrl-C at the prompt only clears the line; Ctrl-D leaves. Keys go only once the prompt is back (the
    // line editor owns the terminal then): typed earlier, the terminal itself would take them.
    await term.waitFor(/8 tokens[^\n]*\n> *\n/);
    term.key('C-c');
    await sleep(500);
    term.key('C-d');
    await term.waitFor(/\[exit 0\]/);
    term.close();

    // Resume: the conversation goes on where it was.
    term = new Terminal(cfg.dir, `${cfg.command} --session demo`);
    await term.waitFor(/resumed session demo \(8 messages/);
    term.type('/retry');
    await term.waitFor(/s to first token|answered with no text/);
    term.type('/exit');
    await term.waitFor(/\[exit 0\]/);
    doc = exportSession(cfg, 'demo');
    assert.equal(doc.messages.length, 8, '/retry replaced the last answer');
    assert.ok(['complete', 'length'].includes(doc.messages[7].state), doc.messages[7].state);
  } finally {
    term.close();
    await srv.stop();
    cfg.cleanup();
  }
});

test('chat: the server killed mid-answer: the database holds every character that was shown', async () => {
  const srv = await startServer({ model: slowModel(), extraArgs: ['--ctx', '1024', '--threads', '1'] });
  const cfg = setup(srv.baseUrl, { max_tokens: 800 });
  const term = new Terminal(cfg.dir, `${cfg.command} --session cut`);
  try {
    await term.waitFor(/session cut \(/);
    const before = term.raw().length;
    term.type('Tell me a very long story');
    const deadline = Date.now() + 30000;
    while (term.raw().length < before + 120 && Date.now() < deadline) await sleep(50);
    srv.proc.kill('SIGKILL');
    await term.waitFor(/\[answer cut off\]/);
    const doc = exportSession(cfg, 'cut');
    assert.deepEqual(doc.messages.map((m) => `${m.role}:${m.state}`), ['user:complete', 'assistant:partial']);
    const partial = doc.messages[1];
    assert.ok(partial.content.length > 0);
    assert.ok(partial.error.length > 0, 'the reason is kept');
    // What the terminal received, byte for byte (the tty turns \n into \r\n).
    const shown = term.raw().slice(before).replaceAll('\r\n', '\n');
    assert.ok(shown.includes(partial.content), 'the stored partial answer is exactly what was shown');
  } finally {
    term.close();
    await srv.stop();
    cfg.cleanup();
  }
});
