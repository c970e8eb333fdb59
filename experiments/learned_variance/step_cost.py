"""The train step's cost with a learned variance against a fixed one, paired in one process.

    python experiments/learned_variance/step_cost.py [--rounds 12] [--block 25]

Builds the DDPM recipe's (experiment=quick_ddpm) budget-probe trainer twice, with
variance=fixed and variance=learned, compiles both, then times blocks of --block steps of
each in turn, so that the machine's drift weighs on both alike. Prints each arm's median
step time and the median and quartiles of the per-round ratio learned / fixed.
"""

import argparse
import json
import time

import ddpm  # noqa: F401  (sets the oneDNN and OpenMP variables first)

# isort: split
import numpy as np
from hydra import compose, initialize_config_dir

from ddpm.config.groups import CONF_DIR, resolve
from ddpm.training.build import build_parts, build_probe
from ddpm.training.fit import setup_runtime


def probe(variance: str):
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        overrides = ["experiment=quick_ddpm", f"variance={variance}", "trainer.minutes=null"]
        run = resolve(compose("config", overrides=[*overrides, "trainer.steps=5000"]))
    setup_runtime(run)
    trainer = build_probe(build_parts(run))
    stream = trainer.stream()
    for _ in range(3):  # the first compiles
        trainer.train_one(next(stream))
    return trainer, stream


def block_ms(trainer, stream, steps: int) -> float:
    """The median step time of `steps` steps, in ms."""
    times = []
    for _ in range(steps):
        begin = time.perf_counter()
        trainer.train_one(next(stream))
        times.append(time.perf_counter() - begin)
    return 1000 * float(np.median(times))


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=12)
    p.add_argument("--block", type=int, default=25)
    args = p.parse_args()
    arms = {v: probe(v) for v in ("fixed", "learned")}
    ms = {v: [] for v in arms}
    for _ in range(args.rounds):
        for v, (trainer, stream) in arms.items():
            ms[v].append(block_ms(trainer, stream, args.block))
    ratio = np.asarray(ms["learned"]) / np.asarray(ms["fixed"])
    print(
        json.dumps(
            {
                "fixed_ms": round(float(np.median(ms["fixed"])), 1),
                "learned_ms": round(float(np.median(ms["learned"])), 1),
                "ratio_median": round(float(np.median(ratio)), 3),
                "ratio_quartiles": [round(float(q), 3) for q in np.percentile(ratio, [25, 75])],
                "rounds": args.rounds,
                "block": args.block,
            }
        )
    )


if __name__ == "__main__":
    main()
