#!/usr/bin/env node
// Probes of the HTTP layer's bounds (issue 16, items 10-12), against `clawbot gateway` or `clawbot serve`:
//   chunks    RSS before and after 4 connections each send 16 MiB of one endless chunk extension
//   bodies    RSS with 64 connections each holding a body just under the limit, and after they close
//   slowloris seconds until a connection that sends one header byte every 200 ms is closed (cap 40 s)
//   fds       under `prlimit --nofile=64:64`: CPU seconds used in 2 s with 100 connections open, log lines
//             about accept, and whether it serves again once they close
// Usage: node bench/probes/http_hardening.mjs --bin build/clawbot [--target gateway|serve]
//          [--model /work/shared/models/stories260K.gguf] [--only chunks,bodies,slowloris,fds]
// Prints one JSON line per probe. Not a test: figures for before/after comparisons.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

const args = process.argv.slice(2);
const opt = (name, fallback) => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? args[i + 1] : fallback;
};
const bin = path.resolve(opt('bin', 'build/clawbot'));
const target = opt('target', 'gateway');
const model = opt('model', '/work/shared/models/stories260K.gguf');
const only = opt('only', 'chunks,bodies,slowloris,fds').split(',');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-probe-'));

const rssMiB = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Math.round(Number(m[1]) / 1024) : -1;
};
const cpuSeconds = (pid) => {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};

let upstream = null;
async function startUpstream() {
  if (upstream) return upstream;
  const server = http.createServer(async (req, res) => {
    for await (const _ of req);  // eslint-disable-line no-unused-vars
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ object: 'list', data: [{ id: 'm', object: 'model' }] }));
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  upstream = server;
  return server;
}

/** Starts the target (under `prefix`, e.g. prlimit) and resolves { proc, port, log() }. */
async function startTarget(prefix = []) {
  let cmd;
  if (target === 'gateway') {
    const up = await startUpstream();
    const file = path.join(dir, 'gateway.json');
    fs.writeFileSync(file, JSON.stringify({
      listen: [{ host: '127.0.0.1', port: 0 }], auth: 'none',
      upstreams: [{ url: `http://127.0.0.1:${up.address().port}`, name: 'up' }],
    }));
    cmd = [bin, 'gateway', '--config', file, '--no-advertise', '--port', '0', '--threads', '1'];
  } else {
    cmd = [bin, 'serve', '--model', model, '--port', '0', '--no-advertise', '--ctx', '256'];
  }
  const full = [...prefix, ...cmd];
  const proc = spawn(full[0], full.slice(1), { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  let errBytes = 0;
  proc.stdout.setEncoding('utf8').on('data', (c) => { out += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => {
    errBytes += c.length;
    if (err.length < (8 << 20)) err += c;
  });
  const re = /listening on https?:\/\/[^\s]*:(\d+)/;
  for (let i = 0; i < 600 && !re.test(out + err); i += 1) await sleep(50);
  const m = re.exec(out + err);
  if (!m) throw new Error(`${full.join(' ')} did not listen:\n${out}\n${err}`);
  return { proc, port: Number(m[1]), log: () => err, logBytes: () => errBytes };
}

function stop(t) {
  t.proc.kill('SIGKILL');
}

function connect(port) {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.on('error', () => {});
    s.once('connect', () => resolve(s));
    s.once('error', () => resolve(s));
  });
}

const write = (s, data) => new Promise((resolve) => {
  if (s.destroyed) return resolve(false);
  s.write(data, (e) => resolve(!e));
});

async function probeChunks() {
  const t = await startTarget();
  await sleep(300);
  const before = rssMiB(t.proc.pid);
  const piece = Buffer.alloc(64 * 1024, 'e');
  const sockets = [];
  for (let c = 0; c < 4; c += 1) {
    const s = await connect(t.port);
    sockets.push(s);
    await write(s, 'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1;ext=');
  }
  let sent = 0;
  for (let i = 0; i < 256; i += 1) {
    const ok = await Promise.all(sockets.map((s) => write(s, piece)));
    if (!ok.some(Boolean)) break;
    sent += piece.length * ok.filter(Boolean).length;
  }
  await sleep(500);
  const peak = rssMiB(t.proc.pid);
  for (const s of sockets) s.destroy();
  stop(t);
  return { probe: 'chunks', target, rss_before_mib: before, rss_after_mib: peak, sent_mib: Math.round(sent / 1048576) };
}

async function probeBodies() {
  const t = await startTarget();
  await sleep(300);
  const before = rssMiB(t.proc.pid);
  const limit = 8 << 20;
  const body = Buffer.alloc(limit - 1024, 'x');  // just under the limit, and never finished
  const sockets = [];
  for (let c = 0; c < 64; c += 1) {
    const s = await connect(t.port);
    sockets.push(s);
    await write(s, `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: ${limit}\r\n\r\n`);
  }
  await Promise.all(sockets.map((s) => write(s, body)));
  await sleep(1500);
  const holding = rssMiB(t.proc.pid);
  for (const s of sockets) s.destroy();
  await sleep(1500);
  const after = rssMiB(t.proc.pid);
  stop(t);
  return { probe: 'bodies', target, rss_before_mib: before, rss_holding_mib: holding, rss_after_close_mib: after };
}

async function probeSlowloris() {
  const t = await startTarget();
  const s = await connect(t.port);
  let closed = false;
  s.on('close', () => { closed = true; });
  const head = `GET /v1/models HTTP/1.1\r\nHost: x\r\nX-Padding: ${'p'.repeat(400)}\r\n\r\n`;
  const start = Date.now();
  let sent = 0;
  while (!closed && sent < head.length && Date.now() - start < 40000) {
    await write(s, head[sent]);
    sent += 1;
    await sleep(200);
  }
  const seconds = (Date.now() - start) / 1000;
  s.destroy();
  stop(t);
  return { probe: 'slowloris', target, closed_by_server: closed, seconds, header_bytes_sent: sent };
}

async function probeFds() {
  const t = await startTarget(['prlimit', '--nofile=64:64']);
  await sleep(300);
  const sockets = [];
  for (let c = 0; c < 100; c += 1) sockets.push(await connect(t.port));
  await sleep(500);
  const cpu0 = cpuSeconds(t.proc.pid);
  const bytes0 = t.logBytes();
  await sleep(2000);
  const cpu = cpuSeconds(t.proc.pid) - cpu0;
  const logBytes = t.logBytes() - bytes0;
  const lines = t.log().split('\n').filter((l) => /accept/.test(l)).length;
  for (const s of sockets) s.destroy();
  let servedAfterMs = -1;
  const start = Date.now();
  while (Date.now() - start < 10000) {
    const ok = await new Promise((resolve) => {
      const req = http.get({ host: '127.0.0.1', port: t.port, path: target === 'gateway' ? '/v1/models' : '/health',
        agent: false, timeout: 1000 }, (res) => { res.resume(); res.on('end', () => resolve(res.statusCode < 500)); });
      req.on('error', () => resolve(false));
      req.on('timeout', () => { req.destroy(); resolve(false); });
    });
    if (ok) {
      servedAfterMs = Date.now() - start;
      break;
    }
    await sleep(100);
  }
  stop(t);
  return { probe: 'fds', target, cpu_seconds_in_2s: cpu, accept_log_lines: lines, log_bytes_in_2s: logBytes,
    served_again_after_ms: servedAfterMs };
}

const probes = { chunks: probeChunks, bodies: probeBodies, slowloris: probeSlowloris, fds: probeFds };
for (const name of only) {
  try {
    console.log(JSON.stringify(await probes[name]()));
  } catch (e) {
    console.log(JSON.stringify({ probe: name, target, error: String(e.message ?? e) }));
  }
}
upstream?.close();
fs.rmSync(dir, { recursive: true, force: true });
process.exit(0);
