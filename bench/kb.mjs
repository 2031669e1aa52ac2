// The knowledge base at scale (issue 22): a synthetic corpus of --chunks chunks (default 100,000), then
//   1. ingest of the whole corpus with a stand-in embeddings endpoint (random 384-dimension vectors, answered
//      at once): what `kb add` itself costs per chunk (extraction, chunking, SQLite, FTS5) and the KB file's
//      size per chunk;
//   2. ingest throughput with real embeddings, --embed-chunks chunks (default 200; 0 leaves this step out) of
//      the same corpus, against `clawbot serve` and against llama-server (from the dependency cache, same
//      llama.cpp source) serving the same synthesized bge-small-en-v1.5 model on the same threads, in the same
//      run;
//   3. search latency, P50 and P99 over --queries queries (default 300): POST /v1/kb/NAME/search on
//      `clawbot serve --kb` with the bge model (aliased to the KB's model id, so the node embeds each query
//      itself: hybrid = query embedding + BM25 + vector search + fusion), vector alone, BM25 alone, and the
//      query embedding alone (POST /v1/embeddings), with the node's resident memory before and after the
//      vectors are loaded.
// The corpus is synthetic Zipf text: words drawn with probability ~ 1/rank from a vocabulary of --vocabulary
// words (default 50,000: debian-faq's own words by their frequency in the FAQ first, then made-up words), so
// that, as in real text, a few words are in most chunks and most words are in few. Queries are written as a
// user would: a question form around two to four words of one chunk (some of its rarer words, some of any
// frequency); "found" counts the queries whose chunk is among the top 5 (BM25).
// Synthesized weights: the vectors carry no meaning; speed does not depend on them.
// Run after `make build`:  node bench/kb.mjs [--chunks N] [--embed-chunks N] [--queries N] [--threads N]
//   [--vocabulary N] [--bin PATH (default build/clawbot)]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const argText = (name) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : undefined;
};
const arg = (name, fallback) => (argText(name) === undefined ? fallback : Number(argText(name)));
const CHUNKS = arg('chunks', 100000);
const EMBED_CHUNKS = arg('embed-chunks', 200);
const QUERIES = arg('queries', 300);
const THREADS = arg('threads', 2);
const VOCABULARY = arg('vocabulary', 50000);
const SECTIONS_PER_FILE = 200;
const MODEL_ID = 'bge-small-en-v1.5-q8_0';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const clawbot = path.resolve(argText('bin') ?? path.join(repo, 'build', 'clawbot'));
const prefix = fs.readFileSync(path.join(repo, '.deps-prefix'), 'utf8').trim();
const llamaServer = path.join(prefix, 'bin', 'llama-server');
// --reuse DIR: the corpus and knowledge base a run with --keep left there (the same --chunks and
// --vocabulary): step 1 is left out, the searches run on that file.
const REUSE = argText('reuse');
const dir = REUSE ? path.resolve(REUSE) : fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-kb-bench-'));
const KEEP = process.argv.includes('--keep') || Boolean(REUSE);
const searchBench = path.resolve(argText('search-bench') ?? path.join(repo, 'build', 'bench', 'kb_search_bench'));
const env = { ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config') };

// A seeded generator, so that every run searches the same corpus.
// (mulberry32: 32-bit integer steps, exact in JavaScript's numbers.)
let seed = 42;
const random = () => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
  t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

// The vocabulary, most frequent first: debian-faq's words by their count in the FAQ, then made-up words of
// two to four syllables.
function vocabulary(size) {
  const counts = new Map();
  const faq = zlib.gunzipSync(fs.readFileSync('/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz')).toString('utf8');
  for (const w of faq.toLowerCase().split(/[^a-z]+/)) if (w.length > 1) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words = [...counts.entries()].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([w]) => w);
  const seen = new Set(words);
  const onsets = ['b', 'd', 'f', 'g', 'k', 'l', 'm', 'n', 'p', 'r', 's', 't', 'v', 'z', 'br', 'st', 'tr', 'pl', 'gr', 'sk'];
  const vowels = ['a', 'e', 'i', 'o', 'u', 'ai', 'ou'];
  const syllable = () => onsets[Math.floor(random() * onsets.length)] + vowels[Math.floor(random() * vowels.length)];
  while (words.length < size) {
    let w = '';
    for (let n = 2 + Math.floor(random() * 3); n > 0; --n) w += syllable();
    if (random() < 0.5) w += 'n';
    if (!seen.has(w)) {
      seen.add(w);
      words.push(w);
    }
  }
  return words.slice(0, size);
}
const words = vocabulary(VOCABULARY);
// Zipf's law, exponent 1: word r (0-based) is drawn with probability proportional to 1 / (r + 1).
const cumulative = new Float64Array(words.length);
for (let r = 0, total = 0; r < words.length; ++r) cumulative[r] = total += 1 / (r + 1);
const zipfRank = () => {
  const x = random() * cumulative[cumulative.length - 1];
  let lo = 0;
  let hi = cumulative.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (cumulative[mid] < x) lo = mid + 1; else hi = mid;
  }
  return lo;
};
const sentenceRanks = (n) => Array.from({ length: n }, zipfRank);
const text = (ranks) => ranks.map((r) => words[r]).join(' ');

// Writes the corpus; keeps every `sampleEvery`-th chunk's word ranks (file, heading) to draw queries from.
function writeCorpus(root, chunks, sampleEvery = 0, write = true) {
  if (write) fs.mkdirSync(root, { recursive: true });
  const samples = [];
  for (let f = 0, made = 0; made < chunks; ++f) {
    const file = `doc${String(f).padStart(5, '0')}.md`;
    let doc = `# Document ${f}\n\n`;
    for (let s = 0; s < SECTIONS_PER_FILE && made < chunks; ++s, ++made) {
      const heading = `${text(sentenceRanks(5))} ${made}`;  // numbered: a query's chunk is known by it
      const body = [sentenceRanks(40), sentenceRanks(30)];
      doc += `## ${heading}\n\n${text(body[0])}. ${text(body[1])}.\n\n`;
      if (sampleEvery > 0 && made % sampleEvery === 0) samples.push({ file, heading, ranks: [...body[0], ...body[1]] });
    }
    if (write) fs.writeFileSync(path.join(root, file), doc);
  }
  return samples;
}

// A question about one sampled chunk: one or two of its rarer words (rank 1,000 or more, when it has them)
// and one or two of any frequency, in a question form.
const forms = [(w) => `how do I ${w}?`, (w) => `what is ${w}`, (w) => `${w}`, (w) => `why does ${w} not work?`,
  (w) => `where can I find ${w}`];
function userQuery(sample) {
  const pickFrom = (list) => list[Math.floor(random() * list.length)];
  const rare = sample.ranks.filter((r) => r >= 1000);
  const chosen = [];
  for (let n = 1 + Math.floor(random() * 2); n > 0 && rare.length > 0; --n) chosen.push(pickFrom(rare));
  for (let n = 1 + Math.floor(random() * 2); n > 0; --n) chosen.push(pickFrom(sample.ranks));
  chosen.sort(() => random() - 0.5);
  return pickFrom(forms)(text(chosen));
}

function run(args) {
  const r = spawnSync(clawbot, args, { env, encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`clawbot ${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
  return r.stdout;
}

// The same without blocking this process, whose stand-in embeddings server must go on answering.
function runAsync(args) {
  return new Promise((resolve, reject) => {
    const proc = spawn(clawbot, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    proc.stdout.setEncoding('utf8').on('data', (c) => { stdout += c; });
    proc.stderr.setEncoding('utf8').on('data', (c) => { stderr = (stderr + c).slice(-4000); });
    proc.once('close', (code) => (code === 0 ? resolve(stdout) : reject(new Error(`clawbot ${args.join(' ')}: exit ${code}\n${stderr}`))));
  });
}

async function listen(server) {
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return `http://127.0.0.1:${server.address().port}`;
}

// Random unit vectors, at once: the pipeline's own cost.
function standInEmbedder() {
  return http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      if (req.url !== '/v1/embeddings') {
        res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":{"message":"no such route"}}');
        return;
      }
      const input = JSON.parse(body).input;
      const data = input.map((_, index) => ({ object: 'embedding', index,
        embedding: Array.from({ length: 384 }, () => random() - 0.5) }));
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ object: 'list', model: MODEL_ID, data }));
    });
  });
}

// The server's stderr goes to a file, not a pipe: `run` blocks this process (spawnSync) while `kb add` drives
// the server, and a pipe nobody reads fills with its access log and stalls it.
const children = new Set();  // killed when this script ends, however it ends (a failed step throws past its stop)
const logs = new Set();
process.on('exit', () => {
  for (const child of children) child.kill('SIGKILL');
  for (const log of logs) fs.rmSync(log, { force: true });
});
async function start(bin, args, readyUrl) {
  const logFile = path.join(os.tmpdir(), `clawbot-kb-bench-${process.pid}-${path.basename(bin)}-${Date.now()}.log`);
  const log = fs.openSync(logFile, 'w');
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'ignore', log] });
  fs.closeSync(log);
  children.add(proc);
  logs.add(logFile);
  proc.once('exit', () => children.delete(proc));
  const stderr = () => fs.readFileSync(logFile, 'utf8').slice(-20000);
  for (let i = 0; i < 1200; ++i) {
    try {
      const r = await fetch(`${readyUrl}/health`);
      if (r.ok) return proc;
    } catch { /* not yet */ }
    if (proc.exitCode !== null) throw new Error(`${bin} exited:\n${stderr()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${bin} not ready:\n${stderr()}`);
}
const stop = async (proc) => {
  proc.kill('SIGTERM');
  await new Promise((r) => proc.once('exit', r));
};

async function freePort() {
  const s = http.createServer();
  const url = await listen(s);
  await new Promise((r) => s.close(r));
  return Number(new URL(url).port);
}

const percentile = (sorted, p) => sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];

// The resident memory of a process, in MiB (Linux).
const rssMiB = (pid) => {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
};

// 1. the whole corpus, stand-in embeddings
async function ingestAll(corpus, kbDir, kbFile) {
  fs.mkdirSync(kbDir);
  const standIn = standInEmbedder();
  const standInUrl = await listen(standIn);
  run(['kb', 'create', kbFile]);
  const t = Date.now();
  const report = JSON.parse(await runAsync(['kb', 'add', kbFile, corpus, '--endpoint', standInUrl, '--approximate-tokens', '--json']));
  const ingestS = (Date.now() - t) / 1000;
  standIn.close();
  const sizePerChunk = fs.statSync(kbFile).size / report.kb.chunks;
  console.log(`1. ingest, stand-in embeddings: ${report.chunks_stored} chunks in ${ingestS.toFixed(1)} s = ${(report.chunks_stored / ingestS).toFixed(0)} chunks/s; ` +
    `KB file ${(fs.statSync(kbFile).size / 1048576).toFixed(1)} MiB = ${sizePerChunk.toFixed(0)} bytes per chunk`);
  return report.kb.chunks;
}

async function searchOverHttp(model, kbDir, samples, chunksInKb) {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const node = await start(clawbot, ['serve', '--model', model, '--port', String(port), '--threads', String(THREADS), '--no-advertise',
    '--alias', MODEL_ID, '--kb', kbDir], url);
  const rssBefore = rssMiB(node.pid);
  const post = async (route, body) => {
    const r = await fetch(`${url}${route}`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const reply = await r.json();
    if (!r.ok) throw new Error(`${route}: ${r.status} ${JSON.stringify(reply)}`);
    return reply;
  };
  let rssAfter = rssBefore;
  for (const mode of ['hybrid', 'vector', 'bm25', 'embedding']) {
    seed = 7;  // the same queries for each mode
    const times = [];
    let found = 0;
    for (let i = 0; i < QUERIES + 10; ++i) {
      const sample = samples[Math.floor(random() * samples.length)];
      const query = userQuery(sample);
      const t = performance.now();
      const reply = mode === 'embedding' ? await post('/v1/embeddings', { input: query, model: MODEL_ID })
        : await post('/v1/kb/bench/search', { query, top_k: 5, mode });
      const ms = performance.now() - t;
      if (i < 10) continue;  // the first ten warm the caches (vectors loaded once)
      times.push(ms);
      if (mode !== 'embedding' && reply.data.some((h) => h.source.endsWith(`/${sample.file}`) && h.heading_path.endsWith(sample.heading))) ++found;
    }
    if (mode === 'hybrid') rssAfter = rssMiB(node.pid);
    times.sort((a, b) => a - b);
    const what = mode === 'embedding' ? 'the query embedding alone (POST /v1/embeddings)' : `search (${mode}, top 5, through serve --kb)`;
    const quality = mode === 'bm25' ? `; the query's chunk in the top 5: ${found} of ${QUERIES}` : '';
    console.log(`3. ${what}: P50 ${percentile(times, 50).toFixed(1)} ms, P99 ${percentile(times, 99).toFixed(1)} ms${quality}`);
  }
  console.log(`   serve's resident memory: ${rssBefore.toFixed(0)} MiB before the first search, ${rssAfter.toFixed(0)} MiB after (vectors in memory: ` +
    `${chunksInKb} x 384 floats would be ${(chunksInKb * 384 * 4 / 1048576).toFixed(0)} MiB, as 8-bit codes ${(chunksInKb * 384 / 1048576).toFixed(0)} MiB)`);
  await stop(node);
}

async function main() {
  const command = [process.env.CLAWBOT_MODELS ? `CLAWBOT_MODELS=${process.env.CLAWBOT_MODELS}` : '', 'node bench/kb.mjs',
    ...process.argv.slice(2)].filter(Boolean).join(' ');
  console.log(`kb benchmark: ${CHUNKS} chunks of synthetic Zipf text (vocabulary ${words.length} words), ${EMBED_CHUNKS} embedded for real, ` +
    `${QUERIES} queries, ${THREADS} threads (${os.cpus().length} cores), ${clawbot}`);
  console.log(`reproduce: ${command}`);
  console.log(`load average at start: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  const corpus = path.join(dir, 'corpus');
  const samples = writeCorpus(corpus, CHUNKS, Math.max(1, Math.floor(CHUNKS / 1000)), !REUSE);
  const kbDir = path.join(dir, 'kbs');
  const kbFile = path.join(kbDir, 'bench.kb');
  let chunksInKb = CHUNKS;
  if (!REUSE) chunksInKb = await ingestAll(corpus, kbDir, kbFile);
  // 2. real embeddings: clawbot serve and llama-server, the same model and threads
  let t;
  const model = run(['models', 'synth', 'bge-small-en-v1.5']).trim().split('\n').pop();
  if (EMBED_CHUNKS > 0) {
    const subset = path.join(dir, 'subset');
    writeCorpus(subset, EMBED_CHUNKS);
    for (const [name, bin, args] of [
      ['clawbot serve', clawbot, (port) => ['serve', '--model', model, '--port', String(port), '--threads', String(THREADS), '--no-advertise', '--alias', MODEL_ID]],
      ['llama-server', llamaServer, (port) => ['-m', model, '--port', String(port), '-t', String(THREADS), '--embeddings', '--alias', MODEL_ID, '-ub', '512', '-b', '2048']],
    ]) {
      const port = await freePort();
      const url = `http://127.0.0.1:${port}`;
      const proc = await start(bin, args(port), url);
      const file = path.join(dir, `${name.replace(' ', '-')}.kb`);
      fs.rmSync(file, { force: true });  // (a kept directory has the last run's: each run embeds anew)
      for (const suffix of ['-wal', '-shm']) fs.rmSync(file + suffix, { force: true });
      run(['kb', 'create', file]);
      t = Date.now();
      // A long --timeout: a batch of 32 chunks takes tens of seconds on a busy 2-core machine.
      const r = JSON.parse(run(['kb', 'add', file, subset, '--endpoint', url, '--timeout', '600000', '--json']));
      const s = (Date.now() - t) / 1000;
      console.log(`2. ingest with embeddings from ${name}: ${r.chunks_embedded} chunks in ${s.toFixed(1)} s = ${(r.chunks_embedded / s).toFixed(1)} chunks/s (tokenizer: ${r.tokenizer})`);
      await stop(proc);
    }
  }

  // 3. search latency on the 100k-chunk KB through serve --kb (--no-http: left out)
  if (!process.argv.includes('--no-http')) await searchOverHttp(model, kbDir, samples, chunksInKb);

  // 4. the same queries in process: the knowledge base's own cost, without the query's embedding and HTTP
  if (fs.existsSync(searchBench)) {
    seed = 7;
    const queries = [];
    for (let i = 0; i < QUERIES; ++i) {
      const sample = samples[Math.floor(random() * samples.length)];
      queries.push(`${userQuery(sample)}\t/${sample.file}\t${sample.heading}`);
    }
    const list = path.join(dir, 'queries.txt');
    fs.writeFileSync(list, `${queries.join('\n')}\n`);
    const r = spawnSync(searchBench, [kbFile, list], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`${searchBench}: exit ${r.status}\n${r.stderr}`);
    for (const line of r.stdout.trim().split('\n')) console.log(`4. in process (${path.basename(searchBench)}), ${line}`);
  } else {
    console.log(`4. in process: left out (no ${searchBench}: cmake --build build --target kb_search_bench)`);
  }
  console.log(`load average at end: ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  if (KEEP) console.log(`kept: ${dir} (--reuse ${dir})`); else fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  if (!KEEP) fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});
