#!/usr/bin/env bash
# Screen: one change at a time to a base recipe, 3.5 minutes of training each, seed 0,
# FD on 1,000 DPM-Solver++ (20 steps) samples.
#   ROUND=1 screen.sh <out dir> <variant> ...   (base: the default recipe before the study)
#   ROUND=2 screen.sh <out dir> <variant> ...   (base: round 1's patch2_pred_v)
set -euo pipefail
out=$1; shift
common=(trainer.minutes=3.5 trainer.eval_n=1000 sampler=dpm_solver trainer.sample_every=0 seed=0)
# The quick recipe as it was before this study (sampler aside).
round1=(model.dim=16 "model.dim_mults=[1,2,4]" model.patch_size=1 "attention.levels=[1,2]"
        objective=pred_noise trainer.batch_size=64 trainer.lr=1e-3 trainer.warmup_steps=50)
patch2="model.patch_size=2 model.dim=32 model.dim_mults=[1,2] attention.levels=[1]"
base=("${round1[@]}")
# shellcheck disable=SC2206
[ "${ROUND:-1}" = 2 ] && base+=($patch2 objective=pred_v)
declare -A variant=(
  [base]=""
  [min_snr]="loss=mse loss.min_snr_gamma=5"
  [pred_v]="objective=pred_v"
  [lr2e-3]="trainer.lr=2e-3"
  [batch128_lr2e-3]="trainer.batch_size=128 trainer.lr=2e-3"
  [dim32_122]="model.dim=32 model.dim_mults=[1,2,2]"
  [no_level_attention]="attention.levels=[]"
  [ema0.999]="trainer.ema_decay=0.999"
  [patch2_dim32]="$patch2"
  [patch2_pred_v]="$patch2 objective=pred_v"
  [dim48]="model.dim=48"
  [batch32]="trainer.batch_size=32"
  [lr4e-3]="trainer.lr=4e-3"
)
for name in "$@"; do
  [ -f "$out/$name/summary.json" ] && continue
  # shellcheck disable=SC2086
  python -m ddpm.run "hydra.run.dir=$out/$name" "${common[@]}" "${base[@]}" ${variant[$name]}
done
