// `clawbot gateway` on the LAN: mDNS/DNS-SD between two network namespaces joined by a veth pair (made here
// in a user namespace, no root needed; removed after), with the built-in responder and querier and no daemon anywhere. In namespace A a
// real `clawbot serve` (a node) and a real `clawbot gateway` in front of it (API keys, listening on A's veth
// address); in namespace B `clawbot discover` and `model_endpoint: "auto"` (doctor, ask). Proves the gateway
// announces itself (role=gateway, its upstreams' models, tls, auth) next to the node, that "auto" takes the
// gateway over the node, that SIGTERM withdraws it (goodbyes reach a browser that is listening), and that
// --no-advertise and "advertise": false keep it quiet.
// Never skips: where the namespaces cannot be made, the tests fail and say why.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/discovery_gateway.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { clawbotBin, modelPath, requireBinary, MODEL_ID } from './server_harness.mjs';
import { makeLan, waitFor } from './netns.mjs';
import { createKey } from './gateway_helpers.mjs';

const BUILTIN = { CLAWBOT_MDNS: 'builtin' };
const builtinEnv = () => ({ ...process.env, ...BUILTIN });
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const reEscape = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/** `clawbot serve` on 0.0.0.0 in `ns`; resolves { proc, port } once it listens and has announced. */
async function startServe(lan, ns) {
  const proc = lan.spawn(ns, [requireBinary(), 'serve', '--model', modelPath(), '--host', '0.0.0.0', '--port', '0',
    '--ctx', '256', '--threads', '1', '--chat-template', 'chatml'], { env: builtinEnv() });
  let port = 0;
  const ok = await waitFor(() => {
    const m = /listening on http:\/\/0\.0\.0\.0:(\d+)/.exec(proc.out());
    if (m) port = Number(m[1]);
    return (port > 0 && /mdns: announcing/.test(proc.err())) || proc.exitCode !== null;
  }, 60000);
  assert.ok(ok && proc.exitCode === null, `serve did not start and announce:\n${proc.out()}\n${proc.err()}`);
  return { proc, port };
}

/**
 * `clawbot gateway --config <dir>/gateway.json --port 0 --threads 1 [args]` in `ns` with the built-in
 * responder. Resolves { proc, port, host, config } once it listens and, with `announced`, once its stderr
 * says it announced (the gateway advertises about 1.5 s after it starts).
 */
async function startGatewayIn(lan, ns, dir, config, { args = [], announced = true } = {}) {
  const file = path.join(dir, 'gateway.json');
  fs.writeFileSync(file, JSON.stringify(config, null, 2));
  const proc = lan.spawn(ns, [requireBinary(), 'gateway', '--config', file, '--port', '0', '--threads', '1', ...args],
    { env: builtinEnv() });
  let port = 0;
  let host = '';
  const ok = await waitFor(() => {
    const m = /clawbot gateway listening on http:\/\/([^:\s]+):(\d+) /.exec(proc.out());
    if (m) [host, port] = [m[1], Number(m[2])];
    return (port > 0 && (!announced || /mdns: announcing/.test(proc.err()))) || proc.exitCode !== null;
  }, 15000);
  assert.ok(ok && proc.exitCode === null,
    `gateway did not start${announced ? ' and announce' : ''}:\n${proc.out()}\n${proc.err()}`);
  return { proc, port, host, config: file };
}

async function stop(proc) {
  proc.kill('SIGTERM');
  assert.ok(await waitFor(() => proc.exitCode !== null || proc.signalCode !== null, 10000), 'stopped within 10 s');
}

function parseList(r) {
  try {
    return JSON.parse(r.stdout);
  } catch (e) {
    throw new Error(`discover --json printed no JSON (${e.message}):\n${r.stdout}\n${r.stderr}`);
  }
}

async function discoverJson(lan, ns, timeoutMs = 1500) {
  const r = await lan.run(ns, [clawbotBin(), 'discover', '--json', '--timeout', String(timeoutMs)], { env: builtinEnv() });
  return { ...r, list: parseList(r) };
}

/** A client config dir in which clawbot.json says model_endpoint "auto" (and more), private HOME and cache. */
function clientEnv(lan, settings = {}) {
  const dir = lan.tempDir('clawbot-gw-auto-');
  const file = path.join(dir, 'clawbot.json');
  fs.writeFileSync(file, JSON.stringify({ model_endpoint: 'auto', max_tokens: 4, network_timeout: 10000, ...settings }));
  return { ...process.env, ...BUILTIN, CLAWBOT_CONFIG: file, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg'),
    XDG_DATA_HOME: path.join(dir, 'data'), XDG_CACHE_HOME: path.join(dir, 'cache') };
}

describe('clawbot gateway on the LAN (built-in responder, two namespaces)', () => {
  let lan;
  let serve;
  let gateway;
  let key;
  const GATEWAY_NAME = 'test gateway in A';
  before(async () => {
    lan = await makeLan();
    serve = await startServe(lan, lan.a);
    const dir = lan.tempDir('clawbot-gw-lan-');
    const config = {
      name: GATEWAY_NAME,
      listen: [{ host: lan.addrA, port: 0 }],
      upstreams: [{ url: `http://127.0.0.1:${serve.port}`, name: 'node-a' }],
      auth: 'keys',
    };
    fs.writeFileSync(path.join(dir, 'gateway.json'), JSON.stringify(config));
    key = (await createKey(path.join(dir, 'gateway.json'), 't')).key;
    gateway = await startGatewayIn(lan, lan.a, dir, config);
  });
  after(async () => {
    await lan?.destroy();
  });

  test('the gateway announces its first listener, named from gateway.json', () => {
    assert.equal(gateway.host, lan.addrA);
    assert.match(gateway.proc.err(), new RegExp(`mdns: announcing '${reEscape(GATEWAY_NAME)}' \\(_clawbot\\._tcp port ${gateway.port}\\) on \\S+ ${reEscape(lan.addrA)} \\(built-in responder\\)`));
  });

  test('discover --json in B lists the gateway (role gateway, auth, its upstream\'s model) and the node', async () => {
    const { code, list, stderr } = await discoverJson(lan, lan.b);
    assert.equal(code, 0, stderr);
    const gw = list.find((s) => s.instance === GATEWAY_NAME);
    assert.ok(gw, `the gateway is listed: ${JSON.stringify(list)}`);
    assert.equal(gw.port, gateway.port);
    assert.equal(gw.address, lan.addrA);
    assert.equal(gw.role, 'gateway');
    assert.equal(gw.model, MODEL_ID);
    assert.equal(gw.api, '/v1');
    assert.equal(gw.tls, false);
    assert.equal(gw.auth, true);
    assert.match(gw.version, /^\d+\.\d+\.\d+$/);
    assert.equal(gw.source, 'builtin');
    assert.equal(gw.url, `http://${lan.addrA}:${gateway.port}`);
    assert.equal(gw.reachable, true, gw.error);
    const node = list.find((s) => s.port === serve.port);
    assert.ok(node, `the node is listed too: ${JSON.stringify(list)}`);
    assert.equal(node.role, 'node');
    assert.equal(node.address, lan.addrA);
    assert.equal(node.auth, false);
    assert.equal(node.model, MODEL_ID);
  });

  test('model_endpoint "auto" takes the gateway over the node: doctor, and ask with the key', async () => {
    const gwUrl = `http://${lan.addrA}:${gateway.port}`;
    const env = clientEnv(lan, { api_key: key });
    const doc = await lan.run(lan.b, [clawbotBin(), 'doctor', '--json'], { env, timeoutMs: 60000 });
    const by = Object.fromEntries(JSON.parse(doc.stdout).checks.map((x) => [x.name, x]));
    assert.equal(by.resolve.status, 'ok', JSON.stringify(by.resolve));
    assert.equal(by.resolve.data.auto.url, gwUrl, JSON.stringify(by.resolve.data));
    assert.equal(by.resolve.data.auto.role, 'gateway');
    assert.equal(by.resolve.data.auto.instance, GATEWAY_NAME);
    assert.ok(by.resolve.data.auto.candidates >= 2, 'the node was a candidate too');
    assert.equal(by.models.status, 'ok', JSON.stringify(by.models));

    const ask = await lan.run(lan.b, [clawbotBin(), 'ask', 'Once upon a time'], { env: clientEnv(lan, { api_key: key }) });
    assert.ok(ask.code === 0 || (ask.code === 1 && /cut off at max_tokens/.test(ask.stderr)), `ask failed:\n${ask.stdout}\n${ask.stderr}`); // max_tokens 4: a cut answer is exit 1
    assert.match(ask.stderr, new RegExp(`model_endpoint auto: ${reEscape(gwUrl)} \\('${reEscape(GATEWAY_NAME)}', gateway; found now via builtin mDNS`));
    assert.ok(ask.stdout.length > 0, 'an answer was printed');

    // Without the key the same choice is made, and the gateway's door turns the request away: the answer
    // above really came through the gateway, not from the node.
    const noKey = await lan.run(lan.b, [clawbotBin(), 'ask', 'Once upon a time'], { env: clientEnv(lan) });
    assert.notEqual(noKey.code, 0, noKey.stdout);
    assert.match(noKey.stderr, new RegExp(`model_endpoint auto: ${reEscape(gwUrl)} `));
    assert.match(noKey.stderr, /401|api key|API key/);
  });

  test('--no-advertise and "advertise": false: a second and a third gateway are not listed', async () => {
    const upstreams = [{ url: `http://127.0.0.1:${serve.port}` }];
    const [flag, setting] = await Promise.all([
      startGatewayIn(lan, lan.a, lan.tempDir('clawbot-gw-quiet-'), { name: 'quiet by flag', listen: [{ host: '0.0.0.0', port: 0 }], upstreams },
        { args: ['--no-advertise'], announced: false }),
      startGatewayIn(lan, lan.a, lan.tempDir('clawbot-gw-quiet-'), { name: 'quiet by config', advertise: false,
        listen: [{ host: '0.0.0.0', port: 0 }], upstreams }, { announced: false }),
    ]);
    await sleep(1800);  // past the moment (1.5 s after start) an advertising gateway announces
    const { list } = await discoverJson(lan, lan.b);
    assert.ok(list.some((s) => s.instance === GATEWAY_NAME), 'the advertising gateway is still there');
    assert.ok(list.some((s) => s.port === serve.port), 'and the node');
    for (const quiet of [flag, setting]) {
      assert.ok(!list.some((s) => s.port === quiet.port), `the quiet gateway on ${quiet.port} is not: ${JSON.stringify(list)}`);
      assert.doesNotMatch(quiet.proc.err(), /mdns: announcing/);
    }
    assert.ok(!list.some((s) => /^quiet by/.test(s.instance)), JSON.stringify(list));
    await Promise.all([stop(flag.proc), stop(setting.proc)]);
  });

  test('SIGTERM withdraws the gateway: a browser listening drops it at once, the node stays', async () => {
    // A browse that spans the stop: it hears both gateways first; then SIGTERM makes ours send goodbyes (TTL 0),
    // which remove it, while a control gateway killed with SIGKILL sends none and stays listed (its records
    // live 75 s and more): what the browse hears in the end is the goodbye, not a gateway that fell silent.
    const killed = await startGatewayIn(lan, lan.a, lan.tempDir('clawbot-gw-killed-'), { name: 'killed gateway',
      listen: [{ host: '0.0.0.0', port: 0 }], upstreams: [{ url: `http://127.0.0.1:${serve.port}` }] });
    const browsing = lan.run(lan.b, [clawbotBin(), 'discover', '--json', '--timeout', '3000'], { env: builtinEnv() });
    await sleep(1500);
    killed.proc.kill('SIGKILL');
    await stop(gateway.proc);
    assert.match(gateway.proc.err(), new RegExp(`mdns: withdrew '${reEscape(GATEWAY_NAME)}' \\(goodbye sent\\)`));
    const list = parseList(await browsing);
    assert.ok(list.some((s) => s.port === serve.port), `the node is still listed: ${JSON.stringify(list)}`);
    assert.ok(list.some((s) => s.instance === 'killed gateway' && s.reachable === false),
      `the gateway killed without goodbyes is still listed (and does not answer): ${JSON.stringify(list)}`);
    assert.ok(!list.some((s) => s.instance === GATEWAY_NAME), `the gateway stopped with SIGTERM is gone: ${JSON.stringify(list)}`);

    const after = await discoverJson(lan, lan.b);
    assert.ok(after.list.some((s) => s.port === serve.port && s.role === 'node'), JSON.stringify(after.list));
    assert.ok(!after.list.some((s) => s.role === 'gateway'), `no gateway is listed: ${JSON.stringify(after.list)}`);
  });
});
