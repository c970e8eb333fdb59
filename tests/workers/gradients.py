"""Run under msrun by tests/test_distributed.py: TrainStep's averaged gradient on each rank
against the mean of both ranks' local gradients, recomputed here without communication;
the same with trainer.accumulate=2, whose micro-batches are reduced once."""

import json
import sys
from pathlib import Path

import ddpm  # noqa: F401  (sets oneDNN and OpenMP variables before MindSpore loads)

# isort: split
import mindspore as ms
import numpy as np
from hydra import compose, initialize_config_dir
from mindspore import Tensor

from ddpm.config.groups import CONF_DIR, resolve
from ddpm.runtime.distributed import init_world
from ddpm.training.build import build_parts, build_trainer


def batch(rank: int, shape: tuple[int, ...]) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    rng = np.random.default_rng(rank)
    x = rng.uniform(-1, 1, shape).astype(np.float32)
    t = rng.integers(0, 100, shape[0]).astype(np.int32)
    noise = rng.standard_normal(shape).astype(np.float32)
    return Tensor(x), Tensor(t), Tensor(noise), Tensor(np.zeros(shape[0], np.int32))


def mean_gap(reduced, local) -> float:
    """The largest gap between the reduced gradients and the mean of the ranks' own."""
    return max(
        float(np.abs(g.asnumpy() - np.mean([loc[i].asnumpy() for loc in local], axis=0)).max())
        for i, g in enumerate(reduced)
    )


def main(out: Path) -> None:
    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    ms.set_seed(0)
    world = init_world()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="config", overrides=["experiment=tiny"])
        accumulating = compose(
            config_name="config", overrides=["experiment=tiny", "trainer.accumulate=2"]
        )
    trainer, _ = build_trainer(build_parts(resolve(cfg)), out, world)
    step = trainer.train_step
    shape = (4, 1, 28, 28)
    _, reduced = step.gradients(*batch(world.rank, shape))  # AllReduce-mean inside
    local = [step.grad_fn(*batch(r, shape))[1] for r in range(world.size)]  # no communication
    gap = [float(np.abs(local[0][i].asnumpy() - local[1][i].asnumpy()).max()) for i in range(3)]
    # 2 micro-batches of 2 on each rank: one reduce of their mean, the ranks' 4-batch mean
    trainer, _ = build_trainer(build_parts(resolve(accumulating)), out / "accumulate", world)
    mine = batch(world.rank, shape)
    trainer.accumulator(*(a[:2] for a in mine))
    _, accumulated = trainer.train_step.gradients(*(a[2:] for a in mine))
    whole = [trainer.train_step.grad_fn(*batch(r, shape))[1] for r in range(world.size)]
    record = {"rank": world.rank, "size": world.size, "max_diff": mean_gap(reduced, local),
              "rank_gap": gap, "accumulated_max_diff": mean_gap(accumulated, whole)}  # fmt: skip
    (out / f"gradients_{world.rank}.json").write_text(json.dumps(record))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
