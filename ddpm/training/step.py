"""The compiled training step: loss, gradients, clipping, Adam and the EMA in one graph."""

from __future__ import annotations

from typing import Any

import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from ddpm.diffusion.gaussian import GaussianDiffusion, q_sample
from ddpm.diffusion.likelihood import kl_and_decoder_nll
from ddpm.diffusion.variance import log_variance_range
from ddpm.nn import kernels
from ddpm.runtime.distributed import data_parallel
from ddpm.training.phema import flat_copy


def _table(values: np.ndarray) -> Tensor:
    """A float64 coefficient table [T] cast to float32 at the graph boundary."""
    return Tensor(values.astype(np.float32))


def _gather(table: Tensor, t: Tensor) -> Tensor:
    return ops.gather(table, t, 0)[:, None, None, None]  # [B] -> [B, 1, 1, 1]


class DenoisingLoss(nn.Cell):
    """Per-example weighted loss  w_t * mean_{C,H,W} dist(net(x_t, t, y), target)  -> [B]."""

    def __init__(
        self,
        network: nn.Cell,
        diffusion: GaussianDiffusion,
        distance: nn.Cell,
        weights: np.ndarray,
    ) -> None:
        super().__init__()
        self.network, self.distance = network, distance
        self.objective = diffusion.objective
        self.sqrt_ab = _table(diffusion.sqrt_alphas_cumprod)
        self.sqrt_1m_ab = _table(diffusion.sqrt_one_minus_alphas_cumprod)
        self.weights = _table(weights)

    def construct(self, x_start: Tensor, t: Tensor, noise: Tensor, y: Tensor) -> Tensor:
        sqrt_ab, sqrt_1m_ab = _gather(self.sqrt_ab, t), _gather(self.sqrt_1m_ab, t)
        x_t = q_sample(x_start, noise, sqrt_ab, sqrt_1m_ab)
        target = self.objective.target(x_start, noise, sqrt_ab, sqrt_1m_ab)
        dist = self.distance(self.network(x_t, t, y) - target)  # [B, C, H, W]
        return dist.mean(axis=(1, 2, 3)) * ops.gather(self.weights, t, 0)  # [B]


class HybridLoss(DenoisingLoss):
    """L_hybrid = L_simple + lambda L_vlb (Improved DDPM eq. 16) for a network that learns
    its variance (ddpm.diffusion.variance): the weighted loss above on the first C output
    channels, plus lambda T L_t in bits/dim, the sampled t's share of L_vlb, from the v
    channels with the mean's output held fixed (stop-gradient) -> [B]."""

    def __init__(self, *args: Any) -> None:  # DenoisingLoss's
        super().__init__(*args)
        diffusion: GaussianDiffusion = args[1]
        self.variance = diffusion.variance
        self.vlb_scale = float(diffusion.variance.vlb_weight * diffusion.num_timesteps)
        min_log, max_log = log_variance_range(diffusion.betas)
        self.min_log, self.max_log = _table(min_log), _table(max_log)
        self.coef1 = _table(diffusion.posterior_mean_coef1)
        self.coef2 = _table(diffusion.posterior_mean_coef2)

    def construct(self, x_start: Tensor, t: Tensor, noise: Tensor, y: Tensor) -> Tensor:
        sqrt_ab, sqrt_1m_ab = _gather(self.sqrt_ab, t), _gather(self.sqrt_1m_ab, t)
        x_t = q_sample(x_start, noise, sqrt_ab, sqrt_1m_ab)
        target = self.objective.target(x_start, noise, sqrt_ab, sqrt_1m_ab)
        out = self.network(x_t, t, y)
        channels = x_start.shape[1]
        mean_out, v = out[:, :channels], out[:, channels:]
        simple = self.distance(mean_out - target).mean(axis=(1, 2, 3))
        x0 = self.objective.predict_x0(ops.stop_gradient(mean_out), x_t, sqrt_ab, sqrt_1m_ab)
        vlb = self.vlb_bits(x_start, x_t, x0, v, t)
        return simple * ops.gather(self.weights, t, 0) + self.vlb_scale * vlb

    def vlb_bits(self, x_start: Tensor, x_t: Tensor, x0: Tensor, v: Tensor, t: Tensor) -> Tensor:
        """L_t in bits/dim [B] (ddpm.diffusion.likelihood): the decoder NLL at t = 0, the
        KL of q(x_{t-1} | x_t, x_0) to p_theta(x_{t-1} | x_t) elsewhere; x0 unclipped."""
        coef1, coef2 = _gather(self.coef1, t), _gather(self.coef2, t)
        min_log, max_log = _gather(self.min_log, t), _gather(self.max_log, t)
        model_log_var = self.variance.log_variance(v, min_log, max_log)
        true_mean, model_mean = coef1 * x_start + coef2 * x_t, coef1 * x0 + coef2 * x_t
        kl, nll = kl_and_decoder_nll(x_start, true_mean, min_log, model_mean, model_log_var, ops)
        per_example = ops.where(t == 0, nll.mean(axis=(1, 2, 3)), kl.mean(axis=(1, 2, 3)))
        return per_example / _LN2


_LN2 = float(np.log(2.0))


class PreconditionedLoss(nn.Cell):
    """The continuous formulations' loss (ddpm.diffusion.formulations): per example
    weight * mean_{C,H,W} dist(F(c_in x; c_noise, y) - F*), x = alpha x_0 + sigma eps and
    F* = p x_0 + q eps, from the rows of LEVEL_COLUMNS the host drew -> [B]."""

    def __init__(self, network: nn.Cell, distance: nn.Cell) -> None:
        super().__init__()
        self.network, self.distance = network, distance

    def construct(self, x_start: Tensor, levels: Tensor, noise: Tensor, y: Tensor) -> Tensor:
        alpha, sigma, c_in, c_noise, p, q, weight = (levels[:, i] for i in range(7))
        x = _per_example(alpha) * x_start + _per_example(sigma) * noise
        target = _per_example(p) * x_start + _per_example(q) * noise
        dist = self.distance(self.network(_per_example(c_in) * x, c_noise, y) - target)
        return dist.mean(axis=(1, 2, 3)) * weight  # [B]


def _per_example(column: Tensor) -> Tensor:
    return column[:, None, None, None]  # [B] -> [B, 1, 1, 1]


_ema_update = ops.MultitypeFuncGraph("ema_update")
_square_sum = ops.MultitypeFuncGraph("square_sum")
_add_into = ops.MultitypeFuncGraph("add_into")
_drain = ops.MultitypeFuncGraph("drain")


@_ema_update.register("Tensor", "Tensor", "Tensor")
def _ema_update_one(decay, ema, param):
    """theta_ema <- decay * theta_ema + (1 - decay) * theta."""
    return ops.assign(ema, ema * decay + param * (1.0 - decay))


@_add_into.register("Tensor", "Tensor")
def _add_into_one(accum, grad):
    """accum <- accum + g: one micro-batch's gradient into the step's buffer."""
    return ops.assign_add(accum, grad)


@_drain.register("Number", "Tensor", "Tensor")
def _drain_one(inv_k, accum, grad):
    """(accum + g) / k, the mean over the step's k micro-batches; the buffer is zeroed."""
    total = (accum + grad) * inv_k
    return ops.depend(total, ops.assign(accum, ops.zeros_like(accum)))


_dot = ops.MatMul(transpose_b=True)


@_square_sum.register("Tensor")
def _square_sum_one(grad):
    # sum(g^2) as a [1, n] x [n, 1] product, which MindSpore's CPU backend runs faster than
    # a ReduceSum over the whole tensor (experiments/cpu_speed.md)
    flat = grad.reshape((1, -1))
    return _dot(flat, flat).reshape(())


def _fusable(optimizer: nn.Optimizer) -> bool:
    """Whether the AdamEma kernel computes this optimiser's step: Adam on one LR schedule."""
    flags = ("is_group", "exec_weight_decay", "need_scale", "use_nesterov", "use_amsgrad")
    flags += ("use_lazy", "use_offload")
    return (
        kernels.active()
        and type(optimizer) is nn.Adam
        and optimizer.dynamic_lr
        and not any(getattr(optimizer, f) for f in flags)
    )


def ema_name(name: str) -> str:
    """Checkpoint name of the EMA copy of the network parameter `name`."""
    return "ema." + name


def accum_name(name: str) -> str:
    """Checkpoint name of the gradient-accumulation buffer of the parameter `name`."""
    return "accum." + name


def load_ema(network: nn.Cell, params: dict) -> None:
    """Copy EMA weights (a name -> Parameter map, e.g. a loaded checkpoint) into `network`."""
    missing = [n for n, _ in network.parameters_and_names() if ema_name(n) not in params]
    if missing:
        raise KeyError(f"no EMA weights for {len(missing)} parameters, e.g. {missing[:3]}")
    for name, param in network.parameters_and_names():
        param.set_data(params[ema_name(name)].data)


class TrainStep(nn.Cell):
    """One optimiser step: loss, gradients, global-norm clipping, Adam, EMA update.

    Holds every piece of training state as Parameters (network, `ema.*`, optimiser moments
    and step; with `accumulate` k > 1 the `accum.*` gradient buffers that GradAccumulator
    fills from micro-batches 1..k-1; with post-hoc EMA the flat `phema<i>` power EMAs), so
    one checkpoint of this cell is the full state. With the fused CPU kernels, clipping,
    Adam and the EMA run as one op over all parameters (`kernels.adam_ema`); the graph ops
    it replaces, about nine per parameter, took ~12% of a CPU train step. Otherwise
    per-parameter updates go through HyperMap: an unrolled Python loop makes graph
    compilation ~5x slower.
    """

    def __init__(
        self,
        loss_fn: DenoisingLoss,
        optimizer: nn.Optimizer,
        grad_clip: float,
        skip_nonfinite: bool = False,
        accumulate: int = 1,
        posthoc_stds: tuple[float, ...] = (),
    ) -> None:
        super().__init__()
        self.skip_nonfinite, self.accumulate = skip_nonfinite, int(accumulate)
        self.posthoc_stds = tuple(float(s) for s in posthoc_stds)
        self.loss_fn, self.optimizer = loss_fn, optimizer
        self.weights = optimizer.parameters
        named = [(n, p) for n, p in loss_fn.network.parameters_and_names() if p.requires_grad]
        if [p for _, p in named] != list(self.weights):
            raise ValueError(
                "optimizer parameters must be the network's trainable parameters, in order"
            )
        self.ema = ParameterTuple(
            [Parameter(p.data.copy(), name=ema_name(n), requires_grad=False) for n, p in named]
        )
        if self.accumulate > 1:
            self.accum = ParameterTuple(
                [
                    Parameter(ops.zeros_like(p.data), name=accum_name(n), requires_grad=False)
                    for n, p in named
                ]
            )
        self.posthoc_layout = [(n, tuple(p.shape)) for n, p in named]
        for i in range(len(self.posthoc_stds)):  # updated by callbacks.PostHocEma
            setattr(self, f"phema{i}", flat_copy([p for _, p in named], i))
        self.grad_clip = float(grad_clip)
        self.fused = _fusable(optimizer)
        if self.fused:
            self.adam_ema = kernels.adam_ema(len(named))
            hyper = [optimizer.beta1, optimizer.beta2, optimizer.eps]
            hyper = [float(h.asnumpy()) for h in hyper] + [self.grad_clip, float(skip_nonfinite)]
            self.adam_hyper = Tensor(np.array(hyper, np.float32))
        self.hyper_map = ops.HyperMap()
        self.grad_fn = ops.value_and_grad(self._mean_loss, None, self.weights, has_aux=True)
        self.data_parallel = data_parallel()
        if self.data_parallel:  # AllReduce-mean over workers, as nn.TrainOneStepCell does
            from mindspore.communication import get_group_size

            self.grad_reducer = nn.DistributedGradReducer(self.weights, True, get_group_size())

    def _mean_loss(self, x_start, t, noise, y):
        per_example = self.loss_fn(x_start, t, noise, y)
        return per_example.mean(), per_example

    def gradients(self, x_start: Tensor, t: Tensor, noise: Tensor, y: Tensor):
        """Per-example losses [B] and the gradients of their mean, averaged over the step's
        micro-batches and over workers."""
        (_, per_example), grads = self.grad_fn(x_start, t, noise, y)
        if self.accumulate > 1:
            grads = self.hyper_map(ops.partial(_drain, 1.0 / self.accumulate), self.accum, grads)
        if self.data_parallel:
            grads = self.grad_reducer(grads)
        return per_example, grads

    def construct(self, x_start: Tensor, t: Tensor, noise: Tensor, y: Tensor, ema_decay: Tensor):
        """y: class labels [B] (the null class where dropped; ignored by an unconditional
        network)."""
        per_example, grads = self.gradients(x_start, t, noise, y)
        if self.fused:
            return per_example, self._fused_update(grads, per_example.sum(), ema_decay)
        grad_norm = ops.sqrt(ops.addn(self.hyper_map(_square_sum, grads)))  # before clipping
        if self.grad_clip > 0:
            scale = ops.minimum(1.0, self.grad_clip / (grad_norm + 1e-6))
            grads = self.hyper_map(ops.partial(ops.mul, scale), grads)
        if self.skip_nonfinite:
            finite = ops.logical_and(ops.isfinite(grad_norm), ops.isfinite(per_example.sum()))
            if finite:  # a NaN/inf step leaves weights, moments and EMA untouched
                self._update(grads, ema_decay)
        else:
            self._update(grads, ema_decay)
        return per_example, grad_norm

    @property
    def power_emas(self) -> list[Parameter]:
        """The flat `phema<i>` copies of the weights (posthoc_layout), one per sigma_rel of
        posthoc_stds."""
        return [getattr(self, f"phema{i}") for i in range(len(self.posthoc_stds))]

    def set_learning_rates(self, lrs: np.ndarray) -> None:
        """Replace the per-step LR table (same length: the compiled step keeps its graph)."""
        table = self.optimizer.learning_rate.learning_rate
        if tuple(table.shape) != lrs.shape:
            raise ValueError(f"an LR table of {lrs.shape} for the step's {tuple(table.shape)}")
        table.set_data(Tensor(lrs))

    def _fused_update(self, grads, loss_sum, ema_decay):
        opt = self.optimizer
        tensors = self.weights + opt.moment1 + opt.moment2 + self.ema + grads
        schedule = opt.learning_rate.learning_rate  # the per-step LR table
        steps = (opt.global_step, opt.beta1_power, opt.beta2_power)
        norm = self.adam_ema(self.adam_hyper, schedule, *steps, ema_decay, loss_sum, *tensors)
        return norm.reshape(())

    def _update(self, grads, ema_decay):
        self.optimizer(grads)
        self.hyper_map(ops.partial(_ema_update, ema_decay), self.ema, self.weights)


class GradAccumulator(nn.Cell):
    """Micro-batches 1..k-1 of a TrainStep with `accumulate` k: adds the gradient of each
    one's mean loss into the step's `accum.*` buffers and returns its per-example losses.
    The step's own call on the last micro-batch takes the mean of the k and updates once,
    so the optimiser, the LR schedule and the EMA advance once per k micro-batches."""

    def __init__(self, step: TrainStep) -> None:
        super().__init__(auto_prefix=False)  # shares the step's parameters under their names
        if step.accumulate < 2:
            raise ValueError("GradAccumulator needs a TrainStep with accumulate > 1")
        self.loss_fn, self.accum = step.loss_fn, step.accum
        self.hyper_map = ops.HyperMap()
        self.grad_fn = ops.value_and_grad(self._mean_loss, None, step.weights, has_aux=True)

    def _mean_loss(self, x_start, t, noise, y):
        per_example = self.loss_fn(x_start, t, noise, y)
        return per_example.mean(), per_example

    def construct(self, x_start: Tensor, t: Tensor, noise: Tensor, y: Tensor) -> Tensor:
        (_, per_example), grads = self.grad_fn(x_start, t, noise, y)
        return ops.depend(per_example, self.hyper_map(_add_into, self.accum, grads))
