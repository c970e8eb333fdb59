#!/usr/bin/env bash
# The guidance trade-off of the default (class-conditional) recipe at equal training time:
# the 3 seeds trained by experiments/quality_per_minute/finals.sh, each sampled at every
# guidance scale (1,000 samples per run and scale), then per-class grids of seed 0.
#   guidance.sh <finals dir> <out dir>      (run from the repository root)
set -euo pipefail
finals=${1:-multirun/quality/final_class}
out=${2:-experiments/class_guidance}
mkdir -p "$out"
.venv/bin/python -m ddpm.guidance "$finals"/seed0 "$finals"/seed1 "$finals"/seed2 \
  --scales 0,0.5,1,1.5,2,3,4 --n 1000 --out "$out"
for w in 0 1 2 4; do
  .venv/bin/python -m ddpm.sample "$finals"/seed0 --per-class 8 --guidance $w --out "$out/w$w"
  cp "$out/w$w/samples_dpm_solver.png" "$out/grid_w$w.png"
done
