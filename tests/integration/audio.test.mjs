// Speech to text on serve (issue 23): /v1/audio/transcriptions and /translations with a synthesized whisper
// model of the real tiny shape on real speech, bad input refused naming the problem while chat keeps
// serving, /metrics, and `clawbot transcribe` (file, formats, -o, --eval).
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import path from 'node:path';

import { startServer, runClawbot, MODEL_ID, clawbotBin } from './server_harness.mjs';
import {
  whisperModel, speechFiles, form, parseSrt, parseVtt, checkTimes, openLive, pcm16k, LIBRIVOX_DIR,
} from './audio_helpers.mjs';

// A 2-hour FLAC of silence at 4 kHz, 8 bits, is 5 MB: under the size limit, over the duration limit.
const AUDIO_MAX_BYTES = 6_000_000;

async function transcribe(base, fields, bytes, name, route = 'transcriptions') {
  return fetch(`${base}/v1/audio/${route}`, { method: 'POST', body: form(fields, bytes, name) });
}

async function errorOf(res) {
  const body = await res.json();
  assert.ok(body.error && typeof body.error.message === 'string', JSON.stringify(body));
  return body.error;
}

describe('serve --whisper-model', () => {
  let server;
  let files;
  let model;
  before(async () => {
    model = whisperModel();
    files = speechFiles();
    server = await startServer({
      extraArgs: ['--whisper-model', model, '--audio-max-bytes', String(AUDIO_MAX_BYTES), '--threads', '2'],
    });
  });
  after(async () => {
    if (server) await server.stop();
    if (files) fs.rmSync(files.dir, { recursive: true, force: true });
  });

  test('/v1/models lists the speech model beside the LLM', async () => {
    const models = await (await fetch(`${server.baseUrl}/v1/models`)).json();
    const ids = models.data.map((m) => m.id);
    assert.ok(ids.includes(MODEL_ID), JSON.stringify(ids));
    const whisper = models.data.find((m) => m.meta?.task === 'transcription');
    assert.ok(whisper, JSON.stringify(models));
    assert.equal(whisper.id, path.basename(model, '.bin'));
    assert.equal(whisper.meta.whisper_type, 'tiny');
  });

  test('every container decodes, and verbose_json is consistent', { timeout: 240000 }, async () => {
    for (const file of [files.wav, files.flac, files.ogg, files.mp3, files.opus, files.librivox]) {
      const res = await transcribe(server.baseUrl, { model: 'whisper-1', response_format: 'verbose_json',
        'timestamp_granularities[]': ['word', 'segment'], temperature: '0.2' }, fs.readFileSync(file), path.basename(file));
      assert.equal(res.status, 200, `${file}: ${await res.clone().text()}`);
      const seconds = Number(res.headers.get('x-audio-seconds'));
      const body = await res.json();
      assert.equal(body.task, 'transcribe');
      assert.ok(body.duration > 1 && Math.abs(body.duration - seconds) < 0.01, `${file}: ${body.duration} vs ${seconds}`);
      assert.ok(Array.isArray(body.segments) && Array.isArray(body.words), file);
      checkTimes(body.segments, body.duration, `${file} segments`);
      checkTimes(body.words, body.duration, `${file} words`);
      assert.equal(typeof body.text, 'string');
    }
  });

  test('the decoded duration is the file\'s (WAV, MP3 and Opus of the same speech)', { timeout: 120000 }, async () => {
    for (const file of [files.wav, files.mp3, files.opus]) {
      const res = await transcribe(server.baseUrl, { model: 'whisper-1', response_format: 'text', temperature: '0.2' },
        fs.readFileSync(file), path.basename(file));
      assert.equal(res.status, 200, await res.clone().text());
      // MP3 and Opus encoders pad a few milliseconds at the start
      assert.ok(Math.abs(Number(res.headers.get('x-audio-seconds')) - files.seconds) < 0.15,
        `${file}: ${res.headers.get('x-audio-seconds')} vs ${files.seconds}`);
      assert.match(res.headers.get('content-type'), /^text\/plain/);
    }
  });

  test('srt and vtt validate; translations answer', { timeout: 120000 }, async () => {
    const bytes = fs.readFileSync(files.wav);
    const srt = await transcribe(server.baseUrl, { model: 'whisper-1', response_format: 'srt', temperature: '0.2' }, bytes);
    assert.equal(srt.status, 200);
    checkTimes(parseSrt(await srt.text()), files.seconds + 0.01, 'srt');
    const vtt = await transcribe(server.baseUrl, { model: 'whisper-1', response_format: 'vtt', temperature: '0.2' }, bytes);
    assert.equal(vtt.status, 200);
    assert.match(vtt.headers.get('content-type'), /^text\/vtt/);
    checkTimes(parseVtt(await vtt.text()), files.seconds + 0.01, 'vtt');
    const translated = await transcribe(server.baseUrl, { model: 'whisper-1', temperature: '0.2' }, bytes, 'a.wav', 'translations');
    assert.equal(translated.status, 200, await translated.clone().text());
    assert.equal(typeof (await translated.json()).text, 'string');
  });

  test('bad input is a 4xx naming the problem, and chat keeps serving meanwhile', { timeout: 120000 }, async () => {
    const chat = () => fetch(`${server.baseUrl}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 8 }),
    });
    const mp3 = fs.readFileSync(files.mp3);
    // A 16-bit mono PCM WAV of 200 silent samples whose header says `rate`.
    const wavHeader = (rate) => {
      const b = Buffer.alloc(44 + 400);
      b.write('RIFF', 0); b.writeUInt32LE(36 + 400, 4); b.write('WAVE', 8); b.write('fmt ', 12);
      b.writeUInt32LE(16, 16); b.writeUInt16LE(1, 20); b.writeUInt16LE(1, 22); b.writeUInt32LE(rate, 24);
      b.writeUInt32LE((rate * 2) >>> 0, 28); b.writeUInt16LE(2, 32); b.writeUInt16LE(16, 34);
      b.write('data', 36); b.writeUInt32LE(400, 40);
      return b;
    };
    const twoHours = path.join(files.dir, 'two-hours.flac');
    execFileSync('sox', ['-n', '-r', '4000', '-c', '1', '-b', '8', twoHours, 'trim', '0', '7200']);
    assert.ok(fs.statSync(twoHours).size < AUDIO_MAX_BYTES, 'the 2-hour file must pass the size limit');
    const cases = [
      { name: 'empty.wav', bytes: Buffer.alloc(0), status: 400, code: 'empty_file', message: /empty/ },
      { name: 'notes.wav', bytes: Buffer.from('these are my notes, not audio\n'.repeat(20)), status: 400,
        code: 'invalid_audio', message: /not audio/ },
      { name: 'cut.mp3', bytes: mp3.subarray(0, Math.floor(mp3.length / 2)), status: 400, code: 'truncated_audio',
        message: /truncated/ },
      { name: 'two-hours.flac', bytes: fs.readFileSync(twoHours), status: 400, code: 'audio_too_long',
        message: /7200\.0 s long; this node's limit is 3600\.0 s \(--audio-max-seconds\)/ },
      { name: 'voice.m4a', bytes: Buffer.concat([Buffer.from([0, 0, 0, 0x20]), Buffer.from('ftypM4A '), Buffer.alloc(200)]),
        status: 400, code: 'unsupported_audio_format', message: /does not decode mp4/ },
      // A header claiming 2^31 Hz: the resampler would size its table from it (gigabytes)
      { name: 'fast.wav', bytes: wavHeader(0x7fffffff), status: 400, code: 'invalid_audio', message: /2147483647 Hz/ },
      { name: 'huge.wav', bytes: Buffer.alloc(AUDIO_MAX_BYTES + 1000), status: 413, code: 'payload_too_large',
        message: /limit is 6000000 bytes \(--audio-max-bytes\)/ },
    ];
    for (const c of cases) {
      const [res, chatRes] = await Promise.all([
        transcribe(server.baseUrl, { model: 'whisper-1' }, c.bytes, c.name), chat()]);
      assert.equal(res.status, c.status, `${c.name}: ${await res.clone().text()}`);
      const error = await errorOf(res);
      assert.equal(error.code, c.code, `${c.name}: ${JSON.stringify(error)}`);
      assert.match(error.message, c.message, c.name);
      if (c.status === 400) assert.equal(error.param, 'file', c.name);
      assert.equal(chatRes.status, 200, `chat beside ${c.name}`);
    }
    // form mistakes name the field
    const format = await transcribe(server.baseUrl, { model: 'whisper-1', response_format: 'xml' }, fs.readFileSync(files.wav));
    assert.equal(format.status, 400);
    assert.equal((await errorOf(format)).param, 'response_format');
    const noFile = await transcribe(server.baseUrl, { model: 'whisper-1' });
    assert.equal(noFile.status, 400);
    assert.equal((await errorOf(noFile)).code, 'missing_file');
    const json = await fetch(`${server.baseUrl}/v1/audio/transcriptions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: '{}' });
    assert.equal(json.status, 400);
    assert.match((await errorOf(json)).message, /multipart\/form-data/);
    // JSON routes keep their own (smaller) body limit
    const big = await fetch(`${server.baseUrl}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: 'x'.repeat(9 << 20) });
    assert.equal(big.status, 413);
  });

  test('language is checked when the form is read, before the file is decoded', async () => {
    // not audio, and a language whisper does not know: the language is named (it used to be the file, as
    // the language was checked only once the audio had been decoded)
    const res = await transcribe(server.baseUrl, { model: 'whisper-1', language: 'xx' },
      Buffer.from('these are my notes, not audio\n'.repeat(20)), 'notes.wav');
    assert.equal(res.status, 400);
    const error = await errorOf(res);
    assert.equal(error.param, 'language', JSON.stringify(error));
    assert.equal(error.code, 'unsupported_language');
    assert.match(error.message, /'xx'/);
  });

  test('a transcription and chat at once: both answer', { timeout: 120000 }, async () => {
    const [audio, chat] = await Promise.all([
      transcribe(server.baseUrl, { model: 'whisper-1', temperature: '0.2' }, fs.readFileSync(files.librivox)),
      fetch(`${server.baseUrl}/v1/chat/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [{ role: 'user', content: 'Hi' }], max_tokens: 16 }) }),
    ]);
    assert.equal(audio.status, 200);
    assert.equal(chat.status, 200);
  });

  test('/metrics counts audio seconds, real-time factor and the queue', async () => {
    const text = await (await fetch(`${server.baseUrl}/metrics`)).text();
    const value = (name) => {
      const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
      assert.ok(m, `${name} missing`);
      return Number(m[1]);
    };
    assert.ok(value('clawbot_audio_seconds_total') > 5);
    assert.ok(value('clawbot_audio_real_time_factor') > 0);
    assert.equal(value('clawbot_audio_queue_depth'), 0);
    assert.ok(value('clawbot_audio_requests_total') >= 6);
  });

  test('clawbot transcribe FILE --format srt -o, and --eval DIR', { timeout: 240000 }, async () => {
    const out = path.join(files.dir, 'notes.srt');
    const r = await runClawbot(['transcribe', files.flac, '--endpoint', server.baseUrl, '--format', 'srt', '-o', out],
      { timeoutMs: 120000 });
    assert.equal(r.code, 0, r.stderr);
    checkTimes(parseSrt(fs.readFileSync(out, 'utf8')), files.seconds + 0.01, 'transcribe srt');
    const txt = await runClawbot(['transcribe', files.wav, '--endpoint', server.baseUrl], { timeoutMs: 120000 });
    assert.equal(txt.code, 0, txt.stderr);
    // --eval: a directory of audio with FILE.txt references, and a Sphinx transcription file
    const evalDir = path.join(files.dir, 'eval');
    fs.mkdirSync(evalDir);
    fs.copyFileSync(files.wav, path.join(evalDir, 'fox.wav'));
    fs.writeFileSync(path.join(evalDir, 'fox.txt'), 'The quick brown fox jumps over the lazy dog.');
    const evalRun = await runClawbot(['transcribe', '--eval', evalDir, '--endpoint', server.baseUrl], { timeoutMs: 120000 });
    assert.equal(evalRun.code, 0, evalRun.stderr);
    assert.match(evalRun.stdout, /^fox\.wav +9 +\d+ +[\d.]+%$/m);
    assert.match(evalRun.stdout, /^total +9 +\d+/m);
    const sphinx = await runClawbot(['transcribe', '--eval', LIBRIVOX_DIR, '--endpoint', server.baseUrl],
      { timeoutMs: 200000 });
    assert.equal(sphinx.code, 0, sphinx.stderr);
    assert.match(sphinx.stdout, /sense_and_sensibility_01_austen_64kb-0880\.wav +8 /);
    const missing = await runClawbot(['transcribe', path.join(files.dir, 'nope.wav'), '--endpoint', server.baseUrl]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read/);
  });
});

describe('the live path', () => {
  let server;
  let files;
  before(async () => {
    files = speechFiles();
    server = await startServer({ extraArgs: ['--whisper-model', whisperModel(), '--threads', '2'] });
  });
  after(async () => {
    if (server) await server.stop();
    if (files) fs.rmSync(files.dir, { recursive: true, force: true });
  });

  test('transcribe --input FILE --realtime: partials, then finals while the audio still plays; lag printed', { timeout: 120000 }, async () => {
    // two utterances with a second of silence between: the first is final before the second ends
    const twice = path.join(files.dir, 'twice.wav');
    execFileSync('sox', [files.wav, twice, 'pad', '0', '1.0', 'repeat', '1']);
    const duration = Number(execFileSync('soxi', ['-D', twice], { encoding: 'utf8' }).trim());
    const out = path.join(files.dir, 'live.vtt');
    const r = await runClawbot(['transcribe', '--input', twice, '--realtime', '--endpoint', server.baseUrl,
      '--format', 'vtt', '-o', out], { timeoutMs: 100000 });
    assert.equal(r.code, 0, r.stderr);
    const partials = [...r.stderr.matchAll(/^ {2}\.\.\. \[([\d.]+) s\]/gm)].map((m) => Number(m[1]));
    const finals = [...r.stderr.matchAll(/^ {2}\(final at ([\d.]+) s, (-?[\d.]+) s after the end of its speech\)$/gm)]
      .map((m) => ({ at: Number(m[1]), lag: Number(m[2]) }));
    // (No pass or fail on timing: the order of the messages, and the lag printed for the closing note.)
    assert.ok(partials.length >= 1, r.stderr);
    assert.ok(finals.length >= 2, r.stderr);
    assert.ok(partials[0] <= finals[0].at, `the first partial (${partials[0]} s) before the first final (${finals[0].at} s)`);
    console.log(`live: audio ${duration.toFixed(2)} s; first partial at ${partials[0]} s, finals at ` +
      `${finals.map((f) => f.at.toFixed(2)).join(', ')} s (${finals[0].at < duration ? 'the first while the audio still played' : 'after the audio ended'})`);
    assert.match(r.stderr, /lag after the end of speech: median [\d.]+ s, max [\d.]+ s/);
    console.log(`live lag (synthetic tiny, 2 threads): ${finals.map((f) => f.lag.toFixed(2)).join(', ')} s`);
    assert.match(r.stdout, /^\[00:00:0\d\.\d{3} --> 00:00:0\d\.\d{3}\]/m);
    checkTimes(parseVtt(fs.readFileSync(out, 'utf8')), duration + 0.05, 'live vtt');
    const metrics = await (await fetch(`${server.baseUrl}/metrics`)).text();
    assert.match(metrics, /^clawbot_audio_seconds_total [1-9]/m);
  });

  test('an unknown language refuses the upgrade with a 400 naming the parameter', async () => {
    const refused = await openLive(server.baseUrl, '?language=xx');
    assert.equal(refused.status, 400, 'the upgrade must be refused');
    const error = JSON.parse(refused.body).error;
    assert.equal(error.param, 'language', refused.body);
    assert.equal(error.code, 'unsupported_language');
    const accepted = await openLive(server.baseUrl, '?language=en');
    assert.equal(typeof accepted.sendBinary, 'function');
    accepted.close();
  });

  test('binary frames of odd lengths keep the samples aligned', { timeout: 120000 }, async () => {
    const pcm = pcm16k(files.wav);
    const session = async (lengths) => {
      const ws = await openLive(server.baseUrl);
      for (let at = 0, i = 0; at < pcm.length; i++) {
        const n = Math.min(lengths[i % lengths.length], pcm.length - at);
        ws.sendBinary(pcm.subarray(at, at + n));
        at += n;
      }
      ws.sendText('{"type":"stop"}');
      const finals = [];
      for (let m = await ws.next(); m !== null; m = await ws.next()) {
        if (m.type === 'final') finals.push(m);
        if (m.type === 'error') assert.fail(`node: ${m.message}`);
        if (m.type === 'done') {
          ws.close();
          return { finals, seconds: m.audio_seconds };
        }
      }
      assert.fail('the session ended without done');
    };
    const even = await session([3200]);
    // split at odd offsets: a sample's two bytes arrive in different messages
    const odd = await session([3201, 1599, 777, 3, 1]);
    assert.equal(odd.seconds, even.seconds, 'every byte counts');
    assert.ok(even.finals.length >= 1);
    assert.deepEqual(odd.finals.map((f) => [f.start, f.end, f.text]), even.finals.map((f) => [f.start, f.end, f.text]));
    // done counts the samples received (it counted the last 30 ms frame padded with silence)
    assert.equal(even.seconds, pcm.length / 2 / 16000);
  });

  test('the route without a WebSocket upgrade is a 400 saying so', async () => {
    const res = await fetch(`${server.baseUrl}/v1/audio/live`);
    assert.equal(res.status, 400);
    assert.match((await errorOf(res)).message, /WebSocket/);
  });
});

describe('serve without a whisper model', () => {
  let server;
  before(async () => {
    server = await startServer();
  });
  after(async () => server && (await server.stop()));

  test('audio routes answer 404 saying how to get them', async () => {
    const res = await transcribe(server.baseUrl, { model: 'whisper-1' }, Buffer.from('RIFF'));
    assert.equal(res.status, 404);
    assert.match((await errorOf(res)).message, /--whisper-model/);
  });
});

describe('models and a whisper file', () => {
  test('models list shows a synthesized whisper model as synthetic speech to text; verify takes it', async () => {
    const dir = fs.mkdtempSync(path.join(path.dirname(whisperModel()), 'clawbot-models-'));
    try {
      const file = path.join(dir, 'ggml-tiny-synthetic.bin');
      fs.copyFileSync(whisperModel(), file);
      const env = { ...process.env, CLAWBOT_MODELS: dir };
      const list = execFileSync(clawbotBin(), ['models', 'list', '--json'],
        { env, encoding: 'utf8' });
      const entry = JSON.parse(list).find((m) => m.name === 'ggml-tiny-synthetic.bin');
      assert.ok(entry, list);
      assert.equal(entry.architecture, 'whisper');
      assert.equal(entry.task, 'transcription');
      assert.equal(entry.whisper_size, 'tiny');
      assert.match(entry.synthetic, /^whisper-tiny f16 seed 1/);
      assert.ok(entry.parameters > 37e6 && entry.parameters < 39e6, String(entry.parameters));
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

/** `clawbot transcribe ARGS` spawned, with its output as it comes: { proc, out, err, exited }. */
function spawnTranscribe(args) {
  const proc = spawn(clawbotBin(), ['transcribe', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const run = { proc, out: '', err: '' };
  proc.stdout.setEncoding('utf8').on('data', (c) => { run.out += c; });
  proc.stderr.setEncoding('utf8').on('data', (c) => { run.err += c; });
  run.exited = new Promise((resolve) => proc.on('close', (code) => resolve(code)));
  return run;
}

async function until(what, condition, timeoutMs = 60000) {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('the live path when the node goes away', () => {
  let files;
  let model;
  let speech;
  let duration;
  before(() => {
    model = whisperModel();
    files = speechFiles();
    // 18 s of LibriVox speech
    speech = path.join(files.dir, 'librivox.wav');
    execFileSync('sox', ['0870', '0890', '0920'].map((n) => path.join(LIBRIVOX_DIR, `sense_and_sensibility_01_austen_64kb-${n}.wav`)).concat([speech]));
    duration = Number(execFileSync('soxi', ['-D', speech], { encoding: 'utf8' }).trim());
  });
  after(() => files && fs.rmSync(files.dir, { recursive: true, force: true }));

  const serverArgs = () => ['--whisper-model', model, '--threads', '2'];
  const config = (retryPolicy) => {
    const file = path.join(files.dir, `clawbot-${retryPolicy.max_retries}.json`);
    fs.writeFileSync(file, JSON.stringify({ retry_policy: retryPolicy }));
    return file;
  };
  // The serve process killed once the first final segment is printed.
  const killAfterFirstFinal = async (server, run) => {
    await until('a final segment', () => /^\[\d\d:\d\d:\d\d\.\d{3} -->/m.test(run.out));
    const finalsBefore = (run.out.match(/^\[/gm) ?? []).length;
    server.proc.kill('SIGKILL');
    await new Promise((r) => server.proc.once('exit', r));
    return finalsBefore;
  };

  test('transcribe --input --realtime: the node is killed and restarted mid-stream; the transcript completes in the stream\'s times',
    { timeout: 180000 }, async () => {
      let server = await startServer({ extraArgs: serverArgs() });
      const out = path.join(files.dir, 'restart.json');
      try {
        const run = spawnTranscribe(['--input', speech, '--realtime', '--endpoint', server.baseUrl,
          '--config', config({ max_retries: 10, backoff_factor: 1.5, base_delay: 300 }), '--format', 'verbose_json', '-o', out]);
        const finalsBefore = await killAfterFirstFinal(server, run);
        await new Promise((r) => setTimeout(r, 1500));
        server = await startServer({ port: server.port, extraArgs: serverArgs() });
        const code = await run.exited;
        assert.equal(code, 0, run.err);
        assert.match(run.err, /the live connection was lost: .*; reconnecting in [\d.]+ s \(retry 1 of 10\)/);
        const resent = /reconnected; resending ([\d.]+) s of audio from ([\d.]+) s/.exec(run.err);
        assert.ok(resent, run.err);
        const resumedAt = Number(resent[2]);
        const body = JSON.parse(fs.readFileSync(out, 'utf8'));
        console.log(`restart: ${finalsBefore} final(s) before the kill; resent ${resent[1]} s from ${resumedAt} s; ` +
          `segments ${body.segments.map((s) => `${s.start.toFixed(2)}-${s.end.toFixed(2)}`).join(' ')}; audio ${duration} s`);
        assert.ok(Math.abs(body.duration - duration) < 0.05, `transcript duration ${body.duration} vs the audio's ${duration}`);
        checkTimes(body.segments, duration + 0.01, 'segments across the restart');
        const after = body.segments.filter((s) => s.start >= resumedAt - 1e-6);
        assert.ok(after.length >= 1, 'segments after the reconnection');
        assert.ok(finalsBefore >= 1 && resumedAt > 0, 'the new connection starts where the last final ended');
        assert.ok(body.segments.at(-1).end >= duration - 1.5, `the last segment ends at ${body.segments.at(-1).end} of ${duration} s`);
      } finally {
        await server.stop();
      }
    });

  test('past the resend buffer the oldest audio goes, and the reconnection says which stretch', { timeout: 180000 }, async () => {
    let server = await startServer({ extraArgs: serverArgs() });
    const out = path.join(files.dir, 'bounded.json');
    try {
      const run = spawnTranscribe(['--input', speech, '--realtime', '--resend-buffer', '1', '--endpoint', server.baseUrl,
        '--config', config({ max_retries: 10, backoff_factor: 1.5, base_delay: 300 }), '--format', 'verbose_json', '-o', out]);
      await killAfterFirstFinal(server, run);
      await new Promise((r) => setTimeout(r, 2500));  // more than the 1 s buffer is captured meanwhile
      server = await startServer({ port: server.port, extraArgs: serverArgs() });
      assert.equal(await run.exited, 0, run.err);
      const lost = /audio from ([\d.]+) s to ([\d.]+) s was past the resend buffer \(1 s\) and is not transcribed/.exec(run.err);
      assert.ok(lost, run.err);
      const resent = /reconnected; resending ([\d.]+) s of audio from ([\d.]+) s/.exec(run.err);
      assert.ok(Number(resent[1]) <= 1.0 + 1e-9, `resent ${resent[1]} s with a 1 s buffer`);
      assert.equal(resent[2], lost[2], 'the resent audio starts where the lost stretch ends');
      const body = JSON.parse(fs.readFileSync(out, 'utf8'));
      assert.ok(Math.abs(body.duration - duration) < 0.05, `transcript duration ${body.duration} vs the audio's ${duration}`);
      checkTimes(body.segments, duration + 0.01, 'segments around the lost stretch');
      assert.ok(body.segments.every((s) => s.end <= Number(lost[1]) + 1e-6 || s.start >= Number(lost[2]) - 1e-6),
        'no segment inside the stretch that was not resent');
    } finally {
      await server.stop();
    }
  });

  test('retries exhausted: exit 1 with a clear message, what was transcribed saved with -o', { timeout: 120000 }, async () => {
    const server = await startServer({ extraArgs: serverArgs() });
    const out = path.join(files.dir, 'gave-up.json');
    const run = spawnTranscribe(['--input', speech, '--realtime', '--endpoint', server.baseUrl,
      '--config', config({ max_retries: 2, backoff_factor: 1, base_delay: 200 }), '--format', 'verbose_json', '-o', out]);
    const finalsBefore = await killAfterFirstFinal(server, run);
    const code = await run.exited;
    assert.equal(code, 1, run.err);
    assert.match(run.err, /cannot connect to http:\/\/127\.0\.0\.1:\d+: Connection refused \(gave up after 2 retries: retry_policy\.max_retries\); what was transcribed is in .*gave-up\.json/);
    const body = JSON.parse(fs.readFileSync(out, 'utf8'));
    assert.equal(body.segments.length, finalsBefore);
    // in the stream's times (they were clamped to a duration of 0 when no done came)
    assert.ok(body.duration > 0 && body.duration <= duration + 0.01, `duration ${body.duration}`);
    assert.ok(body.segments[0].end > 0, JSON.stringify(body.segments));
    checkTimes(body.segments, body.duration, 'what was saved');
  });
});

/** An HTTP proxy to `target` that records each request ({method, url, body}); answers are passed through. */
async function recordingProxy(target) {
  const requests = [];
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const body = Buffer.concat(chunks);
    requests.push({ method: req.method, url: req.url, body: body.toString('utf8') });
    const upstream = await fetch(target + req.url, {
      method: req.method, headers: { 'content-type': req.headers['content-type'] ?? 'application/json' },
      body: req.method === 'GET' ? undefined : body });
    res.writeHead(upstream.status, { 'content-type': upstream.headers.get('content-type') ?? 'application/json' });
    res.end(Buffer.from(await upstream.arrayBuffer()));
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${server.address().port}`, requests, close: () => server.close() };
}

describe('transcribe --minutes', () => {
  let server;
  let files;
  let proxy;
  before(async () => {
    files = speechFiles();
    server = await startServer({ extraArgs: ['--whisper-model', whisperModel(), '--threads', '2'] });
    proxy = await recordingProxy(server.baseUrl);
  });
  after(async () => {
    proxy?.close();
    if (server) await server.stop();
    if (files) fs.rmSync(files.dir, { recursive: true, force: true });
  });

  // The transcript section of the notes: its segment lines' text.
  const transcriptOf = (notes) => {
    const at = notes.indexOf('\n# Transcript\n');
    assert.ok(notes.startsWith('# Minutes\n') && at > 0, notes);
    return [...notes.slice(at).matchAll(/^- `[\d:.]+ --> [\d:.]+` (.*)$/gm)].map((m) => m[1]);
  };
  const chatRequests = () => proxy.requests.filter((r) => r.url === '/v1/chat/completions').map((r) => JSON.parse(r.body));

  test('a file: the chat model gets the transcript; -o has the minutes, then the transcript', { timeout: 240000 }, async () => {
    const notes = path.join(files.dir, 'notes.md');
    const r = await runClawbot(['transcribe', files.librivox, '--endpoint', server.baseUrl, '--minutes',
      '--minutes-endpoint', proxy.url, '-o', notes], { timeoutMs: 200000 });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^# Minutes\n\n\S/m);
    const text = fs.readFileSync(notes, 'utf8');
    const lines = transcriptOf(text);
    assert.ok(lines.length >= 1, text);
    const requests = chatRequests();
    assert.ok(requests.length >= 1);
    const sent = requests.map((q) => q.messages.map((m) => m.content).join('\n')).join('\n');
    for (const line of lines) assert.ok(sent.includes(line), `the transcript line '${line}' was not sent`);
    assert.match(sent, /Summary.*Decisions.*Action items/s);
    const minutes = text.slice('# Minutes\n'.length, text.indexOf('\n# Transcript\n')).trim();
    assert.ok(minutes.length > 0 && !minutes.startsWith('_Not written'), text);
  });

  test('a transcript longer than the context is summarised in parts, then combined', { timeout: 300000 }, async () => {
    proxy.requests.length = 0;
    const config = path.join(files.dir, 'small-context.json');
    // a context so small that the transcript must be split (what a long meeting does to a real model)
    fs.writeFileSync(config, JSON.stringify({ context_length: 420, retry_policy: { max_retries: 0 } }));
    // 65 s of LibriVox speech (four recordings, three times), through the live path: a dozen segments
    const once = ['0870', '0890', '0920', '0930'].map((n) => path.join(LIBRIVOX_DIR, `sense_and_sensibility_01_austen_64kb-${n}.wav`));
    const long = path.join(files.dir, 'long.wav');
    execFileSync('sox', [...once, ...once, ...once, long]);
    const notes = path.join(files.dir, 'long.md');
    const r = await runClawbot(['transcribe', '--input', long, '--endpoint', server.baseUrl, '--config', config,
      '--minutes', '--minutes-endpoint', proxy.url, '-o', notes], { timeoutMs: 280000 });
    assert.equal(r.code, 0, r.stderr);
    const plan = /minutes from (\d+) chat requests? \((\d+) transcript parts?, 420-token context\)/.exec(r.stderr);
    assert.ok(plan, r.stderr);
    const lines = transcriptOf(fs.readFileSync(notes, 'utf8'));
    const requests = chatRequests();
    assert.equal(requests.length, Number(plan[1]));
    const parts = requests.filter((q) => /^Part \d+ of \d+ of a meeting transcript/.test(q.messages.at(-1).content));
    assert.equal(parts.length, Number(plan[2]));
    assert.ok(parts.length >= 2, `the transcript (${lines.length} lines) fits 420 tokens? ${r.stderr}`);
    // every line went out in a part; the last request combines the parts' notes
    const sent = parts.map((q) => q.messages.at(-1).content).join('\n');
    for (const line of lines) assert.ok(sent.includes(line) || line.length > 200, `'${line}' was not sent`);
    assert.match(requests.at(-1).messages.at(-1).content, /^Notes on consecutive parts of one meeting/);
    // each request fits: measured by the server that tokenizes
    for (const q of requests) {
      const text = q.messages.map((m) => m.content).join('\n');
      const tokens = (await (await fetch(`${server.baseUrl}/tokenize`, { method: 'POST', body: JSON.stringify({ content: text }) })).json()).tokens;
      assert.ok(tokens.length + q.max_tokens <= 420, `${tokens.length} prompt tokens + ${q.max_tokens} for the answer`);
    }
  });

  test('the chat endpoint down: a clear error, exit 1, and the transcript is still written', { timeout: 120000 }, async () => {
    const closed = http.createServer();
    await new Promise((r) => closed.listen(0, '127.0.0.1', r));
    const port = closed.address().port;
    await new Promise((r) => closed.close(r));
    const config = path.join(files.dir, 'no-retry.json');
    fs.writeFileSync(config, JSON.stringify({ retry_policy: { max_retries: 0 } }));
    const notes = path.join(files.dir, 'down.md');
    const r = await runClawbot(['transcribe', files.wav, '--endpoint', server.baseUrl, '--config', config, '--minutes',
      '--minutes-endpoint', `http://127.0.0.1:${port}`, '-o', notes], { timeoutMs: 100000 });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, new RegExp(`minutes: the chat model at http://127\\.0\\.0\\.1:${port} did not answer: .*; the transcript is in .*down\\.md`));
    const text = fs.readFileSync(notes, 'utf8');
    assert.match(text, /^# Minutes\n\n_Not written: /);
    assert.ok(transcriptOf(text).length >= 1, text);
  });
});
