// Holds N streaming chat completions open at once through a proxy, counts the events and errors of each,
// and samples the resident memory (VmRSS, summed over --pids) of the proxy every second.
//   node streams_client.mjs --url http://127.0.0.1:P --streams 1000 --duration 60 --pids 123[,456] [--key K]
// Prints one line of JSON: streams, ok (200, every chunk, [DONE], no error event), errors by kind, events,
// max gap between two events of a stream, time to open all streams, RSS before / max / at the end (bytes).
import http from 'node:http';
import fs from 'node:fs';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const url = new URL(args.url);
const streams = Number(args.streams ?? 1000);
const duration = Number(args.duration ?? 60);
const pids = String(args.pids ?? '').split(',').filter(Boolean);
const key = args.key ?? '';

function rssBytes() {
  let total = 0;
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) total += Number(m[1]) * 1024;
    } catch { /* gone */ }
  }
  return total;
}

const agent = new http.Agent({ keepAlive: true, maxSockets: streams + 16, maxFreeSockets: streams + 16 });
const body = JSON.stringify({
  model: 'bench', stream: true, max_tokens: duration,
  messages: [{ role: 'user', content: 'Stream for a while.' }],
});
const t0 = performance.now();
const rssBefore = rssBytes();
let rssMax = rssBefore;
const rssTimer = setInterval(() => { rssMax = Math.max(rssMax, rssBytes()); }, 1000);

const results = [];
let opened = 0;
let allOpenMs = null;
function one(i) {
  return new Promise((resolve) => {
    const r = { status: 0, events: 0, done: false, error: null, maxGapMs: 0 };
    let last = null;
    const finish = (error) => { if (error && !r.error) r.error = error; resolve(r); };
    const req = http.request({
      agent, host: url.hostname, port: url.port, method: 'POST', path: '/v1/chat/completions',
      headers: { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
        ...(key ? { Authorization: `Bearer ${key}` } : {}) },
    }, (res) => {
      r.status = res.statusCode;
      if (++opened === streams) allOpenMs = performance.now() - t0;
      last = performance.now();
      let pending = '';
      res.setEncoding('utf8');
      res.on('data', (text) => {
        pending += text;
        let cut;
        while ((cut = pending.indexOf('\n\n')) >= 0) {
          const event = pending.slice(0, cut);
          pending = pending.slice(cut + 2);
          for (const line of event.split('\n')) {
            if (!line.startsWith('data:')) continue;
            const data = line.slice(5).trim();
            if (data === '[DONE]') { r.done = true; continue; }
            if (data.includes('"error"')) { r.error ??= `error event: ${data.slice(0, 200)}`; continue; }
            const now = performance.now();
            r.maxGapMs = Math.max(r.maxGapMs, now - last);
            last = now;
            r.events++;
          }
        }
      });
      res.on('end', () => finish(res.statusCode !== 200 ? `HTTP ${res.statusCode}` : null));
      res.on('error', (e) => finish(`response: ${e.code ?? e.message}`));
    });
    req.setTimeout((duration + 60) * 1000, () => req.destroy(new Error('timeout')));
    req.on('error', (e) => finish(`request: ${e.code ?? e.message}`));
    req.end(body);
  }).then((r) => { results[i] = r; });
}

await Promise.all(Array.from({ length: streams }, (_, i) => one(i)));
clearInterval(rssTimer);
const rssEnd = rssBytes();
const errors = {};
let ok = 0;
let events = 0;
let maxGapMs = 0;
for (const r of results) {
  events += r.events;
  maxGapMs = Math.max(maxGapMs, r.maxGapMs);
  let why = r.error;
  if (!why && !r.done) why = 'no [DONE]';
  if (!why && r.events !== duration) why = `${r.events} events, not ${duration}`;
  if (why) errors[why.replace(/\d+ events/, 'N events')] = (errors[why.replace(/\d+ events/, 'N events')] ?? 0) + 1;
  else ok++;
}
console.log(JSON.stringify({
  streams, ok, events, expected_events: streams * duration, errors,
  max_gap_ms: Math.round(maxGapMs), all_open_ms: allOpenMs === null ? null : Math.round(allOpenMs),
  wall_s: Number(((performance.now() - t0) / 1000).toFixed(1)),
  rss_before: rssBefore, rss_max: rssMax, rss_end: rssEnd,
}));
process.exit(0);
