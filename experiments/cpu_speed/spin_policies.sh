#!/bin/bash
# The default recipe's train-loop rate under sched_yield policies (yield_shim.c), each in
# turn per round, for experiments/cpu_speed.md ("The runtime's spinning").
#   ROUNDS="1 2 3" experiments/cpu_speed/spin_policies.sh
set -uo pipefail
py=$(pwd)/.venv/bin/python shim=/tmp/yield_shim.so
gcc -O2 -shared -fPIC -o $shim experiments/cpu_speed/yield_shim.c -ldl
for r in ${ROUNDS:-1 2 3}; do
  for arm in none m5e8 m5e4 m3s5; do
    case $arm in
      none) env=();;
      m5e8) env=(SHIM_MODE=5 SHIM_EVERY=8 LD_PRELOAD=$shim);;
      m5e4) env=(SHIM_MODE=5 SHIM_EVERY=4 LD_PRELOAD=$shim);;
      m3s5) env=(SHIM_MODE=3 SHIM_SPIN=300 SHIM_SLEEP_NS=5000 SHIM_SLACK_NS=1000 LD_PRELOAD=$shim);;
    esac
    echo "$r $arm $(env "${env[@]}" $py experiments/cpu_speed/loop_rate.py 2>/dev/null | tail -1)"
  done
done
