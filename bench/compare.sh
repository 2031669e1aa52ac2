#!/usr/bin/env bash
# Side by side: clawbot serve vs llama-server (same llama.cpp source, from the dependency cache), same model,
# threads, context per request and slots, the same `clawbot bench` workloads against each in turn.
# Builds nothing: run `make build` first. Models are synthesized (labelled synthetic) with `clawbot models synth`.
#
#   bench/compare.sh [--model SHAPE-QUANT|FILE] [--threads N] [--workloads a,b,c,d] [--rounds N] [--quick] [--dashboard]
#
# --dashboard: workload (a) also runs on our server with its /dashboard held open in a headless Chromium
# (bench/dashboard_hold.mjs), as a third kind in the alternating rounds: the cost of sampling and serving the
# dashboard (the browser shares the machine, so its own rendering is counted too: an upper bound).
#
# Prints a table with medians and ratios, and the decode roofline (tokens/s over memory bandwidth / weight bytes).
# (a) and (b) are throughput figures that a noisy machine moves by ±10% between minutes, so both servers stay up
# side by side (an idle server sleeps) and --rounds rounds alternate between them (and, for (a), llama-bench tg128
# and llama-bench doing the same work as (a)), each round with its own prompts (--seed); the table gives
# per-round medians and the ratio of the medians.
# (c) and (d) depend on what each server has cached, so they run once, on a fresh server each.
set -euo pipefail
cd "$(dirname "$0")/.."

model=smollm2-135m-q8_0
threads=2
workloads=a,b,c,d
rounds=5
quick=0
dashboard=0
while [ $# -gt 0 ]; do
  case "$1" in
    --model) model=$2; shift ;;
    --threads) threads=$2; shift ;;
    --workloads) workloads=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    --quick) quick=1; rounds=2 ;;
    --dashboard) dashboard=1 ;;
    *) echo "compare.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

clawbot=./build/clawbot
prefix=$(cat .deps-prefix 2>/dev/null || true)
[ -x "$clawbot" ] && [ -n "$prefix" ] || { echo "compare.sh: $clawbot missing: run 'make build' first" >&2; exit 1; }
if [ ! -x "$prefix/bin/llama-server" ] || [ ! -x "$prefix/bin/llama-bench" ]; then
  # The bootstrap builds only libllama and ggml; the tools come into the same cache the first time they are needed.
  backend=$(basename "$prefix" | cut -d- -f5)
  echo "compare.sh: building llama-server and llama-bench into the dependency cache (first time only)" >&2
  prefix=$(scripts/bootstrap.sh --no-apt --with-tools --backend "${backend:-cpu}" | tail -1)
fi
llama_server=$prefix/bin/llama-server
llama_bench=$prefix/bin/llama-bench
[ -x "$llama_server" ] || { echo "compare.sh: llama-server missing from the dependency cache ($prefix)" >&2; exit 1; }

if [ -f "$model" ]; then
  model_file=$model
else
  shape=${model%-*} quant=${model##*-}
  model_file=$($clawbot models synth "$shape" --quant "$quant" | tail -1)
fi
echo "model: $model_file (synthetic weights: speed only, output is meaningless)"

free_port() { node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_ready() {  # url
  for _ in $(seq 600); do
    curl -sf "$1/health" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  echo "compare.sh: server at $1 did not come up" >&2
  return 1
}
server_pids=()
stop_servers() {
  for pid in "${server_pids[@]}"; do kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; done
  server_pids=()
  return 0
}
trap stop_servers EXIT

start_server() {  # kind ctx_per_request slots; sets url and urls[kind]
  local kind=$1 ctx=$2 slots=$3 port
  port=$(free_port)
  if [ "$kind" = clawbot ]; then
    $clawbot serve --model "$model_file" --chat-template chatml --host 127.0.0.1 --port "$port" --threads "$threads" \
      --ctx "$ctx" --parallel "$slots" >/tmp/compare-$kind.log 2>&1 &
  else
    # llama-server splits -c among its slots: give it ctx x slots so each slot gets ctx, as ours does.
    "$llama_server" -m "$model_file" --host 127.0.0.1 --port "$port" -t "$threads" -c $((ctx * slots)) -np "$slots" \
      --chat-template chatml >/tmp/compare-$kind.log 2>&1 &
  fi
  server_pids+=($!)
  url=http://127.0.0.1:$port
  urls[$kind]=$url
  wait_ready "$url"
}
declare -A urls

bench() { $clawbot bench --url "$url" --no-progress --json "$@"; }
field() { node -e 'let d=JSON.parse(require("fs").readFileSync(0,"utf8"));for(const k of process.argv[1].split("."))d=d?.[k];console.log(d??"nan")' "$1"; }

declare -A result
ratio() { node -e 'const [a,b]=process.argv.slice(1).map(Number);console.log(isFinite(a/b)?(a/b).toFixed(2):"n/a")' "$1" "$2"; }
median() { node -e 'const v=process.argv.slice(1).map(Number).filter(isFinite).sort((a,b)=>a-b);const n=v.length;console.log(n?(n%2?v[(n-1)/2]:(v[n/2-1]+v[n/2])/2):"nan")' "$@"; }

# The engine's own time to prefill a later turn's new tokens where they really sit: after the cached history
# (llama-bench pp N @ d D, N and D the medians of the turns >= 2 of a conversations run, from usage), in ms.
# A fresh prompt of N tokens is cheaper (nothing to attend to), so it flatters the ratio's denominator less.
engine_prefill_ms() {  # bench JSON on stdin
  local nd
  nd=$(node -e '
    const d = JSON.parse(require("fs").readFileSync(0, "utf8"));
    const later = d.per_request.filter((r) => r.ok && r.turn > 1 && r.cached_tokens != null);
    const med = (v) => { v.sort((a, b) => a - b); return v.length ? v[Math.floor(v.length / 2)] : NaN; };
    console.log(med(later.map((r) => r.prompt_tokens - r.cached_tokens)), med(later.map((r) => r.cached_tokens)));')
  local n=${nd% *} depth=${nd#* } ts
  [ "$n" != NaN ] || { echo nan; return; }
  ts=$("$llama_bench" -m "$model_file" -t "$threads" -p "$n" -n 0 -d "$depth" -r 3 -o json 2>/dev/null | field 0.avg_ts || echo nan)
  node -e 'const [n,ts]=process.argv.slice(1).map(Number);console.log(isFinite(n/ts)?(1000*n/ts).toFixed(1):"nan")' "$n" "$ts"
}

# (a) and (b): both servers up at once, rounds alternating which goes first.
run_rounds() {  # name
  local name=$1 ctx slots round kind out order
  case "$name" in a) ctx=4096 slots=4 ;; b) ctx=2048 slots=8 ;; esac
  start_server clawbot "$ctx" "$slots"
  start_server llama-server "$ctx" "$slots"
  declare -A series=()
  local kinds=(clawbot llama-server)
  [ "$name" = a ] && [ "$dashboard" = 1 ] && kinds=(clawbot clawbot+dashboard llama-server) && urls[clawbot+dashboard]=${urls[clawbot]}
  for round in $(seq "$rounds"); do
    # Each round starts with another kind (a rotation), so none always runs first.
    order=""
    local i
    for i in "${!kinds[@]}"; do order+=" ${kinds[$(((i + round - 1) % ${#kinds[@]}))]}"; done
    for kind in $order; do
      echo "workload $name, round $round/$rounds: $kind ..." >&2
      local holder=""
      if [ "$kind" = clawbot+dashboard ]; then
        coproc HOLD { node bench/dashboard_hold.mjs "${urls[clawbot]}" 2>&1; }
        holder=$HOLD_PID
        read -r line <&"${HOLD[0]}"
        [ "$line" = open ] || { echo "compare.sh: the dashboard did not open: $line" >&2; exit 1; }
      fi
      case "$name" in
        a)
          out=$($clawbot bench --url "${urls[$kind]}" --no-progress --json --seed "$round" \
            --concurrency 1 --requests 2 --prompt-tokens 32 --max-tokens 256)
          series[$kind,tps]+=" $(echo "$out" | field output_tokens_per_s)"
          series[$kind,tpot]+=" $(echo "$out" | field tpot_ms.p50)"
          local e2e_long e2e_one
          e2e_long=$(echo "$out" | field e2e_ms.p50)
          # Decode alone: minus the whole time of one-token requests with fresh prompts of the same length
          # (prefill, first token, HTTP), what is left is 255 decode steps. Time per output token is not used:
          # it counts from the first visible text, which a random-weight model may delay by invisible tokens.
          out=$($clawbot bench --url "${urls[$kind]}" --no-progress --json --seed $((1000 + round)) \
            --concurrency 1 --requests 2 --prompt-tokens 32 --max-tokens 1)
          e2e_one=$(echo "$out" | field e2e_ms.p50)
          series[$kind,decode]+=" $(node -e 'console.log((255000/(Number(process.argv[1])-Number(process.argv[2]))).toFixed(2))' "$e2e_long" "$e2e_one")"
          if [ -n "$holder" ]; then
            eval "exec ${HOLD[1]}>&-"
            read -r line <&"${HOLD[0]}" && echo "  dashboard held open: ${line#polls } history polls" >&2
            wait "$holder" 2>/dev/null || true
          fi
          ;;
        b)
          out=$($clawbot bench --url "${urls[$kind]}" --no-progress --json --seed "$round" \
            --concurrency 8 --requests $((quick ? 8 : 16)) --prompt-tokens 64 --max-tokens 128)
          series[$kind,tps]+=" $(echo "$out" | field output_tokens_per_s)"
          series[$kind,ttft]+=" $(echo "$out" | field ttft_ms.p50)"
          ;;
      esac
    done
    # Each round's own ratio: both servers ran minutes apart at most, in alternating order, so the median of
    # these resists the machine's drift better than the ratio of the medians does.
    local key=decode
    [ "$name" = b ] && key=tps
    series[pair]+=" $(ratio "${series[clawbot,$key]##* }" "${series[llama-server,$key]##* }")"
    [ -n "${series[clawbot+dashboard,decode]:-}" ] &&
      series[dash_pair]+=" $(ratio "${series[clawbot+dashboard,decode]##* }" "${series[clawbot,decode]##* }")"
    if [ "$name" = a ]; then
      echo "workload a, round $round/$rounds: llama-bench tg128 ..." >&2
      series[tg128]+=" $("$llama_bench" -m "$model_file" -t "$threads" -p 0 -n 128 -r 1 -o json 2>/dev/null | field 0.avg_ts || echo nan)"
      # The same work as (a): 256 tokens after a prompt of about 48 tokens (chat template included).
      series[tg256d48]+=" $("$llama_bench" -m "$model_file" -t "$threads" -p 0 -n 256 -d 48 -r 1 -o json 2>/dev/null | field 0.avg_ts || echo nan)"
    fi
  done
  stop_servers
  local key
  for key in "${!series[@]}"; do
    result[$name,$key]=$(median ${series[$key]})
    echo "  $name $key per round:${series[$key]}" >&2
  done
}

run_workload() {  # name kind
  local name=$1 kind=$2 out
  case "$name" in c) start_server "$kind" 4096 4 ;; d) start_server "$kind" 4608 5 ;; esac
  case "$name" in
    c)
      out=$(bench --workload conversations --conversations $((quick ? 8 : 32)) --turns 6 --concurrency 4 \
        --system-prompt-tokens 200 --prompt-tokens 40 --max-tokens 32)
      result[$name,$kind,ttft2]=$(echo "$out" | field ttft_later_turns_ms.p50)
      result[$name,$kind,ttft1]=$(echo "$out" | field ttft_first_turn_ms.p50)
      # The server's own time to the first token (timings.prompt_ms, both servers report it): unlike TTFT it
      # does not wait for visible text, which a random-weight model often delays or never shows.
      result[$name,$kind,sp2]=$(echo "$out" | field server_prompt_later_turns_ms.p50)
      result[$name,$kind,notext]="$(echo "$out" | field requests_without_text) of $(echo "$out" | field requests.ok)"
      # The yardstick of reuse: the time to prefill only a later turn's new tokens (prompt minus cached, from
      # usage), alone on the idle server: fresh one-token requests of about that length, their whole time
      # scaled to exactly that many new tokens. (Not their TTFT: a random-weight model's one token may show
      # no text.)
      local fresh
      fresh=$(echo "$out" | field new_prompt_tokens_later_turns.p50)
      result[$name,$kind,fresh]=$fresh
      result[$name,$kind,engine]=$(echo "$out" | engine_prefill_ms)
      result[$name,$kind,sp_engine]=$(ratio "${result[$name,$kind,sp2]}" "${result[$name,$kind,engine]}")
      result[$name,$kind,ttft_engine]=$(ratio "${result[$name,$kind,ttft2]}" "${result[$name,$kind,engine]}")
      if [ "$fresh" != nan ]; then
        local per_token per_token_server times
        out=$(bench --concurrency 1 --requests 5 --seed 99 --prompt-tokens "$(printf '%.0f' "$fresh")" --max-tokens 1)
        per_new_token() {  # field of per_request: its median per new prompt token
          node -e '
            const d = JSON.parse(require("fs").readFileSync(0, "utf8"));
            const per = d.per_request.filter((r) => r.ok && r[process.argv[1]] != null && r.prompt_tokens > (r.cached_tokens ?? 0))
              .map((r) => r[process.argv[1]] / (r.prompt_tokens - (r.cached_tokens ?? 0))).sort((a, b) => a - b);
            console.log(per.length ? per[Math.floor(per.length / 2)] : "nan");' "$1"
        }
        per_token=$(echo "$out" | per_new_token e2e_ms)
        per_token_server=$(echo "$out" | per_new_token server_prompt_ms)
        times() { node -e 'console.log((Number(process.argv[1]) * Number(process.argv[2])).toFixed(1))' "$1" "$2"; }
        result[$name,$kind,fresh_time]=$(times "$per_token" "$fresh")
        result[$name,$kind,reuse]=$(ratio "${result[$name,$kind,ttft2]}" "${result[$name,$kind,fresh_time]}")
        result[$name,$kind,sp_fresh]=$(times "$per_token_server" "$fresh")
        result[$name,$kind,sp_reuse]=$(ratio "${result[$name,$kind,sp2]}" "${result[$name,$kind,sp_fresh]}")
        # The same reading one conversation at a time (still more conversations than slots): what the cache
        # costs when no other stream shares the steps.
        out=$(bench --workload conversations --conversations $((quick ? 6 : 12)) --turns 4 --concurrency 1 --seed 3 \
          --system-prompt-tokens 200 --prompt-tokens 40 --max-tokens 32)
        result[$name,$kind,ttft2_alone]=$(echo "$out" | field ttft_later_turns_ms.p50)
        result[$name,$kind,sp2_alone]=$(echo "$out" | field server_prompt_later_turns_ms.p50)
        result[$name,$kind,sp_reuse_alone]=$(ratio "${result[$name,$kind,sp2_alone]}" \
          "$(times "$per_token_server" "$(echo "$out" | field new_prompt_tokens_later_turns.p50)")")
        result[$name,$kind,reuse_alone]=$(ratio "${result[$name,$kind,ttft2_alone]}" \
          "$(times "$per_token" "$(echo "$out" | field new_prompt_tokens_later_turns.p50)")")
        local engine_alone
        engine_alone=$(echo "$out" | engine_prefill_ms)
        result[$name,$kind,sp_engine_alone]=$(ratio "${result[$name,$kind,sp2_alone]}" "$engine_alone")
        result[$name,$kind,ttft_engine_alone]=$(ratio "${result[$name,$kind,ttft2_alone]}" "$engine_alone")
      fi
      ;;
    d)
      bench --concurrency 4 --requests 4 --prompt-tokens 32 --max-tokens $((quick ? 128 : 256)) >/tmp/compare-d-streams.json &
      local streams=$!
      sleep 3
      bench --concurrency 1 --requests 1 --prompt-tokens 4000 --max-tokens 1 >/tmp/compare-d-long.json
      wait $streams
      result[$name,$kind,gap]=$(field max_itl_ms.max </tmp/compare-d-streams.json)
      result[$name,$kind,long_ttft]=$(field ttft_ms.p50 </tmp/compare-d-long.json)
      ;;
  esac
  stop_servers
}

IFS=, read -ra names <<<"$workloads"
for name in "${names[@]}"; do
  case "$name" in
    a|b) run_rounds "$name" ;;
    c|d) for kind in clawbot llama-server; do
        echo "workload $name: $kind ..." >&2
        run_workload "$name" "$kind"
      done ;;
    *) echo "compare.sh: unknown workload $name (a, b, c or d)" >&2; exit 2 ;;
  esac
done

# The engine's own figure and the memory roofline.
tg128=${result[a,tg128]:-}
[ -n "$tg128" ] || tg128=$("$llama_bench" -m "$model_file" -t "$threads" -p 0 -n 128 -r 2 -o json 2>/dev/null | field 0.avg_ts || echo nan)
bandwidth=$($clawbot bench --memory-bandwidth 2>/dev/null | tail -1 || echo nan)
weights=$(stat -c %s "$model_file")

printf '\n%-58s %12s %12s %8s\n' "figure (model: $(basename "$model_file"), synthetic, $threads threads)" clawbot llama-server ratio
row() { printf '%-58s %12s %12s %8s\n' "$1" "${result[$2,clawbot,$3]:-}" "${result[$2,llama-server,$3]:-}" "$(ratio "${result[$2,clawbot,$3]:-nan}" "${result[$2,llama-server,$3]:-nan}")"; }
for name in "${names[@]}"; do
  case "$name" in
    a) row "(a) 1 stream, 256 tokens: output tokens/s (incl. TTFT)" a tps
       row "(a) time per output token, median ms" a tpot
       row "(a) decode tokens/s (255 / (time of 256 tokens - time of 1))" a decode
       printf '%-58s %12s %12s %8s\n' "(a) decode: median of the per-round ratios" "" "" "${result[a,pair]}"
       if [ "$dashboard" = 1 ]; then
         printf '%-58s %12s\n' "(a) clawbot decode tokens/s with /dashboard open" "${result[a,clawbot+dashboard,decode]}"
         printf '%-58s %12s\n' "(a) with / without dashboard: median of per-round ratios" "${result[a,dash_pair]}"
       fi ;;
    b) row "(b) 8 streams: aggregate output tokens/s" b tps
       printf '%-58s %12s %12s %8s\n' "(b) tokens/s: median of the per-round ratios" "" "" "${result[b,pair]}"
       row "(b) TTFT median ms" b ttft ;;
    c) row "(c) 32 conv x 6 turns, 4 slots: TTFT turns >= 2, median ms" c ttft2; row "(c) TTFT turn 1, median ms" c ttft1
       row "(c) new prompt tokens per turn >= 2 (median, from usage)" c fresh
       row "(c) time to prefill only that many tokens, alone, ms" c fresh_time
       row "(c) TTFT turns >= 2 / time to prefill only the new tokens" c reuse
       row "(c) one conversation at a time: TTFT turns >= 2, median ms" c ttft2_alone
       row "(c) one at a time: TTFT turns >= 2 / prefill of the new tokens" c reuse_alone
       row "(c) requests that showed no text (no TTFT)" c notext
       row "(c) server's time to first token (timings.prompt_ms), turns >= 2" c sp2
       row "(c) the same for only that many new tokens, alone, ms" c sp_fresh
       row "(c) server prompt time turns >= 2 / that" c sp_reuse
       row "(c) one at a time: server prompt time turns >= 2 / that" c sp_reuse_alone
       row "(c) llama-bench: those new tokens after the cached history, ms" c engine
       row "(c) TTFT turns >= 2 / that" c ttft_engine
       row "(c) server prompt time turns >= 2 / that" c sp_engine
       row "(c) one at a time: TTFT turns >= 2 / that (its own N and D)" c ttft_engine_alone
       row "(c) one at a time: server prompt time turns >= 2 / that" c sp_engine_alone ;;
    d) row "(d) 4K prompt during 4 streams: worst inter-token gap ms" d gap; row "(d) the long prompt's TTFT ms" d long_ttft ;;
  esac
done
echo
echo "llama-bench tg128 ($threads threads): $tg128 tokens/s"
if [[ " ${names[*]} " == *" a "* ]]; then
  echo "(a) clawbot decode / llama-bench tg128: $(ratio "${result[a,clawbot,decode]}" "$tg128");" \
    "llama-server's: $(ratio "${result[a,llama-server,decode]}" "$tg128")"
  echo "(a) clawbot output tokens/s incl. TTFT / llama-bench tg128: $(ratio "${result[a,clawbot,tps]}" "$tg128")"
  echo "llama-bench tg256 at depth 48 (the same work as (a)): ${result[a,tg256d48]} tokens/s;" \
    "clawbot decode / that: $(ratio "${result[a,clawbot,decode]}" "${result[a,tg256d48]}");" \
    "llama-server's: $(ratio "${result[a,llama-server,decode]}" "${result[a,tg256d48]}")"
fi
echo "(a) and (b) are medians of $rounds alternating rounds"
if [ "$bandwidth" != nan ]; then
  roof=$(node -e 'console.log((Number(process.argv[1])/Number(process.argv[2])).toFixed(1))' "$bandwidth" "$weights")
  echo "memory read bandwidth: $(node -e 'console.log((Number(process.argv[1])/1e9).toFixed(2))' "$bandwidth") GB/s; weights $weights bytes; roofline $roof tokens/s"
  [[ " ${names[*]} " == *" a "* ]] && echo "decode roofline ratio (a): $(ratio "${result[a,clawbot,decode]}" "$roof")"
fi
echo "reproduce: bench/compare.sh --model $model --threads $threads --workloads $workloads$([ $quick = 1 ] && echo ' --quick' || echo " --rounds $rounds")$([ $dashboard = 1 ] && echo ' --dashboard')"
