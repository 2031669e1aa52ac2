// Shared helpers for black-box tests of `clawbot gateway`: a gateway process started from a config object
// written to a temp folder, a minimal OpenAI-like upstream in this process, HTTP(S) requests from a chosen
// local address, event streams, and the gateway's admin commands. No model and no engine are needed.
//
// Environment: CLAWBOT_BIN, the clawbot binary (default <repo>/build/clawbot).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { killProcess, requireBinary } from './server_harness.mjs';

const READY_RE = /^clawbot gateway listening on (https?):\/\/(\[[^\]]+\]|[^:\s]+):(\d+) /;
const MAX_CAPTURE = 1 << 20;

/** A fresh temp folder; remove it with fs.rmSync(dir, { recursive: true, force: true }). */
export function tempDir(prefix = 'clawbot-gw-') {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

/** Writes `config` as JSON to dir/name and returns the file's path. */
export function writeGatewayConfig(dir, config, name = 'gateway.json') {
  const file = path.join(dir, name);
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return file;
}

/**
 * Starts `clawbot gateway --config <dir>/<name> --port 0 --no-advertise` (one I/O thread unless the config
 * or `args` say otherwise) and waits until every listener has printed its "listening on" line.
 * Returns { proc, config, url, urls, port, ports, stdout(), stderr(), stop(signal) }; stop() resolves
 * { code, signal } after the process has exited (SIGKILL after 5 s). Rejects with the output when the
 * gateway exits or stays silent for `timeoutMs`.
 */
export async function startGateway(config, { dir, name = 'gateway.json', args = [], timeoutMs = 15000,
  env = process.env } = {}) {
  const bin = requireBinary();
  const configFile = writeGatewayConfig(dir, config, name);
  const listeners = Math.max(1, config.listen?.length ?? 1);
  const fullArgs = ['gateway', '--config', configFile, '--no-advertise',
    ...(args.includes('--port') ? [] : ['--port', '0']),
    ...(args.includes('--threads') || config.threads !== undefined ? [] : ['--threads', '1']),
    ...args];
  const proc = spawn(bin, fullArgs, { stdio: ['ignore', 'pipe', 'pipe'], env });
  const out = { text: '' };
  const err = { text: '' };
  proc.stderr.setEncoding('utf8').on('data', (c) => { if (err.text.length < MAX_CAPTURE) err.text += c; });
  proc.stdout.setEncoding('utf8');
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));

  const found = [];
  await new Promise((resolve, reject) => {
    let line = '';
    const fail = (why) => {
      clearTimeout(timer);
      reject(new Error(`clawbot gateway ${why}\ncommand: ${bin} ${fullArgs.join(' ')}\n` +
        `config: ${JSON.stringify(config)}\nstdout:\n${out.text}\nstderr:\n${err.text}`));
    };
    const timer = setTimeout(() => fail(`printed no "listening on" line within ${timeoutMs} ms`), timeoutMs);
    proc.stdout.on('data', (chunk) => {
      if (out.text.length < MAX_CAPTURE) out.text += chunk;
      line += chunk;
      let nl;
      while ((nl = line.indexOf('\n')) >= 0) {
        const m = READY_RE.exec(line.slice(0, nl));
        line = line.slice(nl + 1);
        if (m) found.push({ scheme: m[1], host: m[2], port: Number(m[3]) });
      }
      if (found.length >= listeners) {
        clearTimeout(timer);
        resolve();
      }
    });
    proc.once('error', (e) => fail(`could not be started: ${e.message}`));
    exited.then(({ code, signal }) => fail(`exited before it listened (code ${code}, signal ${signal})`));
  });
  // Clients connect to a loopback address of the listener's family, whatever it listens on.
  const clientHost = (host) => (host === '0.0.0.0' ? '127.0.0.1' : host === '[::]' ? '[::1]' : host);
  const urls = found.map((l) => `${l.scheme}://${clientHost(l.host)}:${l.port}`);
  return {
    proc,
    config: configFile,
    url: urls[0],
    urls,
    port: found[0].port,
    ports: found.map((l) => l.port),
    stdout: () => out.text,
    stderr: () => err.text,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill(signal);
        const t = setTimeout(() => killProcess(proc, 0), 5000);
        await exited;
        clearTimeout(t);
      }
      return exited;
    },
  };
}

/** Runs `clawbot ...args` to its end; resolves { code, signal, stdout, stderr }. */
export function runClawbotCommand(args, { cwd, timeoutMs = 20000, env = process.env } = {}) {
  const bin = requireBinary();
  const proc = spawn(bin, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`clawbot ${args.join(' ')} still running after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    proc.once('error', reject);
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

/**
 * `clawbot gateway keys create --name NAME [--rpm N] [--tpm N] [--audio-seconds-per-hour N] [--admin]
 * --config FILE`: returns the printed key.
 */
export async function createKey(configFile, name, { rpm, tpm, audioSecondsPerHour, admin } = {}) {
  const args = ['gateway', 'keys', 'create', '--name', name, '--config', configFile];
  if (rpm !== undefined) args.push('--rpm', String(rpm));
  if (tpm !== undefined) args.push('--tpm', String(tpm));
  if (audioSecondsPerHour !== undefined) args.push('--audio-seconds-per-hour', String(audioSecondsPerHour));
  if (admin) args.push('--admin');
  const r = await runClawbotCommand(args);
  if (r.code !== 0 || !/^cbk_[0-9a-f]{12}_[0-9A-Za-z]{32}\n$/.test(r.stdout))
    throw new Error(`keys create failed (code ${r.code}):\nstdout: ${r.stdout}\nstderr: ${r.stderr}`);
  const key = r.stdout.trim();
  return { key, id: key.slice(4, 16) };
}

/** The id of a key (the 12 hex digits after cbk_). */
export const keyId = (key) => key.slice(4, 16);

// ---------------------------------------------------------------------------------------------- upstream

/**
 * A minimal OpenAI-like upstream on 127.0.0.1 (or `host`), port 0 (or `port`: the same again after a kill()):
 *   GET  /health               {"status":"ok","upstream":NAME}
 *   GET  /v1/models            one model, `model`
 *   POST /v1/chat/completions  `words` as the answer, with usage `usage`; streamed when asked, one event per
 *                              word `chunkDelayMs` apart, and a usage-only chunk (choices: []) only when
 *                              stream_options.include_usage is true
 * Every answer (and every chunk) says which upstream answered (`upstream`) and the Authorization header it
 * received (`authorization`, null when none). `options` may be changed while it runs: `status` (answer every
 * request but /health with this status and an error body), `delayMs` (before the answer's headers),
 * `finalFields` (more top-level fields of a stream's last chunk, as a knowledge base's citations),
 * `healthStatus`. Each request is recorded in `requests` as { method, url, headers, body (parsed JSON) }.
 * Returns { url, port, name, options, requests, close(), kill() }: kill() also destroys open connections.
 */
export async function startUpstream({ name = 'up', host = '127.0.0.1', port: listenPort = 0, model = 'test-model',
  words = ['Hello', ' from', ' the', ' upstream'], usage = { prompt_tokens: 4, completion_tokens: 3 },
  chunkDelayMs = 0, delayMs = 0, status = 0, healthStatus = 200 } = {}) {
  const options = { name, model, words, usage, chunkDelayMs, delayMs, status, healthStatus };
  const requests = [];
  const sockets = new Set();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
  const server = http.createServer(async (req, res) => {
    let text = '';
    req.setEncoding('utf8');
    for await (const chunk of req) text += chunk;
    let body = null;
    try {
      body = text ? JSON.parse(text) : null;
    } catch {
      body = text;
    }
    const authorization = req.headers.authorization ?? null;
    const url = new URL(req.url, 'http://x');
    const send = (code, value) => {
      res.writeHead(code, { 'content-type': 'application/json' });
      res.end(JSON.stringify(value));
    };
    if (url.pathname === '/health') {
      send(options.healthStatus, { status: options.healthStatus === 200 ? 'ok' : 'down', upstream: options.name });
      return;
    }
    requests.push({ method: req.method, url: req.url, headers: req.headers, body });
    if (options.delayMs > 0) await sleep(options.delayMs);
    if (options.status) {
      send(options.status, { error: { message: `upstream ${options.name} answers ${options.status}`,
        type: 'server_error', code: null }, upstream: options.name });
      return;
    }
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      send(200, { object: 'list', data: [{ id: options.model, object: 'model', owned_by: options.name }],
        upstream: options.name, authorization });
      return;
    }
    if (req.method !== 'POST' || url.pathname !== '/v1/chat/completions') {
      send(404, { error: { message: `no route ${req.method} ${url.pathname}`, type: 'invalid_request_error',
        code: 'not_found' } });
      return;
    }
    const id = `chatcmpl-${options.name}-${requests.length}`;
    const created = Math.floor(Date.now() / 1000);
    const modelName = body?.model ?? options.model;
    const fullUsage = { ...options.usage,
      total_tokens: options.usage.prompt_tokens + options.usage.completion_tokens };
    const common = { id, created, model: modelName, upstream: options.name, authorization };
    if (!body?.stream) {
      send(200, { ...common, object: 'chat.completion',
        choices: [{ index: 0, message: { role: 'assistant', content: options.words.join('') },
          finish_reason: 'stop' }],
        usage: fullUsage });
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    const event = (value) => res.write(`data: ${JSON.stringify(value)}\n\n`);
    const chunk = (delta, finish = null, extra = {}) => event({ ...common, object: 'chat.completion.chunk',
      choices: [{ index: 0, delta, finish_reason: finish }], ...extra });
    chunk({ role: 'assistant', content: '' });
    for (const w of options.words) {
      if (options.chunkDelayMs > 0) await sleep(options.chunkDelayMs);
      if (res.destroyed) return;
      chunk({ content: w });
    }
    chunk({}, 'stop', options.finalFields ?? {});
    if (body.stream_options?.include_usage === true)
      event({ ...common, object: 'chat.completion.chunk', choices: [], usage: fullUsage });
    res.end('data: [DONE]\n\n');
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(listenPort, host, resolve);
  });
  const port = server.address().port;
  const shown = host.includes(':') ? `[${host}]` : host;
  const close = () => new Promise((resolve) => {
    server.close(() => resolve());
    server.closeIdleConnections?.();
  });
  return {
    url: `http://${shown}:${port}`,
    port,
    name,
    options,
    requests,
    close,
    kill() {
      for (const s of sockets) s.destroy();
      return close();
    },
  };
}

// ---------------------------------------------------------------------------------------------- requests

/**
 * One HTTP(S) request on a connection of its own. `body` (an object) is sent as JSON; a string or a Buffer as
 * it is. Extra options go to http(s).request: localAddress, family, ca, cert, key, servername ... Resolves
 * { status, headers, text, json } (json undefined when the body is not JSON).
 */
export function request(url, { method, headers = {}, body, timeoutMs = 15000, ...options } = {}) {
  const payload = body === undefined || typeof body === 'string' || Buffer.isBuffer(body) ? body : JSON.stringify(body);
  const allHeaders = { ...headers };
  if (payload !== undefined && !Object.keys(allHeaders).some((h) => h.toLowerCase() === 'content-type'))
    allHeaders['content-type'] = 'application/json';
  const lib = url.startsWith('https:') ? https : http;
  return new Promise((resolve, reject) => {
    const req = lib.request(url, {
      method: method ?? (payload === undefined ? 'GET' : 'POST'),
      headers: allHeaders,
      agent: false,
      timeout: timeoutMs,
      ...options,
    }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c) => { text += c; });
      res.on('end', () => {
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(payload);
  });
}

/** The `data:` payloads of an event stream's text, in order (comments dropped). */
export function sseData(text) {
  const events = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block.split(/\r?\n/).filter((l) => l.startsWith('data:')).map((l) => l.slice(5).replace(/^ /, ''));
    if (data.length > 0) events.push(data.join('\n'));
  }
  return events;
}

/** Authorization header for a key. */
export const bearer = (key) => ({ authorization: `Bearer ${key}` });

/** A chat request body. */
export function chat(content = 'Say hello', extra = {}) {
  return { model: 'test-model', messages: [{ role: 'user', content }], max_tokens: 8, ...extra };
}

/** Polls `predicate` (maybe async) every `stepMs` until it is truthy or `ms` pass; returns its last value. */
export async function waitUntil(predicate, ms, stepMs = 25) {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = await predicate();
    if (value || Date.now() >= deadline) return value;
    await new Promise((r) => setTimeout(r, stepMs));
  }
}

/** True when this machine can bind the IPv6 loopback ::1. */
export function hasIpv6Loopback() {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(0, '::1', () => s.close(() => resolve(true)));
  });
}
