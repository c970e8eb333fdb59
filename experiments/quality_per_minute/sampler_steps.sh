#!/usr/bin/env bash
# FD against sampler steps on one trained run: DDIM (eta 0), DPM-Solver++(2M), and
# ancestral DDPM, 1,000 samples each, same seed. Usage: sampler_steps.sh <run dir>
# Writes <run dir>/sampler_steps/<sampler>_<steps>.json and prints a Markdown table.
set -euo pipefail
run=$1
mkdir -p "$run/sampler_steps"
evaluate() {  # name steps [flags...]
  local name=$1 steps=$2; shift 2
  local out="$run/sampler_steps/${name}_${steps}.json"
  [ -f "$out" ] && return
  python -m ddpm.evaluate "$run" --n 1000 --bpd-n 0 --sampler "$name" --steps "$steps" "$@"
  cp "$run/metrics.json" "$out"
}
for steps in 5 10 20 50; do
  evaluate dpm_solver "$steps"
  evaluate ddim "$steps" --eta 0
done
evaluate ddpm 100
python - "$run/sampler_steps" <<'PY'
import json, sys
from pathlib import Path
print("| sampler | steps | FD | recall | precision | seconds |\n|---|---|---|---|---|---|")
rows = [json.loads(p.read_text()) | {"file": p.stem} for p in Path(sys.argv[1]).glob("*.json")]
for m in sorted(rows, key=lambda m: (m["file"].rsplit("_", 1)[0], int(m["file"].rsplit("_", 1)[1]))):
    name, steps = m["file"].rsplit("_", 1)
    print(f"| {name} | {steps} | {m['fd']:.1f} | {m['recall']:.3f} | {m['precision']:.3f} | {m['seconds']} |")
PY
