"""The reverse process: the compiled ReverseStep and the host loop that drives it."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from ddpm.config.registry import Option
from ddpm.diffusion.gaussian import GaussianDiffusion
from ddpm.diffusion.objectives import Objective
from ddpm.diffusion.ode_samplers import ODEPlan, check_sampler, make_ode_plan
from ddpm.diffusion.samplers import SamplerPlan, make_plan
from ddpm.diffusion.variance import LearnedRange


class ReverseStep(nn.Cell):
    """x_prev = a * x0_hat + c * x0_hat_prev + b * x_t + sigma * z, with x0_hat optionally
    clipped; returns (x_prev, x0_hat). The columns of `coefs` are ddpm.diffusion.samplers.COEFS.

    For a class-conditional network the last column, w, combines the conditional and the
    null-class outputs (ddpm.diffusion.conditioning). `scales` are the w the step will be
    fed (a plan's `guidance` column): all 1 needs only the conditional output, all 0 only
    the null class; otherwise both come from one network call on the doubled batch
    [x_t, x_t], [y, null]. `at(w)` is the step to run where this step's w is known: a step
    of one network call on the plain batch where w is 0 or 1 (outside a guidance interval).
    Called as a whole, the step is one graph (ddpm.export writes it); p_sample_loop runs it
    in parts instead (`Evaluations`), so that every row calls one compiled network graph.

    A network that learns its variance (ddpm.diffusion.variance) outputs 2C channels; the
    step predicts x0_hat from the first C. With `variance` (a LearnedRange), the rows carry
    samplers.LEARNED_COEFS and the noise is scaled by sigma * Sigma_theta^(1/2), the v
    channels' variance between the last two columns' log bounds (the DDPM sampler).
    Without it the v channels are ignored (DDIM, DPM-Solver). Guidance combines the first
    C channels and keeps the conditional v, as GLIDE does.
    """

    W = 6  # the column of coefs that holds w

    def __init__(
        self,
        network: nn.Cell,
        objective: Objective,
        clip_denoised: bool,
        scales: np.ndarray | float = 1.0,
        variance: LearnedRange | None = None,
    ) -> None:
        super().__init__()
        self.network, self.objective, self.clip = network, objective, clip_denoised
        self.variance = variance
        self.learns_variance = bool(getattr(network, "learns_variance", False))
        self.null_class = getattr(network, "num_classes", 0)  # 0: unconditional
        scales = np.asarray(scales, np.float64)
        self.unconditional = bool(np.all(scales == 0.0))
        self.guided = bool(self.null_class) and not (self.unconditional or np.all(scales == 1.0))
        object.__setattr__(self, "_plain", {})  # w -> the unguided step for that w, built once
        object.__setattr__(self, "_parts", None)  # the Evaluations p_sample_loop runs

    def at(self, w: float) -> ReverseStep:
        """The step for a reverse step whose guidance scale is w: without the doubled batch
        where w is 0 (the null class alone) or 1 (the label alone)."""
        if not self.guided or w not in (0.0, 1.0):
            return self
        if w not in self._plain:
            self._plain[w] = self.with_scales(w)
        return self._plain[w]

    def with_scales(self, scales: float) -> ReverseStep:
        """This step for another set of guidance scales."""
        return ReverseStep(self.network, self.objective, self.clip, scales, self.variance)

    def signature(self) -> tuple:
        """What the step computes beyond its inputs. A row's w reaches the step through
        `coefs`, so the scales it was built for matter only as these flags: two steps of
        one network with equal signatures return the same for the same inputs, and either
        can run the other's rows on its compiled graphs."""
        computes = (type(self), self.objective, self.clip, self.variance, id(self.network))
        return (*computes, self.guided, self.unconditional)

    def parts(self) -> Evaluations:
        """This step in parts, compiled once per step object and batch shape."""
        if self._parts is None:
            object.__setattr__(self, "_parts", Evaluations(self))
        return self._parts

    def construct(
        self, x_t: Tensor, t: Tensor, y: Tensor, coefs: Tensor, noise: Tensor, x0_prev: Tensor
    ):
        out = self.predict(self.network_input(x_t, coefs), t, y, coefs[self.W])
        return self.update(out, x_t, coefs, noise, x0_prev)

    def network_input(self, x_t: Tensor, coefs: Tensor) -> Tensor:
        """What the network is fed at x_t: x_t itself."""
        return x_t

    def update(self, out: Tensor, x_t: Tensor, coefs: Tensor, noise: Tensor, x0_prev: Tensor):
        """The step from the (guided) network output `out`: (x_prev, x0_hat)."""
        sqrt_ab, sqrt_1m_ab, a, b, c, sigma = (coefs[i] for i in range(6))
        if self.learns_variance:
            channels = x_t.shape[1]
            out, v = out[:, :channels], out[:, channels:]
            if self.variance is not None:
                log_var = self.variance.log_variance(v, coefs[7], coefs[8])
                sigma = sigma * ops.exp(0.5 * log_var)
        x0 = self.objective.predict_x0(out, x_t, sqrt_ab, sqrt_1m_ab)
        if self.clip:
            x0 = ops.clamp(x0, -1.0, 1.0)
        return a * x0 + c * x0_prev + b * x_t + sigma * noise, x0

    def predict(self, x_t: Tensor, t: Tensor, y: Tensor, w: Tensor) -> Tensor:
        """The network output, guided: out(null) + w * (out(y) - out(null))."""
        if self.unconditional and self.null_class:
            return self.network(x_t, t, ops.ones_like(y) * self.null_class)
        if not self.guided:
            return self.network(x_t, t, y)
        null = ops.ones_like(y) * self.null_class
        both = self.network(
            ops.concat((x_t, x_t)), ops.concat((t, t)), ops.concat((y, null))
        )  # [2B, C, H, W]
        batch = x_t.shape[0]
        return self.combine(both[:batch], both[batch:], w)

    def combine(self, cond: Tensor, uncond: Tensor, w: Tensor) -> Tensor:
        """Classifier-free guidance (Ho & Salimans 2022): uncond + w * (cond - uncond)."""
        guided = uncond + w * (cond - uncond)
        if self.learns_variance:  # the guided mean channels, the conditional v
            channels = guided.shape[1] // 2
            return ops.concat((guided[:, :channels], cond[:, channels:]), axis=1)
        return guided


class ODEStep(ReverseStep):
    """One row of an ODE plan (ddpm.diffusion.ode_samplers.ODE_COEFS): the continuous
    formulations' denoiser D = c_skip x + c_out F(c_in x; c_noise), optionally clipped, and
    x_next = a D + c D_prev + b x + noise z; returns (x_next, D). `t` is the row's noise
    label c_noise for the batch, and guidance combines F as ReverseStep does."""

    W = 8  # the column of coefs that holds w

    def __init__(self, network: nn.Cell, clip_denoised: bool, scales=1.0) -> None:
        super().__init__(network, None, clip_denoised, scales)

    def with_scales(self, scales: float) -> ODEStep:
        return ODEStep(self.network, self.clip, scales)

    def network_input(self, x: Tensor, coefs: Tensor) -> Tensor:
        """c_in x."""
        return coefs[0] * x

    def update(self, out: Tensor, x: Tensor, coefs: Tensor, noise: Tensor, d_prev: Tensor):
        """D from the (guided) F `out`, then the step: (x_next, D)."""
        c_skip, c_out, a, b, c, sigma = (coefs[i] for i in range(2, 8))
        d = c_skip * x + c_out * out
        if self.clip:
            d = ops.clamp(d, -1.0, 1.0)
        return a * d + c * d_prev + b * x + sigma * noise, d


class _Network(nn.Cell):
    """The step's network on its input at x: F(network_input(x), t, y)."""

    def __init__(self, step: ReverseStep) -> None:
        super().__init__()
        self.step = step

    def construct(self, x: Tensor, t: Tensor, y: Tensor, coefs: Tensor) -> Tensor:
        return self.step.network(self.step.network_input(x, coefs), t, y)


class _Update(nn.Cell):
    """The step after its network calls: combine(cond, uncond, w), then update. A row of
    one call passes its output as both, and uncond + w * 0 is that output exactly."""

    def __init__(self, step: ReverseStep) -> None:
        super().__init__()
        self.step = step

    def construct(self, cond, uncond, x: Tensor, coefs: Tensor, noise: Tensor, prev: Tensor):
        out = self.step.combine(cond, uncond, coefs[self.step.W])
        return self.step.update(out, x, coefs, noise, prev)


class Evaluations:
    """A guided ReverseStep run as separate graphs: the network on one batch, called once
    per row or, where the row guides, twice (on the labels and on the null class), then the
    update. Every row reuses the one network graph and the one update graph of the batch's
    shape, so sampling compiles the network once instead of once per distinct step, and a
    guided row's two calls cost what one call on the doubled batch does
    (experiments/cpu_speed.md). The result is ReverseStep's to float32 rounding. A step that
    never guides has one distinct row, and runs whole: one graph, one launch a row."""

    def __init__(self, step: ReverseStep) -> None:
        self.step, self.network, self.update = step, _Network(step), _Update(step)

    def __call__(
        self, w: float, x: Tensor, t: Tensor, y: Tensor, null: Tensor, coefs: Tensor, *state
    ) -> tuple[Tensor, Tensor]:
        """The row of scale w: (x_next, x0_hat) from x, the row's t and coefs, the labels y,
        the null-class labels `null`, and `state` = (noise, x0_prev)."""
        if not self.step.guided:
            return self.step(x, t, y, coefs, *state)
        row = self.step.at(w)  # the labels it sees are those `predict` would give it
        if row.guided:
            cond, uncond = self.network(x, t, y, coefs), self.network(x, t, null, coefs)
            return self.update(cond, uncond, x, coefs, *state)
        out = self.network(x, t, null if row.unconditional else y, coefs)
        return self.update(out, out, x, coefs, *state)


def reverse_process(
    network: nn.Cell, diffusion: GaussianDiffusion, sampler: Option
) -> tuple[ReverseStep, SamplerPlan | ODEPlan]:
    """The compiled reverse step of `network` and the coefficient table of `sampler`: an
    ODE step and plan for a continuous formulation."""
    clip = sampler.shared.clip_denoised
    formulation = diffusion.formulation
    check_sampler(formulation, sampler, formulation.name if formulation else "ddpm")
    if diffusion.formulation is not None:
        ode = make_ode_plan(sampler, diffusion.formulation)
        return ODEStep(network, clip, ode.guidance), ode
    plan = make_plan(sampler, diffusion)
    variance = diffusion.variance if plan.learned_sigma else None
    return ReverseStep(network, diffusion.objective, clip, plan.guidance, variance), plan


def p_sample_loop(
    step: ReverseStep,
    plan: SamplerPlan | ODEPlan,
    shape: tuple[int, int, int, int],
    seed: int,
    on_step: Callable[[int, np.ndarray], None] | None = None,
    labels: np.ndarray | None = None,
) -> np.ndarray:
    """Draw samples [B, C, H, W] in [-1, 1], starting from x_T ~ N(0, init_scale^2 I), of
    class `labels` [B] for a conditional network (unconditional ones ignore them). `plan` is
    a DDPM sampler's (ReverseStep) or an ODE plan (ODEStep).

    All per-step tensors are built before the loop; `on_step(i, x_i)` (for GIFs) is the
    only reason the loop copies intermediate images back to the host. Each row runs
    `step.parts()` at its guidance scale w: guidance is paid only where it applies, and all
    rows share one compiled network graph.
    """
    rng = np.random.default_rng(seed)
    batch = shape[0]
    t_batches = [Tensor(np.full(batch, t, plan.labels.dtype)) for t in plan.labels]
    coefs = [Tensor(row.astype(np.float32)) for row in plan.coefs]
    x = rng.standard_normal(shape, dtype=np.float32)
    x = Tensor(x if plan.init_scale == 1.0 else np.float32(plan.init_scale) * x)
    y = Tensor(np.zeros(batch, np.int32) if labels is None else np.asarray(labels, np.int32))
    null = Tensor(np.full(batch, step.null_class, np.int32))
    x0 = ops.zeros_like(x)  # no previous prediction at the first step
    parts = step.parts()
    for i in range(plan.num_steps):
        noise = Tensor(rng.standard_normal(shape, dtype=np.float32), mstype.float32)
        x, x0 = parts(float(plan.guidance[i]), x, t_batches[i], y, null, coefs[i], noise, x0)
        if on_step is not None:
            on_step(i, x.asnumpy())
    return np.clip(x.asnumpy(), -1.0, 1.0)
