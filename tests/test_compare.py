"""Seed groups, intervals, tests and plots of ddpm.compare, on sweeps written by hand."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from tensorboardX import SummaryWriter

from ddpm import compare
from ddpm.analysis.stats import estimate, welch_p
from ddpm.analysis.sweep import RunRecord, group_by_seed, varying_keys

T975 = {1: math.tan(0.475 * math.pi)}  # Student t quantiles in closed form: df 1 (Cauchy)
T975[2] = 0.95 * math.sqrt(2 / (4 * 0.975 * 0.025))  # df 2: (2p-1) sqrt(2 / (4p(1-p)))


def test_t_interval_closed_forms():
    est = estimate([0.0, 2.0])  # s = sqrt(2), n = 2
    assert (est.mean, est.n) == (1.0, 2)
    assert est.half_width == pytest.approx(T975[1] * math.sqrt(2) / math.sqrt(2))
    est = estimate([1.0, 2.0, 6.0, math.nan])  # NaN (a run without the metric) is left out
    s = np.std([1.0, 2.0, 6.0], ddof=1)
    assert est.n == 3 and est.half_width == pytest.approx(T975[2] * s / math.sqrt(3))
    single = estimate([4.0])
    assert single.n == 1 and not single.has_interval and single.mean == 4.0


def test_welch_closed_form_at_two_degrees_of_freedom():
    """n = 2 per side with equal variances gives Welch df = 2, whose t CDF is closed:
    F(t) = 1/2 + t / (2 sqrt(2 + t^2))."""
    t = (1.0 - 4.0) / math.sqrt(2 / 2 + 2 / 2)
    p = 2 * (1 - (0.5 + abs(t) / (2 * math.sqrt(2 + t * t))))
    assert welch_p([0.0, 2.0], [3.0, 5.0]) == pytest.approx(p)
    assert math.isnan(welch_p([1.0], [2.0, 3.0]))  # one seed: no test


def record(config: dict, seed: int, **metrics: float) -> RunRecord:
    return RunRecord(Path(f"run{seed}"), config, seed, metrics)


def test_columns_are_exactly_the_keys_that_vary():
    linear = {"schedule.name": "linear", "schedule.beta_end": 0.02, "trainer.lr": 1e-3}
    cosine = {"schedule.name": "cosine", "schedule.s": 0.008, "trainer.lr": 1e-3}
    records = [record(linear, 0), record(cosine, 0), record({**cosine, "trainer.lr": 2e-3}, 1)]
    assert varying_keys(records) == ["schedule.name", "trainer.lr"]  # not s, beta_end, seed
    records.append(record({**linear, "schedule.beta_end": 0.01}, 2))
    assert varying_keys(records) == ["schedule.beta_end", "schedule.name", "trainer.lr"]
    groups = group_by_seed(records, ["schedule.name"])
    assert sorted(len(g.runs) for g in groups) == [2, 2]


def write_run(folder: Path, config: dict, summary: dict, losses: list[float]) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    (folder / "summary.json").write_text(json.dumps(summary))
    with SummaryWriter(str(folder)) as writer:
        for step, loss in enumerate(losses, start=1):
            writer.add_scalar("train/loss", loss, step * 10)


@pytest.fixture
def sweep(tmp_path) -> Path:
    """2 schedules x 3 seeds; cosine's FD is lower by far more than the seed spread."""
    fds = {"linear": [40.0, 44.0, 39.0], "cosine": [20.0, 23.0, 21.5]}
    for schedule, values in fds.items():
        for seed, fd in enumerate(values):
            config = {"seed": seed, "schedule": {"name": schedule}, "trainer": {"eval_n": 1000}}
            summary = {"hparam/fd": fd, "hparam/final_loss": 0.05 + seed / 100, "steps": 100}
            losses = list(np.linspace(1.0, 0.1 * (1 + seed), 5))
            write_run(tmp_path / f"schedule={schedule},seed={seed}", config, summary, losses)
    return tmp_path


def test_compare_reports_seed_means_intervals_and_support(sweep, capsys):
    assert compare.main([str(sweep)]) == 0
    text = (sweep / "compare.md").read_text()
    header = text.splitlines()[2]
    assert header.startswith("| schedule | seeds | final_loss | fd |")  # seed is no column
    rows = {r["schedule"]: r for r in csv_rows(sweep)}
    for schedule, values in {"linear": [40.0, 44.0, 39.0], "cosine": [20.0, 23.0, 21.5]}.items():
        half = T975[2] * np.std(values, ddof=1) / math.sqrt(3)  # our own interval
        assert float(rows[schedule]["fd"]) == pytest.approx(np.mean(values))
        assert float(rows[schedule]["fd_ci95"]) == pytest.approx(half)
        assert f"{np.mean(values):.4g} ± {half:.2g}" in text
    assert text.index("| cosine |") < text.index("| linear |")  # ranked by FD, lower first
    assert float(rows["linear"]["fd_p_vs_best"]) < 0.05 and "* |" in text
    assert "Welch's t-test" in text and "95% Student-t" in text
    png = Image.open(sweep / "compare.png")
    assert png.size[0] > 500 and png.size[1] > 200


def csv_rows(sweep: Path) -> list[dict]:
    import csv

    with open(sweep / "compare.csv") as f:
        return list(csv.DictReader(f))


def test_single_seed_says_no_interval(tmp_path):
    for schedule, fd in (("linear", 40.0), ("cosine", 20.0)):
        config = {"seed": 0, "schedule": {"name": schedule}, "trainer": {"eval_n": 1000}}
        write_run(tmp_path / schedule, config, {"hparam/fd": fd}, [1.0, 0.5])
    assert compare.main([str(tmp_path)]) == 0
    report = (tmp_path / "compare.md").read_text()
    assert "one seed: no intervals" in report and "| **20** |" in report
    write_run(tmp_path / "cosine_1", {**config, "seed": 1}, {"hparam/fd": 24.0}, [1.0, 0.5])
    assert compare.main([str(tmp_path)]) == 0
    assert "40 (n=1, no interval)" in (tmp_path / "compare.md").read_text()


def test_fd_at_different_sample_counts_is_not_ranked(tmp_path, capsys):
    for schedule, n in (("linear", 500), ("cosine", 1000)):
        config = {"seed": 0, "schedule": {"name": schedule}, "trainer": {"eval_n": n}}
        summary = {"hparam/fd": 30.0, "hparam/fd_inf": 25.0}
        write_run(tmp_path / schedule, config, summary, [1.0, 0.5])
    assert compare.main([str(tmp_path)]) == 2
    assert "different sample counts ([500, 1000])" in capsys.readouterr().err
    assert compare.main([str(tmp_path), "--rank", "fd_inf"]) == 0
    assert compare.main([str(tmp_path), "--mixed-n"]) == 0


def test_sweep_keys_are_the_swept_overrides_and_the_searched_params():
    from omegaconf import OmegaConf

    from ddpm.runtime.hydra_callbacks import sweep_keys

    task = ["schedule=linear,cosine", "experiment=tiny", "seed=range(3)", "model.dim_mults=[1,2]"]
    params = {"trainer.lr": "tag(log, interval(1e-4, 1e-3))", "schedule": "choice(a,b)"}
    cfg = OmegaConf.create({"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}})
    assert sweep_keys(cfg) == ["schedule", "seed", "trainer.lr"]
