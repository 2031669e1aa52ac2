#!/usr/bin/env bash
# What the dashboard costs the server, in CPU time: the server's own utime+stime (/proc/PID/stat) over windows
# of W seconds, with its /dashboard held open in a headless Chromium (bench/dashboard_hold.mjs) and without,
# alternating; and a second server with sampling nearly off (--metrics-interval 3600) for the sampler's own cost.
# The browser's CPU is not counted (it runs on the user's laptop in real use); bench/compare.sh --dashboard gives
# the end-to-end decode figure with the browser on the same machine.
#
#   bench/dashboard_cost.sh [--windows N] [--seconds W] [--interval S]
#
# Prints CPU ms per second of each condition (medians), and the extra as a share of the decode's CPU
# (--threads cores busy while decoding).
set -euo pipefail
cd "$(dirname "$0")/.."
windows=4 seconds=30 interval=5 threads=2
while [ $# -gt 0 ]; do
  case "$1" in
    --windows) windows=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --interval) interval=$2; shift ;;
    *) echo "dashboard_cost.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
clawbot=./build/clawbot
[ -x "$clawbot" ] || { echo "dashboard_cost.sh: $clawbot missing: run 'make build' first" >&2; exit 1; }
model_file=$($clawbot models synth smollm2-135m --quant q8_0 | tail -1)
free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done' EXIT
start() {  # metrics interval; prints "pid url"
  local port
  port=$(free_port)
  $clawbot serve --model "$model_file" --chat-template chatml --host 127.0.0.1 --port "$port" --threads "$threads" \
    --ctx 4096 --parallel 4 --metrics-interval "$1" >/dev/null 2>&1 &
  for _ in $(seq 300); do curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1 && break; sleep 0.2; done
  echo "$! http://127.0.0.1:$port"
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
read -r pid url < <(start "$interval")
read -r pid_off _ < <(start 3600)
pids=("$pid" "$pid_off")  # start ran in a subshell: its pids+= did not reach here
median() { node -e 'const v=process.argv.slice(1).map(Number).sort((a,b)=>a-b);const n=v.length;console.log((n%2?v[(n-1)/2]:(v[n/2-1]+v[n/2])/2).toFixed(2))' "$@"; }
closed="" open="" off=""
for w in $(seq "$windows"); do
  for cond in closed open; do
    holder=""
    if [ "$cond" = open ]; then
      coproc HOLD { node bench/dashboard_hold.mjs "$url" 2>&1; }
      holder=$HOLD_PID
      read -r line <&"${HOLD[0]}"
      [ "$line" = open ] || { echo "dashboard_cost.sh: the dashboard did not open: $line" >&2; exit 1; }
    fi
    a=$(ticks "$pid") b=$(ticks "$pid_off")
    sleep "$seconds"
    a=$(( $(ticks "$pid") - a )) b=$(( $(ticks "$pid_off") - b ))
    ms=$(node -e 'console.log((1000*Number(process.argv[1])/Number(process.argv[2])/Number(process.argv[3])).toFixed(2))' "$a" "$hz" "$seconds")
    ms_off=$(node -e 'console.log((1000*Number(process.argv[1])/Number(process.argv[2])/Number(process.argv[3])).toFixed(2))' "$b" "$hz" "$seconds")
    polls=""
    if [ -n "$holder" ]; then
      eval "exec ${HOLD[1]}>&-"
      read -r line <&"${HOLD[0]}" && polls=" (${line#polls } history polls)"
      wait "$holder" 2>/dev/null || true
    fi
    echo "window $w, dashboard $cond: server CPU $ms ms/s$polls; sampling-off server $ms_off ms/s" >&2
    if [ "$cond" = open ]; then open+=" $ms"; else closed+=" $ms"; fi
    off+=" $ms_off"
  done
done
m_closed=$(median $closed) m_open=$(median $open) m_off=$(median $off)
echo "server CPU, median ms per second over $windows windows of $seconds s (idle server, $(basename "$model_file"), synthetic):"
echo "  sampling nearly off (--metrics-interval 3600): $m_off"
echo "  sampling every $interval s, dashboard closed:     $m_closed"
echo "  sampling every $interval s, dashboard open:       $m_open"
node -e '
  const [off, closed, open, threads] = process.argv.slice(1).map(Number);
  const share = (ms) => (100 * ms / (threads * 1000)).toFixed(3);
  console.log(`  sampling + serving the dashboard: ${(open - off).toFixed(2)} ms/s = ${share(open - off)}% of the ${threads} cores decoding uses`);' \
  "$m_off" "$m_closed" "$m_open" "$threads"
echo "  (resolution: one clock tick per window = $(node -e 'console.log((1000/Number(process.argv[1])/Number(process.argv[2])).toFixed(2))' "$hz" "$seconds") ms/s)"
echo "reproduce: bench/dashboard_cost.sh --windows $windows --seconds $seconds --interval $interval"
