"""The compiled train step, EMA and checkpoints, on a real tiny U-Net."""

import ctypes
import dataclasses
import subprocess
import sys
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore import Tensor, nn, ops
from mindspore import dtype as mstype

from ddpm.config.groups import resolve
from ddpm.nn import kernels
from ddpm.nn.build import denoiser
from ddpm.runtime import spin
from ddpm.runtime.device import configure_runtime
from ddpm.training import checkpoint
from ddpm.training.build import build_optimizer
from ddpm.training.lr_schedule import cosine_lr, ema_decay
from ddpm.training.step import DenoisingLoss, TrainStep, ema_name, load_ema
from tests.conftest import compose_config


def make_step(
    grad_clip=1.0, lr=3e-3, steps=40, fused_update=True, skip_nonfinite=False, accumulate=1
):
    """A TrainStep on a tiny U-Net, initialised from seed 0 whatever ran before; with
    fused_update=False Adam and the EMA run as graph ops."""
    ms.set_seed(0)
    run = resolve(
        compose_config(
            f"trainer.lr={lr}",
            f"trainer.steps={steps}",
            "trainer.warmup_steps=0",
            "dataset.image_size=8",
            "loss=mse",
            # a full-resolution eps network: on the default's 2x2 patches at 8x8, a bias
            # before GroupNorm can get a gradient of rounding noise, which Adam amplifies
            "model.patch_size=1",
            "objective=pred_noise",
            "conditioning=none",
        )
    )
    diffusion, net = denoiser(run, None)
    loss_fn = DenoisingLoss(net, diffusion, run["loss"](), np.ones(diffusion.num_timesteps))
    optimizer, _ = build_optimizer(run.trainer, net, steps)
    was_on = kernels.active()
    kernels.use(was_on and fused_update)
    try:
        step = TrainStep(loss_fn, optimizer, grad_clip, skip_nonfinite, accumulate)
    finally:
        kernels.use(was_on)
    return step, net


def batch(seed=0, b=8):
    rng = np.random.default_rng(seed)
    x = np.tanh(rng.standard_normal((b, 1, 8, 8))).astype(np.float32)
    t = rng.integers(0, 50, b).astype(np.int32)
    noise = rng.standard_normal((b, 1, 8, 8)).astype(np.float32)
    return Tensor(x), Tensor(t), Tensor(noise), Tensor(np.zeros(b, np.int32))


def test_compiled_step_learns_and_tracks_ema(graph_mode):
    step, net = make_step()
    x, t, noise, y = batch()
    first, _ = step(x, t, noise, y, Tensor(0.0, mstype.float32))  # decay 0: EMA := weights
    for p, e in zip(step.weights, step.ema, strict=True):
        np.testing.assert_array_equal(p.asnumpy(), e.asnumpy())
    frozen = [e.asnumpy().copy() for e in step.ema]
    for _ in range(30):
        last, grad_norm = step(x, t, noise, y, Tensor(1.0, mstype.float32))  # decay 1: EMA frozen
    assert last.asnumpy().mean() < 0.5 * first.asnumpy().mean()
    assert np.isfinite(float(grad_norm.asnumpy())) and float(grad_norm.asnumpy()) > 0
    for before, e in zip(frozen, step.ema, strict=True):
        np.testing.assert_array_equal(before, e.asnumpy())
    assert int(step.optimizer.global_step.asnumpy()[0]) == 31


def test_compile_levels_train_the_same_bits(graph_mode):
    """runtime.jit_level: a train step compiled at O0 (the default) and one at O1 leave the
    same losses and parameters, bit for bit."""
    run = resolve(compose_config())
    trained = []
    try:
        for level in ("O1", "O0"):
            configure_runtime(dataclasses.replace(run.runtime, jit_level=level), mode="graph")
            assert ms.get_context("jit_config")["jit_level"] == level
            step, net = make_step()
            losses = [step(*batch(i), Tensor(0.9, mstype.float32))[0].asnumpy() for i in range(3)]
            trained.append((losses, {p.name: p.asnumpy() for p in net.get_parameters()}))
    finally:
        ms.set_context(jit_config={})
    (losses_o1, params_o1), (losses_o0, params_o0) = trained
    np.testing.assert_array_equal(np.array(losses_o1), np.array(losses_o0))
    assert params_o1.keys() == params_o0.keys()
    for name, value in params_o1.items():
        np.testing.assert_array_equal(value, params_o0[name], err_msg=name)


def test_kernel_spin_reaches_mindspore_and_keeps_the_bits(graph_mode):
    """runtime.kernel_spin: MindSpore's parallel launches set their kernel threads' spin
    through ddpm's hook, and a train step with kernel threads that sleep at once (0) leaves
    the same losses and parameters, bit for bit, as MindSpore's own spin (null)."""
    assert spin.installed(), "the hook was not loaded before MindSpore"
    run = resolve(compose_config())
    trained = []
    for count in (0, None):
        configure_runtime(dataclasses.replace(run.runtime, kernel_spin=count), mode="graph")
        step, net = make_step()
        before = spin.calls()
        losses = [step(*batch(i), Tensor(0.9, mstype.float32))[0].asnumpy() for i in range(3)]
        assert spin.calls() > before, "MindSpore's launches did not go through the hook"
        trained.append((losses, [p.asnumpy() for p in net.get_parameters()]))
    (losses_0, params_0), (losses_own, params_own) = trained
    np.testing.assert_array_equal(np.array(losses_0), np.array(losses_own))
    for sleeping, spinning in zip(params_0, params_own, strict=True):
        np.testing.assert_array_equal(sleeping, spinning)


def _pool_counts(library: ctypes.CDLL) -> tuple[int, int, int]:
    """Parallel regions launched on MindSpore's pool, those of them that ran alone after the
    wait for their team, and those that ran alone unlaunched; zeros for libgomp's library."""
    if not hasattr(library, "PoolRegions"):
        return 0, 0, 0
    return library.PoolRegions(), library.PoolRegionsAlone(), library.PoolRegionsUnlaunched()


def _kernel_threads() -> int:
    """MindSpore's kernel threads in this process, by their names."""
    names = [(task / "comm").read_text() for task in Path("/proc/self/task").iterdir()]
    return sum(name.startswith("KernelThread") for name in names)


def test_kernel_pool_and_pause_keep_the_bits(graph_mode):
    """runtime.kernel_pool=mindspore with runtime.kernel_pause: the kernels' parallel regions
    go to ddpm's OpenMP entry points, the kernel thread's yields become pause spins (one in 64
    followed by the system call, which hands the core to a waiting process), three
    train steps leave the same losses and parameters, bit for bit, as libgomp's threads (beside
    which the kernel threads keep yielding whatever kernel_pause says), and a region launched
    from a thread outside the pool runs as a team of the kernel threads and that thread."""
    run = resolve(compose_config())
    trained = []
    for pool in ("openmp", "mindspore"):
        runtime = dataclasses.replace(run.runtime, kernel_pool=pool, kernel_pause=16)
        configure_runtime(runtime, mode="graph")
        step, net = make_step()
        library = ctypes.CDLL(str(kernels.library(pool == "mindspore")))
        before = (spin.pauses_made(), _pool_counts(library), spin.yields_kept())
        losses = [step(*batch(i), Tensor(0.9, mstype.float32))[0].asnumpy() for i in range(3)]
        after = (spin.pauses_made(), _pool_counts(library), spin.yields_kept())
        trained.append((losses, [p.asnumpy() for p in net.get_parameters()], before, after))
    (losses_omp, params_omp, before, after), (losses_pool, params_pool, start, end) = trained
    assert after == before, "libgomp's run used the pool, or its kernel threads paused"
    assert not hasattr(ctypes.CDLL(str(kernels.library(False))), "PoolRegions")
    assert spin.yield_patched(), "MindSpore's sched_yield did not reach the hook"
    assert end[0] > start[0], "no kernel-thread yield became a pause spin"
    # One pause spin in 64, counted over the kernel threads, is followed by the system call.
    assert abs((end[2] - start[2]) - (end[0] - start[0]) / 64) <= _kernel_threads()
    reached = [counts[0] + counts[2] for counts in (start[1], end[1])]
    assert reached[1] > reached[0], (
        f"no parallel region reached ddpm's OpenMP entry points: {start[1]} -> {end[1]}"
    )
    np.testing.assert_array_equal(np.array(losses_omp), np.array(losses_pool))
    for libgomp, mindspore in zip(params_omp, params_pool, strict=True):
        np.testing.assert_array_equal(libgomp, mindspore)
    # Whether a graph's regions find their team in time depends on the machine's load; a
    # region launched here with a long wait shows that the team forms and runs it.
    library.PoolSetWait.restype = ctypes.c_long
    wait = library.PoolSetWait(ctypes.c_long(10**9))
    try:
        assert library.PoolTeamSize() == _kernel_threads() + 1 >= 2, end[1]
    finally:
        library.PoolSetWait(ctypes.c_long(wait))


def test_kernel_spin_says_why_it_cannot_apply():
    """Imported after MindSpore, the hook cannot bind; the key then warns and says why."""
    code = (
        "import mindspore, ddpm\n"
        "from ddpm.runtime import spin\n"
        "assert not spin.installed()\n"
        "spin.set_kernel_spin(1)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "runtime.kernel_spin=1 has no effect: MindSpore was imported before ddpm" in proc.stderr


@pytest.mark.skipif(not kernels.bf16_capable(), reason="the CPU has no AVX512-BF16")
def test_bf16_products_train_as_float32_does(graph_mode):
    """runtime.conv_precision=bfloat16: the network's convolutions multiply in bf16, and
    three steps leave losses and weights within bf16's rounding of float32's, not equal."""
    run = resolve(compose_config())
    trained = []
    try:
        for precision in ("bfloat16", "float32"):
            configure_runtime(dataclasses.replace(run.runtime, conv_precision=precision))
            step, net = make_step()
            losses = [step(*batch(i), Tensor(0.9, mstype.float32))[0].asnumpy() for i in range(3)]
            trained.append((np.array(losses), [p.asnumpy() for p in net.get_parameters()]))
    finally:
        kernels.use(True)
    (losses_bf16, params_bf16), (losses_fp32, params_fp32) = trained
    np.testing.assert_allclose(losses_bf16, losses_fp32, rtol=2e-2)
    assert not np.array_equal(losses_bf16, losses_fp32)
    for low, full in zip(params_bf16, params_fp32, strict=True):
        np.testing.assert_allclose(low, full, rtol=0, atol=2e-2 * max(1.0, np.abs(full).max()))


@pytest.mark.parametrize("fused_update", [True, pytest.param(False, marks=pytest.mark.slow)])
def test_accumulated_micro_batches_update_as_one_batch(fused_update):
    """k = 4 micro-batches of 2 give one batch of 8's update (to float32 rounding), over two
    steps: the buffers are emptied after each, and Adam, the LR and the EMA advance once."""
    from ddpm.training.step import GradAccumulator

    whole, _ = make_step(fused_update=fused_update)
    split, _ = make_step(fused_update=fused_update, accumulate=4)
    accumulator = GradAccumulator(split)
    decay = Tensor(0.5, mstype.float32)
    for seed in (0, 1):
        inputs = batch(seed)
        losses, norm = whole(*inputs, decay)
        micro = list(zip(*(np.split(a.asnumpy(), 4) for a in inputs), strict=True))
        parts = [accumulator(*map(Tensor, m)).asnumpy() for m in micro[:-1]]
        last, split_norm = split(*map(Tensor, micro[-1]), decay)
        np.testing.assert_allclose(np.concatenate([*parts, last.asnumpy()]), losses.asnumpy(),
                                   rtol=1e-5)  # fmt: skip
        np.testing.assert_allclose(float(split_norm.asnumpy()), float(norm.asnumpy()), rtol=1e-5)
        # Adam's moments hold the step's gradient: equal to rounding (relative to the
        # largest; a bias before a GroupNorm gets a gradient of rounding noise alone)
        scale = max(np.abs(m.asnumpy()).max() for m in whole.optimizer.moment1)
        for a, b in zip(whole.optimizer.moment1, split.optimizer.moment1, strict=True):
            np.testing.assert_allclose(b.asnumpy(), a.asnumpy(), rtol=1e-4, atol=1e-6 * scale)
    # Adam divides by |g|, so an element whose gradient is rounding noise can move either
    # way; all but those agree
    diffs = [
        np.abs(a.asnumpy() - b.asnumpy()).ravel() for a, b in zip(whole.ema, split.ema, strict=True)
    ]
    assert np.mean(np.concatenate(diffs) <= 1e-6) > 0.99
    assert all(not np.any(acc.asnumpy()) for acc in split.accum)
    assert int(split.optimizer.global_step.asnumpy()[0]) == 2


def test_grad_norm_is_the_global_l2_norm():
    step, _ = make_step(grad_clip=0.0)
    x, t, noise, y = batch(1)
    grads = ops.value_and_grad(lambda *a: step.loss_fn(*a).mean(), None, step.weights)(
        x, t, noise, y
    )[1]
    expected = np.sqrt(sum(float((g.asnumpy().astype(np.float64) ** 2).sum()) for g in grads))
    _, grad_norm = step(x, t, noise, y, Tensor(0.5, mstype.float32))
    assert float(grad_norm.asnumpy()) == pytest.approx(expected, rel=1e-4)


def test_ema_names_follow_the_network():
    step, net = make_step()
    names = {p.name for p in step.ema}
    assert names == {ema_name(n) for n, _ in net.parameters_and_names()}


def test_checkpoint_roundtrip_keep_and_latest(tmp_path):
    step, net = make_step()
    x, t, noise, y = batch()
    step(x, t, noise, y, Tensor(0.9, mstype.float32))
    folder = tmp_path / "ckpt"
    rng = np.random.default_rng(3)
    for k in (1, 2, 3):
        checkpoint.save(step, folder, k, {"step": k, "rng": rng.bit_generator.state}, keep=2)
    assert sorted(p.name for p in folder.glob("step_*.ckpt")) == [
        "step_00000002.ckpt",
        "step_00000003.ckpt",
    ]
    assert (folder / "latest").read_text().strip() == "step_00000003.ckpt"
    assert not list(folder.glob(".*tmp*"))
    params, meta = checkpoint.load(folder / "step_00000003.ckpt")
    assert meta["step"] == 3
    restored = np.random.default_rng()
    restored.bit_generator.state = meta["rng"]
    assert restored.random() == rng.random()
    fresh, fresh_net = make_step()
    load_ema(fresh_net, params)
    for (_, p), e in zip(fresh_net.parameters_and_names(), step.ema, strict=True):
        np.testing.assert_array_equal(p.asnumpy(), e.asnumpy())


def test_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "step_00000001.ckpt"
    bad.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(checkpoint.CheckpointError, match=str(bad)):
        checkpoint.load(bad)
    with pytest.raises(checkpoint.CheckpointError, match="does not exist"):
        checkpoint.load(tmp_path / "missing.ckpt")


def test_cosine_lr_with_warmup():
    lrs = cosine_lr(110, 1e-3, 1e-5, warmup_steps=10)
    assert lrs[0] == pytest.approx(1e-4, rel=1e-6) and lrs[9] == pytest.approx(1e-3, rel=1e-6)
    assert lrs[10] == pytest.approx(1e-3, rel=1e-6)
    assert 1e-5 < lrs[-1] < 1.1e-5  # the last step is one step short of min_lr
    assert lrs[60] == pytest.approx((1e-3 + 1e-5) / 2, rel=1e-2)
    assert np.all(np.diff(lrs[10:]) <= 0)


def test_ema_decay_warmup():
    assert ema_decay(0, 0.999, True) == pytest.approx(0.1)
    assert ema_decay(10**6, 0.999, True) == 0.999
    assert ema_decay(0, 0.999, False) == 0.999


def test_optimizer_follows_the_lr_table(graph_mode):
    """The LR inside Adam is indexed by its own global step, which checkpoints restore."""
    step, _ = make_step()
    assert isinstance(step.optimizer, nn.Adam)
    lr_cell = step.optimizer.learning_rate  # _IteratorLearningRate: lrs[global_step]
    lrs = lr_cell.learning_rate.asnumpy()
    assert lrs.shape == (40,) and lrs[0] > lrs[-1]
    current = step.optimizer.get_lr().asnumpy()  # read at global_step 0
    assert current == pytest.approx(lrs[0])


@pytest.mark.parametrize(
    "mode,fused_update", [("pynative", True), ("graph", True), ("graph", False)]
)
def test_skip_nonfinite_leaves_the_state_untouched(mode, fused_update, request):
    if mode == "graph":
        request.getfixturevalue("graph_mode")
    step, _ = make_step(1.0, 1e-3, 10, fused_update, skip_nonfinite=True)
    x, t, noise, y = batch()
    step(x, t, noise, y, Tensor(0.5, mstype.float32))
    before = [p.asnumpy().copy() for p in step.get_parameters()]
    bad = Tensor(np.full((8, 1, 8, 8), np.nan, np.float32))
    losses, _ = step(bad, t, noise, y, Tensor(0.5, mstype.float32))
    assert not np.all(np.isfinite(losses.asnumpy()))
    for b, p in zip(before, step.get_parameters(), strict=True):
        np.testing.assert_array_equal(b, p.asnumpy(), err_msg=p.name)
    step(x, t, noise, y, Tensor(0.5, mstype.float32))  # a good step still updates
    assert any(
        not np.array_equal(b, p.asnumpy())
        for b, p in zip(before, step.get_parameters(), strict=True)
    )


@pytest.mark.skipif(
    not kernels.active(), reason="no C++ compiler: the fused kernels cannot be built"
)
def test_fused_update_matches_the_graph_ops(graph_mode):
    """The AdamEma kernel leaves the state that Adam and the EMA as graph ops leave.

    Without clipping, so the comparison is tight: clipping rescales by a norm summed in
    another order (test_kernels.py checks the clipping). A parameter whose gradient is
    rounding noise (a bias before a GroupNorm, which the norm cancels exactly) takes Adam
    steps of +-lr in either direction: both steps only have to stay within that bound.
    """
    lr, steps = 3e-3, 3
    fused, _ = make_step(0.0, lr=lr)
    graph_ops, _ = make_step(0.0, lr=lr, fused_update=False)
    assert fused.fused and not graph_ops.fused
    start = {p.name: p.data.copy() for p in fused.get_parameters()}
    for p in graph_ops.get_parameters():
        p.set_data(start[p.name].copy())
    for i in range(steps):
        decay = Tensor(0.9, mstype.float32)
        loss_a, norm_a = fused(*batch(i), decay)
        loss_b, norm_b = graph_ops(*batch(i), decay)
        np.testing.assert_allclose(loss_a.asnumpy(), loss_b.asnumpy(), rtol=1e-5)
        assert float(norm_a.asnumpy()) == pytest.approx(float(norm_b.asnumpy()), rel=1e-5)
    # Adam's first moment: an average of each parameter's gradients over the steps.
    moments = [np.abs(m.asnumpy()).max() for m in graph_ops.optimizer.moment1]
    noise = {
        w.name for w, m in zip(graph_ops.weights, moments, strict=True) if m < 1e-6 * max(moments)
    }
    state_b = {p.name: p.asnumpy() for p in graph_ops.get_parameters()}
    for p in fused.get_parameters():
        a, b = p.asnumpy(), state_b[p.name]
        if p.name in noise:
            begin = start[p.name].asnumpy()
            assert np.abs(a - begin).max() <= steps * lr * 1.01, p.name
            assert np.abs(b - begin).max() <= steps * lr * 1.01, p.name
            continue
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6 * np.abs(b).max(), err_msg=p.name)
