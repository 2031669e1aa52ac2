#!/usr/bin/env bash
# Speech to text, side by side (issue 23): clawbot serve's /v1/audio/transcriptions against whisper.cpp's own
# whisper-cli, built from the same source against the same ggml (the dependency cache), same model, same file,
# same threads, greedy decoding in both. Then the cost of sharing a node: chat decode tokens/s while a
# transcription runs against without.
#
#   bench/transcribe.sh [--shape whisper-tiny|whisper-base] [--threads N] [--seconds S] [--rounds N]
#
# The model is synthesized (random weights of the real shape, labelled synthetic: `clawbot models synth`), so
# the words are noise but the work per window is the real model's. The audio is real speech (LibriVox
# recordings from pocketsphinx-testdata, joined to --seconds by sox) as 16 kHz mono WAV, which both programs
# read sample for sample alike. Builds nothing but whisper-cli (the first time, into the dependency cache): run
# `make build` first.
set -euo pipefail
cd "$(dirname "$0")/.."

shape=whisper-tiny
threads=2
seconds=60
rounds=3
while [ $# -gt 0 ]; do
  case "$1" in
    --shape) shape=$2; shift ;;
    --threads) threads=$2; shift ;;
    --seconds) seconds=$2; shift ;;
    --rounds) rounds=$2; shift ;;
    *) echo "transcribe.sh: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done

clawbot=./build/clawbot
export CLAWBOT_MODELS=${CLAWBOT_MODELS:-$(cd .. && pwd)/shared/models}  # the vocab files models synth reads
prefix=$(cat .deps-prefix 2>/dev/null || true)
[ -x "$clawbot" ] && [ -n "$prefix" ] || { echo "transcribe.sh: $clawbot missing: run 'make build' first" >&2; exit 1; }
if [ ! -x "$prefix/bin/whisper-cli" ]; then
  backend=$(basename "$prefix" | cut -d- -f5)
  echo "transcribe.sh: building whisper-cli into the dependency cache (first time only)" >&2
  scripts/bootstrap.sh --with-tools --no-apt --backend "$backend" >/dev/null
fi

work=$(mktemp -d)
server_pid=
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

model=$work/$shape.bin
"$clawbot" models synth "$shape" -o "$model" >/dev/null
# Real speech, joined until it lasts --seconds, as 16 kHz mono 16-bit WAV.
mapfile -t pieces < <(ls /usr/share/pocketsphinx/test/data/librivox/*.wav)
list=()
total=0
while [ "$(printf '%.0f' "$total")" -lt "$seconds" ]; do
  for p in "${pieces[@]}"; do
    list+=("$p")
    total=$(echo "$total + $(soxi -D "$p")" | bc -l)
  done
done
audio=$work/speech.wav
sox "${list[@]}" -r 16000 -c 1 -b 16 "$audio" trim 0 "$seconds"
duration=$(soxi -D "$audio")

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
now() { date +%s.%N; }

# whisper-cli: greedy (-bs 1), English (a random model detects a random language, and decodes it differently),
# the library's fallback schedule as ours, no output files.
cli_times=()
for _ in $(seq "$rounds"); do
  t0=$(now)
  "$prefix/bin/whisper-cli" -m "$model" -f "$audio" -t "$threads" -l en -bs 1 -np >/dev/null 2>"$work/cli.err"
  cli_times+=("$(echo "$(now) - $t0" | bc -l)")
done

port=$((20000 + RANDOM % 20000))
# The chat model: SmolLM2-135M's shape (synthesized, reused from the cache as bench/compare.sh does).
chat_model=$("$clawbot" models synth smollm2-135m --quant q8_0 2>/dev/null | tail -1)
"$clawbot" serve --model "$chat_model" --chat-template chatml --ctx 1024 --whisper-model "$model" --threads "$threads" \
  --whisper-threads "$threads" --port "$port" --no-advertise >"$work/serve.out" 2>"$work/serve.err" &
server_pid=$!
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.2; done
base=http://127.0.0.1:$port
transcribe() {
  curl -sf "$base/v1/audio/transcriptions" -F file=@"$audio" -F model=whisper-1 -F language=en -F response_format=text >/dev/null
}
ours_times=()
for _ in $(seq "$rounds"); do
  t0=$(now)
  transcribe
  ours_times+=("$(echo "$(now) - $t0" | bc -l)")
done

# Chat decode speed alone, then while transcriptions run back to back.
chat_tps() {
  local t0 t1 n
  t0=$(now)
  n=$(curl -sf "$base/v1/chat/completions" -H 'Content-Type: application/json' \
    -d '{"messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":128,"ignore_eos":true,"temperature":0}' |
    sed -n 's/.*"completion_tokens":\([0-9]*\).*/\1/p')
  t1=$(now)
  echo "$n / ($t1 - $t0)" | bc -l
}
alone=()
for _ in $(seq "$rounds"); do alone+=("$(chat_tps)"); done
( while true; do transcribe || true; done ) &
loop_pid=$!
sleep 1
shared=()
for _ in $(seq "$rounds"); do shared+=("$(chat_tps)"); done
kill "$loop_pid" 2>/dev/null; wait "$loop_pid" 2>/dev/null || true

cli=$(printf '%s\n' "${cli_times[@]}" | median)
ours=$(printf '%s\n' "${ours_times[@]}" | median)
tps_alone=$(printf '%s\n' "${alone[@]}" | median)
tps_shared=$(printf '%s\n' "${shared[@]}" | median)
printf 'speech to text: %s (synthetic), %.1f s of LibriVox speech, %s threads, %s rounds (medians)\n' \
  "$shape" "$duration" "$threads" "$rounds"
printf '  %-34s %8.2f s   RTF %.3f\n' "whisper-cli (same whisper.cpp, -bs 1)" "$cli" "$(echo "$cli / $duration" | bc -l)"
printf '  %-34s %8.2f s   RTF %.3f\n' "clawbot /v1/audio/transcriptions" "$ours" "$(echo "$ours / $duration" | bc -l)"
printf '  speed of ours against whisper-cli: %.2fx (target >= 0.95x)\n' "$(echo "$cli / $ours" | bc -l)"
printf 'chat decode on the same node (%s, 128 tokens): %.1f tok/s alone, %.1f tok/s while transcribing (%.0f%%)\n' \
  "$(basename "$chat_model" .gguf)" \
  "$tps_alone" "$tps_shared" "$(echo "100 * $tps_shared / $tps_alone" | bc -l)"
