#!/usr/bin/env bash
# The new default at 3 seeds: seed 0 is `make run` itself, timed; seeds 1 and 2 the same
# recipe through ddpm.run. Each is then evaluated on 1,000 samples (timed), and compared.
#   finals.sh <out dir>      (run from the repository root)
set -euo pipefail
out=${1:-multirun/quality/final}
mkdir -p "$out"
if [ ! -f "$out/seed0/summary.json" ]; then
  /usr/bin/time -v make run ARGS="hydra.run.dir=$out/seed0" 2> "$out/make_run.time"
fi
for seed in 1 2; do
  [ -f "$out/seed$seed/summary.json" ] || .venv/bin/python -m ddpm.run seed=$seed "hydra.run.dir=$out/seed$seed"
done
for seed in 0 1 2; do
  [ -f "$out/seed$seed/metrics.json" ] && continue
  /usr/bin/time -v .venv/bin/python -m ddpm.evaluate "$out/seed$seed" --n 1000 \
    2> "$out/seed$seed/evaluate.time"
done
.venv/bin/python -m ddpm.compare "$out"
