// Shared helpers for black-box tests of `clawbot serve`.
//
// Environment:
//   CLAWBOT_BIN     path to the clawbot binary (default: <repo>/build/clawbot)
//   CLAWBOT_MODELS  colon-separated list of model directories; the first entry
//                   is used (default: <repo>/../shared/models)
//
// Missing binary or missing model is a hard failure (thrown Error), never a skip.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import assert from 'node:assert/strict';
import { before, after } from 'node:test';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

// Children (serve, models synth) look for models relative to their own working directory unless told:
// tell them where the repository's default is, wherever the tests are started from.
if (!process.env.CLAWBOT_MODELS) process.env.CLAWBOT_MODELS = path.resolve(REPO_ROOT, '..', 'shared', 'models');

export const MODEL_FILE = 'stories260K.gguf';
// Qwen3's own Jinja chat template (tools, <tool_call>, <think>), which `serve --chat-template FILE` runs on any
// model: with stories260K, the grammar still forces the form of a tool call or a JSON answer.
export const QWEN3_TEMPLATE = path.join(REPO_ROOT, 'tests', 'fixtures', 'templates', 'Qwen-Qwen3-0.6B.jinja');
export const MODEL_ID = 'stories260K';

const READY_RE = /^clawbot serve: listening on (https?:\/\/127\.0\.0\.1:(\d+))$/;
const MAX_CAPTURE = 1 << 20; // keep at most 1 MiB of each stream for diagnostics

export function clawbotBin() {
  return process.env.CLAWBOT_BIN || path.join(REPO_ROOT, 'build', 'clawbot');
}

export function modelsDir() {
  const env = process.env.CLAWBOT_MODELS;
  const first = env ? env.split(':').find((p) => p.length > 0) : undefined;
  return first || path.resolve(REPO_ROOT, '..', 'shared', 'models');
}

/** Absolute path of the test model; throws (fails the test) if it is missing. */
export function modelPath(file = MODEL_FILE) {
  const p = path.join(modelsDir(), file);
  if (!fs.existsSync(p)) {
    throw new Error(
      `test model not found: ${p} (set CLAWBOT_MODELS to a directory containing ${file})`,
    );
  }
  return p;
}

/** Throws (fails the test) if the binary is missing or not executable. */
export function requireBinary() {
  const bin = clawbotBin();
  try {
    fs.accessSync(bin, fs.constants.X_OK);
  } catch {
    throw new Error(`clawbot binary not found or not executable: ${bin} (build it or set CLAWBOT_BIN)`);
  }
  return bin;
}

function capture(stream, sink) {
  stream.setEncoding('utf8');
  stream.on('data', (chunk) => {
    if (sink.text.length < MAX_CAPTURE) sink.text += chunk;
  });
}

function waitExit(proc, ms) {
  if (proc.exitCode !== null || proc.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => {
      proc.off('exit', onExit);
      resolve(false);
    }, ms);
    function onExit() {
      clearTimeout(t);
      resolve(true);
    }
    proc.once('exit', onExit);
  });
}

/** SIGTERM, then SIGKILL after `graceMs` if it is still alive. */
export async function killProcess(proc, graceMs = 5000) {
  if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
  try {
    proc.kill('SIGTERM');
  } catch {
    return;
  }
  if (await waitExit(proc, graceMs)) return;
  try {
    proc.kill('SIGKILL');
  } catch {
    return;
  }
  await waitExit(proc, 5000);
}

/**
 * Start `clawbot serve` on an OS-chosen port and wait for the readiness line.
 * Returns { proc, baseUrl, port, stdout(), stderr(), stop() }.
 */
export async function startServer({ extraArgs = [], timeoutMs = 60000, model, port = 0 } = {}) {
  const bin = requireBinary();
  const mp = model ?? modelPath();
  const args = [
    'serve',
    '--model', mp,
    '--host', '127.0.0.1',
    '--port', String(port),
    // defaults that extraArgs may override
    ...(extraArgs.includes('--chat-template') ? [] : ['--chat-template', 'chatml']),
    ...(extraArgs.includes('--ctx') ? [] : ['--ctx', '512']),
    // One thread: ctest runs two tests at once on a 2-core machine, and ggml's spinning worker threads slow
    // down many times over when another process holds the other core.
    ...(extraArgs.includes('--threads') ? [] : ['--threads', '1']),
    ...extraArgs,
  ];
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  const out = { text: '' };
  const err = { text: '' };
  capture(proc.stderr, err);
  proc.stdout.setEncoding('utf8');

  const ready = new Promise((resolve, reject) => {
    let buf = '';
    let done = false;
    const finish = (fn, v) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      fn(v);
    };
    const timer = setTimeout(() => {
      finish(reject, new Error(
        `clawbot serve did not print the readiness line within ${timeoutMs} ms\n` +
        `command: ${bin} ${args.join(' ')}\nstdout:\n${out.text}\nstderr:\n${err.text}`,
      ));
    }, timeoutMs);
    proc.stdout.on('data', (chunk) => {
      if (out.text.length < MAX_CAPTURE) out.text += chunk;
      if (done) return;
      buf += chunk;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, '');
        buf = buf.slice(nl + 1);
        const m = READY_RE.exec(line);
        if (m) {
          finish(resolve, { baseUrl: m[1], port: Number(m[2]) });
          return;
        }
      }
    });
    proc.once('error', (e) => finish(reject, new Error(`failed to spawn ${bin}: ${e.message}`)));
    proc.once('exit', (code, signal) => {
      // Give the stderr pipe a moment to drain before reporting.
      setTimeout(() => finish(reject, new Error(
        `clawbot serve exited before becoming ready (code=${code}, signal=${signal})\n` +
        `command: ${bin} ${args.join(' ')}\nstdout:\n${out.text}\nstderr:\n${err.text}`,
      )), 50);
    });
  });

  let info;
  try {
    info = await ready;
  } catch (e) {
    await killProcess(proc);
    throw e;
  }
  assert.ok(info.port > 0 && info.port < 65536, `bad port in readiness line: ${info.port}`);
  return {
    proc,
    baseUrl: info.baseUrl,
    port: info.port,
    stdout: () => out.text,
    stderr: () => err.text,
    stop: () => killProcess(proc),
  };
}

/**
 * A server for the tests of one describe(): started before them, stopped after. Returns an object whose
 * `server` and `base` (its URL) are set once it runs.
 */
export function suiteServer(options) {
  const suite = { server: undefined, base: undefined };
  before(async () => {
    suite.server = await startServer(options);
    suite.base = suite.server.baseUrl;
  });
  after(async () => suite.server && (await suite.server.stop()));
  return suite;
}

/**
 * Run clawbot with arbitrary args and wait for it to exit (used for startup
 * failure cases). If it is still running after `timeoutMs` it is killed and
 * `timedOut` is true. Returns { code, signal, stdout, stderr, timedOut }.
 */
export async function runClawbot(args, { timeoutMs = 30000, cwd } = {}) {
  const bin = requireBinary();
  const proc = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'], cwd });
  const out = { text: '' };
  const err = { text: '' };
  capture(proc.stdout, out);
  capture(proc.stderr, err);
  let timedOut = false;
  const result = await new Promise((resolve, reject) => {
    const timer = setTimeout(async () => {
      timedOut = true;
      await killProcess(proc);
    }, timeoutMs);
    proc.once('error', (e) => {
      clearTimeout(timer);
      reject(new Error(`failed to spawn ${bin}: ${e.message}`));
    });
    // 'close' fires after the stdio streams are drained.
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal });
    });
  });
  return { ...result, stdout: out.text, stderr: err.text, timedOut };
}

// ---------------------------------------------------------------------------
// HTTP helpers

export const REQUEST_TIMEOUT_MS = 30000;

/** POST a JSON value (or a raw string body) and return { res, status, headers, json, text }. */
export async function postJson(baseUrl, route, body, { raw = false, timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const res = await fetch(baseUrl + route, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: raw ? body : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  return readResponse(res);
}

export async function getJson(baseUrl, route, { method = 'GET', timeoutMs = REQUEST_TIMEOUT_MS } = {}) {
  const res = await fetch(baseUrl + route, { method, signal: AbortSignal.timeout(timeoutMs) });
  return readResponse(res);
}

async function readResponse(res) {
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { res, status: res.status, headers: res.headers, text, json };
}

/**
 * Read a `text/event-stream` body and return the list of raw `data:` payloads
 * (strings), one per event, in order. Asserts every event consists only of
 * `data:` lines (comment lines starting with ':' are tolerated and dropped).
 * `onEvent(payload)` may return true to stop reading early.
 */
export async function readSse(res, onEvent) {
  const reader = res.body.getReader();
  const decoder = new TextDecoder();
  const events = [];
  let buf = '';
  let stopped = false;
  let finished = false;
  const handleBlock = (block) => {
    const lines = block.split(/\r?\n/).filter((l) => l.length > 0);
    const data = [];
    for (const l of lines) {
      if (l.startsWith(':')) continue; // SSE comment / keep-alive
      assert.ok(l.startsWith('data:'), `unexpected SSE line (only "data:" lines expected): ${JSON.stringify(l)}`);
      data.push(l.slice(5).replace(/^ /, ''));
    }
    if (data.length === 0) return false;
    const payload = data.join('\n');
    events.push(payload);
    return onEvent ? onEvent(payload) === true : false;
  };
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += decoder.decode(value, { stream: true });
      let m;
      while ((m = /\r?\n\r?\n/.exec(buf))) {
        const block = buf.slice(0, m.index);
        buf = buf.slice(m.index + m[0].length);
        if (handleBlock(block)) {
          stopped = true;
          break;
        }
      }
      if (stopped) break;
    }
    if (!stopped) {
      buf += decoder.decode();
      assert.equal(buf.trim(), '', `SSE stream ended with an unterminated event: ${JSON.stringify(buf)}`);
      finished = true;
    }
  } finally {
    // On early stop or on a failed assertion, drop the connection.
    if (!finished) await reader.cancel().catch(() => {});
    else reader.releaseLock();
  }
  return events;
}

// ---------------------------------------------------------------------------
// Shape assertions

export function assertUsage(usage, { maxTokens } = {}) {
  assert.ok(usage && typeof usage === 'object', `usage missing: ${JSON.stringify(usage)}`);
  for (const k of ['prompt_tokens', 'completion_tokens', 'total_tokens']) {
    assert.ok(Number.isInteger(usage[k]) && usage[k] >= 0, `usage.${k} must be a non-negative integer: ${JSON.stringify(usage)}`);
  }
  assert.ok(usage.prompt_tokens > 0, `usage.prompt_tokens must be > 0: ${JSON.stringify(usage)}`);
  assert.equal(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens, `total_tokens != prompt+completion: ${JSON.stringify(usage)}`);
  if (maxTokens !== undefined) {
    assert.ok(usage.completion_tokens <= maxTokens, `completion_tokens ${usage.completion_tokens} > max_tokens ${maxTokens}`);
  }
}

export function assertCreated(created) {
  assert.ok(Number.isInteger(created), `created must be an integer: ${created}`);
  const now = Date.now() / 1000;
  assert.ok(created > 1.6e9 && created < now + 3600, `created must be unix seconds near now: ${created}`);
}

/** Assert an OpenAI-style error response; returns the `error` object. */
export function assertErrorBody(r, expectedStatus, { type, code, param, messageIncludes } = {}) {
  const ctx = `status=${r.status} body=${r.text.slice(0, 500)}`;
  assert.equal(r.status, expectedStatus, `expected HTTP ${expectedStatus}; ${ctx}`);
  const ct = r.headers.get('content-type') || '';
  assert.match(ct, /^application\/json\b/i, `error Content-Type must be application/json, got "${ct}"; ${ctx}`);
  assert.ok(r.json && typeof r.json === 'object' && !Array.isArray(r.json), `error body must be a JSON object; ${ctx}`);
  const e = r.json.error;
  assert.ok(e && typeof e === 'object' && !Array.isArray(e), `missing "error" object; ${ctx}`);
  assert.equal(typeof e.message, 'string', `error.message must be a string; ${ctx}`);
  assert.ok(e.message.length > 0, `error.message must be non-empty; ${ctx}`);
  assert.equal(typeof e.type, 'string', `error.type must be a string; ${ctx}`);
  assert.ok(e.type.length > 0, `error.type must be non-empty; ${ctx}`);
  assert.ok('param' in e, `error.param must be present (string or null); ${ctx}`);
  assert.ok(e.param === null || typeof e.param === 'string', `error.param must be string|null; ${ctx}`);
  assert.ok('code' in e, `error.code must be present (string or null); ${ctx}`);
  assert.ok(e.code === null || typeof e.code === 'string', `error.code must be string|null; ${ctx}`);
  if (type !== undefined) assert.equal(e.type, type, `error.type; ${ctx}`);
  if (code !== undefined) assert.equal(e.code, code, `error.code; ${ctx}`);
  if (param instanceof RegExp) assert.match(String(e.param), param, `error.param; ${ctx}`);
  else if (param !== undefined) assert.equal(e.param, param, `error.param; ${ctx}`);
  if (messageIncludes !== undefined) {
    for (const s of [].concat(messageIncludes)) {
      assert.ok(e.message.includes(s), `error.message should mention ${JSON.stringify(s)}; ${ctx}`);
    }
  }
  return e;
}
