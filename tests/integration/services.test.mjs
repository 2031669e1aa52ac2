// `clawbot install-service` and `clawbot backup schedule`: the systemd units of deploy/systemd written with this
// binary's path, checked by `systemd-analyze verify` (no warning allowed: it exits 0 even for an unknown key)
// and scored by `systemd-analyze security --offline=yes` (target: exposure <= 3.0 for serve and gateway).
// No running systemd is needed: both read the files. And sd_notify: the gateway says READY=1 once it listens
// and STOPPING=1 on SIGTERM, to a notify socket this test binds (python3: Node has no Unix datagram sockets).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

import { runClawbotCommand, startGateway, tempDir, waitUntil } from './gateway_helpers.mjs';
import { requireBinary } from './server_harness.mjs';

let work;
before(() => {
  assert.equal(spawnSync('systemd-analyze', ['--version']).status, 0, 'systemd-analyze is not installed');
  work = tempDir('clawbot-services-');
});
after(() => fs.rmSync(work, { recursive: true, force: true }));

test('install-service writes units that systemd-analyze verifies, with exposure <= 3.0', async () => {
  const dir = path.join(work, 'units');
  const bin = path.resolve(requireBinary());
  const r = await runClawbotCommand(['install-service', '--unit-dir', dir, '--bin', bin, '--verify']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /^systemd-analyze verify: ok$/m);
  const names = fs.readdirSync(dir).sort();
  assert.deepEqual(names, ['clawbot-backup.service', 'clawbot-backup.timer', 'clawbot-gateway.service',
    'clawbot-serve.service']);
  for (const name of names) {
    const text = fs.readFileSync(path.join(dir, name), 'utf8');
    assert.doesNotMatch(text, /@[A-Z]+@/, `${name}: every placeholder filled`);
    if (name.endsWith('.service')) {
      assert.match(text, new RegExp(`^ExecStart=${bin.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} `, 'm'));
      for (const line of ['NoNewPrivileges=yes', 'ProtectSystem=strict', 'PrivateTmp=yes', 'User=clawbot'])
        assert.ok(text.includes(`\n${line}\n`), `${name}: ${line}`);
    }
  }
  const serve = fs.readFileSync(path.join(dir, 'clawbot-serve.service'), 'utf8');
  assert.match(serve, /^Type=notify$/m);
  assert.match(serve, /^Restart=on-failure$/m);
  assert.match(serve, /^LimitNOFILE=\d+$/m);
  for (const unit of ['serve', 'gateway', 'backup']) {
    const m = new RegExp(`^clawbot-${unit}\\.service: exposure ([0-9.]+) `, 'm').exec(r.stdout);
    assert.ok(m, r.stdout);
    console.log(`systemd-analyze security clawbot-${unit}.service: exposure ${m[1]}`);
    if (unit !== 'backup') assert.ok(Number(m[1]) <= 3.0, `clawbot-${unit}: exposure ${m[1]} > 3.0`);
  }
});

test('a broken unit fails --verify (an unknown key is not waved through)', async () => {
  // The check itself, against a unit with a typo: systemd-analyze exits 0 but says so.
  const dir = path.join(work, 'broken');
  fs.mkdirSync(dir);
  const file = path.join(dir, 'x.service');
  fs.writeFileSync(file, '[Service]\nTypo=notify\nExecStart=/bin/true\n');
  const r = spawnSync('systemd-analyze', ['verify', '--man=no', file], { encoding: 'utf8' });
  assert.match(r.stdout + r.stderr, /Unknown key/);
});

test('backup schedule --daily writes the timer at that time; a bad time is refused', async () => {
  const dir = path.join(work, 'schedule');
  const r = await runClawbotCommand(['backup', 'schedule', '--daily', '02:15', '--unit-dir', dir, '--verify']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.deepEqual(fs.readdirSync(dir).sort(), ['clawbot-backup.service', 'clawbot-backup.timer']);
  assert.match(fs.readFileSync(path.join(dir, 'clawbot-backup.timer'), 'utf8'), /^OnCalendar=\*-\*-\* 02:15:00$/m);
  assert.match(r.stdout, /^systemd-analyze verify: ok$/m);
  const bad = await runClawbotCommand(['backup', 'schedule', '--daily', '24:00', '--unit-dir', dir]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--daily 24:00: expected HH:MM/);
});

test('clawbot drill runs the drill script with node, and names a missing script', async () => {
  // The drill itself runs in make test's network group; here the command's own path: the script it is given
  // runs on Node's test runner with CLAWBOT_BIN pointing at this binary, its exit status passed through.
  const script = path.join(work, 'tiny-drill.test.mjs');
  fs.writeFileSync(script, "import { test } from 'node:test';\nimport fs from 'node:fs';\n" +
    "test('sees the binary', () => { if (!fs.existsSync(process.env.CLAWBOT_BIN)) throw new Error('no CLAWBOT_BIN'); });\n");
  const ok = await runClawbotCommand(['drill', '--script', script]);
  assert.equal(ok.code, 0, ok.stdout + ok.stderr);
  assert.match(ok.stdout, /sees the binary/);
  fs.writeFileSync(script, "import { test } from 'node:test';\ntest('fails', () => { throw new Error('x'); });\n");
  assert.equal((await runClawbotCommand(['drill', '--script', script])).code, 1);
  const missing = await runClawbotCommand(['drill', '--script', path.join(work, 'none.mjs')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /none\.mjs not found: the drill runs from the source tree/);
});

test('the gateway tells systemd READY=1 once it listens and STOPPING=1 on SIGTERM (sd_notify)', async () => {
  const socket = path.join(work, 'notify.sock');
  const receiver = spawn('python3', ['-u', '-c', [
    'import socket, sys',
    's = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
    's.bind(sys.argv[1])',
    'print("bound", flush=True)',
    'while True: print(s.recv(4096).decode().replace("\\n", " "), flush=True)'].join('\n'), socket],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  let heard = '';
  let gateway;
  receiver.stdout.setEncoding('utf8').on('data', (c) => { heard += c; });
  try {
    assert.ok(await waitUntil(() => heard.includes('bound'), 5000), 'python3 did not bind the notify socket');
    const dir = path.join(work, 'notify');
    fs.mkdirSync(dir);
    gateway = await startGateway({ listen: [{ host: '127.0.0.1', port: 0 }],
      upstreams: [{ url: 'http://127.0.0.1:9', name: 'none' }], auth: 'none' },
    { dir, env: { ...process.env, NOTIFY_SOCKET: socket } });
    assert.ok(await waitUntil(() => heard.includes('READY=1'), 5000), `no READY=1: ${JSON.stringify(heard)}`);
    assert.ok(!heard.includes('STOPPING=1'));
    await gateway.stop('SIGTERM');
    assert.ok(await waitUntil(() => heard.includes('STOPPING=1'), 5000), `no STOPPING=1: ${JSON.stringify(heard)}`);
  } finally {
    await gateway?.stop('SIGKILL');
    receiver.kill();
  }
});
