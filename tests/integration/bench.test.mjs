// Black-box tests for `clawbot bench` against `clawbot serve` on the tiny story model.
// Run: CLAWBOT_BIN=build/clawbot node --test tests/integration/bench.test.mjs
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';

import { MODEL_ID, startServer, runClawbot, requireBinary } from './server_harness.mjs';

const LATENCIES = ['ttft_ms', 'tpot_ms', 'itl_ms', 'e2e_ms', 'max_itl_ms'];

function parseReport(r) {
  const ctx = `exit=${r.code} stderr=${r.stderr.slice(0, 2000)} stdout=${r.stdout.slice(0, 2000)}`;
  assert.equal(r.timedOut, false, `clawbot bench timed out; ${ctx}`);
  assert.equal(r.code, 0, `clawbot bench must succeed; ${ctx}`);
  let report;
  try {
    report = JSON.parse(r.stdout);
  } catch (e) {
    assert.fail(`--json output is not one JSON object (${e.message}); ${ctx}`);
  }
  return report;
}

/** A distribution object is complete and ordered: min <= p50 <= p90 <= p99 <= max, mean within. */
function assertDistribution(d, name, { count } = {}) {
  const ctx = `${name}: ${JSON.stringify(d)}`;
  assert.ok(d && typeof d === 'object', ctx);
  if (count !== undefined) assert.equal(d.count, count, `count; ${ctx}`);
  assert.ok(d.count > 0, `no values; ${ctx}`);
  for (const k of ['mean', 'min', 'p50', 'p90', 'p99', 'max']) {
    assert.ok(Number.isFinite(d[k]) && d[k] >= 0, `${k} must be a non-negative number; ${ctx}`);
  }
  assert.ok(d.min <= d.p50 && d.p50 <= d.p90 && d.p90 <= d.p99 && d.p99 <= d.max, `percentiles out of order; ${ctx}`);
  assert.ok(d.min <= d.mean + 1e-9 && d.mean <= d.max + 1e-9, `mean outside [min, max]; ${ctx}`);
}

function assertRequests(report, { total, maxTokens }) {
  const ctx = JSON.stringify(report).slice(0, 3000);
  assert.deepEqual(report.requests, { total, ok: total, failed: 0, skipped: 0 }, ctx);
  assert.deepEqual(report.errors, [], ctx);
  assert.equal(report.per_request.length, total, ctx);
  for (const r of report.per_request) {
    const rc = `request ${JSON.stringify(r)}`;
    assert.equal(r.ok, true, rc);
    assert.equal(r.status, 200, rc);
    assert.ok(Number.isInteger(r.output_tokens) && r.output_tokens >= 1 && r.output_tokens <= maxTokens, `output tokens; ${rc}`);
    assert.equal(r.output_tokens_from_usage, true, `clawbot serve reports usage; ${rc}`);
    assert.ok(Number.isInteger(r.prompt_tokens) && r.prompt_tokens > 0, `prompt tokens; ${rc}`);
    assert.ok(r.ttft_ms > 0 && r.ttft_ms <= r.e2e_ms, `0 < TTFT <= E2E; ${rc}`);
    if (r.output_tokens >= 2) {
      const tpot = (r.e2e_ms - r.ttft_ms) / (r.output_tokens - 1);
      assert.ok(Math.abs(r.tpot_ms - tpot) < 1e-6, `TPOT = (E2E - TTFT) / (tokens - 1); ${rc}`);
    }
  }
  assert.equal(report.output_tokens.max <= maxTokens, true, ctx);
  assert.equal(report.total_output_tokens, report.per_request.reduce((n, r) => n + r.output_tokens, 0), ctx);
  assert.ok(report.duration_s > 0, ctx);
  assert.ok(report.output_tokens_per_s > 0 && report.requests_per_s > 0, ctx);
  assert.ok(Math.abs(report.requests_per_s - total / report.duration_s) < 1e-6, ctx);
  for (const name of LATENCIES) assertDistribution(report[name], name);
  assert.ok(report.ttft_ms.p50 <= report.e2e_ms.p50, `TTFT p50 <= E2E p50; ${ctx}`);
  assert.ok(report.ttft_ms.max <= report.e2e_ms.max, `TTFT max <= E2E max; ${ctx}`);
  assert.match(report.command, /^clawbot bench --url http:\/\/127\.0\.0\.1:\d+ --model /, ctx);
}

/** A port on which nothing listens (bound once by the OS, then closed). */
function closedPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

describe('clawbot bench against clawbot serve', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });

  test('independent requests: figures are sane', async () => {
    const r = await runClawbot(
      ['bench', '--url', server.baseUrl, '--concurrency', '2', '--requests', '6', '--max-tokens', '16', '--json'],
      { timeoutMs: 120000 },
    );
    const report = parseReport(r);
    assertRequests(report, { total: 6, maxTokens: 16 });
    assert.equal(report.parameters.model, MODEL_ID, 'the model comes from GET /v1/models');
    assert.equal(report.parameters.concurrency, 2);
    assert.equal(report.parameters.max_tokens, 16);
    assert.equal(report.parameters.workload, 'independent');
    assert.equal('ttft_first_turn_ms' in report, false);
    // The story model's small vocabulary reads several tokens per word: measured, so ~128 prompt tokens hold.
    assert.equal(report.prompt_calibration.measured, true, JSON.stringify(report.prompt_calibration));
    assert.ok(report.prompt_calibration.tokens_per_word > 1, JSON.stringify(report.prompt_calibration));
    const promptMean = report.prompt_tokens.mean;
    assert.ok(promptMean >= 128 * 0.8 && promptMean <= 128 * 1.2 + 64, `~128 prompt tokens (plus the template), got ${promptMean}`);
    assert.ok(!r.stderr.includes('\r['), 'no progress bar when stderr is not a terminal');
  });

  test('conversations: each turn sends the history, TTFT split by turn', async () => {
    const r = await runClawbot(
      [
        'bench', '--url', server.baseUrl, '--workload', 'conversations', '--conversations', '3', '--turns', '2',
        '--system-prompt-tokens', '16', '--prompt-tokens', '16', '--concurrency', '2', '--max-tokens', '16',
        '--json',
      ],
      { timeoutMs: 120000 },
    );
    const report = parseReport(r);
    assertRequests(report, { total: 6, maxTokens: 16 });
    assert.equal(report.parameters.conversations, 3);
    assert.equal(report.parameters.turns, 2);
    assertDistribution(report.ttft_first_turn_ms, 'ttft_first_turn_ms', { count: 3 });
    assertDistribution(report.ttft_later_turns_ms, 'ttft_later_turns_ms', { count: 3 });
    const byConversation = new Map();
    for (const q of report.per_request) {
      assert.ok([0, 1, 2].includes(q.conversation) && [1, 2].includes(q.turn), JSON.stringify(q));
      byConversation.set(q.conversation, { ...byConversation.get(q.conversation), [q.turn]: q });
    }
    assert.equal(byConversation.size, 3);
    for (const [k, turns] of byConversation) {
      assert.ok(turns[1] && turns[2], `conversation ${k} has both turns`);
      assert.ok(turns[1].index < turns[2].index, `conversation ${k}: turn 1 before turn 2`);
      // Turn 2 sends system + user 1 + the answer + user 2: a longer prompt than turn 1.
      assert.ok(
        turns[2].prompt_tokens > turns[1].prompt_tokens + turns[1].output_tokens,
        `conversation ${k}: turn 2 prompt (${turns[2].prompt_tokens}) carries turn 1 (${turns[1].prompt_tokens} + ${turns[1].output_tokens})`,
      );
    }
  });

  test('human report: the table and the command to reproduce', async () => {
    const r = await runClawbot(
      ['bench', '--url', server.baseUrl, '--requests', '2', '--concurrency', '1', '--max-tokens', '8', '--prompt-tokens', '16'],
      { timeoutMs: 120000 },
    );
    assert.equal(r.code, 0, r.stderr);
    for (const s of ['TTFT (ms)', 'TPOT (ms)', 'ITL (ms)', 'E2E (ms)', '2 ok, 0 failed', 'tok/s']) {
      assert.ok(r.stdout.includes(s), `report should show ${JSON.stringify(s)}:\n${r.stdout}`);
    }
    const line = r.stdout.split('\n').find((l) => l.startsWith('reproduce: '));
    assert.ok(line, r.stdout);
    for (const s of [`--url ${server.baseUrl}`, `--model ${MODEL_ID}`, '--requests 2', '--max-tokens 8', '--seed 42']) {
      assert.ok(line.includes(s), `${JSON.stringify(s)} in ${line}`);
    }
  });
});

describe('clawbot bench: --duration and Ctrl-C', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });
  const args = () => ['bench', '--url', server.baseUrl, '--concurrency', '2', '--max-tokens', '8', '--prompt-tokens', '16',
    '--json'];

  test('--duration 1: requests start for one second, then the run ends by itself', async () => {
    const r = await runClawbot([...args(), '--duration', '1'], { timeoutMs: 120000 });
    const report = parseReport(r);
    assert.equal(report.parameters.duration_s, 1);
    assert.equal(report.parameters.requests, null, 'no request count: the duration alone ends the run');
    assert.equal(report.interrupted, false);
    const { total, ok, failed } = report.requests;
    assert.ok(total > 0 && ok === total && failed === 0, JSON.stringify(report.requests));
    assert.equal(report.per_request.length, total);
    // bench's own clock: none started after the second, and the run lasted until the last one (started in
    // it, or found the second over when it finished) ended.
    for (const q of report.per_request) assert.ok(q.start_ms < 1000, `started at ${q.start_ms} ms`);
    assert.ok(report.duration_s >= 1, `the run lasted ${report.duration_s} s`);
  });

  test('Ctrl-C stops the run, reports what finished, and exits 130', async () => {
    const answered = () => (server.stderr().match(/path=\/v1\/chat\/completions status=200/g) ?? []).length;
    const before = answered();
    const proc = spawn(requireBinary(), [...args(), '--duration', '600'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr += c; });
    const closed = new Promise((resolve) => proc.once('close', (code, signal) => resolve({ code, signal })));
    try {
      // The two calibration probes, then five of the run's requests (of which at most two, the concurrency, may
      // not have reached bench yet).
      while (answered() < before + 7) {
        assert.equal(proc.exitCode, null, `bench ended before Ctrl-C:\n${stdout}\n${stderr}`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
      proc.kill('SIGINT');
      const { code, signal } = await closed;
      assert.equal(signal, null, stderr);
      assert.equal(code, 130, stderr);
      const report = JSON.parse(stdout);
      assert.equal(report.interrupted, true);
      assert.ok(report.requests.ok >= 3, JSON.stringify(report.requests));
      assert.equal(report.requests.failed, 0, 'a request cut by Ctrl-C is not the server\'s failure');
      assert.equal(report.requests.total, report.per_request.length);
    } finally {
      proc.kill('SIGKILL');
    }
  });
});

describe('clawbot bench: unreachable endpoint', () => {
  test('a closed port fails with a message naming the URL', async () => {
    const port = await closedPort();
    const url = `http://127.0.0.1:${port}`;
    const r = await runClawbot(['bench', '--url', url, '--requests', '2', '--json'], { timeoutMs: 30000 });
    assert.equal(r.timedOut, false);
    assert.notEqual(r.code, 0, `must fail; stdout=${r.stdout} stderr=${r.stderr}`);
    assert.ok(r.stderr.includes(url), `stderr should name ${url}: ${r.stderr}`);
    assert.match(r.stderr, /refused/i, r.stderr);
  });

  test('an https URL is taken, and its failure names the URL', async () => {
    const r = await runClawbot(['bench', '--url', 'https://127.0.0.1:1'], { timeoutMs: 30000 });
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /cannot connect to https:\/\/127\.0\.0\.1:1: connection refused/, r.stderr);
  });
});
