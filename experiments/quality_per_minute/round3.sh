#!/usr/bin/env bash
# Round 3: labels, flips and guidance, 7 minutes of training each, seed 0; then each run
# scored at several guidance scales and intervals (1,000 samples each).
#   round3.sh <out dir>      (run from the repository root)
set -euo pipefail
out=${1:-multirun/quality/round3}
py=.venv/bin/python
plain=(trainer.minutes=7 sampler.guidance=1 "sampler.guidance_interval=[0,1]" seed=0)
train() {  # name overrides...
  local name=$1; shift
  [ -f "$out/$name/summary.json" ] || $py -m ddpm.run "${plain[@]}" "$@" "hydra.run.dir=$out/$name"
}
train cond_flip conditioning=class dataset.random_flip=true
train cond_noflip conditioning=class
train uncond_noflip conditioning=none
$py -m ddpm.evaluate "$out/uncond_noflip" --n 1000
$py -m ddpm.guidance "$out/cond_flip" --scales 0,1,1.5,2,3 --out "$out/cond_flip"
$py -m ddpm.guidance "$out/cond_noflip" --scales 1,1.5,2,2.5,3 --out "$out/cond_noflip"
for spec in "0.0,0.6 3,4" "0.1,0.7 3,4" "0.2,0.8 3,4,5" "0.1,0.8 4" "0.3,0.9 4" "0.2,1.0 3"; do
  set -- $spec
  $py -m ddpm.guidance "$out/cond_noflip" --scales "$2" --guidance-interval "$1" \
    --out "$out/cond_noflip/interval_$1"
done
