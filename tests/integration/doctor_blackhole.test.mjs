// `clawbot doctor` against a blackholed address: two network namespaces joined by a veth pair (made here in a
// user namespace, no root needed; removed after); in one, a firewall rule drops the SYNs to a port where a
// server listens. doctor in the other must say "timed out … firewall" (not "refused"), within its 3 s connect
// timeout, while a port with no rule and no listener is "refused". No engine: the listener is a small Node HTTP
// server.
// Never skips: where the namespaces cannot be made or neither iptables nor nft works, the tests fail saying why.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/doctor_blackhole.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { clawbotBin } from './server_harness.mjs';
import { makeLan, waitFor } from './netns.mjs';

const DROPPED_PORT = 18461;
const CLOSED_PORT = 18462;

/** Drops TCP SYNs to `port` in `ns`: iptables where it works, else nft. Returns the tool used. */
function dropSyns(lan, ns, port) {
  const inNs = (cmd, args) => lan.exec(ns, [cmd, ...args]);
  const errors = [];
  try {
    inNs('iptables', ['-A', 'INPUT', '-p', 'tcp', '--dport', String(port), '--syn', '-j', 'DROP']);
    return 'iptables';
  } catch (e) {
    errors.push(`iptables: ${e.stderr?.toString().trim() || e.message}`);
  }
  try {
    inNs('nft', ['add table inet cbtest']);
    inNs('nft', ['add chain inet cbtest input { type filter hook input priority 0 ; }']);
    inNs('nft', [`add rule inet cbtest input tcp dport ${port} tcp flags syn drop`]);
    return 'nft';
  } catch (e) {
    errors.push(`nft: ${e.stderr?.toString().trim() || e.message}`);
  }
  throw new Error(`cannot add a DROP rule in a namespace (${errors.join('; ')})`);
}

describe('clawbot doctor against a blackholed address (a namespace with a DROP rule)', () => {
  let lan;
  let config;
  let tool;
  before(async () => {
    lan = await makeLan();
    tool = dropSyns(lan, lan.a, DROPPED_PORT);
    // Something listens on the dropped port: without the rule it would answer.
    const server = lan.spawn(lan.a, [process.execPath, '-e',
      `require('http').createServer((q, s) => s.end('{}')).listen(${DROPPED_PORT}, '0.0.0.0', () => console.log('up'))`]);
    assert.ok(await waitFor(() => server.out().includes('up'), 5000), server.err());
    const dir = lan.tempDir('clawbot-doctor-bh-');
    config = (port) => {
      const file = path.join(dir, `clawbot-${port}.json`);
      fs.writeFileSync(file, JSON.stringify({ model_endpoint: `http://${lan.addrA}:${port}` }));
      return { ...process.env, CLAWBOT_CONFIG: file, HOME: dir, XDG_CONFIG_HOME: path.join(dir, 'cfg'),
        XDG_CACHE_HOME: path.join(dir, 'cache') };
    };
  });
  after(async () => {
    await lan?.destroy();
  });

  test('dropped SYNs: the tcp check times out and blames a firewall, naming the port', async () => {
    const r = await lan.run(lan.b, [clawbotBin(), 'doctor'], { env: config(DROPPED_PORT), timeoutMs: 20000 });
    assert.equal(r.code, 1, r.stdout);
    assert.match(r.stdout, new RegExp(`^FAIL\\s+tcp\\s+no answer from ${lan.addrA.replaceAll('.', '\\.')}:${DROPPED_PORT} within 3000 ms \\(timed out\\)`, 'm'), `${tool} rule; output:\n${r.stdout}`);
    assert.match(r.stdout, new RegExp(`fix: timed out usually means a firewall dropping packets: open TCP port ${DROPPED_PORT} on the node`));
    assert.ok(r.ms >= 2900, `diagnosed after the 3 s connect timeout, in ${r.ms} ms`);

    const j = await lan.run(lan.b, [clawbotBin(), 'doctor', '--json'], { env: config(DROPPED_PORT), timeoutMs: 20000 });
    const tcp = JSON.parse(j.stdout).checks.find((c) => c.name === 'tcp');
    assert.equal(tcp.status, 'fail');
    assert.equal(tcp.data.error, 'timed_out');
  });

  test('the same host, a port with no rule and no listener: refused, at once', async () => {
    const r = await lan.run(lan.b, [clawbotBin(), 'doctor', '--json'], { env: config(CLOSED_PORT), timeoutMs: 20000 });
    const tcp = JSON.parse(r.stdout).checks.find((c) => c.name === 'tcp');
    assert.equal(tcp.status, 'fail');
    assert.equal(tcp.data.error, 'refused');  // not timed_out: it did not wait for the connect timeout
  });
});
