"""Class conditioning and classifier-free guidance: labels, dropout, the null class, the
guided combination, image-folder classes and the errors for unlabelled data."""

import numpy as np
import pytest
from mindspore import Tensor, nn, ops
from omegaconf import OmegaConf
from PIL import Image

from ddpm.config.groups import resolve
from ddpm.config.registry import ConfigError
from ddpm.config.run_folder import load_config
from ddpm.data import DatasetError, batch_stream, class_names, load_labels
from ddpm.data.sources import FASHION_CLASSES
from ddpm.diffusion.conditioning import (
    balanced_labels,
    class_index,
    drop_labels,
    per_class_labels,
)
from ddpm.evaluation.evaluator import Evaluator
from ddpm.evaluation.feature_net import FeatureSpace
from ddpm.sampling.reverse_step import ODEStep, ReverseStep, p_sample_loop
from ddpm.training.build import model_fingerprint
from ddpm.training.callbacks import SampleGrids
from tests.conftest import compose_config, denoiser_of, make_diffusion, make_plan, trainer_of

K = 10


def test_label_dropout_rate_null_class_and_seed():
    labels = np.arange(20_000) % K
    out = drop_labels(labels, 0.1, K, np.random.default_rng(0))
    dropped = out == K
    assert 0.09 < dropped.mean() < 0.11
    np.testing.assert_array_equal(out[~dropped], labels[~dropped])  # the rest are untouched
    np.testing.assert_array_equal(out, drop_labels(labels, 0.1, K, np.random.default_rng(0)))
    assert not np.array_equal(out, drop_labels(labels, 0.1, K, np.random.default_rng(1)))
    np.testing.assert_array_equal(drop_labels(labels, 0.0, K, np.random.default_rng(0)), labels)


def test_trainer_feeds_dropped_labels_to_the_train_step(tmp_path):
    """The labels that reach the compiled step: the batch's own, or the null class at the
    rate p_uncond; a function of (seed, step), so a rerun sees the same."""
    cfg = compose_config("conditioning=class", "conditioning.p_uncond=0.5")

    class Spy:
        """The real train step, recording the labels of each call."""

        def __init__(self, step):
            self.step, self.seen = step, []

        def __call__(self, x, t, noise, y, decay):
            self.seen.append(y.asnumpy().copy())
            return self.step(x, t, noise, y, decay)

        def __getattr__(self, name):
            return getattr(self.step, name)

    def labels_seen(run_dir):
        trainer = trainer_of(cfg, run_dir)
        trainer.train_step = spy = Spy(trainer.train_step)
        batches = batch_stream(trainer.batches.data, 8, seed=0)
        for _ in range(6):
            trainer.train_one(next(batches))
        return np.concatenate(spy.seen)

    first = labels_seen(tmp_path / "a")
    assert first.shape == (6 * 8,) and set(first.tolist()) <= set(range(K + 1))
    assert 0.2 < np.mean(first == K) < 0.8  # p_uncond = 0.5 over 48 labels
    assert len(set(first[first < K].tolist())) > 3  # real classes from the data
    np.testing.assert_array_equal(first, labels_seen(tmp_path / "b"))


def test_the_null_class_is_a_learned_row_and_unconditional_networks_are_unchanged():
    _, cond = denoiser_of(compose_config("conditioning=class"))
    _, uncond = denoiser_of(compose_config("conditioning=none"))
    assert cond.num_classes == K and cond.class_emb.embedding_table.shape[0] == K + 1
    names = {n for n, _ in cond.parameters_and_names()}
    assert names - {n for n, _ in uncond.parameters_and_names()} == {"class_emb.embedding_table"}
    assert not hasattr(uncond, "class_emb")  # checkpoints of unconditional runs keep their keys
    x = Tensor(np.random.default_rng(0).standard_normal((2, 1, 28, 28)).astype(np.float32))
    t = Tensor(np.array([5, 50], np.int32))
    out = {y: cond(x, t, Tensor(np.full(2, y, np.int32))).asnumpy() for y in (0, 7, K)}
    assert not np.allclose(out[0], out[K]) and not np.allclose(out[7], out[K])
    y_any = Tensor(np.array([3, 4], np.int32))
    np.testing.assert_array_equal(
        uncond(x, t, y_any).asnumpy(), uncond(x, t, Tensor(np.zeros(2, np.int32))).asnumpy()
    )


class ClassMeans(nn.Cell):
    """An x0 network that knows each class: x0(x_t, t, y) = m_y, and m_K for the null class.
    It records the batch size of every call."""

    num_classes = 3

    def __init__(self, means: np.ndarray) -> None:
        super().__init__()
        self.means = Tensor(means.astype(np.float32))  # [K + 1, C, H, W]
        self.batches: list[int] = []

    def construct(self, x, t, y):
        self.batches.append(x.shape[0])
        return ops.gather(self.means, y, 0) + 0.0 * x


@pytest.fixture
def class_means():
    rng = np.random.default_rng(0)
    return rng.uniform(-0.8, 0.8, (ClassMeans.num_classes + 1, 1, 4, 4))


@pytest.mark.parametrize("w", [0.0, 0.5, 1.0, 2.0, 4.0])
def test_guided_prediction_is_the_closed_form_in_one_batched_call(w, class_means):
    """x0 = m_null + w (m_y - m_null), from one network call on [x, x] with [y, null]."""
    d = make_diffusion("linear", 100, objective="pred_x0", scale_to_T=True)
    net = ClassMeans(class_means)
    step = ReverseStep(net, d.objective, clip_denoised=False, scales=w)
    y = np.array([0, 1, 2, 1])
    x = Tensor(np.random.default_rng(1).standard_normal((4, 1, 4, 4)).astype(np.float32))
    coefs = Tensor(np.array([0.5, 0.8, 0.0, 0.0, 0.0, 0.0, w], np.float32))
    _, x0 = step(x, Tensor(np.full(4, 30, np.int32)), Tensor(y.astype(np.int32)), coefs, x, x)
    null = class_means[ClassMeans.num_classes]
    expected = null + w * (class_means[y] - null)
    np.testing.assert_allclose(x0.asnumpy(), expected, rtol=1e-5, atol=1e-6)
    assert net.batches == ([8] if w not in (0.0, 1.0) else [4])


@pytest.mark.parametrize("sampler", ["ddpm", "ddim", "dpm_solver"])
@pytest.mark.parametrize("w", [1.0, 2.0])
def test_every_sampler_converges_to_the_guided_prediction(sampler, w, class_means):
    """A full trajectory ends at the guided x0 of the oracle, clipped: m_y for w = 1."""
    d = make_diffusion("cosine", 100, objective="pred_x0")
    plan = make_plan(d, sampler, steps=10, guidance=w)
    step = ReverseStep(
        ClassMeans(class_means), d.objective, clip_denoised=True, scales=plan.guidance
    )
    labels = np.array([2, 0, 1])
    x = p_sample_loop(step, plan, (3, 1, 4, 4), 0, labels=labels)
    null = class_means[ClassMeans.num_classes]
    expected = np.clip(null + w * (class_means[labels] - null), -1, 1)
    np.testing.assert_allclose(x, expected, atol=1e-4)


def test_guidance_is_paid_only_inside_its_interval(class_means):
    """Outside the interval (w = 1) a row calls the network once, on the plain batch; inside
    it, twice on the plain batch (the labels, then the null class)."""
    d = make_diffusion("cosine", 100, objective="pred_x0")
    plan = make_plan(d, "dpm_solver", steps=10, guidance=3.0, guidance_interval=[0.2, 0.7])
    net = ClassMeans(class_means)
    step = ReverseStep(net, d.objective, clip_denoised=True, scales=plan.guidance)
    p_sample_loop(step, plan, (3, 1, 4, 4), 0, labels=np.array([2, 0, 1]))
    assert net.batches == [b for w in plan.guidance for b in ([3, 3] if w != 1.0 else [3])]
    assert step.at(1.0) is step.at(1.0) and not step.at(1.0).guided and step.at(3.0) is step


@pytest.mark.parametrize("w", [0.0, 1.0, 3.0])
def test_the_loops_parts_are_the_whole_step(w, class_means):
    """p_sample_loop runs a row as network calls and an update (ReverseStep.parts); ddpm.export
    writes the whole step, guided on the doubled batch. The two agree to float32 rounding,
    for DDPM's step and for an ODE step."""
    d = make_diffusion("cosine", 100, objective="pred_x0")
    rng = np.random.default_rng(4)
    x, noise, prev = (Tensor(rng.standard_normal((3, 1, 4, 4)).astype(np.float32)) for _ in "xnp")
    y, null = Tensor(np.array([2, 0, 1], np.int32)), Tensor(np.full(3, 3, np.int32))
    net = ClassMeans(class_means)
    steps = [ReverseStep(net, d.objective, True, [3.0, 1.0]), ODEStep(net, False, [3.0, 1.0])]
    for step, width in zip(steps, (7, 9), strict=True):
        coefs = rng.uniform(0.1, 0.9, width).astype(np.float32)
        coefs[step.W] = w
        t, coefs = Tensor(np.full(3, 30, np.int32)), Tensor(coefs)
        whole = step.at(w)(x, t, y, coefs, noise, prev)
        parts = step.parts()(w, x, t, y, null, coefs, noise, prev)
        for a, b in zip(whole, parts, strict=True):
            np.testing.assert_allclose(a.asnumpy(), b.asnumpy(), rtol=1e-6, atol=1e-6)


def test_label_helpers():
    assert balanced_labels(12, 5).tolist() == [0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 0, 1]
    assert per_class_labels(2, 3).tolist() == [0, 0, 1, 1, 2, 2]
    names = list(FASHION_CLASSES)
    assert class_index("sneaker", names) == 7
    assert class_index("Ankle boot", names) == class_index("ankle_boot", names) == 9
    assert class_index("t-shirt", names) == class_index("top", names) == 0
    assert class_index("3", names) == 3
    for bad in ("shoe", "10"):
        with pytest.raises(ConfigError, match="0 'T-shirt/top', 1 'Trouser'"):
            class_index(bad, names)


def test_an_unconditional_model_ignores_guidance(tmp_path):
    """The default recipe guides; with conditioning=none the same config samples plainly."""
    cfg = compose_config("conditioning=none", "sampler.guidance=3")
    trainer = trainer_of(cfg, tmp_path)
    sampling = next(c for c in trainer.callbacks if isinstance(c, SampleGrids)).sampling
    assert trainer.batches.num_classes == 0 and not sampling.reverse_step.guided


def test_guidance_interval_sets_each_steps_scale():
    """w inside (lo, hi] of t/T, 1 outside; the step doubles its batch only where needed."""
    d = make_diffusion("cosine", 100, objective="pred_x0")
    plan = make_plan(d, "ddim", steps=10, guidance=3.0, guidance_interval=[0.2, 0.7])
    s = (plan.timesteps + 1) / 100  # 1.0, 0.9, ..., 0.1
    np.testing.assert_array_equal(plan.guidance, np.where((s > 0.2) & (s <= 0.7), 3.0, 1.0))
    assert set(plan.guidance) == {1.0, 3.0}
    assert ReverseStep(ClassMeans(np.zeros((4, 1, 2, 2))), d.objective, True, plan.guidance).guided
    everywhere = make_plan(d, "ddim", steps=10, guidance=0.0)
    step = ReverseStep(ClassMeans(np.zeros((4, 1, 2, 2))), d.objective, True, everywhere.guidance)
    assert step.unconditional and not step.guided
    with pytest.raises(ConfigError, match=r"guidance_interval=\[0.5, 0.5\] must have lo < hi"):
        make_plan(d, "ddim", guidance_interval=[0.5, 0.5])


def test_fingerprint_of_unconditional_runs_is_unchanged_and_old_configs_load(tmp_path):
    cfg = compose_config("conditioning=none")
    plain = model_fingerprint(resolve(cfg))
    assert "classes" not in plain and "conditioning" not in plain
    cond = model_fingerprint(resolve(compose_config("conditioning=class")), list(FASHION_CLASSES))
    assert cond["classes"][7] == "Sneaker" and cond["conditioning"]["p_uncond"] == 0.1
    cfg = OmegaConf.create(OmegaConf.to_container(cfg))
    del cfg["conditioning"], cfg.sampler["guidance"], cfg.sampler["guidance_interval"]
    del cfg.runtime["jit_level"], cfg.runtime["kernel_spin"]
    (tmp_path / ".hydra").mkdir()
    (tmp_path / ".hydra" / "config.yaml").write_text(OmegaConf.to_yaml(cfg))
    loaded = load_config(tmp_path)
    assert loaded.conditioning.name == "none" and loaded.sampler.guidance == 1.0
    assert list(loaded.sampler.guidance_interval) == [0.0, 1.0]
    assert loaded.runtime.jit_level is None  # MindSpore's own level, as older runs compiled
    assert loaded.runtime.kernel_spin is None  # MindSpore's own spin, as older runs trained
    resolve(loaded)


def _png(path, value):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((10, 12), value, np.uint8)).save(path)


def test_image_folder_classes_are_its_subfolders(tmp_path):
    for rel, v in [("dog/a.png", 10), ("cat/b.png", 20), ("cat/deep/c.png", 30), ("eel/d.png", 0)]:
        _png(tmp_path / rel, v)
    assert class_names("image_folder", str(tmp_path)) == ["cat", "dog", "eel"]
    # files in sorted order: cat/b, cat/deep/c, dog/a, eel/d
    labels = load_labels("image_folder", split="train", root=str(tmp_path))
    assert labels.tolist() == [0, 0, 1, 2]


def test_unlabelled_image_folder_under_conditioning_is_a_clear_error(tmp_path):
    images = tmp_path / "images"
    _png(images / "a.png", 10)
    _png(images / "b.png", 20)
    folder = [
        "dataset=image_folder",
        f"dataset.root={images}",
        "dataset.image_size=8",
        "dataset.channels=1",
        "trainer.batch_size=2",
    ]
    with pytest.raises(DatasetError, match=r"no labels for 2 image\(s\).*one subfolder per class"):
        trainer_of(compose_config(*folder, "conditioning=class"), tmp_path / "run")
    uncond = compose_config(*folder, "conditioning=none")
    assert trainer_of(uncond, tmp_path / "uncond").batches.num_classes == 0


def test_conditional_metrics_on_known_features():
    """cond_accuracy counts the classifier's agreement with the asked-for class; fd_class
    is 0 when each class's samples have its test features' statistics, and NaN where no class
    has two samples."""
    rng = np.random.default_rng(0)
    test_labels = np.repeat(np.arange(3), 40)
    real = rng.standard_normal((120, 4)) + test_labels[:, None] * 3.0
    space = FeatureSpace(None, real, real.mean(0), np.cov(real, rowvar=False), 1.0)
    evaluator = Evaluator(space, test_labels=test_labels)
    probs = np.eye(3)[np.array([0, 1, 2, 2] * 30)]  # 3 of 4 agree with labels 0, 1, 2, 0...
    asked = np.array([0, 1, 2, 0] * 30)
    out = evaluator.conditional(real, probs, test_labels)
    assert out["fd_class"] == pytest.approx(0.0, abs=1e-8)
    assert evaluator.conditional(real, probs, asked)["cond_accuracy"] == pytest.approx(0.75)
    one_each = evaluator.conditional(real[:3], probs[:3], np.arange(3))  # no class FD defined
    assert np.isnan(one_each["fd_class"]) and one_each["fd_per_class"] == []
