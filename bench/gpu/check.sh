#!/usr/bin/env bash
# GPU check of `clawbot serve` on a CUDA machine that has nvcc, cmake, ninja and g++ but not our Debian
# packages: builds the bundled llama.cpp with CUDA (configured as `make build BACKEND=cuda` configures it), runs
# our clawbot from the kit (built on the CPU machine against the same llama.h) on those libraries, checks greedy
# output, the prefix cache, KV types, FlashAttention and the GPU memory check, then runs clawbot and llama-server
# side by side on the GPU (workloads (a), (b) at 8 and 32 streams, (c) of bench/compare.sh; synthetic models).
#
#   bench/gpu/make-kit.sh .gpukit        # on the CPU machine, after `make build`
#   bash bench/gpu/check.sh .gpukit      # on the GPU machine; figures go to $OUT/results.txt
# Env: BUDGET seconds for the whole check (default 540), ROUNDS (3) and ROUNDS_1B (2) alternating rounds,
#      DRY_PREFIX=an installed CPU llama.cpp (the dependency cache) to try this script on the CPU machine.
set -u
KIT=$(cd "${1:-.gpukit}" && pwd)
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
T0=$(date +%s)
DEADLINE=$((T0 + ${BUDGET:-540}))
left() { echo $((DEADLINE - $(date +%s))); }
say() { echo "[$(($(date +%s) - T0))s] $*" | tee -a "$OUT/results.txt"; }
W=/tmp/w
mkdir -p $W
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv | tee -a "$OUT/results.txt"
nproc; g++ --version | head -1; nvcc --version | tail -2; cmake --version | head -1

# ---- build (DRY_PREFIX=an installed CPU build: check this script on the CPU machine instead)
if [ -n "${DRY_PREFIX:-}" ]; then
  BINDIR=$DRY_PREFIX/bin LIBDIR=$DRY_PREFIX/lib
else
tar -xJf "$KIT/llama-src.tar.xz" -C $W
cmake -S $W/llama.cpp -B $W/b -G Ninja -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_SERVER=ON -DLLAMA_CURL=OFF -DGGML_NATIVE=ON \
  -DGGML_CUDA=ON >$OUT/configure.log 2>&1 || { tail -30 $OUT/configure.log; exit 1; }
grep -i 'cuda\|arch' $OUT/configure.log | head -8
say "configured"
cmake --build $W/b -j 16 --target llama ggml llama-server llama-bench >$W/build.log 2>&1 || { tail -40 $W/build.log; exit 1; }
say "llama.cpp CUDA build done"
BINDIR=$W/b/bin LIBDIR=$W/b/bin
fi
export LD_LIBRARY_PATH=$LIBDIR:$KIT/lib
CB="$KIT/bin/clawbot"
LS=$BINDIR/llama-server
LB=$BINDIR/llama-bench
ldd $CB | grep -E 'llama|ggml|not found'
ls $LIBDIR/*.so* | head -20
export CLAWBOT_MODELS=$KIT/models XDG_CACHE_HOME=/tmp/cache

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
wait_ready() { for _ in $(seq 300); do curl -sf "$1/health" >/dev/null 2>&1 && return 0; sleep 0.2; done; echo "not up: $1"; return 1; }
field() { python3 -c '
import json,sys
d=json.load(sys.stdin)
for k in sys.argv[1].split("."):
    d = d[int(k)] if isinstance(d, list) else (d or {}).get(k)
print(d if d is not None else "nan")' "$1"; }
completion() {  # url prompt
  curl -s "$1/v1/completions" -H 'Content-Type: application/json' \
    -d "{\"prompt\":\"$2\",\"max_tokens\":48,\"temperature\":0}" | python3 -c 'import json,sys; d=json.load(sys.stdin); print(json.dumps(d["choices"][0]["text"]) if "choices" in d else json.dumps(d))'
}

# ---- correctness on stories260K (SKIP_CORRECTNESS=1: speed only)
if [ -z "${SKIP_CORRECTNESS:-}" ]; then
say "== correctness (stories260K, greedy)"
P=$(free_port)
$CB serve -m stories260K.gguf --port $P --no-advertise -v --threads 8 >$OUT/serve-stories.log 2>&1 &
PID=$!
wait_ready http://127.0.0.1:$P
# What the CPU build answers (clawbot serve -m stories260K.gguf, the same request).
EXPECT='", there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it,"'
A1=$(completion http://127.0.0.1:$P "Once upon a time")
A2=$(completion http://127.0.0.1:$P "Once upon a time")
say "gpu greedy 1: $A1"
say "same as CPU build: $([ "$A1" = "$EXPECT" ] && echo yes || echo NO)  prefix-cache hit same: $([ "$A1" = "$A2" ] && echo yes || echo NO)"
curl -s http://127.0.0.1:$P/metrics | grep -E '^clawbot_prefix_cache_(hits|tokens_reused)' | tee -a $OUT/results.txt
kill $PID; wait $PID 2>/dev/null
grep -E 'CUDA|offload|flash|Flash|GPU|layers' $OUT/serve-stories.log | head -20 | tee -a $OUT/results.txt
# The memory check against GPU memory: a cache far larger than the GPU is refused, --fit lowers it.
timeout 30 $CB serve -m stories260K.gguf --port 0 --no-advertise --ctx 2000000 --parallel 128 2>&1 | tail -3 | tee -a $OUT/results.txt
[ -z "${DRY_PREFIX:-}" ] && timeout 25 $CB serve -m stories260K.gguf --port 0 --no-advertise --ctx 2000000 --parallel 128 --fit >$W/fit.log 2>&1
grep -E 'fit|GPU|slots|error|fail' $W/fit.log | head -6 | tee -a $OUT/results.txt
fi

# ---- speed: clawbot vs llama-server on the GPU
synth() { $CB models synth "$1" --quant "$2" | tail -1; }
compare_model() {  # file rounds
  local model=$1 rounds=$2 slots=32 ctx=4096
  say "== speed: $(basename $model), $slots slots x $ctx, all layers on the GPU, 8 threads"
  local pc=$(free_port) pl=$(free_port)
  $CB serve -m $model --chat-template chatml --port $pc --no-advertise --threads 8 --ctx $ctx --parallel $slots >$OUT/serve-speed.log 2>&1 &
  local c=$!
  $LS -m $model --host 127.0.0.1 --port $pl -t 8 -c $((ctx * slots)) -np $slots -ngl 99 --chat-template chatml >$W/llama-server.log 2>&1 &
  local l=$!
  wait_ready http://127.0.0.1:$pc; wait_ready http://127.0.0.1:$pl
  grep -E 'GPU|slots' $OUT/serve-speed.log | tee -a $OUT/results.txt
  say "/props: $(curl -s http://127.0.0.1:$pc/props | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["total_slots"], d["default_generation_settings"]["n_ctx"], d["build_info"])')"
  for round in $(seq $rounds); do
    for kind in clawbot llama-server; do
      [ $(left) -lt 40 ] && { say "out of time"; break 2; }
      local url=http://127.0.0.1:$pc; [ $kind = llama-server ] && url=http://127.0.0.1:$pl
      local b="$CB bench --url $url --no-progress --json"
      local long one
      long=$($b --seed $round --concurrency 1 --requests 2 --prompt-tokens 32 --max-tokens 256)
      one=$($b --seed $((1000 + round)) --concurrency 1 --requests 2 --prompt-tokens 32 --max-tokens 1)
      local e2e_long=$(echo "$long" | field e2e_ms.p50) e2e_one=$(echo "$one" | field e2e_ms.p50)
      local dec=$(python3 -c "print(round(255000/($e2e_long-$e2e_one),1))")
      local b8=$($b --seed $round --concurrency 8 --requests 16 --prompt-tokens 64 --max-tokens 128)
      local b32=$($b --seed $round --concurrency 32 --requests 64 --prompt-tokens 64 --max-tokens 128)
      say "round $round $kind: (a) decode $dec tok/s (e2e 256: $e2e_long ms, 1: $e2e_one ms), out tok/s $(echo "$long" | field output_tokens_per_s); (b) 8 streams $(echo "$b8" | field output_tokens_per_s) tok/s ttft p50 $(echo "$b8" | field ttft_ms.p50) ms; 32 streams $(echo "$b32" | field output_tokens_per_s) tok/s ttft p50 $(echo "$b32" | field ttft_ms.p50)"
    done
  done
  kill $c $l; wait $c $l 2>/dev/null
  # (c) as bench/compare.sh runs it: 4 slots, 32 conversations (more than slots: the cold tier works).
  if [ $(left) -gt 60 ]; then
    # and a second clawbot with --prompts-first off (prompts share their step with the decoding streams).
    pc=$(free_port) pl=$(free_port) local pf=$(free_port)
    $CB serve -m $model --chat-template chatml --port $pc --no-advertise --threads 8 --ctx $ctx --parallel 4 >$OUT/serve-c.log 2>&1 &
    c=$!
    $CB serve -m $model --chat-template chatml --port $pf --no-advertise --threads 8 --ctx $ctx --parallel 4 --prompts-first off >$OUT/serve-c-mixed.log 2>&1 &
    local f=$!
    $LS -m $model --host 127.0.0.1 --port $pl -t 8 -c $((ctx * 4)) -np 4 -ngl 99 --chat-template chatml >$W/llama-server-c.log 2>&1 &
    l=$!
    wait_ready http://127.0.0.1:$pc; wait_ready http://127.0.0.1:$pl; wait_ready http://127.0.0.1:$pf
    for kind in clawbot clawbot-prompts-mixed llama-server; do
      local url=http://127.0.0.1:$pc; [ $kind = llama-server ] && url=http://127.0.0.1:$pl; [ $kind = clawbot-prompts-mixed ] && url=http://127.0.0.1:$pf
      local conv=$($CB bench --url $url --no-progress --json --workload conversations --conversations 32 --turns 6 --concurrency 4 --system-prompt-tokens 200 --prompt-tokens 40 --max-tokens 32)
      say "(c) $kind, 4 slots: TTFT turns>=2 p50 $(echo "$conv" | field ttft_later_turns_ms.p50) ms, turn 1 $(echo "$conv" | field ttft_first_turn_ms.p50) ms; server prompt time turns>=2 p50 $(echo "$conv" | field server_prompt_later_turns_ms.p50) ms; new tokens $(echo "$conv" | field new_prompt_tokens_later_turns.p50); requests without text $(echo "$conv" | field requests_without_text); itl p50 $(echo "$conv" | field itl_ms.p50) ms"
    done
    for u in $pc $pf; do curl -s http://127.0.0.1:$u/metrics | grep -E '^clawbot_(engine_|prefix_cache_hits|cold_cache_restores)' | tee -a $OUT/results.txt; done
    kill $c $l $f; wait $c $l $f 2>/dev/null
  fi
  [ $(left) -gt 30 ] && say "llama-bench tg128: $($LB -m $model -ngl 99 -t 8 -p 0 -n 128 -r 3 -o json 2>/dev/null | field 0.avg_ts); tg256 d48: $($LB -m $model -ngl 99 -t 8 -p 0 -n 256 -d 48 -r 3 -o json 2>/dev/null | field 0.avg_ts); pp512: $($LB -m $model -ngl 99 -t 8 -p 512 -n 0 -r 3 -o json 2>/dev/null | field 0.avg_ts)"
}
S=$(synth smollm2-135m q8_0); say "synth $S"
# KV types and FlashAttention on the GPU (stories260K's heads are too small for quantized KV)
if [ -z "${SKIP_CORRECTNESS:-}" ]; then
for kv in "--kv-type q8_0" "--kv-type q4_0" "--flash-attn off"; do
  P=$(free_port)
  $CB serve -m $S --chat-template chatml --port $P --no-advertise -v --threads 8 $kv >$OUT/serve-kv.log 2>&1 &
  PID=$!
  wait_ready http://127.0.0.1:$P && say "$kv: $(completion http://127.0.0.1:$P 'Once upon a time' | cut -c1-80)"
  grep -iE 'flash_attn|auto, set' $OUT/serve-kv.log | head -3
  kill $PID; wait $PID 2>/dev/null
done
fi
compare_model $S ${ROUNDS:-3}
if [ "${ROUNDS_1B:-2}" -gt 0 ] && [ $(left) -gt 120 ]; then
  L=$(synth llama-3.2-1b q4_k_m); say "synth $L"
  compare_model $L ${ROUNDS_1B:-2}
fi
cp $W/llama-server.log $OUT/ 2>/dev/null; say "done"
