"""Post-hoc EMA (Karras et al. 2024, "Analyzing and Improving the Training Dynamics of
Diffusion Models", sec. 3 and appendix C.2): power-function EMAs tracked while training,
their snapshots, and the least-squares reconstruction of the EMA of any other length.

A power-function EMA of exponent gamma averages theta_1..theta_t with weights
proportional to tau^gamma; its length is sigma_rel, the standard deviation of those weights
relative to t. Steps are optimiser steps (EDM2 counts images; only the unit differs).
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Sequence
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from ddpm.config.errors import CheckpointError
from ddpm.config.run_folder import RunFolder
from ddpm.runtime.atomic import atomic_write
from ddpm.training import checkpoint

SNAPSHOT = "phema_{step:08d}.npz"
SNAPSHOT_RE = re.compile(r"phema_(\d{8})\.npz$")


def exp_to_std(gamma: np.ndarray | float) -> np.ndarray:
    """sigma_rel of exponent gamma (eq. 123): sqrt((g + 1) / ((g + 2)^2 (g + 3)))."""
    g = np.float64(gamma)
    return np.sqrt((g + 1) / (g + 2) ** 2 / (g + 3))


def std_to_exp(sigma_rel: np.ndarray | float) -> np.ndarray:
    """gamma of sigma_rel (eq. 126): the largest real root of
    g^3 + 7 g^2 + (16 - s^-2) g + (12 - s^-2)."""
    s = np.asarray(sigma_rel, np.float64)
    roots = [np.roots([1, 7, 16 - x, 12 - x]).real.max() for x in s.ravel() ** -2]
    return np.array(roots, np.float64).reshape(s.shape)


@functools.cache
def exponent(sigma_rel: float) -> float:
    """std_to_exp of one sigma_rel, solved once (the training loop asks every step)."""
    return float(std_to_exp(sigma_rel))


def power_beta(sigma_rel: float, step: int) -> float:
    """The EMA's decay at optimiser step t >= 1 (eq. 127): (1 - 1/t)^(gamma + 1); at t = 1
    it is 0, so the average starts at theta_1."""
    return (1.0 - 1.0 / step) ** (exponent(sigma_rel) + 1.0)


def closed_form_weights(sigma_rel: float, step: int) -> np.ndarray:
    """The weights [t] on theta_1..theta_t that the recursion of power_beta gives:
    (tau^(g+1) - (tau-1)^(g+1)) / t^(g+1)."""
    g1 = exponent(sigma_rel) + 1.0
    tau = np.arange(1, step + 1, dtype=np.float64)
    return (tau**g1 - (tau - 1) ** g1) / float(step) ** g1


def correlation(a_step, a_std, b_step, b_std) -> np.ndarray:
    """Inner products of two power-function EMA profiles, ending at steps a and b
    (eq. 151, Algorithm 3)."""
    a_exp, b_exp = std_to_exp(a_std), std_to_exp(b_std)
    ratio = np.float64(a_step) / np.float64(b_step)
    exponent = np.where(a_step < b_step, b_exp, -a_exp)
    num = (a_exp + 1) * (b_exp + 1) * ratio**exponent
    return num / ((a_exp + b_exp + 1) * np.maximum(a_step, b_step))


def solve_coefficients(
    in_steps: Sequence[int], in_stds: Sequence[float], out_step: int, out_stds: Sequence[float]
) -> np.ndarray:
    """[in, out] weights on the snapshots (in_steps, in_stds) whose sum best matches, in
    least squares, each profile (out_step, out_std) (Algorithm 3); each column sums to 1."""
    col = lambda x: np.float64(x).reshape(-1, 1)  # noqa: E731
    row = lambda x: np.float64(x).reshape(1, -1)  # noqa: E731
    out_steps = np.full(len(out_stds), out_step)
    a = correlation(col(in_steps), col(in_stds), row(in_steps), row(in_stds))
    b = correlation(col(in_steps), col(in_stds), row(out_steps), row(out_stds))
    x = np.linalg.solve(a, b)
    return x / x.sum(axis=0, keepdims=True)


def phema_name(index: int, name: str) -> str:
    """Snapshot name of power EMA `index`'s copy of the network parameter `name`."""
    return f"phema{index}.{name}"


def flat_copy(params: Sequence[Parameter], index: int) -> Parameter:
    """Power EMA `index`: one flat float32 Parameter `phema<index>` over `params`, in order."""
    flat = np.concatenate([p.asnumpy().ravel() for p in params]).astype(np.float32)
    return Parameter(Tensor(flat), name=f"phema{index}", requires_grad=False)


_flat = ops.MultitypeFuncGraph("flat")


@_flat.register("Tensor")
def _flat_one(x):
    return ops.reshape(x, (-1,))


class PowerEmaUpdate(nn.Cell):
    """Every tracked power EMA in one compiled call: ema_i <- beta_i ema_i + (1 - beta_i)
    theta, on the flat concatenation of the weights (a few ops, whatever their count)."""

    def __init__(self, emas: Sequence[Parameter], weights: ParameterTuple) -> None:
        super().__init__(auto_prefix=False)  # shares the step's parameters under their names
        self.emas, self.weights = ParameterTuple(list(emas)), weights
        self.flatten = ops.HyperMap()

    def construct(self, betas: Tensor) -> Tensor:
        theta = ops.concat(self.flatten(_flat, self.weights))
        for i, ema in enumerate(self.emas):
            ops.assign(ema, ema * betas[i] + theta * (1.0 - betas[i]))
        return betas


def unflatten(flat: np.ndarray, layout: Sequence[tuple[str, tuple[int, ...]]]) -> dict:
    """{name: array} of a flat copy laid out as `layout` [(name, shape)]."""
    out, start = {}, 0
    for name, shape in layout:
        size = int(np.prod(shape))
        out[name] = flat[start : start + size].reshape(shape)
        start += size
    return out


def write_snapshot(
    folder: Path,
    step: int,
    stds: Sequence[float],
    emas: Sequence[Parameter],
    layout: Sequence[tuple[str, tuple[int, ...]]],
) -> Path:
    """folder/phema_<step>.npz, atomically: every tracked EMA's weights at `step`, by
    parameter name (phema<i>.<name>)."""
    arrays = {
        phema_name(i, n): v
        for i, ema in enumerate(emas)
        for n, v in unflatten(ema.asnumpy(), layout).items()
    }
    meta = json.dumps({"step": step, "sigma_rels": list(map(float, stds))})
    path = folder / SNAPSHOT.format(step=step)

    def save(tmp: Path) -> None:
        with open(tmp, "wb") as f:  # a file object: np.savez would add .npz to a name
            np.savez(f, __meta__=np.array(meta), **arrays)

    atomic_write(path, save)
    return path


def snapshot_bytes(num_params: int, stds: Sequence[float]) -> int:
    return 4 * num_params * len(stds)


def read_snapshots(folder: Path) -> list[tuple[int, list[float], dict[str, np.ndarray]]]:
    """(step, sigma_rels, {phema<i>.<name>: array}) of every snapshot, oldest first."""
    found = sorted(p for p in folder.glob("phema_*.npz") if SNAPSHOT_RE.search(p.name))
    if not found:
        raise CheckpointError(
            f"no post-hoc EMA snapshots under {folder}: train with trainer.posthoc_ema="
            "[0.05,0.1] to write them"
        )
    out = []
    for path in found:
        try:
            with np.load(path) as z:
                meta = json.loads(str(z["__meta__"]))
                arrays = {k: z[k] for k in z.files if k != "__meta__"}
        except Exception as err:  # a truncated or foreign file
            raise CheckpointError(f"post-hoc EMA snapshot {path} is unreadable: {err}") from err
        out.append((int(meta["step"]), list(meta["sigma_rels"]), arrays))
    return out


def reconstruct(
    folder: Path, sigma_rels: Sequence[float]
) -> tuple[int, list[dict[str, np.ndarray]]]:
    """The EMA of each sigma_rel at the last snapshot's step, from every snapshot of every
    tracked EMA: (that step, one {network parameter name: float32 array} per sigma_rel)."""
    snaps = read_snapshots(folder)
    in_steps, in_stds, sources = [], [], []
    for step, stds, arrays in snaps:
        for i, std in enumerate(stds):
            prefix = phema_name(i, "")
            in_steps.append(step)
            in_stds.append(std)
            sources.append({k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)})
    last = snaps[-1][0]
    coefs = solve_coefficients(in_steps, in_stds, last, list(sigma_rels))
    return last, [_weighted_sum(coefs[:, j], sources) for j in range(len(sigma_rels))]


def _weighted_sum(weights: np.ndarray, sources: list[dict[str, np.ndarray]]) -> dict:
    out = {}
    for name in sources[0]:
        total = np.zeros(sources[0][name].shape, np.float64)
        for w, src in zip(weights, sources, strict=True):
            total += w * src[name]
        out[name] = total.astype(np.float32)
    return out


def reconstruction_path(run: Path, sigma_rel: float) -> Path:
    return RunFolder(run).posthoc / f"ema_sigma{sigma_rel:.3f}.ckpt"


def save_reconstructions(run: Path, sigmas: Sequence[float]) -> list[Path]:
    """Reconstruct each sigma_rel's EMA from the run's snapshots and save it as a checkpoint
    of EMA weights with the latest checkpoint's meta (its step set to the snapshot's)."""
    from ddpm.training.step import ema_name  # step.py imports this module

    step, weights = reconstruct(RunFolder(run).posthoc, sigmas)
    found = checkpoint.candidates(RunFolder(run).checkpoints)
    if not found:
        raise CheckpointError(f"no checkpoint under {RunFolder(run).checkpoints}")
    _, meta = checkpoint.load(found[0])
    paths = []
    for sigma, params in zip(sigmas, weights, strict=True):
        entries = [{"name": ema_name(n), "data": ms.Tensor(v)} for n, v in params.items()]
        extra = {"meta": json.dumps({**meta, "step": step, "posthoc_sigma_rel": sigma})}
        path = reconstruction_path(run, sigma)
        atomic_write(
            path, lambda tmp, e=entries, x=extra: ms.save_checkpoint(e, str(tmp), append_dict=x)
        )
        paths.append(path)
    return paths
