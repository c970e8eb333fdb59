#!/usr/bin/env bash
# seed_tutorial -> seed_tutorial_fast, one change at a time, 2.5 minutes of training each,
# seed 0; FD on 500 DPM-Solver++ (20 steps) samples for every step of the chain, so that
# only training differs. Usage: tutorial_chain.sh <out dir>   (from the repository root)
set -euo pipefail
out=${1:-multirun/quality/tutorial}
common=(trainer.minutes=2.5 trainer.eval_n=500 trainer.sample_every=0 seed=0
        sampler=dpm_solver sampler.steps=20 sampler.clip_denoised=true)
declare -A step=(
  [1_tutorial]="experiment=seed_tutorial"
  [2_ema]="experiment=seed_tutorial trainer.ema_decay=0.995 trainer.ema_warmup=true"
  [3_cosine_v]="experiment=seed_tutorial trainer.ema_decay=0.995 trainer.ema_warmup=true schedule=cosine schedule.timesteps=1000 objective=pred_v"
  [4_fast]="experiment=seed_tutorial_fast"
)
for name in 1_tutorial 2_ema 3_cosine_v 4_fast; do
  [ -f "$out/$name/summary.json" ] && continue
  # shellcheck disable=SC2086
  .venv/bin/python -m ddpm.run "hydra.run.dir=$out/$name" "${common[@]}" ${step[$name]}
done
.venv/bin/python -m ddpm.compare "$out"
