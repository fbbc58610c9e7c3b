#!/usr/bin/env bash
# Check devloop's GPU sampler against a REAL NVIDIA driver (the tests only ever see a fake one).
#
# Needs: this repository checkout, python3 (3.8+), an NVIDIA GPU + driver. No internet needed:
# if pynvml is missing, `pip install nvidia-ml-py` is tried once into a temp folder and may fail;
# the nvidia-smi fallback is checked either way.
#
# What it does (about 20 s):
#   1. one sample through NVML (pynvml), printed as JSON     (= `agent.pyz gpu`)
#   2. one sample through the nvidia-smi fallback (python -S hides pynvml), printed as JSON
#   3. the same through the agent zipapp exactly as targets ship it
#   4. the Sampler at 1 Hz for 5 s: CPU cost (user+sys / wall), target < 1% of a core
#   5. if torch is there: allocate 1 GiB on the GPU and check the sample shows it
# Exit 0 if a GPU was seen (step 1 or 2), 1 otherwise. Results also go to $OUT/ if set.
#
#   bash scripts/gpu-device-check.sh
set -uo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
RESULTS="${OUT:-$TMP}"
mkdir -p "$RESULTS"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"

say() { printf '\n== %s\n' "$*"; }
"$PY" --version || { echo "FAIL: $PY not found"; exit 1; }
if command -v nvidia-smi >/dev/null; then
  nvidia-smi -L 2>&1 | head -n 20
else
  echo "(nvidia-smi not on PATH)"
fi

say "0. pynvml"
if "$PY" -c 'import pynvml, sys; print("pynvml", getattr(pynvml, "__file__", "?"))' 2>/dev/null; then
  :
else
  echo "pynvml not importable; trying: pip install nvidia-ml-py (may fail without internet)"
  if timeout 90 "$PY" -m pip install -q --disable-pip-version-check --retries 0 --timeout 10 \
       --target "$TMP/pylib" nvidia-ml-py >"$TMP/pip.log" 2>&1; then
    export PYTHONPATH="$PYTHONPATH:$TMP/pylib"
    echo "installed nvidia-ml-py into $TMP/pylib"
  else
    echo "pip install failed (last lines):"; tail -n 3 "$TMP/pip.log"
    echo "-> step 1 will report 'pynvml not importable'; the nvidia-smi fallback is still checked"
  fi
fi

say "1. one sample through NVML (python -m devloop.agent.main gpu)"
"$PY" -m devloop.agent.main gpu | tee "$RESULTS/gpu-nvml.json"

say "2. one sample through the nvidia-smi fallback (python -S: no site-packages, no pynvml)"
PYTHONPATH="$PWD" "$PY" -S -m devloop.agent.main gpu | tee "$RESULTS/gpu-smi.json"

say "3. the agent zipapp as targets ship it"
if "$PY" -c 'from devloop.core.agent_bundle import write_bundle; import sys; print(write_bundle(__import__("pathlib").Path(sys.argv[1])))' \
     "$TMP/bundle" >"$TMP/bundle.path" 2>"$TMP/bundle.err"; then
  "$PY" "$(cat "$TMP/bundle.path")" gpu --interval 0.5 --count 2 | tee "$RESULTS/gpu-bundle.jsonl"
else
  echo "skipped: could not build the bundle here: $(tail -n 1 "$TMP/bundle.err")"
fi

say "4. Sampler at 1 Hz for 5 s: CPU cost"
"$PY" - "$RESULTS" <<'EOF'
import json, os, resource, sys, time
from devloop.agent.gpu import Sampler, sample

first = sample()  # NVML init (or the fallback's probe) happens here, outside the clock
source = first.get("source") or "none (%s)" % first.get("reason")
events = []
def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime
c0, w0 = cpu(), time.monotonic()
s = Sampler(1.0, events.append).start()
time.sleep(5.0)
s.stop()
c1, w1 = cpu(), time.monotonic()
pct = 100.0 * (c1 - c0) / (w1 - w0)
ok = pct < 1.0
print("source: %s" % source)
print("samples: %d in %.1f s, CPU %.4f s -> %.3f%% of a core (target < 1%%: %s)"
      % (len(events), w1 - w0, c1 - c0, pct, "ok" if ok else "OVER"))
for e in events[-1:]:
    for g in e.get("gpus", []):
        print("  GPU %s %s util=%s mem=%s/%s temp=%s power=%s/%s procs=%d" % (
            g["index"], g["name"], g["util"], g["mem_used"], g["mem_total"], g["temp"],
            g["power"], g["power_limit"], len(g["processes"])))
with open(os.path.join(sys.argv[1], "gpu-sampler-cost.json"), "w") as f:
    json.dump({"source": source, "samples": len(events), "wall_s": w1 - w0,
               "cpu_s": c1 - c0, "percent_core": pct, "last": events[-1:]}, f, indent=1)
EOF

say "5. a 1 GiB allocation shows up (only if torch is installed)"
if "$PY" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  timeout 120 "$PY" - <<'EOF'
import os, torch
from devloop.agent.gpu import sample
before = sample()["gpus"][0]
x = torch.empty(256 * 1024 * 1024, dtype=torch.float32, device="cuda:0")  # 1 GiB
torch.cuda.synchronize()
after = sample()["gpus"][0]
grew = after["mem_used"] - before["mem_used"] if isinstance(after["mem_used"], int) and isinstance(before["mem_used"], int) else "n/a"
mine = [p for p in after["processes"] if p["pid"] == os.getpid()]
print("mem_used grew by %s bytes (expect >= 1 GiB); this process listed: %s" % (grew, mine or "no (PID namespace?)"))
EOF
else
  echo "skipped: torch with CUDA not available"
fi

say "RESULT"
seen=$("$PY" - "$RESULTS" <<'EOF'
import json, os, sys
seen = []
for name in ("gpu-nvml.json", "gpu-smi.json"):
    try:
        event = json.load(open(os.path.join(sys.argv[1], name)))
    except Exception as exc:
        print("%s: unreadable (%s)" % (name, exc), file=sys.stderr)
        continue
    if event.get("available") and event.get("gpus"):
        seen.append("%s: %d GPU(s) via %s" % (name, len(event["gpus"]), event["source"]))
    else:
        print("%s: no GPU: %s" % (name, event.get("reason")), file=sys.stderr)
print("; ".join(seen))
EOF
)
if [ -n "$seen" ]; then
  echo "PASS: $seen"
  exit 0
fi
echo "FAIL: no GPU seen through NVML or nvidia-smi"
exit 1
