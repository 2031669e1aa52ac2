#!/usr/bin/env bash
# Soak benchmark (not a timed test): a gateway in front of two `clawbot serve` nodes on 127.0.0.1 free ports, on
# the default model, under N minutes of mixed load: streams, plain requests, cancellations and hang-ups
# mid-stream, slow readers, bad requests (deep JSON, malformed HTTP, oversized bodies, wrong types), and one
# node restart halfway. Every 10 s it samples RSS and open fds of the gateway and both nodes from /proc; at the
# end it prints crashes, errors beyond the injected ones, RSS growth after warm-up, fd counts, a verdict (PASS
# needs: no crash, no unexpected error, RSS growth < 5%, fd counts flat) and the command that
# reproduces the run. It stops by itself (load ends at the deadline, every connection is closed 2 minutes
# after it at the latest) and stops what it started, also on Ctrl-C. Exit status: 0 PASS, 1 FAIL, 2 usage.
#
# Usage: bench/soak.sh [--minutes 30] [--concurrency 6] [--seed 1] [--sample-s 10] [--model stories260K.gguf]
#                      [--chat-template chatml] [--threads 1] [--parallel 4] [--ctx 512] [--cache-ram 4]
#                      [--max-requests N] [--bin build/clawbot] [--out DIR]
# Needs build/clawbot (make build, or cmake --build build --target clawbot) and node. Models are looked up in
# CLAWBOT_MODELS (default ../shared/models, as `make run`). Logs, samples.csv and summary.txt go to --out (default
# a fresh folder under $TMPDIR, printed at the start).
set -euo pipefail
cd "$(dirname "$0")/.."
export CLAWBOT_MODELS=${CLAWBOT_MODELS:-$(cd .. && pwd)/shared/models}
command -v node >/dev/null || { echo "soak: node is not installed (scripts/bootstrap.sh installs it)" >&2; exit 2; }
exec node bench/soak.mjs "$@"
