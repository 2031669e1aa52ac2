// mDNS/DNS-SD between two network namespaces joined by a veth pair (made here in a user namespace, no root
// needed; removed after): a real
// `clawbot serve` advertises in one, and `clawbot discover`, `model_endpoint: "auto"` (ask, doctor, config
// show) find it from the other — first with the built-in responder and querier and no daemon anywhere, then
// with avahi-daemon running in a namespace: `avahi-browse` sees our node, our browser sees what
// `avahi-publish` announces, goodbyes withdraw, and "auto" prefers a reachable gateway.
// Never skips: where the namespaces or Avahi cannot run, the tests fail and say why.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/discovery.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { clawbotBin, modelPath, requireBinary, MODEL_ID } from './server_harness.mjs';
import { makeLan, startAvahi, waitFor } from './netns.mjs';

const BUILTIN = { CLAWBOT_MDNS: 'builtin' };

/** Starts `clawbot serve` on 0.0.0.0 in `ns`; resolves { proc, port } once it listens and has announced. */
async function startServe(lan, ns, { env = process.env, extraArgs = [], announced = /mdns: (announcing|advertising)/ } = {}) {
  const proc = lan.spawn(ns, [requireBinary(), 'serve', '--model', modelPath(), '--host', '0.0.0.0', '--port', '0',
    '--ctx', '256', '--threads', '1', '--chat-template', 'chatml', ...extraArgs], { env });
  let port = 0;
  const ok = await waitFor(() => {
    const m = /listening on http:\/\/0\.0\.0\.0:(\d+)/.exec(proc.out());
    if (m) port = Number(m[1]);
    return (port > 0 && announced.test(proc.err())) || proc.exitCode !== null;
  }, 60000);
  assert.ok(ok && proc.exitCode === null, `serve did not start and announce:\n${proc.out()}\n${proc.err()}`);
  return { proc, port };
}

async function stop(proc) {
  proc.kill('SIGTERM');
  assert.ok(await waitFor(() => proc.exitCode !== null || proc.signalCode !== null, 10000), 'stopped within 10 s');
}

/** A config dir (clawbot.json with model_endpoint auto, private HOME and cache) for client commands. */
function clientEnv(lan, extra = {}) {
  const dir = lan.tempDir('clawbot-auto-');
  const file = path.join(dir, 'clawbot.json');
  fs.writeFileSync(file, JSON.stringify({ model_endpoint: 'auto', max_tokens: 4, network_timeout: 10000 }));
  return {
    dir,
    cacheFile: path.join(dir, 'cache', 'clawbot', 'endpoint.json'),
    env: { ...process.env, CLAWBOT_CONFIG: file, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg'),
      XDG_DATA_HOME: path.join(dir, 'data'), XDG_CACHE_HOME: path.join(dir, 'cache'), ...extra },
  };
}

async function discoverJson(lan, ns, env) {
  const r = await lan.run(ns, [clawbotBin(), 'discover', '--json', '--timeout', '1500'], { env });
  let list;
  try {
    list = JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`discover --json printed no JSON (${e.message}):\n${r.stdout}\n${r.stderr}`);
  }
  return { ...r, list };
}

describe('mDNS with the built-in responder and querier (no daemon), between two namespaces', () => {
  let lan;
  let serve;
  before(async () => {
    lan = await makeLan();
    serve = await startServe(lan, lan.a, { env: { ...process.env, ...BUILTIN } });
  });
  after(async () => {
    await lan?.destroy();
  });

  test('serve announces with the built-in responder on the LAN interface', () => {
    assert.match(serve.proc.err(), new RegExp(`announcing 'clawbot node on [^']+' \\(_clawbot\\._tcp port ${serve.port}\\) on \\S+ ${lan.addrA.replaceAll('.', '\\.')} \\(built-in responder\\)`));
  });

  test('discover --json in the other namespace finds the node, its TXT record and its latency', async () => {
    const { code, list, stderr } = await discoverJson(lan, lan.b, { ...process.env, ...BUILTIN });
    assert.equal(code, 0, stderr);
    const node = list.find((s) => s.port === serve.port);
    assert.ok(node, `our node is listed: ${JSON.stringify(list)}`);
    assert.equal(node.address, lan.addrA);
    assert.equal(node.role, 'node');
    assert.equal(node.model, MODEL_ID);
    assert.equal(node.api, '/v1');
    assert.equal(node.tls, false);
    assert.equal(node.auth, false);
    assert.match(node.version, /^\d+\.\d+\.\d+$/);
    assert.equal(node.source, 'builtin');
    assert.equal(node.url, `http://${lan.addrA}:${serve.port}`);
    assert.equal(node.reachable, true, node.error);
    assert.equal(node.status, 200);
    assert.ok(node.latency_ms > 0, `latency ${node.latency_ms}`);
    assert.ok(node.ttl > 0 && node.ttl <= 4500);
  });

  test('discover prints a table: name, address, port, role, model, TLS, auth, latency', async () => {
    const r = await lan.run(lan.b, [clawbotBin(), 'discover', '--timeout', '1500'], { env: { ...process.env, ...BUILTIN } });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^NAME +ADDRESS +PORT +ROLE +MODEL +TLS +AUTH +LATENCY$/m);
    assert.match(r.stdout, new RegExp(`^clawbot node on .+ ${lan.addrA.replaceAll('.', '\\.')} +${serve.port} +node +${MODEL_ID} +no +no +[\\d.]+ ms$`, 'm'));
  });

  test('model_endpoint "auto": ask finds the node, caches the choice with its TTL, and reuses it', async () => {
    const c = clientEnv(lan, BUILTIN);
    const first = await lan.run(lan.b, [clawbotBin(), 'ask', 'Once upon a time'], { env: c.env });
    assert.ok(first.code === 0 || (first.code === 1 && /cut off at max_tokens/.test(first.stderr)), `ask failed:\n${first.stdout}\n${first.stderr}`); // max_tokens 4: a cut answer is exit 1
    assert.match(first.stderr, new RegExp(`model_endpoint auto: http://${lan.addrA.replaceAll('.', '\\.')}:${serve.port} \\('clawbot node on [^']+', node; found now via builtin mDNS\\)`));
    assert.ok(first.stdout.length > 0, 'an answer was printed');
    const cache = JSON.parse(fs.readFileSync(c.cacheFile, 'utf8'));
    assert.equal(cache.url, `http://${lan.addrA}:${serve.port}`);
    const now = Date.now() / 1000;
    assert.ok(cache.expires > now && cache.expires <= now + 4500, `expires ${cache.expires} (now ${now})`);

    const second = await lan.run(lan.b, [clawbotBin(), 'ask', 'Once upon a time'], { env: c.env });
    assert.ok(second.code === 0 || (second.code === 1 && /cut off at max_tokens/.test(second.stderr)), second.stderr); // max_tokens 4: a cut answer is exit 1
    assert.doesNotMatch(second.stderr, /found now/, 'the cached choice is used: no second browse');
  });

  test('a cached choice that no longer answers is dropped and the LAN is asked again', async () => {
    const c = clientEnv(lan, BUILTIN);
    fs.mkdirSync(path.dirname(c.cacheFile), { recursive: true });
    fs.writeFileSync(c.cacheFile, JSON.stringify({ url: `http://${lan.addrA}:1`, instance: 'gone', role: 'node',
      expires: Math.floor(Date.now() / 1000) + 600 }));
    const r = await lan.run(lan.b, [clawbotBin(), 'ask', 'Hello'], { env: c.env });
    assert.ok(r.code === 0 || (r.code === 1 && /cut off at max_tokens/.test(r.stderr)), r.stderr); // max_tokens 4: a cut answer is exit 1
    assert.match(r.stderr, /found now via builtin mDNS/);
    assert.equal(JSON.parse(fs.readFileSync(c.cacheFile, 'utf8')).url, `http://${lan.addrA}:${serve.port}`);
  });

  test('doctor with "auto" names what mDNS found, then checks it like any endpoint', async () => {
    const c = clientEnv(lan, BUILTIN);
    const r = await lan.run(lan.b, [clawbotBin(), 'doctor', '--json'], { env: c.env, timeoutMs: 60000 });
    const report = JSON.parse(r.stdout);
    const by = Object.fromEntries(report.checks.map((x) => [x.name, x]));
    assert.equal(by.resolve.status, 'ok', JSON.stringify(by.resolve));
    assert.equal(by.resolve.data.auto.url, `http://${lan.addrA}:${serve.port}`);
    assert.equal(by.resolve.data.auto.role, 'node');
    assert.match(by.resolve.detail, /^auto \(mDNS\) -> http:\/\//);
    assert.equal(by.tcp.status, 'ok', JSON.stringify(by.tcp));
    assert.equal(by.models.status, 'ok', JSON.stringify(by.models));
  });

  test('config show says what "auto" resolves to', async () => {
    const c = clientEnv(lan, BUILTIN);
    const r = await lan.run(lan.b, [clawbotBin(), 'config', 'show'], { env: c.env });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^# model_endpoint auto resolves to http://${lan.addrA.replaceAll('.', '\\.')}:${serve.port} `, 'm'));
    const j = await lan.run(lan.b, [clawbotBin(), 'config', 'show', '--json'], { env: c.env });
    assert.equal(JSON.parse(j.stdout).auto.url, `http://${lan.addrA}:${serve.port}`);
  });

  test('nothing on the LAN: discover exits 1, ask and doctor say to set model_endpoint', async () => {
    const alone = lan.addNamespace('C');
    const c = clientEnv(lan, BUILTIN);
    const d = await lan.run(alone, [clawbotBin(), 'discover', '--timeout', '500'], { env: c.env });
    assert.equal(d.code, 1);
    assert.match(d.stderr, /no clawbot node or gateway answered mDNS within 500 ms/);
    const a = await lan.run(alone, [clawbotBin(), 'ask', 'Hello'], { env: c.env });
    assert.equal(a.code, 2, a.stderr);
    assert.match(a.stderr, /no clawbot node or gateway answered mDNS within 2 s on this LAN.*set model_endpoint to the node's URL/s);
    const doc = await lan.run(alone, [clawbotBin(), 'doctor', '--json'], { env: c.env });
    assert.equal(doc.code, 1);
    const resolve = JSON.parse(doc.stdout).checks.find((x) => x.name === 'resolve');
    assert.equal(resolve.status, 'fail');
    assert.match(resolve.detail, /no clawbot node or gateway answered mDNS/);
    assert.match(resolve.fix, /set model_endpoint/);
  });

  test('--no-advertise: a second node is not found', async () => {
    const quiet = await startServe(lan, lan.a, { env: { ...process.env, ...BUILTIN }, extraArgs: ['--no-advertise'], announced: /slots/ });
    const { list } = await discoverJson(lan, lan.b, { ...process.env, ...BUILTIN });
    assert.ok(list.some((s) => s.port === serve.port), 'the first node is still there');
    assert.ok(!list.some((s) => s.port === quiet.port), `the --no-advertise node is not: ${JSON.stringify(list)}`);
    await stop(quiet.proc);
  });
  test('a second node on the same host probes, finds its name taken, and renames itself', async () => {
    const second = await startServe(lan, lan.a, { env: { ...process.env, ...BUILTIN } });
    const name = /announcing '([^']+)'/.exec(serve.proc.err())[1];
    assert.match(second.proc.err(), new RegExp(`another host announces '${name}'; renamed to '${name} \\(2\\)'`));
    const { list } = await discoverJson(lan, lan.b, { ...process.env, ...BUILTIN });
    assert.equal(list.find((s) => s.port === serve.port)?.instance, name, JSON.stringify(list));
    assert.equal(list.find((s) => s.port === second.port)?.instance, `${name} (2)`, JSON.stringify(list));
    await stop(second.proc);
  });
});

describe('mDNS interop with Avahi (avahi-daemon in a namespace)', () => {
  let lan;
  let serve;
  let avahi;
  before(async () => {
    lan = await makeLan();
    avahi = await startAvahi(lan, lan.b, 'avahi-b');
    // No daemon in namespace a: serve there uses the built-in responder, Avahi in b has to hear it.
    serve = await startServe(lan, lan.a, { env: { ...process.env, ...BUILTIN } });
  });
  after(async () => {
    await lan?.destroy();
  });

  async function avahiBrowse() {
    const r = await lan.run(lan.b, ['avahi-browse', '-rtp', '_clawbot._tcp'], { env: avahi.env });
    return r.stdout.split('\n').filter((l) => l.startsWith('=;'));
  }

  test('avahi-browse -rtp _clawbot._tcp sees our node with its TXT record', async () => {
    let lines = [];
    await waitFor(async () => (lines = await avahiBrowse()).some((l) => l.includes(`;${serve.port};`)), 8000, 500);
    const line = lines.find((l) => l.includes(`;${serve.port};`));
    assert.ok(line, `avahi-browse output:\n${lines.join('\n')}`);
    const f = line.split(';');  // =;iface;proto;name;type;domain;host;address;port;txt
    assert.match(f[3], /^clawbot\\032node\\032on\\032/);
    assert.equal(f[7], lan.addrA);
    assert.equal(Number(f[8]), serve.port);
    for (const kv of ['"role=node"', `"model=${MODEL_ID}"`, '"api=/v1"', '"tls=no"', '"auth=no"'])
      assert.ok(f[9].includes(kv), `${kv} in ${f[9]}`);
  });

  test('our built-in browser sees a service that avahi-publish announces', async () => {
    const pub = lan.spawn(lan.b, ['avahi-publish', '-s', 'avahi published gateway', '_clawbot._tcp', '18123',
      'role=gateway', 'model=big-model', 'api=/v1', 'tls=yes', 'auth=yes'], { env: avahi.env });
    assert.ok(await waitFor(() => /Established/.test(pub.out() + pub.err()), 8000), pub.err());
    const { list } = await discoverJson(lan, lan.a, { ...process.env, ...BUILTIN });
    const gw = list.find((s) => s.instance === 'avahi published gateway');
    assert.ok(gw, JSON.stringify(list));
    assert.equal(gw.address, lan.addrB);
    assert.equal(gw.port, 18123);
    assert.equal(gw.role, 'gateway');
    assert.equal(gw.model, 'big-model');
    assert.equal(gw.tls, true);
    assert.equal(gw.auth, true);
    assert.equal(gw.url, `https://${lan.addrB}:18123`);
    assert.equal(gw.reachable, false, 'nothing listens on 18123');
    await stop(pub);
  });

  test('where the daemon runs, discover browses through it (source avahi)', async () => {
    const { list } = await discoverJson(lan, lan.b, avahi.env);
    const node = list.find((s) => s.port === serve.port);
    assert.ok(node, JSON.stringify(list));
    assert.equal(node.source, 'avahi');
    assert.equal(node.address, lan.addrA);
    assert.equal(node.role, 'node');
    assert.equal(node.reachable, true);
  });

  test('serve publishes through the daemon where one runs; the built-in browser sees it', async () => {
    const viaAvahi = await startServe(lan, lan.b, { env: avahi.env, announced: /through the Avahi daemon/ });
    const { list } = await discoverJson(lan, lan.a, { ...process.env, ...BUILTIN });
    const node = list.find((s) => s.port === viaAvahi.port);
    assert.ok(node, JSON.stringify(list));
    assert.equal(node.address, lan.addrB);
    assert.equal(node.role, 'node');
    await stop(viaAvahi.proc);
  });

  test('"auto" prefers a reachable gateway over a node, and a reachable node over a dead gateway', async () => {
    const dead = lan.spawn(lan.b, ['avahi-publish', '-s', 'dead gateway', '_clawbot._tcp', '18124', 'role=gateway', 'tls=no'],
      { env: avahi.env });
    assert.ok(await waitFor(() => /Established/.test(dead.out() + dead.err()), 8000), dead.err());
    const c1 = clientEnv(lan, BUILTIN);
    const r1 = await lan.run(lan.a, [clawbotBin(), 'config', 'show', '--json'], { env: c1.env });
    assert.equal(JSON.parse(r1.stdout).auto.url, `http://${lan.addrA}:${serve.port}`, 'the node: the gateway does not answer');

    // A gateway that answers (a stand-in HTTP server on the advertised port).
    const http = lan.spawn(lan.b, [process.execPath, '-e',
      "require('http').createServer((q, s) => s.end('{}')).listen(18125, '0.0.0.0', () => console.log('up'))"]);
    assert.ok(await waitFor(() => http.out().includes('up'), 5000), http.err());
    const live = lan.spawn(lan.b, ['avahi-publish', '-s', 'live gateway', '_clawbot._tcp', '18125', 'role=gateway', 'tls=no'],
      { env: avahi.env });
    assert.ok(await waitFor(() => /Established/.test(live.out() + live.err()), 8000), live.err());
    const c2 = clientEnv(lan, BUILTIN);
    const r2 = await lan.run(lan.a, [clawbotBin(), 'config', 'show', '--json'], { env: c2.env });
    const auto = JSON.parse(r2.stdout).auto;
    assert.equal(auto.url, `http://${lan.addrB}:18125`, JSON.stringify(auto));
    assert.equal(auto.role, 'gateway');
    assert.ok(auto.candidates >= 3);
    for (const p of [dead, live, http]) await stop(p);
  });

  test('stopping serve sends goodbyes: Avahi drops the node at once', async () => {
    await stop(serve.proc);
    assert.match(serve.proc.err(), /withdrew 'clawbot node on [^']+' \(goodbye sent\)/);
    // Without a goodbye the daemon would keep the record for its TTL (120 s and more).
    const gone = await waitFor(async () => !(await avahiBrowse()).some((l) => l.includes(`;${serve.port};`)), 3000, 250);
    assert.ok(gone, 'avahi-browse no longer lists the node');
  });
});
