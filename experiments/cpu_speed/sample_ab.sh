#!/bin/bash
# `python -m ddpm.sample <default run> --n 1000` of an older commit against this tree, for
# experiments/cpu_speed.md. Trains a 30-step default run with each code (the default recipe
# of each), then times the two commands alternating, twice each.
#   experiments/cpu_speed/sample_ab.sh <old commit> <scratch dir>
set -euo pipefail
old=$1 scratch=$2 here=$(pwd) py=$(pwd)/.venv/bin/python
mkdir -p "$scratch"
[ -d "$scratch/old" ] || git worktree add --detach "$scratch/old" "$old"
train="trainer.minutes=null trainer.steps=30"
$py -m ddpm.run $train hydra.run.dir="$scratch/new_run" > "$scratch/new_run.log" 2>&1
(cd "$scratch/old" && $py -m ddpm.run $train hydra.run.dir="$scratch/old_run" > "$scratch/old_run.log" 2>&1)
for i in 1 2; do
  for which in old new; do
    code=$here; [ $which = old ] && code=$scratch/old
    start=$(date +%s.%N)
    (cd "$code" && $py -m ddpm.sample "$scratch/${which}_run" --n 1000 --out "$scratch/out_$which" > /dev/null 2>&1)
    echo "$which $i: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
