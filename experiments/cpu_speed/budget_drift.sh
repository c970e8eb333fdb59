#!/bin/bash
# Budgeted runs whose machine slows down mid-run, for experiments/cpu_speed.md.
#   experiments/cpu_speed/budget_drift.sh <scratch dir> <duty> <seeds> [run overrides...]
# Each seed trains twice, alternating: once undisturbed, and once with a CPU hog that starts
# a third of the way into the training loop and runs until the run ends. The hog is one
# process that spins for duty x 50 ms of every 50 ms (duty 0.5: a quarter of the two cores).
# Prints each run's loop seconds against its budget and the steps it trained.
#   experiments/cpu_speed/budget_drift.sh /tmp/drift 0.5 "0 1 2" experiment=tiny trainer.minutes=1
set -euo pipefail
scratch=$1 duty=$2 seeds=$3
shift 3
py=$(pwd)/.venv/bin/python
mkdir -p "$scratch"

hog() {  # spin duty x 50 ms, sleep the rest, forever
  exec "$py" -c "
import time
busy, period = $duty * 0.05, 0.05
while True:
    t = time.perf_counter()
    while time.perf_counter() - t < busy:
        pass
    time.sleep(period - busy)"
}

for seed in $seeds; do
  for arm in steady slowed; do
    dir=$scratch/${arm}_$seed
    rm -rf "$dir"
    "$py" -m ddpm.run "$@" seed="$seed" hydra.run.dir="$dir" > "$dir.out" 2>&1 &
    run=$!
    hog_pid=
    if [ $arm = slowed ]; then
      # The probe's log line gives the budget; the loop starts right after it.
      until grep -q "steps/s (timed over" "$dir/run.log" 2>/dev/null; do sleep 0.5; done
      minutes=$(sed -n 's/.*budget: \([0-9.e+]*\) minutes.*/\1/p' "$dir/run.log" | head -1)
      sleep "$(echo "$minutes * 60 / 3" | bc -l)"
      hog & hog_pid=$!
    fi
    wait $run
    [ -n "$hog_pid" ] && kill "$hog_pid"
    echo "$arm seed $seed: $(grep -o 'budget: [0-9]* steps in .*' "$dir/run.log")"
  done
done
