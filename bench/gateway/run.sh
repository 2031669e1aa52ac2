#!/usr/bin/env bash
# clawbot gateway against nginx and HAProxy as equivalent reverse proxies, in one run (issue 5, Benchmark).
# Builds nothing and installs nothing: it uses build-frontend/clawbot (the build that has `gateway`; else
# build/clawbot, or --clawbot PATH) and needs on PATH:
#   wrk, nginx, haproxy, node, curl      (Debian/Ubuntu: apt-get install -y wrk nginx-light haproxy curl)
#
#   bench/gateway/run.sh [--threads N] [--upstream-workers N] [--wrk-duration S] [--rounds N]
#                        [--streams N] [--duration S] [--no-nginx-streams] [--only latency|streams]
#                        [--door] [--quick] [--clawbot PATH]
#
# 1. Latency and requests/s. A minimal upstream (nginx returning a fixed JSON body for POST
#    /v1/chat/completions; labelled as such, not a model) reached directly, through `clawbot gateway`, through
#    nginx (proxy_pass, upstream keepalive, HTTP/1.1, proxy_buffering off) and through HAProxy (http mode,
#    keep-alive both sides); the proxies get the same number of threads / worker processes. wrk with a POST
#    body (post.lua), alternating the four targets in each round (rotated order), 1 connection (latency: median
#    and P99 from wrk's histogram; added = through the proxy minus direct) then 64 connections (requests/s).
#    Figures are the medians over the rounds. Targets: added ≤ 0.3 ms median and ≤ 1 ms P99; gateway
#    requests/s ≥ 0.9 × nginx's at 64 connections.
# 2. Concurrent streams. An SSE upstream (sse_upstream.mjs, labelled, not a model: one `data:` chunk per second
#    per stream for --duration seconds, then [DONE]) behind the gateway; streams_client.mjs opens --streams
#    streaming POSTs at once through it and counts events and errors per stream while sampling the gateway's
#    VmRSS every second. Then the same through nginx (RSS summed over master and workers). Targets: every
#    stream complete without error, gateway RSS < 200 MB.
#
# --door turns the gateway's door on (an API key checked on every request, and an audit log) instead of
# "auth": "none". Every server binds 127.0.0.1 on a free port and is killed at exit.
set -euo pipefail
cd "$(dirname "$0")/../.."
here=bench/gateway

threads=2
upstream_workers=1
wrk_duration=10
rounds=3
streams=1000
duration=60
nginx_streams=1
only=""
door=0
quick=0
clawbot=""
argv="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) threads=$2; shift ;;
    --upstream-workers) upstream_workers=$2; shift ;;
    --wrk-duration) wrk_duration=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --streams) streams=$2; shift ;;
    --duration) duration=$2; shift ;;
    --no-nginx-streams) nginx_streams=0 ;;
    --only) only=$2; shift ;;
    --door) door=1 ;;
    --quick) quick=1; wrk_duration=3; rounds=1; duration=10 ;;
    --clawbot) clawbot=$2; shift ;;
    -h|--help) sed -n '2,27p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done

if [ -z "$clawbot" ]; then
  for candidate in build-frontend/clawbot build/clawbot; do
    if [ -x "$candidate" ] && "$candidate" gateway --help >/dev/null 2>&1; then clawbot=$candidate; break; fi
  done
fi
[ -n "$clawbot" ] && [ -x "$clawbot" ] || {
  echo "run.sh: no clawbot binary with the gateway command (build-frontend/clawbot, build/clawbot): build it first" >&2
  exit 1
}
missing=""
for tool in wrk nginx haproxy node curl; do
  command -v "$tool" >/dev/null 2>&1 || PATH=$PATH:/usr/sbin:/sbin command -v "$tool" >/dev/null 2>&1 || missing+=" $tool"
done
export PATH=$PATH:/usr/sbin:/sbin
if [ -n "$missing" ]; then
  echo "run.sh: missing:$missing" >&2
  echo "  install them with: apt-get install -y wrk nginx-light haproxy curl nodejs   (nothing is installed here)" >&2
  exit 1
fi

ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" -lt $((streams * 2 + 256)) ]; then
  echo "run.sh: open-file limit $(ulimit -n) is too low for $streams streams (need $((streams * 2 + 256)))" >&2
  exit 1
fi

work=$(mktemp -d /tmp/bench-gateway.XXXXXX)
chmod 755 "$work"  # nginx workers run as nobody
pids=()
cleanup() {
  local pid
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_http() {  # url [what]
  for _ in $(seq 300); do
    curl -sf -o /dev/null "$1" 2>/dev/null && return 0
    sleep 0.1
  done
  echo "run.sh: ${2:-server} at $1 did not come up" >&2
  return 1
}
log() { echo "$*" >&2; }

fixed_json='{"id":"chatcmpl-bench","object":"chat.completion","created":0,"model":"bench","choices":[{"index":0,"message":{"role":"assistant","content":"Hi."},"finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":2,"total_tokens":14}}'
models_json='{"object":"list","data":[{"id":"bench","object":"model","owned_by":"bench"}]}'

nginx_common() {  # name workers
  cat <<EOF
worker_processes $2;
worker_rlimit_nofile 20000;
daemon off;
pid $work/$1.pid;
error_log $work/$1.err warn;
events { worker_connections 8192; multi_accept on; }
http {
  access_log off;
  client_body_temp_path $work/$1-body; proxy_temp_path $work/$1-proxy;
  fastcgi_temp_path $work/$1-fcgi; uwsgi_temp_path $work/$1-uwsgi; scgi_temp_path $work/$1-scgi;
  keepalive_requests 10000000;
  keepalive_timeout 300s;
EOF
}

start_nginx_upstream() {  # sets up_port
  up_port=$(free_port)
  { nginx_common upstream "$upstream_workers"
    cat <<EOF
  server {
    listen 127.0.0.1:$up_port backlog=4096;
    default_type application/json;
    location = /health { return 200 '{"status":"ok"}'; }
    location = /v1/models { return 200 '$models_json'; }
    location / { return 200 '$fixed_json'; }
  }
}
EOF
  } >"$work/upstream.conf"
  nginx -c "$work/upstream.conf" -p "$work" 2>>"$work/upstream.err" &
  up_pid=$!
  pids+=($up_pid)
  wait_http "http://127.0.0.1:$up_port/health" "nginx upstream"
}

start_nginx_proxy() {  # name upstream_port; sets proxy_port, proxy_pid
  proxy_port=$(free_port)
  { nginx_common "$1" "$threads"
    cat <<EOF
  upstream backend { server 127.0.0.1:$2; keepalive 1024; keepalive_requests 10000000; keepalive_timeout 300s; }
  server {
    listen 127.0.0.1:$proxy_port backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_buffering off;
      proxy_read_timeout 300s;
    }
  }
}
EOF
  } >"$work/$1.conf"
  nginx -c "$work/$1.conf" -p "$work" 2>>"$work/$1.err" &
  proxy_pid=$!
  pids+=($proxy_pid)
  wait_http "http://127.0.0.1:$proxy_port/health" "nginx proxy"
}

start_haproxy() {  # upstream_port; sets ha_port
  ha_port=$(free_port)
  cat >"$work/haproxy.cfg" <<EOF
global
  nbthread $threads
  maxconn 8000
defaults
  mode http
  option http-keep-alive
  option forwardfor
  http-reuse always
  timeout connect 5s
  timeout client 300s
  timeout server 300s
  timeout http-keep-alive 300s
frontend fe
  bind 127.0.0.1:$ha_port
  default_backend be
backend be
  server up 127.0.0.1:$1 maxconn 4000
EOF
  haproxy -db -f "$work/haproxy.cfg" >"$work/haproxy.log" 2>&1 &
  ha_pid=$!
  pids+=($ha_pid)
  wait_http "http://127.0.0.1:$ha_port/health" "haproxy"
}

bench_key=""
start_gateway() {  # name upstream_port; sets gw_port, gw_pid
  local name=$1 config=$work/$1.json
  gw_port=$(free_port)
  local door_keys='"auth": "none"'
  [ $door = 1 ] && door_keys='"auth": "keys", "keys_db": "'$name'.db", "audit_log": "'$name'-audit.log"'
  cat >"$config" <<EOF
{
  "listen": [{ "host": "127.0.0.1", "port": $gw_port }],
  "upstreams": [{ "url": "http://127.0.0.1:$2" }],
  $door_keys,
  "threads": $threads,
  "advertise": false
}
EOF
  if [ $door = 1 ]; then
    bench_key=$("$clawbot" gateway keys create --name bench --config "$config" | tail -1)
  fi
  "$clawbot" gateway --config "$config" >"$work/$name.log" 2>&1 &
  gw_pid=$!
  pids+=($gw_pid)
  for _ in $(seq 300); do
    grep -q "clawbot gateway listening on" "$work/$name.log" && break
    kill -0 "$gw_pid" 2>/dev/null || { cat "$work/$name.log" >&2; echo "run.sh: gateway exited" >&2; exit 1; }
    sleep 0.1
  done
  # Ready when its health check has seen the upstream.
  for _ in $(seq 100); do
    curl -sf -o /dev/null "http://127.0.0.1:$gw_port/health" && break
    sleep 0.1
  done
  wait_http "http://127.0.0.1:$gw_port/health" "clawbot gateway"
}

cores=$(nproc)
load=$(cut -d' ' -f1 /proc/loadavg)
echo "clawbot gateway benchmark: $clawbot ($(git log -1 --format=%h 2>/dev/null || echo '?')$(git diff --quiet -- src 2>/dev/null || echo ', src modified')); $cores cores, load $load before the run"
[ "$cores" -le 4 ] && echo "note: figures are noisy on a shared $cores-core machine (wrk, upstream and proxy share the cores)"

# ------------------------------------------------------------------------------------------ 1. latency, req/s
if [ "$only" != streams ]; then
  start_nginx_upstream
  start_gateway gateway "$up_port"
  gw_lat_port=$gw_port
  start_nginx_proxy nginx-proxy "$up_port"
  nginx_port=$proxy_port
  nginx_pid=$proxy_pid
  start_haproxy "$up_port"
  declare -A port=([direct]=$up_port [gateway]=$gw_lat_port [nginx]=$nginx_port [haproxy]=$ha_port)
  # CPU time per request of whoever serves the target (direct: the upstream itself): less sensitive to the
  # other load on a shared machine than requests/s.
  declare -A serving=([direct]="$up_pid $(pgrep -P "$up_pid" | tr '\n' ' ')" [gateway]="$gw_pid"
    [nginx]="$nginx_pid $(pgrep -P "$nginx_pid" | tr '\n' ' ')" [haproxy]="$ha_pid")
  cpu_ticks() {  # pids...: utime + stime in clock ticks
    local total=0 pid fields
    for pid in "$@"; do
      read -r -a fields <"/proc/$pid/stat" 2>/dev/null || continue
      total=$((total + fields[13] + fields[14]))
    done
    echo "$total"
  }
  hz=$(getconf CLK_TCK)
  targets=(direct gateway nginx haproxy)
  export BENCH_KEY=$bench_key
  results=$work/wrk.txt
  : >"$results"
  run_wrk() {  # target connections seconds
    local t=1
    [ "$2" -gt 1 ] && t=$((cores < 2 ? 1 : 2))
    local before after json
    before=$(cpu_ticks ${serving[$1]})
    json=$(wrk -t"$t" -c"$2" -d"$3"s --latency -s "$here/post.lua" "http://127.0.0.1:${port[$1]}" 2>&1 |
      sed -n 's/^WRKJSON //p')
    after=$(cpu_ticks ${serving[$1]})
    echo "${json%\}},\"cpu_s\":$(awk -v t=$((after - before)) -v hz="$hz" 'BEGIN{print t / hz}')}"
  }
  log "warming up each target (2 s at 64 connections) ..."
  for target in "${targets[@]}"; do run_wrk "$target" 64 2 >/dev/null; done
  for ((round = 0; round < rounds; round++)); do
    for conns in 1 64; do
      for ((k = 0; k < ${#targets[@]}; k++)); do
        target=${targets[$(((k + round) % ${#targets[@]}))]}
        log "round $((round + 1))/$rounds: $target, $conns connection(s), $wrk_duration s ..."
        echo "$target $conns $round $(run_wrk "$target" "$conns" "$wrk_duration")" >>"$results"
      done
    done
  done
  echo
  echo "1. minimal upstream: nginx, fixed JSON (not a model; $upstream_workers worker process) reached directly and through"
  echo "   each proxy ($threads threads / worker processes each); wrk POST /v1/chat/completions, $wrk_duration s per run,"
  echo "   $rounds alternating round(s), medians over the rounds; gateway auth: $([ $door = 1 ] && echo 'API key + audit log' || echo none)"
  node - "$results" "$rounds" <<'EOF'
const fs = require('fs');
const [file, rounds] = process.argv.slice(2);
const runs = {};
for (const line of fs.readFileSync(file, 'utf8').trim().split('\n')) {
  const [target, conns, round, ...rest] = line.split(' ');
  const r = JSON.parse(rest.join(' ') || 'null');
  ((runs[target] ??= {})[conns] ??= []).push(r);
}
const median = (xs) => { xs = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); const n = xs.length;
  return n === 0 ? NaN : n % 2 ? xs[(n - 1) / 2] : (xs[n / 2 - 1] + xs[n / 2]) / 2; };
const fig = (target, conns, key) => median((runs[target]?.[conns] ?? []).map((r) => (r ? r[key] : NaN)));
const errs = (target) => Object.values(runs[target] ?? {}).flat().reduce((s, r) => s + (r ? r.socket_errors + r.non2xx : 1), 0);
const ms = (us) => (Number.isFinite(us) ? (us / 1000).toFixed(3) : 'n/a');
const names = { direct: 'direct (no proxy)', gateway: 'clawbot gateway', nginx: 'nginx proxy', haproxy: 'haproxy' };
const pad = (s, n) => String(s).padStart(n);
console.log(`\n${'target'.padEnd(20)}${pad('1 conn p50 ms', 14)}${pad('p99 ms', 9)}${pad('added p50', 11)}${pad('added p99', 11)}` +
  `${pad('64 conn req/s', 15)}${pad('p50 ms', 9)}${pad('p99 ms', 9)}${pad('CPU us/req', 12)}${pad('errors', 8)}`);
const d50 = fig('direct', '1', 'p50_us'), d99 = fig('direct', '1', 'p99_us');
for (const t of ['direct', 'gateway', 'nginx', 'haproxy']) {
  const p50 = fig(t, '1', 'p50_us'), p99 = fig(t, '1', 'p99_us');
  console.log(`${names[t].padEnd(20)}${pad(ms(p50), 14)}${pad(ms(p99), 9)}` +
    `${pad(t === 'direct' ? '' : ms(p50 - d50), 11)}${pad(t === 'direct' ? '' : ms(p99 - d99), 11)}` +
    `${pad(fig(t, '64', 'rps').toFixed(0), 15)}${pad(ms(fig(t, '64', 'p50_us')), 9)}${pad(ms(fig(t, '64', 'p99_us')), 9)}` +
    `${pad(median((runs[t]?.['64'] ?? []).map((r) => (r ? (r.cpu_s * 1e6) / r.requests : NaN))).toFixed(1), 12)}${pad(errs(t), 8)}`);
}
const ratio = (a, b) => (Number.isFinite(a / b) ? (a / b).toFixed(2) : 'n/a');
const g = (k, c = '1') => fig('gateway', c, k);
const verdict = (ok) => (ok ? 'holds' : 'MISSED');
const a50 = (g('p50_us') - d50) / 1000, a99 = (g('p99_us') - d99) / 1000;
const rps = g('rps', '64') / fig('nginx', '64', 'rps');
console.log('');
console.log(`gateway added latency, median: ${a50.toFixed(3)} ms (target <= 0.3 ms): ${verdict(a50 <= 0.3)}`);
console.log(`gateway added latency, P99:    ${a99.toFixed(3)} ms (target <= 1 ms): ${verdict(a99 <= 1)}`);
console.log(`gateway / nginx req/s at 64 connections: ${ratio(g('rps', '64'), fig('nginx', '64', 'rps'))} (target >= 0.9): ${verdict(rps >= 0.9)}`);
console.log(`gateway / haproxy req/s at 64 connections: ${ratio(g('rps', '64'), fig('haproxy', '64', 'rps'))}`);
console.log('(CPU us/req: user + system time of the serving processes per request at 64 connections; direct: the upstream alone)');
console.log(`gateway req/s per round at 64 connections: ${(runs.gateway?.['64'] ?? []).map((r) => r?.rps.toFixed(0)).join(', ')}; ` +
  `nginx: ${(runs.nginx?.['64'] ?? []).map((r) => r?.rps.toFixed(0)).join(', ')}`);
EOF
  gw_rss=$(sed -n 's/^VmRSS:\s*//p' "/proc/$gw_pid/status" 2>/dev/null || echo '?')
  echo "gateway RSS after the load: $gw_rss"
fi

# ------------------------------------------------------------------------------------------ 2. streams
if [ "$only" != latency ]; then
  sse_port=$(free_port)
  node "$here/sse_upstream.mjs" --port "$sse_port" --duration "$duration" >"$work/sse.log" 2>&1 &
  pids+=($!)
  wait_http "http://127.0.0.1:$sse_port/health" "SSE upstream"
  start_gateway gateway-streams "$sse_port"
  log "$streams streams for $duration s through the gateway ..."
  gw_streams=$(node "$here/streams_client.mjs" --url "http://127.0.0.1:$gw_port" --streams "$streams" \
    --duration "$duration" --pids "$gw_pid" --key "$bench_key")
  ng_streams=""
  if [ $nginx_streams = 1 ]; then
    start_nginx_proxy nginx-streams "$sse_port"
    ng_pids=$(echo "$proxy_pid" $(pgrep -P "$proxy_pid" || true) | tr ' ' ,)
    log "$streams streams for $duration s through nginx ..."
    ng_streams=$(node "$here/streams_client.mjs" --url "http://127.0.0.1:$proxy_port" --streams "$streams" \
      --duration "$duration" --pids "$ng_pids")
  fi
  echo
  echo "2. SSE upstream: node $here/sse_upstream.mjs (not a model): one data: chunk per second per stream for"
  echo "   $duration s, then [DONE]; $streams streaming POSTs at once (node $here/streams_client.mjs); RSS sampled every second"
  node - "$streams" "$duration" "$gw_streams" "$ng_streams" <<'EOF'
const [streams, duration, gw, ng] = process.argv.slice(2);
const mb = (b) => (b / 1048576).toFixed(1);
const pad = (s, n) => String(s).padStart(n);
console.log(`\n${'proxy'.padEnd(20)}${pad('streams ok', 12)}${pad('events', 10)}${pad('expected', 10)}${pad('max gap ms', 12)}` +
  `${pad('open all ms', 13)}${pad('RSS idle MB', 13)}${pad('max RSS MB', 12)}  errors`);
const row = (name, r) => console.log(`${name.padEnd(20)}${pad(`${r.ok}/${r.streams}`, 12)}${pad(r.events, 10)}` +
  `${pad(r.expected_events, 10)}${pad(r.max_gap_ms, 12)}${pad(r.all_open_ms ?? 'n/a', 13)}${pad(mb(r.rss_before), 13)}` +
  `${pad(mb(r.rss_max), 12)}  ${JSON.stringify(r.errors)}`);
const g = JSON.parse(gw);
row('clawbot gateway', g);
if (ng) row('nginx (all procs)', JSON.parse(ng));
console.log('');
const verdict = (ok) => (ok ? 'holds' : 'MISSED');
console.log(`${streams} streams held ${duration} s through the gateway with no error: ${g.ok}/${g.streams}: ${verdict(g.ok === g.streams)}`);
console.log(`gateway max RSS ${mb(g.rss_max)} MB (target < 200 MB): ${verdict(g.rss_max < 200 * 1048576)}`);
if (Number(duration) < 60 || Number(streams) < 1000) console.log(`(shortened run: the target is 1000 streams held 60 s)`);
EOF
fi
echo
echo "reproduce: bench/gateway/run.sh${argv:+ $argv}"
