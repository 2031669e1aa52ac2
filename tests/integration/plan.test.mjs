// Black-box tests for `clawbot plan` over HTTP range requests and `clawbot models list|show|pull`, against a
// local HTTP server of our own that honours Range, counts the bytes it serves, and can cut a connection.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/plan.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';

import { spawnSync } from 'node:child_process';

import { clawbotBin, runClawbot } from './server_harness.mjs';

// ---------------------------------------------------------------------------- a GGUF file, written here

/** GGUF v3: metadata (strings, u32, a string array as a tokenizer) and f32 tensors, data zeroed. */
function ggufFile({ arch = 'llama', layers = 4, embd = 256, ff = 1024, heads = 8, kvHeads = 2, vocab = 4096,
  tokens = 4096, withData = true } = {}) {
  const parts = [];
  let nKv = 0;
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); return b; };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); return b; };
  const str = (s) => { const b = Buffer.from(s, 'utf8'); return Buffer.concat([u64(b.length), b]); };
  const kvU32 = (k, v) => { parts.push(str(k), u32(4), u32(v)); nKv++; };
  const kvStr = (k, v) => { parts.push(str(k), u32(8), str(v)); nKv++; };
  const kvStrArray = (k, values) => {
    parts.push(str(k), u32(9), u32(8), u64(values.length), ...values.map(str)); nKv++;
  };
  kvStr('general.architecture', arch);
  kvStr('general.name', 'http test model');
  kvU32('general.file_type', 0);
  kvU32(`${arch}.block_count`, layers);
  kvU32(`${arch}.context_length`, 4096);
  kvU32(`${arch}.embedding_length`, embd);
  kvU32(`${arch}.feed_forward_length`, ff);
  kvU32(`${arch}.attention.head_count`, heads);
  kvU32(`${arch}.attention.head_count_kv`, kvHeads);
  kvU32(`${arch}.vocab_size`, vocab);
  kvStr('tokenizer.ggml.model', 'llama');
  kvStrArray('tokenizer.ggml.tokens', Array.from({ length: tokens }, (_, i) => `tok${i}`));
  kvStr('tokenizer.chat_template', '{{ messages }}');
  const tensors = [];
  let offset = 0;
  const addTensor = (name, dims) => {
    const bytes = dims.reduce((a, b) => a * b, 1) * 4;
    tensors.push(Buffer.concat([str(name), u32(dims.length), ...dims.map(u64), u32(0), u64(offset)]));
    offset += Math.ceil(bytes / 32) * 32;
  };
  addTensor('token_embd.weight', [embd, vocab]);
  for (let l = 0; l < layers; l++) {
    addTensor(`blk.${l}.attn_q.weight`, [embd, embd]);
    addTensor(`blk.${l}.ffn_up.weight`, [embd, ff]);
  }
  let header = Buffer.concat([Buffer.from('GGUF'), u32(3), u64(tensors.length), u64(nKv), ...parts, ...tensors]);
  header = Buffer.concat([header, Buffer.alloc((32 - (header.length % 32)) % 32)]);
  const weights = offset;
  return { bytes: withData ? Buffer.concat([header, Buffer.alloc(offset)]) : header, headerBytes: header.length, weights };
}

// ---------------------------------------------------------------------------- the HTTP server

/**
 * Serves `files` (name -> Buffer) with Range support. Records every request; `cut = {name, nth, bytes}` closes
 * the connection after `bytes` body bytes of the nth request for that file (once); `/redirect/NAME` answers
 * 302 to NAME with a query string (as Hugging Face's CDN does).
 */
async function startFileServer(files) {
  const state = { requests: [], bytesServed: 0, cut: null };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url, 'http://x');
    state.requests.push({ path: url.pathname, range: req.headers.range ?? null });
    if (url.pathname.startsWith('/redirect/')) {
      res.writeHead(302, { Location: `/${url.pathname.slice('/redirect/'.length)}?signature=abc&expires=1` });
      res.end();
      return;
    }
    const name = url.pathname.slice(1);
    const body = files[name];
    if (!body) {
      res.writeHead(404, { 'Content-Type': 'text/plain' });
      res.end('not found');
      return;
    }
    let start = 0;
    let end = body.length - 1;
    let status = 200;
    const range = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (range) {
      start = Number(range[1]);
      if (range[2] !== '') end = Math.min(Number(range[2]), body.length - 1);
      if (start >= body.length) {
        res.writeHead(416, { 'Content-Range': `bytes */${body.length}` });
        res.end();
        return;
      }
      status = 206;
    }
    const slice = body.subarray(start, end + 1);
    const headers = { 'Content-Length': slice.length, 'Accept-Ranges': 'bytes', 'Content-Type': 'application/octet-stream' };
    if (status === 206) headers['Content-Range'] = `bytes ${start}-${end}/${body.length}`;
    res.writeHead(status, headers);
    const cut = state.cut;
    if (cut && cut.name === name && state.requests.filter((q) => q.path === `/${name}`).length === cut.nth) {
      state.cut = null;
      state.bytesServed += cut.bytes;
      res.write(slice.subarray(0, cut.bytes), () => res.socket.destroy());
      return;
    }
    state.bytesServed += slice.length;
    res.end(slice);
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${server.address().port}`;
  return { server, state, base, close: () => new Promise((resolve) => server.close(resolve)) };
}

const sha256 = (buf) => crypto.createHash('sha256').update(buf).digest('hex');

function ok(r, what) {
  assert.equal(r.timedOut, false, `${what} timed out; stderr=${r.stderr}`);
  assert.equal(r.code, 0, `${what} must succeed; exit=${r.code} stderr=${r.stderr} stdout=${r.stdout.slice(0, 2000)}`);
}

// ---------------------------------------------------------------------------- plan over HTTP

describe('clawbot plan over HTTP range requests', () => {
  let files;
  let srv;
  const model = ggufFile({ layers: 8, embd: 512, ff: 2048, vocab: 8192, tokens: 8192 });
  before(async () => {
    files = { 'model.gguf': model.bytes, 'notgguf.bin': Buffer.from('PK\x03\x04 not a model at all') };
    srv = await startFileServer(files);
  });
  after(async () => srv.close());

  test('reads only the header, and plans as for a local file', async () => {
    assert.ok(model.bytes.length > 20 * 1024 * 1024, `the test file should be large (${model.bytes.length})`);
    const r = await runClawbot(['plan', `${srv.base}/model.gguf`, '--ctx', '2048', '--parallel', '2', '--json',
      '--memory', '64']);
    ok(r, 'plan over HTTP');
    const plan = JSON.parse(r.stdout);
    assert.equal(plan.model.architecture, 'llama');
    assert.equal(plan.bytes.weights, model.weights, 'exact tensor bytes');
    // 8 layers x 2 KV heads x 64 x (K and V) x 2 bytes x 2 x 2048 cells
    assert.equal(plan.bytes.kv_cache, 8 * 2 * 64 * 2 * 2 * 2 * 2048);
    assert.equal(plan.model.file_bytes, model.bytes.length);
    assert.equal(plan.fits, true);
    // Only a prefix of the file was fetched: the 1 MiB first read covers this ~100 KB header.
    assert.ok(srv.state.bytesServed <= 1024 * 1024, `served ${srv.state.bytesServed} bytes`);
    assert.ok(srv.state.bytesServed < model.bytes.length / 10);
    assert.ok(srv.state.requests.every((q) => q.range !== null), 'every request asked for a range');
  });

  test('follows a redirect to a URL with a query string', async () => {
    const r = await runClawbot(['plan', `${srv.base}/redirect/model.gguf`, '--json', '--memory', '64']);
    ok(r, 'plan through a redirect');
    assert.equal(JSON.parse(r.stdout).bytes.weights, model.weights);
    assert.ok(srv.state.requests.some((q) => q.path === '/model.gguf'));
  });

  test('says when it does not fit and what would', async () => {
    const r = await runClawbot(['plan', `${srv.base}/model.gguf`, '--ctx', '1024', '--parallel', '1',
      '--memory', '0.11', '--compare-naive']);
    assert.equal(r.code, 2, `exit 2 when it does not fit; ${r.stderr}`);
    assert.match(r.stdout, /does NOT fit in 112\.64 MiB \(--memory\)/);
    assert.match(r.stdout, /rule of thumb/);
    assert.match(r.stdout, /would fit as: .*Q8_0/);
  });

  test('a 404 and a file that is not GGUF are refused by name', async () => {
    let r = await runClawbot(['plan', `${srv.base}/missing.gguf`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /missing\.gguf answered HTTP 404/);
    r = await runClawbot(['plan', `${srv.base}/notgguf.bin`]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not a GGUF file/);
  });
});

// ---------------------------------------------------------------------------- models list / show

describe('clawbot models list and show', () => {
  let dir;
  const saved = process.env.CLAWBOT_MODELS;
  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-models-list-'));
    fs.writeFileSync(path.join(dir, 'alpha.gguf'), ggufFile({ layers: 2, embd: 64, ff: 128, vocab: 256, tokens: 256 }).bytes);
    fs.writeFileSync(path.join(dir, 'header-only.gguf'),
      ggufFile({ arch: 'qwen3', layers: 2, embd: 64, ff: 128, vocab: 256, tokens: 256, withData: false }).bytes);
    fs.writeFileSync(path.join(dir, 'broken.gguf'), 'GGUF\x03\x00');
    process.env.CLAWBOT_MODELS = `${dir}:/nonexistent-dir`;
  });
  after(() => {
    if (saved === undefined) delete process.env.CLAWBOT_MODELS; else process.env.CLAWBOT_MODELS = saved;
    fs.rmSync(dir, { recursive: true, force: true });
  });

  test('list shows each file with its architecture, size, parameters and flags', async () => {
    const r = await runClawbot(['models', 'list', '--json']);
    ok(r, 'models list');
    const list = JSON.parse(r.stdout);
    assert.deepEqual(list.map((m) => m.name), ['alpha.gguf', 'broken.gguf', 'header-only.gguf']);
    const alpha = list[0];
    assert.equal(alpha.architecture, 'llama');
    assert.equal(alpha.parameters, 64 * 256 + 2 * (64 * 64 + 64 * 128));
    assert.equal(alpha.quantization, 'F32');
    assert.equal(alpha.context, 4096);
    assert.equal(alpha.chat_template, true);
    assert.equal(alpha.embedding, false);
    assert.match(list[1].error, /ends inside its GGUF header/);
    assert.equal(list[2].header_only, true);
    const table = await runClawbot(['models', 'list']);
    ok(table, 'models list (table)');
    assert.match(table.stdout, /alpha\.gguf +\d+\.\d KiB +llama +\S+ +F32 +4096 +yes +no/);
    assert.match(table.stdout, /broken\.gguf .*unreadable/);
  });

  test('show prints the metadata with arrays abbreviated', async () => {
    const r = await runClawbot(['models', 'show', 'alpha.gguf']);
    ok(r, 'models show');
    assert.match(r.stdout, /llama\.block_count +2\n/);
    assert.match(r.stdout, /tokenizer\.ggml\.tokens +\["tok0", "tok1", .*\.\.\. \(256 string items\)\]/);
    const j = await runClawbot(['models', 'show', 'alpha.gguf', '--json', '--tensors']);
    ok(j, 'models show --json');
    const shown = JSON.parse(j.stdout);
    assert.equal(shown.metadata['general.name'], '"http test model"');
    assert.equal(shown.tensors.length, 5);
    const missing = await runClawbot(['models', 'show', 'nope.gguf']);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /no model file 'nope\.gguf' in the current directory nor in CLAWBOT_MODELS=/);
  });
});

describe('where models are found without CLAWBOT_MODELS (issue 17)', () => {
  let home;
  let env;
  before(() => {
    home = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-models-home-'));
    fs.mkdirSync(path.join(home, 'data', 'clawbot', 'models'), { recursive: true });
    fs.mkdirSync(path.join(home, 'cache', 'clawbot', 'models'), { recursive: true });
    fs.writeFileSync(path.join(home, 'data', 'clawbot', 'models', 'pulled.gguf'),
      ggufFile({ layers: 2, embd: 64, ff: 128, vocab: 256, tokens: 256 }).bytes);
    fs.writeFileSync(path.join(home, 'cache', 'clawbot', 'models', 'synthesized.gguf'),
      ggufFile({ layers: 2, embd: 64, ff: 128, vocab: 256, tokens: 256 }).bytes);
    env = { ...process.env, HOME: home, XDG_DATA_HOME: path.join(home, 'data'), XDG_CACHE_HOME: path.join(home, 'cache') };
    delete env.CLAWBOT_MODELS;
  });
  after(() => fs.rmSync(home, { recursive: true, force: true }));
  const run = (args, cwd) => spawnSync(clawbotBin(), args, { env, cwd, encoding: 'utf8', timeout: 30000 });

  test('the user\'s data and cache directories, from any current directory', () => {
    for (const cwd of ['/', home]) {
      const r = run(['models', 'list', '--json'], cwd);
      assert.equal(r.status, 0, r.stderr);
      assert.deepEqual(JSON.parse(r.stdout).map((m) => m.name), ['pulled.gguf', 'synthesized.gguf'], `from ${cwd}`);
    }
    const table = run(['models', 'list'], '/');
    assert.match(table.stdout, /in .*data\/clawbot\/models and .*cache\/clawbot\/models \(CLAWBOT_MODELS is unset\)/);
    const plan = run(['plan', 'pulled.gguf', '--json', '--memory', '8'], '/');
    assert.equal(plan.status, 0, plan.stderr);
  });

  test('a name not found suggests the closest names', () => {
    let r = run(['models', 'show', 'puled.gguf'], '/');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /no model file 'puled\.gguf' in the current directory nor in .*did you mean 'pulled\.gguf'\?/);
    r = run(['plan', 'synthesized'], '/');
    assert.equal(r.status, 1);
    assert.match(r.stderr, /did you mean 'synthesized\.gguf'\?/);
  });

  test('plan never suggests --parallel 0', () => {
    // Enough memory for a short context at one slot, not for the asked context even at one slot.
    const small = run(['plan', 'pulled.gguf', '--ctx', '256', '--json', '--memory', '64'], '/');
    const big = run(['plan', 'pulled.gguf', '--ctx', '4096', '--parallel', '1', '--json', '--memory', '64'], '/');
    const at256 = JSON.parse(small.stdout).bytes.total;
    const at4096 = JSON.parse(big.stdout).bytes.total;
    assert.ok(at256 < at4096, `${at256} < ${at4096}`);
    const gib = ((at256 + at4096) / 2) / 2 ** 30;
    const r = run(['plan', 'pulled.gguf', '--ctx', '4096', '--parallel', '1', '--memory', String(gib)], '/');
    assert.equal(r.status, 2, r.stdout + r.stderr);
    assert.doesNotMatch(r.stdout, /--parallel 0/);
    assert.match(r.stdout, /largest +--ctx \d+ at --parallel 1; not even --parallel 1 fits at --ctx 4096/);
  });
});

// ---------------------------------------------------------------------------- models pull

describe('clawbot models pull', () => {
  let srv;
  let dir;
  const payload = crypto.randomBytes(6 * 1024 * 1024 + 12345);
  before(async () => {
    srv = await startFileServer({
      'm.gguf': payload,
      'm.gguf.sha256': Buffer.from(`${sha256(payload)}  m.gguf\n`),
      'other.gguf': payload,
    });
  });
  after(async () => srv.close());

  // A fresh directory and request log per test (node:test runs the tests of a describe in order).
  const fresh = () => {
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-pull-'));
    srv.state.requests.length = 0;
    srv.state.bytesServed = 0;
    return dir;
  };
  after(() => dir && fs.rmSync(dir, { recursive: true, force: true }));

  test('resumes after a cut connection and checks the sidecar sum', async () => {
    fresh();
    // Pieces grow 1, 2, 4 MiB: the third request (from 3 MiB on) is cut after 1000 bytes.
    srv.state.cut = { name: 'm.gguf', nth: 3, bytes: 1000 };
    const r = await runClawbot(['models', 'pull', `${srv.base}/m.gguf`, '-o', dir, '--no-progress'], { timeoutMs: 60000 });
    ok(r, 'pull');
    assert.equal(r.stdout.trim(), path.join(dir, 'm.gguf'));
    assert.ok(fs.readFileSync(path.join(dir, 'm.gguf')).equals(payload), 'the file is byte-identical');
    assert.ok(!fs.existsSync(path.join(dir, 'm.gguf.part')));
    assert.match(r.stderr, /closed the connection before the response was complete.*; resuming at byte 3145728/);
    assert.match(r.stderr, /matches the sidecar m\.gguf\.sha256/);
    // After the cut it asked again from where it was: the two whole pieces were not fetched again.
    const ranges = srv.state.requests.filter((q) => q.path === '/m.gguf').map((q) => q.range);
    assert.deepEqual(ranges.slice(0, 4), ['bytes=0-1048575', 'bytes=1048576-3145727', 'bytes=3145728-7340031',
      'bytes=3145728-4194303']);
    assert.ok(srv.state.bytesServed < payload.length * 1.2, `served ${srv.state.bytesServed}`);
  });

  test('resumes a .part file left by an earlier run', async () => {
    fresh();
    fs.writeFileSync(path.join(dir, 'm.gguf.part'), payload.subarray(0, 2 * 1024 * 1024 + 5));
    const r = await runClawbot(['models', 'pull', `${srv.base}/m.gguf`, '-o', dir, '--no-progress'], { timeoutMs: 60000 });
    ok(r, 'pull (resume)');
    assert.ok(fs.readFileSync(path.join(dir, 'm.gguf')).equals(payload));
    const ranges = srv.state.requests.filter((q) => q.path === '/m.gguf').map((q) => q.range);
    assert.equal(ranges[0], `bytes=${2 * 1024 * 1024 + 5}-${3 * 1024 * 1024 + 4}`);
    assert.ok(srv.state.bytesServed < payload.length, `served ${srv.state.bytesServed} of ${payload.length}`);
  });

  test('refuses a checksum mismatch and keeps no file', async () => {
    fresh();
    const wrong = 'ab'.repeat(32);
    const r = await runClawbot(['models', 'pull', `${srv.base}/other.gguf`, '-o', dir, '--sha256', wrong,
      '--no-progress'], { timeoutMs: 60000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`checksum mismatch for other\\.gguf: expected ${wrong} \\(from --sha256\\), got ${sha256(payload)}`));
    assert.ok(!fs.existsSync(path.join(dir, 'other.gguf')));
    assert.ok(!fs.existsSync(path.join(dir, 'other.gguf.part')));
    const bad = await runClawbot(['models', 'pull', `${srv.base}/other.gguf`, '-o', dir, '--sha256', 'xyz']);
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /--sha256 'xyz' is not 64 hexadecimal characters/);
  });

  test('a missing file is a clear error', async () => {
    fresh();
    const r = await runClawbot(['models', 'pull', `${srv.base}/absent.gguf`, '-o', dir, '--no-progress']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /absent\.gguf answered HTTP 404/);
  });
});
