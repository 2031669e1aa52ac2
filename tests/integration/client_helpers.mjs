// Helpers for tests of the front-end commands (ask, chat, config): a config file in a temp folder, and
// running clawbot with an environment and piped input.
import { spawn } from 'node:child_process';
import net from 'node:net';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { requireBinary } from './server_harness.mjs';

/** A temp folder with a clawbot.json holding `config`; returns { dir, file, env }. */
export function writeConfig(config, prefix = 'clawbot-client-') {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const file = path.join(dir, 'clawbot.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  return {
    dir,
    file,
    // A private home, so no user config or session store of the machine leaks in.
    env: { ...process.env, CLAWBOT_CONFIG: file, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'xdg-config'),
      XDG_DATA_HOME: path.join(dir, 'xdg-data') },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

/** Runs clawbot; resolves { code, signal, stdout, stderr, ms }. `input` is written to stdin (else /dev/null). */
export function runClient(args, { env, input, timeoutMs = 30000, cwd } = {}) {
  const bin = requireBinary();
  const started = Date.now();
  const proc = spawn(bin, args, { env, cwd, stdio: [input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
  if (input !== undefined) proc.stdin.end(input);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`clawbot ${args.join(' ')} still running after ${timeoutMs} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`));
    }, timeoutMs);
    proc.once('error', reject);
    proc.once('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr, ms: Date.now() - started });
    });
  });
}

/** An OpenAI-style event stream that says `words`, one event each. */
export function sseAnswer(res, words, { finish = 'stop', promptTokens = 7 } = {}) {
  res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-cache' });
  for (const w of words)
    res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', model: 'stub', choices: [{ index: 0, delta: { content: w }, finish_reason: null }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', model: 'stub', choices: [{ index: 0, delta: {}, finish_reason: finish }] })}\n\n`);
  res.write(`data: ${JSON.stringify({ object: 'chat.completion.chunk', model: 'stub', choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: words.length } })}\n\n`);
  res.end('data: [DONE]\n\n');
}

/** A port that was free a moment ago on 127.0.0.1: nothing listens there. */
export async function freePort() {
  const server = net.createServer();
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address();
  await new Promise((resolve) => server.close(resolve));
  return port;
}
