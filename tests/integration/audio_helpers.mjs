// Fixtures for the speech-to-text tests: a synthesized whisper model of the real tiny shape (random weights,
// labelled synthetic), and real speech in several containers: espeak-ng speaking known text (WAV, converted
// by sox to FLAC and OGG, by build/tests/audio_encode to MP3 and Opus), pocketsphinx-testdata's LibriVox
// recordings, and whisper.cpp's jfk.wav from the nodejs-whisper package when the dependency cache has it.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
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
