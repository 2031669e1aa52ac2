// Fixtures for the speech-to-text tests: a synthesized whisper model of the real tiny shape (random weights,
// labelled synthetic), and real speech in several containers: espeak-ng speaking known text (WAV, converted
// by sox to FLAC and OGG, by build/tests/audio_encode to MP3 and Opus), pocketsphinx-testdata's LibriVox
// recordings, and whisper.cpp's jfk.wav from the nodejs-whisper package when the dependency cache has it.
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

import { clawbotBin, REPO_ROOT } from './server_harness.mjs';

export const SPOKEN_TEXT = 'The quick brown fox jumps over the lazy dog. Speech to text runs on the node.';
export const LIBRIVOX_DIR = '/usr/share/pocketsphinx/test/data/librivox';

/** The synthesized tiny whisper model (written once per machine, reused by its label). */
export function whisperModel() {
  const file = path.join(os.tmpdir(), 'clawbot-test-whisper-tiny-f16.bin');
  execFileSync(clawbotBin(), ['models', 'synth', 'whisper-tiny', '-o', file, '--seed', '1'], { stdio: 'pipe' });
  return file;
}

function audioEncode() {
  const built = path.join(path.dirname(clawbotBin()), 'tests', 'audio_encode');
  if (!fs.existsSync(built)) throw new Error(`test helper not built: ${built} (cmake --build build --target audio_encode)`);
  return built;
}

/**
 * whisper.cpp's JFK sample from the nodejs-whisper package, kept in the dependency cache by the bootstrap:
 * { wav, mp3 } (each null when absent).
 */
export function jfkSamples() {
  const prefixFile = path.join(REPO_ROOT, '.deps-prefix');
  const prefix = process.env.CLAWBOT_LLAMA_PREFIX ||
    (fs.existsSync(prefixFile) ? fs.readFileSync(prefixFile, 'utf8').trim() : '');
  const found = (...parts) => {
    const file = prefix && path.join(prefix, 'whisper-src', ...parts);
    return file && fs.existsSync(file) ? file : null;
  };
  return { wav: found('bindings', 'go', 'samples', 'jfk.wav'), mp3: found('samples', 'jfk.mp3') };
}

/**
 * Speech files in a fresh directory: { dir, wav, flac, ogg, mp3, opus, librivox, seconds } where `seconds` is
 * the spoken WAV's duration.
 */
export function speechFiles() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-audio-'));
  const wav = path.join(dir, 'spoken.wav');
  execFileSync('espeak-ng', ['-w', wav, SPOKEN_TEXT]);
  const flac = path.join(dir, 'spoken.flac');
  const ogg = path.join(dir, 'spoken.ogg');
  const wav16 = path.join(dir, 'spoken16k.wav');
  execFileSync('sox', [wav, flac]);
  execFileSync('sox', [wav, ogg]);
  execFileSync('sox', [wav, '-r', '16000', wav16]);  // Opus takes 8, 12, 16, 24 or 48 kHz
  const mp3 = path.join(dir, 'spoken.mp3');
  const opus = path.join(dir, 'spoken.opus');
  execFileSync(audioEncode(), [wav, mp3]);
  execFileSync(audioEncode(), [wav16, opus]);
  const seconds = Number(execFileSync('soxi', ['-D', wav], { encoding: 'utf8' }).trim());
  const librivox = path.join(LIBRIVOX_DIR, 'sense_and_sensibility_01_austen_64kb-0880.wav');
  return { dir, wav, flac, ogg, mp3, opus, librivox, seconds };
}

/** A multipart body as OpenAI's clients send it (FormData, so fetch sets the boundary). */
export function form(fields, fileBytes, fileName = 'audio.wav') {
  const body = new FormData();
  for (const [k, v] of Object.entries(fields)) {
    for (const one of Array.isArray(v) ? v : [v]) body.append(k, one);
  }
  if (fileBytes !== undefined) body.append('file', new Blob([fileBytes]), fileName);
  return body;
}

/** SRT cues: [{index, start, end, text}] (seconds); throws on anything that is not SRT. */
export function parseSrt(text) {
  const cues = [];
  const blocks = text.replace(/\r\n/g, '\n').split('\n\n').filter((b) => b.trim() !== '');
  const time = (t) => {
    const m = /^(\d\d):(\d\d):(\d\d),(\d\d\d)$/.exec(t);
    if (!m) throw new Error(`bad SRT time '${t}'`);
    return Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
  };
  for (const block of blocks) {
    const lines = block.split('\n');
    if (!/^\d+$/.test(lines[0])) throw new Error(`bad SRT index in ${JSON.stringify(block)}`);
    const m = /^(\S+) --> (\S+)$/.exec(lines[1] ?? '');
    if (!m) throw new Error(`bad SRT timing in ${JSON.stringify(block)}`);
    if (lines.length < 3 || lines.slice(2).join('').trim() === '') throw new Error(`SRT cue without text: ${JSON.stringify(block)}`);
    cues.push({ index: Number(lines[0]), start: time(m[1]), end: time(m[2]), text: lines.slice(2).join('\n') });
  }
  cues.forEach((c, i) => {
    if (c.index !== i + 1) throw new Error(`SRT cue ${i + 1} numbered ${c.index}`);
  });
  return cues;
}

/** WebVTT cues: [{start, end, text}]; throws on anything that is not WebVTT. */
export function parseVtt(text) {
  if (!text.startsWith('WEBVTT')) throw new Error('no WEBVTT header');
  const time = (t) => {
    const m = /^(?:(\d\d):)?(\d\d):(\d\d)\.(\d\d\d)$/.exec(t);
    if (!m) throw new Error(`bad WebVTT time '${t}'`);
    return Number(m[1] ?? 0) * 3600 + Number(m[2]) * 60 + Number(m[3]) + Number(m[4]) / 1000;
  };
  const blocks = text.replace(/\r\n/g, '\n').split('\n\n').slice(1).filter((b) => b.trim() !== '');
  return blocks.map((block) => {
    const lines = block.split('\n');
    const timing = lines.findIndex((l) => l.includes('-->'));
    const m = /^(\S+) --> (\S+)/.exec(lines[timing] ?? '');
    if (!m) throw new Error(`bad WebVTT cue ${JSON.stringify(block)}`);
    return { start: time(m[1]), end: time(m[2]), text: lines.slice(timing + 1).join('\n') };
  });
}

/** Cues or segments start in order, end after they start, and stay within the audio. */
export function checkTimes(items, duration, what) {
  let last = 0;
  for (const item of items) {
    if (!(item.start >= last - 1e-9)) throw new Error(`${what}: start ${item.start} before ${last}`);
    if (!(item.end >= item.start)) throw new Error(`${what}: end ${item.end} before start ${item.start}`);
    if (!(item.end <= duration + 0.001)) throw new Error(`${what}: end ${item.end} after the audio's ${duration} s`);
    last = item.start;
  }
}

export { REPO_ROOT };

/**
 * A minimal WebSocket client (RFC 6455) for the live route: Node 20 has none built in. Resolves to
 * { status, body } when the server refuses the upgrade, else to { sendBinary(buf), sendText(s), next(),
 * close() } where next() resolves to the next text message parsed as JSON (null once the connection ended).
 */
export function openLive(baseUrl, query = '') {
  const url = new URL(`${baseUrl}/v1/audio/live${query}`);
  const key = crypto.randomBytes(16).toString('base64');
  return new Promise((resolve, reject) => {
    const socket = net.connect(Number(url.port), url.hostname, () => {
      socket.write(`GET ${url.pathname}${url.search} HTTP/1.1\r\nHost: ${url.host}\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`);
    });
    let buffer = Buffer.alloc(0);
    let upgraded = false;
    const messages = [];
    const waiters = [];
    let ended = false;
    let fragments = [];
    const deliver = (m) => (waiters.length ? waiters.shift()(m) : messages.push(m));
    const frame = (opcode, payload) => {
      const mask = crypto.randomBytes(4);
      const n = payload.length;
      const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n])
        : n < 65536 ? Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff])
          : Buffer.concat([Buffer.from([0x80 | opcode, 0x80 | 127]), (() => { const b = Buffer.alloc(8); b.writeBigUInt64BE(BigInt(n)); return b; })()]);
      const body = Buffer.from(payload);
      for (let i = 0; i < body.length; i++) body[i] ^= mask[i % 4];
      socket.write(Buffer.concat([head, mask, body]));
    };
    const parseFrames = () => {
      for (;;) {
        if (buffer.length < 2) return;
        const fin = buffer[0] & 0x80;
        const opcode = buffer[0] & 0x0f;
        let n = buffer[1] & 0x7f;
        let at = 2;
        if (n === 126) { if (buffer.length < 4) return; n = buffer.readUInt16BE(2); at = 4; }
        else if (n === 127) { if (buffer.length < 10) return; n = Number(buffer.readBigUInt64BE(2)); at = 10; }
        if (buffer.length < at + n) return;
        const payload = buffer.subarray(at, at + n);
        buffer = buffer.subarray(at + n);
        if (opcode === 8) { frame(8, payload.subarray(0, 2)); socket.end(); continue; }
        if (opcode === 9) { frame(10, payload); continue; }
        if (opcode === 1 || opcode === 0) {
          fragments.push(payload);
          if (fin) { deliver(JSON.parse(Buffer.concat(fragments).toString('utf8'))); fragments = []; }
        }
      }
    };
    socket.on('data', (chunk) => {
      buffer = Buffer.concat([buffer, chunk]);
      if (!upgraded) {
        const end = buffer.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buffer.subarray(0, end).toString('latin1');
        const status = Number(/^HTTP\/1\.1 (\d+)/.exec(head)?.[1]);
        if (status !== 101) {
          const rest = buffer.subarray(end + 4);
          const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? rest.length);
          const finish = () => { socket.destroy(); resolve({ status, body: buffer.subarray(end + 4, end + 4 + length).toString('utf8') }); };
          if (rest.length >= length) finish();
          else socket.on('data', () => { if (buffer.length >= end + 4 + length) finish(); });
          upgraded = null;
          return;
        }
        upgraded = true;
        buffer = buffer.subarray(end + 4);
        resolve({
          sendBinary: (b) => frame(2, b),
          sendText: (s) => frame(1, Buffer.from(s, 'utf8')),
          next: () => (messages.length ? Promise.resolve(messages.shift())
            : ended ? Promise.resolve(null) : new Promise((r) => waiters.push(r))),
          close: () => socket.destroy(),
        });
      }
      if (upgraded) parseFrames();
    });
    const end = () => { ended = true; while (waiters.length) waiters.shift()(null); };
    socket.on('close', end);
    socket.on('error', (e) => { if (!upgraded) reject(e); end(); });
  });
}

/** 16 kHz mono 16-bit PCM of an audio file (sox converts), as the live route takes it. */
export function pcm16k(file) {
  return execFileSync('sox', [file, '-t', 'raw', '-r', '16000', '-c', '1', '-b', '16', '-e', 'signed-integer', '-L', '-']);
}
