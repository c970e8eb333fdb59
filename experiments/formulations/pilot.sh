#!/usr/bin/env bash
# Pilot of the formulations study: one seed of EDM and of flow matching at the default
# recipe's 7 minutes (its class-conditional network, guidance w = 4 in (0.2, 0.8]), then
# FD on 1,000 samples at several solver step counts from the same runs.
#   pilot.sh [out dir]       (run from the repository root)
set -euo pipefail
out=${1:-outputs/pilot}
py=.venv/bin/python
$py -m ddpm.run formulation=edm sampler=heun sampler.steps=10 seed=0 hydra.run.dir="$out/edm_heun10"
$py -m ddpm.run formulation=flow sampler=euler sampler.steps=20 seed=0 hydra.run.dir="$out/flow_euler20"
$py -m ddpm.fit_features dataset=fashion_mnist  # once per cache
for steps in 5 10 20; do $py -m ddpm.evaluate "$out/edm_heun10" --n 1000 --steps $steps | tail -1; done
for steps in 10 20 40; do $py -m ddpm.evaluate "$out/flow_euler20" --n 1000 --steps $steps | tail -1; done
