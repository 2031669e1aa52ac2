// `clawbot backup` and `clawbot restore` against a real restic repository in a temp folder: a snapshot of a
// session database taken while a writer commits rows (every committed row is in it, and it opens cleanly), a
// second backup that stores only the change, a restore to a fresh root that gives the same bytes and the same
// databases with a verified audit chain, a restore refused over a running gateway's files, a damaged
// repository found by verify, a wrong password named as such, and prune keeping the retention set.
//
// Needs restic and sqlite3 (scripts/bootstrap.sh installs both). No model, no engine.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { bearer, chat, createKey, request, runClawbotCommand, startGateway, startUpstream, tempDir, waitUntil }
  from './gateway_helpers.mjs';

let work, env, configDir, models, sessionsDb, gateway, upstream, repo, aliceKey, hook;
const notices = [];

const run = (args, options = {}) => runClawbotCommand(args, { env, timeoutMs: 60000, ...options });
const sql = (db, query) => {
  const r = spawnSync('sqlite3', ['-bail', db, query], { encoding: 'utf8' });
  assert.equal(r.status, 0, `sqlite3 ${query}: ${r.stderr}`);
  return r.stdout;
};
const dump = (db) => sql(db, '.dump');
const under = (root, file) => path.join(root, file);
const sha = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');

before(async () => {
  for (const tool of ['restic', 'sqlite3'])
    assert.equal(spawnSync('sh', ['-c', `command -v ${tool}`]).status, 0, `${tool} is not installed (scripts/bootstrap.sh)`);
  work = tempDir('clawbot-backup-');
  const home = path.join(work, 'home');
  env = { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, 'config'), XDG_DATA_HOME: path.join(home, 'data'),
    XDG_STATE_HOME: path.join(home, 'state'), XDG_CACHE_HOME: path.join(home, 'cache'), TZ: 'UTC',
    CLAWBOT_MODELS: path.join(work, 'models'), CLAWBOT_BACKUP_REPO: path.join(work, 'repo') };
  for (const name of ['CLAWBOT_CONFIG', 'CLAWBOT_GATEWAY_CONFIG', 'CLAWBOT_BACKUP_PASSWORD_FILE']) delete env[name];
  repo = env.CLAWBOT_BACKUP_REPO;
  configDir = path.join(env.XDG_CONFIG_HOME, 'clawbot');
  fs.mkdirSync(configDir, { recursive: true });
  models = env.CLAWBOT_MODELS;
  fs.mkdirSync(models);
  fs.writeFileSync(path.join(models, 'big.gguf'), crypto.randomBytes(4 << 20));
  fs.writeFileSync(path.join(models, 'small.gguf'), crypto.randomBytes(1 << 20));
  sessionsDb = path.join(env.XDG_DATA_HOME, 'chats', 'sessions.db');
  fs.writeFileSync(path.join(configDir, 'clawbot.json'), JSON.stringify({ session_db: sessionsDb }));
  // The session store's own schema, then a session for the writer's messages.
  const list = await run(['sessions', 'list']);
  assert.equal(list.code, 0, list.stderr);
  sql(sessionsDb, "INSERT INTO sessions(name, created_ms, updated_ms) VALUES ('load', 0, 0)");

  // A gateway with keys and an audit log, left running: its files are open while backups run.
  // An alert receiver: the gateway's webhooks are also where a failed backup is reported.
  hook = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { notices.push(JSON.parse(body)); res.end('ok'); });
  });
  await new Promise((resolve) => hook.listen(0, '127.0.0.1', resolve));
  upstream = await startUpstream();
  gateway = await startGateway({ listen: [{ host: '127.0.0.1', port: 0 }], upstreams: [{ url: upstream.url, name: 'up' }],
    keys_db: 'gateway.db', audit_log: 'audit.log',
    alerts: { webhooks: [{ url: `http://127.0.0.1:${hook.address().port}/hook`, retries: 0 }] } }, { dir: configDir, env });
  const { key } = await createKey(gateway.config, 'alice');
  aliceKey = key;
  await createKey(gateway.config, 'bob');
  await waitUntil(async () => (await request(`${gateway.url}/health`)).status === 200, 5000);
  for (let i = 0; i < 3; i++) {
    const r = await request(`${gateway.url}/v1/chat/completions`, { headers: bearer(key), body: chat(`hello ${i}`) });
    assert.equal(r.status, 200, r.text);
  }
});

after(async () => {
  await gateway?.stop();
  await upstream?.close();
  hook?.close();
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

// A writer commits one message per statement while the backup runs; automatic checkpoints are off, so the
// committed rows live in the -wal file only: a copy of the database file alone would miss them.
function startWriter() {
  const proc = spawn('sqlite3', [sessionsDb], { stdio: ['pipe', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
  proc.stdin.write('PRAGMA busy_timeout = 5000;\nPRAGMA wal_autocheckpoint = 0;\n');
  let n = Number(sql(sessionsDb, 'SELECT count(*) FROM messages').trim());
  const timer = setInterval(() => {
    n += 1;
    proc.stdin.write(`INSERT INTO messages(session_id, role, content, state, created_ms) VALUES (1, 'user', 'row ${n}', 'complete', ${n});\n`);
  }, 2);
  return {
    async stop() {
      clearInterval(timer);
      proc.stdin.end();
      await new Promise((resolve) => proc.once('close', resolve));
      assert.equal(stderr, '', 'the writer never failed');
    },
  };
}

const committed = () => Number(sql(sessionsDb, 'SELECT count(*) FROM messages').trim());

let first;
test('a backup taken while a writer commits holds every row committed before it began, and opens cleanly', async () => {
  const writer = startWriter();
  await waitUntil(() => committed() >= 50, 10000);
  const before = committed();
  const r = await run(['backup', 'create', '--json']);
  const after = committed();
  await writer.stop();
  assert.equal(r.code, 0, r.stderr);
  first = JSON.parse(r.stdout);
  assert.match(first.snapshot_id, /^[0-9a-f]{8,64}$/);  // restic 0.14 gives the short id
  assert.ok(first.data_added > 5 << 20, `the first backup stores the models (${first.data_added} bytes added)`);
  const items = new Set(first.files.map((f) => f.item));
  assert.deepEqual([...items].sort(), ['audit', 'configs', 'keys', 'models', 'sessions']);
  assert.ok(fs.statSync(path.join(configDir, 'backup-password')).mode % 0o1000 === 0o600, 'the password file is private');

  const root = path.join(work, 'restore-sessions');
  const restored = await run(['restore', '--item', 'sessions', '--target', root]);
  assert.equal(restored.code, 0, restored.stderr);
  const copy = under(root, sessionsDb);
  assert.equal(sql(copy, 'PRAGMA integrity_check').trim(), 'ok');
  const rows = sql(copy, "SELECT id || ' ' || content FROM messages ORDER BY id").trim().split('\n');
  assert.ok(rows.length >= before, `every row committed before the backup began is in it (${rows.length} of ${before})`);
  assert.ok(rows.length <= after);
  rows.forEach((row, i) => assert.equal(row, `${i + 1} row ${i + 1}`, 'no row missing in the middle'));
  console.log(`rows committed: ${before} before the backup, ${after} after it; in the snapshot: ${rows.length}`);
});

test('a second backup after a small change stores only the change', async () => {
  sql(sessionsDb, "INSERT INTO messages(session_id, role, content, state, created_ms) VALUES (1, 'user', 'one more', 'complete', 1)");
  const r = await run(['backup', 'create', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const second = JSON.parse(r.stdout);
  const modelBytes = first.files.filter((f) => f.item === 'models').reduce((s, f) => s + f.size, 0);
  assert.ok(second.data_added > 0);
  // restic chunks files of less than 512 KiB whole: the session database is stored again, nothing else is.
  const sessionsBytes = fs.statSync(sessionsDb).size;
  assert.ok(second.data_added < sessionsBytes + 128 * 1024 && second.data_added < first.data_added / 10,
    `only the change is stored: ${second.data_added} bytes added (the first added ${first.data_added}, models ` +
    `${modelBytes}, the session database ${sessionsBytes})`);
  assert.ok(second.files_unmodified >= 2, 'the model files are not read again');
  console.log(`data added: first backup ${first.data_added} bytes, second ${second.data_added} bytes`);
});

test('restore to a fresh root: the same configs, models and audit log bytes, the same databases, chain intact', async () => {
  const r0 = await run(['backup', 'create']);
  assert.equal(r0.code, 0, r0.stderr);
  assert.match(r0.stdout, /^snapshot [0-9a-f]{8} in .*: \d+ files \(/);
  const root = path.join(work, 'fresh');
  const r = await run(['restore', '--target', root]);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /audit log: \d+ records, chain intact/);
  assert.match(r.stdout, /restored models: 2 files, every SHA-256 matches/);
  for (const file of [path.join(configDir, 'clawbot.json'), path.join(configDir, 'gateway.json'), path.join(configDir, 'audit.log'),
    path.join(configDir, 'gateway.secret'), path.join(models, 'big.gguf'), path.join(models, 'small.gguf')])
    assert.ok(fs.readFileSync(under(root, file)).equals(fs.readFileSync(file)), `${file} restored byte for byte`);
  assert.equal(dump(under(root, sessionsDb)), dump(sessionsDb));
  assert.equal(dump(under(root, path.join(configDir, 'gateway.db'))), dump(path.join(configDir, 'gateway.db')));
  // The restored gateway works: its keys verify under the restored secret.
  const keys = await run(['gateway', 'keys', 'list', '--config', under(root, path.join(configDir, 'gateway.json'))]);
  assert.equal(keys.code, 0, keys.stderr);
  assert.match(keys.stdout, /alice/);
  assert.match(keys.stdout, /bob/);
});

test('a knowledge base is backed up, and one restored by name answers searches', async () => {
  const docs = path.join(work, 'kb-docs');
  fs.mkdirSync(docs, { recursive: true });
  fs.writeFileSync(path.join(docs, 'returns.md'), '# Returns\n\nA parcel may be returned within thirty days for a refund.\n');
  for (const name of ['shop', 'staff']) {
    const made = await run(['kb', 'create', name]);
    assert.equal(made.code, 0, made.stderr);
    const add = await run(['kb', 'add', name, docs, '--no-embed', '--approximate-tokens']);
    assert.equal(add.code, 0, add.stderr);
  }
  const shop = path.join(env.XDG_DATA_HOME, 'clawbot', 'kb', 'shop.kb');
  assert.ok(fs.existsSync(shop), 'the knowledge base file');
  const created = await run(['backup', 'create']);
  assert.equal(created.code, 0, created.stderr);
  const root = path.join(work, 'kb-restore');
  const r = await run(['restore', '--target', root, '--item', 'kb:shop']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /restored kb: .*shop\.kb \(integrity check: ok\)/);
  assert.ok(!fs.existsSync(under(root, path.join(env.XDG_DATA_HOME, 'clawbot', 'kb', 'staff.kb'))), 'only the one asked for');
  assert.equal(dump(under(root, shop)), dump(shop));
  const found = await run(['kb', 'search', under(root, shop), 'refund parcel', '--json']);
  assert.equal(found.code, 0, found.stderr);
  assert.match(found.stdout, /returns\.md/);
  const unknown = await run(['restore', '--target', root, '--item', 'kbs']);
  assert.notEqual(unknown.code, 0);
  assert.match(unknown.stderr, /unknown item 'kbs'.*kb:NAME/);
});

test('a failed backup alerts through the webhooks; /metrics shows the last success and the failure', async () => {
  const notAFolder = path.join(work, 'not-a-folder');
  fs.writeFileSync(notAFolder, '');
  const r = await run(['backup', 'create', '--repo', path.join(notAFolder, 'repo')]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^clawbot backup create: /);
  const failed = notices.flatMap((n) => n.alerts ?? []).filter((a) => a.labels?.alertname === 'backup_failed');
  assert.equal(failed.length, 1, JSON.stringify(notices));
  assert.equal(failed[0].status, 'firing');
  assert.equal(failed[0].labels.severity, 'critical');
  assert.match(failed[0].annotations.summary, /^clawbot backup failed: /);
  const metrics = await request(`${gateway.url}/metrics`, { headers: bearer(aliceKey) });
  assert.equal(metrics.status, 200, metrics.text);
  const value = (name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(metrics.text)?.[1]);
  const now = Date.now() / 1000;
  assert.ok(now - value('clawbot_backup_last_success_timestamp_seconds') < 600, metrics.text);
  assert.ok(now - value('clawbot_backup_last_failure_timestamp_seconds') < 600, metrics.text);
  assert.equal(value('clawbot_backup_last_ok'), 0);
  assert.match(metrics.text, /^# TYPE clawbot_backup_last_success_timestamp_seconds gauge$/m);
});

test('restore refuses to overwrite a running gateway\'s files, and restores them once it is stopped', async () => {
  const before = sha(path.join(configDir, 'gateway.db'));
  const refused = await run(['restore', '--item', 'keys', '--item', 'audit']);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /refusing to restore over files that running processes hold open/);
  assert.match(refused.stderr, new RegExp(`gateway\\.db: pid ${gateway.proc.pid} \\(.*gateway`));
  assert.equal(sha(path.join(configDir, 'gateway.db')), before, 'nothing was touched');
  await gateway.stop();
  const r = await run(['restore', '--item', 'keys', '--item', 'audit']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /restored keys: .*gateway\.db \(integrity check: ok\)/);
  assert.match(r.stdout, /audit log: \d+ records, chain intact/);
  const verify = await run(['gateway', 'audit', 'verify', '--config', path.join(configDir, 'gateway.json')]);
  assert.equal(verify.code, 0, verify.stdout + verify.stderr);
});

test('a wrong password is named as such', async () => {
  const wrong = path.join(work, 'wrong-password');
  fs.writeFileSync(wrong, 'not the password\n', { mode: 0o600 });
  for (const args of [['backup', 'list'], ['backup', 'create'], ['restore']]) {
    const r = await run([...args, '--password-file', wrong]);
    assert.equal(r.code, 3, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /wrong password for the backup repository .*repo: the password file .*wrong-password does not open it/);
  }
});

test('verify reads the repository back and finds a damaged pack', async () => {
  const ok = await run(['backup', 'verify']);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /: intact/);
  const damaged = path.join(work, 'repo-damaged');
  fs.cpSync(repo, damaged, { recursive: true });
  const packs = fs.readdirSync(path.join(damaged, 'data'), { recursive: true })
    .map((p) => path.join(damaged, 'data', p)).filter((p) => fs.statSync(p).isFile())
    .sort((a, b) => fs.statSync(b).size - fs.statSync(a).size);
  const pack = packs[0];
  fs.chmodSync(pack, 0o600);
  const fd = fs.openSync(pack, 'r+');
  fs.writeSync(fd, Buffer.from('clawbot was here'), 0, 16, Math.floor(fs.statSync(pack).size / 2));
  fs.closeSync(fd);
  const bad = await run(['backup', 'verify', '--repo', damaged]);
  assert.equal(bad.code, 1, bad.stdout + bad.stderr);
  assert.match(bad.stdout, /DAMAGED/);
});

test('prune keeps the last of 7 days, 4 weeks and 6 months', async () => {
  const pruneRepo = path.join(work, 'repo-prune');
  const days = Array.from({ length: 20 }, (_, i) => `2026-01-${String(i + 1).padStart(2, '0')}`);
  for (const day of days) {
    const r = await run(['backup', 'create', '--repo', pruneRepo, '--time', `${day} 10:00:00`]);
    assert.equal(r.code, 0, r.stderr);
  }
  const r = await run(['backup', 'prune', '--repo', pruneRepo, '--json']);
  assert.equal(r.code, 0, r.stderr);
  const result = JSON.parse(r.stdout);
  const kept = result.kept.map((s) => s.time.slice(0, 10)).sort();
  // Daily: 14..20; weekly (ISO weeks): 20, 18, 11, 4; monthly: 20. (restic 0.17 and later also keep the oldest
  // snapshot when there are fewer months than --keep-monthly asks for: 01.)
  assert.deepEqual(kept.filter((d) => d !== '2026-01-01'), ['2026-01-04', '2026-01-11', '2026-01-14', '2026-01-15',
    '2026-01-16', '2026-01-17', '2026-01-18', '2026-01-19', '2026-01-20']);
  assert.equal(result.removed.length, 20 - kept.length);
  const list = await run(['backup', 'list', '--repo', pruneRepo, '--json']);
  assert.deepEqual(JSON.parse(list.stdout).map((s) => s.time.slice(0, 10)).sort(), kept);
});
