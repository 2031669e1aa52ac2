// Model files at rest: `clawbot encrypt`/`decrypt`/`verify` from the command line, `serve` answering from an
// encrypted model with no plaintext copy on disk, and `serve --verify` refusing a file whose sum is wrong.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

import { MODEL_FILE, modelPath, modelsDir, postJson, getJson, runClawbot, startServer } from './server_harness.mjs';

const sha256 = (file) => crypto.createHash('sha256').update(fs.readFileSync(file)).digest('hex');
const startsWithGguf = (file) => {
  try {
    const fd = fs.openSync(file, 'r');
    const magic = Buffer.alloc(4);
    const n = fs.readSync(fd, magic, 0, 4, 0);
    fs.closeSync(fd);
    return n === 4 && magic.toString('latin1') === 'GGUF';
  } catch {
    return false;
  }
};

let work; // everything this file writes
let serverTmp; // the server's TMPDIR: a plaintext spill would land here
let keyFile;
let encrypted;
let plainSum;
let plainSize;

before(async () => {
  work = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-model-files-'));
  serverTmp = path.join(work, 'server-tmp');
  fs.mkdirSync(serverTmp);
  fs.mkdirSync(path.join(work, 'enc'));
  keyFile = path.join(work, 'model.key');
  encrypted = path.join(work, 'enc', `${MODEL_FILE}.enc`);
  plainSum = sha256(modelPath());
  plainSize = fs.statSync(modelPath()).size;

  const gen = await runClawbot(['encrypt', '--gen-key', keyFile]);
  assert.equal(gen.code, 0, gen.stderr);
  assert.equal(fs.statSync(keyFile).mode & 0o777, 0o600, 'the key file is private');
  assert.match(fs.readFileSync(keyFile, 'utf8'), /^[0-9a-f]{64}\n$/);

  const enc = await runClawbot(['encrypt', modelPath(), '-o', encrypted, '--key-file', keyFile, '--chunk-size', '65536']);
  assert.equal(enc.code, 0, enc.stderr);
  assert.equal(enc.stdout.trim(), encrypted);
  assert.match(enc.stderr, /GB\/s/);
});

after(() => {
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

test('encrypt writes no plaintext; decrypt restores the exact bytes; a key is never overwritten', async () => {
  assert.ok(!startsWithGguf(encrypted));
  assert.equal(fs.readFileSync(encrypted).subarray(0, 7).toString('latin1'), 'CLAWENC');
  const out = path.join(work, 'roundtrip.gguf');
  const dec = await runClawbot(['decrypt', encrypted, '-o', out, '--key-file', keyFile]);
  assert.equal(dec.code, 0, dec.stderr);
  assert.equal(sha256(out), plainSum);
  assert.equal(fs.statSync(out).mode & 0o777, 0o600, 'decrypted plaintext is private');
  fs.rmSync(out);

  const again = await runClawbot(['encrypt', '--gen-key', keyFile]);
  assert.notEqual(again.code, 0);
  assert.match(again.stderr, /never overwritten/);
});

test('the key comes from an environment variable as well as a file, never from the command line', async () => {
  const hex = fs.readFileSync(keyFile, 'utf8').trim();
  const out = path.join(work, 'env.gguf');
  process.env.CLAWBOT_TEST_MODEL_KEY = hex;
  try {
    const dec = await runClawbot(['decrypt', encrypted, '-o', out, '--key-env', 'CLAWBOT_TEST_MODEL_KEY']);
    assert.equal(dec.code, 0, dec.stderr);
    assert.equal(sha256(out), plainSum);
  } finally {
    delete process.env.CLAWBOT_TEST_MODEL_KEY;
    fs.rmSync(out, { force: true });
  }
  const bad = await runClawbot(['decrypt', encrypted, '-o', out, '--key', hex]);
  assert.notEqual(bad.code, 0, 'there is no --key option');
});

test('serve answers from an encrypted model and no plaintext copy appears on disk', async () => {
  const savedTmp = process.env.TMPDIR;
  process.env.TMPDIR = serverTmp; // inherited by the server
  let server;
  try {
    // --verify: encrypt recorded the .enc's own sum beside it, which serve checks before decrypting.
    server = await startServer({ model: encrypted, extraArgs: ['--key-file', keyFile, '--verify'] });
  } finally {
    if (savedTmp === undefined) delete process.env.TMPDIR;
    else process.env.TMPDIR = savedTmp;
  }
  try {
    assert.match(server.stderr(), /verified .*stories260K\.gguf\.enc: SHA-256 matches sidecar/);
    assert.match(server.stderr(), /decrypted stories260K\.gguf\.enc into memory \(memfd, never on disk\) in [0-9.]+ s: .* GB\/s/);

    const models = await getJson(server.baseUrl, '/v1/models');
    assert.equal(models.status, 200);
    assert.equal(models.json.data[0].id, 'stories260K', 'named after the encrypted file, not /proc/self/fd/N');

    const r = await postJson(server.baseUrl, '/v1/chat/completions', {
      messages: [{ role: 'user', content: 'Once upon a time' }],
      max_tokens: 8,
      temperature: 0,
    });
    assert.equal(r.status, 200, r.text);
    assert.equal(typeof r.json.choices[0].message.content, 'string');
    assert.ok(r.json.usage.completion_tokens > 0);

    // What the process holds: open files and mappings. The weights are a deleted memfd; no file on disk that
    // the server opened or mapped is a GGUF (the plaintext model), and the original is not among them.
    const pid = server.proc.pid;
    const held = new Set();
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      try {
        held.add(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
      } catch {
        // closed meanwhile
      }
    }
    for (const line of fs.readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n')) {
      const at = line.indexOf('/');
      if (at >= 0) held.add(line.slice(at));
    }
    const memfds = [...held].filter((p) => p.startsWith('/memfd:clawbot-decrypted-model'));
    assert.ok(memfds.length > 0, `the decrypted model is a memfd mapping: ${[...held].join('\n')}`);
    assert.ok(memfds.every((p) => p.endsWith('(deleted)')), memfds.join(', '));
    const onDisk = [...held].filter((p) => p.startsWith('/') && !p.startsWith('/memfd:') && !p.startsWith('/dev/'));
    for (const p of onDisk) {
      assert.ok(!startsWithGguf(p), `the server holds a plaintext GGUF on disk: ${p}`);
    }
    assert.ok(!held.has(modelPath()), 'the plaintext original was never opened');

    // Nothing written beside the encrypted file, in the server's TMPDIR, or at the top of the system temp
    // directory and /dev/shm.
    const found = [];
    const isPlaintextCopy = (p) => {
      try {
        return fs.statSync(p).size === plainSize && startsWithGguf(p) && sha256(p) === plainSum;
      } catch {
        return false; // another process's temporary file, gone meanwhile
      }
    };
    const walk = (dir, recursive) => {
      for (const entry of fs.readdirSync(dir, { withFileTypes: true })) {
        const p = path.join(dir, entry.name);
        if (entry.isDirectory() && recursive) walk(p, true);
        else if (entry.isFile() && isPlaintextCopy(p)) found.push(p);
      }
    };
    walk(path.join(work, 'enc'), true);
    walk(serverTmp, true);
    walk(os.tmpdir(), false);
    if (fs.existsSync('/dev/shm')) walk('/dev/shm', false);
    assert.deepEqual(found, [], 'a plaintext copy of the model was written');
    assert.deepEqual(fs.readdirSync(path.join(work, 'enc')).sort(), [`${MODEL_FILE}.enc`, `${MODEL_FILE}.enc.sha256`]);
    assert.deepEqual(fs.readdirSync(serverTmp), []);
  } finally {
    await server.stop();
  }
});

test('serve refuses an encrypted model without its key, with a wrong key, or tampered', async () => {
  const base = ['serve', '--model', encrypted, '--host', '127.0.0.1', '--port', '0', '--chat-template', 'chatml'];
  const noKey = await runClawbot(base);
  assert.notEqual(noKey.code, 0);
  assert.match(noKey.stderr, /is an encrypted model .*--key-file FILE or --key-env NAME/);

  const otherKey = path.join(work, 'other.key');
  assert.equal((await runClawbot(['encrypt', '--gen-key', otherKey])).code, 0);
  const wrong = await runClawbot([...base, '--key-file', otherKey]);
  assert.notEqual(wrong.code, 0);
  assert.match(wrong.stderr, /wrong key for .*key id [0-9a-f]{16}.*key id [0-9a-f]{16}/);

  const tampered = path.join(work, 'tampered.gguf.enc');
  const bytes = fs.readFileSync(encrypted);
  bytes[80 + 65536 + 16 + 1000] ^= 1; // a byte of chunk 1
  fs.writeFileSync(tampered, bytes);
  const bad = await runClawbot([...base.slice(0, 2), tampered, ...base.slice(3), '--key-file', keyFile]);
  assert.notEqual(bad.code, 0);
  assert.match(bad.stderr, /chunk 1 of .* failed authentication: it was changed or damaged/);
  assert.doesNotMatch(bad.stdout, /listening/);
});

test('verify checks the real manifest; serve --verify refuses a wrong sidecar naming expected and actual', async () => {
  const ok = await runClawbot(['verify', modelPath(), '--no-progress']);
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.stdout, `${plainSum}  ${modelPath()}\n`);
  assert.match(ok.stderr, /OK: matches manifest .*SHA256SUMS \(line \d+\)/);

  const dir = path.join(work, 'verify');
  fs.mkdirSync(dir);
  const copy = path.join(dir, MODEL_FILE);
  fs.copyFileSync(modelPath(), copy);

  // No sum anywhere: serve --verify says so and does not load.
  const none = await runClawbot(['serve', '--model', copy, '--verify', '--port', '0']);
  assert.notEqual(none.code, 0);
  assert.match(none.stderr, /no sum to check/);

  // The sidecar of another file.
  const manifest = fs.readFileSync(path.join(modelsDir(), 'SHA256SUMS'), 'utf8');
  const other = manifest.split('\n').find((l) => l && !l.includes(MODEL_FILE));
  fs.writeFileSync(`${copy}.sha256`, `${other}\n`);
  const expected = other.slice(0, 64);
  const refused = await runClawbot(['serve', '--model', copy, '--verify', '--port', '0']);
  assert.notEqual(refused.code, 0);
  assert.match(refused.stderr, /refusing to load/);
  assert.ok(refused.stderr.includes(`expected ${expected}`), refused.stderr);
  assert.ok(refused.stderr.includes(`actual   ${plainSum}`), refused.stderr);
  assert.match(refused.stderr, /names another file/);
  assert.doesNotMatch(refused.stdout, /listening/);

  const cli = await runClawbot(['verify', copy, '--no-progress']);
  assert.equal(cli.code, 1);
  assert.match(cli.stderr, /MISMATCH/);

  // --write over a contradiction is refused; after removing the wrong sidecar it records, and serve loads.
  fs.rmSync(`${copy}.sha256`);
  const write = await runClawbot(['verify', copy, '--write', '--no-progress']);
  assert.equal(write.code, 0, write.stderr);
  assert.equal(fs.readFileSync(`${copy}.sha256`, 'utf8'), `${plainSum}  ${MODEL_FILE}\n`);
  const server = await startServer({ model: copy, extraArgs: ['--verify'] });
  try {
    assert.match(server.stderr(), /verified .*SHA-256 matches sidecar/);
  } finally {
    await server.stop();
  }
});

test('encrypt records the .enc\'s own sum, says what to do with the plaintext; --remove-plaintext deletes it after a verified round trip', async () => {
  const dir = path.join(work, 'remove');
  fs.mkdirSync(dir);
  const plain = path.join(dir, 'model.gguf');
  fs.copyFileSync(modelPath(), plain);
  // Without the flag: the plaintext stays, and the command says so.
  const kept = await runClawbot(['encrypt', plain, '--key-file', keyFile, '--no-progress']);
  assert.equal(kept.code, 0, kept.stderr);
  assert.ok(fs.existsSync(plain));
  assert.match(kept.stderr, /the plaintext .*model\.gguf is still there/);
  assert.match(kept.stderr, /--remove-plaintext/);
  // The .enc's sum beside it, in sha256sum's format, which verify (and serve --verify) check it against.
  const sidecar = fs.readFileSync(`${plain}.enc.sha256`, 'utf8');
  assert.equal(sidecar, `${sha256(`${plain}.enc`)}  model.gguf.enc\n`);
  const verified = await runClawbot(['verify', `${plain}.enc`, '--no-progress']);
  assert.equal(verified.code, 0, verified.stderr);
  assert.match(verified.stderr, /SHA-256 OK: matches sidecar/);

  // With it: deleted only once the .enc decrypts back to the same bytes.
  const removed = await runClawbot(['encrypt', plain, '--key-file', keyFile, '--force', '--remove-plaintext']);
  assert.equal(removed.code, 0, removed.stderr);
  assert.equal(fs.existsSync(plain), false, 'the plaintext is gone');
  assert.match(removed.stderr, /decrypts to exactly the bytes of .*model\.gguf .*deleted/);
  const back = path.join(dir, 'back.gguf');
  const dec = await runClawbot(['decrypt', `${plain}.enc`, '-o', back, '--key-file', keyFile]);
  assert.equal(dec.code, 0, dec.stderr);
  assert.equal(sha256(back), plainSum);
  assert.equal(fs.readFileSync(`${plain}.enc.sha256`, 'utf8'), `${sha256(`${plain}.enc`)}  model.gguf.enc\n`,
    'the sum of the new .enc replaced the old one');
});
