#!/usr/bin/env bash
# The NVML probe on a real NVIDIA machine (issue 20: "the NVML path is checked on a GPU machine"): compiles
# src/monitor/gpu.cpp with a small main (bench/gpu/nvml_print.cpp; g++ and libdl only, none of our Debian
# packages), prints what it reads next to nvidia-smi's figures, and checks that they agree: same names and
# count, memory total within 1%, memory used within 5% or 512 MiB (nvidia-smi may count reserved memory
# apart), temperature within 3 C, power within 15% or 20 W (both are moving readings). Not part of make test.
#
#   bash bench/gpu/nvml_check.sh          # from the repository root; output also in $OUT/nvml_check.txt
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-/tmp/out}
mkdir -p "$OUT"
bin=$(mktemp -d)/nvml_print
g++ -std=c++20 -O1 -Wall -Wextra -Isrc bench/gpu/nvml_print.cpp src/monitor/gpu.cpp src/monitor/metrics.cpp \
  -ldl -pthread -o "$bin" || { echo "nvml_check: the probe did not compile" >&2; exit 1; }
{
  echo "== nvidia-smi (name, utilization.gpu %, memory.used MiB, memory.total MiB, temperature.gpu C, power.draw W)"
  nvidia-smi --query-gpu=name,utilization.gpu,memory.used,memory.total,temperature.gpu,power.draw \
    --format=csv,noheader,nounits
  echo "== clawbot's probe (the same columns)"
  "$bin"
} 2>&1 | tee "$OUT/nvml_check.txt"

python3 - "$OUT/nvml_check.txt" <<'PY'
import sys
lines = open(sys.argv[1]).read().splitlines()
smi = [l for l in lines[1:lines.index("== clawbot's probe (the same columns)")] if l.count(",") == 5]
probe = [l.split(": ", 1)[1].rsplit("  [", 1)[0] for l in lines if l.startswith("probe ")]
def fields(l):
    f = [x.strip() for x in l.split(",")]
    name, nums = f[0], []
    for x in f[1:6]:
        try: nums.append(float(x))
        except ValueError: nums.append(None)  # [N/A]
    return name, nums
ok = len(smi) == len(probe) and len(smi) > 0
print(f"count: nvidia-smi {len(smi)}, probe {len(probe)}: {'ok' if ok else 'DIFFERENT'}")
tolerance = [None, (0.05, 512), (0.01, 0), (0, 3), (0.15, 20)]  # (ratio, absolute) per numeric column
names = ["utilization", "memory.used", "memory.total", "temperature", "power"]
for s, p in zip(smi, probe):
    sn, sv = fields(s); pn, pv = fields(p)
    same = sn == pn
    print(f"name: {sn!r} vs {pn!r}: {'ok' if same else 'DIFFERENT'}"); ok &= same
    for i, name in enumerate(names):
        a, b = sv[i], pv[i]
        if a is None or b is None or b < 0 or tolerance[i] is None:
            print(f"  {name}: nvidia-smi {a}, probe {b} (not compared)"); continue
        r, absolute = tolerance[i]
        good = abs(a - b) <= max(r * max(a, b), absolute)
        print(f"  {name}: nvidia-smi {a}, probe {b}: {'ok' if good else 'DIFFERENT'}"); ok &= good
print("NVML probe:", "AGREES with nvidia-smi" if ok else "DISAGREES with nvidia-smi")
sys.exit(0 if ok else 1)
PY
