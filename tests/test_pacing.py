"""A time budget holds: Pacing re-fixes the step count from the loop's measured rate.

The trainer here is real (a tiny network on Fashion-MNIST); only its clock is simulated,
so that the loop's speed, and its drift, are known and the test does not depend on how
fast or loaded this machine is.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
import pytest

from ddpm.config.groups import resolve
from ddpm.config.run_folder import RunFolder
from ddpm.training import checkpoint
from ddpm.training.budget import Budget, capacity_for, fixed, time_steps
from ddpm.training.build import build_parts, build_probe, build_trainer
from ddpm.training.callbacks import Evaluation, SampleGrids, Summary
from ddpm.training.lr_schedule import cosine_lr
from tests.conftest import compose_config

FINAL_ONLY = (SampleGrids, Evaluation, Summary)  # with the tiny config's sample_every=0


def simulated(trainer, seconds_per_step):
    """Give `trainer` a clock on which step n takes seconds_per_step(n); as on the real
    clock, this process's first step (which compiles) is not counted."""

    def clock() -> None:
        if trainer.loop_start is None:
            trainer.loop_start = 0.0
        else:
            trainer.loop_seconds += seconds_per_step(trainer.step)

    trainer._clock = clock
    return trainer


def paced_trainer(run_dir, budget: Budget, seconds_per_step, *overrides: str):
    cfg = compose_config(
        "trainer.lr=1e-3", "trainer.min_lr=1e-5", "trainer.log_every=10", *overrides
    )
    trainer, checkpoints = build_trainer(build_parts(resolve(cfg)), run_dir, None, budget)
    # The final grid and summary come after the loop, outside the budget: left out here.
    trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, FINAL_ONLY)]
    return simulated(trainer, seconds_per_step), checkpoints


def lr_table(trainer) -> np.ndarray:
    return trainer.train_step.optimizer.learning_rate.learning_rate.asnumpy()


@pytest.mark.parametrize(
    "name, seconds_per_step",
    [
        # the probe timed 10 steps/s, the loop runs 10% slower (logging, grids), and then
        # the machine slows down by 20% a third of the way in
        ("drift", lambda n: 0.11 if n < 20 else 0.132),
        # or speeds up by 20%
        pytest.param("speed-up", lambda n: 0.11 if n < 20 else 0.088, marks=pytest.mark.slow),
    ],
)
def test_the_loop_ends_within_its_budget(tmp_path, graph_mode, name, seconds_per_step):
    budget = fixed(minutes=0.1, steps_per_s=10.0, timed_steps=3)  # 6 s: 60 steps planned
    trainer, _ = paced_trainer(tmp_path, budget, seconds_per_step)
    trainer.fit()
    assert abs(trainer.loop_seconds - budget.seconds) <= 0.02 * budget.seconds, name
    assert trainer.step == trainer.cfg.steps != budget.steps
    # The decay still ends at min_lr on the last step, and it stays smooth: no step of the
    # table moves more than twice as far as a plain cosine over the final count would.
    table, lr, min_lr = lr_table(trainer), 1e-3, 1e-5
    assert table[trainer.step] == pytest.approx(min_lr, rel=1e-6)
    assert table[0] == pytest.approx(lr, rel=1e-6)  # warm-up of 1 step
    plain = cosine_lr(trainer.step, lr, min_lr, 1)
    assert np.max(np.abs(np.diff(table[: trainer.step]))) <= 2 * np.max(np.abs(np.diff(plain)))


def test_replans_keep_the_rate_continuous_and_reach_min_lr():
    lr, min_lr, warmup = 1e-3, 1e-5, 10
    plain = cosine_lr(200, lr, min_lr, warmup)
    assert np.array_equal(cosine_lr(200, lr, min_lr, warmup, length=400)[:200], plain)
    table = cosine_lr(200, lr, min_lr, warmup, length=400, replans=[(50, 300), (120, 250)])
    assert np.array_equal(table[:50], plain[:50])  # the past is never rewritten
    assert table[250] == pytest.approx(min_lr) and np.all(table[250:] == table[250])
    assert np.all(np.diff(table[warmup:251]) <= 0)  # still a monotone decay
    assert np.max(np.abs(np.diff(table[warmup:]))) < 2 * np.max(np.abs(np.diff(plain[warmup:])))
    # A replan during warm-up starts the decay's stretch where the warm-up ends.
    early = cosine_lr(200, lr, min_lr, warmup, length=400, replans=[(3, 100)])
    assert np.array_equal(early[:warmup], plain[:warmup]) and early[100] == pytest.approx(min_lr)


def test_a_resumed_budget_keeps_its_replans_and_spends_only_what_is_left(tmp_path, graph_mode):
    """The checkpoint holds the replans and the seconds spent: a resume rebuilds the same
    LR table and step count, and its loop stops when the whole budget is spent."""
    budget = fixed(minutes=0.1, steps_per_s=10.0, timed_steps=3)
    slow = lambda n: 0.125  # noqa: E731
    first, _ = paced_trainer(tmp_path, budget, slow, "trainer.checkpoint_every=15")
    first.fit()
    table, steps = lr_table(first), first.step
    # Resume from the checkpoint at step 30 (about halfway) with the same clock.
    folder = RunFolder(tmp_path).checkpoints
    (folder / "latest").write_text("step_00000030.ckpt\n")
    _, meta = checkpoint.load(folder / "step_00000030.ckpt")
    assert meta["Pacing"]["replans"] and meta["Pacing"]["spent_s"] > 0
    second, checkpoints = paced_trainer(tmp_path, budget, slow, "trainer.checkpoint_every=15")
    checkpoints.restore(second, checkpoint.candidates(folder))
    assert second.step == 30
    replans = [tuple(r) for r in meta["Pacing"]["replans"]]
    assert second.cfg.steps == replans[-1][1]
    resumed_table = lr_table(second)
    expected = cosine_lr(budget.steps, 1e-3, 1e-5, 1, budget.capacity, replans)
    np.testing.assert_array_equal(resumed_table, expected)
    np.testing.assert_array_equal(resumed_table[:30], table[:30])
    second.fit()
    # The resumed process does not count its first (compiling) step: one step's seconds.
    spent = meta["Pacing"]["spent_s"] + second.loop_seconds
    assert abs(spent - budget.seconds) <= 0.02 * budget.seconds
    assert abs(second.step - steps) <= 2


def test_the_probe_times_the_runs_own_step_and_rewinds_it(tmp_path, graph_mode):
    """The budget's probe compiles and times the run's own train step, then sets its every
    Parameter back: the run goes on with that compiled graph, and its first step is the
    first step of a run that was never timed."""
    cfg = compose_config("trainer.minutes=0.1")

    def parts():
        ms.set_seed(0)
        return build_parts(resolve(cfg))

    timed_parts = parts()
    probe = build_probe(timed_parts, None, capacity_for(0.1))
    step = probe.train_step
    before = {p.name: p.asnumpy().copy() for p in step.get_parameters()}
    rate, timed = time_steps(probe, seconds=0.2)
    assert rate > 0 and timed >= 3
    for p in step.get_parameters():
        np.testing.assert_array_equal(p.asnumpy(), before[p.name], err_msg=p.name)
    budget = fixed(0.1, rate, timed)
    trainer, _ = build_trainer(timed_parts, tmp_path, None, budget, step)
    untimed, _ = build_trainer(parts(), tmp_path / "untimed", None, budget)
    assert trainer.train_step is step and step.compile_cache
    compiled = set(step.compile_cache)
    losses = {}
    for name, run in (("timed", trainer), ("untimed", untimed)):
        stream = run.stream()
        losses[name] = [run.train_one(next(stream)).losses for _ in range(2)]
    assert step.compile_cache == compiled  # the run's steps compiled nothing
    np.testing.assert_array_equal(losses["timed"], losses["untimed"])
