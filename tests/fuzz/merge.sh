#!/usr/bin/env bash
# `make fuzz-merge`: folds what `make fuzz` found into the repository's corpora. For each target, libFuzzer's
# -merge=1 keeps the smallest set of inputs (seeds, regression inputs, <build>/fuzz/work/<target>/corpus) that
# reaches all the code they reach together; those not already in tests/fuzz/corpus/<target>/ go to its found/
# folder (named by their SHA-1, as libFuzzer names them). Commit found/ afterwards: `make test` replays it.
# Usage: tests/fuzz/merge.sh BUILD_DIR [target,target...]
set -euo pipefail
build=${1:?usage: merge.sh BUILD_DIR [targets]}
only=${2:-}
here=$(cd "$(dirname "$0")" && pwd)
for bin in "$build"/fuzz/fuzz_*; do
  name=${bin##*/fuzz_}
  if [ -n "$only" ] && [[ ",$only," != *",$name,"* ]]; then continue; fi
  corpus="$here/corpus/$name" work="$build/fuzz/work/$name/corpus"
  mkdir -p "$work" "$corpus/found"
  merged=$(mktemp -d)
  "$bin" -merge=1 -timeout=10 -rss_limit_mb=2048 "$merged" "$corpus" "$work" >"$build/fuzz/work/$name/merge.log" 2>&1 ||
    { echo "merge.sh: $name: merge failed, see $build/fuzz/work/$name/merge.log" >&2; rm -rf "$merged"; exit 1; }
  # The kept set replaces found/; named seeds and regression inputs stay where they are.
  for seed in "$corpus"/*; do [ -f "$seed" ] && rm -f "$merged/$(sha1sum "$seed" | cut -c1-40)"; done
  rm -rf "$corpus/found" && mkdir "$corpus/found" && cp "$merged"/* "$corpus/found/" 2>/dev/null || true
  rm -rf "$merged"
  printf '%-16s %6d inputs in found/\n' "$name" "$(find "$corpus/found" -type f | wc -l)"
done
