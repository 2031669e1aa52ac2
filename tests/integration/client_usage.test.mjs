// Command-line mistakes end the same way for every command: one message on stderr that names the command and
// the problem (the closest command for an unknown one) and exit status 2, as README promises; --help and
// --version exit 0. Nothing here needs a server.
//
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/client_usage.test.mjs
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { runClient, writeConfig } from './client_helpers.mjs';

test('an unknown command exits 2 and suggests the closest', async () => {
  const cfg = writeConfig({});
  try {
    let r = await runClient(['bogus'], { env: cfg.env });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /^clawbot: unknown command 'bogus'/);
    assert.match(r.stderr, /commands: .*\bask\b.*\bdoctor\b/);
    r = await runClient(['doctr'], { env: cfg.env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /unknown command 'doctr'; did you mean 'doctor'\?/);
    r = await runClient(['models', 'lst'], { env: cfg.env });
    assert.equal(r.code, 2);
    assert.match(r.stderr, /^clawbot models: unknown command 'lst'; did you mean 'list'/);
    r = await runClient([], { env: cfg.env });
    assert.equal(r.code, 2, 'no command at all');
    assert.equal(r.stdout, '');
  } finally {
    cfg.cleanup();
  }
});

test('a bad option, value or missing argument exits 2 naming the command', async () => {
  const cfg = writeConfig({ model_endpoint: 'http://127.0.0.1:1' });
  const file = path.join(cfg.dir, 'f.py');
  fs.writeFileSync(file, 'print(1)\n');
  try {
    const cases = [
      [['ask', '--bogus'], /^clawbot ask: .*--bogus/],
      [['bench', '--concurrency', 'abc'], /^clawbot bench: .*concurrency/],
      [['code', 'complete', file], /^clawbot code complete: .*--line/],
      [['sessions', 'export', 'X', '--format', 'html'], /^clawbot sessions export: .*html/],
      [['serve'], /^clawbot serve: .*--model/],
    ];
    for (const [args, message] of cases) {
      const r = await runClient(args, { env: cfg.env });
      assert.equal(r.code, 2, `clawbot ${args.join(' ')} exited ${r.code}: ${r.stderr}`);
      assert.match(r.stderr, message);
      assert.match(r.stderr, /--help/);
    }
    // A value out of range is a usage error too, and reads as it was typed.
    const t = await runClient(['ask', 'hi', '--temperature', '5'], { env: cfg.env });
    assert.equal(t.code, 2);
    assert.match(t.stderr, /--temperature 5: allowed: 0 to 2/);
  } finally {
    cfg.cleanup();
  }
});

test('--help and --version exit 0; help shows no default of a negated flag', async () => {
  const cfg = writeConfig({});
  try {
    const v = await runClient(['--version'], { env: cfg.env });
    assert.equal(v.code, 0);
    assert.match(v.stdout, /^clawbot /);
    for (const command of ['verify', 'encrypt', 'decrypt', 'bench']) {
      const h = await runClient([command, '--help'], { env: cfg.env });
      assert.equal(h.code, 0, h.stderr);
      assert.doesNotMatch(h.stdout, /\{false\}|\{true\}/, `clawbot ${command} --help:\n${h.stdout}`);
    }
    const s = await runClient(['sessions', '--help'], { env: cfg.env });
    assert.match(s.stdout, /ask --save/, 'sessions says how ask stores a conversation');
  } finally {
    cfg.cleanup();
  }
});
