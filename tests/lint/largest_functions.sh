#!/usr/bin/env bash
# Lists the N largest named functions under src/ (lines from definition to closing brace),
# as universal-ctags sees them. Lambdas (__anon*) count inside their enclosing function.
# Usage: tests/lint/largest_functions.sh [N=10] [dir=src]
set -euo pipefail
n="${1:-10}"
dir="${2:-src}"
find "$dir" -name '*.cpp' -o -name '*.h' | sort |
  xargs ctags --fields=+ne -o - --c++-kinds=f --language-force=c++ |
  awk -F'\t' '$1 !~ /^__anon/ {
      line = ""; end = ""; scope = ""
      for (i = 4; i <= NF; i++) {
        if ($i ~ /^line:/) line = substr($i, 6)
        else if ($i ~ /^end:/) end = substr($i, 5)
        else if ($i ~ /^(class|struct):/) { sub(/^[a-z]+:/, "", $i); scope = $i }
      }
      if (line != "" && end != "") {
        name = $1
        if (scope != "") { k = split(scope, parts, "::"); if (parts[k] !~ /^__anon/) name = parts[k] "::" $1 }
        printf "%5d  %s:%s  %s\n", end - line + 1, $2, line, name
      }
    }' |
  sort -rn | head -n "$n"
