// The official `openai` client's audio.transcriptions.create and audio.translations.create against clawbot
// serve with a synthesized whisper model of the real tiny shape (issue 23's acceptance): real speech as WAV
// (espeak-ng, LibriVox, whisper.cpp's jfk.wav), MP3 and FLAC, each response format; srt and vtt validate;
// timestamps are monotonic and within the audio. (Random weights: the words are not checked, the mechanics
// are.)
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

import { startServer } from '../integration/server_harness.mjs';
import { whisperModel, speechFiles, jfkSamples, parseSrt, parseVtt, checkTimes } from '../integration/audio_helpers.mjs';
import OpenAI from './openai_client.mjs';

describe('openai client: audio', () => {
  let server;
  let client;
  let files;
  before(async () => {
    files = speechFiles();
    server = await startServer({ extraArgs: ['--whisper-model', whisperModel(), '--threads', '2'] });
    client = new OpenAI({ baseURL: server.baseUrl + '/v1', apiKey: 'unused', maxRetries: 0, timeout: 120000 });
  });
  after(async () => {
    if (server) await server.stop();
    if (files) fs.rmSync(files.dir, { recursive: true, force: true });
  });

  const sources = () => {
    const list = [['wav', files.wav], ['mp3', files.mp3], ['flac', files.flac], ['librivox wav', files.librivox]];
    const jfk = jfkSamples();
    if (jfk.wav) list.push(['jfk.wav', jfk.wav]);
    if (jfk.mp3) list.push(['jfk.mp3', jfk.mp3]);
    return list;
  };

  test('each file in each response format', { timeout: 280000 }, async () => {
    for (const [what, file] of sources()) {
      const upload = () => fs.createReadStream(file);
      const base = { file: upload(), model: 'whisper-1', temperature: 0.2 };
      const verbose = await client.audio.transcriptions.create({
        ...base, response_format: 'verbose_json', timestamp_granularities: ['word', 'segment'] });
      assert.equal(typeof verbose.text, 'string', what);
      assert.ok(verbose.duration > 1, `${what}: ${verbose.duration}`);
      checkTimes(verbose.segments, verbose.duration, `${what} segments`);
      checkTimes(verbose.words, verbose.duration, `${what} words`);
      const duration = verbose.duration;

      if (what === 'librivox wav' || what.startsWith('jfk')) continue;  // each format on the three containers
      const json = await client.audio.transcriptions.create({ ...base, file: upload(), response_format: 'json' });
      assert.equal(typeof json.text, 'string', what);
      const text = await client.audio.transcriptions.create({ ...base, file: upload(), response_format: 'text' });
      assert.equal(typeof text, 'string', what);
      const srt = await client.audio.transcriptions.create({ ...base, file: upload(), response_format: 'srt' });
      checkTimes(parseSrt(srt), duration, `${what} srt`);
      const vtt = await client.audio.transcriptions.create({ ...base, file: upload(), response_format: 'vtt' });
      checkTimes(parseVtt(vtt), duration, `${what} vtt`);
    }
  });

  test('translations.create', { timeout: 60000 }, async () => {
    const r = await client.audio.translations.create({ file: fs.createReadStream(files.wav), model: 'whisper-1', temperature: 0.2 });
    assert.equal(typeof r.text, 'string');
  });

  test('an error the client can read', { timeout: 30000 }, async () => {
    const notAudio = path.join(files.dir, 'notes.wav');
    fs.writeFileSync(notAudio, 'not audio at all\n');
    await assert.rejects(
      client.audio.transcriptions.create({ file: fs.createReadStream(notAudio), model: 'whisper-1' }),
      (e) => e.status === 400 && /not audio/.test(e.message) && e.code === 'invalid_audio',
    );
  });
});
