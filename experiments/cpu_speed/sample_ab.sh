#!/bin/bash
# `python -m ddpm.sample <default run> --n 1000` of an older commit against this tree, for
# experiments/cpu_speed.md. Trains a 30-step default run with the old code and one with this
# tree (the default recipe of each), then times the commands in turn, ROUNDS (default
# "1 2") rounds. A third argument, a commit whose default recipe is this tree's, adds it as
# a middle arm sampling this tree's run.
#   experiments/cpu_speed/sample_ab.sh <old commit> <scratch dir> [<middle commit>]
set -euo pipefail
old=$1 scratch=$2 middle=${3:-} here=$(pwd) py=$(pwd)/.venv/bin/python
mkdir -p "$scratch"
[ -d "$scratch/old" ] || git worktree add --detach "$scratch/old" "$old"
[ -z "$middle" ] || [ -d "$scratch/middle" ] || git worktree add --detach "$scratch/middle" "$middle"
train="trainer.minutes=null trainer.steps=30"
[ -d "$scratch/new_run" ] || $py -m ddpm.run $train hydra.run.dir="$scratch/new_run" > "$scratch/new_run.log" 2>&1
[ -d "$scratch/old_run" ] || (cd "$scratch/old" && $py -m ddpm.run $train hydra.run.dir="$scratch/old_run" > "$scratch/old_run.log" 2>&1)
for i in ${ROUNDS:-1 2}; do
  for which in old ${middle:+middle} new; do
    code=$here run=$scratch/new_run
    [ $which = new ] || code=$scratch/$which
    [ $which = old ] && run=$scratch/old_run
    start=$(date +%s.%N)
    (cd "$code" && $py -m ddpm.sample "$run" --n 1000 --out "$scratch/out_$which" > /dev/null 2>&1)
    echo "$which $i: $(echo "$(date +%s.%N) - $start" | bc) s"
  done
done
