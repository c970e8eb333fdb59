#!/usr/bin/env bash
# Post-hoc EMA on the default recipe: 3 seeds of `make run`'s recipe (7 minutes each) with
# two tracked power EMAs, then FD against sigma_rel from their snapshots.
#   experiments/posthoc_ema/study.sh [runs dir]      (from the repository root)
set -euo pipefail
out=${1:-outputs/posthoc_ema}
py=${PY:-.venv/bin/python}
for seed in 0 1 2; do
  [ -f "$out/s$seed/summary.json" ] || $py -m ddpm.run seed=$seed \
    "trainer.posthoc_ema=[0.05,0.1]" trainer.posthoc_every=250 hydra.run.dir="$out/s$seed"
done
$py -m ddpm.ema "$out/s0" "$out/s1" "$out/s2" --sigma-rel 0.02,0.05,0.1,0.15,0.2 --n 1000 \
  --out experiments/posthoc_ema
