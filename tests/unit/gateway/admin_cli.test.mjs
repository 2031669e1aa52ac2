// `clawbot gateway keys create|list|revoke` and `audit verify|tail|export` on the command line of the real
// binary; the audit logs are written by a real gateway in front of a minimal upstream (gateway_helpers.mjs).
// Run: CLAWBOT_BIN=build-frontend/clawbot node --test tests/unit/gateway/admin_cli.test.mjs
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { bearer, chat, createKey, request, startGateway, startUpstream, writeGatewayConfig }
  from '../../integration/gateway_helpers.mjs';
import { requireBinary } from '../../integration/server_harness.mjs';

let BIN;
let dir;
let upstream;

function run(args, { cwd } = {}) {
  return new Promise((resolve) => {
    execFile(BIN, args, { cwd: cwd ?? dir, timeout: 30000 }, (error, stdout, stderr) => {
      resolve({ code: error ? (error.code ?? 1) : 0, stdout, stderr });
    });
  });
}

/**
 * A gateway in `dir` whose keys database is `db` and audit log `log` (config file `name`), with a key;
 * `send(n)` makes n chat requests with it (model "tiny", upstream "node-a"). Returns { gw, key, id, send }.
 */
async function auditingGateway(name, db, log) {
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [{ url: upstream.url, name: 'node-a' }],
    keys_db: db,
    audit_log: log,
  };
  const { key, id } = await createKey(writeGatewayConfig(dir, config, name), `writer-${name}`);
  const gw = await startGateway(config, { dir, name });
  const send = async (n) => {
    for (let i = 0; i < n; ++i) {
      const r = await request(`${gw.url}/v1/chat/completions`, { body: chat('hi', { model: 'tiny' }), headers: bearer(key) });
      assert.equal(r.status, 200, r.text);
    }
  };
  return { gw, key, id, send };
}

before(async () => {
  BIN = requireBinary();
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-gw-admin-'));
  upstream = await startUpstream({ name: 'node-a', model: 'tiny' });
});
after(async () => {
  await upstream?.kill();
  fs.rmSync(dir, { recursive: true, force: true });
});

test('keys create prints only the key; list shows it without the secret; revoke', async () => {
  const created = await run(['gateway', 'keys', 'create', '--name', 'anna', '--rpm', '60', '--db', 'k.db']);
  assert.equal(created.code, 0, created.stderr);
  assert.match(created.stdout, /^cbk_[0-9a-f]{12}_[0-9A-Za-z]{32}\n$/);
  const key = created.stdout.trim();
  const id = key.slice(4, 16);
  const secret = key.slice(17);
  assert.match(created.stderr, new RegExp(`created key ${id} "anna"`));
  assert.equal(created.stderr.includes(secret), false);

  const table = await run(['gateway', 'keys', 'list', '--db', 'k.db']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout, new RegExp(`${id}\\s+anna\\s+\\S+Z\\s+60\\s+default\\s+default\\s+no\\s+active`));
  assert.equal(table.stdout.includes(secret), false);

  const listed = await run(['gateway', 'keys', 'list', '--json', '--db', 'k.db']);
  const rows = JSON.parse(listed.stdout);
  assert.equal(rows.length, 1);
  assert.deepEqual(Object.keys(rows[0]).sort(),
                   ['admin', 'audio_seconds_per_hour', 'created_at', 'id', 'intact', 'name', 'requests_per_minute',
                    'revoked_at', 'tokens_per_minute']);
  assert.equal(rows[0].intact, true);
  // The secret the rows are MACed under: beside the database, readable by its owner only.
  assert.equal(fs.statSync(path.join(dir, 'k.secret')).mode & 0o777, 0o600);
  assert.equal(rows[0].id, id);
  assert.equal(rows[0].revoked_at, null);
  assert.equal(listed.stdout.includes(secret), false);

  const taken = await run(['gateway', 'keys', 'create', '--name', 'anna', '--db', 'k.db']);
  assert.equal(taken.code, 1);
  assert.equal(taken.stdout, '');
  assert.match(taken.stderr, /already named 'anna'/);

  const revoked = await run(['gateway', 'keys', 'revoke', id, '--db', 'k.db']);
  assert.equal(revoked.code, 0, revoked.stderr);
  assert.match(revoked.stdout, new RegExp(`revoked key ${id} "anna"`));
  const after = JSON.parse((await run(['gateway', 'keys', 'list', '--json', '--db', 'k.db'])).stdout);
  assert.match(after[0].revoked_at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  const again = await run(['gateway', 'keys', 'revoke', 'anna', '--db', 'k.db']);
  assert.equal(again.code, 0);
  assert.match(again.stderr, /already revoked/);
  const unknown = await run(['gateway', 'keys', 'revoke', 'nobody', '--db', 'k.db']);
  assert.equal(unknown.code, 1);
  assert.match(unknown.stderr, /no key with the id or active name "nobody"/);

  // The name as an argument; an admin key with an audio limit.
  const editor = await run(['gateway', 'keys', 'create', 'editor', '--admin', '--audio-seconds-per-hour', '90', '--db', 'k.db']);
  assert.equal(editor.code, 0, editor.stderr);
  assert.match(editor.stderr, /audio s\/hour: 90, admin\)/);
  const editorId = editor.stdout.trim().slice(4, 16);
  const withEditor = await run(['gateway', 'keys', 'list', '--db', 'k.db']);
  assert.match(withEditor.stdout, /ID\s+NAME\s+CREATED\s+REQ\/MIN\s+TOKENS\/MIN\s+AUDIO S\/HOUR\s+ADMIN\s+STATUS/);
  assert.match(withEditor.stdout, new RegExp(`${editorId}\\s+editor\\s+\\S+Z\\s+default\\s+default\\s+90\\s+yes\\s+active`));
  const editorRow = JSON.parse((await run(['gateway', 'keys', 'list', '--json', '--db', 'k.db'])).stdout).find((r) => r.id === editorId);
  assert.equal(editorRow.admin, true);
  assert.equal(editorRow.audio_seconds_per_hour, 90);
});

test('--config finds keys_db beside gateway.json; a missing config is explained', async () => {
  const sub = path.join(dir, 'conf');
  fs.mkdirSync(sub);
  fs.writeFileSync(path.join(sub, 'gateway.json'),
                   JSON.stringify({ upstreams: [{ url: 'http://127.0.0.1:9' }], keys_db: 'keys.db' }));
  const created = await run(['gateway', 'keys', 'create', '--name', 'ci', '--config', path.join(sub, 'gateway.json')]);
  assert.equal(created.code, 0, created.stderr);
  assert.ok(fs.existsSync(path.join(sub, 'keys.db')));
  assert.equal((fs.statSync(path.join(sub, 'keys.db')).mode & 0o777), 0o600);
  // The gateway command's own --config counts too, and ./gateway.json is the default.
  const viaParent = await run(['gateway', '--config', path.join(sub, 'gateway.json'), 'keys', 'list']);
  assert.match(viaParent.stdout, /\bci\b/);
  const byDefault = await run(['gateway', 'keys', 'list'], { cwd: sub });
  assert.match(byDefault.stdout, /\bci\b/);
  const missing = await run(['gateway', 'keys', 'list'], { cwd: dir });
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /gateway\.json.*no such file.*--db PATH/);
});

test('audit verify, tail, export', async () => {
  const writer = await auditingGateway('audit-gw.json', 'a.db', 'audit.log');
  await writer.send(5);
  assert.equal((await writer.gw.stop('SIGTERM')).code, 0, writer.gw.stderr());
  const ok = await run(['gateway', 'audit', 'verify', '--log', 'audit.log', '--db', 'a.db']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /audit\.log: 5 records, chain intact\n$/);

  const lines = fs.readFileSync(path.join(dir, 'audit.log'), 'utf8').trimEnd().split('\n');
  lines[1] = lines[1].replace('"status":200', '"status":201');
  lines.splice(3, 1);
  fs.writeFileSync(path.join(dir, 'tampered.log'), lines.join('\n') + '\n');
  const bad = await run(['gateway', 'audit', 'verify', '--log', 'tampered.log', '--db', 'a.db']);
  assert.equal(bad.code, 1);
  assert.match(bad.stdout, /^line 2 \(seq 2\): edited: its content does not match its hash\n/);
  assert.match(bad.stdout, /record 4 deleted between line 3 and line 4/);
  assert.match(bad.stdout, /2 problems in 4 records/);

  const unreadable = await run(['gateway', 'audit', 'verify', '--log', 'nope.log', '--db', 'a.db']);
  assert.equal(unreadable.code, 2);
  assert.match(unreadable.stderr, /cannot read the audit log nope\.log/);

  const tail = await run(['gateway', 'audit', 'tail', '-n', '2', '--log', 'audit.log', '--db', 'a.db']);
  assert.equal(tail.code, 0, tail.stderr);
  const tailLines = tail.stdout.trimEnd().split('\n');
  assert.equal(tailLines.length, 2);
  assert.match(tailLines[0], new RegExp(`#4 +key ${writer.id} +127\\.0\\.0\\.1 +200 +POST /v1/chat/completions +tiny -> node-a +4/3 tokens`));
  assert.match(tailLines[1], /#5 /);
  const raw = await run(['gateway', 'audit', 'tail', '-n', '1', '--json', '--log', 'audit.log']);
  assert.equal(JSON.parse(raw.stdout).seq, 5);

  const csv = await run(['gateway', 'audit', 'export', '--format', 'csv', '--log', 'audit.log']);
  assert.equal(csv.code, 0, csv.stderr);
  const rows = csv.stdout.trimEnd().split('\r\n');
  assert.equal(rows.length, 6);
  assert.match(rows[0], /^seq,time,key_id,client,route,model,upstream,status,tokens_in,tokens_out,latency_ms/);
  assert.match(rows[5], /^5,/);
  const jsonl = await run(['gateway', 'audit', 'export', '--log', 'audit.log', '--since', '2000-01-01']);
  assert.equal(jsonl.stdout, fs.readFileSync(path.join(dir, 'audit.log'), 'utf8'));
  const none = await run(['gateway', 'audit', 'export', '--log', 'audit.log', '--since', '2999-01-01T00:00:00Z']);
  assert.equal(none.stdout, '');
  assert.match(none.stderr, /^0 records exported/);
  const badSince = await run(['gateway', 'audit', 'export', '--log', 'audit.log', '--since', 'yesterday']);
  assert.equal(badSince.code, 1);
  assert.match(badSince.stderr, /not an RFC 3339 time/);
});

test('audit tail -f prints records as they are appended', async () => {
  const writer = await auditingGateway('follow-gw.json', 'f.db', 'follow.log');
  let child;
  try {
    await writer.send(1);
    // The gateway writes its records within moments of the answers (and syncs them within a second).
    const deadline = Date.now() + 5000;
    while (!fs.existsSync(path.join(dir, 'follow.log')) || fs.statSync(path.join(dir, 'follow.log')).size === 0) {
      assert.ok(Date.now() < deadline, 'the gateway wrote no audit record within 5 s');
      await new Promise((r) => setTimeout(r, 25));
    }
    child = spawn(BIN, ['gateway', 'audit', 'tail', '-f', '--log', 'follow.log'], { cwd: dir });
    let out = '';
    child.stdout.on('data', (chunk) => { out += chunk; });
    const waitFor = async (pattern) => {
      const until = Date.now() + 10000;
      while (!pattern.test(out) && Date.now() < until) await new Promise((r) => setTimeout(r, 50));
      assert.match(out, pattern);
    };
    await waitFor(/#1 /);
    await writer.send(2);
    await waitFor(/#3 /);
    assert.match(out, /#2 /);
  } finally {
    child?.kill();
    await writer.gw.stop();
  }
});
