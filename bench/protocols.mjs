// What the protocol layer costs, side by side with llama-server (--jinja) on the same model, in one run:
//  1. time per request that tools, tool_choice "required" and a JSON-schema response_format add (template,
//     grammar set-up, parsing) against a plain chat completion: the same request repeated, one token long,
//     so that the prompt comes from each server's prefix cache and what differs is the protocol layer;
//  2. decode tokens/s with a JSON-schema grammar against none (the grammar sampler's cost), from each
//     server's own timings (predicted_per_second), 128 tokens.
//
//   node bench/protocols.mjs [--model FILE] [--requests N] [--rounds N] [--threads N]
//
// Builds nothing (run `make build`); llama-server comes from the dependency cache (bootstrap --with-tools).
// Default model: the synthesized qwen3-tools-tiny (Qwen3's real template; random weights: speed only).
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith('--') ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []));
const requests = Number(args.requests ?? 200);
const rounds = Number(args.rounds ?? 3);
const threads = String(args.threads ?? 2);
const clawbot = path.join(root, 'build/clawbot');
const prefix = fs.readFileSync(path.join(root, '.deps-prefix'), 'utf8').trim();
const llamaServer = path.join(prefix, 'bin/llama-server');
if (!fs.existsSync(llamaServer)) {
  console.error(`bench: ${llamaServer} missing: run scripts/bootstrap.sh --with-tools`);
  process.exit(1);
}

function modelFile() {
  if (args.model) return args.model;
  const env = { ...process.env, CLAWBOT_MODELS: `${process.env.CLAWBOT_MODELS ?? path.join(root, '../shared/models')}:${prefix}/src/models` };
  const r = spawnSync(clawbot, ['models', 'synth', 'qwen3-tools-tiny', '--quant', 'q8_0'], { encoding: 'utf8', env });
  if (r.status !== 0) throw new Error(`models synth failed:\n${r.stderr}`);
  return r.stdout.trim().split('\n').at(-1);
}

const freePort = () => new Promise((resolve) => {
  const s = net.createServer();
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
});

async function start(kind, model) {
  const port = await freePort();
  const argv = kind === 'clawbot'
    ? [clawbot, ['serve', '--model', model, '--host', '127.0.0.1', '--port', String(port), '--threads', threads,
      '--ctx', '2048', '--parallel', '1', '--no-advertise']]
    : [llamaServer, ['-m', model, '--host', '127.0.0.1', '--port', String(port), '-t', threads, '-c', '2048',
      '-np', '1', '--jinja']];
  const proc = spawn(argv[0], argv[1], { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  proc.stderr.on('data', (c) => { log += c; });
  const url = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 600; ++i) {
    try { if ((await fetch(`${url}/health`)).ok) return { kind, url, proc }; } catch {}
    if (proc.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  proc.kill();
  throw new Error(`${kind} did not start:\n${log.slice(-2000)}`);
}

const messages = [
  { role: 'system', content: 'You are a helpful assistant that answers with tools when one fits.' },
  { role: 'user', content: 'What is the weather in Paris and in Berlin today, in celsius?' },
];
const tools = [
  { type: 'function', function: { name: 'get_weather', description: 'Current weather for a city',
    parameters: { type: 'object', properties: { city: { type: 'string' }, unit: { type: 'string', enum: ['celsius', 'fahrenheit'] } },
      required: ['city'] } } },
  { type: 'function', function: { name: 'search', description: 'Search the web',
    parameters: { type: 'object', properties: { query: { type: 'string' }, limit: { type: 'integer' } }, required: ['query'] } } },
];
const schema = { type: 'object', properties: { city: { type: 'string' }, temperatures: { type: 'array', items: { type: 'integer' } } },
  required: ['city', 'temperatures'] };
const workloads = {
  plain: {},
  tools_auto: { tools, tool_choice: 'auto' },
  tools_required: { tools, tool_choice: 'required' },
  json_schema: { response_format: { type: 'json_schema', json_schema: { name: 'weather', schema, strict: true } } },
};

async function chat(server, extra, maxTokens) {
  const t0 = performance.now();
  const r = await fetch(`${server.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages, temperature: 0, max_tokens: maxTokens, ...extra }),
  });
  const body = await r.json();
  const ms = performance.now() - t0;
  if (!r.ok) throw new Error(`${server.kind}: ${r.status} ${JSON.stringify(body).slice(0, 300)}`);
  return { ms, body };
}

const median = (v) => { const s = [...v].sort((a, b) => a - b); const n = s.length; return n % 2 ? s[(n - 1) / 2] : (s[n / 2 - 1] + s[n / 2]) / 2; };

const model = modelFile();
console.log(`model: ${model} (synthetic weights unless given: speed only)`);
const servers = [await start('clawbot', model), await start('llama-server', model)];
const latency = {};  // kind -> workload -> [per-round medians]
const decode = {};   // kind -> plain|json_schema -> [tokens/s]
try {
  for (let round = 1; round <= rounds; ++round) {
    const order = round % 2 ? servers : [...servers].reverse();
    for (const server of order) {
      for (const [name, extra] of Object.entries(workloads)) {
        for (let i = 0; i < 5; ++i) await chat(server, extra, 1);  // warm: the prompt is cached after this
        const times = [];
        for (let i = 0; i < requests; ++i) times.push((await chat(server, extra, 1)).ms);
        ((latency[server.kind] ??= {})[name] ??= []).push(median(times));
      }
      for (const name of ['plain', 'json_schema']) {
        const { body } = await chat(server, workloads[name], 128);
        ((decode[server.kind] ??= {})[name] ??= []).push(body.timings?.predicted_per_second ?? NaN);
        ((decode[server.kind] ??= {})[`${name}_tokens`] ??= []).push(body.usage?.completion_tokens ?? NaN);
      }
      console.error(`round ${round}/${rounds}: ${server.kind} done`);
    }
  }
} finally {
  for (const s of servers) s.proc.kill('SIGTERM');
}

const fmt = (x, d = 2) => (Number.isFinite(x) ? x.toFixed(d) : 'n/a');
console.log(`\n1. request latency, median of ${rounds} round medians of ${requests} sequential one-token requests (ms)`);
console.log('workload          clawbot   llama-server   clawbot +ms vs plain   llama-server +ms vs plain');
for (const name of Object.keys(workloads)) {
  const c = median(latency.clawbot[name]), l = median(latency['llama-server'][name]);
  const cp = median(latency.clawbot.plain), lp = median(latency['llama-server'].plain);
  console.log(`${name.padEnd(16)} ${fmt(c).padStart(8)} ${fmt(l).padStart(14)} ${fmt(c - cp).padStart(22)} ${fmt(l - lp).padStart(27)}`);
}
console.log('\n2. decode tokens/s (server timings, 128 tokens asked; medians over rounds)');
console.log('                  clawbot   llama-server   ratio');
for (const name of ['plain', 'json_schema']) {
  const c = median(decode.clawbot[name]), l = median(decode['llama-server'][name]);
  console.log(`${name.padEnd(16)} ${fmt(c, 1).padStart(8)} ${fmt(l, 1).padStart(14)} ${fmt(c / l).padStart(7)}` +
    `   (tokens: ${median(decode.clawbot[`${name}_tokens`])} / ${median(decode['llama-server'][`${name}_tokens`])})`);
}
console.log(`\nreproduce: node bench/protocols.mjs --requests ${requests} --rounds ${rounds} --threads ${threads}` +
  (args.model ? ` --model ${args.model}` : ''));
