"""The benchmark's PyTorch twin must be the same network as ddpm.nn, or ratios mean nothing."""

import os

import pytest

from ddpm.config.groups import section
from ddpm.nn import ATTENTIONS, BLOCKS
from tests.conftest import compose_config, denoiser_of

if os.environ.get("DDPM_REQUIRE_EXTRAS") == "1":  # make test-extras: the twin must be tested
    import torch
else:
    torch = pytest.importorskip("torch", reason="the PyTorch twin needs `make test-extras`")


@pytest.mark.parametrize("block", BLOCKS.names())
@pytest.mark.parametrize("attention", ATTENTIONS.names())
@pytest.mark.parametrize("recipe", ["quick", "seed_tutorial"])
def test_twin_has_the_same_parameters(block, attention, recipe):
    """The default recipe (2x2 patches, class labels) and the seed's (pixels, no labels)."""
    from ddpm.bench.torch_twin import UNet

    groups = ["block.groups=2"] if block == "resnet" else []  # the seed's widths: 18, 28, ...
    cfg = compose_config(
        f"experiment={recipe}",
        f"block={block}",
        *groups,
        f"attention={attention}",
        "attention.levels=[1]",
    )
    sections = [section(cfg, g) for g in ("model", "block", "attention")]
    _, ms_net = denoiser_of(cfg)
    pt_net = UNet(*sections, 1, ms_net.num_classes)
    ms_shapes = sorted(tuple(p.shape) for p in ms_net.trainable_params())
    pt_shapes = sorted(tuple(p.shape) for p in pt_net.parameters())
    # MindSpore stores Dense weights [out, in] like PyTorch; transposed-conv weights are
    # [in, out, k, k] in both.
    assert ms_shapes == pt_shapes
    out = pt_net(torch.randn(2, 1, 28, 28), torch.tensor([0, 5]), torch.tensor([3, 10]))
    assert out.shape == (2, 1, 28, 28)


@pytest.mark.slow
def test_bench_cli_writes_every_figure(tmp_path):
    """The real `python -m ddpm.bench` on the small case: table, paired ratios and JSON."""
    import json
    import subprocess
    import sys

    out = tmp_path / "bench.json"
    args = ["--cases", "quick", "--steps", "1", "--ddpm-steps", "1", "--pairs", "3"]
    args += ["--precision", "float32"]
    proc = subprocess.run(
        [sys.executable, "-m", "ddpm.bench", *args, "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "| train step, step-paired with the other framework (s) |" in proc.stdout
    assert "train step, MindSpore / PyTorch eager per round (3 rounds): median" in proc.stdout
    assert "| MindSpore, float32 products / PyTorch eager |" in proc.stdout
    case = json.loads(out.read_text())["cases"]["quick"]
    for framework in ("mindspore", "torch"):
        figures = case[framework]
        assert len(figures["train_pairs_s"]) == 3 and all(t > 0 for t in figures["train_pairs_s"])
        for key in ("train_step_s", "forward_64_s", "ddim50_s", "ddpm_T_s", "peak_rss_mb"):
            assert figures[key] > 0, key
    assert case["precision"]["train_step_s"] > 0
