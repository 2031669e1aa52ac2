// `clawbot top` in a real terminal (tmux): against a stories260K node under a `clawbot bench` load it shows
// tokens/s above 0, the slots and the memory bar with its 90% mark, redraws at a new size and quits on q with
// status 0; a node that is not there yet is "unreachable" until it comes up, and Ctrl-C exits 130; against a
// gateway with keys, clawbot.json's endpoint and key (no URL given) show the upstream table, an upstream that
// stops turns down, and without the key it says 401.
//
// Run: CLAWBOT_BIN=build/clawbot CLAWBOT_MODELS=../shared/models node --test tests/integration/top.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';

import { clawbotBin, killProcess, startServer } from './server_harness.mjs';
import { freePort, runClient, writeConfig } from './client_helpers.mjs';
import { bearer, chat, createKey, request, startGateway, startUpstream, tempDir, writeGatewayConfig } from './gateway_helpers.mjs';
import { Terminal } from './terminal.mjs';

/** `clawbot bench` for `seconds` against `url`, in the background; resolves when it has been stopped. */
function benchLoad(url, seconds) {
  const proc = spawn(clawbotBin(), ['bench', '--url', url, '--concurrency', '2', '--duration', String(seconds),
    '--max-tokens', '32', '--prompt-tokens', '16', '--json'], { stdio: 'ignore' });
  return { stop: () => killProcess(proc, 1000) };
}

/** The number after `label` on the screen's line that starts with `row` (NaN when absent). */
function figure(screen, row, label) {
  const line = screen.split('\n').find((l) => l.startsWith(row)) ?? '';
  const m = new RegExp(`${label} ([\\d.]+)`).exec(line);
  return m ? Number(m[1]) : NaN;
}

/** The memory bar's cells, between its brackets. */
function memoryBar(screen) {
  const m = /^memory +\[([#.|]+)\] (\d+)% of [\d.]+ [GM]iB used/m.exec(screen);
  return m ? { cells: m[1], percent: Number(m[2]) } : null;
}

/** Waits until `check(screen)` holds; throws with the screen when it does not within `timeoutMs`. */
async function waitForScreen(term, what, check, timeoutMs = 90000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = term.screen();
    if (check(s)) return s;
    if (Date.now() > deadline) throw new Error(`the terminal never showed ${what}:\n${s}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The shell line that runs `clawbot top ARGS`: with no clawbot.json but `config`'s (a private home). */
const command = (dir, args, config = null) => `unset CLAWBOT_CONFIG; export LANG=C.UTF-8 HOME='${dir}' ` +
  `XDG_CONFIG_HOME='${dir}/xdg'${config ? ` CLAWBOT_CONFIG='${config}'` : ''}; cd '${dir}'; '${clawbotBin()}' top ${args}`;

test('a node under load: tokens/s, slots, the memory bar with its 90% mark; a resize redraws; q quits with 0', async () => {
  const dir = tempDir('clawbot-top-');
  const srv = await startServer({ extraArgs: ['--parallel', '2'] });
  const load = benchLoad(srv.baseUrl, 120);
  const term = new Terminal(dir, command(dir, `${srv.baseUrl} --interval 1`));
  try {
    const screen = await waitForScreen(term, 'tokens/s above 0', (s) => figure(s, 'tokens/s', 'out') > 0);
    assert.match(screen, /^clawbot top {2}http:\/\/127\.0\.0\.1:\d+ {2}\(node\) {2}every 1 s/m, screen);
    assert.match(screen, /^slots +\d\/2 busy {3}queue \d+ {3}KV cache \d+%/m, screen);
    assert.match(screen, /^latency +TTFT P50 \d+ ms P99 \d+ ms/m, screen);
    const bar = memoryBar(screen);
    assert.ok(bar, `no memory bar:\n${screen}`);
    assert.equal(bar.cells.length, 50, screen);  // 160 columns: the widest bar
    assert.equal(bar.cells[Math.floor(0.9 * bar.cells.length)], '|', `the 90% mark:\n${screen}`);
    assert.match(screen, /^GPU +no GPU/m, screen);
    assert.doesNotMatch(screen, /unreachable/, screen);

    term.tmux('resize-window', '-t', 't', '-x', '90', '-y', '30');
    await waitForScreen(term, 'an 18-cell memory bar at 90 columns', (s) => memoryBar(s)?.cells.length === 18);

    term.key('q');
    await term.waitFor(/\[exit 0\]/, { timeoutMs: 10000 });
  } finally {
    term.close();
    await load.stop();
    await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a node that is not there yet is unreachable until it comes up; Ctrl-C exits 130', async () => {
  const dir = tempDir('clawbot-top-');
  const port = await freePort();
  const term = new Terminal(dir, command(dir, `http://127.0.0.1:${port}/v1 --interval 1`));
  let srv;
  try {
    await waitForScreen(term, 'unreachable', (s) => /^unreachable: cannot connect to http:\/\/127\.0\.0\.1:\d+: connection refused/m.test(s));
    srv = await startServer({ port });
    await waitForScreen(term, 'the node once it is up', (s) => /^slots +\d+\/\d+ busy/m.test(s) && !/unreachable/.test(s));
    term.key('C-c');
    await term.waitFor(/\[exit 130\]/, { timeoutMs: 10000 });
  } finally {
    term.close();
    if (srv) await srv.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('a gateway with keys: clawbot.json\'s endpoint and key, the upstream table, a stopped upstream, 401 without the key', async () => {
  const dir = tempDir('clawbot-top-gw-');
  const upA = await startUpstream({ name: 'node-a' });
  const upB = await startUpstream({ name: 'node-b' });
  const config = {
    listen: [{ host: '127.0.0.1', port: 0 }],
    upstreams: [{ url: upA.url, name: 'node-a' }, { url: upB.url, name: 'node-b' }],
    health_checks: { interval_ms: 200, timeout_ms: 500 },
  };
  const { key } = await createKey(writeGatewayConfig(dir, config), 'top');
  const gw = await startGateway(config, { dir });
  const cfg = writeConfig({ model_endpoint: gw.url, api_key: key });
  const term = new Terminal(dir, command(cfg.dir, '--interval 1', cfg.file));
  const denied = new Terminal(dir, command(dir, `${gw.url} --interval 1`));
  let sending = true;
  const traffic = (async () => {
    while (sending) {
      await request(`${gw.url}/v1/chat/completions`, { body: chat(), headers: bearer(key) }).catch(() => {});
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  try {
    let screen = await waitForScreen(term, 'both upstreams up, with requests',
      (s) => /^node-a +up +\d+ +[\d.]+ +[\d.]+/m.test(s) && /^node-b +up +\d+ +[\d.]+ +[\d.]+/m.test(s) &&
        figure(s, 'tokens/s', 'requests/s') > 0);
    assert.match(screen, /\(gateway\)/, screen);
    assert.match(screen, /^upstream +state +in flight +req\/s +errors\/s +P50 +P99/m, screen);
    assert.match(screen, /^requests +\d+ in flight {3}queue \d+/m, screen);
    await denied.waitFor(/HTTP 401 from \/metrics: the server wants an API key/, { timeoutMs: 20000 });

    await upB.kill();
    screen = await waitForScreen(term, 'node-b no longer up', (s) => /^node-b +(down|open|half_open) /m.test(s));
    assert.match(screen, /^node-a +up /m, screen);
    term.key('q');
    await term.waitFor(/\[exit 0\]/, { timeoutMs: 10000 });
  } finally {
    sending = false;
    await traffic;
    term.close();
    denied.close();
    await gw.stop('SIGKILL');
    await upA.kill();
    await upB.kill();
    cfg.cleanup();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test('usage mistakes are status 2 with a message: no terminal, a bad interval, a bad URL', async () => {
  const cfg = writeConfig({});
  const { env } = cfg;
  const piped = await runClient(['top', 'http://127.0.0.1:1'], { env });
  assert.equal(piped.code, 2, piped.stderr);
  assert.match(piped.stderr, /clawbot top: draws on a terminal/);
  const interval = await runClient(['top', 'http://127.0.0.1:1', '--interval', '0'], { env });
  assert.equal(interval.code, 2, interval.stderr);
  assert.match(interval.stderr, /--interval 0 must be between 0\.2 and 3600 seconds/);
  const url = await runClient(['top', 'ftp://127.0.0.1:1'], { env });
  assert.equal(url.code, 2, url.stderr);
  assert.match(url.stderr, /clawbot top: .*ftp/);
  cfg.cleanup();
});
