#!/usr/bin/env bash
# `make fuzz`: runs each fuzz target of a build folder for a given time, one at a time, and prints a table of
# executions and crashes per target. New inputs collect in <build>/fuzz/work/<target>/corpus, crashes in
# <build>/fuzz/work/<target>/crashes (turn each into a regression input in tests/fuzz/corpus/<target>/ with
# its fix). Exit status 1 when any target crashed.
# Usage: tests/fuzz/run.sh BUILD_DIR SECONDS [target,target...]
set -uo pipefail
build=${1:?usage: run.sh BUILD_DIR SECONDS [targets]}
seconds=${2:-60}
only=${3:-}
here=$(cd "$(dirname "$0")" && pwd)
targets=()
# Leaks inside system libraries (each with its upstream report) are not ours to fail on.
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
for bin in "$build"/fuzz/fuzz_*; do
  name=${bin##*/fuzz_}
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  targets+=("$name")
done
[ ${#targets[@]} -gt 0 ] || { echo "run.sh: no fuzz targets in $build/fuzz (make build-fuzz)" >&2; exit 2; }

total_execs=0
total_crashes=0
printf '%-16s %12s %10s %8s\n' target executions exec/s crashes
for name in "${targets[@]}"; do
  work="$build/fuzz/work/$name"
  mkdir -p "$work/corpus" "$work/crashes"
  dict=()
  [ -f "$here/$name.dict" ] && dict=(-dict="$here/$name.dict")
  before=$(find "$work/crashes" -type f | wc -l)
  log="$work/last-run.log"
  "$build/fuzz/fuzz_$name" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$work/crashes/" "${dict[@]}" "$work/corpus" "$here/corpus/$name" \
    >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  after=$(find "$work/crashes" -type f | wc -l)
  crashes=$((after - before))
  [ $rc -ne 0 ] && [ $crashes -eq 0 ] && crashes=1  # died without an artifact (see the log)
  execs=${execs:-0}
  printf '%-16s %12s %10s %8s\n' "$name" "$execs" "$((execs / (seconds > 0 ? seconds : 1)))" "$crashes"
  [ $crashes -gt 0 ] && echo "  -> $log" && grep -m3 -E 'ERROR|SUMMARY|runtime error' "$log" | sed 's/^/     /'
  total_execs=$((total_execs + execs))
  total_crashes=$((total_crashes + crashes))
done
printf '%-16s %12s %10s %8s\n' total "$total_execs" "" "$total_crashes"
[ $total_crashes -eq 0 ]
