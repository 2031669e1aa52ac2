// The knowledge base at scale (issue 22): a synthetic corpus of --chunks chunks (default 100,000; words drawn
// from debian-faq's text, one chunk per section), then
//   1. ingest of the whole corpus with a stand-in embeddings endpoint (random 384-dimension vectors, answered
//      at once): what `kb add` itself costs per chunk (extraction, chunking, SQLite, FTS5) and the KB file's
//      size per chunk;
//   2. ingest throughput with real embeddings, --embed-chunks chunks (default 200) of the same corpus,
//      against `clawbot serve` and against llama-server (from the dependency cache, same llama.cpp source)
//      serving the same synthesized bge-small-en-v1.5 model on the same threads, in the same run;
//   3. search latency, P50 and P99 over --queries queries (default 300): POST /v1/kb/NAME/search on
//      `clawbot serve --kb` with the bge model (aliased to the KB's model id, so the node embeds each query
//      itself: hybrid = query embedding + BM25 + exact vector search + fusion), and BM25 alone.
// Synthesized weights: the vectors carry no meaning; speed does not depend on them.
// Run after `make build`:  node bench/kb.mjs [--chunks N] [--embed-chunks N] [--queries N] [--threads N]
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';

const arg = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const CHUNKS = arg('chunks', 100000);
const EMBED_CHUNKS = arg('embed-chunks', 200);
const QUERIES = arg('queries', 300);
const THREADS = arg('threads', 2);
const SECTIONS_PER_FILE = 200;
const MODEL_ID = 'bge-small-en-v1.5-q8_0';

const repo = path.resolve(path.dirname(new URL(import.meta.url).pathname), '..');
const clawbot = path.join(repo, 'build', 'clawbot');
const prefix = fs.readFileSync(path.join(repo, '.deps-prefix'), 'utf8').trim();
const llamaServer = path.join(prefix, 'bin', 'llama-server');
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'clawbot-kb-bench-'));
const env = { ...process.env, HOME: dir, XDG_DATA_HOME: path.join(dir, 'data'), XDG_CONFIG_HOME: path.join(dir, 'config') };

// A seeded generator, so that every run searches the same corpus.
let seed = 42;
const random = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648);
const words = zlib.gunzipSync(fs.readFileSync('/usr/share/doc/debian/FAQ/debian-faq.en.txt.gz')).toString('utf8')
  .split(/[^A-Za-z]+/).filter((w) => w.length > 2);
const pick = () => words[Math.floor(random() * words.length)];
const sentence = (n) => Array.from({ length: n }, pick).join(' ');

function writeCorpus(root, chunks) {
  fs.mkdirSync(root, { recursive: true });
  for (let f = 0, made = 0; made < chunks; ++f) {
    let text = `# Document ${f}\n\n`;
    for (let s = 0; s < SECTIONS_PER_FILE && made < chunks; ++s, ++made)
      text += `## ${sentence(5)}\n\n${sentence(40)}. ${sentence(30)}.\n\n`;
    fs.writeFileSync(path.join(root, `doc${String(f).padStart(5, '0')}.md`), text);
  }
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

async function start(bin, args, readyUrl) {
  const proc = spawn(bin, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  proc.stderr.on('data', (c) => { stderr += c; });
  for (let i = 0; i < 1200; ++i) {
    try {
      const r = await fetch(`${readyUrl}/health`);
      if (r.ok) return proc;
    } catch { /* not yet */ }
    if (proc.exitCode !== null) throw new Error(`${bin} exited:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`${bin} not ready:\n${stderr}`);
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

async function main() {
  console.log(`kb benchmark: ${CHUNKS} chunks, ${EMBED_CHUNKS} embedded for real, ${QUERIES} queries, ${THREADS} threads (${os.cpus().length} cores)`);
  const corpus = path.join(dir, 'corpus');
  writeCorpus(corpus, CHUNKS);
  const kbDir = path.join(dir, 'kbs');
  fs.mkdirSync(kbDir);
  const kbFile = path.join(kbDir, 'bench.kb');

  // 1. the whole corpus, stand-in embeddings
  const standIn = standInEmbedder();
  const standInUrl = await listen(standIn);
  run(['kb', 'create', kbFile]);
  let t = Date.now();
  const report = JSON.parse(await runAsync(['kb', 'add', kbFile, corpus, '--endpoint', standInUrl, '--approximate-tokens', '--json']));
  const ingestS = (Date.now() - t) / 1000;
  standIn.close();
  const sizePerChunk = fs.statSync(kbFile).size / report.kb.chunks;
  console.log(`1. ingest, stand-in embeddings: ${report.chunks_stored} chunks in ${ingestS.toFixed(1)} s = ${(report.chunks_stored / ingestS).toFixed(0)} chunks/s; ` +
    `KB file ${(fs.statSync(kbFile).size / 1048576).toFixed(1)} MiB = ${sizePerChunk.toFixed(0)} bytes per chunk`);

  // 2. real embeddings: clawbot serve and llama-server, the same model and threads
  const model = run(['models', 'synth', 'bge-small-en-v1.5']).trim().split('\n').pop();
  const subset = path.join(dir, 'subset');
  writeCorpus(subset, EMBED_CHUNKS);
  const rates = {};
  for (const [name, bin, args] of [
    ['clawbot serve', clawbot, (port) => ['serve', '--model', model, '--port', String(port), '--threads', String(THREADS), '--no-advertise', '--alias', MODEL_ID]],
    ['llama-server', llamaServer, (port) => ['-m', model, '--port', String(port), '-t', String(THREADS), '--embeddings', '--alias', MODEL_ID, '-ub', '512', '-b', '2048']],
  ]) {
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = await start(bin, args(port), url);
    const file = path.join(dir, `${name.replace(' ', '-')}.kb`);
    run(['kb', 'create', file]);
    t = Date.now();
    // A long --timeout: a batch of 32 chunks takes tens of seconds on a busy 2-core machine.
    const r = JSON.parse(run(['kb', 'add', file, subset, '--endpoint', url, '--timeout', '600000', '--json']));
    const s = (Date.now() - t) / 1000;
    rates[name] = r.chunks_embedded / s;
    console.log(`2. ingest with embeddings from ${name}: ${r.chunks_embedded} chunks in ${s.toFixed(1)} s = ${rates[name].toFixed(1)} chunks/s (tokenizer: ${r.tokenizer})`);
    await stop(proc);
  }

  // 3. search latency on the 100k-chunk KB through serve --kb
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const node = await start(clawbot, ['serve', '--model', model, '--port', String(port), '--threads', String(THREADS), '--no-advertise',
    '--alias', MODEL_ID, '--kb', kbDir], url);
  for (const mode of ['hybrid', 'bm25']) {
    const times = [];
    for (let i = 0; i < QUERIES + 10; ++i) {
      const query = `how do I ${pick()} the ${pick()} ${pick()}?`;
      t = performance.now();
      const r = await fetch(`${url}/v1/kb/bench/search`, { method: 'POST', headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ query, top_k: 5, mode }) });
      await r.json();
      if (!r.ok) throw new Error(`search: ${r.status}`);
      if (i >= 10) times.push(performance.now() - t);  // the first ten warm the caches (vectors loaded once)
    }
    times.sort((a, b) => a - b);
    console.log(`3. search (${mode}, top 5, ${CHUNKS} chunks, through serve --kb): P50 ${percentile(times, 50).toFixed(1)} ms, P99 ${percentile(times, 99).toFixed(1)} ms`);
  }
  await stop(node);
  fs.rmSync(dir, { recursive: true, force: true });
}

main().catch((e) => {
  console.error(e);
  fs.rmSync(dir, { recursive: true, force: true });
  process.exit(1);
});
