// The soak benchmark behind bench/soak.sh (see there for usage): a gateway in front of two `clawbot serve`
// nodes on 127.0.0.1, mixed load for N minutes (streams, plain requests, cancellations, hang-ups mid-stream,
// slow readers, bad requests: deep JSON, malformed HTTP, oversized bodies, wrong types) and one node restart
// midway; RSS and open fds of the three processes sampled from /proc; a summary at the end. Not a test: it
// prints figures and a verdict, and exits 1 when the verdict is FAIL.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const REPO = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');

// ------------------------------------------------------------------ options
const opts = {
  minutes: 30, concurrency: 6, seed: 1, sampleS: 10, model: 'stories260K.gguf', chatTemplate: 'chatml',
  threads: 1, parallel: 4, ctx: 512, cacheRam: 4, maxRequests: 1_000_000, bin: process.env.CLAWBOT_BIN || path.join(REPO, 'build/clawbot'),
  out: '',
};
const usage = `usage: bench/soak.sh [--minutes N] [--concurrency N] [--seed N] [--sample-s N] [--model FILE]
                     [--chat-template NAME] [--threads N] [--parallel N] [--ctx N] [--cache-ram MIB]
                     [--max-requests N] [--bin PATH] [--out DIR]`;
for (let i = 2; i < process.argv.length; i++) {
  const a = process.argv[i];
  const v = process.argv[i + 1];
  const num = (name) => {
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n) || n <= 0) {
      console.error(`soak: ${name} needs a positive number, got '${v ?? ''}'\n${usage}`);
      process.exit(2);
    }
    i++;
    return n;
  };
  const str = (name) => {
    if (v === undefined) { console.error(`soak: ${name} needs a value\n${usage}`); process.exit(2); }
    i++;
    return v;
  };
  switch (a) {
    case '--minutes': opts.minutes = num(a); break;
    case '--concurrency': opts.concurrency = Math.floor(num(a)); break;
    case '--seed': opts.seed = Math.floor(num(a)); break;
    case '--sample-s': opts.sampleS = num(a); break;
    case '--model': opts.model = str(a); break;
    case '--chat-template': opts.chatTemplate = str(a); break;
    case '--threads': opts.threads = Math.floor(num(a)); break;
    case '--parallel': opts.parallel = Math.floor(num(a)); break;
    case '--ctx': opts.ctx = Math.floor(num(a)); break;
    case '--cache-ram': opts.cacheRam = Math.floor(num(a)); break;
    case '--max-requests': opts.maxRequests = Math.floor(num(a)); break;
    case '--bin': opts.bin = str(a); break;
    case '--out': opts.out = str(a); break;
    case '-h': case '--help': console.log(usage); process.exit(0); break;
    default: console.error(`soak: unknown option '${a}'\n${usage}`); process.exit(2);
  }
}
if (!fs.existsSync(opts.bin)) {
  console.error(`soak: ${opts.bin} does not exist: build it first (make build, or cmake --build build --target clawbot)`);
  process.exit(2);
}
const reproduce = `bench/soak.sh --minutes ${opts.minutes} --concurrency ${opts.concurrency} --seed ${opts.seed}` +
  ` --model ${opts.model} --chat-template ${opts.chatTemplate} --threads ${opts.threads} --parallel ${opts.parallel}` +
  ` --ctx ${opts.ctx} --cache-ram ${opts.cacheRam}`;
const outDir = opts.out || fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-soak-'));
fs.mkdirSync(outDir, { recursive: true });

const durationMs = opts.minutes * 60_000;
const warmupMs = Math.min(120_000, durationMs * 0.2);
const REQUEST_TIMEOUT_MS = 60_000;
const t0 = Date.now();
const now = () => Date.now() - t0;
const secs = (ms) => `${(ms / 1000).toFixed(0)} s`;

// A seeded generator (mulberry32): the same seed, the same sequence of actions per worker.
function rng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// ------------------------------------------------------------------ processes
const procs = {};  // role -> { role, args, proc, log, expectedExit, lives, readyRe }
const crashes = [];
const spawned = new Set();  // every child still running, whatever its role's current life
let stopping = false;

function startProcess(role, args, readyRe) {
  const entry = procs[role] ?? { role, args, lives: 0, readyRe };
  procs[role] = entry;
  entry.lives += 1;
  entry.expectedExit = false;
  const log = fs.createWriteStream(path.join(outDir, `${role}.log`), { flags: 'a' });
  log.write(`\n==== start ${entry.lives} at ${secs(now())}: ${opts.bin} ${args.join(' ')}\n`);
  const proc = spawn(opts.bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  entry.proc = proc;
  spawned.add(proc);
  proc.once('exit', () => spawned.delete(proc));
  proc.stderr.pipe(log, { end: false });
  const ready = new Promise((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`${role} printed no readiness line within 120 s (log: ${outDir}/${role}.log)`)), 120_000);
    proc.stdout.setEncoding('utf8').on('data', (chunk) => {
      log.write(chunk);
      buf += chunk;
      if (readyRe.test(buf)) { clearTimeout(timer); buf = ''; resolve(); }
      if (buf.length > 65536) buf = buf.slice(-4096);
    });
    proc.once('exit', (code, signal) => {
      clearTimeout(timer);
      log.write(`==== exit at ${secs(now())}: code ${code}, signal ${signal}\n`);
      log.end();
      reject(new Error(`${role} exited before it was ready (code ${code}, signal ${signal}; log: ${outDir}/${role}.log)`));
    });
  });
  proc.once('exit', (code, signal) => {
    entry.exit = { code, signal };
    if (entry.expectedExit || stopping) return;
    crashes.push({ role, pid: proc.pid, code, signal, at: now() });
    console.log(`soak: ${role} (pid ${proc.pid}) died at ${secs(now())}: code ${code}, signal ${signal}; restarting it`);
    // Unless the planned restart (or another) has started a new one meanwhile.
    setTimeout(() => {
      if (!stopping && entry.proc === proc) startProcess(role, args, readyRe).ready.catch((e) => console.log(`soak: ${e.message}`));
    }, 1000);
  });
  entry.ready = ready;
  return entry;
}

async function stopProcess(role, graceMs = 15_000) {
  const entry = procs[role];
  if (!entry?.proc || entry.proc.exitCode !== null || entry.proc.signalCode !== null) return { code: entry?.exit?.code };
  entry.expectedExit = true;
  const exited = new Promise((resolve) => entry.proc.once('exit', (code, signal) => resolve({ code, signal })));
  entry.proc.kill('SIGTERM');
  const timer = setTimeout(() => { entry.killed = true; entry.proc.kill('SIGKILL'); }, graceMs);
  const result = await exited;
  clearTimeout(timer);
  return { ...result, killed: entry.killed === true };
}

// ------------------------------------------------------------------ /proc samples
const samples = [];  // { t, role, pid, rssKb, fds, phase }
const csv = fs.createWriteStream(path.join(outDir, 'samples.csv'));
csv.write('t_s,role,pid,rss_kb,fds,phase\n');

function sampleOne(role, phase) {
  const p = procs[role]?.proc;
  if (!p || p.exitCode !== null || p.signalCode !== null) return null;
  try {
    const status = fs.readFileSync(`/proc/${p.pid}/status`, 'utf8');
    const rssKb = Number(/VmRSS:\s+(\d+)/.exec(status)?.[1] ?? NaN);
    if (!Number.isFinite(rssKb)) return null;  // exiting
    const fds = fs.readdirSync(`/proc/${p.pid}/fd`).length;
    const s = { t: now(), role, pid: p.pid, life: procs[role].lives, rssKb, fds, phase };
    samples.push(s);
    csv.write(`${(s.t / 1000).toFixed(1)},${role},${p.pid},${rssKb},${fds},${phase}\n`);
    return s;
  } catch {
    return null;  // exited between the check and the read
  }
}

// ------------------------------------------------------------------ load
const counts = {};  // kind -> { n, ok, injected, restartWindow, errors }
const errors = [];  // unexpected: { at, kind, what }
const restartWindows = [];  // [from, to] ms
let requests = 0;
const openSockets = new Set();

function count(kind, outcome, what) {
  const c = (counts[kind] ??= { n: 0, ok: 0, rejected: 0, restart: 0, errors: 0 });
  c.n += 1;
  if (outcome === 'error') {
    const t = now();
    if (restartWindows.some(([a, b]) => t >= a && t <= (b ?? Infinity))) {
      c.restart += 1;
      restartFailures.push({ at: t, kind, what });
    } else {
      c.errors += 1;
      errors.push({ at: t, kind, what });
    }
  } else {
    c[outcome] += 1;
  }
}
const restartFailures = [];

const agent = new http.Agent({ keepAlive: true, maxSockets: 64 });
let gatewayPort = 0;
const PROMPTS = ['Tell me a story about a cat.', 'Once upon a time', 'What did the little girl find?',
  'Write about a dog and a ball.', 'The sun was hot and', 'Lily wanted to play outside.'];

function chatBody(r, { stream, maxTokens }) {
  return JSON.stringify({
    messages: [{ role: 'user', content: `${PROMPTS[Math.floor(r() * PROMPTS.length)]} (${Math.floor(r() * 1e6)})` }],
    max_tokens: maxTokens, stream, temperature: 0.8, seed: Math.floor(r() * 1e6),
  });
}

// One request through node:http. onData(chunkText, req) may destroy the request. Resolves
// { status, body, aborted, error }.
function httpRequest(method, route, body, { onData, headers = {} } = {}) {
  return new Promise((resolve) => {
    let settled = false;
    const done = (v) => { if (!settled) { settled = true; clearTimeout(timer); resolve(v); } };
    const req = http.request({
      host: '127.0.0.1', port: gatewayPort, method, path: route, agent,
      headers: { 'content-type': 'application/json', ...(body ? { 'content-length': Buffer.byteLength(body) } : {}), ...headers },
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        if (text.length < 1 << 20) text += c;
        if (onData) onData(c, req, res);
      });
      res.on('end', () => done({ status: res.statusCode, body: text }));
      res.on('error', (e) => done({ status: res.statusCode, body: text, error: e.message, aborted: req.destroyed }));
      res.on('close', () => done({ status: res.statusCode, body: text, aborted: !res.complete }));
    });
    const timer = setTimeout(() => { req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)); }, REQUEST_TIMEOUT_MS);
    req.on('error', (e) => done({ error: e.message }));
    if (body) req.write(body);
    req.end();
  });
}

// A raw TCP exchange: writes `data` (string/Buffer or array of them, with `gapMs` between), reads up to
// `readLimit` bytes, closes when `closeWhen(text)` says so or the server closes. Resolves { text, closedBy, error }.
function rawExchange(data, { readLimit = 1 << 16, closeWhen, timeoutMs = 30_000, pauseMs = 0 } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(gatewayPort, '127.0.0.1');
    openSockets.add(sock);
    let text = '';
    let settled = false;
    const done = (closedBy, error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearInterval(slow);
      sock.destroy();
      openSockets.delete(sock);
      resolve({ text, closedBy, error });
    };
    const timer = setTimeout(() => done('timeout'), timeoutMs);
    let slow = null;
    sock.on('data', (c) => {
      text += c.toString('latin1');
      if (pauseMs > 0) {
        // A slow reader: take one chunk, then nothing for pauseMs (the kernel buffers fill, the sender waits).
        sock.pause();
        if (!slow) slow = setInterval(() => { sock.resume(); setImmediate(() => sock.pause()); }, pauseMs);
      }
      if (text.length >= readLimit || (closeWhen && closeWhen(text))) done('client');
    });
    sock.on('end', () => done('server'));
    sock.on('error', (e) => done('error', e.code || e.message));
    sock.on('connect', async () => {
      for (const part of Array.isArray(data) ? data : [data]) {
        if (settled) return;
        sock.write(part);
        if (Array.isArray(data)) await new Promise((r) => setTimeout(r, 50));
      }
    });
  });
}

const statusOf = (text) => Number(/^HTTP\/1\.[01] (\d{3})/.exec(text)?.[1] ?? 0);
const rawPost = (route, body, extra = '') =>
  `POST ${route} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n${extra}Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

// Each action: name, weight, run(r) -> records its own outcome.
const ACTIONS = [
  ['stream', 30, async (r) => {
    const res = await httpRequest('POST', '/v1/chat/completions', chatBody(r, { stream: true, maxTokens: 48 }));
    if (res.status === 200 && res.body.includes('data: [DONE]') && !res.body.includes('"error"')) return count('stream', 'ok');
    count('stream', 'error', `status ${res.status ?? '-'} ${res.error ?? ''} ${(res.body ?? '').slice(-200)}`);
  }],
  ['plain', 15, async (r) => {
    const res = await httpRequest('POST', '/v1/chat/completions', chatBody(r, { stream: false, maxTokens: 32 }));
    if (res.status === 200 && res.body.includes('"choices"')) return count('plain', 'ok');
    count('plain', 'error', `status ${res.status ?? '-'} ${res.error ?? ''} ${(res.body ?? '').slice(0, 200)}`);
  }],
  ['cancel', 12, async (r) => {
    // The client gives up after the first content chunk (an app's stop button).
    let sawContent = false;
    const res = await httpRequest('POST', '/v1/chat/completions', chatBody(r, { stream: true, maxTokens: 200 }), {
      onData: (c, req) => { if (c.includes('"content"')) { sawContent = true; req.destroy(); } },
    });
    if (sawContent || (res.status === 200 && res.body.includes('[DONE]'))) return count('cancel', 'ok');
    count('cancel', 'error', `status ${res.status ?? '-'} ${res.error ?? ''} ${(res.body ?? '').slice(0, 200)}`);
  }],
  ['hangup', 6, async (r) => {
    // The connection drops mid-stream (a laptop lid closes): no FIN handshake from our side, just gone.
    const body = chatBody(r, { stream: true, maxTokens: 200 });
    const res = await rawExchange(rawPost('/v1/chat/completions', body), { closeWhen: (t) => t.includes('"content"') });
    if (res.closedBy === 'client' || statusOf(res.text) === 200) return count('hangup', 'ok');
    count('hangup', 'error', `closed by ${res.closedBy} ${res.error ?? ''} ${res.text.slice(0, 200)}`);
  }],
  ['hangup_in_body', 3, async (r) => {
    // Half a body, then the connection drops.
    const body = chatBody(r, { stream: true, maxTokens: 16 });
    const req = rawPost('/v1/chat/completions', body);
    const res = await rawExchange(req.slice(0, req.length - 10), { timeoutMs: 300 });
    if (res.closedBy === 'timeout' || res.closedBy === 'server' || statusOf(res.text) >= 400) return count('hangup_in_body', 'ok');
    count('hangup_in_body', 'error', `closed by ${res.closedBy} ${res.error ?? ''} ${res.text.slice(0, 200)}`);
  }],
  ['slow_reader', 4, async (r) => {
    // Reads one chunk every 2 s for 20 s, then leaves.
    const body = chatBody(r, { stream: true, maxTokens: 400 });
    const res = await rawExchange(rawPost('/v1/chat/completions', body), { pauseMs: 2000, timeoutMs: 20_000, readLimit: 1 << 22 });
    if (statusOf(res.text) === 200) return count('slow_reader', 'ok');
    count('slow_reader', 'error', `closed by ${res.closedBy} ${res.error ?? ''} ${res.text.slice(0, 200)}`);
  }],
  ['deep_json', 5, async (r) => {
    const depth = 100_000;
    const body = r() < 0.5 ? '['.repeat(depth) + ']'.repeat(depth)
      : `{"messages":[{"role":"user","content":${'['.repeat(depth)}${']'.repeat(depth)}}],"max_tokens":8}`;
    const res = await httpRequest('POST', '/v1/chat/completions', body);
    if (res.status >= 400 && res.status < 500) return count('deep_json', 'rejected');
    count('deep_json', 'error', `status ${res.status ?? '-'} ${res.error ?? ''} ${(res.body ?? '').slice(0, 200)}`);
  }],
  ['malformed_http', 5, async (r) => {
    const variants = [
      'GARBAGE\r\n\r\n',
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n',
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
      'GET / HTTP/1.1\r\nHost: x\r\nX-Folded: a\r\n b\r\n\r\n',
      `GET /${'a'.repeat(70_000)} HTTP/1.1\r\nHost: x\r\n\r\n`,
      'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n{}{}{}{',
    ];
    const v = variants[Math.floor(r() * variants.length)];
    const res = await rawExchange(v, { timeoutMs: 10_000, closeWhen: (t) => t.includes('\r\n\r\n') });
    const status = statusOf(res.text);
    if ((status >= 400 && status < 500) || (status === 0 && (res.closedBy === 'server' || res.error === 'ECONNRESET')))
      return count('malformed_http', 'rejected');
    count('malformed_http', 'error', `${JSON.stringify(v.slice(0, 60))}: status ${status}, closed by ${res.closedBy} ${res.error ?? ''}`);
  }],
  ['oversized', 4, async (r) => {
    const body = `{"messages":[{"role":"user","content":"${'x'.repeat(2 << 20)}"}],"max_tokens":${1 + Math.floor(r() * 8)}}`;
    const res = await rawExchange(rawPost('/v1/chat/completions', body), { timeoutMs: 20_000, closeWhen: (t) => t.includes('\r\n\r\n') });
    const status = statusOf(res.text);
    if (status === 413 || (status === 0 && (res.closedBy === 'server' || res.error === 'ECONNRESET' || res.error === 'EPIPE')))
      return count('oversized', 'rejected');
    count('oversized', 'error', `status ${status}, closed by ${res.closedBy} ${res.error ?? ''} ${res.text.slice(0, 200)}`);
  }],
  ['bad_field', 4, async (r) => {
    // max_tokens in each: one accepted by mistake answers quickly (and shows as an error, not a time-out).
    const bodies = ['{"messages":[{"role":"user","content":"hi"}],"temperature":"hot","max_tokens":8}',
      '{"messages":[{"role":"user","content":[{"type":1}]}],"max_tokens":8}', '{"messages":"hi","max_tokens":8}',
      '{"messages":[],"max_tokens":1e999}',
      '{"messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":"x"},"max_tokens":8}',
      'not json'];
    const body = bodies[Math.floor(r() * bodies.length)];
    const res = await httpRequest('POST', '/v1/chat/completions', body);
    if (res.status >= 400 && res.status < 500) return count('bad_field', 'rejected');
    count('bad_field', 'error', `${body} -> status ${res.status ?? '-'} ${res.error ?? ''} ${(res.body ?? '').slice(0, 160)}`);
  }],
  ['models', 4, async () => {
    const res = await httpRequest('GET', r0() < 0.5 ? '/v1/models' : '/health');
    if (res.status === 200) return count('models', 'ok');
    count('models', 'error', `status ${res.status ?? '-'} ${res.error ?? ''} ${(res.body ?? '').slice(0, 200)}`);
  }],
];
const r0 = rng(opts.seed * 7919);
const totalWeight = ACTIONS.reduce((s, a) => s + a[1], 0);

async function worker(id, deadline) {
  const r = rng(opts.seed * 1000 + id);
  while (now() < deadline && !stopping && requests < opts.maxRequests) {
    let x = r() * totalWeight;
    const action = ACTIONS.find((a) => (x -= a[1]) < 0) ?? ACTIONS[0];
    requests += 1;
    try {
      await action[2](r);
    } catch (e) {
      count(action[0], 'error', `threw: ${e.message}`);
    }
  }
}

// ------------------------------------------------------------------ the run
function mib(kb) { return (kb / 1024).toFixed(1); }
function median(xs) { const s = [...xs].sort((a, b) => a - b); return s.length ? s[Math.floor(s.length / 2)] : NaN; }

async function main() {
  const [portA, portB] = [await freePort(), await freePort()];
  gatewayPort = await freePort();
  const serveArgs = (port) => ['serve', '--model', opts.model, '--chat-template', opts.chatTemplate, '--host', '127.0.0.1',
    '--port', String(port), '--threads', String(opts.threads), '--parallel', String(opts.parallel),
    // A small context and cold tier: the KV cache's pages are all touched and the cold tier is full within the
    // warm-up, so what grows after it is not a cache filling up as designed.
    '--ctx', String(opts.ctx), '--cache-ram', String(opts.cacheRam), '--no-advertise'];
  const serveReady = /clawbot serve: listening on/;
  console.log(`soak: ${opts.minutes} min through a gateway to two nodes (${opts.model}, ${opts.chatTemplate}), ` +
    `concurrency ${opts.concurrency}, seed ${opts.seed}; logs and samples in ${outDir}`);
  const nodes = [startProcess('node_a', serveArgs(portA), serveReady), startProcess('node_b', serveArgs(portB), serveReady)];
  await Promise.all(nodes.map((n) => n.ready));
  const config = {
    listen: [{ host: '127.0.0.1', port: gatewayPort }],
    upstreams: [{ url: `http://127.0.0.1:${portA}`, name: 'a' }, { url: `http://127.0.0.1:${portB}`, name: 'b' }],
    auth: 'none', keys_db: path.join(outDir, 'gateway.db'), audit_log: path.join(outDir, 'audit.log'),
    limits: { max_body_bytes: 1 << 20 }, queue: { max_waiting: 256, timeout_ms: 30000 },
    health_checks: { interval_ms: 1000, timeout_ms: 1000, path: '/health' }, retries: 2, threads: 2, advertise: false,
  };
  fs.writeFileSync(path.join(outDir, 'gateway.json'), JSON.stringify(config, null, 2));
  await startProcess('gateway', ['gateway', '--config', path.join(outDir, 'gateway.json'), '--no-advertise'],
    /clawbot gateway listening on/).ready;
  const roles = ['gateway', 'node_a', 'node_b'];

  // Idle figures before any load, then the load.
  await new Promise((r) => setTimeout(r, 2000));
  const idleStart = Object.fromEntries(roles.map((role) => [role, sampleOne(role, 'idle-start')]));
  const loadStart = now();
  const deadline = loadStart + durationMs;
  const workers = Array.from({ length: opts.concurrency }, (_, i) => worker(i, deadline));

  const sampler = setInterval(() => {
    const line = roles.map((role) => {
      const s = sampleOne(role, now() - loadStart < warmupMs ? 'warmup' : 'load');
      return s ? `${role} ${mib(s.rssKb)} MiB ${s.fds} fd` : `${role} down`;
    });
    const errs = Object.values(counts).reduce((s, c) => s + c.errors, 0);
    console.log(`soak: ${secs(now() - loadStart).padStart(6)}  ${line.join(' | ')} | requests ${requests}, unexpected errors ${errs}`);
  }, opts.sampleS * 1000);

  // The restart: node_b gets SIGTERM halfway, and starts again on the same port.
  let restartAt = null;
  const restart = (async () => {
    await new Promise((r) => setTimeout(r, durationMs / 2));
    if (stopping) return;
    const window = [now(), null];
    restartWindows.push(window);
    console.log(`soak: ${secs(now() - loadStart).padStart(6)}  restarting node_b (SIGTERM)`);
    const res = await stopProcess('node_b', 30_000);
    if (res.killed) errors.push({ at: now(), kind: 'restart', what: 'node_b did not exit within 30 s of SIGTERM (SIGKILL)' });
    else if (res.code !== 0) errors.push({ at: now(), kind: 'restart', what: `node_b exited with code ${res.code}, signal ${res.signal} on SIGTERM` });
    await startProcess('node_b', serveArgs(portB), serveReady).ready;
    // Requests that were on node_b, and the gateway's health check noticing it back: 5 s of grace.
    window[1] = now() + 5000;
    restartAt = { from: window[0], ready: now() };
    console.log(`soak: ${secs(now() - loadStart).padStart(6)}  node_b is back (down for ${secs(restartAt.ready - restartAt.from)})`);
  })();

  const hardStop = setTimeout(() => {
    console.log('soak: the load did not stop within 2 minutes of its deadline: closing every connection');
    stopping = true;
    for (const s of openSockets) s.destroy();
    agent.destroy();
  }, durationMs + 120_000);
  await Promise.all(workers);
  clearTimeout(hardStop);
  await restart.catch((e) => errors.push({ at: now(), kind: 'restart', what: e.message }));
  clearInterval(sampler);
  agent.destroy();
  const loadMs = now() - loadStart;
  await new Promise((r) => setTimeout(r, 3000));  // connections close, slots free
  const idleEnd = Object.fromEntries(roles.map((role) => [role, sampleOne(role, 'idle-end')]));

  stopping = true;
  const stops = {};
  for (const role of ['gateway', 'node_a', 'node_b']) stops[role] = await stopProcess(role);
  for (const p of spawned) p.kill('SIGKILL');  // none should be left; never leave one behind
  csv.end();

  // ---------------------------------------------------------------- summary
  const out = [];
  out.push('', `soak summary: ${(loadMs / 60000).toFixed(1)} min of load, ${requests} requests, concurrency ${opts.concurrency}, warm-up ${secs(warmupMs)}`);
  out.push(`  ${'kind'.padEnd(15)} ${'sent'.padStart(7)} ${'ok'.padStart(7)} ${'rejected'.padStart(9)} ${'restart'.padStart(8)} ${'errors'.padStart(7)}`);
  for (const [kind, c] of Object.entries(counts).sort()) {
    out.push(`  ${kind.padEnd(15)} ${String(c.n).padStart(7)} ${String(c.ok).padStart(7)} ${String(c.rejected).padStart(9)} ${String(c.restart).padStart(8)} ${String(c.errors).padStart(7)}`);
  }
  out.push('  (rejected: injected bad requests answered 4xx or closed, as they should be; restart: failures while node_b restarted)');
  out.push(`crashes: ${crashes.length === 0 ? 'none' : crashes.map((c) => `${c.role} pid ${c.pid} at ${secs(c.at - loadStart)} (code ${c.code}, signal ${c.signal})`).join('; ')}`);
  for (const [role, s] of Object.entries(stops)) {
    if (s.killed || (s.code !== 0 && s.code !== undefined)) out.push(`  ${role} on SIGTERM at the end: ${s.killed ? 'did not exit within 15 s (SIGKILL)' : `code ${s.code}, signal ${s.signal}`}`);
  }
  out.push(`unexpected errors: ${errors.length}`);
  for (const e of errors.slice(0, 10)) out.push(`  ${secs(e.at - loadStart)} ${e.kind}: ${e.what.replace(/\s+/g, ' ').slice(0, 220)}`);
  if (errors.length > 10) out.push(`  ... ${errors.length - 10} more`);
  if (restartAt) out.push(`restart: node_b down ${secs(restartAt.ready - restartAt.from)}; ${restartFailures.length} requests failed in that window`);
  for (const e of restartFailures.slice(0, 5)) out.push(`  ${secs(e.at - loadStart)} ${e.kind}: ${e.what.replace(/\s+/g, ' ').slice(0, 220)}`);

  let rssOk = true;
  let fdOk = true;
  out.push('memory and fds per process life after warm-up (RSS growth: median of the last 3 samples against the median of');
  out.push('the first 3; fds flat: the most open in the last third of the run at most 4 above the most in the first third):');
  for (const role of roles) {
    const mine = samples.filter((s) => s.role === role && s.phase === 'load');
    const lives = [...new Set(mine.map((s) => s.life))];
    for (const life of lives) {
      const l = mine.filter((s) => s.life === life);
      const lifeStart = samples.find((s) => s.role === role && s.life === life)?.t ?? 0;
      const warm = l.filter((s) => s.t - lifeStart >= (life === 1 ? 0 : warmupMs));
      const label = `${role}${lives.length > 1 || life > 1 ? ` (life ${life})` : ''}`;
      if (warm.length < 6) {
        out.push(`  ${label.padEnd(16)} ${warm.length} samples after warm-up: too few for a trend`);
        continue;
      }
      const first = median(warm.slice(0, 3).map((s) => s.rssKb));
      const last = median(warm.slice(-3).map((s) => s.rssKb));
      const growth = (100 * (last - first)) / first;
      if (growth >= 5) rssOk = false;
      const third = Math.max(1, Math.floor(warm.length / 3));
      const fdEarly = Math.max(...warm.slice(0, third).map((s) => s.fds));
      const fdLate = Math.max(...warm.slice(-third).map((s) => s.fds));
      if (fdLate > fdEarly + 4) fdOk = false;
      const fds = warm.map((s) => s.fds);
      out.push(`  ${label.padEnd(16)} RSS ${mib(first)} -> ${mib(last)} MiB (${growth >= 0 ? '+' : ''}${growth.toFixed(1)}%), ` +
        `max ${mib(Math.max(...warm.map((s) => s.rssKb)))} MiB; fds min ${Math.min(...fds)} max ${Math.max(...fds)} ` +
        `(most open, first third ${fdEarly}, last third ${fdLate})`);
    }
    const a = idleStart[role];
    const b = idleEnd[role];
    if (a && b) {
      out.push(`  ${role.padEnd(16)} idle before/after the load: RSS ${mib(a.rssKb)} / ${mib(b.rssKb)} MiB, fds ${a.fds} / ${b.fds}` +
        `${a.pid === b.pid ? '' : ' (restarted in between)'}`);
    }
  }
  const pass = crashes.length === 0 && errors.length === 0 && rssOk && fdOk;
  out.push(`verdict: ${pass ? 'PASS' : 'FAIL'} (no crash: ${crashes.length === 0 ? 'yes' : 'no'}; no unexpected error: ${errors.length === 0 ? 'yes' : 'no'}; ` +
    `RSS growth after warm-up < 5%: ${rssOk ? 'yes' : 'no'}; fds flat: ${fdOk ? 'yes' : 'no'})`);
  out.push(`samples: ${outDir}/samples.csv   logs: ${outDir}/{gateway,node_a,node_b}.log`);
  out.push(`reproduce: ${reproduce}`);
  console.log(out.join('\n'));
  fs.writeFileSync(path.join(outDir, 'summary.txt'), out.join('\n') + '\n');
  return pass ? 0 : 1;
}

let exitCode = 1;
const cleanup = async () => {
  stopping = true;
  for (const s of openSockets) s.destroy();
  await Promise.all(Object.keys(procs).map((role) => stopProcess(role, 5000).catch(() => {})));
  for (const p of spawned) p.kill('SIGKILL');
};
process.on('SIGINT', async () => { console.log('soak: interrupted; stopping what it started'); await cleanup(); process.exit(130); });
process.on('SIGTERM', async () => { await cleanup(); process.exit(143); });
try {
  exitCode = await main();
} catch (e) {
  console.error(`soak: ${e.stack || e.message}`);
  await cleanup();
}
process.exit(exitCode);
