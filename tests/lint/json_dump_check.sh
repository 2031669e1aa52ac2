#!/usr/bin/env bash
# Every dump() of JSON in src/server and src/gateway must be a call site known to be safe (json_dump_allowlist.txt
# beside this script): a new one fails until someone has checked that what it dumps is not unvalidated input.
# Usage: json_dump_check.sh [repository root]
set -euo pipefail
root="${1:-$(cd "$(dirname "$0")/../.." && pwd)}"
allow="$(cd "$(dirname "$0")" && pwd)/json_dump_allowlist.txt"
cd "$root"

# Allow-list entries as "path<TAB>fragment".
entries="$(grep -v '^[[:space:]]*\(#\|$\)' "$allow" | sed 's/[[:space:]]*|[[:space:]]*/\t/')"

failed=0
found=0
while IFS= read -r hit; do
  [ -n "$hit" ] || continue
  found=$((found + 1))
  path="${hit%%:*}"
  rest="${hit#*:}"
  line="${rest%%:*}"
  code="${rest#*:}"
  ok=0
  while IFS=$'\t' read -r allowed_path fragment; do
    if [ "$allowed_path" = "$path" ] && [[ "$code" == *"$fragment"* ]]; then
      ok=1
      break
    fi
  done <<<"$entries"
  if [ "$ok" = 0 ]; then
    echo "$path:$line: dump() not in tests/lint/json_dump_allowlist.txt:$code" >&2
    failed=1
  fi
done < <(grep -rnE --include='*.cpp' --include='*.h' '(\.|->)dump\(' src/server src/gateway || true)

if [ "$failed" != 0 ]; then
  echo "Dump only JSON this program built, or JSON read through common/json_read.h; then add the call site" >&2
  echo "to tests/lint/json_dump_allowlist.txt with why it is safe." >&2
  exit 1
fi
echo "json_dump_check: $found dump() call sites, all known to be safe"
