"""A run's sampler as MindIR: the compiled reverse steps (the EMA denoiser with the
guidance combination inside) and the coefficient table that drives them, for a loop in
plain MindSpore (`mindspore.load` and `nn.GraphCell`) or MindSpore Lite.

The folder holds step<k>.mindir, one per distinct step the sampler runs (the guided one on
the doubled batch; the plain one where w is 0 or 1), with inputs (x, t, y, coefs, noise,
x0_prev) and outputs (x_next, x0), and plan.npz:
- t [S]: each row's time input (DDPM's timestep or a continuous formulation's c_noise);
- coefs [S, K] float32: each row's coefficients; graph [S]: the step<k> each row runs;
- init_scale: x_start ~ N(0, init_scale^2 I); shape: the batch's [B, C, H, W];
- labels [B]: the classes ddpm.sample draws for B samples (a conditional model's;
  zeros otherwise) and classes: their names.
The loop draws x and then each row's noise from one numpy Generator, as p_sample_loop.
"""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor

from ddpm.config.registry import Option
from ddpm.diffusion.conditioning import balanced_labels
from ddpm.sampling.loading import SavedModel
from ddpm.sampling.reverse_step import ReverseStep, reverse_process

PLAN = "plan.npz"


def distinct_steps(step: ReverseStep, guidance: np.ndarray) -> tuple[list[ReverseStep], list[int]]:
    """The distinct steps a plan's rows run (step.at(w) per row), and each row's index."""
    rows = [step.at(float(w)) for w in guidance]
    graphs = list({id(s): s for s in rows}.values())
    return graphs, [next(k for k, g in enumerate(graphs) if g is s) for s in rows]


def export_sampler(
    model: SavedModel, sampler: Option, shape: tuple[int, int, int, int], out: Path
) -> list[Path]:
    """Write the MindIR steps and plan.npz of `sampler` on `model` for batches of `shape`
    [B, C, H, W] into `out`; returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    step, plan = reverse_process(model.network, model.diffusion, sampler)
    graphs, index = distinct_steps(step, plan.guidance)
    batch = shape[0]
    x = Tensor(np.zeros(shape, np.float32))
    t = Tensor(np.zeros(batch, plan.labels.dtype))
    y = Tensor(np.zeros(batch, np.int32))
    coefs = Tensor(plan.coefs[0].astype(np.float32))
    written = []
    for k, graph in enumerate(graphs):
        ms.export(
            graph, x, t, y, coefs, x, x, file_name=str(out / f"step{k}"), file_format="MINDIR"
        )
        written.append(out / f"step{k}.mindir")
    labels = (
        balanced_labels(batch, len(model.classes)) if model.classes else np.zeros(batch, np.int32)
    )
    np.savez(
        out / PLAN,
        t=plan.labels,
        coefs=plan.coefs.astype(np.float32),
        graph=np.asarray(index, np.int32),
        init_scale=np.float64(plan.init_scale),
        shape=np.asarray(shape, np.int64),
        labels=labels,
        classes=np.asarray(model.classes, dtype=str),
    )
    return [*written, out / PLAN]
