#!/usr/bin/env bash
# Grammar sampling cost, clawbot serve vs llama-server (same llama.cpp source, from the dependency cache), same
# model and threads: decode tokens/s of one /v1/completions stream with a JSON grammar and without, temperature 0,
# ignore_eos, so that both generate exactly --max-tokens tokens. Builds nothing: run `make build` first.
#
#   bench/grammar_compare.sh [--model SHAPE-QUANT|FILE] [--threads N] [--rounds N] [--max-tokens N]
#
# Decode tokens/s = (max_tokens - 1) / (time of a max_tokens request - time of a 1-token request with the same
# prompt): prefill, first token and HTTP cancel out. Measured twice: in wall-clock time, and in the CPU time the
# server process used (utime + stime from /proc), which a machine shared with other work moves far less; with
# --threads 1 (the default) no worker spins, so CPU time is the work done. Both servers stay up side by side;
# rounds alternate which goes first; the table gives per-round medians and the ratio ours / llama-server's.
set -euo pipefail
cd "$(dirname "$0")/.."

model=smollm2-135m-q8_0
threads=1
rounds=5
max_tokens=128
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --threads) threads=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --max-tokens) max_tokens=$2; shift ;;
    *) echo "grammar_compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

clawbot=./build/clawbot
prefix=$(cat .deps-prefix 2>/dev/null || true)
[ -x "$clawbot" ] && [ -n "$prefix" ] || { echo "grammar_compare.sh: $clawbot missing: run 'make build' first" >&2; exit 1; }
llama_server=$prefix/bin/llama-server
[ -x "$llama_server" ] || { echo "grammar_compare.sh: no llama-server in $prefix (bench/compare.sh builds it)" >&2; exit 1; }

if [ -f "$model" ]; then
  model_file=$model
else
  model_file=$($clawbot models synth "${model%-*}" --quant "${model##*-}" | tail -1)
fi
echo "model: $model_file (synthetic weights: speed only), threads $threads, $max_tokens tokens, $rounds rounds"

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_ready() {
  for _ in $(seq 600); do
    curl -sf "$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "grammar_compare.sh: server at $1 did not come up" >&2
  return 1
}
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done' EXIT

port_ours=$(free_port)
$clawbot serve --model "$model_file" --host 127.0.0.1 --port "$port_ours" --threads "$threads" --ctx 2048 \
  --parallel 1 >/tmp/grammar-compare-clawbot.log 2>&1 &
pids+=($!)
pid_ours=$!
port_theirs=$(free_port)
"$llama_server" -m "$model_file" --host 127.0.0.1 --port "$port_theirs" -t "$threads" -c 2048 -np 1 \
  >/tmp/grammar-compare-llama-server.log 2>&1 &
pids+=($!)
pid_theirs=$!
wait_ready "http://127.0.0.1:$port_ours"
wait_ready "http://127.0.0.1:$port_theirs"

node --input-type=module - "$port_ours" "$port_theirs" "$rounds" "$max_tokens" "$pid_ours" "$pid_theirs" "$(getconf CLK_TCK)" <<'EOF'
const [ours, theirs, rounds, maxTokens, pidOurs, pidTheirs, ticks] = process.argv.slice(2).map(Number);
import fs from 'node:fs';
// CPU seconds a process has used (all its threads): utime + stime, fields 14 and 15 of /proc/PID/stat.
const cpu = (pid) => {
  const fields = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(fields[11]) + Number(fields[12])) / ticks;
};
const pids = { clawbot: pidOurs, 'llama-server': pidTheirs };
// A JSON array of objects of one shape (as a JSON schema becomes), never complete: ignore_eos keeps it going.
const grammar = String.raw`root ::= "[" ws item ("," ws item)*
item ::= "{" ws "\"name\"" ws ":" ws string "," ws "\"age\"" ws ":" ws number "," ws "\"tags\"" ws ":" ws "[" ws (string ("," ws string)*)? "]" ws "}"
string ::= "\"" ([a-zA-Z0-9 _.-] | "\\" ["\\/bfnrt])* "\"" ws
number ::= "-"? [0-9]+ ("." [0-9]+)? ws
ws ::= [ \t\n]{0,4}
`;
const servers = { clawbot: ours, 'llama-server': theirs };
async function post(port, body, pid) {
  const c0 = cpu(pid);
  const t0 = performance.now();
  const res = await fetch(`http://127.0.0.1:${port}/v1/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
  });
  const json = await res.json();
  const ms = performance.now() - t0;
  const cpuMs = 1000 * (cpu(pid) - c0);
  if (!res.ok) throw new Error(`${port}: ${res.status} ${JSON.stringify(json)}`);
  return { ms, cpuMs, json };
}
const median = (v) => { v = [...v].sort((a, b) => a - b); const n = v.length; return n % 2 ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2; };
const series = {};
for (let round = 1; round <= rounds; ++round) {
  const order = round % 2 ? ['clawbot', 'llama-server'] : ['llama-server', 'clawbot'];
  for (const kind of order) {
    for (const mode of ['none', 'json']) {
      const body = { prompt: `Round ${round}: a list of people as JSON:`, temperature: 0, ignore_eos: true,
        ...(mode === 'json' ? { grammar } : {}) };
      const pid = pids[kind];
      await post(servers[kind], { ...body, max_tokens: 1 }, pid);  // the prompt cached, as the timed pair finds it
      const one = await post(servers[kind], { ...body, max_tokens: 1 }, pid);
      const long = await post(servers[kind], { ...body, max_tokens: maxTokens }, pid);
      const n = long.json.usage?.completion_tokens;
      if (n !== maxTokens) throw new Error(`${kind} ${mode}: ${n} tokens, not ${maxTokens}`);
      if (mode === 'json' && !long.json.choices[0].text.startsWith('[')) throw new Error(`${kind}: not JSON: ${long.json.choices[0].text}`);
      const tps = (maxTokens - 1) / ((long.ms - one.ms) / 1000);
      const cpuTps = (maxTokens - 1) / ((long.cpuMs - one.cpuMs) / 1000);
      (series[`${kind} ${mode}`] ??= []).push(tps);
      (series[`${kind} ${mode} cpu`] ??= []).push(cpuTps);
      console.error(`round ${round} ${kind} ${mode}: ${tps.toFixed(1)} tok/s wall, ${cpuTps.toFixed(1)} tok per CPU-s`);
    }
  }
}
const m = Object.fromEntries(Object.entries(series).map(([k, v]) => [k, median(v)]));
for (const [label, suffix] of [['wall-clock', ''], ['per CPU-second of the server', ' cpu']]) {
  console.log(`\ndecode tokens/s, ${label} (median of ${rounds} rounds)`.padEnd(56) + 'no grammar   JSON grammar   grammar cost');
  for (const kind of Object.keys(servers)) {
    const none = m[`${kind} none${suffix}`], json = m[`${kind} json${suffix}`];
    console.log(`  ${kind.padEnd(52)} ${none.toFixed(1).padStart(10)}   ${json.toFixed(1).padStart(12)}   ${(100 * (1 - json / none)).toFixed(1).padStart(10)}%`);
  }
  console.log(`  ${'ratio clawbot / llama-server'.padEnd(52)} ${(m[`clawbot none${suffix}`] / m[`llama-server none${suffix}`]).toFixed(2).padStart(10)}   ${(m[`clawbot json${suffix}`] / m[`llama-server json${suffix}`]).toFixed(2).padStart(12)}`);
}
EOF
