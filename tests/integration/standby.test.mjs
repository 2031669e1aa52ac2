// `clawbot standby sync|check` against a real sshd that this test starts on 127.0.0.1 (a free port, its own
// throwaway host and client keys; as root, in a mount namespace of its own with a tmpfs on /run for sshd's
// privilege-separation folder). The "standby" is a folder on this machine (--remote-root): rsync over SSH copies
// models, configs and keys there; the far end's sha256sum proves every file; drift (a changed model, a changed
// config, a stale sync, a file damaged there with its size and time kept) is reported and repaired.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { runClawbotCommand, tempDir, waitUntil } from './gateway_helpers.mjs';
import { requireBinary } from './server_harness.mjs';

let work, env, sshd, sshdLog = '', port, standbyRoot, configDir, models, sshArgs;
const run = (args) => runClawbotCommand(args, { env, timeoutMs: 60000 });
const there = (file) => path.join(standbyRoot, file);

function freePort() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.listen(0, '127.0.0.1', () => {
      const { port: p } = s.address();
      s.close(() => resolve(p));
    });
  });
}

before(async () => {
  for (const tool of ['rsync', 'ssh', 'ssh-keygen', 'sha256sum'])
    assert.ok(spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0, `${tool} is not installed`);
  assert.ok(fs.existsSync('/usr/sbin/sshd'), 'openssh-server is not installed (scripts/bootstrap.sh)');
  work = tempDir('clawbot-standby-');
  const home = path.join(work, 'home');
  env = { ...process.env, HOME: home, XDG_CONFIG_HOME: path.join(home, 'config'), XDG_DATA_HOME: path.join(home, 'data'),
    XDG_STATE_HOME: path.join(home, 'state'), XDG_CACHE_HOME: path.join(home, 'cache'), CLAWBOT_MODELS: path.join(work, 'models') };
  for (const name of ['CLAWBOT_CONFIG', 'CLAWBOT_GATEWAY_CONFIG']) delete env[name];
  configDir = path.join(env.XDG_CONFIG_HOME, 'clawbot');
  fs.mkdirSync(configDir, { recursive: true });
  models = env.CLAWBOT_MODELS;
  fs.mkdirSync(models);
  fs.writeFileSync(path.join(models, 'big.gguf'), crypto.randomBytes(3 << 20));
  fs.writeFileSync(path.join(models, 'small.gguf'), crypto.randomBytes(1 << 19));
  fs.writeFileSync(path.join(configDir, 'clawbot.json'), JSON.stringify({ max_tokens: 512 }, null, 1) + '\n');
  fs.writeFileSync(path.join(configDir, 'gateway.json'), JSON.stringify({
    listen: [{ host: '127.0.0.1', port: 8080 }], upstreams: [{ url: 'http://127.0.0.1:5000', name: 'primary' }],
    keys_db: 'gateway.db' }, null, 1) + '\n');
  const key = await run(['gateway', 'keys', 'create', '--name', 'alice', '--config', path.join(configDir, 'gateway.json')]);
  assert.equal(key.code, 0, key.stderr);

  // sshd with throwaway keys, for this user only, by public key only.
  const ssh = path.join(work, 'ssh');
  fs.mkdirSync(ssh, { mode: 0o700 });
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(ssh, 'host_key')]);
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', path.join(ssh, 'client_key')]);
  fs.copyFileSync(path.join(ssh, 'client_key.pub'), path.join(ssh, 'authorized_keys'));
  port = await freePort();
  fs.writeFileSync(path.join(ssh, 'known_hosts'), `[127.0.0.1]:${port} ${fs.readFileSync(path.join(ssh, 'host_key.pub'), 'utf8')}`);
  fs.writeFileSync(path.join(ssh, 'sshd_config'), [
    `Port ${port}`, 'ListenAddress 127.0.0.1', `HostKey ${path.join(ssh, 'host_key')}`,
    `AuthorizedKeysFile ${path.join(ssh, 'authorized_keys')}`, 'PasswordAuthentication no',
    'KbdInteractiveAuthentication no', 'UsePAM no', 'StrictModes no', 'PermitRootLogin prohibit-password',
    'PidFile none', `AllowUsers ${os.userInfo().username}`, 'LogLevel ERROR', 'Subsystem sftp internal-sftp', ''].join('\n'));
  const sshdArgs = ['/usr/sbin/sshd', '-D', '-e', '-f', path.join(ssh, 'sshd_config')];
  // As root sshd wants /run/sshd: a private one, in a mount namespace of its own.
  sshd = process.getuid() === 0
    ? spawn('unshare', ['-m', '--propagation', 'private', 'sh', '-c',
      'mount -t tmpfs tmpfs /run && mkdir -m 755 /run/sshd && exec "$@"', 'sshd', ...sshdArgs], { stdio: ['ignore', 'ignore', 'pipe'] })
    : spawn(sshdArgs[0], sshdArgs.slice(1), { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd.stderr.setEncoding('utf8').on('data', (c) => { sshdLog += c; });
  const up = await waitUntil(() => new Promise((resolve) => {
    const c = net.connect(port, '127.0.0.1', () => { c.destroy(); resolve(true); });
    c.on('error', () => resolve(false));
  }), 10000, 100);
  assert.ok(up, `sshd did not listen: ${sshdLog}`);
  standbyRoot = path.join(work, 'standby');
  fs.mkdirSync(standbyRoot);
  sshArgs = [`${os.userInfo().username}@127.0.0.1`, '--port', String(port), '--identity', path.join(ssh, 'client_key'),
    '--known-hosts', path.join(ssh, 'known_hosts'), '--remote-root', standbyRoot, '--remote-clawbot', path.resolve(requireBinary())];
});

after(() => {
  sshd?.kill('SIGTERM');
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

const files = () => [path.join(models, 'big.gguf'), path.join(models, 'small.gguf'), path.join(configDir, 'clawbot.json'),
  path.join(configDir, 'gateway.json'), path.join(configDir, 'gateway.secret')];

test('before any sync, check reports every file missing and the standby never synced', async () => {
  const r = await run(['standby', 'check', ...sshArgs]);
  assert.equal(r.code, 1, r.stdout + r.stderr + sshdLog);
  assert.match(r.stdout, /missing there: .*big\.gguf/);
  assert.match(r.stdout, /never synced from here/);
  assert.match(r.stdout, /drift: the standby is not in step/);
});

test('sync copies models, configs and keys; the far end\'s sums match; check says in step', async () => {
  const r = await run(['standby', 'sync', ...sshArgs]);
  assert.equal(r.code, 0, r.stdout + r.stderr + sshdLog);
  assert.match(r.stdout, /files in step \(\d+ sent\), every SHA-256 checked there/);
  for (const file of files()) assert.ok(fs.readFileSync(there(file)).equals(fs.readFileSync(file)), file);
  assert.equal(spawnSync('sqlite3', [there(path.join(configDir, 'gateway.db')), 'SELECT name FROM api_keys'], { encoding: 'utf8' }).stdout.trim(), 'alice');
  const check = await run(['standby', 'check', ...sshArgs, '--json']);
  assert.equal(check.code, 0, check.stdout + check.stderr);
  const report = JSON.parse(check.stdout);
  assert.equal(report.in_step, true);
  assert.equal(report.version_there, report.version_here);
});

test('check names a changed model and shows a config\'s difference line by line; sync brings them back in step', async () => {
  fs.appendFileSync(path.join(models, 'small.gguf'), 'more');
  fs.writeFileSync(path.join(configDir, 'clawbot.json'), JSON.stringify({ max_tokens: 1024 }, null, 1) + '\n');
  const r = await run(['standby', 'check', ...sshArgs]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /differs: .*small\.gguf/);
  assert.match(r.stdout, /^-[ ]*"max_tokens": 1024$/m);
  assert.match(r.stdout, /^\+[ ]*"max_tokens": 512$/m);
  const sync = await run(['standby', 'sync', ...sshArgs]);
  assert.equal(sync.code, 0, sync.stdout + sync.stderr);
  assert.equal((await run(['standby', 'check', ...sshArgs])).code, 0);
});

test('a file damaged at the far end with its size and time kept is found by its sum and sent again', async () => {
  const far = there(path.join(models, 'big.gguf'));
  const { atime, mtime } = fs.statSync(far);
  const fd = fs.openSync(far, 'r+');
  fs.writeSync(fd, Buffer.from('bit rot'), 0, 7, 1000);
  fs.closeSync(fd);
  fs.utimesSync(far, atime, mtime);
  const r = await run(['standby', 'sync', ...sshArgs]);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.match(r.stdout, /sent again 1 file whose SHA-256 differed there/);
  assert.ok(fs.readFileSync(far).equals(fs.readFileSync(path.join(models, 'big.gguf'))));
});

test('a sync older than --stale-after-h is drift', async () => {
  const record = path.join(env.XDG_STATE_HOME, 'clawbot', 'backup', `standby-${os.userInfo().username}_127.0.0.1.json`);
  const saved = JSON.parse(fs.readFileSync(record, 'utf8'));
  saved.time_unix -= 30 * 3600;
  fs.writeFileSync(record, JSON.stringify(saved));
  const r = await run(['standby', 'check', ...sshArgs]);
  assert.equal(r.code, 1, r.stdout + r.stderr);
  assert.match(r.stdout, /stale: last sync 30 h ago \(more than 26 h\)/);
});

test('a backup repository over SFTP on the same sshd: create, list, and restore from it', async () => {
  const user = os.userInfo().username;
  const ssh = path.join(work, 'ssh');
  const sftp = `ssh -p ${port} -i ${path.join(ssh, 'client_key')} -o UserKnownHostsFile=${path.join(ssh, 'known_hosts')} ` +
    `-o StrictHostKeyChecking=yes -o BatchMode=yes ${user}@127.0.0.1 -s sftp`;
  const repoArgs = ['--repo', `sftp:${user}@127.0.0.1:${path.join(work, 'sftp-repo')}`, '--sftp-command', sftp,
    '--password-file', path.join(work, 'sftp-password')];
  const created = await run(['backup', 'create', ...repoArgs]);
  assert.equal(created.code, 0, created.stdout + created.stderr + sshdLog);
  assert.match(created.stdout, /^snapshot [0-9a-f]{8} in sftp:/m);
  assert.ok(fs.existsSync(path.join(work, 'sftp-repo', 'config')), 'the repository is on the far side of sshd');
  const listed = await run(['backup', 'list', ...repoArgs]);
  assert.equal(listed.code, 0, listed.stderr);
  const root = path.join(work, 'from-sftp');
  const restored = await run(['restore', ...repoArgs, '--target', root, '--item', 'configs']);
  assert.equal(restored.code, 0, restored.stdout + restored.stderr);
  const file = path.join(configDir, 'gateway.json');
  assert.ok(fs.readFileSync(path.join(root, file)).equals(fs.readFileSync(file)), 'gateway.json restored byte for byte');
});
