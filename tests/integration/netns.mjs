// A private LAN for tests that need multicast or firewall rules: network namespaces joined by a veth pair,
// made by the test and removed by it, with every process started inside killed first. No root needed: the
// namespaces live in a user namespace the test creates (`unshare -rnm`: root in there, the test's own user
// outside) with a private tmpfs on /run for `ip netns` and the daemons, and every command starts in it through
// `nsenter`. Where user namespaces cannot be made, the tests fail and say why (no silent skip).
//
//   const lan = await makeLan();    // throws (fails the test, with the reason) where that is impossible
//   const p = lan.spawn(lan.a, [clawbotBin(), 'serve', ...]);
//   ...
//   await lan.destroy();             // in after(): kills what runs in the namespaces, then the namespaces
//
// Avahi in a namespace (startAvahi): a private D-Bus system bus per namespace (a path socket in a temp
// folder: abstract sockets are per network namespace) and avahi-daemon in its own mount namespace with a tmpfs
// on /run/avahi-daemon, so that two daemons (or the machine's own) do not share a pid file or socket.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

let counter = 0;

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Waits until `predicate()` is true, polling; false after `ms`. */
export async function waitFor(predicate, ms, step = 50) {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    if (await predicate()) return true;
    await sleep(step);
  }
  return predicate();
}

function which(cmd) {
  for (const dir of (process.env.PATH || '/usr/bin:/bin').split(':').concat(['/usr/sbin', '/sbin'])) {
    const p = path.join(dir, cmd);
    try {
      fs.accessSync(p, fs.constants.X_OK);
      return p;
    } catch { /* next */ }
  }
  return null;
}

/** Throws, naming the first of `cmds` that is not installed. */
export function requireCommands(cmds) {
  for (const cmd of cmds)
    if (!which(cmd)) throw new Error(`${cmd} is not installed (scripts/bootstrap.sh installs it)`);
}

/**
 * The user namespace, with its own network and mount namespaces, that holds the LAN: a shell waiting on its
 * stdin, so that it ends with the test process however that ends. Resolves { proc, enter }: enter(argv) is
 * the argv that runs `argv` in there.
 */
async function startHolder() {
  requireCommands(['unshare', 'nsenter', 'ip']);
  const proc = spawn('unshare', ['--user', '--map-root-user', '--net', '--mount', 'sh', '-c',
    'mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/netns /run/avahi-daemon && echo ready && read _'],
  { stdio: ['pipe', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { err += c; });
  proc.on('error', (e) => { err += e.message; });
  await waitFor(() => out.includes('ready') || proc.exitCode !== null || err !== '', 10000);
  if (!out.includes('ready')) {
    proc.kill('SIGKILL');
    throw new Error('cannot make a user namespace with its own network (unshare -rnm, which needs no root): ' +
      `${err.trim() || 'no answer within 10 s'}; the kernel must allow unprivileged user namespaces ` +
      '(user.max_user_namespaces > 0; on Ubuntu also kernel.apparmor_restrict_unprivileged_userns = 0)');
  }
  const enter = (argv) => ['nsenter', '-t', String(proc.pid), '--user', '--mount', '--net', '--preserve-credentials',
    ...argv];
  return { proc, enter };
}

/**
 * Two namespaces `a` and `b` on 10.<n>.0.0/24 (a: .1, b: .2) joined by a veth pair, multicast on, with a
 * route for 224.0.0.0/4, plus more namespaces on request (addNamespace: loopback only, no link).
 */
export async function makeLan() {
  const holder = await startHolder();
  const inHolder = (argv) => {
    const [cmd, ...args] = holder.enter(argv);
    return execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 }).toString();
  };
  const ip = (args) => inHolder(['ip', ...args]);
  const id = `${process.pid % 100000}x${counter++}`;
  const subnet = 16 + ((process.pid + counter * 7) % 200);  // 10.<16..215>.0.0/24: private to the namespaces
  const lan = {
    a: `cbA${id}`,
    b: `cbB${id}`,
    addrA: `10.${subnet}.0.1`,
    addrB: `10.${subnet}.0.2`,
    namespaces: [],
    procs: [],
    dirs: [],
  };
  const vethA = `va${id}`.slice(0, 15);
  const vethB = `vb${id}`.slice(0, 15);
  try {
    for (const ns of [lan.a, lan.b]) {
      ip(['netns', 'add', ns]);
      lan.namespaces.push(ns);
    }
    ip(['link', 'add', vethA, 'type', 'veth', 'peer', 'name', vethB]);
    ip(['link', 'set', vethA, 'netns', lan.a]);
    ip(['link', 'set', vethB, 'netns', lan.b]);
    for (const [ns, dev, addr] of [[lan.a, vethA, lan.addrA], [lan.b, vethB, lan.addrB]]) {
      ip(['-n', ns, 'link', 'set', 'lo', 'up']);
      ip(['-n', ns, 'addr', 'add', `${addr}/24`, 'dev', dev]);
      ip(['-n', ns, 'link', 'set', dev, 'up', 'multicast', 'on']);
      ip(['-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', dev]);
    }
  } catch (e) {
    holder.proc.kill('SIGKILL');
    throw new Error(`setting up the test LAN in the user namespace failed: ${e.stderr?.toString() || e.message}`);
  }

  /** A namespace with only loopback (no LAN at all). */
  lan.addNamespace = (name) => {
    const ns = `cb${name}${id}`;
    ip(['netns', 'add', ns]);
    lan.namespaces.push(ns);
    ip(['-n', ns, 'link', 'set', 'lo', 'up']);
    return ns;
  };

  /** Runs `argv` in `ns` to completion (set-up: iptables ...); returns its stdout, throws when it fails. */
  lan.exec = (ns, argv) => inHolder(['ip', 'netns', 'exec', ns, ...argv]);

  /** Runs `ns` `argv[0]` `argv[1..]` in the background; output captured in .out() / .err(). */
  lan.spawn = (ns, argv, { env = process.env } = {}) => {
    const [cmd, ...args] = holder.enter(['ip', 'netns', 'exec', ns, ...argv]);
    const proc = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = { text: '' };
    const err = { text: '' };
    proc.stdout.setEncoding('utf8').on('data', (c) => { out.text += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { err.text += c; });
    proc.out = () => out.text;
    proc.err = () => err.text;
    lan.procs.push(proc);
    return proc;
  };

  /** Runs to completion: { code, stdout, stderr, ms }. */
  lan.run = (ns, argv, { env = process.env, timeoutMs = 30000 } = {}) => {
    const started = Date.now();
    const proc = lan.spawn(ns, argv, { env });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        proc.kill('SIGKILL');
        reject(new Error(`${argv.join(' ')} (in ${ns}) still running after ${timeoutMs} ms\n${proc.out()}\n${proc.err()}`));
      }, timeoutMs);
      proc.once('error', reject);
      proc.once('close', (code) => {
        clearTimeout(timer);
        resolve({ code, stdout: proc.out(), stderr: proc.err(), ms: Date.now() - started });
      });
    });
  };

  lan.tempDir = (prefix) => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
    lan.dirs.push(dir);
    return dir;
  };

  /** Stops everything started in the namespaces (ours only: they are private), then the user namespace. */
  lan.destroy = async () => {
    for (const p of lan.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGTERM');
    await waitFor(() => lan.procs.every((p) => p.exitCode !== null || p.signalCode !== null), 3000);
    // Daemons that forked away from their `ip netns exec` parent (dbus-daemon --fork) are found by namespace.
    for (const ns of lan.namespaces) {
      let pids = [];
      try {
        pids = ip(['netns', 'pids', ns]).split(/\s+/).filter(Boolean).map(Number);
      } catch { /* already gone */ }
      for (const pid of pids) {
        try { process.kill(pid, 'SIGKILL'); } catch { /* exited */ }
      }
    }
    for (const p of lan.procs) if (p.exitCode === null && p.signalCode === null) p.kill('SIGKILL');
    // The namespaces are files on the holder's private /run: they go with it.
    lan.namespaces = [];
    holder.proc.stdin.end();
    if (!(await waitFor(() => holder.proc.exitCode !== null || holder.proc.signalCode !== null, 3000)))
      holder.proc.kill('SIGKILL');
    for (const d of lan.dirs) fs.rmSync(d, { recursive: true, force: true });
  };
  return lan;
}

/**
 * Starts a private D-Bus system bus and avahi-daemon in `ns`. Resolves { env, busAddress } (env: process.env
 * with DBUS_SYSTEM_BUS_ADDRESS pointing at the private bus), or throws saying why it cannot run here.
 */
export async function startAvahi(lan, ns, hostName) {
  requireCommands(['dbus-daemon', 'avahi-daemon', 'avahi-browse', 'avahi-publish', 'unshare']);
  const dir = lan.tempDir('clawbot-avahi-');
  const socket = path.join(dir, 'bus.sock');
  fs.writeFileSync(path.join(dir, 'bus.conf'), `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <listen>unix:path=${socket}</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow user="*"/>
    <allow own="*"/>
    <allow send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_type="method_return"/>
    <allow send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="signal"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
  </policy>
</busconfig>
`);
  fs.writeFileSync(path.join(dir, 'avahi.conf'), `[server]
host-name=${hostName}
use-ipv4=yes
use-ipv6=no
enable-dbus=yes
[wide-area]
enable-wide-area=no
[publish]
publish-hinfo=no
publish-workstation=no
`);
  const busAddress = `unix:path=${socket}`;
  const bus = lan.spawn(ns, ['dbus-daemon', '--config-file', path.join(dir, 'bus.conf'), '--nofork', '--nopidfile']);
  if (!(await waitFor(() => fs.existsSync(socket), 5000)))
    throw new Error(`dbus-daemon did not start in the namespace: ${bus.err()}`);
  const env = { ...process.env, DBUS_SYSTEM_BUS_ADDRESS: busAddress };
  // avahi-daemon chowns its runtime folder to the avahi user, whom the user namespace does not map (only the
  // test's own user is there, as root): in the daemon's mount namespace, passwd and group say avahi is root.
  const asRoot = (file, re, ids) => {
    const text = fs.readFileSync(file, 'utf8');
    if (!re.test(text)) throw new Error(`no avahi entry in ${file} (the avahi-daemon package makes it)`);
    const copy = path.join(dir, path.basename(file));
    fs.writeFileSync(copy, text.replace(re, (line, name) => name + ids));
    return copy;
  };
  const passwd = asRoot('/etc/passwd', /^(avahi:[^:]*:)\d+:\d+:/m, '0:0:');
  const group = asRoot('/etc/group', /^(avahi:[^:]*:)\d+:/m, '0:');
  const daemon = lan.spawn(ns, ['unshare', '-m', 'sh', '-c',
    `mount -t tmpfs tmpfs /run/avahi-daemon && mount --bind '${passwd}' /etc/passwd && mount --bind '${group}' /etc/group && ` +
    `exec avahi-daemon -f '${path.join(dir, 'avahi.conf')}' --no-drop-root --no-chroot --no-rlimits`],
  { env });
  const ready = await waitFor(() => /Server startup complete/.test(daemon.err() + daemon.out()) || daemon.exitCode !== null, 8000);
  if (!ready || daemon.exitCode !== null)
    throw new Error(`avahi-daemon did not start in the namespace: ${daemon.err()}${daemon.out()}`);
  return { env, busAddress, daemon };
}
