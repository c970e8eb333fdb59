"""The metrics a run reports, declared once.

The trainer logs each as `hparam/<name>` in TensorBoard's HParams table and in
summary.json; `sweep_metric` picks one for a sweeper; `ddpm.evaluate` writes the sample
and likelihood ones to metrics.json; `ddpm.compare` tabulates and ranks them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    name: str
    description: str
    lower_is_better: bool
    needs: str | None = None  # the trainer key that must be > 0 for a run to compute it
    conditional: bool = False  # only a class-conditional model has it

    @property
    def curve(self) -> str | None:
        """The TensorBoard scalar it is the last value of, plotted by ddpm.compare."""
        if self.name == "final_loss":
            return "train/loss"
        return f"eval/{self.name}" if self.needs else None

    @property
    def tag(self) -> str:
        """Its TensorBoard tag and summary.json key."""
        return "hparam/" + self.name


METRICS: dict[str, Metric] = {
    m.name: m
    for m in (
        Metric("final_loss", "mean training loss of the last log window", True),
        Metric("images_per_s", "training throughput of the last log window", False),
        Metric("fd", "Frechet distance of EMA samples to the test set (features)", True, "eval_n"),
        Metric("fd_inf", "FD extrapolated to infinite N (Chong & Forsyth 2020)", True, "eval_n"),
        Metric("is", "classifier Inception Score of the EMA samples", False, "eval_n"),
        Metric("precision", "k-NN precision of the samples (Kynkaanniemi 2019)", False, "eval_n"),
        Metric("recall", "k-NN recall of the samples (Kynkaanniemi 2019)", False, "eval_n"),
        Metric("class_min", "share of the rarest class among the samples", False, "eval_n"),
        Metric("class_max", "share of the commonest class among the samples", True, "eval_n"),
        Metric(
            "cond_accuracy",
            "share of samples classified as the class asked for",
            False,
            "eval_n",
            conditional=True,
        ),
        Metric("fd_class", "mean over classes of per-class FD", True, "eval_n", conditional=True),
        Metric("bpd", "test-set negative ELBO in bits/dim", True, "bpd_n"),
    )
}


def computed_by(trainer: Any, conditional: bool = False) -> list[Metric]:
    """The metrics a run with this trainer config computes (`trainer` has eval_n, bpd_n),
    for a class-conditional model or not."""
    return [
        m
        for m in METRICS.values()
        if (m.needs is None or getattr(trainer, m.needs)) and (conditional or not m.conditional)
    ]
