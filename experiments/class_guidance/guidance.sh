#!/usr/bin/env bash
# The guidance trade-off of the default (class-conditional) recipe at equal training time:
# the 3 seeds trained by experiments/quality_per_minute/finals.sh, each sampled at every
# guidance scale, 1,000 samples per run and scale: once with guidance at every step, once
# with the default's interval (t/T in (0.2, 0.8]); then per-class grids of seed 0.
#   guidance.sh <finals dir> <out dir>      (run from the repository root)
set -euo pipefail
finals=${1:-multirun/quality/final_class}
out=${2:-experiments/class_guidance}
runs=("$finals"/seed0 "$finals"/seed1 "$finals"/seed2)
py=.venv/bin/python
$py -m ddpm.guidance "${runs[@]}" --scales 0,0.5,1,2,3,4 --guidance-interval 0,1 \
  --n 1000 --out "$out/every_step"
$py -m ddpm.guidance "${runs[@]}" --scales 2,3,4,6 --guidance-interval 0.2,0.8 \
  --n 1000 --out "$out/interval"
for spec in "0 0,1" "1 0,1" "4 0,1" "4 0.2,0.8"; do
  set -- $spec
  name="grid_w$1_${2/,/-}"
  $py -m ddpm.sample "$finals"/seed0 --per-class 8 --guidance "$1" --guidance-interval "$2" \
    --out "$out/$name"
  cp "$out/$name/samples_dpm_solver.png" "$out/$name.png"
  rm -r "${out:?}/$name"
done
